//! The attack suite: every tampering must be detected with the right error
//! and must not release the plaintext of any chunk that did not verify.
//!
//! Each case is checked three ways: the one-shot `decrypt` (all or nothing),
//! and the streaming `Decryptor` fed in several piece sizes (the fast path
//! that opens whole chunks straight into `out`, and the buffered path). For
//! the streaming runs, `out` starts with a canary and must afterwards hold
//! the canary followed by exactly the plaintext of the chunks that verified
//! before the failure.
//!
//! The encryption-side chunk-limit test needs a private constructor that
//! starts the counter near 2^38; it lives in the unit tests of `src/lib.rs`
//! (`encryption_stops_at_the_chunk_limit`). The decryption side is here.

mod common;

use common::{pattern, vector_ctx as ctx};
#[cfg(feature = "hazmat")]
use sanctum_crypto::hazmat::encryptor_with_salt;
use sanctum_crypto::{
    CHUNK_SIZE, Context, CryptoError, DataKey, Decryptor, ENCRYPTED_CHUNK_SIZE, Encryptor, Header,
    KeyRef, MAX_CHUNKS, Suite, TAG_LEN, ciphertext_len, decrypt, decrypt_range, encrypt,
    plaintext_len,
};

const C: usize = CHUNK_SIZE;
const E: usize = ENCRYPTED_CHUNK_SIZE;
const CANARY: &[u8] = b"canary";
/// 6 full chunks and a 1696-byte final chunk (7 chunks, indices 0..=6).
const N: usize = 100_000;
const LAST: usize = 6;

fn key() -> DataKey {
    DataKey::from_bytes([0x42; 32])
}

fn key_ref() -> KeyRef {
    KeyRef::new("ns-docs", 3).unwrap()
}

struct Fixture {
    msg: Vec<u8>,
    h: usize,
    pt: Vec<u8>,
}

fn fixture_with(n: usize) -> Fixture {
    let pt = pattern(n);
    let msg = encrypt(&key(), key_ref(), &ctx(), &pt).unwrap();
    let h = Header::parse(&msg).unwrap().1;
    Fixture { msg, h, pt }
}

fn fixture() -> Fixture {
    let f = fixture_with(N);
    assert_eq!(f.h, 78);
    assert_eq!(f.msg.len(), f.h + 6 * E + (N - 6 * C) + TAG_LEN);
    f
}

impl Fixture {
    /// Byte range of chunk `k` in the message.
    fn chunk(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.h + k * E;
        start..(start + E).min(self.msg.len())
    }
}

/// Streaming decryption of `msg` in pieces of `piece` bytes. Returns the
/// result and `out` (which starts with CANARY).
fn stream(
    key: &DataKey,
    ctx: &Context<'_>,
    msg: &[u8],
    piece: usize,
) -> (Result<(), CryptoError>, Vec<u8>) {
    let mut out = CANARY.to_vec();
    let r = (|| {
        let (h, hl) = Header::parse(msg)?;
        let mut dec = Decryptor::new(key, &h, ctx, 0)?;
        for p in msg[hl..].chunks(piece) {
            dec.update(p, &mut out)?;
        }
        dec.finish(&mut out)
    })();
    (r, out)
}

fn one_shot(key: &DataKey, ctx: &Context<'_>, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (h, hl) = Header::parse(msg)?;
    decrypt(key, &h, hl, ctx, msg)
}

