//! Behaviours every `KeyProvider` must have, run against each provider by its own test file.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use sanctum_keys::{KeyErrorKind, KeyProvider, WrappedKey};

/// A tenant id unique to this run: `<base>-<random hex>`.
pub fn tenant(base: &str) -> String {
    let mut r = [0u8; 6];
    SystemRandom::new().fill(&mut r).unwrap();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}-{hex}")
}

pub fn key() -> [u8; 32] {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).unwrap();
    k
}

/// A canonical, length-prefixed aad like the library's.
pub fn aad(tenant: &str, namespace: &str, purpose: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for f in [tenant, namespace, purpose] {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// Flips one bit in the middle of the base64 body of a ciphertext (after the last `:` if any).
pub fn tamper(wrapped: &WrappedKey) -> WrappedKey {
    let (prefix, body) = match wrapped.ciphertext.rfind(':') {
        Some(i) => wrapped.ciphertext.split_at(i + 1),
        None => ("", wrapped.ciphertext.as_str()),
    };
    let mut raw = B64.decode(body).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x01;
    WrappedKey {
        ciphertext: format!("{prefix}{}", B64.encode(raw)),
        ..wrapped.clone()
    }
}

#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: Result<T, sanctum_keys::KeyError>, kind: KeyErrorKind) {
    match r {
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind, kind, "expected {kind:?}, got {:?}: {e}", e.kind),
    }
}

pub async fn round_trip(p: &dyn KeyProvider) {
    let t = tenant("rt");
    let k = key();
    let a = aad(&t, "ns", "namespace-key");
    let w = p.wrap(&t, &k, &a).await.unwrap();
    assert_eq!(w.provider, p.kind());
    assert_eq!(w.kek_version, 1);
    assert!(
        !w.ciphertext.contains(&B64.encode(k)),
        "plaintext key in the ciphertext"
    );
    assert_eq!(*p.unwrap(&t, &w, &a).await.unwrap(), k);
    // A second wrap of the same key under the same version differs (random nonce) and unwraps.
    let w2 = p.wrap(&t, &k, &a).await.unwrap();
    assert_ne!(w2.ciphertext, w.ciphertext);
    assert_eq!(*p.unwrap(&t, &w2, &a).await.unwrap(), k);
    // The wrapped key survives a serde round trip.
    let json = serde_json::to_string(&w).unwrap();
    let back: WrappedKey = serde_json::from_str(&json).unwrap();
    assert_eq!(*p.unwrap(&t, &back, &a).await.unwrap(), k);
    p.health_check().await.unwrap();
}

pub async fn wrong_aad_and_tampering(p: &dyn KeyProvider) {
    let t = tenant("aad");
    let k = key();
    let a = aad(&t, "ns", "namespace-key");
    let w = p.wrap(&t, &k, &a).await.unwrap();
    assert_kind(
        p.unwrap(&t, &w, &aad(&t, "ns2", "namespace-key")).await,
        KeyErrorKind::Invalid,
    );
    assert_kind(p.unwrap(&t, &w, b"").await, KeyErrorKind::Invalid);
    assert_kind(p.unwrap(&t, &tamper(&w), &a).await, KeyErrorKind::Invalid);
    // Truncated, garbage, foreign provider, mismatched or unknown version.
    let truncated = WrappedKey {
        ciphertext: w.ciphertext[..w.ciphertext.len() - 8].to_string(),
        ..w.clone()
    };
    assert_kind(p.unwrap(&t, &truncated, &a).await, KeyErrorKind::Invalid);
    let garbage = WrappedKey {
        ciphertext: "not a ciphertext".into(),
        ..w.clone()
    };
    assert_kind(p.unwrap(&t, &garbage, &a).await, KeyErrorKind::Invalid);
    let foreign = WrappedKey {
        provider: "someone-else".into(),
        ..w.clone()
    };
    assert_kind(p.unwrap(&t, &foreign, &a).await, KeyErrorKind::Invalid);
    let other_version = WrappedKey {
        kek_version: 7,
        ..w.clone()
    };
    assert_kind(
        p.unwrap(&t, &other_version, &a).await,
        KeyErrorKind::Invalid,
    );
    // Rewrap checks the aad too.
    assert_kind(p.rewrap(&t, &w, b"other").await, KeyErrorKind::Invalid);
    // The original still works.
    assert_eq!(*p.unwrap(&t, &w, &a).await.unwrap(), k);
}

