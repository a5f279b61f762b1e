//! `sanctum record ...` end to end, on the embedded default (`<home>/records.db`).

mod common;

use std::process::Stdio;

use common::{Sandbox, assert_fails, parse};
use serde_json::json;

/// Put from a file and from stdin, get (plain and `--json`), list, conditions, delete, and the
/// errors a user meets first.
#[test]
fn record_commands_round_trip() {
    let sb = Sandbox::new();
    let doc = sb.file("ada.json", br#"{"name": "ada", "langs": ["en"]}"#);
    let out = sb.ok(&["record", "put", "ns", "users", "ada", doc.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "ns/users/ada version 1"
    );
    let put = sb.run_stdin(
        &[
            "--json",
            "record",
            "put",
            "ns",
            "users",
            "ada",
            "-",
            "--if-version",
            "1",
        ],
        br#"{"name": "ada", "langs": ["en", "fr"]}"#,
    );
    assert!(put.status.success(), "{}", common::describe(&put));
    assert_eq!(parse(&put.stdout)["version"], json!(2));
    let got = sb.json(&["record", "get", "ns", "users", "ada"]);
    assert_eq!(
        got["document"],
        json!({"name": "ada", "langs": ["en", "fr"]})
    );
    assert_eq!(got["version"]["version"], json!(2));
    let plain = sb.ok(&["record", "get", "ns", "users", "ada"]);
    let shown: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(shown["langs"], json!(["en", "fr"]));
    // A stale version and a second create are conflicts (exit 4).
    let stale = sb.run_stdin(
        &[
            "record",
            "put",
            "ns",
            "users",
            "ada",
            "-",
            "--if-version",
            "1",
        ],
        b"{}",
    );
    assert_fails(&stale, 4, "conflict");
    let again = sb.run_stdin(
        &["record", "put", "ns", "users", "ada", "--if-absent"],
        b"{}",
    );
    assert_fails(&again, 4, "conflict");
    // Not JSON, not an object: invalid input (exit 11), and the error does not echo the text.
    let garbage = sb.run_stdin(&["record", "put", "ns", "users", "bob"], b"secret-ish {");
    assert_fails(&garbage, 11, "invalid_input");
    assert!(!common::stderr(&garbage).contains("secret-ish"));
    let array = sb.run_stdin(&["record", "put", "ns", "users", "bob"], b"[1]");
    assert_fails(&array, 11, "invalid_input");
    for i in 0..3 {
        sb.run_stdin(&["record", "put", "ns", "users", &format!("u{i}")], b"{}");
    }
    let listed = sb.json(&["record", "ls", "ns", "users", "--limit", "2"]);
    let ids: Vec<_> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["ada", "u0"]);
    let cursor = listed["next_cursor"].as_str().unwrap();
    let rest = sb.json(&["record", "ls", "ns", "users", "--cursor", cursor]);
    assert_eq!(rest["records"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    sb.ok(&["record", "rm", "ns", "users", "ada", "--if-version", "2"]);
    let gone = sb.run(&["record", "get", "ns", "users", "ada"]);
    assert_fails(&gone, 3, "not_found");
    // Another tenant sees nothing of it.
    let other = sb.run(&["--tenant", "other", "record", "get", "ns", "users", "u0"]);
    assert_fails(&other, 3, "not_found");
}

/// 8 `sanctum record put --if-version` processes race on one SQLite file, round after round:
/// exactly one wins each round, the others get `conflict`, and the record ends at the winner's
/// document.
#[test]
fn concurrent_processes_have_one_winner_per_round() {
    let sb = Sandbox::new();
    let first = sb.run_stdin(&["record", "put", "ns", "race", "r"], br#"{"round": 0}"#);
    assert!(first.status.success(), "{}", common::describe(&first));
    for round in 1..=4u64 {
        let children: Vec<_> = (0..8)
            .map(|p| {
                let mut child = sb
                    .cmd()
                    .args([
                        "record",
                        "put",
                        "ns",
                        "race",
                        "r",
                        "-",
                        "--if-version",
                        &round.to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let doc = format!(r#"{{"round": {round}, "writer": {p}}}"#);
                std::io::Write::write_all(&mut child.stdin.take().unwrap(), doc.as_bytes())
                    .unwrap();
                child
            })
            .collect();
        let mut winners = Vec::new();
        for (p, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            match out.status.code() {
                Some(0) => winners.push(p),
                _ => assert_fails(&out, 4, "conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let got = sb.json(&["record", "get", "ns", "race", "r"]);
        assert_eq!(got["version"]["version"], json!(round + 1));
        assert_eq!(
            got["document"],
            json!({"round": round, "writer": winners[0]})
        );
    }
}

/// Collections declared in `<home>/sanctum.toml`: `schema show` and `schema check` print them,
/// a document written before the declaration reads upcast, writes are validated (every failing
/// field named, nothing echoed), a schema edited under the same version number stops the
/// record commands (and `schema check` says why, exiting 0), `migrate` prepares the database,
/// and `quota set --max-records` limits the records.
#[test]
fn collections_declared_in_the_home_file() {
    let sb = Sandbox::new();
    let home = sb.home();
    let early = sb.run_stdin(
        &["record", "put", "ns", "users", "old"],
        br#"{"name": "Old"}"#,
    );
    assert!(early.status.success(), "{}", common::describe(&early));
    let v1 = r#"{"type": "object", "required": ["name"]}"#;
    let v2 = r#"{"type": "object", "required": ["full_name", "plan"],
                 "properties": {"plan": {"enum": ["free", "pro"]}}}"#;
    std::fs::create_dir_all(home.join("schemas")).unwrap();
    std::fs::write(home.join("schemas/users.v1.json"), v1).unwrap();
    std::fs::write(home.join("schemas/users.v2.json"), v2).unwrap();
    std::fs::write(
        home.join("sanctum.toml"),
        r#"
[[record.collections]]
name = "users"
[[record.collections.versions]]
version = 1
schema = "schemas/users.v1.json"
[[record.collections.versions]]
version = 2
schema = "schemas/users.v2.json"
upcast = [{ rename = "/name", to = "/full_name" }, { add = "/plan", default = "free" }]
"#,
    )
    .unwrap();
    let shown = sb.json(&["schema", "show"]);
    assert_eq!(shown[0]["collection"], json!("users"));
    assert_eq!(shown[0]["versions"].as_array().unwrap().len(), 2);
    let check = String::from_utf8(sb.ok(&["schema", "check"])).unwrap();
    assert!(check.contains("no drift"), "{check}");
    let old = sb.json(&["record", "get", "ns", "users", "old"]);
    assert_eq!(old["document"], json!({"full_name": "Old", "plan": "free"}));
    assert_eq!(old["version"]["schema_version"], json!(0));
    let bad = sb.run_stdin(
        &["record", "put", "ns", "users", "bad"],
        br#"{"name": "canary-name", "plan": "gold"}"#,
    );
    assert_fails(&bad, 11, "invalid_input");
    let err = common::stderr(&bad);
    assert!(
        err.contains("/full_name (required)") && err.contains("/plan (enum)"),
        "{err}"
    );
    assert!(!err.contains("canary") && !err.contains("gold"), "{err}");
    let good = sb.run_stdin(
        &["--json", "record", "put", "ns", "users", "good"],
        br#"{"full_name": "G", "plan": "pro"}"#,
    );
    assert!(good.status.success(), "{}", common::describe(&good));
    assert_eq!(parse(&good.stdout)["schema_version"], json!(2));
    // Quotas on records.
    sb.ok(&["quota", "set", "ns", "--max-records", "2"]);
    let shown = sb.json(&["quota", "show", "ns"]);
    assert_eq!(shown["record_usage"]["records"], json!(2));
    let third = sb.run_stdin(
        &["record", "put", "ns", "users", "third"],
        br#"{"full_name": "T", "plan": "free"}"#,
    );
    assert_fails(&third, 6, "quota_exceeded");
    // The same version number, another schema: refused until fixed.
    std::fs::write(
        home.join("schemas/users.v2.json"),
        r#"{"type": "object", "required": ["full_name"]}"#,
    )
    .unwrap();
    let drifted = sb.run(&["record", "get", "ns", "users", "good"]);
    assert_fails(&drifted, 12, "config");
    assert!(common::stderr(&drifted).contains("changed"));
    let check = sb.run(&["schema", "check"]);
    assert!(check.status.success(), "{}", common::describe(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("drift: collection 'users'"));
    std::fs::write(home.join("schemas/users.v2.json"), v2).unwrap();
    let migrated = String::from_utf8(sb.ok(&["migrate"])).unwrap();
    assert!(migrated.contains("migrated"), "{migrated}");
    sb.ok(&["record", "get", "ns", "users", "good"]);
}