/// Asserts that decrypting `msg` fails with an error accepted by `want` and
/// releases only the plaintext of the first `released` chunks of `pt`.
fn expect_with(
    key: &DataKey,
    ctx: &Context<'_>,
    msg: &[u8],
    pt: &[u8],
    want: impl Fn(&CryptoError) -> bool,
    released: usize,
    what: &str,
) {
    match one_shot(key, ctx, msg) {
        Ok(_) => panic!("{what}: one-shot decrypt succeeded"),
        Err(e) => assert!(want(&e), "{what}: one-shot error {e:?}"),
    }
    for piece in [usize::MAX, E, 3 * E, E - 1, 1000, 16401] {
        let (r, out) = stream(key, ctx, msg, piece);
        match r {
            Ok(()) => panic!("{what}: streaming decrypt (piece {piece}) succeeded"),
            Err(e) => assert!(want(&e), "{what}: streaming (piece {piece}) error {e:?}"),
        }
        let released_len = (released * C).min(pt.len());
        assert_eq!(
            out.len(),
            CANARY.len() + released_len,
            "{what}: piece {piece}: released bytes"
        );
        assert_eq!(&out[..CANARY.len()], CANARY, "{what}: canary");
        assert!(
            out[CANARY.len()..] == pt[..released_len],
            "{what}: released bytes differ"
        );
    }
}

fn expect(msg: &[u8], pt: &[u8], want: CryptoError, released: usize, what: &str) {
    expect_with(&key(), &ctx(), msg, pt, |e| *e == want, released, what);
}

fn is_header(e: &CryptoError) -> bool {
    matches!(e, CryptoError::Header(_))
}

#[test]
fn intact_message_decrypts() {
    let f = fixture();
    assert_eq!(one_shot(&key(), &ctx(), &f.msg).unwrap(), f.pt);
    for piece in [usize::MAX, E, 1000, 16401, 1] {
        let (r, out) = stream(&key(), &ctx(), &f.msg, piece);
        r.unwrap();
        assert_eq!(&out[CANARY.len()..], &f.pt[..]);
    }
}

// ---------------------------------------------------------------- header

#[test]
fn every_header_bit_flip_is_rejected() {
    let f = fixture();
    // Field layout of this 78-byte header (key id "ns-docs").
    for byte in 0..f.h {
        for bit in 0..8 {
            let mut m = f.msg.clone();
            m[byte] ^= 1 << bit;
            let flipped = m[byte];
            let what = format!("header byte {byte} bit {bit}");
            let want: Box<dyn Fn(&CryptoError) -> bool> = match byte {
                0..=3 => Box::new(|e| *e == CryptoError::Header("bad magic")),
                4 => Box::new(|e| *e == CryptoError::Header("unsupported version")),
                // Another implemented suite derives another key: the commitment no longer
                // matches (the suite id is in the context).
                5 | 6 => match u16::from_be_bytes([m[5], m[6]]) {
                    id if Suite::from_id(id).is_some() => {
                        Box::new(|e| *e == CryptoError::Commitment)
                    }
                    id => Box::new(move |e| *e == CryptoError::UnsupportedSuite(id)),
                },
                7 => Box::new(move |e| *e == CryptoError::UnknownFlags(flipped)),
                8 | 9 => Box::new(is_header), // header_len
                10 => Box::new(is_header),    // key_id_len
                // key_id: either no longer [a-z0-9-], or another (valid) key
                // id that the commitment does not cover.
                11..=17 => Box::new(|e| is_header(e) || *e == CryptoError::Commitment),
                // epoch, salt, commitment
                _ => Box::new(|e| *e == CryptoError::Commitment),
            };
            expect_with(&key(), &ctx(), &m, &f.pt, want, 0, &what);
        }
    }
}

/// A message of either suite relabelled as the other one: 0x0003 as 0x0001 and 0x0001 as
/// 0x0003. The suite id is in the header prefix, hence in the context, and the other suite's
/// KDF derives another commitment: refused before any chunk, in both directions.
#[test]
fn relabelling_the_suite_is_refused_both_ways() {
    let pt = pattern(N);
    for (from, to) in [
        (Suite::Blake3Aes256Gcm, Suite::Cobblestone256),
        (Suite::Cobblestone256, Suite::Blake3Aes256Gcm),
    ] {
        let (enc, mut msg) = Encryptor::with_suite(from, &key(), key_ref(), &ctx()).unwrap();
        enc.finish_with(&pt, &mut msg).unwrap();
        assert_eq!(msg[5..7], from.id().to_be_bytes());
        assert_eq!(one_shot(&key(), &ctx(), &msg).unwrap(), pt);
        msg[5..7].copy_from_slice(&to.id().to_be_bytes());
        let what = format!("{from:?} relabelled as {to:?}");
        expect(&msg, &pt, CryptoError::Commitment, 0, &what);
    }
}

