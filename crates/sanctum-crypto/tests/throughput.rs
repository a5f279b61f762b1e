//! A rough throughput check against raw ring AES-256-GCM (ignored by default):
//!
//! ```text
//! cargo test -p sanctum-crypto --release --test throughput -- --ignored --nocapture
//! ```
//!
//! It prints, in one run, raw ring sealing/opening a 256 MiB buffer in place
//! in 16 KiB chunks (the floor for data that streams through memory), the
//! envelope's streaming [`Encryptor`] and [`Decryptor`] fed the way
//! sanctum-storage feeds them, each as a ratio to raw ring, the time of a
//! small whole-message encrypt + decrypt in each suite (dominated by the key
//! derivation), the key derivation alone, and the cost of one salt.

mod common;

use common::{vector_ctx as ctx, vector_key_ref as key_ref};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sanctum_crypto::{
    CHUNK_SIZE, DataKey, Decryptor, ENCRYPTED_CHUNK_SIZE, Encryptor, Header, SALT_LEN, Suite,
    TAG_LEN, decrypt, fill_random,
};
use std::hint::black_box;
use std::time::Instant;

const TOTAL: usize = 256 << 20;
/// Plaintext pieces fed to `Encryptor::update` (sanctum-storage's BATCH).
const ENC_PIECE: usize = 256 << 10;
/// Ciphertext pieces fed to `Decryptor::update` (sanctum-storage's PIECE).
const DEC_PIECE: usize = 16 * ENCRYPTED_CHUNK_SIZE;
/// Runs per measurement; the best one counts.
const RUNS: usize = 5;

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn best_of<F: FnMut() -> f64>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn nonce(i: usize) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A suite's id, as docs/encryption.md writes it.
fn name(suite: Suite) -> String {
    format!("0x{:04x}", suite.id())
}

fn line(what: &str, secs: f64, raw: Option<f64>) {
    let rate = gbps(TOTAL, secs);
    match raw {
        Some(raw) => println!("{what:<52} {rate:5.2} GB/s  {:5.2}x raw time", secs / raw),
        None => println!("{what:<52} {rate:5.2} GB/s"),
    }
}

