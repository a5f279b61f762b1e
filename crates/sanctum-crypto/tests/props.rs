//! Property tests: round trips over random sizes, update split points and
//! ranges.

mod common;

use common::pattern;
use proptest::prelude::*;
use sanctum_crypto::{
    CHUNK_SIZE, Context, DataKey, Decryptor, ENCRYPTED_CHUNK_SIZE, Encryptor, Header, KeyRef,
    chunk_span, ciphertext_len, decrypt, encrypt, plaintext_len,
};

fn ctx() -> Context<'static> {
    Context {
        tenant: "t",
        namespace: "n",
        object_key: "k",
        body_id: "b",
        kind: "stream",
    }
}

/// Turns sorted fractions into split points of `0..n`.
fn splits(n: usize, fracs: &[u16]) -> Vec<usize> {
    let mut v: Vec<usize> = fracs
        .iter()
        .map(|&f| n * f as usize / u16::MAX as usize)
        .collect();
    v.sort_unstable();
    v
}

/// Pieces that are whole multiples of the encrypted chunk, each decrypted
/// into a fresh `Vec::with_capacity(piece.len())` (as sanctum-storage does):
/// in-place opening never outgrows that capacity (only a short last piece,
/// which releases the held-back chunk, may), and the plaintext comes out in
/// order.
#[test]
fn aligned_pieces_fit_their_capacity() {
    let key = DataKey::from_bytes([5; 32]);
    for n in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        3 * CHUNK_SIZE + 7,
        5 * CHUNK_SIZE,
    ] {
        let pt = pattern(n);
        let msg = encrypt(&key, KeyRef::new("k", 1).unwrap(), &ctx(), &pt).unwrap();
        let (h, hl) = Header::parse(&msg).unwrap();
        for k in [1, 2, 16] {
            let mut dec = Decryptor::new(&key, &h, &ctx(), 0).unwrap();
            let mut got = Vec::new();
            for piece in msg[hl..].chunks(k * ENCRYPTED_CHUNK_SIZE) {
                let mut out = Vec::with_capacity(piece.len());
                let cap = out.capacity();
                dec.update(piece, &mut out).unwrap();
                if piece.len() % ENCRYPTED_CHUNK_SIZE == 0 {
                    assert_eq!(out.capacity(), cap, "n {n}, k {k}");
                }
                got.extend_from_slice(&out);
            }
            dec.finish(&mut got).unwrap();
            assert!(got == pt, "n {n}, k {k}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        n in 0usize..200_000,
        enc_fracs in prop::collection::vec(any::<u16>(), 0..6),
        dec_fracs in prop::collection::vec(any::<u16>(), 0..6),
        key in any::<[u8; 32]>(),
        ranges in prop::collection::vec((any::<u32>(), any::<u32>()), 1..4),
    ) {
        let key = DataKey::from_bytes(key);
        let pt = pattern(n);
        let (mut enc, mut msg) = Encryptor::new(&key, KeyRef::new("k", 9).unwrap(), &ctx()).unwrap();
        let mut at = 0;
        for s in splits(n, &enc_fracs) {
            enc.update(&pt[at..s], &mut msg).unwrap();
            at = s;
        }
        enc.update(&pt[at..], &mut msg).unwrap();
        enc.finish(&mut msg).unwrap();

        let (h, hl) = Header::parse(&msg).unwrap();
        let body = &msg[hl..];
        prop_assert_eq!(body.len() as u64, ciphertext_len(n as u64));
        prop_assert_eq!(plaintext_len(body.len() as u64), Ok(n as u64));
        prop_assert_eq!(&decrypt(&key, &h, hl, &ctx(), &msg).unwrap(), &pt);

        // Streaming decryption with its own split points.
        let mut dec = Decryptor::new(&key, &h, &ctx(), 0).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        for s in splits(body.len(), &dec_fracs) {
            dec.update(&body[at..s], &mut out).unwrap();
            at = s;
        }
        dec.update(&body[at..], &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        prop_assert_eq!(&out, &pt);

        // Random ranges.
        for (a, b) in ranges {
            let a = (a as usize) % (n + 1);
            let b = a + (b as usize) % (n - a + 1);
            let span = chunk_span(a as u64..b as u64, n as u64);
            let ct = &body[span.ciphertext.start as usize..span.ciphertext.end as usize];
            let mut dec = Decryptor::new(&key, &h, &ctx(), span.first_chunk).unwrap();
            let mut out = Vec::new();
            dec.update(ct, &mut out).unwrap();
            if span.includes_final {
                dec.finish(&mut out).unwrap();
            } else {
                dec.finish_partial(&mut out).unwrap();
            }
            let skip = span.skip as usize;
            prop_assert_eq!(&out[skip..skip + span.take as usize], &pt[a..b]);
        }
    }

    #[test]
    fn header_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Header::parse(&bytes);
    }

    #[test]
    fn span_arithmetic(len in 0u64..(1 << 50), a in any::<u64>(), b in any::<u64>()) {
        let (a, b) = (a % (len + 2), b % (len + 2));
        let (a, b) = (a.min(b), a.max(b));
        let s = chunk_span(a..b, len);
        let end = b.min(len);
        let start = a.min(end);
        prop_assert_eq!(s.take, end - start);
        prop_assert_eq!(s.first_chunk * 16384 + s.skip, start);
        prop_assert!(s.skip < 16384);
        prop_assert_eq!(s.ciphertext.start, s.first_chunk * 16400);
        prop_assert!(s.last_chunk >= s.first_chunk);
        prop_assert_eq!(s.includes_final, s.last_chunk == len / 16384);
        if s.includes_final {
            prop_assert_eq!(s.ciphertext.end, ciphertext_len(len));
        } else {
            prop_assert_eq!(s.ciphertext.end, (s.last_chunk + 1) * 16400);
        }
        // The chunks hold the whole range.
        prop_assert!(s.skip + s.take <= (s.last_chunk - s.first_chunk + 1) * 16384);
    }
}