#[test]
fn unknown_suite_flags_and_oversized_lengths() {
    let f = fixture();
    let set = |at: usize, bytes: &[u8]| {
        let mut m = f.msg.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    // Relabelled as the other implemented suite: the derivation differs, so the commitment fails.
    assert_eq!(f.msg[5..7], Suite::default().id().to_be_bytes());
    let other = match Suite::default() {
        Suite::Cobblestone256 => Suite::Blake3Aes256Gcm,
        Suite::Blake3Aes256Gcm => Suite::Cobblestone256,
    };
    expect(
        &set(5, &other.id().to_be_bytes()),
        &f.pt,
        CryptoError::Commitment,
        0,
        "suite relabelled",
    );
    // A downgrade to "suite 0" or an unknown future suite.
    for suite in [0x0000u16, 0x0002, 0x0004, 0xffff] {
        expect(
            &set(5, &suite.to_be_bytes()),
            &f.pt,
            CryptoError::UnsupportedSuite(suite),
            0,
            "suite",
        );
    }
    for flags in [0x01u8, 0x80, 0xff] {
        expect(
            &set(7, &[flags]),
            &f.pt,
            CryptoError::UnknownFlags(flags),
            0,
            "flags",
        );
    }
    for hl in [513u16, 4096, 0xffff] {
        expect(
            &set(8, &hl.to_be_bytes()),
            &f.pt,
            CryptoError::Header("header_len exceeds the maximum"),
            0,
            "header_len",
        );
    }
    for hl in [0u16, 71] {
        expect(
            &set(8, &hl.to_be_bytes()),
            &f.pt,
            CryptoError::Header("header_len below the minimum"),
            0,
            "small header_len",
        );
    }
    // header_len at the bound but disagreeing with the fields.
    expect(
        &set(8, &512u16.to_be_bytes()),
        &f.pt,
        CryptoError::Header("header_len disagrees with the fields"),
        0,
        "512",
    );
    // key_id_len too long, even with a consistent header_len.
    for kl in [65u8, 255] {
        let mut m = set(10, &[kl]);
        m[8..10].copy_from_slice(&(71 + kl as u16).to_be_bytes());
        expect(
            &m,
            &f.pt,
            CryptoError::Header("key id too long"),
            0,
            "key_id_len",
        );
    }
    expect(
        &set(10, &[0]),
        &f.pt,
        CryptoError::Header("empty key id"),
        0,
        "key_id_len 0",
    );
    // A bad character in the key id.
    expect(
        &set(11, b"N"),
        &f.pt,
        CryptoError::Header("key id has a character outside [a-z0-9-]"),
        0,
        "key_id char",
    );
}

#[test]
fn decrypt_checks_header_arguments() {
    let f = fixture();
    let (h, hl) = Header::parse(&f.msg).unwrap();
    assert!(matches!(
        decrypt(&key(), &h, hl + 1, &ctx(), &f.msg),
        Err(CryptoError::Header(_))
    ));
    let other = fixture();
    let (h2, _) = Header::parse(&other.msg).unwrap();
    // A header that is not the one in front of this message.
    assert!(matches!(
        decrypt(&key(), &h2, hl, &ctx(), &f.msg),
        Err(CryptoError::Header(_))
    ));
    assert_eq!(
        decrypt(&key(), &h, hl, &ctx(), &f.msg[..hl - 1]),
        Err(CryptoError::Truncated)
    );
}

// ---------------------------------------------------------------- chunks

#[test]
fn bit_flips_in_chunk_bodies_and_tags() {
    let f = fixture();
    for k in [0, 3, LAST] {
        let r = f.chunk(k);
        let body_at = r.start + 5;
        let tag_at = r.end - 3;
        for (at, part) in [
            (body_at, "body"),
            (tag_at, "tag"),
            (r.start, "first byte"),
            (r.end - 1, "last byte"),
        ] {
            for bit in [0, 7] {
                let mut m = f.msg.clone();
                m[at] ^= 1 << bit;
                expect(
                    &m,
                    &f.pt,
                    CryptoError::Authentication { chunk: k as u64 },
                    k,
                    &format!("chunk {k} {part} bit {bit}"),
                );
            }
        }
    }
}

#[test]
fn truncation() {
    let f = fixture();
    let h = f.h;
    // Dropping the final chunk: the stream ends on a 16400-byte boundary.
    // The held-back chunk 5 is never released.
    expect(
        &f.msg[..h + 6 * E],
        &f.pt,
        CryptoError::Truncated,
        5,
        "exact boundary after chunk 5",
    );
    expect(
        &f.msg[..h + 3 * E],
        &f.pt,
        CryptoError::Truncated,
        2,
        "exact boundary after chunk 2",
    );
    expect(
        &f.msg[..h + E],
        &f.pt,
        CryptoError::Truncated,
        0,
        "exact boundary after chunk 0",
    );
    // Inside the last chunk.
    expect(
        &f.msg[..f.msg.len() - 1],
        &f.pt,
        CryptoError::Authentication { chunk: 6 },
        6,
        "last chunk minus 1",
    );
    expect(
        &f.msg[..h + 6 * E + 100],
        &f.pt,
        CryptoError::Authentication { chunk: 6 },
        6,
        "inside the last chunk",
    );
    // Inside a middle chunk: the stub looks like a final chunk and fails.
    expect(
        &f.msg[..h + 3 * E + 100],
        &f.pt,
        CryptoError::Authentication { chunk: 3 },
        3,
        "inside chunk 3",
    );
    // A final chunk shorter than the tag (0..=15 bytes): Truncated, no panic.
    for stub in 1..TAG_LEN {
        expect(
            &f.msg[..h + 6 * E + stub],
            &f.pt,
            CryptoError::Truncated,
            6,
            "final chunk shorter than the tag",
        );
    }
    // Header only.
    expect(&f.msg[..h], &f.pt, CryptoError::Truncated, 0, "header only");
    // A partial header, and nothing at all.
    for n in [0, 1, 10, 40, h - 1] {
        assert_eq!(
            Header::parse(&f.msg[..n]).unwrap_err(),
            CryptoError::Truncated,
            "{n} bytes"
        );
    }
    // A tiny message cut inside its only (final) chunk, below the tag size.
    let small = fixture_with(0);
    for n in small.h..small.msg.len() {
        expect(
            &small.msg[..n],
            &small.pt,
            CryptoError::Truncated,
            0,
            "empty message cut",
        );
    }
}

#[test]
fn extension() {
    let f = fixture();
    // Appended bytes: the final chunk grows and fails to authenticate. (The
    // stream cannot tell where a short chunk ends until the end of input.)
    for extra in [1usize, 15, 16, 1000] {
        let mut m = f.msg.clone();
        m.extend(std::iter::repeat_n(0xA5, extra));
        expect(
            &m,
            &f.pt,
            CryptoError::Authentication { chunk: 6 },
            6,
            &format!("{extra} appended bytes"),
        );
    }
    // An appended whole chunk (a copy of chunk 2).
    let mut m = f.msg.clone();
    m.extend_from_slice(&f.msg[f.chunk(2)]);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 6 },
        6,
        "appended chunk",
    );
    // Appending to an exact-multiple message (whose final chunk is empty)
    // until the old final chunk is full-size: the stream now ends on a
    // boundary.
    let g = fixture_with(2 * C);
    let mut m = g.msg.clone();
    m.extend(std::iter::repeat_n(0, C));
    expect(
        &m,
        &g.pt,
        CryptoError::Truncated,
        2,
        "exact multiple extended to a boundary",
    );
    // When the caller knows where the message ends (from trusted or stored
    // length), extra bytes are reported as Trailing before any decryption.
    let (hdr, hl) = Header::parse(&f.msg).unwrap();
    let mut body = f.msg[hl..].to_vec();
    body.push(0);
    assert_eq!(
        decrypt_range(&key(), &hdr, &ctx(), N as u64, 0..N as u64, &body),
        Err(CryptoError::Trailing)
    );
    body.truncate(body.len() - 2);
    assert_eq!(
        decrypt_range(&key(), &hdr, &ctx(), N as u64, 0..N as u64, &body),
        Err(CryptoError::Truncated)
    );
    // And the stored length itself is checked per the C2SP rules.
    assert_eq!(plaintext_len((f.msg.len() - hl) as u64), Ok(N as u64));
    assert_eq!(plaintext_len((6 * E) as u64), Err(CryptoError::Truncated));
    assert_eq!(
        plaintext_len((6 * E + 15) as u64),
        Err(CryptoError::Truncated)
    );
}

