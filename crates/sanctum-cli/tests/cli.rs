//! End-to-end tests of the `sanctum` binary: each test runs the real executable against its own
//! temporary home folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::{Sandbox, assert_fails, describe, parse, random_bytes, stderr};

fn version_id(v: &Value) -> String {
    v["version_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no version_id in {v}"))
        .to_string()
}

fn head_version(sb: &Sandbox, ns: &str, key: &str) -> String {
    version_id(&sb.json(&["blob", "head", ns, key])["version"])
}

fn versions_len(sb: &Sandbox, ns: &str, key: &str) -> usize {
    sb.json(&["blob", "versions", ns, key])
        .as_array()
        .unwrap()
        .len()
}

/// Files directly in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_large_and_small_files() {
    let sb = Sandbox::new();
    let big = random_bytes(300 * 1024, 1);
    let small = b"0123456789".to_vec();
    let big_path = sb.file("big.bin", &big);
    let small_path = sb.file("small.bin", &small);

    let v_big = sb.json(&[
        "blob",
        "put",
        "docs",
        "dir/big.bin",
        big_path.to_str().unwrap(),
        "--content-type",
        "application/octet-stream",
        "--meta",
        "origin=test",
        "--meta",
        "eq=a=b",
    ]);
    assert_eq!(v_big["size"], 300 * 1024);
    assert!(v_big["checksum"].as_str().unwrap().starts_with("blake3:"));
    let v_small = sb.json(&[
        "blob",
        "put",
        "docs",
        "small.bin",
        small_path.to_str().unwrap(),
    ]);
    assert_eq!(v_small["size"], 10);

    // Plain output of put names the version.
    let plain = String::from_utf8(sb.ok(&["blob", "put", "docs", "stdin.bin", "-"])).unwrap();
    assert!(
        plain.starts_with("version ") && plain.contains(" size 0 "),
        "{plain:?}"
    );
    let piped = sb.run_stdin(&["blob", "put", "docs", "stdin.bin"], &big);
    assert!(piped.status.success(), "{}", describe(&piped));

    for (key, body) in [
        ("dir/big.bin", &big),
        ("small.bin", &small),
        ("stdin.bin", &big),
    ] {
        let out = sb.path().join("out.bin");
        let meta = sb.json(&["blob", "get", "docs", key, "-o", out.to_str().unwrap()]);
        assert_eq!(meta["range"]["start"], 0);
        assert_eq!(meta["range"]["end"], body.len());
        assert_eq!(&std::fs::read(&out).unwrap(), body, "{key} via -o");
        assert_eq!(
            &sb.ok(&["blob", "get", "docs", key]),
            body,
            "{key} via stdout"
        );
    }
    assert_eq!(
        names_in(sb.path()),
        ["big.bin", "home", "out.bin", "small.bin"],
        "no temp files left"
    );

    let head = sb.json(&["blob", "head", "docs", "dir/big.bin"]);
    assert_eq!(head["key"], "dir/big.bin");
    assert_eq!(head["namespace"], "docs");
    assert_eq!(head["version"], v_big);
    assert_eq!(head["version"]["content_type"], "application/octet-stream");
    assert_eq!(head["version"]["metadata"]["origin"], "test");
    assert_eq!(head["version"]["metadata"]["eq"], "a=b");
    let plain_head = String::from_utf8(sb.ok(&["blob", "head", "docs", "dir/big.bin"])).unwrap();
    assert!(
        plain_head.contains(&format!("version: {}", version_id(&v_big))),
        "{plain_head}"
    );
    assert!(plain_head.contains("meta: origin=test"), "{plain_head}");

    let versions = sb.json(&["blob", "versions", "docs", "small.bin"]);
    assert_eq!(versions.as_array().unwrap(), std::slice::from_ref(&v_small));
    assert_eq!(versions_len(&sb, "docs", "stdin.bin"), 2);

    let list = sb.json(&["blob", "ls", "docs"]);
    let keys: Vec<&str> = list["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["dir/big.bin", "small.bin", "stdin.bin"]);
    assert!(list["next_cursor"].is_null());
    let prefixed = sb.json(&["blob", "ls", "docs", "dir/"]);
    assert_eq!(prefixed["objects"].as_array().unwrap().len(), 1);

    // Paging: plain lines on stdout, the cursor on stderr.
    let page = sb.run(&["blob", "ls", "docs", "--limit", "2"]);
    assert!(page.status.success(), "{}", describe(&page));
    let lines: Vec<String> = String::from_utf8(page.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1], format!("small.bin\t10\t{}", version_id(&v_small)));
    let cursor = stderr(&page)
        .trim()
        .strip_prefix("next-cursor: ")
        .expect("cursor on stderr")
        .to_string();
    let rest = sb.json(&["blob", "ls", "docs", "--limit", "2", "--cursor", &cursor]);
    assert_eq!(rest["objects"][0]["key"], "stdin.bin");
    assert!(rest["next_cursor"].is_null());
}

