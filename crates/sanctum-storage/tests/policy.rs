//! Access policy, tenant isolation, quotas and audit events, through the public API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sanctum_storage::facade::{GetOptions, ListOptions, PutOptions};
use sanctum_storage::observability::audit::{AuditEvent, JsonLinesAuditSink, MemoryAuditSink};
use sanctum_storage::policy::{Grant, Permission};
use sanctum_storage::quota::QuotaLimits;
use sanctum_storage::{
    Error, ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies,
    create_storage_client,
};

const ROOT: &str = "root";
const BODY_CANARY: &str = "CANARY-POLICY-BODY-93d1";
const META_CANARY: &str = "CANARY-POLICY-META-77ab";

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn storage() -> (Storage, Arc<MemoryAuditSink>) {
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"root\"]",
        std::iter::empty::<(&str, &str)>(),
    )
    .unwrap();
    let audit = Arc::new(MemoryAuditSink::default());
    let deps = StorageDependencies {
        audit_sink: Some(audit.clone()),
        ..Default::default()
    };
    (create_storage_client(config, deps).await.unwrap(), audit)
}

fn ctx(tenant: &str, actor: &str) -> StorageContext {
    StorageContext::new(tenant, actor).unwrap()
}

fn grant(actor: &str, namespace: &str, permission: Permission) -> Grant {
    Grant::new(actor, namespace, None, permission)
}

fn meta() -> PutOptions {
    PutOptions {
        metadata: BTreeMap::from([("note".to_string(), META_CANARY.to_string())]),
        ..Default::default()
    }
}

async fn body_of(s: &Storage, c: &StorageContext, ns: &str, key: &str) -> Result<Bytes, Error> {
    s.blobs()
        .get_bytes(c, ns, key, GetOptions::default())
        .await
        .map(|(_, b)| b)
}

/// What the matrix expects of one (operation, role) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed, and it acted on the tenant's data.
    Allowed,
    /// Refused with `Unauthorized`.
    Denied,
    /// Another tenant's caller: the names resolve in its own tenant, where there is nothing.
    NotFound,
    /// Another tenant's caller whose write lands in its own tenant (never in ours).
    Elsewhere,
}

const OPS: [&str; 11] = [
    "put", "get", "head", "list", "delete", "restore", "purge", "versions", "keys", "policy",
    "quota",
];
const ROLES: [&str; 5] = ["none", "read", "write", "admin", "other-admin"];

fn expected(op: &str, role: &str) -> Expect {
    use Expect::*;
    let level = match role {
        "none" => 0,
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => {
            return match op {
                "get" | "head" | "delete" | "restore" | "purge" | "versions" => NotFound,
                _ => Elsewhere,
            };
        }
    };
    let needed = match op {
        "get" | "head" | "list" | "versions" => 1,
        "put" | "delete" => 2,
        _ => 3,
    };
    if level >= needed { Allowed } else { Denied }
}

/// Runs `op` as `c` against `ns`/`key` (whose history is [v1, v2]); Ok(()) or the error.
async fn run(
    s: &Storage,
    c: &StorageContext,
    op: &str,
    ns: &str,
    key: &str,
    v1: &str,
) -> Result<String, Error> {
    // Reads return what they saw: a get's body, a list's key count.
    let b = s.blobs();
    match op {
        "get" => {
            return Ok(String::from_utf8(body_of(s, c, ns, key).await?.to_vec()).unwrap());
        }
        "list" => {
            let listed = b.list(c, ns, ListOptions::default()).await?;
            return Ok(listed.objects.len().to_string());
        }
        _ => {}
    }
    match op {
        "put" => b
            .put_bytes(c, ns, key, "changed", PutOptions::default())
            .await
            .map(drop),
        "head" => b.head(c, ns, key).await.map(drop),
        "delete" => b.delete(c, ns, key).await.map(drop),
        "restore" => b.restore(c, ns, key, v1).await.map(drop),
        "purge" => b.purge(c, ns, key).await,
        "versions" => b.versions(c, ns, key).await.map(drop),
        "keys" => s.keys().rotate_namespace(c, ns).await.map(drop),
        "policy" => s
            .policy()
            .grant(c, grant("mallory", ns, Permission::Admin))
            .await
            .map(drop),
        "quota" => s
            .quotas()
            .set(
                c,
                ns,
                QuotaLimits {
                    max_bytes: Some(1),
                    max_objects: Some(1),
                    ..QuotaLimits::default()
                },
            )
            .await
            .map(drop),
        _ => unreachable!(),
    }
    .map(|()| String::new())
}