#[test]
fn reordering_and_replay() {
    let f = fixture();
    // Swap chunks 1 and 4.
    let mut m = f.msg.clone();
    let (c1, c4) = (f.msg[f.chunk(1)].to_vec(), f.msg[f.chunk(4)].to_vec());
    m[f.chunk(1)].copy_from_slice(&c4);
    m[f.chunk(4)].copy_from_slice(&c1);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 1 },
        1,
        "swap 1 and 4",
    );
    // Swap chunks 0 and 5 (first and last full chunk).
    let mut m = f.msg.clone();
    let (c0, c5) = (f.msg[f.chunk(0)].to_vec(), f.msg[f.chunk(5)].to_vec());
    m[f.chunk(0)].copy_from_slice(&c5);
    m[f.chunk(5)].copy_from_slice(&c0);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 0 },
        0,
        "swap 0 and 5",
    );
    // Replay chunk 1 at position 4.
    let mut m = f.msg.clone();
    m[f.chunk(4)].copy_from_slice(&c1);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 4 },
        4,
        "replay 1 at 4",
    );
    // Duplicate chunk 2 (insert a copy after it).
    let mut m = f.msg[..f.chunk(2).end].to_vec();
    m.extend_from_slice(&f.msg[f.chunk(2)]);
    m.extend_from_slice(&f.msg[f.chunk(3).start..]);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 3 },
        3,
        "duplicate chunk 2",
    );
    // Drop a middle chunk.
    let mut m = f.msg[..f.chunk(2).start].to_vec();
    m.extend_from_slice(&f.msg[f.chunk(3).start..]);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 2 },
        2,
        "drop chunk 2",
    );
    // Replace the short final chunk with a full one: the stream now ends on
    // a boundary and the held-back chunk is never released.
    let mut m = f.msg[..f.chunk(LAST).start].to_vec();
    m.extend_from_slice(&c1);
    expect(&m, &f.pt, CryptoError::Truncated, 6, "full chunk as final");
    // Replay the final chunk of one message as the final chunk at another
    // index of the same message (after chunk 2).
    let mut m = f.msg[..f.chunk(3).start].to_vec();
    m.extend_from_slice(&f.msg[f.chunk(LAST)]);
    expect(
        &m,
        &f.pt,
        CryptoError::Authentication { chunk: 3 },
        3,
        "final chunk moved forward",
    );
}