#[test]
fn byte_ranges() {
    let sb = Sandbox::new();
    let data: Vec<u8> = (0u8..100).collect();
    let path = sb.file("data.bin", &data);
    sb.ok(&["blob", "put", "ns", "k", path.to_str().unwrap()]);
    for (range, want) in [
        ("10-19", &data[10..20]),
        ("5-", &data[5..]),
        ("-4", &data[96..]),
        ("90-500", &data[90..]),
    ] {
        assert_eq!(
            sb.ok(&["blob", "get", "ns", "k", "--range", range]),
            want,
            "{range}"
        );
    }
    let out = sb.path().join("part.bin");
    let meta = sb.json(&[
        "blob",
        "get",
        "ns",
        "k",
        "--range",
        "10-19",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        (
            meta["range"]["start"].as_u64(),
            meta["range"]["end"].as_u64()
        ),
        (Some(10), Some(20))
    );
    assert_eq!(std::fs::read(&out).unwrap(), &data[10..20]);
    for bad in ["5-1", "abc", "-", "1-2-3"] {
        assert_fails(
            &sb.run(&["blob", "get", "ns", "k", "--range", bad]),
            11,
            "invalid_input",
        );
    }
    // Well-formed but not satisfiable for a 100-byte object.
    assert_fails(
        &sb.run(&["blob", "get", "ns", "k", "--range", "100-"]),
        11,
        "invalid_input",
    );
}

#[test]
fn exit_codes_and_error_formats() {
    let sb = Sandbox::new();

    // A missing input file: invalid_input, and storage is not even created.
    let out = sb.run(&["blob", "put", "ns", "k", "no-such-file.txt"]);
    assert_fails(&out, 11, "invalid_input");
    assert!(
        stderr(&out).contains("no-such-file.txt"),
        "{}",
        describe(&out)
    );
    assert!(!sb.home().exists(), "storage was touched");
    // A read of a home that does not exist is refused, naming the home, and creates nothing.
    let out = sb.run(&["blob", "get", "ns", "missing"]);
    assert_fails(&out, 3, "not_found");
    assert!(
        stderr(&out).contains("no sanctum home at"),
        "{}",
        describe(&out)
    );
    assert!(!sb.home().exists(), "a read created the home");
    sb.ok(&["blob", "put", "other", "k", "-"]);

    let out = sb.run(&["blob", "get", "ns", "missing"]);
    assert_fails(&out, 3, "not_found");
    assert!(
        stderr(&out).contains("key 'missing' in namespace 'ns'"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["--json", "blob", "head", "ns", "missing"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = parse(&out.stderr);
    assert_eq!(err["error"]["code"], "not_found");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such object"),
        "{err}"
    );
    let out = sb.run(&[
        "--json",
        "blob",
        "get",
        "ns",
        "missing",
        "-o",
        sb.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(parse(&out.stderr)["error"]["code"], "not_found");

    let v1 = sb.file("v1.txt", b"first");
    let v2 = sb.file("v2.txt", b"second");
    let v1 = v1.to_str().unwrap();
    let v2 = v2.to_str().unwrap();

    assert_fails(
        &sb.run(&["blob", "put", "Bad_NS", "k", v1]),
        11,
        "invalid_input",
    );
    assert_fails(
        &sb.run(&["blob", "put", "ns", "../etc/passwd", v1]),
        11,
        "invalid_input",
    );
    assert_fails(
        &sb.run(&["--tenant", "Bad Tenant", "blob", "ls", "ns"]),
        11,
        "invalid_input",
    );
    assert_eq!(
        sb.json(&["blob", "ls", "ns"])["objects"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing stored"
    );
    assert!(!sb.path().join("etc").exists());

    let first = version_id(&sb.json(&["blob", "put", "ns", "k", v1]));
    let out = sb.run(&["blob", "put", "ns", "k", v2, "--if-none-match"]);
    assert_fails(&out, 4, "conflict");
    assert_eq!(sb.ok(&["blob", "get", "ns", "k"]), b"first");
    let second = version_id(&sb.json(&["blob", "put", "ns", "k", v2, "--if-match", &first]));
    assert_fails(
        &sb.run(&["blob", "put", "ns", "k", v1, "--if-match", &first]),
        4,
        "conflict",
    );
    assert_eq!(sb.ok(&["blob", "get", "ns", "k"]), b"second");
    assert_eq!(head_version(&sb, "ns", "k"), second);
    assert_fails(
        &sb.run(&["blob", "put", "ns", "k", v1, "--if-match", "not-a-version"]),
        11,
        "invalid_input",
    );

    // Configuration: an unknown key is named.
    let config = sb.file(
        "sanctum.toml",
        format!(
            "[blob]\nroot = {}\nrooot = \"/typo\"\n",
            serde_json::to_string(sb.path().join("cfg").to_str().unwrap()).unwrap()
        )
        .as_bytes(),
    );
    let out = sb
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["blob", "ls", "ns"])
        .output()
        .unwrap();
    assert_fails(&out, 12, "config");
    assert!(stderr(&out).contains("blob.rooot"), "{}", describe(&out));
    let out = sb
        .bare()
        .arg("--config")
        .arg(sb.path().join("nope.toml"))
        .arg("health")
        .output()
        .unwrap();
    assert_fails(&out, 12, "config");
    // A valid config file works.
    let config = sb.file(
        "good.toml",
        format!(
            "[blob]\nroot = {}\n",
            serde_json::to_string(sb.path().join("cfg").to_str().unwrap()).unwrap()
        )
        .as_bytes(),
    );
    let out = sb
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["--json", "health"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse(&out.stdout)["blob_ok"], true);
    assert_eq!(parse(&out.stdout)["keys_ok"], true);
    assert!(sb.path().join("cfg").is_dir());

    // Usage errors exit 2; help and version exit 0.
    let out = sb.run(&["--json", "blob", "get", "ns", "k"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(parse(&out.stderr)["error"]["code"], "usage");
    assert!(out.stdout.is_empty());
    assert_eq!(sb.run(&["blob", "frobnicate"]).status.code(), Some(2));
    assert_eq!(sb.run(&["blob", "put"]).status.code(), Some(2));
    assert_eq!(
        sb.run(&["blob", "put", "ns", "k", v1, "--meta", "novalue"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        sb.run(&[
            "blob", "put", "ns", "k", v1, "--meta", "a=1", "--meta", "a=2"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        sb.run(&["blob", "ls", "ns", "--limit", "ten"])
            .status
            .code(),
        Some(2)
    );
    let help = sb.run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("invalid_input"),
        "help lists exit codes"
    );
    assert_eq!(sb.run(&["--version"]).status.code(), Some(0));
    assert_eq!(sb.run(&["blob", "get", "--help"]).status.code(), Some(0));
    assert_eq!(
        sb.ok(&["blob", "get", "ns", "k"]),
        b"second",
        "nothing above changed the key"
    );
}

#[test]
fn failed_get_leaves_output_file_untouched() {
    let sb = Sandbox::new();
    let out_dir = sb.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("result.bin");
    std::fs::write(&target, b"precious").unwrap();
    let body = random_bytes(200 * 1024, 7);
    let input = sb.file("in.bin", &body);
    sb.ok(&["blob", "put", "ns", "k", input.to_str().unwrap()]);

    // A version that does not exist.
    let out = sb.run(&[
        "blob",
        "get",
        "ns",
        "k",
        "--version",
        "01aaaaaaaaaaaaaaaaaaaaaaaa",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_fails(&out, 3, "not_found");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(names_in(&out_dir), ["result.bin"]);

    // A missing key, and a bad range.
    assert_fails(
        &sb.run(&["blob", "get", "ns", "nope", "-o", target.to_str().unwrap()]),
        3,
        "not_found",
    );
    assert_fails(
        &sb.run(&[
            "blob",
            "get",
            "ns",
            "k",
            "--range",
            "9-1",
            "-o",
            target.to_str().unwrap(),
        ]),
        11,
        "invalid_input",
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(names_in(&out_dir), ["result.bin"]);

    // Corrupt the stored body (the largest stored file; same size, last byte flipped): the read
    // fails authentication at the last chunk, after the temp file got the earlier chunks.
    let mut files = Vec::new();
    let mut stack = vec![sb.home()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push((entry.metadata().unwrap().len(), entry.path()));
            }
        }
    }
    let (_, body_file) = files.into_iter().max().unwrap();
    let mut stored = std::fs::read(&body_file).unwrap();
    *stored.last_mut().unwrap() ^= 0xff;
    std::fs::write(&body_file, stored).unwrap();
    let out = sb.run(&["blob", "get", "ns", "k", "-o", target.to_str().unwrap()]);
    assert_fails(&out, 8, "encryption");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(names_in(&out_dir), ["result.bin"]);

    // A successful get replaces it.
    let small = sb.file("small.txt", b"new content");
    sb.ok(&["blob", "put", "ns", "k", small.to_str().unwrap()]);
    sb.ok(&["blob", "get", "ns", "k", "-o", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(&target).unwrap(), b"new content");
    assert_eq!(names_in(&out_dir), ["result.bin"]);
}

#[test]
fn versions_restore_rm_purge() {
    let sb = Sandbox::new();
    let one = sb.file("one.txt", b"version one");
    let two = sb.file("two.txt", &random_bytes(100 * 1024, 2));
    let v1 = version_id(&sb.json(&["blob", "put", "ns", "doc", one.to_str().unwrap()]));
    let v2 = version_id(&sb.json(&["blob", "put", "ns", "doc", two.to_str().unwrap()]));
    let tomb = sb.json(&["blob", "rm", "ns", "doc"]);
    assert_eq!(tomb["tombstone"], true);
    assert_fails(&sb.run(&["blob", "get", "ns", "doc"]), 3, "not_found");
    assert_fails(&sb.run(&["blob", "rm", "ns", "doc"]), 3, "not_found");
    assert_eq!(
        sb.json(&["blob", "ls", "ns"])["objects"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let versions = sb.json(&["blob", "versions", "ns", "doc"]);
    let ids: Vec<String> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(version_id)
        .collect();
    assert_eq!(
        ids,
        [version_id(&tomb), v2.clone(), v1.clone()],
        "newest first"
    );

    let restored = sb.json(&["blob", "restore", "ns", "doc", &v1]);
    assert_eq!(restored["restored_from"], v1.as_str());
    assert_eq!(sb.ok(&["blob", "get", "ns", "doc"]), b"version one");
    assert_eq!(head_version(&sb, "ns", "doc"), version_id(&restored));
    assert_eq!(
        sb.ok(&["blob", "get", "ns", "doc", "--version", &v2]),
        std::fs::read(&two).unwrap()
    );
    assert_eq!(versions_len(&sb, "ns", "doc"), 4);
    assert_fails(
        &sb.run(&["blob", "restore", "ns", "doc", &version_id(&tomb)]),
        3,
        "not_found",
    );

    let purged = sb.json(&["blob", "purge", "ns", "doc"]);
    assert_eq!(purged["purged"], true);
    assert_fails(&sb.run(&["blob", "versions", "ns", "doc"]), 3, "not_found");
    assert_fails(
        &sb.run(&["blob", "get", "ns", "doc", "--version", &v1]),
        3,
        "not_found",
    );
    assert_fails(&sb.run(&["blob", "purge", "ns", "doc"]), 3, "not_found");
    assert_eq!(String::from_utf8(sb.ok(&["blob", "ls", "ns"])).unwrap(), "");

    let sweep = sb.json(&["blob", "sweep", "ns", "--grace-secs", "0"]);
    assert_eq!(sweep["bodies_deleted"], 0);
    assert_eq!(sweep["pages_deleted"], 0);
}

/// Spawns one `blob put` per file at once, waits for all, and returns (winner index, statuses).
fn race(sb: &Sandbox, key: &str, files: &[PathBuf], condition: &[&str]) -> (usize, Vec<Output>) {
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            sb.cmd()
                .args(["--json", "blob", "put", "race", key])
                .arg(f)
                .args(condition)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<usize> = (0..outputs.len())
        .filter(|&i| outputs[i].status.success())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer must win: {:?}",
        outputs.iter().map(describe).collect::<Vec<_>>()
    );
    for (i, out) in outputs.iter().enumerate() {
        if i != winners[0] {
            let err = parse(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{}", describe(out));
            assert_eq!(err["error"]["code"], "conflict");
        }
    }
    (winners[0], outputs)
}

#[test]
fn sixteen_processes_race_on_one_key() {
    const WRITERS: usize = 16;
    let sb = Sandbox::new();
    let initial = sb.file("initial.txt", b"initial");
    sb.ok(&["blob", "put", "race", "key", initial.to_str().unwrap()]);
    for round in 0..5 {
        let files: Vec<PathBuf> = (0..WRITERS)
            .map(|w| {
                // Alternate small (inlined) and large bodies between rounds.
                let len = if round % 2 == 0 {
                    1000 + w
                } else {
                    80 * 1024 + w
                };
                sb.file(
                    &format!("r{round}-w{w}.bin"),
                    &random_bytes(len, (round * 100 + w) as u64 + 10),
                )
            })
            .collect();
        let current = head_version(&sb, "race", "key");
        let before = versions_len(&sb, "race", "key");
        let (winner, outputs) = race(&sb, "key", &files, &["--if-match", &current]);
        let won = version_id(&parse(&outputs[winner].stdout));
        assert_eq!(head_version(&sb, "race", "key"), won, "round {round}");
        assert_eq!(
            sb.ok(&["blob", "get", "race", "key"]),
            std::fs::read(&files[winner]).unwrap(),
            "round {round}"
        );
        assert_eq!(
            versions_len(&sb, "race", "key"),
            before + 1,
            "round {round}"
        );
    }

    let files: Vec<PathBuf> = (0..WRITERS)
        .map(|w| {
            sb.file(
                &format!("fresh-w{w}.bin"),
                format!("fresh writer {w}").as_bytes(),
            )
        })
        .collect();
    let (winner, _) = race(&sb, "fresh", &files, &["--if-none-match"]);
    assert_eq!(
        sb.ok(&["blob", "get", "race", "fresh"]),
        std::fs::read(&files[winner]).unwrap()
    );
    assert_eq!(versions_len(&sb, "race", "fresh"), 1);

    // Losers removed their bodies: nothing is left for the sweeper.
    let sweep = sb.json(&["blob", "sweep", "race", "--grace-secs", "0"]);
    assert_eq!(sweep["bodies_deleted"], 0, "{sweep}");
}

#[test]
fn environment_home_and_overrides() {
    let sb = Sandbox::new();
    let env_home = sb.path().join("env-home");
    let input = sb.file("in.txt", b"from env home");
    let out = sb
        .bare()
        .env("SANCTUM_HOME", &env_home)
        .args(["blob", "put", "ns", "k"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(env_home.join("blobs").is_dir());
    assert!(!sb.path().join(".sanctum").exists());
    let out = sb
        .bare()
        .env("SANCTUM_HOME", &env_home)
        .args(["blob", "get", "ns", "k"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"from env home", "{}", describe(&out));
    // --home wins over SANCTUM_HOME.
    let out = sb
        .bare()
        .env("SANCTUM_HOME", &env_home)
        .arg("--home")
        .arg(sb.home())
        .args(["blob", "get", "ns", "k"])
        .output()
        .unwrap();
    assert_fails(&out, 3, "not_found");

    // Neither: ./.sanctum in the working directory.
    let out = sb
        .bare()
        .args(["blob", "put", "ns", "k"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(sb.path().join(".sanctum").join("blobs").is_dir());

    let out = sb
        .cmd()
        .env("SANCTUM_BLOB__INLINE_THRESHOLD", "abc")
        .args(["blob", "ls", "ns"])
        .output()
        .unwrap();
    assert_fails(&out, 12, "config");
    assert!(
        stderr(&out).contains("inline_threshold"),
        "{}",
        describe(&out)
    );
    // health names the home; on a home that does not exist yet it says so.
    let out = sb.run(&["health"]);
    assert_fails(&out, 3, "not_found");
    sb.ok(&["blob", "put", "ns", "k", "-"]);
    let out = sb
        .cmd()
        .env("SANCTUM_BLOB__INLINE_THRESHOLD", "16")
        .args(["--json", "health"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse(&out.stdout)["home"], sb.home().to_str().unwrap());
    let text = String::from_utf8(sb.ok(&["health"])).unwrap();
    let canonical = std::fs::canonicalize(sb.home()).unwrap();
    assert!(
        text.starts_with(&format!("home: {}\n", canonical.display())),
        "{text}"
    );
}

#[test]
fn closed_stdout_is_not_an_error() {
    let sb = Sandbox::new();
    let input = sb.file("big.bin", &random_bytes(2 * 1024 * 1024, 3));
    sb.ok(&["blob", "put", "ns", "k", input.to_str().unwrap()]);
    let mut child = sb
        .cmd()
        .args(["blob", "get", "ns", "k"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}

/// `sanctum keys ...`: rotate the KEK and a namespace key, re-encrypt, then shred.
#[test]
fn keys_rotate_reencrypt_and_shred() {
    let sb = Sandbox::new();
    let body = sb.file("body.bin", &vec![9u8; 100_000]);
    sb.ok(&["blob", "put", "ns", "k", body.to_str().unwrap()]);
    let rotated = sb.ok(&["--json", "keys", "rotate-kek"]);
    let rotated: serde_json::Value = serde_json::from_slice(&rotated).unwrap();
    assert_eq!(rotated["kek_version"], 2);
    let epoch = sb.ok(&["--json", "keys", "rotate", "ns"]);
    let epoch: serde_json::Value = serde_json::from_slice(&epoch).unwrap();
    assert_eq!(epoch["epoch"], 2);
    let report = sb.ok(&["--json", "keys", "reencrypt", "ns"]);
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["bodies_rewritten"], 1);
    assert_eq!(report["epoch"], 2);
    let got = sb.home().join("got.bin");
    sb.ok(&["blob", "get", "ns", "k", "-o", got.to_str().unwrap()]);
    assert_eq!(std::fs::read(&got).unwrap(), vec![9u8; 100_000]);
    // Shredding needs --yes (usage error otherwise) and then nothing of the tenant reads.
    let out = sb.run(&["keys", "shred"]);
    assert_eq!(out.status.code(), Some(2));
    sb.ok(&["keys", "shred", "--yes"]);
    let out = sb.run(&["blob", "get", "ns", "k", "-o", got.to_str().unwrap()]);
    assert_fails(&out, 8, "encryption");
    // Another tenant of the same store is unaffected.
    sb.ok(&[
        "--tenant",
        "other",
        "blob",
        "put",
        "ns",
        "k",
        body.to_str().unwrap(),
    ]);
    sb.ok(&[
        "--tenant",
        "other",
        "blob",
        "get",
        "ns",
        "k",
        "-o",
        got.to_str().unwrap(),
    ]);
}

#[test]
fn policy_grants_quotas_and_tenant_isolation() {
    let sb = Sandbox::new();
    let canary = b"CANARY-7f3a9c-secret-body";
    let body = sb.file("canary.txt", canary);
    let body = body.to_str().unwrap();
    let alice = |args: &[&str]| {
        let mut all = vec!["--actor", "alice"];
        all.extend_from_slice(args);
        sb.run(&all)
    };

    // (1) Without a grant alice may not write, and nothing is stored.
    assert_fails(
        &alice(&["blob", "put", "docs", "a", body]),
        5,
        "unauthorized",
    );
    assert_fails(&sb.run(&["blob", "get", "docs", "a"]), 3, "not_found");
    // Nor may she manage the policy.
    assert_fails(&alice(&["policy", "show"]), 5, "unauthorized");
    assert_fails(
        &alice(&["policy", "grant", "alice", "admin", "--namespace", "docs"]),
        5,
        "unauthorized",
    );

    // (2) local grants alice write on docs: she may put and (write implies read) get, not purge.
    let text =
        String::from_utf8(sb.ok(&["policy", "grant", "alice", "write", "--namespace", "docs"]))
            .unwrap();
    assert_eq!(text, "alice  write  docs\n");
    let text = String::from_utf8(sb.ok(&[
        "policy",
        "grant",
        "bob",
        "read",
        "--namespace",
        "docs",
        "--prefix",
        "pub/",
    ]))
    .unwrap();
    assert_eq!(
        text,
        "alice  write  docs\nbob    read   docs  (keys under 'pub/')\n"
    );
    let out = alice(&["blob", "put", "docs", "a", body]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = alice(&["blob", "get", "docs", "a"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(out.stdout, canary);
    assert_fails(&alice(&["blob", "purge", "docs", "a"]), 5, "unauthorized");
    assert_fails(
        &alice(&["blob", "put", "other-ns", "a", body]),
        5,
        "unauthorized",
    );
    // bob's grant covers only keys under pub/.
    assert_fails(
        &sb.run(&["--actor", "bob", "blob", "get", "docs", "a"]),
        5,
        "unauthorized",
    );
    let grants = sb.json(&["policy", "show"]);
    let grants = grants["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants.contains(&serde_json::json!({
        "actor": "alice", "namespace": "docs", "key_prefix": null, "permission": "write"
    })));

    // (3) Revoking takes the access away; revoking again removes nothing, says so, exits 0.
    let text =
        String::from_utf8(sb.ok(&["policy", "revoke", "alice", "--namespace", "docs"])).unwrap();
    assert!(text.contains("revoked 1 grant"), "{text:?}");
    let text =
        String::from_utf8(sb.ok(&["policy", "revoke", "alice", "--namespace", "docs"])).unwrap();
    assert!(text.starts_with("no grant of alice on docs"), "{text:?}");
    let revoked = sb.json(&["policy", "revoke", "alice", "--namespace", "docs"]);
    assert_eq!(revoked["removed"], 0);
    let out = alice(&["blob", "get", "docs", "a"]);
    assert_fails(&out, 5, "unauthorized");
    assert!(out.stdout.is_empty());

    // (4) The policy as JSON lists the remaining grant.
    let policy = sb.json(&["policy", "show"]);
    assert_eq!(
        policy,
        serde_json::json!({ "grants": [
            { "actor": "bob", "namespace": "docs", "key_prefix": "pub/", "permission": "read" }
        ] })
    );
    let usage = sb.run(&[
        "policy",
        "grant",
        "alice",
        "superuser",
        "--namespace",
        "docs",
    ]);
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));
    let usage = sb.run(&["policy", "grant", "alice", "read"]);
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));

    // (5) Quotas: one object allowed, and docs already holds one.
    let usage = sb.run(&["quota", "set", "docs"]);
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));
    let usage = sb.run(&["quota", "set", "docs", "--max-bytes", "10XB"]);
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));
    let status = sb.json(&["quota", "set", "docs", "--max-objects", "1"]);
    assert_eq!(status["limits"]["max_objects"], 1);
    assert_eq!(status["limits"]["max_bytes"], Value::Null);
    assert_eq!(status["usage"]["objects"], 1);
    assert_fails(
        &sb.run(&["blob", "put", "docs", "b", body]),
        6,
        "quota_exceeded",
    );
    assert_fails(&sb.run(&["blob", "get", "docs", "b"]), 3, "not_found");
    let status = sb.json(&["quota", "show", "docs"]);
    assert_eq!(status["usage"]["objects"], 1);
    assert_eq!(status["usage"]["bytes"], canary.len());
    let text = String::from_utf8(sb.ok(&["quota", "show", "docs"])).unwrap();
    assert_eq!(
        text,
        format!(
            "namespace docs: bytes {} of unlimited, objects 1 of 1\n",
            canary.len()
        )
    );
    let status = sb.json(&[
        "quota",
        "set",
        "docs",
        "--max-bytes",
        "10MiB",
        "--max-objects",
        "5",
    ]);
    assert_eq!(status["limits"]["max_bytes"], 10 * 1024 * 1024);
    assert_eq!(status["limits"]["max_objects"], 5);
    sb.ok(&["quota", "rm", "docs"]);
    assert_eq!(sb.json(&["quota", "show", "docs"]), Value::Null);
    let text = String::from_utf8(sb.ok(&["quota", "show", "docs"])).unwrap();
    assert_eq!(text, "namespace docs: no quota\n");
    assert_eq!(sb.json(&["quota", "rm", "docs"])["removed"], false);

    // (6) Another tenant does not see tenant default's key, even as the superuser.
    let out = sb.run(&["--tenant", "other", "blob", "get", "docs", "a"]);
    assert_fails(&out, 3, "not_found");
    assert!(out.stdout.is_empty());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("CANARY"),
        "{}",
        describe(&out)
    );

    // Every decision is audited, denials included, and no body ever reaches the audit log.
    let audit = std::fs::read_to_string(sb.home().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains(r#""allowed":false"#)),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    assert!(
        !audit.contains("CANARY"),
        "a body leaked into the audit log"
    );
}

/// Switching from the embedded default to S3 is a config file change only: the same binary,
/// commands and outputs, against the S3 emulator (`.ci/emulators.sh`; required in CI).
#[test]
fn s3_is_a_config_change_only() {
    if std::env::var("SANCTUM_TEST_S3").as_deref() != Ok("1") {
        assert_ne!(
            std::env::var("SANCTUM_REQUIRE_EMULATORS").as_deref(),
            Ok("1"),
            "the S3 emulator is required but SANCTUM_TEST_S3 is not 1"
        );
        eprintln!("skipped: no S3 emulator (source .ci/emulators.sh)");
        return;
    }
    let sb = Sandbox::new();
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let prefix = format!(
        "cli-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = sb.file(
        "s3.toml",
        format!(
            "[blob]\nbackend = \"s3\"\nbucket = {}\nprefix = {}\nendpoint = {}\n\
             region = \"us-east-1\"\nallow_http = true\npath_style = true\n\
             [keys]\nprovider = \"local\"\nkeyring = {}\n\
             [policy]\nsuperusers = [\"local\"]\n",
            quoted(&std::env::var("AWS_BUCKET").unwrap()),
            quoted(&prefix),
            quoted(&std::env::var("AWS_ENDPOINT").unwrap()),
            quoted(sb.path().join("keyring.json").to_str().unwrap()),
        )
        .as_bytes(),
    );
    let run = |args: &[&str]| {
        let out = sb
            .bare()
            .arg("--config")
            .arg(&config)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        out.stdout
    };
    let health = parse(&run(&["health"]));
    assert_eq!(health["blob_ok"], true, "{health}");
    // 12 MiB goes up as a multipart upload; 10 bytes are inlined in the head.
    let big = random_bytes(12 * 1024 * 1024, 5);
    let big_path = sb.file("big.bin", &big);
    let small_path = sb.file("small.bin", b"0123456789");
    run(&["blob", "put", "docs", "big.bin", big_path.to_str().unwrap()]);
    let first = parse(&run(&[
        "blob",
        "put",
        "docs",
        "small.bin",
        small_path.to_str().unwrap(),
    ]));
    run(&[
        "blob",
        "put",
        "docs",
        "small.bin",
        big_path.to_str().unwrap(),
    ]);
    let out = sb.path().join("out.bin");
    run(&[
        "blob",
        "get",
        "docs",
        "big.bin",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), big);
    run(&[
        "blob",
        "get",
        "docs",
        "small.bin",
        "--version",
        &version_id(&first),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"0123456789");
    let listed = parse(&run(&["blob", "ls", "docs"]));
    assert_eq!(listed["objects"].as_array().unwrap().len(), 2, "{listed}");
    // Nothing was stored locally but the development keyring.
    assert_eq!(
        names_in(sb.path()),
        [
            "big.bin",
            "keyring.json",
            "keyring.json.lock",
            "out.bin",
            "s3.toml",
            "small.bin"
        ]
    );
}

/// Runs `sanctum ARGS` inside a pseudo-terminal (util-linux `script`), so stdin and stderr are
/// terminals as in an interactive shell; returns the exit status and everything it printed.
fn run_in_terminal(sb: &Sandbox, args: &[&str]) -> (i32, String) {
    let mut line = format!("'{}'", env!("CARGO_BIN_EXE_sanctum"));
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(sb.path())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn global_flags_work_after_the_command() {
    let sb = Sandbox::new();
    let home = sb.home();
    let home = home.to_str().unwrap();
    let input = sb.file("in.txt", b"after");
    let out = sb
        .bare()
        .args(["blob", "put", "docs", "k"])
        .arg(&input)
        .args(["--home", home, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse(&out.stdout)["size"], 5);
    let out = sb
        .bare()
        .args([
            "blob", "ls", "docs", "--json", "--home", home, "--tenant", "default",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse(&out.stdout)["objects"][0]["key"], "k");
    // An actor given after the command is the one checked.
    let out = sb
        .bare()
        .args(["blob", "get", "docs", "k", "--home", home, "--actor", "bob"])
        .output()
        .unwrap();
    assert_fails(&out, 5, "unauthorized");
    assert!(stderr(&out).contains("actor 'bob'"), "{}", describe(&out));
}

#[test]
fn a_forgotten_file_on_a_terminal_is_refused_and_stores_nothing() {
    let sb = Sandbox::new();
    let home = sb.home();
    let home = home.to_str().unwrap();
    sb.ok(&["blob", "put", "docs", "other", "-"]);
    let (status, printed) = run_in_terminal(&sb, &["--home", home, "blob", "put", "docs", "k"]);
    assert_eq!(status, 2, "{printed}");
    assert!(printed.contains("stdin is a terminal"), "{printed}");
    assert!(printed.contains("`-`"), "{printed}");
    assert_fails(&sb.run(&["blob", "head", "docs", "k"]), 3, "not_found");
    // Piped stdin without FILE still works, as does `-`.
    let out = sb.run_stdin(&["blob", "put", "docs", "k"], b"piped");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(sb.ok(&["blob", "get", "docs", "k"]), b"piped");
}

#[test]
fn large_transfers_show_progress_only_on_a_terminal() {
    let sb = Sandbox::new();
    let home = sb.home();
    let home = home.to_str().unwrap();
    let big = sb.file("big.bin", &random_bytes(12 << 20, 7));
    let big = big.to_str().unwrap();
    let (status, printed) =
        run_in_terminal(&sb, &["--home", home, "blob", "put", "docs", "big", big]);
    assert_eq!(status, 0, "{printed}");
    assert!(printed.contains("MiB/12.00 MiB stored"), "{printed}");
    let (status, printed) = run_in_terminal(
        &sb,
        &[
            "--home", home, "blob", "get", "docs", "big", "-o", "out.bin",
        ],
    );
    assert_eq!(status, 0, "{printed}");
    assert!(printed.contains("MiB/12.00 MiB read"), "{printed}");
    // Not a terminal: no bar, only the result.
    let out = sb.run(&["blob", "put", "docs", "big", big]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}

#[test]
fn config_problems_are_reported_together_in_plain_words() {
    let sb = Sandbox::new();
    let config = sb.file(
        "bad.toml",
        b"[blob]\nroot = \"blobs\"\ndurability = 1\ninline_threshold = \"big\"\n\
          [policy]\ncache_ttl_ms = true\n",
    );
    let out = sb
        .bare()
        .arg("--config")
        .arg(&config)
        .args(["blob", "ls", "docs"])
        .output()
        .unwrap();
    assert_fails(&out, 12, "config");
    let text = stderr(&out);
    for expected in [
        "blob.durability: expected \"fsync\" or \"os\", found an integer (1)",
        "blob.inline_threshold: expected a whole number of 0 or more, found a string (\"big\")",
        "policy.cache_ttl_ms: expected a whole number of 0 or more, found a boolean (true)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing: {text}");
    }
    assert!(!text.contains("unit variant"), "{text}");
}

#[test]
fn a_configured_store_is_bootstrapped_with_init() {
    let sb = Sandbox::new();
    let root = sb.path().join("store");
    let config = sb.file(
        "minimal.toml",
        format!("[blob]\nroot = {:?}\n", root.to_str().unwrap()).as_bytes(),
    );
    let input = sb.file("in.txt", b"data");
    let as_actor = |actor: &str, args: &[&str]| {
        sb.bare()
            .arg("--config")
            .arg(&config)
            .args(["--actor", actor])
            .args(args)
            .output()
            .unwrap()
    };
    let put = ["blob", "put", "docs", "k", input.to_str().unwrap()];
    let out = as_actor("alice", &put);
    assert_fails(&out, 5, "unauthorized");
    let text = stderr(&out);
    assert!(text.contains("no grants at all yet"), "{text}");
    assert!(text.contains("sanctum init --admin"), "{text}");
    assert_fails(
        &as_actor(
            "alice",
            &["policy", "grant", "alice", "admin", "--namespace", "*"],
        ),
        5,
        "unauthorized",
    );

    let out = as_actor("alice", &["init"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("alice is admin of tenant default"),
        "{}",
        describe(&out)
    );
    // Idempotent for the same admin; refused once the tenant has grants.
    assert!(as_actor("alice", &["init"]).status.success());
    let out = as_actor("mallory", &["init"]);
    assert_fails(&out, 4, "conflict");
    assert!(
        stderr(&out).contains("already has 1 grant"),
        "{}",
        describe(&out)
    );

    assert!(as_actor("alice", &put).status.success());
    let out = as_actor("bob", &["blob", "get", "docs", "k"]);
    assert_fails(&out, 5, "unauthorized");
    assert!(stderr(&out).contains("ask an admin"), "{}", describe(&out));
    assert!(
        as_actor(
            "alice",
            &["policy", "grant", "bob", "read", "--namespace", "docs"]
        )
        .status
        .success()
    );
    assert_eq!(
        as_actor("bob", &["blob", "get", "docs", "k"]).stdout,
        b"data"
    );
}

#[test]
fn errors_name_their_subject() {
    let sb = Sandbox::new();
    sb.ok(&["blob", "put", "docs", "k", "-"]);
    let foreign = version_id(&sb.json(&["blob", "put", "docs", "other", "-"]));
    let out = sb.run(&["blob", "get", "docs", "nope"]);
    assert_fails(&out, 3, "not_found");
    assert!(
        stderr(&out).contains("no such object: key 'nope' in namespace 'docs'"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["blob", "get", "docs", "k", "--version", &foreign]);
    assert_fails(&out, 3, "not_found");
    assert!(
        stderr(&out).contains(&format!("{foreign} of key 'k' in namespace 'docs'")),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["blob", "get", "Docs", "k"]);
    assert_fails(&out, 11, "invalid_input");
    assert!(stderr(&out).contains("\"Docs\""), "{}", describe(&out));
    assert!(stderr(&out).contains("uppercase"), "{}", describe(&out));
    let out = sb.run(&["--actor", "bob", "blob", "ls", "docs", "pre/"]);
    assert_fails(&out, 5, "unauthorized");
    assert!(
        stderr(&out).contains("actor 'bob' may not list keys under 'pre/' in namespace 'docs'"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["blob", "get", "docs", "k", "--range", "200-100"]);
    assert_fails(&out, 11, "invalid_input");
    assert!(
        stderr(&out).contains("start (200) is after its end (100)"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["keys", "rotate", "nosuchns"]);
    assert_fails(&out, 3, "not_found");
    assert!(stderr(&out).contains("'nosuchns'"), "{}", describe(&out));
}

/// The head manifest file of `key` in namespace `ns` of the default tenant.
fn head_file(sb: &Sandbox, ns: &str, key: &str) -> PathBuf {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    sb.home()
        .join(format!("blobs/objects/t/default/n/{ns}/h/{hex}.k="))
}

#[test]
fn a_damaged_head_is_named_and_can_be_listed_past() {
    let sb = Sandbox::new();
    for key in ["a", "b", "c"] {
        sb.ok(&["blob", "put", "docs", key, "-"]);
    }
    let head = head_file(&sb, "docs", "b");
    assert!(head.is_file(), "layout changed: {}", head.display());
    std::fs::write(&head, b"garbage, not a manifest").unwrap();
    let out = sb.run(&["blob", "ls", "docs"]);
    assert_fails(&out, 7, "consistency");
    assert!(stderr(&out).contains("key 'b'"), "{}", describe(&out));
    assert!(
        stderr(&out).contains("--skip-damaged"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["blob", "ls", "docs", "--skip-damaged"]);
    assert!(out.status.success(), "{}", describe(&out));
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a", "c"]);
    assert!(
        stderr(&out).contains("skipped damaged key 'b'"),
        "{}",
        describe(&out)
    );
    let doc = sb.json(&["blob", "ls", "docs", "--skip-damaged"]);
    assert_eq!(doc["damaged"][0]["key"], "b");
    assert_eq!(doc["objects"].as_array().unwrap().len(), 2);
}

#[test]
fn list_cursors_are_opaque_and_bound_to_their_namespace() {
    let sb = Sandbox::new();
    for key in ["key-one", "key-two"] {
        sb.ok(&["blob", "put", "docs", key, "-"]);
        sb.ok(&["blob", "put", "other", key, "-"]);
        sb.ok(&["--tenant", "t2", "blob", "put", "docs", key, "-"]);
    }
    let out = sb.run(&["blob", "ls", "docs", "--limit", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let cursor = stderr(&out)
        .trim()
        .strip_prefix("next-cursor: ")
        .unwrap()
        .to_string();
    let hex: String = "key-one".bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!cursor.contains(&hex), "the cursor shows the key: {cursor}");
    let rest = sb.ok(&["blob", "ls", "docs", "--cursor", &cursor]);
    assert!(String::from_utf8_lossy(&rest).starts_with("key-two\t"));
    for other in [
        vec!["blob", "ls", "other", "--cursor", &cursor],
        vec!["--tenant", "t2", "blob", "ls", "docs", "--cursor", &cursor],
    ] {
        let out = sb.run(&other);
        assert_fails(&out, 3, "not_found");
        assert!(out.stdout.is_empty(), "a foreign cursor got a page");
    }
}

#[test]
fn human_output_reads_naturally() {
    let sb = Sandbox::new();
    let input = sb.file("in.txt", &random_bytes(20_000, 3));
    let input = input.to_str().unwrap();
    let out = sb.run(&["blob", "put", "docs", "k", input]);
    assert!(
        stderr(&out).starts_with("note: created a new sanctum home at "),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["blob", "put", "docs", "k", input]);
    assert!(
        out.stderr.is_empty(),
        "only a new home is announced: {}",
        describe(&out)
    );
    // An inclusive range prints inclusive.
    let text = String::from_utf8(sb.ok(&[
        "blob",
        "get",
        "docs",
        "k",
        "--range",
        "16399-16401",
        "-o",
        "part.bin",
    ]))
    .unwrap();
    assert!(text.contains(" bytes 16399-16401 of 20000 "), "{text}");
    assert_eq!(
        std::fs::metadata(sb.path().join("part.bin")).unwrap().len(),
        3
    );
    // versions: a header and RFC 3339 times.
    let text = String::from_utf8(sb.ok(&["blob", "versions", "docs", "k"])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "VERSION\tSIZE\tCREATED\tNOTE");
    assert_eq!(lines.len(), 3, "{text}");
    let created = lines[1].split('\t').nth(2).unwrap();
    assert!(
        created.len() == 24 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "{created}"
    );
    assert!(created.starts_with("20"), "{created}");
}

#[test]
fn grants_quotas_and_completions_say_what_they_did() {
    let sb = Sandbox::new();
    let input = sb.file("in.txt", &[7u8; 1000]);
    let input = input.to_str().unwrap();
    sb.ok(&["blob", "put", "docs", "a", input]);
    sb.ok(&["blob", "put", "docs", "b", input]);
    // policy grant prints that namespace's grants; a tenant-wide grant prints all of them.
    sb.ok(&["policy", "grant", "bob", "read", "--namespace", "other"]);
    let text =
        String::from_utf8(sb.ok(&["policy", "grant", "amy", "write", "--namespace", "docs"]))
            .unwrap();
    assert_eq!(text, "amy  write  docs\n");
    let text =
        String::from_utf8(sb.ok(&["policy", "grant", "cy", "admin", "--namespace", "*"])).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    // A quota below the current usage is accepted with a warning.
    let out = sb.run(&[
        "quota",
        "set",
        "docs",
        "--max-bytes",
        "1500",
        "--max-objects",
        "1",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let warnings = stderr(&out);
    assert!(
        warnings.contains(
            "warning: namespace docs already keeps 2000 bytes, more than the new limit of 1500"
        ),
        "{warnings}"
    );
    assert!(warnings.contains("already holds 2 objects"), "{warnings}");
    let doc = sb.json(&["quota", "set", "docs", "--max-bytes", "1500"]);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1, "{doc}");
    let doc = sb.json(&["quota", "set", "docs", "--max-bytes", "5000"]);
    assert!(doc.get("warnings").is_none(), "{doc}");
    // Completions need no home.
    let fresh = Sandbox::new();
    let script = fresh.ok(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&script).contains("_sanctum"));
    assert!(!fresh.home().exists());
}

#[cfg(unix)]
#[test]
fn a_home_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sb.ok(&["blob", "put", "docs", "k", "-"]);
    let mode = std::fs::metadata(sb.home()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "a new home is private");
    std::fs::set_permissions(sb.home(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = sb.run(&["blob", "get", "docs", "k"]);
    assert_fails(&out, 12, "config");
    assert!(stderr(&out).contains("chmod 700"), "{}", describe(&out));
}