#[tokio::test]
async fn every_operation_times_every_role_does_what_the_policy_says() {
    let (s, _) = storage().await;
    let tenant = unique("acme");
    let other = unique("evil");
    let root = ctx(&tenant, ROOT);
    let ns = "docs";
    let policy = s.policy();
    policy
        .grant(&root, grant("reader", ns, Permission::Read))
        .await
        .unwrap();
    policy
        .grant(&root, grant("writer", ns, Permission::Write))
        .await
        .unwrap();
    policy
        .grant(&root, grant("admin", "*", Permission::Admin))
        .await
        .unwrap();
    policy
        .grant(
            &ctx(&other, ROOT),
            grant("other-admin", "*", Permission::Admin),
        )
        .await
        .unwrap();
    let grants_before = policy.show(&root).await.unwrap();
    // A namespace that never stored anything has no key to rotate.
    let e = s.keys().rotate_namespace(&root, ns).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.message().contains("'docs'"), "{e}");
    s.blobs()
        .put_bytes(&root, ns, "seed", "x", Default::default())
        .await
        .unwrap();
    let epoch_before = s.keys().rotate_namespace(&root, ns).await.unwrap();

    for op in OPS {
        for role in ROLES {
            let key = format!("{op}-{role}");
            let v1 = s
                .blobs()
                .put_bytes(&root, ns, &key, "one", PutOptions::default())
                .await
                .unwrap()
                .version_id;
            s.blobs()
                .put_bytes(&root, ns, &key, "two", PutOptions::default())
                .await
                .unwrap();
            let (caller_tenant, actor) = match role {
                "other-admin" => (other.as_str(), "other-admin"),
                "none" => (tenant.as_str(), "nobody"),
                "read" => (tenant.as_str(), "reader"),
                "write" => (tenant.as_str(), "writer"),
                _ => (tenant.as_str(), "admin"),
            };
            let caller = ctx(caller_tenant, actor);
            let got = run(&s, &caller, op, ns, &key, &v1).await;
            let want = expected(op, role);
            let case = format!("{op} as {role}");
            match (want, &got) {
                (Expect::Allowed, Ok(saw)) => match op {
                    "get" => assert_eq!(saw, "two", "{case}"),
                    "list" => assert_ne!(saw, "0", "{case}: our objects are listed"),
                    _ => {}
                },
                (Expect::Elsewhere, Ok(saw)) => match op {
                    "list" => {
                        // Exactly its own objects (its earlier put), none of ours.
                        let own = s
                            .blobs()
                            .list(&ctx(&other, ROOT), ns, ListOptions::default())
                            .await
                            .unwrap();
                        assert_eq!(*saw, own.objects.len().to_string(), "{case}");
                        assert_eq!(own.objects.len(), 1, "{case}");
                    }
                    "put" => assert_eq!(
                        &body_of(&s, &caller, ns, &key).await.unwrap()[..],
                        b"changed",
                        "{case}: the write landed in the caller's own tenant"
                    ),
                    _ => {}
                },
                (Expect::Denied, Err(e)) => {
                    assert_eq!(e.code(), ErrorCode::Unauthorized, "{case}: {e}");
                }
                (Expect::NotFound, Err(e)) => {
                    assert_eq!(e.code(), ErrorCode::NotFound, "{case}: {e}");
                    assert!(
                        !e.to_string().contains(&tenant),
                        "{case} names the tenant: {e}"
                    );
                }
                _ => panic!("{case}: expected {want:?}, got {got:?}"),
            }
            // Whatever was refused, and whatever another tenant did, left our state as it was.
            let versions = s.blobs().versions(&root, ns, &key).await;
            let unchanged = versions.as_ref().map(|v| v.len()).ok() == Some(2)
                && body_of(&s, &root, ns, &key).await.ok().as_deref() == Some(&b"two"[..]);
            match (want, op) {
                (Expect::Allowed, "put" | "delete" | "restore" | "purge") => {
                    assert!(!unchanged, "{case}: an allowed write changed nothing")
                }
                _ => assert!(unchanged, "{case}: state changed: {versions:?}"),
            }
            let grants_now = policy.show(&root).await.unwrap();
            let quota_now = s.quotas().show(&root, ns).await.unwrap();
            match (want, op) {
                (Expect::Allowed, "policy") => {
                    assert!(grants_now.allows("mallory", ns, None, Permission::Admin));
                    policy.revoke(&root, "mallory", ns, None).await.unwrap();
                }
                (Expect::Allowed, "quota") => {
                    assert!(quota_now.is_some(), "{case}");
                    s.quotas().remove(&root, ns).await.unwrap();
                }
                _ => {
                    assert_eq!(grants_now, grants_before, "{case}: grants changed");
                    assert_eq!(quota_now, None, "{case}: a quota appeared");
                }
            }
        }
    }
    // Denied and foreign key rotations did not touch our namespace's epochs: the admin's single
    // allowed rotation is the only one between these two.
    let after = s.keys().rotate_namespace(&root, ns).await.unwrap();
    assert_eq!(after, epoch_before + 2);
}