// ---------------------------------------------------------------- splicing

#[test]
fn header_and_body_swaps_between_messages() {
    // Same key, same context, different salts.
    let a = fixture();
    let b = fixture();
    assert_ne!(a.msg[..a.h], b.msg[..b.h], "salts differ");
    let mut ha_bb = a.msg[..a.h].to_vec();
    ha_bb.extend_from_slice(&b.msg[b.h..]);
    expect(
        &ha_bb,
        &a.pt,
        CryptoError::Authentication { chunk: 0 },
        0,
        "header A + body B",
    );
    let mut hb_ba = b.msg[..b.h].to_vec();
    hb_ba.extend_from_slice(&a.msg[a.h..]);
    expect(
        &hb_ba,
        &a.pt,
        CryptoError::Authentication { chunk: 0 },
        0,
        "header B + body A",
    );
    // Splicing one chunk from B into A.
    let mut m = a.msg.clone();
    m[a.chunk(2)].copy_from_slice(&b.msg[b.chunk(2)]);
    expect(
        &m,
        &a.pt,
        CryptoError::Authentication { chunk: 2 },
        2,
        "chunk 2 from B",
    );
    // Final chunk from B.
    let mut m = a.msg[..a.chunk(LAST).start].to_vec();
    m.extend_from_slice(&b.msg[b.chunk(LAST)]);
    expect(
        &m,
        &a.pt,
        CryptoError::Authentication { chunk: 6 },
        6,
        "final chunk from B",
    );

    // Two objects: the header of one, read as the other, fails the
    // commitment (the context differs).
    let other_ctx = Context {
        object_key: "a/c.txt",
        ..ctx()
    };
    let c = encrypt(&key(), key_ref(), &other_ctx, &a.pt).unwrap();
    let mut hc_ba = c[..a.h].to_vec();
    hc_ba.extend_from_slice(&a.msg[a.h..]);
    expect(
        &hc_ba,
        &a.pt,
        CryptoError::Commitment,
        0,
        "header of another object",
    );
    // The whole message of another object (copied under this key).
    expect(
        &c,
        &a.pt,
        CryptoError::Commitment,
        0,
        "message of another object",
    );
}

