use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::hint::black_box;
use std::time::Instant;

struct L(usize);
impl hkdf::KeyType for L { fn len(&self) -> usize { self.0 } }

fn t<F: FnMut()>(name: &str, mut f: F) {
    const N: u32 = 20000;
    let best = (0..5).map(|_| { let t = Instant::now(); for _ in 0..N { f() } t.elapsed().as_secs_f64() / N as f64 }).fold(f64::INFINITY, f64::min);
    println!("{name:<30} {:8.3} us", best * 1e6);
}

#[test]
#[ignore]
fn parts() {
    let k = [7u8; 32];
    let ctxb = vec![1u8; 140];
    t("getrandom 24", || { let mut s = [0u8; 24]; SystemRandom::new().fill(&mut s).unwrap(); black_box(s); });
    t("prk new", || { black_box(hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, black_box(&k))); });
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, &k);
    t("expand 76", || {
        let info: [&[u8]; 5] = [b"c2sp.org/chunked-encryption@v1+", b"AEAD_AES_256_GCM", &[0], &[3u8; 24], &ctxb];
        let mut o = [0u8; 76];
        prk.expand(&info, L(76)).unwrap().fill(&mut o).unwrap(); black_box(o);
    });
    t("aes key", || { black_box(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&k)).unwrap())); });
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).unwrap());
    let mut buf = vec![0u8; 4096];
    t("seal 4096", || { black_box(key.seal_in_place_separate_tag(ring::aead::Nonce::assume_unique_for_key([0;12]), ring::aead::Aad::empty(), &mut buf).unwrap()); });
    let mut buf = vec![0u8; 300];
    t("seal 300", || { black_box(key.seal_in_place_separate_tag(ring::aead::Nonce::assume_unique_for_key([0;12]), ring::aead::Aad::empty(), &mut buf).unwrap()); });
    t("vec alloc 4k", || { black_box(Vec::<u8>::with_capacity(black_box(4200))); });
    let sk = sanctum_crypto::DataKey::from_bytes(k);
    let ctx = sanctum_crypto::Context { tenant: "acme", namespace: "docs", object_key: "a/b.txt", body_id: "01j0000000000000000000000", kind: "blob-body" };
    let kr = sanctum_crypto::KeyRef::new("ns-docs", 1).unwrap();
    t("Encryptor::with_salt", || { black_box(sanctum_crypto::Encryptor::with_salt(&sk, kr.clone(), &ctx, [1; 24]).unwrap()); });
    let m = sanctum_crypto::encrypt(&sk, kr.clone(), &ctx, &[0u8; 300]).unwrap();
    let (h, _) = sanctum_crypto::Header::parse(&m).unwrap();
    t("Decryptor::new", || { black_box(sanctum_crypto::Decryptor::new(&sk, &h, &ctx, 0).unwrap()); });
    t("encrypt 300", || { black_box(sanctum_crypto::encrypt(&sk, kr.clone(), &ctx, &[0u8; 300]).unwrap()); });
    t("decrypt 300", || { let (h, hl) = sanctum_crypto::Header::parse(&m).unwrap(); black_box(sanctum_crypto::decrypt(&sk, &h, hl, &ctx, &m).unwrap()); });
}

#[test]
#[ignore]
fn sha() {
    let big = vec![1u8; 1 << 20];
    let tt = Instant::now();
    for _ in 0..20 { black_box(ring::digest::digest(&ring::digest::SHA512, &big)); }
    println!("sha512 {:.3} GB/s", 20.0 * (1 << 20) as f64 / tt.elapsed().as_secs_f64() / 1e9);
    let tt = Instant::now();
    for _ in 0..20 { black_box(ring::digest::digest(&ring::digest::SHA256, &big)); }
    println!("sha256 {:.3} GB/s", 20.0 * (1 << 20) as f64 / tt.elapsed().as_secs_f64() / 1e9);
    let small = [1u8; 100];
    t("sha512 100B", || { black_box(ring::digest::digest(&ring::digest::SHA512, black_box(&small))); });
    let hk = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &[7u8; 32]);
    t("hmac512 key", || { black_box(ring::hmac::Key::new(ring::hmac::HMAC_SHA512, black_box(&[7u8; 32]))); });
    t("hmac512 sign 100B", || { black_box(ring::hmac::sign(&hk, black_box(&small))); });
}
