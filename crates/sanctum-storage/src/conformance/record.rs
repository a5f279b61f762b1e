//! The record contract suite: what every record adapter must make true through the facade.
//!
//! Each check takes a [`Storage`] whose record adapter is the one under test, and a tenant of
//! its own (so checks run in parallel on one database). The actor must be a superuser.

use std::collections::BTreeSet;

use serde_json::json;

use crate::config::Environment;
use crate::facade::record::{
    CollectionSchema, ListRecordsOptions, SchemaRegistry, UpcastStep, UpsertOptions,
};
use crate::quota::QuotaLimits;
use crate::{ErrorCode, Storage, StorageContext};

const ACTOR: &str = "conformance";

fn ctx(tenant: &str) -> StorageContext {
    StorageContext::new(tenant, ACTOR).expect("a valid tenant")
}

fn code<T: std::fmt::Debug>(r: crate::Result<T>) -> ErrorCode {
    r.expect_err("expected an error").code()
}

/// Upsert then get; replace at the right version and at a stale one; create-only twice;
/// an unconditional write after all that.
pub async fn upsert_get_and_versions(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    let v1 = records
        .upsert(
            &c,
            "ns",
            "users",
            "u1",
            json!({"name": "ada"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v1.schema_version), (1, 0));
    let got = records.get(&c, "ns", "users", "u1").await.unwrap();
    assert_eq!(got.document, json!({"name": "ada"}));
    assert_eq!(got.version, v1);
    let at_1 = UpsertOptions {
        expected_version: Some(1),
        ..Default::default()
    };
    let v2 = records
        .upsert(&c, "ns", "users", "u1", json!({"name": "bob"}), at_1)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_at_ms, v1.created_at_ms, "creation time is kept");
    let stale = records
        .upsert(&c, "ns", "users", "u1", json!({"name": "eve"}), at_1)
        .await;
    assert_eq!(code(stale), ErrorCode::Conflict);
    let create = UpsertOptions {
        if_absent: true,
        ..Default::default()
    };
    assert_eq!(
        code(
            records
                .upsert(&c, "ns", "users", "u1", json!({}), create)
                .await
        ),
        ErrorCode::Conflict
    );
    let fresh = records
        .upsert(&c, "ns", "users", "u2", json!({"n": 1}), create)
        .await
        .unwrap();
    assert_eq!(fresh.version, 1);
    let v3 = records
        .upsert(
            &c,
            "ns",
            "users",
            "u1",
            json!({"name": "cy"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    let got = records.get(&c, "ns", "users", "u1").await.unwrap();
    assert_eq!(
        (got.version.version, got.document),
        (3, json!({"name": "cy"}))
    );
    // Nothing changed on the refused writes.
    let none = UpsertOptions {
        expected_version: Some(9),
        ..Default::default()
    };
    assert_eq!(
        code(
            records
                .upsert(&c, "ns", "users", "nope", json!({}), none)
                .await
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(records.get(&c, "ns", "users", "nope").await),
        ErrorCode::NotFound
    );
}

/// 16 writers increment one counter, each retrying on `Conflict`: exactly 16 increments.
pub async fn concurrent_increments(storage: &Storage, tenant: &str) {
    let c = ctx(tenant);
    storage
        .records()
        .upsert(
            &c,
            "ns",
            "counters",
            "n",
            json!({"n": 0}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let writers = (0..16).map(|_| {
        let storage = storage.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let records = storage.records();
            let mut conflicts = 0u32;
            loop {
                let now = records.get(&c, "ns", "counters", "n").await.unwrap();
                let n = now.document["n"].as_u64().unwrap();
                let at = UpsertOptions {
                    expected_version: Some(now.version.version),
                    ..Default::default()
                };
                match records
                    .upsert(&c, "ns", "counters", "n", json!({"n": n + 1}), at)
                    .await
                {
                    Ok(_) => return conflicts,
                    Err(e) if e.code() == ErrorCode::Conflict => conflicts += 1,
                    // SQLite may answer a writer that waited too long for the lock this way;
                    // it changed nothing, so trying again is safe.
                    Err(e) if e.code() == ErrorCode::TransientAdapter => conflicts += 1,
                    Err(e) => panic!("increment failed: {e}"),
                }
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let end = storage
        .records()
        .get(&c, "ns", "counters", "n")
        .await
        .unwrap();
    assert_eq!(end.document, json!({"n": 16}));
    assert_eq!(end.version.version, 17);
}

/// Delete, then `NotFound`; a stale delete is `Conflict`; a record created again continues the
/// version count, so an expected version from before the delete never matches it.
pub async fn delete_and_recreate(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    records
        .upsert(
            &c,
            "ns",
            "docs",
            "d",
            json!({"v": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    records
        .upsert(
            &c,
            "ns",
            "docs",
            "d",
            json!({"v": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.delete(&c, "ns", "docs", "d", Some(1)).await),
        ErrorCode::Conflict
    );
    records
        .delete(&c, "ns", "docs", "d", Some(2))
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&c, "ns", "docs", "d").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(records.delete(&c, "ns", "docs", "d", None).await),
        ErrorCode::NotFound
    );
    let stale = UpsertOptions {
        expected_version: Some(2),
        ..Default::default()
    };
    assert_eq!(
        code(
            records
                .upsert(&c, "ns", "docs", "d", json!({}), stale)
                .await
        ),
        ErrorCode::Conflict,
        "a deleted record is at no version"
    );
    let create = UpsertOptions {
        if_absent: true,
        ..Default::default()
    };
    let again = records
        .upsert(&c, "ns", "docs", "d", json!({"v": 3}), create)
        .await
        .unwrap();
    assert_eq!(again.version, 4, "one past the tombstone (version 3)");
    let listed = records
        .list(&c, "ns", "docs", ListRecordsOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.records.len(), 1);
    records.delete(&c, "ns", "docs", "d", None).await.unwrap();
    let listed = records
        .list(&c, "ns", "docs", ListRecordsOptions::default())
        .await
        .unwrap();
    assert!(listed.records.is_empty(), "deleted records are not listed");
}

/// Pages through 25 records 10 at a time, in id order, each exactly once; cursors work only
/// where they came from.
pub async fn pagination(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    let mut want = BTreeSet::new();
    for i in 0..25 {
        let id = format!("r{i:03}");
        records
            .upsert(
                &c,
                "ns",
                "items",
                &id,
                json!({"i": i}),
                UpsertOptions::default(),
            )
            .await
            .unwrap();
        want.insert(id);
    }
    records
        .upsert(&c, "ns", "other", "x", json!({}), UpsertOptions::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = records
            .list(
                &c,
                "ns",
                "items",
                ListRecordsOptions {
                    limit: Some(10),
                    cursor: cursor.clone(),
                },
            )
            .await
            .unwrap();
        pages += 1;
        for r in &page.records {
            assert_eq!(r.document["i"], json!(r.id[1..].parse::<u64>().unwrap()));
        }
        seen.extend(page.records.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        want.into_iter().collect::<Vec<_>>(),
        "in order, once each"
    );
    // A cursor from this collection, used elsewhere.
    let first = records
        .list(
            &c,
            "ns",
            "items",
            ListRecordsOptions {
                limit: Some(10),
                cursor: None,
            },
        )
        .await
        .unwrap();
    let cursor = first.next_cursor.unwrap();
    let elsewhere = |collection: &'static str, tenant: StorageContext| {
        let cursor = cursor.clone();
        async move {
            records
                .list(
                    &tenant,
                    "ns",
                    collection,
                    ListRecordsOptions {
                        limit: Some(10),
                        cursor: Some(cursor),
                    },
                )
                .await
        }
    };
    assert_eq!(
        code(elsewhere("other", c.clone()).await),
        ErrorCode::NotFound
    );
    let stranger = ctx(&format!("{tenant}-x"));
    assert_eq!(
        code(elsewhere("items", stranger).await),
        ErrorCode::NotFound
    );
    let garbage = records
        .list(
            &c,
            "ns",
            "items",
            ListRecordsOptions {
                limit: Some(10),
                cursor: Some("not-a-cursor".into()),
            },
        )
        .await;
    assert_eq!(code(garbage), ErrorCode::InvalidInput);
}

/// Another tenant probing the same names finds nothing and changes nothing.
pub async fn tenants_are_isolated(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let owner = ctx(tenant);
    let other_tenant = format!("{tenant}-b");
    let other = ctx(&other_tenant);
    records
        .upsert(
            &owner,
            "ns",
            "secrets",
            "s1",
            json!({"k": "mine"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&other, "ns", "secrets", "s1").await),
        ErrorCode::NotFound
    );
    let listed = records
        .list(&other, "ns", "secrets", ListRecordsOptions::default())
        .await
        .unwrap();
    assert!(listed.records.is_empty());
    assert_eq!(
        code(records.delete(&other, "ns", "secrets", "s1", None).await),
        ErrorCode::NotFound
    );
    let theirs = records
        .upsert(
            &other,
            "ns",
            "secrets",
            "s1",
            json!({"k": "theirs"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        theirs.version, 1,
        "their own record, not a new version of ours"
    );
    let mine = records.get(&owner, "ns", "secrets", "s1").await.unwrap();
    assert_eq!(mine.document, json!({"k": "mine"}));
    assert_eq!(mine.version.version, 1);
}

/// Names that could escape their scope, and documents that are not objects or too large, are
/// `InvalidInput`, and nothing is stored.
pub async fn hostile_input_is_refused(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    let doc = json!({"a": 1});
    for (ns, collection, id) in [
        ("ns", "../etc", "x"),
        ("ns", "Users", "x"),
        ("ns", "", "x"),
        ("ns", "a/b", "x"),
        ("ns", "users", ""),
        ("ns", "users", "../x"),
        ("ns", "users", "a\u{0}b"),
        ("NS", "users", "x"),
        ("../ns", "users", "x"),
    ] {
        let got = records
            .upsert(
                &c,
                ns,
                collection,
                id,
                doc.clone(),
                UpsertOptions::default(),
            )
            .await;
        assert_eq!(code(got), ErrorCode::InvalidInput, "{ns}/{collection}/{id}");
    }
    for bad in [json!([1, 2]), json!("text"), json!(null)] {
        let got = records
            .upsert(
                &c,
                "ns",
                "users",
                "x",
                bad.clone(),
                UpsertOptions::default(),
            )
            .await;
        assert_eq!(code(got), ErrorCode::InvalidInput, "{bad}");
    }
    let big = json!({"blob": "x".repeat(crate::facade::record::MAX_DOCUMENT_BYTES)});
    let got = records
        .upsert(&c, "ns", "users", "x", big, UpsertOptions::default())
        .await;
    assert_eq!(code(got), ErrorCode::InvalidInput);
    let both = UpsertOptions {
        if_absent: true,
        expected_version: Some(1),
    };
    assert_eq!(
        code(records.upsert(&c, "ns", "users", "x", doc, both).await),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        code(records.get(&c, "ns", "users", "x").await),
        ErrorCode::NotFound,
        "nothing was stored"
    );
}

/// What the database holds is sealed to its place: a row copied to another id or tenant, or an
/// older row put back under a newer version, fails to open with `Encryption`.
pub async fn moved_rows_do_not_open(storage: &Storage, tenant: &str) {
    use crate::adapters::record::{RecordKey, WriteCondition};
    let records = storage.records();
    let adapter = records.adapter();
    let c = ctx(tenant);
    let key = |tenant: &str, id: &str| RecordKey {
        tenant: tenant.to_string(),
        namespace: "ns".into(),
        collection: "acct".into(),
        id: id.into(),
    };
    records
        .upsert(
            &c,
            "ns",
            "acct",
            "alice",
            json!({"balance": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let alice_v1 = adapter.get(&key(tenant, "alice")).await.unwrap().unwrap();
    records
        .upsert(
            &c,
            "ns",
            "acct",
            "alice",
            json!({"balance": 1000}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    records
        .upsert(
            &c,
            "ns",
            "acct",
            "mallory",
            json!({"balance": 0}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let alice = adapter.get(&key(tenant, "alice")).await.unwrap().unwrap();
    // Alice's row copied over Mallory's.
    let mallory = adapter.get(&key(tenant, "mallory")).await.unwrap().unwrap();
    let forged = crate::adapters::record::StoredRecord {
        id: "mallory".into(),
        version: mallory.version + 1,
        ..alice.clone()
    };
    adapter
        .upsert(
            &key(tenant, "mallory"),
            &forged,
            WriteCondition::Version(mallory.version),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&c, "ns", "acct", "mallory").await),
        ErrorCode::Encryption
    );
    // Alice's row copied into another tenant (with that tenant's own namespace key in place).
    let other = format!("{tenant}-c");
    let oc = ctx(&other);
    records
        .upsert(
            &oc,
            "ns",
            "acct",
            "alice",
            json!({"balance": 5}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let theirs = adapter.get(&key(&other, "alice")).await.unwrap().unwrap();
    let copied = crate::adapters::record::StoredRecord {
        version: theirs.version + 1,
        ..alice.clone()
    };
    adapter
        .upsert(
            &key(&other, "alice"),
            &copied,
            WriteCondition::Version(theirs.version),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&oc, "ns", "acct", "alice").await),
        ErrorCode::Encryption
    );
    // Rolled back: alice's version 1 row put back in place of version 2, relabelled version 3
    // so that a writer's compare-and-swap would accept it.
    let now = adapter.get(&key(tenant, "alice")).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    let rolled_back = crate::adapters::record::StoredRecord {
        version: 3,
        ..alice_v1
    };
    adapter
        .upsert(
            &key(tenant, "alice"),
            &rolled_back,
            WriteCondition::Version(2),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&c, "ns", "acct", "alice").await),
        ErrorCode::Encryption,
        "a sealed document opens only at the version it was written as"
    );
}

/// A transaction's writes across two collections appear together at commit; its own reads see
/// them first; others see nothing before the commit (on databases that let a reader in while a
/// writer is open: not one in-memory SQLite connection).
pub async fn transactions_commit_together(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    records
        .upsert(
            &c,
            "ns",
            "accounts",
            "a",
            json!({"balance": 10}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let mut tx = records.begin(&c, "ns").await.unwrap();
    let debit = UpsertOptions {
        expected_version: Some(1),
        ..Default::default()
    };
    let v = tx
        .upsert("accounts", "a", json!({"balance": 3}), debit)
        .await
        .unwrap();
    assert_eq!(v.version, 2);
    tx.upsert(
        "ledger",
        "t1",
        json!({"from": "a", "amount": 7}),
        UpsertOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        tx.get("accounts", "a").await.unwrap().document,
        json!({"balance": 3}),
        "the transaction sees its own write"
    );
    // A stale condition inside the transaction is a Conflict and leaves it usable.
    let stale = tx
        .upsert("accounts", "a", json!({"balance": 0}), debit)
        .await;
    assert_eq!(code(stale), ErrorCode::Conflict);
    if records.adapter().capabilities().durable {
        assert_eq!(
            code(records.get(&c, "ns", "ledger", "t1").await),
            ErrorCode::NotFound,
            "nothing is visible before the commit"
        );
    }
    tx.commit().await.unwrap();
    assert_eq!(
        records
            .get(&c, "ns", "accounts", "a")
            .await
            .unwrap()
            .document,
        json!({"balance": 3})
    );
    assert_eq!(
        records
            .get(&c, "ns", "ledger", "t1")
            .await
            .unwrap()
            .version
            .version,
        1
    );
}

/// A rolled-back transaction, and one dropped before its commit, leave nothing behind.
pub async fn transactions_roll_back(storage: &Storage, tenant: &str) {
    let records = storage.records();
    let c = ctx(tenant);
    records
        .upsert(
            &c,
            "ns",
            "docs",
            "kept",
            json!({"v": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let mut tx = records.begin(&c, "ns").await.unwrap();
    tx.upsert("docs", "new", json!({"v": 1}), UpsertOptions::default())
        .await
        .unwrap();
    tx.delete("docs", "kept", None).await.unwrap();
    tx.rollback().await.unwrap();
    {
        let mut dropped = records.begin(&c, "ns").await.unwrap();
        dropped
            .upsert("docs", "new", json!({"v": 2}), UpsertOptions::default())
            .await
            .unwrap();
        dropped.delete("docs", "kept", None).await.unwrap();
        // Dropped here, uncommitted.
    }
    assert_eq!(
        code(records.get(&c, "ns", "docs", "new").await),
        ErrorCode::NotFound
    );
    let kept = records.get(&c, "ns", "docs", "kept").await.unwrap();
    assert_eq!((kept.version.version, kept.document), (1, json!({"v": 1})));
}

/// A collection name of this check's own: the schema registry is the database's, shared by
/// every tenant, so collections must not collide between checks running side by side.
fn own_collection(tenant: &str, what: &str) -> String {
    format!("{tenant}-{what}")
}

fn users_v1(name: &str) -> CollectionSchema {
    CollectionSchema::new(name)
        .version(
            1,
            json!({"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}}}),
        )
        .expect("schema v1")
}

fn users_v3(name: &str) -> CollectionSchema {
    users_v1(name)
        .version(
            2,
            json!({"type": "object", "required": ["full_name"],
                   "properties": {"full_name": {"type": "string"}}}),
        )
        .and_then(|c| {
            c.upcast_steps(
                2,
                vec![UpcastStep::Rename {
                    rename: "/name".into(),
                    to: "/full_name".into(),
                }],
            )
        })
        .and_then(|c| {
            c.version(
                3,
                json!({"type": "object", "required": ["full_name", "plan"],
                       "properties": {"full_name": {"type": "string"},
                                      "plan": {"enum": ["free", "pro"]},
                                      "age": {"type": "integer", "minimum": 0}}}),
            )
        })
        .and_then(|c| {
            // A Rust upcaster: adds the plan the declarative steps could add too.
            c.upcast_with(3, |mut doc| {
                if let Some(object) = doc.as_object_mut() {
                    object.entry("plan").or_insert(json!("free"));
                }
                Ok(doc)
            })
        })
        .expect("schema v3")
}

fn declared(collections: Vec<CollectionSchema>) -> SchemaRegistry {
    SchemaRegistry::new(collections).expect("a complete declaration")
}

/// Writes validate against the newest version, naming every failing field and storing
/// nothing; a document written under version 1 reads as version 3 through two upcasters; the
/// stored row keeps the version it was written under.
pub async fn schemas_validate_and_upcast(storage: &Storage, tenant: &str) {
    let c = ctx(tenant);
    let users = own_collection(tenant, "users");
    let v1 = storage
        .records()
        .redeclared(declared(vec![users_v1(&users)]), Environment::Development);
    let written = v1
        .upsert(
            &c,
            "ns",
            &users,
            "ada",
            json!({"name": "Ada"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(written.schema_version, 1);
    let missing = v1
        .upsert(
            &c,
            "ns",
            &users,
            "bob",
            json!({"nom": "canary-schema"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::InvalidInput);
    assert!(missing.message().contains("/name (required)"), "{missing}");
    assert_eq!(
        code(v1.get(&c, "ns", &users, "bob").await),
        ErrorCode::NotFound
    );

    let v3 = storage
        .records()
        .redeclared(declared(vec![users_v3(&users)]), Environment::Development);
    let ada = v3.get(&c, "ns", &users, "ada").await.unwrap();
    assert_eq!(ada.document, json!({"full_name": "Ada", "plan": "free"}));
    assert_eq!(
        ada.version.schema_version, 1,
        "the version it was written under"
    );
    let rejected = v3
        .upsert(
            &c,
            "ns",
            &users,
            "ada",
            json!({"full_name": 7, "plan": "canary-gold", "age": -1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), ErrorCode::InvalidInput);
    for field in ["/full_name (type)", "/plan (enum)", "/age (minimum)"] {
        assert!(rejected.message().contains(field), "{rejected}");
    }
    assert!(!rejected.message().contains("canary"), "{rejected}");
    // Nothing stored: still version 1.
    assert_eq!(
        v3.get(&c, "ns", &users, "ada")
            .await
            .unwrap()
            .version
            .version,
        1
    );
    let rewritten = v3
        .upsert(
            &c,
            "ns",
            &users,
            "ada",
            json!({"full_name": "Ada L.", "plan": "pro"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((rewritten.version, rewritten.schema_version), (2, 3));
    let typed: (crate::facade::record::RecordVersion, serde_json::Value) =
        v3.get_typed(&c, "ns", &users, "ada").await.unwrap();
    assert_eq!(typed.1["plan"], json!("pro"));
    // Code that knows only version 1 now meets a version-3 database: drift, refused.
    let stale = storage
        .records()
        .redeclared(declared(vec![users_v1(&users)]), Environment::Development);
    let refused = stale.get(&c, "ns", &users, "ada").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Config);
    assert!(refused.message().contains("newer"), "{refused}");
}

/// Each drift refusal: a version's schema changed under the same number, a version newer
/// than the code knows, and in production a stored collection the code does not declare
/// (a warning only in development). The report says the same without failing.
pub async fn drift_is_refused(storage: &Storage, tenant: &str) {
    let c = ctx(tenant);
    let name = own_collection(tenant, "drift");
    let first = storage
        .records()
        .redeclared(declared(vec![users_v1(&name)]), Environment::Development);
    first
        .upsert(
            &c,
            "ns",
            &name,
            "a",
            json!({"name": "A"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    // The same version number, another schema.
    let edited = CollectionSchema::new(&name)
        .version(1, json!({"type": "object", "required": ["name", "email"]}))
        .unwrap();
    let edited = storage
        .records()
        .redeclared(declared(vec![edited]), Environment::Development);
    let err = edited.get(&c, "ns", &name, "a").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(
        err.message().contains(&name) && err.message().contains("changed"),
        "{err}"
    );
    let report = edited.schema_report().await.unwrap();
    assert!(!report.ok() && report.problems.iter().any(|p| p.contains(&name)));
    // Refused every time, not only the first.
    assert_eq!(
        code(edited.get(&c, "ns", &name, "a").await),
        ErrorCode::Config
    );
    // Undeclared: development warns and goes on; production refuses.
    let undeclared = storage
        .records()
        .redeclared(declared(vec![]), Environment::Development);
    assert_eq!(
        undeclared.get(&c, "ns", &name, "a").await.unwrap().document,
        json!({"name": "A"})
    );
    let report = undeclared.schema_report().await.unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains(&name)),
        "{report:?}"
    );
    let production = storage
        .records()
        .redeclared(declared(vec![]), Environment::Production);
    let err = production.get(&c, "ns", &name, "a").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.message().contains(&name), "{err}");
    // In production, a write to an undeclared collection is refused before anything is kept.
    let fresh = own_collection(tenant, "nodecl");
    let strict = storage
        .records()
        .redeclared(declared(vec![users_v1(&name)]), Environment::Production);
    let err = strict
        .upsert(&c, "ns", &fresh, "x", json!({}), UpsertOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert_eq!(
        code(undeclared.get(&c, "ns", &fresh, "x").await),
        ErrorCode::NotFound
    );
    let report = undeclared.schema_report().await.unwrap();
    assert!(
        !report.stored.iter().any(|s| s.collection == fresh),
        "{report:?}"
    );
}

/// Quotas on records: 16 concurrent creators against `max_records` 5 leave exactly 5; a
/// refused write stores nothing; updates within the limit pass; a delete frees a place; a
/// limit on bytes refuses a document that would pass it; a limit lowered below the usage
/// refuses growth and allows shrinking.
pub async fn quotas_hold_under_concurrency(storage: &Storage, tenant: &str) {
    let c = ctx(tenant);
    let records = storage.records();
    let limits = QuotaLimits {
        max_records: Some(5),
        ..QuotaLimits::default()
    };
    storage.quotas().set(&c, "quota", limits).await.unwrap();
    let results = futures::future::join_all((0..16).map(|i| {
        let c = c.clone();
        async move {
            records
                .upsert(
                    &c,
                    "quota",
                    "docs",
                    &format!("d{i:02}"),
                    json!({"n": i}),
                    UpsertOptions::default(),
                )
                .await
        }
    }))
    .await;
    let won: Vec<usize> = (0..16).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(won.len(), 5, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        if let Err(e) = result {
            assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
            assert_eq!(
                code(records.get(&c, "quota", "docs", &format!("d{i:02}")).await),
                ErrorCode::NotFound
            );
        }
    }
    let usage = records.usage(&c, "quota").await.unwrap();
    assert_eq!(usage.records, 5);
    let page = records
        .list(&c, "quota", "docs", ListRecordsOptions::default())
        .await
        .unwrap();
    assert_eq!(page.records.len(), 5);
    // Updates add no record.
    let first = format!("d{:02}", won[0]);
    records
        .upsert(
            &c,
            "quota",
            "docs",
            &first,
            json!({"n": "updated"}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(
            records
                .upsert(
                    &c,
                    "quota",
                    "docs",
                    "extra",
                    json!({}),
                    UpsertOptions::default()
                )
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    records
        .delete(&c, "quota", "docs", &first, None)
        .await
        .unwrap();
    assert_eq!(records.usage(&c, "quota").await.unwrap().records, 4);
    records
        .upsert(
            &c,
            "quota",
            "docs",
            "extra",
            json!({}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    // Bytes: the usage counts sealed bytes; a document that would pass the limit is refused.
    let used = records.usage(&c, "quota").await.unwrap().bytes;
    assert!(used > 0);
    let limits = QuotaLimits {
        max_records: Some(100),
        max_record_bytes: Some(used + 300),
        ..QuotaLimits::default()
    };
    storage.quotas().set(&c, "quota", limits).await.unwrap();
    let big = json!({"blob": "x".repeat(400)});
    assert_eq!(
        code(
            records
                .upsert(&c, "quota", "docs", "big", big, UpsertOptions::default())
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    assert_eq!(
        code(records.get(&c, "quota", "docs", "big").await),
        ErrorCode::NotFound
    );
    assert_eq!(records.usage(&c, "quota").await.unwrap().bytes, used);
    // Lowered below the usage: no growth, shrinking allowed.
    let lowered = QuotaLimits {
        max_records: Some(1),
        ..QuotaLimits::default()
    };
    storage.quotas().set(&c, "quota", lowered).await.unwrap();
    assert_eq!(
        code(
            records
                .upsert(
                    &c,
                    "quota",
                    "docs",
                    "more",
                    json!({}),
                    UpsertOptions::default()
                )
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    records
        .delete(&c, "quota", "docs", "extra", None)
        .await
        .unwrap();
    assert_eq!(records.usage(&c, "quota").await.unwrap().records, 4);
    // A transaction's writes count too, at its commit: one that would pass a limit commits
    // nothing of itself, not even its deletes.
    let mut tx = records.begin(&c, "quota").await.unwrap();
    let kept = format!("d{:02}", won[1]);
    tx.delete("docs", &kept, None).await.unwrap();
    for id in ["tx1", "tx2"] {
        tx.upsert("docs", id, json!({}), UpsertOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(code(tx.commit().await), ErrorCode::QuotaExceeded);
    assert_eq!(records.usage(&c, "quota").await.unwrap().records, 4);
    assert_eq!(
        code(records.get(&c, "quota", "docs", "tx1").await),
        ErrorCode::NotFound
    );
    assert!(records.get(&c, "quota", "docs", &kept).await.is_ok());
    // Within the limit (one out, one in), the transaction commits and the count holds.
    let four = QuotaLimits {
        max_records: Some(4),
        ..QuotaLimits::default()
    };
    storage.quotas().set(&c, "quota", four).await.unwrap();
    let mut tx = records.begin(&c, "quota").await.unwrap();
    tx.delete("docs", &kept, None).await.unwrap();
    tx.upsert("docs", "tx1", json!({}), UpsertOptions::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(records.usage(&c, "quota").await.unwrap().records, 4);
}

/// Key rotation covers records: after a namespace rotation, retiring the old epoch is refused
/// while a record is under it; re-encryption re-seals it at its own version; then the epoch
/// retires, the record still reads, and its old ciphertext put back no longer opens. A
/// crypto-shredded tenant's records fail with `Encryption`.
pub async fn key_rotation_covers_records(storage: &Storage, tenant: &str) {
    let c = ctx(tenant);
    let records = storage.records();
    let keys = storage.keys();
    let written = records
        .upsert(
            &c,
            "rk",
            "docs",
            "r1",
            json!({"secret": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let key = crate::adapters::record::RecordKey {
        tenant: tenant.into(),
        namespace: "rk".into(),
        collection: "docs".into(),
        id: "r1".into(),
    };
    let old_row = records.adapter().get(&key).await.unwrap().unwrap();
    keys.rotate_namespace(&c, "rk").await.unwrap();
    let refused = keys.retire_epochs(&c, "rk", None).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Conflict);
    assert!(refused.message().contains("1 records"), "{refused}");
    let opts = crate::facade::ReencryptOptions {
        cursor: None,
        limit: 10,
    };
    let report = keys
        .reencrypt_records(&c, "rk", opts.clone())
        .await
        .unwrap();
    assert_eq!((report.records_scanned, report.records_resealed), (1, 1));
    assert!(report.next_cursor.is_none());
    let again = keys.reencrypt_records(&c, "rk", opts).await.unwrap();
    assert_eq!(again.records_resealed, 0, "a finished pass does nothing");
    let now = records.get(&c, "rk", "docs", "r1").await.unwrap();
    assert_eq!(now.document, json!({"secret": 1}));
    assert_eq!(
        now.version, written,
        "re-sealing keeps version and timestamps"
    );
    let resealed = records.adapter().get(&key).await.unwrap().unwrap();
    assert_ne!(resealed.sealed, old_row.sealed);
    keys.retire_epochs(&c, "rk", None).await.unwrap();
    assert_eq!(
        records.get(&c, "rk", "docs", "r1").await.unwrap().document,
        json!({"secret": 1})
    );
    // The old ciphertext, put back at the same version, is under a retired epoch now.
    records
        .adapter()
        .upsert(
            &key,
            &old_row,
            crate::adapters::record::WriteCondition::Version(old_row.version),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        code(records.get(&c, "rk", "docs", "r1").await),
        ErrorCode::Encryption
    );
    records
        .upsert(
            &c,
            "rk",
            "docs",
            "r2",
            json!({"secret": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    keys.shred_tenant(&c).await.unwrap();
    assert_eq!(
        code(records.get(&c, "rk", "docs", "r2").await),
        ErrorCode::Encryption
    );
}