#[test]
fn other_context_or_key_fails_the_commitment() {
    let f = fixture();
    let base = ctx();
    let others = [
        Context {
            tenant: "acme2",
            ..base
        },
        Context {
            namespace: "docs2",
            ..base
        },
        Context {
            object_key: "a/b.txt2",
            ..base
        },
        Context {
            body_id: "01j0000000000000000000001",
            ..base
        },
        Context {
            kind: "blob-meta",
            ..base
        },
        Context {
            kind: "record",
            ..base
        },
        // Bytes moved across a field boundary.
        Context {
            tenant: "acm",
            namespace: "edocs",
            ..base
        },
        Context { tenant: "", ..base },
    ];
    for other in &others {
        expect_with(
            &key(),
            other,
            &f.msg,
            &f.pt,
            |e| *e == CryptoError::Commitment,
            0,
            &format!("{other:?}"),
        );
    }
    let wrong_key = DataKey::from_bytes([0x43; 32]);
    expect_with(
        &wrong_key,
        &ctx(),
        &f.msg,
        &f.pt,
        |e| *e == CryptoError::Commitment,
        0,
        "another key",
    );
    // Another epoch or key id in the header (e.g. an attacker rewriting the
    // key reference) fails too: the header prefix is in the context.
    let mut m = f.msg.clone();
    m[21] = 4; // epoch 3 -> 4
    expect(&m, &f.pt, CryptoError::Commitment, 0, "epoch rewritten");
}

// ---------------------------------------------------------------- edges