#[tokio::test]
async fn key_prefix_grants_and_tenant_wide_operations() {
    let (s, _) = storage().await;
    let tenant = unique("acme");
    let root = ctx(&tenant, ROOT);
    s.policy()
        .grant(
            &root,
            Grant {
                actor: "pub".into(),
                namespace: "docs".into(),
                key_prefix: Some("public/".into()),
                permission: Permission::Read,
            },
        )
        .await
        .unwrap();
    s.policy()
        .grant(&root, grant("nsadmin", "docs", Permission::Admin))
        .await
        .unwrap();
    for key in ["public/a", "private/b"] {
        s.blobs()
            .put_bytes(&root, "docs", key, "x", PutOptions::default())
            .await
            .unwrap();
    }
    let p = ctx(&tenant, "pub");
    assert!(body_of(&s, &p, "docs", "public/a").await.is_ok());
    let err = body_of(&s, &p, "docs", "private/b").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthorized);
    // Listing the whole namespace is more than the grant covers; listing its prefix is not.
    let whole = s.blobs().list(&p, "docs", ListOptions::default()).await;
    assert_eq!(whole.unwrap_err().code(), ErrorCode::Unauthorized);
    let listed = s
        .blobs()
        .list(
            &p,
            "docs",
            ListOptions {
                prefix: "public/".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.objects.len(), 1);
    // A namespace admin may manage its namespace but not the tenant.
    let a = ctx(&tenant, "nsadmin");
    s.keys().rotate_namespace(&a, "docs").await.unwrap();
    let e = s.keys().shred_tenant(&a).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    let e = s.keys().rotate_kek(&a).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    let e = s
        .policy()
        .grant(&a, grant("nsadmin", "*", Permission::Admin))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::Unauthorized,
        "no escalation to tenant admin"
    );
    s.policy()
        .grant(&a, grant("helper", "docs", Permission::Read))
        .await
        .expect("a namespace admin grants within its namespace");
    // Data survived the refused shred.
    assert!(body_of(&s, &root, "docs", "private/b").await.is_ok());
    // Bad grants are invalid input, not stored.
    for bad in [
        grant("", "docs", Permission::Read),
        grant("x", "../docs", Permission::Read),
        grant("x", "Docs", Permission::Read),
    ] {
        let e = s.policy().grant(&root, bad).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
    }
    let shown = s.policy().show(&root).await.unwrap();
    assert_eq!(shown.grants.len(), 3);
}