#[test]
#[ignore = "benchmark; run in release mode"]
fn throughput_vs_raw_ring() {
    let ctx = ctx();
    let key = DataKey::generate().unwrap();

    // Small whole messages, encrypted then parsed + decrypt(), in each suite: measured
    // first, before the big buffers exist (afterwards they time noticeably slower on the
    // test machine). Then the key derivation alone (`Decryptor::new` on a parsed header:
    // KDF, AES key setup, commitment check) and one salt (`fill_random`, 24 bytes).
    const ITERS: u32 = 20_000;
    let suites = [Suite::Blake3Aes256Gcm, Suite::Cobblestone256];
    let small: Vec<(String, f64)> = suites
        .into_iter()
        .flat_map(|suite| [300usize, 4096].map(|size| (suite, size)))
        .map(|(suite, size)| {
            let data = vec![0x5au8; size];
            let per = best_of(RUNS, || {
                let t = Instant::now();
                for _ in 0..ITERS {
                    let (enc, mut m) = Encryptor::with_suite(suite, &key, key_ref(), &ctx).unwrap();
                    enc.finish_with(black_box(&data), &mut m).unwrap();
                    let (h, hl) = Header::parse(&m).unwrap();
                    let p = decrypt(&key, &h, hl, &ctx, &m).unwrap();
                    black_box(p);
                }
                t.elapsed().as_secs_f64() / f64::from(ITERS)
            });
            let what = format!(
                "{size}-byte message encrypt + decrypt, suite {}",
                name(suite)
            );
            (what, per)
        })
        .collect();
    let derivation: Vec<(String, f64)> = suites
        .into_iter()
        .map(|suite| {
            let (_, m) = Encryptor::with_suite(suite, &key, key_ref(), &ctx).unwrap();
            let (h, _) = Header::parse(&m).unwrap();
            let per = best_of(RUNS, || {
                let t = Instant::now();
                for _ in 0..ITERS {
                    black_box(Decryptor::new(&key, black_box(&h), &ctx, 0).unwrap());
                }
                t.elapsed().as_secs_f64() / f64::from(ITERS)
            });
            (
                format!("key derivation (Decryptor::new), suite {}", name(suite)),
                per,
            )
        })
        .collect();
    let salt = best_of(RUNS, || {
        let mut salt = [0u8; SALT_LEN];
        let t = Instant::now();
        for _ in 0..ITERS {
            fill_random(black_box(&mut salt)).unwrap();
        }
        t.elapsed().as_secs_f64() / f64::from(ITERS)
    });

    let pt: Vec<u8> = (0..TOTAL).map(|i| i as u8).collect();

    // Raw ring: seal/open 16 KiB chunks in place, no framing.
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = pt.clone();
    let mut tags = Vec::with_capacity(TOTAL / CHUNK_SIZE);
    let raw_seal = best_of(RUNS, || {
        tags.clear();
        let t = Instant::now();
        for (i, c) in buf.chunks_mut(CHUNK_SIZE).enumerate() {
            tags.push(
                raw.seal_in_place_separate_tag(nonce(i), Aad::empty(), c)
                    .unwrap(),
            );
        }
        t.elapsed().as_secs_f64()
    });
    let mut sealed = Vec::with_capacity(TOTAL + tags.len() * TAG_LEN);
    for (c, tag) in buf.chunks(CHUNK_SIZE).zip(&tags) {
        sealed.extend_from_slice(c);
        sealed.extend_from_slice(tag.as_ref());
    }
    drop(buf);
    let mut work = sealed.clone();
    let raw_open = best_of(RUNS, || {
        work.copy_from_slice(&sealed);
        let t = Instant::now();
        for (i, c) in work.chunks_mut(ENCRYPTED_CHUNK_SIZE).enumerate() {
            raw.open_in_place(nonce(i), Aad::empty(), c).unwrap();
        }
        t.elapsed().as_secs_f64()
    });
    drop(work);

    // Raw ring with a copy into a separate 256 MiB output buffer.
    let mut dst: Vec<u8> = Vec::with_capacity(sealed.len());
    let raw_copy_seal = best_of(RUNS, || {
        dst.clear();
        let t = Instant::now();
        for (i, c) in pt.chunks(CHUNK_SIZE).enumerate() {
            let start = dst.len();
            dst.extend_from_slice(c);
            let tag = raw
                .seal_in_place_separate_tag(nonce(i), Aad::empty(), &mut dst[start..])
                .unwrap();
            dst.extend_from_slice(tag.as_ref());
        }
        t.elapsed().as_secs_f64()
    });
    let raw_copy_open = best_of(RUNS, || {
        dst.clear();
        let t = Instant::now();
        for (i, c) in sealed.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
            let start = dst.len();
            dst.extend_from_slice(c);
            let len = raw
                .open_in_place(nonce(i), Aad::empty(), &mut dst[start..])
                .unwrap()
                .len();
            dst.truncate(start + len);
        }
        t.elapsed().as_secs_f64()
    });
    drop(dst);
    drop(sealed);

    // Encryptor, 256 KiB pieces, as sanctum-storage's pipeline does: `out`
    // starts with room for a batch plus a chunk and is handed on (here:
    // dropped) and replaced once it holds a batch.
    let enc_storage = best_of(RUNS, || {
        let fresh = || Vec::with_capacity(ENC_PIECE + ENCRYPTED_CHUNK_SIZE);
        let t = Instant::now();
        let (mut enc, header) = Encryptor::new(&key, key_ref(), &ctx).unwrap();
        black_box(header);
        let mut out = fresh();
        for p in pt.chunks(ENC_PIECE) {
            enc.update(p, &mut out).unwrap();
            if out.len() >= ENC_PIECE {
                black_box(std::mem::replace(&mut out, fresh()));
            }
        }
        enc.finish(&mut out).unwrap();
        black_box(out);
        t.elapsed().as_secs_f64()
    });

    // Encryptor, 256 KiB pieces, into one reused 256 MiB message buffer.
    let mut msg = Vec::with_capacity(TOTAL + TOTAL / 1000 + 200);
    let enc_whole = best_of(RUNS, || {
        msg.clear();
        let t = Instant::now();
        let (mut enc, header) = Encryptor::new(&key, key_ref(), &ctx).unwrap();
        msg.extend_from_slice(&header);
        for p in pt.chunks(ENC_PIECE) {
            enc.update(p, &mut msg).unwrap();
        }
        enc.finish(&mut msg).unwrap();
        t.elapsed().as_secs_f64()
    });

    // Decryptor, 16 x 16400-byte pieces, each into a fresh
    // `Vec::with_capacity(piece.len())` that is handed on (here: checked a
    // little and dropped), as sanctum-storage does.
    let (header, hl) = Header::parse(&msg).unwrap();
    let body = &msg[hl..];
    let dec_storage = best_of(RUNS, || {
        let mut total = 0usize;
        let t = Instant::now();
        let mut dec = Decryptor::new(&key, &header, &ctx, 0).unwrap();
        for p in body.chunks(DEC_PIECE) {
            let mut out = Vec::with_capacity(p.len());
            dec.update(p, &mut out).unwrap();
            total += out.len();
            black_box(out);
        }
        let mut out = Vec::new();
        dec.finish(&mut out).unwrap();
        total += out.len();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(total, TOTAL);
        s
    });
    {
        // Correctness of the same feeding pattern.
        let mut dec = Decryptor::new(&key, &header, &ctx, 0).unwrap();
        let mut at = 0;
        for p in body.chunks(DEC_PIECE) {
            let mut out = Vec::with_capacity(p.len());
            dec.update(p, &mut out).unwrap();
            assert!(out[..] == pt[at..at + out.len()]);
            at += out.len();
        }
        let mut out = Vec::new();
        dec.finish(&mut out).unwrap();
        assert!(out[..] == pt[at..]);
    }

    // Decryptor into one reused 256 MiB buffer, in 64 KiB and odd pieces.
    let mut out = Vec::with_capacity(TOTAL);
    let mut dec_into_one = |piece: usize| {
        best_of(RUNS, || {
            out.clear();
            let t = Instant::now();
            let mut dec = Decryptor::new(&key, &header, &ctx, 0).unwrap();
            for p in body.chunks(piece) {
                dec.update(p, &mut out).unwrap();
            }
            dec.finish(&mut out).unwrap();
            let s = t.elapsed().as_secs_f64();
            assert!(out == pt);
            s
        })
    };
    let dec_64k = dec_into_one(64 << 10);
    let dec_odd = dec_into_one(10_000);
    drop(out);

    let dec_whole = best_of(RUNS, || {
        let t = Instant::now();
        let (h, hl) = Header::parse(&msg).unwrap();
        let v = decrypt(&key, &h, hl, &ctx, &msg).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(v.len(), TOTAL);
        s
    });

    println!();
    line("raw ring seal in place (16 KiB chunks)", raw_seal, None);
    line("raw ring open in place (16 KiB chunks)", raw_open, None);
    line(
        "raw ring copy+seal into a 256 MiB buffer",
        raw_copy_seal,
        Some(raw_seal),
    );
    line(
        "raw ring copy+open into a 256 MiB buffer",
        raw_copy_open,
        Some(raw_open),
    );
    line(
        "Encryptor, 256 KiB pieces, fresh out per batch",
        enc_storage,
        Some(raw_seal),
    );
    line(
        "Encryptor, 256 KiB pieces, into one 256 MiB buffer",
        enc_whole,
        Some(raw_seal),
    );
    line(
        "Decryptor, 16x16400 B pieces, fresh out per piece",
        dec_storage,
        Some(raw_open),
    );
    line(
        "Decryptor, 64 KiB pieces, into one 256 MiB buffer",
        dec_64k,
        Some(raw_open),
    );
    line(
        "Decryptor, 10000 B pieces, into one 256 MiB buffer",
        dec_odd,
        Some(raw_open),
    );
    line(
        "decrypt() whole message (allocates, faults in)",
        dec_whole,
        Some(raw_open),
    );

    let salt = ("one salt (fill_random, 24 bytes)".to_string(), salt);
    for (what, per) in small.iter().chain(&derivation).chain([&salt]) {
        println!("{what:<58} {:5.2} us", per * 1e6);
    }
}
