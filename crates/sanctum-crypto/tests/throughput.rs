//! A rough throughput check against raw ring AES-256-GCM (ignored by default):
//!
//! ```text
//! cargo test -p sanctum-crypto --release --test throughput -- --ignored --nocapture
//! ```

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sanctum_crypto::{CHUNK_SIZE, Context, DataKey, Decryptor, Encryptor, Header, KeyRef};
use std::time::Instant;

const TOTAL: usize = 256 << 20;
/// Size of the pieces fed to update (like network reads).
const PIECE: usize = 64 << 10;

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn best_of<F: FnMut() -> f64>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore = "benchmark; run in release mode"]
fn throughput_vs_raw_ring() {
    let pt: Vec<u8> = (0..TOTAL).map(|i| i as u8).collect();
    let ctx = Context {
        tenant: "t",
        namespace: "n",
        object_key: "k",
        body_id: "b",
        kind: "blob-body",
    };
    let key = DataKey::generate().unwrap();

    // Raw ring: seal/open 16 KiB chunks in place, no framing.
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = pt.clone();
    let mut tags = Vec::with_capacity(TOTAL / CHUNK_SIZE);
    let raw_seal = best_of(3, || {
        tags.clear();
        let t = Instant::now();
        for (i, c) in buf.chunks_mut(CHUNK_SIZE).enumerate() {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&(i as u64).to_be_bytes());
            tags.push(
                raw.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::empty(), c)
                    .unwrap(),
            );
        }
        t.elapsed().as_secs_f64()
    });
    let mut sealed = Vec::with_capacity(TOTAL + tags.len() * 16);
    for (c, tag) in buf.chunks(CHUNK_SIZE).zip(&tags) {
        sealed.extend_from_slice(c);
        sealed.extend_from_slice(tag.as_ref());
    }
    let raw_open = best_of(3, || {
        let mut work = sealed.clone();
        let t = Instant::now();
        for (i, c) in work.chunks_mut(CHUNK_SIZE + 16).enumerate() {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&(i as u64).to_be_bytes());
            raw.open_in_place(Nonce::assume_unique_for_key(n), Aad::empty(), c)
                .unwrap();
        }
        t.elapsed().as_secs_f64()
    });

    // Raw ring with a copy into a separate output buffer (what any API that
    // does not encrypt in the caller's buffer has to do).
    let mut dst: Vec<u8> = Vec::with_capacity(sealed.len());
    let raw_copy_seal = best_of(3, || {
        dst.clear();
        let t = Instant::now();
        for (i, c) in pt.chunks(CHUNK_SIZE).enumerate() {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&(i as u64).to_be_bytes());
            let start = dst.len();
            dst.extend_from_slice(c);
            let tag = raw
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(n),
                    Aad::empty(),
                    &mut dst[start..],
                )
                .unwrap();
            dst.extend_from_slice(tag.as_ref());
        }
        t.elapsed().as_secs_f64()
    });
    let raw_copy_open = best_of(3, || {
        dst.clear();
        let t = Instant::now();
        for (i, c) in sealed.chunks(CHUNK_SIZE + 16).enumerate() {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&(i as u64).to_be_bytes());
            let start = dst.len();
            dst.extend_from_slice(c);
            let len = raw
                .open_in_place(
                    Nonce::assume_unique_for_key(n),
                    Aad::empty(),
                    &mut dst[start..],
                )
                .unwrap()
                .len();
            dst.truncate(start + len);
        }
        t.elapsed().as_secs_f64()
    });

    // The envelope, streaming in 64 KiB pieces.
    // Reuse the output buffer so that page faults on fresh memory are not
    // counted (the raw ring runs work in place on touched memory too).
    let mut msg = Vec::with_capacity(TOTAL + TOTAL / 1000 + 200);
    let enc_t = best_of(3, || {
        msg.clear();
        let t = Instant::now();
        let (mut enc, header) = Encryptor::new(&key, KeyRef::new("k", 1).unwrap(), &ctx).unwrap();
        msg.extend_from_slice(&header);
        for p in pt.chunks(PIECE) {
            enc.update(p, &mut msg).unwrap();
        }
        enc.finish(&mut msg).unwrap();
        t.elapsed().as_secs_f64()
    });
    let mut out = Vec::with_capacity(TOTAL);
    let dec_stream_t = best_of(3, || {
        out.clear();
        let t = Instant::now();
        let (h, hl) = Header::parse(&msg).unwrap();
        let mut dec = Decryptor::new(&key, &h, &ctx, 0).unwrap();
        for p in msg[hl..].chunks(PIECE) {
            dec.update(p, &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        t.elapsed().as_secs_f64()
    });
    assert!(out == pt);
    // Odd piece size: exercises the buffered path.
    let dec_odd_t = best_of(3, || {
        out.clear();
        let t = Instant::now();
        let (h, hl) = Header::parse(&msg).unwrap();
        let mut dec = Decryptor::new(&key, &h, &ctx, 0).unwrap();
        for p in msg[hl..].chunks(10_000) {
            dec.update(p, &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        t.elapsed().as_secs_f64()
    });
    assert!(out == pt);
    let dec_whole_t = best_of(3, || {
        let t = Instant::now();
        let (h, hl) = Header::parse(&msg).unwrap();
        let v = sanctum_crypto::decrypt(&key, &h, hl, &ctx, &msg).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(v.len(), TOTAL);
        s
    });

    println!("raw ring seal            {:.2} GB/s", gbps(TOTAL, raw_seal));
    println!("raw ring open            {:.2} GB/s", gbps(TOTAL, raw_open));
    println!(
        "raw ring copy+seal       {:.2} GB/s",
        gbps(TOTAL, raw_copy_seal)
    );
    println!(
        "raw ring copy+open       {:.2} GB/s",
        gbps(TOTAL, raw_copy_open)
    );
    println!("Encryptor (64 KiB)       {:.2} GB/s", gbps(TOTAL, enc_t));
    println!(
        "Decryptor (64 KiB)       {:.2} GB/s",
        gbps(TOTAL, dec_stream_t)
    );
    println!(
        "Decryptor (10000 B)      {:.2} GB/s",
        gbps(TOTAL, dec_odd_t)
    );
    println!(
        "decrypt() whole message  {:.2} GB/s (includes allocating and faulting in 256 MiB)",
        gbps(TOTAL, dec_whole_t)
    );
}
