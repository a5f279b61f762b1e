//! Ranged decryption: `chunk_span` + `Decryptor::new(.., first_chunk)` over
//! just the covering ciphertext gives exactly the plaintext slice.

mod common;

use common::pattern;
use sanctum_crypto::{
    CHUNK_SIZE, Context, CryptoError, DataKey, Decryptor, ENCRYPTED_CHUNK_SIZE, Header, KeyRef,
    chunk_span, decrypt_range, encrypt, plaintext_len,
};
use std::ops::Range;

fn key() -> DataKey {
    DataKey::from_bytes([0x11; 32])
}

fn ctx() -> Context<'static> {
    Context {
        tenant: "t1",
        namespace: "ns",
        object_key: "big/object",
        body_id: "body-1",
        kind: "blob-body",
    }
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Decrypts `range` the way a ranged GET would: from the stored object size,
/// fetch only the covering ciphertext and decrypt it.
fn ranged_read(msg: &[u8], range: Range<u64>, piece: usize) -> Result<Vec<u8>, CryptoError> {
    let (h, hl) = Header::parse(msg)?;
    let pt_len = plaintext_len((msg.len() - hl) as u64)?;
    let span = chunk_span(range, pt_len);
    let body = &msg[hl..];
    let ct = &body[span.ciphertext.start as usize..span.ciphertext.end as usize];
    // Chunk k starts at header_len + k * 16400.
    assert_eq!(
        span.ciphertext.start,
        span.first_chunk * ENCRYPTED_CHUNK_SIZE as u64
    );
    let mut dec = Decryptor::new(&key(), &h, &ctx(), span.first_chunk)?;
    let mut out = Vec::new();
    for p in ct.chunks(piece) {
        dec.update(p, &mut out)?;
    }
    if span.includes_final {
        dec.finish(&mut out)?;
    } else {
        dec.finish_partial(&mut out)?;
    }
    let chunks = span.last_chunk - span.first_chunk + 1;
    assert!(out.len() as u64 <= chunks * CHUNK_SIZE as u64);
    let skip = span.skip as usize;
    Ok(out[skip..skip + span.take as usize].to_vec())
}

fn clamp(range: &Range<u64>, len: u64) -> Range<usize> {
    let end = range.end.min(len);
    let start = range.start.min(end);
    start as usize..end as usize
}

#[test]
fn random_ranges() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for n in [
        0usize,
        1,
        100,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE,
        100_000,
    ] {
        let pt = pattern(n);
        let msg = encrypt(&key(), KeyRef::new("k", 0).unwrap(), &ctx(), &pt).unwrap();
        let (h, hl) = Header::parse(&msg).unwrap();
        let mut ranges: Vec<Range<u64>> = vec![0..n as u64, 0..0, n as u64..n as u64, 0..u64::MAX];
        for b in [
            CHUNK_SIZE as u64 - 1,
            CHUNK_SIZE as u64,
            CHUNK_SIZE as u64 + 1,
        ] {
            ranges.push(b - 1..b + 1);
            ranges.push(0..b);
            ranges.push(b..n as u64);
        }
        for _ in 0..60 {
            let a = rng.below(n as u64 + 10);
            let b = a + rng.below(n as u64 + 10 - a + 1);
            ranges.push(a..b);
        }
        for r in ranges {
            let want = &pt[clamp(&r, n as u64)];
            for piece in [usize::MAX, 777] {
                let got = ranged_read(&msg, r.clone(), piece).unwrap();
                assert!(got == want, "n {n} range {r:?} piece {piece}");
            }
            let span = chunk_span(r.clone(), n as u64);
            let ct = &msg[hl + span.ciphertext.start as usize..hl + span.ciphertext.end as usize];
            assert_eq!(
                decrypt_range(&key(), &h, &ctx(), n as u64, r.clone(), ct).unwrap(),
                want
            );
        }
    }
}

#[test]
fn ranged_reads_detect_tampering_and_misuse() {
    let n = 5 * CHUNK_SIZE + 10;
    let pt = pattern(n);
    let mut msg = encrypt(&key(), KeyRef::new("k", 0).unwrap(), &ctx(), &pt).unwrap();
    let (h, hl) = Header::parse(&msg).unwrap();
    let e = ENCRYPTED_CHUNK_SIZE;

    // Chunks 2..=3, not the final one.
    let r = 2 * CHUNK_SIZE as u64 + 5..4 * CHUNK_SIZE as u64 - 5;
    let span = chunk_span(r.clone(), n as u64);
    assert_eq!(
        (span.first_chunk, span.last_chunk, span.includes_final),
        (2, 3, false)
    );
    let ct = msg[hl + 2 * e..hl + 4 * e].to_vec();

    // Ending a partial read with finish(): the held-back full chunk 3 is not
    // a valid final chunk.
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 2).unwrap();
    let mut out = Vec::new();
    dec.update(&ct, &mut out).unwrap();
    assert_eq!(out.len(), CHUNK_SIZE, "chunk 2 released, chunk 3 held back");
    assert_eq!(dec.finish(&mut out), Err(CryptoError::Truncated));

    // A partial chunk at the end of a partial read.
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 2).unwrap();
    let mut out = Vec::new();
    dec.update(&ct[..ct.len() - 1], &mut out).unwrap();
    assert_eq!(dec.finish_partial(&mut out), Err(CryptoError::Truncated));

    // Ending a read that includes the (short) final chunk with
    // finish_partial() is refused.
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 5).unwrap();
    let mut out = Vec::new();
    dec.update(&msg[hl + 5 * e..], &mut out).unwrap();
    assert_eq!(dec.finish_partial(&mut out), Err(CryptoError::Truncated));
    assert!(out.is_empty());

    // Starting at the wrong chunk index fails at the first chunk.
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 3).unwrap();
    let mut out = Vec::new();
    let err = dec.update(&ct, &mut out).unwrap_err();
    assert_eq!(err, CryptoError::Authentication { chunk: 3 });
    assert!(out.is_empty());

    // Fewer / more bytes than the span.
    assert_eq!(
        decrypt_range(&key(), &h, &ctx(), n as u64, r.clone(), &ct[1..]),
        Err(CryptoError::Truncated)
    );
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(
        decrypt_range(&key(), &h, &ctx(), n as u64, r.clone(), &longer),
        Err(CryptoError::Trailing)
    );

    // A flipped bit in chunk 3 is reported with its absolute index, and
    // nothing of chunk 3 is released.
    msg[hl + 3 * e + 7] ^= 1;
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 2).unwrap();
    let mut out = Vec::new();
    dec.update(&msg[hl + 2 * e..hl + 4 * e], &mut out).unwrap();
    assert_eq!(out.len(), CHUNK_SIZE);
    assert_eq!(
        dec.finish_partial(&mut out),
        Err(CryptoError::Authentication { chunk: 3 })
    );
    assert_eq!(out.len(), CHUNK_SIZE);
    assert_eq!(
        decrypt_range(
            &key(),
            &h,
            &ctx(),
            n as u64,
            r,
            &msg[hl + 2 * e..hl + 4 * e]
        ),
        Err(CryptoError::Authentication { chunk: 3 })
    );
}