#[test]
fn empty_and_exact_multiples_round_trip() {
    for n in [0usize, C, 2 * C] {
        let f = fixture_with(n);
        assert_eq!(f.msg.len() as u64 - f.h as u64, ciphertext_len(n as u64));
        assert_eq!(
            f.msg.len(),
            f.h + (n / C) * E + TAG_LEN,
            "{n}: empty final chunk"
        );
        assert_eq!(one_shot(&key(), &ctx(), &f.msg).unwrap(), f.pt);
        for piece in [usize::MAX, E, 1000] {
            let (r, out) = stream(&key(), &ctx(), &f.msg, piece);
            r.unwrap();
            assert_eq!(&out[CANARY.len()..], &f.pt[..]);
        }
        // Dropping the empty final chunk is a truncation.
        let cut = &f.msg[..f.msg.len() - TAG_LEN];
        expect(
            cut,
            &f.pt,
            CryptoError::Truncated,
            (n / C).saturating_sub(1),
            &format!("{n}: no final chunk"),
        );
    }
}

#[test]
fn decryption_at_the_chunk_limit() {
    let f = fixture();
    let (h, _) = Header::parse(&f.msg).unwrap();
    assert_eq!(
        Decryptor::new(&key(), &h, &ctx(), MAX_CHUNKS).unwrap_err(),
        CryptoError::Limit
    );
    assert_eq!(
        Decryptor::new(&key(), &h, &ctx(), u64::MAX).unwrap_err(),
        CryptoError::Limit
    );
    // At index 2^38 - 1 only a final chunk fits: a full chunk is refused
    // before any decryption (a chunk with an index >= 2^38 cannot follow).
    let mut dec = Decryptor::new(&key(), &h, &ctx(), MAX_CHUNKS - 1).unwrap();
    let mut out = Vec::new();
    let full = vec![0u8; E + 1];
    assert_eq!(dec.update(&full, &mut out), Err(CryptoError::Limit));
    assert!(out.is_empty());
    // Poisoned afterwards.
    assert_eq!(dec.update(b"x", &mut out), Err(CryptoError::Limit));
    assert_eq!(dec.finish(&mut out), Err(CryptoError::Limit));
    assert_eq!(
        plaintext_len(MAX_CHUNKS * E as u64 + TAG_LEN as u64),
        Err(CryptoError::Limit)
    );
}

#[test]
fn decryptor_is_poisoned_after_an_error() {
    let f = fixture();
    let (h, hl) = Header::parse(&f.msg).unwrap();
    let mut m = f.msg.clone();
    m[f.chunk(1).start] ^= 1;
    let mut dec = Decryptor::new(&key(), &h, &ctx(), 0).unwrap();
    let mut out = Vec::new();
    let err = dec.update(&m[hl..], &mut out).unwrap_err();
    assert_eq!(err, CryptoError::Authentication { chunk: 1 });
    let len = out.len();
    // Feeding the intact rest does not resume decryption.
    assert_eq!(
        dec.update(&f.msg[f.chunk(2).start..], &mut out),
        Err(err.clone())
    );
    assert_eq!(out.len(), len);
    assert_eq!(dec.finish_partial(&mut out), Err(err));
}

/// Needs a fixed salt, so the `hazmat` feature (on in CI's `--all-features` run).
#[cfg(feature = "hazmat")]
#[test]
fn encryptor_output_is_independent_of_update_splits() {
    // Two encryptors with the same salt produce identical output however the
    // plaintext is split (the format has one chunking per length).
    let pt = pattern(3 * C + 17);
    let salt = [9u8; 24];
    let run = |splits: &[usize]| {
        let (mut enc, mut out) =
            encryptor_with_salt(Suite::default(), &key(), key_ref(), &ctx(), salt).unwrap();
        let mut at = 0;
        for &s in splits {
            enc.update(&pt[at..s], &mut out).unwrap();
            at = s;
        }
        enc.update(&pt[at..], &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    };
    let a = run(&[]);
    assert_eq!(a, run(&[0, 1, C - 1, C, C + 1, 2 * C, 3 * C]));
    assert_eq!(a, run(&[5000, 40000]));
}
