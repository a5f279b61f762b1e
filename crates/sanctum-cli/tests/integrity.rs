//! Black-box checks of stored-data integrity through the `sanctum` binary: a store written
//! before authentication existed reads after `keys upgrade` and moves to the new formats with
//! `keys reencrypt`; a head edited on disk (a body swap, a changed time) is refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sanctum_storage::conformance::tamper::edit_head_records;
use serde_json::Value;

mod common;
use common::{Sandbox, assert_fails, stderr};

/// The store written by the code of 2026-12-04 (see its README).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-2026-12-04/home"
);

/// Copies `from` into `to` with the modes sanctum wants (0700 folders, 0600 files).
fn copy_private(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_private(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// The head file of `key` in namespace `ns` of the default tenant.
fn head_file(home: &Path, ns: &str, key: &str) -> PathBuf {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    home.join(format!("blobs/objects/t/default/n/{ns}/h/{hex}.k="))
}

/// Bytes of the local backend's own header in each object file (magic, flags, etag).
const LOCAL_HEADER_LEN: usize = 24;

/// Rewrites the version records in a head file, as someone with access to the folder could.
fn edit_head(home: &Path, ns: &str, key: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    let path = head_file(home, ns, key);
    let file = fs::read(&path).unwrap();
    let (local_header, head) = file.split_at(LOCAL_HEADER_LEN);
    let edited = edit_head_records(head, edit).unwrap();
    fs::write(&path, [local_header, &edited].concat()).unwrap();
}

#[test]
fn a_store_from_before_authentication_reads_after_upgrade_and_reencrypt() {
    let sb = Sandbox::new();
    copy_private(Path::new(FIXTURE), &sb.home());

    // Unauthenticated key records are refused until the upgrade, and the error says what to do.
    let out = sb.run(&["blob", "get", "docs", "a.txt"]);
    assert_fails(&out, 8, "encryption");
    assert!(
        stderr(&out).contains("sanctum keys upgrade"),
        "{}",
        stderr(&out)
    );

    let report = sb.json(&["keys", "upgrade"]);
    assert_eq!(report["upgraded"], serde_json::json!(["docs", "photos"]));
    let again = sb.json(&["keys", "upgrade"]);
    assert_eq!(again["upgraded"], serde_json::json!([]), "only once");
    assert_eq!(again["already_current"], 2);

    let expect = |ns: &str, key: &str, body: &[u8]| {
        assert_eq!(sb.ok(&["blob", "get", ns, key]), body, "{ns}/{key}");
    };
    let check_everything = || {
        expect("docs", "a.txt", b"second version of a\n");
        expect("docs", "c.txt", b"written under epoch 2\n");
        expect("photos", "p.jpg", b"photo bytes\n");
        let big = sb.json(&["blob", "head", "docs", "big.bin"]);
        assert_eq!(big["version"]["size"], 100_000);
        assert_eq!(sb.ok(&["blob", "get", "docs", "big.bin"]).len(), 100_000);
        let a = sb.json(&["blob", "versions", "docs", "a.txt"]);
        assert_eq!(a.as_array().unwrap().len(), 2);
        let b = sb.json(&["blob", "versions", "docs", "b.txt"]);
        assert_eq!(b[0]["tombstone"], true);
        assert_fails(&sb.run(&["blob", "get", "docs", "b.txt"]), 3, "not_found");
    };
    check_everything();

    // Old epochs can't be retired while data under them remains.
    assert_fails(&sb.run(&["keys", "retire", "docs"]), 4, "conflict");
    sb.ok(&["keys", "reencrypt", "docs"]);
    sb.ok(&["keys", "reencrypt", "photos"]);
    check_everything();
    // Small bodies moved to the combined layout (metadata and body in one message).
    let mut records = Vec::new();
    edit_head(&sb.home(), "docs", "a.txt", |r| records = r.clone());
    assert!(
        records.iter().all(|r| r["combined_len"].is_u64()),
        "{records:?}"
    );
    let retired = sb.json(&["keys", "retire", "docs"]);
    assert_eq!(retired["retired"], serde_json::json!([1]));
    check_everything();

    // Now every record is tagged, and an untagged one is refused like any other forgery.
    edit_head(&sb.home(), "docs", "a.txt", |records| {
        let record = records[0].as_object_mut().unwrap();
        for field in ["tag", "prev", "seq", "lineage"] {
            record.remove(field);
        }
    });
    assert_fails(&sb.run(&["blob", "get", "docs", "a.txt"]), 8, "encryption");
}

#[test]
fn a_body_swap_or_a_changed_time_in_a_head_file_is_refused() {
    let sb = Sandbox::new();
    let one = sb.file("one", b"version one");
    let two = sb.file("two", b"version two");
    let v1 = sb.json(&["blob", "put", "docs", "k", one.to_str().unwrap()]);
    sb.json(&["blob", "put", "docs", "k", two.to_str().unwrap()]);
    let head = head_file(&sb.home(), "docs", "k");
    let original = fs::read(&head).unwrap();

    edit_head(&sb.home(), "docs", "k", |records| {
        for field in ["body_id", "body_header"] {
            let (newer, older) = (records[0][field].clone(), records[1][field].clone());
            records[0][field] = older;
            records[1][field] = newer;
        }
    });
    let out = sb.run(&["blob", "get", "docs", "k"]);
    assert_fails(&out, 8, "encryption");
    assert!(
        out.stdout.is_empty(),
        "no byte of a swapped body is written"
    );
    let v1_id = v1["version_id"].as_str().unwrap();
    assert_fails(
        &sb.run(&["blob", "get", "docs", "k", "--version", v1_id]),
        8,
        "encryption",
    );

    fs::write(&head, &original).unwrap();
    assert_eq!(sb.ok(&["blob", "get", "docs", "k"]), b"version two");
    edit_head(&sb.home(), "docs", "k", |records| {
        let t = records[1]["created_at_ms"].as_u64().unwrap();
        records[1]["created_at_ms"] = Value::from(t - 86_400_000);
    });
    assert_fails(&sb.run(&["blob", "versions", "docs", "k"]), 8, "encryption");
}

#[test]
fn a_rolled_back_key_record_is_refused_by_a_new_process() {
    let sb = Sandbox::new();
    let body = sb.file("body", b"data");
    sb.ok(&["blob", "put", "docs", "k", body.to_str().unwrap()]);
    let record = sb.home().join("blobs/objects/k/default/n/docs=");
    let epoch_one = fs::read(&record).unwrap();
    sb.ok(&["keys", "rotate", "docs"]);
    // The backend serves the older, authentic record (as if to make new writes use epoch 1):
    // every `sanctum` run is a new process, and the keyring's counter still refuses it.
    fs::write(&record, epoch_one).unwrap();
    let out = sb.run(&["blob", "put", "docs", "k2", body.to_str().unwrap()]);
    assert_fails(&out, 8, "encryption");
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
}