#[tokio::test]
async fn another_tenant_can_neither_reach_nor_detect_our_data() {
    let (s, _) = storage().await;
    let a = ctx(&unique("alpha"), ROOT);
    let b = ctx(&unique("beta"), ROOT);
    let blobs = s.blobs();
    let mut last = None;
    for i in 0..5 {
        last = Some(
            blobs
                .put_bytes(
                    &a,
                    "docs",
                    &format!("k{i}"),
                    BODY_CANARY,
                    PutOptions::default(),
                )
                .await
                .unwrap(),
        );
    }
    let version = last.unwrap().version_id;
    let page = blobs
        .list(
            &a,
            "docs",
            ListOptions {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("more pages");
    let a_tenant = a.tenant().to_string();
    let no_leak = |e: &Error| {
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains(&a_tenant),
            "error names the other tenant: {text}"
        );
        assert!(!text.contains(BODY_CANARY), "error carries data: {text}");
    };
    // Guessed keys, reused version ids, reused cursors: nothing.
    for probe in [
        blobs
            .get_bytes(&b, "docs", "k4", GetOptions::default())
            .await
            .map(drop),
        blobs
            .get_bytes(
                &b,
                "docs",
                "k4",
                GetOptions {
                    version: Some(version.clone()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        blobs.head(&b, "docs", "k4").await.map(drop),
        blobs.versions(&b, "docs", "k4").await.map(drop),
        blobs.restore(&b, "docs", "k4", &version).await.map(drop),
        blobs.delete(&b, "docs", "k4").await.map(drop),
        blobs.purge(&b, "docs", "k4").await.map(drop),
    ] {
        let e = probe.unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
        no_leak(&e);
    }
    // A cursor is bound to its tenant and namespace: another tenant's is simply not there.
    let e = blobs
        .list(
            &b,
            "docs",
            ListOptions {
                cursor: Some(cursor),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    no_leak(&e);
    // Path tricks in names are invalid input (or stay inside the caller's own tenant).
    for (ns, key) in [
        ("docs", format!("../../{a_tenant}/n/docs/h/k4")),
        ("docs", format!("/t/{a_tenant}/n/docs")),
        ("docs", "k4\0".to_string()),
    ] {
        match blobs.get_bytes(&b, ns, &key, GetOptions::default()).await {
            Err(e) => {
                assert!(
                    matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidInput),
                    "{e}"
                );
                no_leak(&e);
            }
            Ok(_) => panic!("{key} reached data"),
        }
    }
    for ns in ["../docs", "..", "docs/../docs", &format!("{a_tenant}/docs")] {
        let e = blobs
            .get_bytes(&b, ns, "k4", GetOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{ns}: {e}");
    }
    assert!(StorageContext::new(&format!("{a_tenant}/../x"), ROOT).is_err());
    // Our data is still there, whole.
    assert_eq!(
        body_of(&s, &a, "docs", "k4").await.unwrap(),
        Bytes::from(BODY_CANARY)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_near_a_byte_quota_never_overshoot() {
    let (s, _) = storage().await;
    let root = ctx(&unique("quota"), ROOT);
    s.blobs()
        .put_bytes(
            &root,
            "q",
            "existing",
            vec![1u8; 5_000],
            PutOptions::default(),
        )
        .await
        .unwrap();
    let status = s
        .quotas()
        .set(
            &root,
            "q",
            QuotaLimits {
                max_bytes: Some(100_000),
                max_objects: None,
                ..QuotaLimits::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(status.usage.bytes, 5_000, "existing data is counted");
    assert_eq!(status.usage.objects, 1);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            s.blobs()
                .put_bytes(
                    &root,
                    "q",
                    &format!("w{i}"),
                    vec![2u8; 10_000],
                    PutOptions::default(),
                )
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}"),
        }
    }
    assert_eq!(
        ok, 9,
        "exactly the writes that fit: (100000 - 5000) / 10000"
    );
    let status = s.quotas().show(&root, "q").await.unwrap().unwrap();
    assert_eq!(status.usage.bytes, 5_000 + 9 * 10_000);
    assert_eq!(status.usage.objects, 10);
    let listed = s
        .blobs()
        .list(&root, "q", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.objects.len(), 10, "refused writes stored nothing");
    // The adapter holds no body of a refused write either. (The committed ones are small and
    // current, so they live in their heads and have no body object yet.)
    let raw = s
        .blobs()
        .adapter()
        .list(&format!("t/{}/n/q/b/", root.tenant()), None, 1000)
        .await
        .unwrap();
    assert_eq!(raw.entries.len(), 0);
}

/// Bodies given whole are checked against the bytes left before anything is written, on each
/// `put_bytes` path: small (combined message), mid-size (sealed whole) and large (streamed).
#[tokio::test]
async fn whole_bodies_over_the_quota_store_nothing() {
    let (s, _) = storage().await;
    let root = ctx(&unique("quota-whole"), ROOT);
    let limits = QuotaLimits {
        max_bytes: Some(100_000),
        max_objects: None,
        ..QuotaLimits::default()
    };
    s.quotas().set(&root, "q", limits).await.unwrap();
    let put = |key: &'static str, len: usize| {
        s.blobs()
            .put_bytes(&root, "q", key, vec![1u8; len], PutOptions::default())
    };
    for (key, len) in [("mid", 150_000), ("large", 3 << 20)] {
        let e = put(key, len).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{key}: {e}");
        assert!(body_of(&s, &root, "q", key).await.is_err(), "{key}");
    }
    put("a", 60_000).await.unwrap();
    let e = put("b", 50_000).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
    assert!(e.to_string().contains("40000 bytes left"), "{e}");
    put("b", 40_000).await.unwrap();
    let status = s.quotas().show(&root, "q").await.unwrap().unwrap();
    assert_eq!(status.usage.bytes, 100_000);
    assert_eq!(body_of(&s, &root, "q", "a").await.unwrap().len(), 60_000);
}

#[tokio::test]
async fn quotas_count_objects_and_free_on_delete_and_purge() {
    let (s, _) = storage().await;
    let root = ctx(&unique("quota"), ROOT);
    let q = s.quotas();
    q.set(
        &root,
        "q",
        QuotaLimits {
            max_bytes: Some(10_000),
            max_objects: Some(2),
            ..QuotaLimits::default()
        },
    )
    .await
    .unwrap();
    let put = |key: &'static str, len: usize| {
        let s = s.clone();
        let root = root.clone();
        async move {
            s.blobs()
                .put_bytes(&root, "q", key, vec![0u8; len], PutOptions::default())
                .await
        }
    };
    put("a", 1_000).await.unwrap();
    put("b", 1_000).await.unwrap();
    let e = put("c", 10).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::QuotaExceeded);
    assert!(e.to_string().contains("objects"), "{e}");
    // Overwriting an existing key adds bytes, not objects.
    put("a", 2_000).await.unwrap();
    // A body larger than what is left fails while streaming and stores nothing.
    let e = put("b", 7_000).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
    assert_eq!(body_of(&s, &root, "q", "b").await.unwrap().len(), 1_000);
    let status = q.show(&root, "q").await.unwrap().unwrap();
    assert_eq!((status.usage.bytes, status.usage.objects), (4_000, 2));
    // Delete frees the object (history keeps the bytes); restore takes it back.
    let v = s.blobs().versions(&root, "q", "b").await.unwrap()[0]
        .version_id
        .clone();
    s.blobs().delete(&root, "q", "b").await.unwrap();
    put("c", 10).await.unwrap();
    let e = s.blobs().restore(&root, "q", "b", &v).await.unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::QuotaExceeded,
        "restoring would make 3 objects"
    );
    assert!(
        body_of(&s, &root, "q", "b").await.is_err(),
        "the refused restore stored nothing"
    );
    // Purge frees every body of the key.
    s.blobs().purge(&root, "q", "a").await.unwrap();
    let status = q.show(&root, "q").await.unwrap().unwrap();
    assert_eq!((status.usage.bytes, status.usage.objects), (1_010, 1));
    s.blobs().restore(&root, "q", "b", &v).await.unwrap();
    let status = q.show(&root, "q").await.unwrap().unwrap();
    assert_eq!((status.usage.bytes, status.usage.objects), (1_010, 2));
    // Without a quota nothing is counted or refused.
    assert!(q.remove(&root, "q").await.unwrap());
    put("d", 50_000).await.unwrap();
    assert_eq!(q.show(&root, "q").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_one_key_count_one_object() {
    let (s, _) = storage().await;
    let root = ctx(&unique("quota"), ROOT);
    s.quotas()
        .set(
            &root,
            "q",
            QuotaLimits {
                max_bytes: None,
                max_objects: Some(100),
                ..QuotaLimits::default()
            },
        )
        .await
        .unwrap();
    for round in 0..4 {
        // Eight writers create or overwrite the same key (a delete races them after round 0):
        // whoever wins each CAS, usage counts the key once while it is live.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (s, root) = (s.clone(), root.clone());
            tasks.push(tokio::spawn(async move {
                if i == 7 && round > 0 {
                    let _ = s.blobs().delete(&root, "q", "same").await;
                } else {
                    s.blobs()
                        .put_bytes(&root, "q", "same", vec![1u8; 10], PutOptions::default())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let live = s.blobs().head(&root, "q", "same").await.is_ok();
        let usage = s.quotas().show(&root, "q").await.unwrap().unwrap().usage;
        assert_eq!(usage.objects, u64::from(live), "round {round}");
    }
}

fn summary(events: &[AuditEvent]) -> Vec<(String, Option<bool>)> {
    events
        .iter()
        .map(|e| {
            (
                e.operation.to_string(),
                e.decision.as_ref().map(|d| d.allowed),
            )
        })
        .collect()
}

#[tokio::test]
async fn audit_events_follow_each_flow_and_carry_no_data() {
    let (s, audit) = storage().await;
    let tenant = unique("audited");
    let root = ctx(&tenant, ROOT).with_correlation_id("corr-1");
    let alice = ctx(&tenant, "alice");
    let b = s.blobs();
    let v = b
        .put_bytes(&root, "docs", "k", BODY_CANARY, meta())
        .await
        .unwrap();
    let denied = b.put_bytes(&alice, "docs", "k", BODY_CANARY, meta()).await;
    assert_eq!(denied.unwrap_err().code(), ErrorCode::Unauthorized);
    s.policy()
        .grant(&root, grant("alice", "docs", Permission::Write))
        .await
        .unwrap();
    body_of(&s, &alice, "docs", "k").await.unwrap();
    b.delete(&alice, "docs", "k").await.unwrap();
    b.restore(&root, "docs", "k", &v.version_id).await.unwrap();
    s.quotas()
        .set(
            &root,
            "docs",
            QuotaLimits {
                max_bytes: Some(1 << 20),
                max_objects: None,
                ..QuotaLimits::default()
            },
        )
        .await
        .unwrap();
    s.keys().rotate_namespace(&root, "docs").await.unwrap();
    b.purge(&root, "docs", "k").await.unwrap();
    s.policy()
        .revoke(&root, "alice", "docs", None)
        .await
        .unwrap();

    let events: Vec<AuditEvent> = audit
        .events()
        .into_iter()
        .filter(|e| e.tenant == tenant)
        .collect();
    let expect: Vec<(String, Option<bool>)> = [
        ("blob.put", Some(true)),
        ("blob.put", Some(false)),
        ("policy.grant", Some(true)),
        ("policy.grant", None),
        ("blob.get", Some(true)),
        ("blob.delete", Some(true)),
        ("blob.delete", None),
        ("blob.restore", Some(true)),
        ("blob.restore", None),
        ("quota.set", Some(true)),
        ("quota.set", None),
        ("keys.rotate_namespace", Some(true)),
        ("keys.rotate_namespace", None),
        ("blob.purge", Some(true)),
        ("blob.purge", None),
        ("policy.revoke", Some(true)),
        ("policy.revoke", None),
    ]
    .into_iter()
    .map(|(o, d)| (o.to_string(), d))
    .collect();
    assert_eq!(summary(&events), expect);
    let refused = &events[1];
    assert_eq!(refused.actor, "alice");
    assert_eq!(refused.namespace.as_deref(), Some("docs"));
    assert_eq!(refused.key.as_deref(), Some("k"));
    let d = refused.decision.as_ref().unwrap();
    assert_eq!(d.action, "write");
    assert!(d.reason.contains("no grant"), "{}", d.reason);
    assert_eq!(events[0].correlation_id, "corr-1");
    assert!(
        events[3]
            .detail
            .as_deref()
            .unwrap()
            .contains("alice write on docs")
    );
    assert!(
        events[10]
            .detail
            .as_deref()
            .unwrap()
            .contains("max_bytes 1048576")
    );
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(BODY_CANARY), "payload in audit events");
    assert!(!all.contains(META_CANARY), "metadata value in audit events");
}

#[tokio::test]
async fn the_json_lines_sink_appends_one_parsable_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.jsonl");
    let config = StorageConfig::from_toml_str(
        &format!(
            "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"root\"]\n[audit]\nsink = \"jsonl\"\npath = {:?}",
            path.display().to_string()
        ),
        std::iter::empty::<(&str, &str)>(),
    )
    .unwrap();
    let s = create_storage_client(config, StorageDependencies::default())
        .await
        .unwrap();
    let root = ctx("jsonl", ROOT);
    s.blobs()
        .put_bytes(&root, "docs", "k", BODY_CANARY, meta())
        .await
        .unwrap();
    let e = body_of(&s, &ctx("jsonl", "eve"), "docs", "k")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    s.blobs().delete(&root, "docs", "k").await.unwrap();
    // A second sink on the same file appends rather than truncating.
    JsonLinesAuditSink::open(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let ops: Vec<(&str, Option<bool>)> = lines
        .iter()
        .map(|l| {
            (
                l["operation"].as_str().unwrap(),
                l.get("decision").map(|d| d["allowed"].as_bool().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("blob.put", Some(true)),
            ("blob.get", Some(false)),
            ("blob.delete", Some(true)),
            ("blob.delete", None)
        ]
    );
    assert!(!text.contains(BODY_CANARY) && !text.contains(META_CANARY));
}

#[tokio::test]
async fn the_embedded_default_makes_local_admin_and_nobody_else() {
    let home = tempfile::tempdir().unwrap();
    let s = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    let local = ctx("default", "local");
    s.blobs()
        .put_bytes(&local, "docs", "k", "v", PutOptions::default())
        .await
        .unwrap();
    s.keys().rotate_kek(&local).await.unwrap();
    let bob = ctx("default", "bob");
    let e = body_of(&s, &bob, "docs", "k").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized);
    s.policy()
        .grant(&local, grant("bob", "docs", Permission::Read))
        .await
        .unwrap();
    assert_eq!(&body_of(&s, &bob, "docs", "k").await.unwrap()[..], b"v");
    // Grants persist with the data: a new client over the same folder sees them.
    drop(s);
    let again = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    assert_eq!(&body_of(&again, &bob, "docs", "k").await.unwrap()[..], b"v");
    assert!(home.path().join("audit.jsonl").exists());
}
