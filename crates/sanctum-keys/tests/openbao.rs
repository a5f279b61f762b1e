//! OpenBao Transit against a real server (`.ci/openbao.sh` starts one).
//!
//! Needs `SANCTUM_TEST_OPENBAO_ADDR` and `SANCTUM_TEST_OPENBAO_TOKEN`. Without them each test prints
//! "skipped: ..." and passes, except when `CI=true`: CI must run them, so there they fail.

mod common;

use std::time::Duration;

use common::{aad, assert_kind, key, tenant};
use sanctum_keys::{KeyErrorKind, KeyProvider, OpenBaoTransit};

const PREFIX: &str = "sanctum-test-";

fn server() -> Option<(String, String)> {
    let addr = std::env::var("SANCTUM_TEST_OPENBAO_ADDR").ok();
    let token = std::env::var("SANCTUM_TEST_OPENBAO_TOKEN").ok();
    match (addr, token) {
        (Some(a), Some(t)) if !a.is_empty() && !t.is_empty() => Some((a, t)),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but SANCTUM_TEST_OPENBAO_ADDR / SANCTUM_TEST_OPENBAO_TOKEN are unset: \
                     source .ci/openbao.sh before cargo test"
                );
            }
            eprintln!(
                "skipped: SANCTUM_TEST_OPENBAO_ADDR / SANCTUM_TEST_OPENBAO_TOKEN unset (source \
                 .ci/openbao.sh to run the OpenBao tests)"
            );
            None
        }
    }
}

fn provider() -> Option<OpenBaoTransit> {
    let (addr, token) = server()?;
    Some(OpenBaoTransit::new(&addr, token, "transit", PREFIX).unwrap())
}

/// Raw `GET /v1/transit/keys/<name>` status, to look behind the provider.
async fn key_status(name: &str) -> u16 {
    let (addr, token) = server().unwrap();
    reqwest::Client::new()
        .get(format!(
            "{}/v1/transit/keys/{name}",
            addr.trim_end_matches('/')
        ))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn round_trip() {
    let Some(p) = provider() else { return };
    assert_eq!(p.kind(), "openbao-transit");
    assert!(!p.is_development());
    common::round_trip(&p).await;
}

#[tokio::test]
async fn wrong_aad_and_tampering() {
    let Some(p) = provider() else { return };
    common::wrong_aad_and_tampering(&p).await;
}

#[tokio::test]
async fn rotation_and_rewrap() {
    let Some(p) = provider() else { return };
    common::rotation_and_rewrap(&p).await;
}

#[tokio::test]
async fn destroy_shreds() {
    let Some(p) = provider() else { return };
    common::destroy_shreds(&p).await;
}

#[tokio::test]
async fn destroy_unknown_tenant() {
    let Some(p) = provider() else { return };
    common::destroy_unknown_tenant(&p).await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let Some(p) = provider() else { return };
    common::tenants_are_isolated(&p).await;
}

#[tokio::test]
async fn invalid_tenants() {
    let Some(p) = provider() else { return };
    common::invalid_tenants(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_wraps() {
    let Some(p) = provider() else { return };
    common::concurrent_first_wraps(&p).await;
}

/// The Transit key really is a derived, deletable aes256-gcm96 key, and destroy really deletes it
/// (leaving only the tombstone); a refused wrap does not re-create it.
#[tokio::test]
async fn transit_key_lifecycle() {
    let Some(p) = provider() else { return };
    let t = tenant("life");
    let name = p.key_name(&t);
    assert_eq!(name, format!("{PREFIX}{t}"));
    assert_eq!(key_status(&name).await, 404);
    let a = aad(&t, "ns", "namespace-key");
    let w = p.wrap(&t, &key(), &a).await.unwrap();
    assert!(w.ciphertext.starts_with("vault:v1:"), "{}", w.ciphertext);

    let (addr, token) = server().unwrap();
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/transit/keys/{name}",
            addr.trim_end_matches('/')
        ))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["type"], "aes256-gcm96");
    assert_eq!(info["data"]["derived"], true);
    assert_eq!(info["data"]["deletion_allowed"], true);
    assert_eq!(info["data"]["exportable"], false);

    p.destroy(&t).await.unwrap();
    assert_eq!(key_status(&name).await, 404, "the tenant's key is deleted");
    assert_eq!(
        key_status(&format!("{name}.destroyed")).await,
        200,
        "tombstone"
    );
    assert_kind(p.wrap(&t, &key(), &a).await, KeyErrorKind::Destroyed);
    assert_eq!(
        key_status(&name).await,
        404,
        "a refused wrap re-creates nothing"
    );
    assert_kind(p.unwrap(&t, &w, &a).await, KeyErrorKind::Destroyed);
}

/// A key deleted behind the provider's back (no tombstone) reports NotFound, not Destroyed:
/// Transit alone cannot tell "never existed" from "deleted".
#[tokio::test]
async fn key_deleted_elsewhere_is_not_found() {
    let Some(p) = provider() else { return };
    let t = tenant("gone");
    let w = p.wrap(&t, &key(), b"a").await.unwrap();
    let (addr, token) = server().unwrap();
    let status = reqwest::Client::new()
        .delete(format!(
            "{}/v1/transit/keys/{}",
            addr.trim_end_matches('/'),
            p.key_name(&t)
        ))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    assert_kind(p.unwrap(&t, &w, b"a").await, KeyErrorKind::NotFound);
}

#[tokio::test]
async fn bad_token_is_denied_and_not_leaked() {
    let Some((addr, _)) = server() else { return };
    let secret = "s.definitely-not-a-valid-token-1234";
    let p = OpenBaoTransit::new(&addr, secret.to_string(), "transit", PREFIX).unwrap();
    assert!(!format!("{p:?}").contains(secret));
    let t = tenant("deny");
    for err in [
        p.wrap(&t, &key(), b"a").await.unwrap_err(),
        p.rotate(&t).await.unwrap_err(),
        p.health_check().await.unwrap_err(),
    ] {
        assert_eq!(err.kind, KeyErrorKind::Denied, "{err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(secret), "token leaked: {text}");
    }
}

#[tokio::test]
async fn missing_mount_is_permanent() {
    let Some((addr, token)) = server() else {
        return;
    };
    let p = OpenBaoTransit::new(&addr, token, "no-such-mount", PREFIX).unwrap();
    let err = p.wrap(&tenant("mount"), &key(), b"a").await.unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Permanent, "{err}");
}

/// Needs no server: nothing listens on port 1 of the loopback.
#[tokio::test]
async fn unreachable_server_is_transient() {
    let secret = "tok-unreachable-987";
    let p = OpenBaoTransit::new("http://127.0.0.1:1", secret.into(), "transit", PREFIX)
        .unwrap()
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
        .unwrap();
    let t = tenant("down");
    let k = key();
    let err = p.wrap(&t, &k, b"a").await.unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Transient, "{err}");
    assert!(err.kind.is_retryable());
    assert_kind(p.health_check().await, KeyErrorKind::Transient);
    assert!(!format!("{err} {err:?}").contains(secret));
}

#[tokio::test]
async fn counters_in_the_kv_engine() {
    let Some(p) = provider() else { return };
    assert!(!p.keeps_counters(), "off unless configured");
    let p = p.with_counters("secret").unwrap();
    common::counters_only_go_up(&p).await;
    // Another client (another process) sees the same counter.
    let t = tenant("counters-shared");
    p.raise_counter(&t, "ns/docs", 7).await.unwrap();
    let other = provider().unwrap().with_counters("secret").unwrap();
    assert_eq!(other.counter(&t, "ns/docs").await.unwrap(), 7);
}