pub async fn rotation_and_rewrap(p: &dyn KeyProvider) {
    let t = tenant("rot");
    let k1 = key();
    let k2 = key();
    let a = aad(&t, "ns", "namespace-key");
    let w1 = p.wrap(&t, &k1, &a).await.unwrap();
    assert_eq!(w1.kek_version, 1);
    assert_eq!(p.rotate(&t).await.unwrap(), 2);
    let w2 = p.wrap(&t, &k2, &a).await.unwrap();
    assert_eq!(w2.kek_version, 2);
    assert_eq!(
        *p.unwrap(&t, &w1, &a).await.unwrap(),
        k1,
        "v1 wraps still unwrap"
    );
    assert_eq!(*p.unwrap(&t, &w2, &a).await.unwrap(), k2);
    let r = p.rewrap(&t, &w1, &a).await.unwrap();
    assert_eq!(r.kek_version, 2);
    assert_ne!(r.ciphertext, w1.ciphertext);
    assert_eq!(*p.unwrap(&t, &r, &a).await.unwrap(), k1);
    assert_kind(p.unwrap(&t, &r, b"other").await, KeyErrorKind::Invalid);
    assert_eq!(p.rotate(&t).await.unwrap(), 3);
    let r3 = p.rewrap(&t, &r, &a).await.unwrap();
    assert_eq!(r3.kek_version, 3);
    assert_eq!(*p.unwrap(&t, &r3, &a).await.unwrap(), k1);
}

pub async fn destroy_shreds(p: &dyn KeyProvider) {
    let t = tenant("shred");
    let k = key();
    let a = aad(&t, "ns", "namespace-key");
    let w1 = p.wrap(&t, &k, &a).await.unwrap();
    p.rotate(&t).await.unwrap();
    let w2 = p.wrap(&t, &k, &a).await.unwrap();
    p.destroy(&t).await.unwrap();
    for w in [&w1, &w2] {
        assert_kind(p.unwrap(&t, w, &a).await, KeyErrorKind::Destroyed);
        assert_kind(p.rewrap(&t, w, &a).await, KeyErrorKind::Destroyed);
        // Even with the wrong aad, the answer is Destroyed (the key is gone), never Ok.
        assert_kind(p.unwrap(&t, w, b"x").await, KeyErrorKind::Destroyed);
    }
    assert_kind(p.wrap(&t, &k, &a).await, KeyErrorKind::Destroyed);
    assert_kind(p.rotate(&t).await, KeyErrorKind::Destroyed);
    // Still destroyed after a refused wrap, and destroy is idempotent.
    assert_kind(p.unwrap(&t, &w1, &a).await, KeyErrorKind::Destroyed);
    p.destroy(&t).await.unwrap();
    assert_kind(p.unwrap(&t, &w2, &a).await, KeyErrorKind::Destroyed);
    assert_kind(p.wrap(&t, &k, &a).await, KeyErrorKind::Destroyed);
}

pub async fn destroy_unknown_tenant(p: &dyn KeyProvider) {
    let t = tenant("never");
    p.destroy(&t).await.unwrap();
    assert_kind(p.wrap(&t, &key(), b"a").await, KeyErrorKind::Destroyed);
    assert_kind(p.rotate(&t).await, KeyErrorKind::Destroyed);
}

