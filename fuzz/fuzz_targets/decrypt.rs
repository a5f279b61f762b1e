//! Decryption of arbitrary bytes with a fixed key and context, in both suites: never panics,
//! never returns plaintext for a forged message.
//!
//! The first input byte selects a mode (its low two bits) and, for the modes that encrypt,
//! the suite (bit 2: clear for 0x0003, set for 0x0001), so every mode runs under both:
//! - 0: the rest is a whole message (header + chunks, whatever suite its header names), fed
//!   to the streaming decryptor in pieces whose sizes come from the second byte, and to the
//!   one-shot `decrypt`.
//! - 1: the rest is the chunk stream behind a *valid* header of the chosen suite (so the
//!   commitment check passes and chunk handling is exercised).
//! - 2: the rest is a plaintext; encrypt it in the chosen suite, decrypt it in pieces, and
//!   check the round trip, then check that a flipped byte is caught and that the message
//!   relabelled as the other suite is refused.
//! - 3: ranged reads: the rest is a plaintext; encrypt it in the chosen suite and decrypt a
//!   range chosen from the next bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanctum_crypto::hazmat::encryptor_with_salt;
use sanctum_crypto::{
    Context, CryptoError, DataKey, Decryptor, Header, KeyRef, Suite, chunk_span, decrypt,
    decrypt_range,
};

fn key() -> DataKey {
    DataKey::from_bytes([0x5a; 32])
}

fn ctx() -> Context<'static> {
    Context {
        tenant: "fuzz",
        namespace: "ns",
        object_key: "obj",
        body_id: "body",
        kind: "blob-body",
    }
}

fn key_ref() -> KeyRef {
    KeyRef::new("fuzz-key", 1).unwrap()
}

/// Streams `body` through a decryptor in pieces of `piece` bytes.
fn stream(dec: Decryptor, body: &[u8], piece: usize) -> (Result<(), CryptoError>, Vec<u8>) {
    let mut dec = dec;
    let mut out = Vec::new();
    for p in body.chunks(piece.max(1)) {
        if let Err(e) = dec.update(p, &mut out) {
            return (Err(e), out);
        }
    }
    (dec.finish(&mut out), out)
}

/// The suite that bit 2 of the mode byte names.
fn suite(mode: u8) -> Suite {
    if mode & 4 == 0 {
        Suite::Blake3Aes256Gcm
    } else {
        Suite::Cobblestone256
    }
}

/// The other implemented suite.
fn other(suite: Suite) -> Suite {
    match suite {
        Suite::Blake3Aes256Gcm => Suite::Cobblestone256,
        Suite::Cobblestone256 => Suite::Blake3Aes256Gcm,
    }
}

fn valid_header(suite: Suite) -> Vec<u8> {
    encryptor_with_salt(suite, &key(), key_ref(), &ctx(), [3; 24])
        .unwrap()
        .1
}

fn encrypt_with(suite: Suite, plain: &[u8], piece: usize) -> Vec<u8> {
    let (mut enc, mut msg) =
        encryptor_with_salt(suite, &key(), key_ref(), &ctx(), [4; 24]).unwrap();
    for p in plain.chunks(piece.max(1)) {
        enc.update(p, &mut msg).unwrap();
    }
    enc.finish(&mut msg).unwrap();
    msg
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&piece, rest)) = rest.split_first() else {
        return;
    };
    let piece = 1 + piece as usize * 131;
    let suite = suite(mode);
    match mode % 4 {
        0 => {
            if let Ok((header, hl)) = Header::parse(rest) {
                if let Ok(dec) = Decryptor::new(&key(), &header, &ctx(), 0) {
                    let _ = stream(dec, &rest[hl..], piece);
                }
                let _ = decrypt(&key(), &header, hl, &ctx(), rest);
            }
        }
        1 => {
            let header = valid_header(suite);
            let (h, _) = Header::parse(&header).unwrap();
            let dec = Decryptor::new(&key(), &h, &ctx(), 0).unwrap();
            let (r, out) = stream(dec, rest, piece);
            // Random bytes never authenticate (2^-128).
            assert!(r.is_err());
            assert!(out.is_empty(), "unauthenticated plaintext released");
            let dec = Decryptor::new(&key(), &h, &ctx(), 0).unwrap();
            let mut out = Vec::new();
            if dec_partial(dec, rest, &mut out).is_ok() {
                // Only a whole number of verified chunks can be accepted, and
                // random data has none (except the empty input).
                assert!(rest.is_empty());
            }
            let mut msg = header.clone();
            msg.extend_from_slice(rest);
            assert!(decrypt(&key(), &h, header.len(), &ctx(), &msg).is_err());
        }
        2 => {
            let msg = encrypt_with(suite, rest, piece);
            let (h, hl) = Header::parse(&msg).unwrap();
            assert_eq!(h.suite, suite);
            let dec = Decryptor::new(&key(), &h, &ctx(), 0).unwrap();
            let (r, out) = stream(dec, &msg[hl..], piece.wrapping_mul(7) % 40_000 + 1);
            r.unwrap();
            assert_eq!(out, rest);
            assert_eq!(decrypt(&key(), &h, hl, &ctx(), &msg).unwrap(), rest);
            let mut bad = msg.clone();
            let at = hl + piece % (bad.len() - hl);
            bad[at] ^= 0x01;
            assert!(decrypt(&key(), &h, hl, &ctx(), &bad).is_err());
            // Relabelled as the other suite: the commitment no longer matches.
            let mut relabelled = msg.clone();
            relabelled[5..7].copy_from_slice(&other(suite).id().to_be_bytes());
            let (h, hl) = Header::parse(&relabelled).unwrap();
            assert_eq!(
                decrypt(&key(), &h, hl, &ctx(), &relabelled),
                Err(CryptoError::Commitment)
            );
        }
        _ => {
            let Some((range_bytes, plain)) = rest.split_at_checked(8) else {
                return;
            };
            let msg = encrypt_with(suite, plain, 16384);
            let (h, hl) = Header::parse(&msg).unwrap();
            let n = plain.len() as u64;
            let a = u32::from_le_bytes(range_bytes[..4].try_into().unwrap()) as u64 % (n + 2);
            let b = u32::from_le_bytes(range_bytes[4..].try_into().unwrap()) as u64 % (n + 2);
            let span = chunk_span(a..b, n);
            let ct = &msg[hl + span.ciphertext.start as usize..hl + span.ciphertext.end as usize];
            let got = decrypt_range(&key(), &h, &ctx(), n, a..b, ct).unwrap();
            let end = b.min(n) as usize;
            let start = (a as usize).min(end);
            assert_eq!(got, &plain[start..end]);
        }
    }
});

fn dec_partial(mut dec: Decryptor, body: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
    dec.update(body, out)?;
    dec.finish_partial(out)
}