pub async fn tenants_are_isolated(p: &dyn KeyProvider) {
    let a_t = tenant("iso-a");
    let b_t = tenant("iso-b");
    let c_t = tenant("iso-c");
    let k = key();
    let aad_a = aad(&a_t, "ns", "namespace-key");
    let w = p.wrap(&a_t, &k, &aad_a).await.unwrap();
    // b has a KEK of its own: a's wrap does not open under it, with a's aad or b's.
    p.wrap(&b_t, &key(), b"setup").await.unwrap();
    assert_kind(p.unwrap(&b_t, &w, &aad_a).await, KeyErrorKind::Invalid);
    assert_kind(
        p.unwrap(&b_t, &w, &aad(&b_t, "ns", "namespace-key")).await,
        KeyErrorKind::Invalid,
    );
    assert_kind(p.rewrap(&b_t, &w, &aad_a).await, KeyErrorKind::Invalid);
    // c has no KEK at all.
    assert_kind(p.unwrap(&c_t, &w, &aad_a).await, KeyErrorKind::NotFound);
    assert_kind(p.rotate(&c_t).await, KeyErrorKind::NotFound);
    // Destroying b leaves a alone.
    p.destroy(&b_t).await.unwrap();
    assert_eq!(*p.unwrap(&a_t, &w, &aad_a).await.unwrap(), k);
}

pub async fn invalid_tenants(p: &dyn KeyProvider) {
    let k = key();
    let good = p.wrap(&tenant("valid"), &k, b"a").await.unwrap();
    for bad in [
        "../x",
        "A",
        "",
        "a/b",
        "a.b",
        "-a",
        "a-",
        "x\0",
        "é",
        &"a".repeat(64),
    ] {
        assert_kind(p.wrap(bad, &k, b"a").await, KeyErrorKind::Invalid);
        assert_kind(p.unwrap(bad, &good, b"a").await, KeyErrorKind::Invalid);
        assert_kind(p.rewrap(bad, &good, b"a").await, KeyErrorKind::Invalid);
        assert_kind(p.rotate(bad).await, KeyErrorKind::Invalid);
        assert_kind(p.destroy(bad).await, KeyErrorKind::Invalid);
    }
}

pub async fn concurrent_first_wraps(p: &dyn KeyProvider) {
    let t = tenant("race");
    let a = aad(&t, "ns", "namespace-key");
    let (k1, k2, k3) = (key(), key(), key());
    let (r1, r2, r3) = tokio::join!(
        p.wrap(&t, &k1, &a),
        p.wrap(&t, &k2, &a),
        p.wrap(&t, &k3, &a)
    );
    for (w, k) in [(r1.unwrap(), k1), (r2.unwrap(), k2), (r3.unwrap(), k3)] {
        assert_eq!(w.kek_version, 1);
        assert_eq!(*p.unwrap(&t, &w, &a).await.unwrap(), k);
    }
}

/// Runs every shared behaviour.
pub async fn all(p: &dyn KeyProvider) {
    round_trip(p).await;
    wrong_aad_and_tampering(p).await;
    rotation_and_rewrap(p).await;
    destroy_shreds(p).await;
    destroy_unknown_tenant(p).await;
    tenants_are_isolated(p).await;
    invalid_tenants(p).await;
    concurrent_first_wraps(p).await;
}

/// Counters start at 0, only go up, are per tenant and name, and refuse bad names.
pub async fn counters_only_go_up(p: &dyn KeyProvider) {
    let t = tenant("counters");
    assert!(p.keeps_counters());
    assert_eq!(p.counter(&t, "ns/docs").await.unwrap(), 0);
    assert_eq!(p.raise_counter(&t, "ns/docs", 5).await.unwrap(), 5);
    assert_eq!(
        p.raise_counter(&t, "ns/docs", 3).await.unwrap(),
        5,
        "never down"
    );
    assert_eq!(p.counter(&t, "ns/docs").await.unwrap(), 5);
    assert_eq!(p.raise_counter(&t, "ns/docs", 6).await.unwrap(), 6);
    assert_eq!(p.counter(&t, "ns/other").await.unwrap(), 0);
    assert_eq!(p.counter(&tenant("counters"), "ns/docs").await.unwrap(), 0);
    assert_kind(p.counter(&t, "Bad Name").await, KeyErrorKind::Invalid);
    assert_kind(p.raise_counter(&t, "", 1).await, KeyErrorKind::Invalid);
}
