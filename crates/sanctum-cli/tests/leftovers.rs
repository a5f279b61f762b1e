//! End-to-end tests of what crashes, full or read-only disks and permissions leave behind: each
//! test runs the real `sanctum` binary against its own temporary home folder.
//!
//! - Writers killed with SIGKILL leave temp files; `blob sweep` removes every kind of them.
//! - A read-only home (a mounted snapshot or backup) can be read; writes name the folder.
//! - A full disk leaves no file behind, and the failed write names its file.
//! - Folders are `0700` and files `0600` whatever the umask; a root others can write is refused.

use std::fs::{self, Metadata};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{Rng, Sandbox, assert_fails, describe, parse, random_bytes, stderr};

/// `sanctum --home <home> ARGS` with the home mounted read-only in a private mount
/// namespace (`unshare -m`; the mount disappears with the process).
fn read_only(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = sb.program("unshare");
    cmd.args(["-m", "sh", "-c", READ_ONLY_SCRIPT])
        .arg(sb.home())
        .arg(env!("CARGO_BIN_EXE_sanctum"))
        .arg("--home")
        .arg(sb.home())
        .args(args)
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

/// `sanctum --home <home> ARGS` under umask 000.
fn umask_000(sb: &Sandbox, args: &[&str]) -> Output {
    let mut cmd = sb.program("sh");
    cmd.args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_sanctum"))
        .arg("--home")
        .arg(sb.home())
        .args(args);
    cmd.output().unwrap()
}

/// Bind-mounts `$0` on itself read-only, then runs `"$@"`.
const READ_ONLY_SCRIPT: &str =
    "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$@\"";

/// Every file and folder under `dir` (not following symlinks), sorted by path.
fn tree(dir: &Path) -> Vec<(PathBuf, Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What an interrupted write leaves: temp files of objects (`.<id>.tmp`) and of the keyring
/// (`.keyring.json.tmp-*`), and health probes (`health-*`).
fn is_leftover(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.contains(".tmp") || name.contains("tmp-") || name.starts_with("health-")
}

/// Leftover files under `dir`, with their sizes.
fn leftovers(dir: &Path) -> Vec<(PathBuf, u64)> {
    tree(dir)
        .into_iter()
        .filter(|(p, m)| m.is_file() && is_leftover(p))
        .map(|(p, m)| (p, m.len()))
        .collect()
}

/// Object files (bodies) under `dir`, with their stored sizes (the file less its 24-byte
/// header).
fn bodies(dir: &Path) -> Vec<(PathBuf, u64)> {
    if !dir.exists() {
        return Vec::new();
    }
    tree(dir)
        .into_iter()
        .filter(|(p, m)| m.is_file() && p.to_string_lossy().ends_with('='))
        .map(|(p, m)| (p, m.len() - 24))
        .collect()
}

fn version_ids(sb: &Sandbox, ns: &str, key: &str) -> Vec<String> {
    sb.json(&["blob", "versions", ns, key])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version_id"].as_str().unwrap().to_string())
        .collect()
}

/// Writes a file whose last change was `age` ago.
fn plant(path: &Path, bytes: &[u8], age: Duration) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn killed_puts_leave_nothing_after_a_sweep() {
    const MIB: usize = 1024 * 1024;
    const KILLS: usize = 30;
    let sb = Sandbox::new();
    let body = random_bytes(20 * MIB, 11);
    let input = sb.file("big.bin", &body);
    let input = input.to_str().unwrap();
    let put = ["blob", "put", "docs", "big", input];
    // One put runs to the end: it sets up the store and says how long a put takes here.
    let started = Instant::now();
    sb.ok(&put);
    let whole = started.elapsed();

    let seed = std::env::var("LEFTOVERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("killing puts at random points: LEFTOVERS_SEED={seed}, a whole put took {whole:?}");
    let mut rng = Rng::new(seed);
    let mut finished = 0;
    for _ in 0..KILLS {
        let mut child = sb
            .cmd()
            .args(put)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole.mul_f64(1.2 * rng.unit()));
        // SIGKILL; a put that already ended is not an error.
        let _ = child.kill();
        if child.wait().unwrap().success() {
            finished += 1;
        }
    }

    let home = sb.home();
    let left = leftovers(&home);
    let body_dir = home.join("blobs/objects/t/default/n/docs/b");
    let bodies_before = bodies(&body_dir);
    eprintln!(
        "{finished} of {KILLS} puts finished; {} leftover files, {} bodies",
        left.len(),
        bodies_before.len()
    );
    assert!(
        !left.is_empty(),
        "no kill landed inside a write (LEFTOVERS_SEED={seed}): the test proves nothing"
    );

    let sweep = sb.json(&["blob", "sweep", "docs", "--grace-secs", "0"]);
    let remaining = leftovers(&home);
    assert!(remaining.is_empty(), "left after the sweep: {remaining:?}");
    let bodies_after = bodies(&body_dir);
    let swept_bodies: Vec<_> = bodies_before
        .iter()
        .filter(|b| !bodies_after.contains(b))
        .collect();
    let bytes =
        left.iter().map(|(_, n)| n).sum::<u64>() + swept_bodies.iter().map(|(_, n)| n).sum::<u64>();
    assert_eq!(sweep["temp_files_deleted"], left.len(), "{sweep}");
    assert_eq!(sweep["bodies_deleted"], swept_bodies.len(), "{sweep}");
    assert_eq!(sweep["pages_deleted"], 0, "{sweep}");
    assert_eq!(sweep["bytes_deleted"], bytes, "{sweep}");

    // Every committed version still reads back whole.
    let versions = version_ids(&sb, "docs", "big");
    // A put killed after its commit but before it exited counts too.
    assert!(
        (1 + finished..=1 + KILLS).contains(&versions.len()),
        "{finished} finished: {versions:?}"
    );
    let out = sb.path().join("out.bin");
    for v in &versions {
        sb.ok(&[
            "blob",
            "get",
            "docs",
            "big",
            "--version",
            v,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(fs::read(&out).unwrap() == body, "version {v} differs");
    }
    // Nothing left to sweep.
    let again = sb.json(&["blob", "sweep", "docs", "--grace-secs", "0"]);
    assert_eq!(again["temp_files_deleted"], 0, "{again}");
    assert_eq!(again["bytes_deleted"], 0, "{again}");
}

#[test]
fn sweep_removes_every_kind_of_leftover_past_the_grace_period() {
    let sb = Sandbox::new();
    let input = sb.file("small.txt", b"hello");
    sb.ok(&["blob", "put", "docs", "k", input.to_str().unwrap()]);
    sb.ok(&["policy", "grant", "alice", "read", "--namespace", "docs"]);
    sb.ok(&["quota", "set", "docs", "--max-objects", "10"]);
    sb.ok(&["keys", "rotate", "docs"]);
    let home = sb.home();
    let objects = home.join("blobs/objects");
    let hour = Duration::from_secs(3600);
    // What killed writers of each kind leave, and what the health probe of earlier versions
    // left on a full disk: an old one (two hours) and a young one of each.
    let old_id = "01aaaaaaaaaaaaaaaaaaaaaaaa";
    let young_id = "01bbbbbbbbbbbbbbbbbbbbbbbb";
    let temp = |folder: &str, id: &str| objects.join(folder).join(format!(".{id}.tmp"));
    let kinds: Vec<(PathBuf, PathBuf)> = vec![
        // A head, a body, the quota, the grants, the tenant and the namespace key records.
        (
            temp("t/default/n/docs/h", old_id),
            temp("t/default/n/docs/h", young_id),
        ),
        (
            temp("t/default/n/docs/b/6b.k", old_id),
            temp("t/default/n/docs/b/6b.k", young_id),
        ),
        (
            temp("t/default/n/docs", old_id),
            temp("t/default/n/docs", young_id),
        ),
        (temp("t/default", old_id), temp("t/default", young_id)),
        (temp("k/default", old_id), temp("k/default", young_id)),
        (temp("k/default/n", old_id), temp("k/default/n", young_id)),
        // The keyring.
        (
            home.join(".keyring.json.tmp-4242-00112233aabbccdd"),
            home.join(".keyring.json.tmp-4243-00112233aabbccdd"),
        ),
        // A health probe.
        (
            home.join(format!("blobs/tmp/health-{old_id}")),
            home.join(format!("blobs/tmp/health-{young_id}")),
        ),
    ];
    let mut old_bytes = 0;
    for (i, (old, young)) in kinds.iter().enumerate() {
        let bytes = vec![b'x'; 100 + i];
        plant(old, &bytes, 2 * hour);
        old_bytes += bytes.len() as u64;
        plant(young, b"young", Duration::ZERO);
    }
    assert_eq!(leftovers(&home).len(), 2 * kinds.len());

    // The default grace period (an hour) keeps the young ones.
    let text = String::from_utf8(sb.ok(&["blob", "sweep", "docs"])).unwrap();
    assert_eq!(
        text,
        format!(
            "swept docs: 0 bodies, 0 history pages and {} leftover temp files deleted, \
             {old_bytes} bytes freed\n",
            kinds.len()
        )
    );
    for (old, young) in &kinds {
        assert!(!old.exists(), "{} survived the sweep", old.display());
        assert!(young.exists(), "{} was swept too early", young.display());
    }
    assert_eq!(leftovers(&home).len(), kinds.len());
    let sweep = sb.json(&["blob", "sweep", "docs", "--grace-secs", "0"]);
    assert_eq!(sweep["temp_files_deleted"], kinds.len(), "{sweep}");
    assert_eq!(sweep["bytes_deleted"], 5 * kinds.len(), "{sweep}");
    assert_eq!(leftovers(&home), []);
    // The store still works, data, grants, quota and keys included.
    assert_eq!(sb.ok(&["blob", "get", "docs", "k"]), b"hello");
    assert_eq!(
        sb.ok(&["--actor", "alice", "blob", "get", "docs", "k"]),
        b"hello"
    );
    assert_eq!(
        sb.json(&["quota", "show", "docs"])["limits"]["max_objects"],
        10
    );
}

/// Whether this machine lets the tests mount over the home privately (a mount namespace
/// needs root or user namespaces). Under `CI=true` it must.
fn can_mount_privately(sb: &Sandbox) -> bool {
    fs::create_dir_all(sb.home()).unwrap();
    let probe = sb
        .program("unshare")
        .args(["-m", "sh", "-c", READ_ONLY_SCRIPT])
        .arg(sb.home())
        .arg("true")
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return true,
        Ok(out) => stderr(&out),
        Err(e) => e.to_string(),
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "cannot mount a read-only home under CI: {why}");
    eprintln!("skipped: cannot mount a read-only home here ({why})");
    false
}

const AUDIT_WARNING: &str = "warning: audit events were not recorded";

/// Asserts that stderr is exactly one audit warning naming the audit file.
fn assert_one_audit_warning(out: &Output, home: &Path) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(out));
    assert!(lines[0].starts_with(AUDIT_WARNING), "{}", describe(out));
    let file = home.join("audit.jsonl");
    assert!(
        lines[0].contains(&format!("cannot append to {}", file.display())),
        "{}",
        describe(out)
    );
}

#[test]
fn a_read_only_home_can_be_read_and_refuses_writes_by_folder() {
    let sb = Sandbox::new();
    if !can_mount_privately(&sb) {
        return;
    }
    let body = random_bytes(300 * 1024, 3);
    let input = sb.file("big.bin", &body);
    let input = input.to_str().unwrap();
    sb.ok(&["blob", "put", "docs", "big", input]);
    let v = sb.json(&["blob", "put", "docs", "big", input]);
    let v = v["version_id"].as_str().unwrap();
    let home = sb.home();
    let before: Vec<_> = tree(&home)
        .into_iter()
        .map(|(p, m)| (p, m.len(), m.modified().unwrap()))
        .collect();

    let out_file = sb.path().join("out.bin");
    let out = out_file.to_str().unwrap();
    let reads: [&[&str]; 6] = [
        &["blob", "get", "docs", "big", "-o", out],
        &["blob", "get", "docs", "big", "--version", v],
        &["blob", "ls", "docs"],
        &["blob", "head", "docs", "big"],
        &["blob", "versions", "docs", "big"],
        &["--actor", "bob", "blob", "ls", "docs"], // denied: still one warning, no more
    ];
    for args in reads {
        let got = read_only(&sb, args, &[]);
        if args[0] == "--actor" {
            assert_fails(&got, 5, "unauthorized");
            assert_eq!(stderr(&got).lines().count(), 2, "{}", describe(&got));
            assert!(
                stderr(&got).starts_with(AUDIT_WARNING),
                "{}",
                describe(&got)
            );
            continue;
        }
        assert!(got.status.success(), "{args:?}: {}", describe(&got));
        assert_one_audit_warning(&got, &home);
        if args.contains(&"--version") {
            assert!(got.stdout == body, "{args:?} read other bytes");
        }
    }
    assert!(fs::read(&out_file).unwrap() == body);
    // With --json, the warning is a JSON document too, as errors are.
    let got = read_only(&sb, &["--json", "blob", "ls", "docs"], &[]);
    assert!(got.status.success(), "{}", describe(&got));
    let warning = parse(&got.stderr);
    let message = warning["warning"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("audit events were not recorded (1): cannot append to "),
        "{warning}"
    );
    // `health` records no audit event, and writes nothing either.
    let health = read_only(&sb, &["health"], &[]);
    assert!(health.status.success(), "{}", describe(&health));
    assert!(
        stderr(&health)
            .lines()
            .all(|l| l.starts_with(AUDIT_WARNING)),
        "{}",
        describe(&health)
    );

    // Writes fail as permanent_adapter, naming the folder they could not write.
    let objects = home.join("blobs/objects/t/default/n/docs");
    let put = read_only(&sb, &["blob", "put", "docs", "big", input], &[]);
    assert_fails(&put, 10, "permanent_adapter");
    assert!(
        stderr(&put).contains(&format!(
            "cannot create a temp file in {}/",
            objects.display()
        )),
        "{}",
        describe(&put)
    );
    let put = read_only(&sb, &["blob", "put", "docs", "new", input], &[]);
    assert_fails(&put, 10, "permanent_adapter");
    assert!(
        stderr(&put).contains(&format!("cannot create the folder {}/", objects.display())),
        "{}",
        describe(&put)
    );
    assert!(stderr(&put).contains("read-only"), "{}", describe(&put));

    // Audit required: reads fail closed.
    let required = [("SANCTUM_AUDIT__REQUIRED", "true")];
    let ls = read_only(&sb, &["blob", "ls", "docs"], &required);
    assert_fails(&ls, 12, "config");
    assert!(stderr(&ls).contains("audit"), "{}", describe(&ls));
    assert!(ls.stdout.is_empty(), "{}", describe(&ls));

    // Nothing in the home changed.
    let after: Vec<_> = tree(&home)
        .into_iter()
        .map(|(p, m)| (p, m.len(), m.modified().unwrap()))
        .collect();
    assert_eq!(after, before);
    // Writable again, the same home records audit events as before.
    sb.ok(&["blob", "ls", "docs"]);
}

#[test]
fn folders_are_0700_and_files_0600_whatever_the_umask() {
    let sb = Sandbox::new();
    // Creating the home itself is the CLI's job (tests/cli.rs); everything in it is the
    // library's.
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
        .create(sb.home())
        .unwrap();
    let input = sb.file("small.txt", b"hello");
    let input = input.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["blob", "put", "docs", "a/b/c", input],
        &["policy", "grant", "alice", "read", "--namespace", "docs"],
        &["quota", "set", "docs", "--max-objects", "10"],
        &["keys", "rotate", "docs"],
        &["keys", "rotate-kek"],
        &["blob", "get", "docs", "a/b/c"],
        &["blob", "rm", "docs", "a/b/c"],
    ];
    for args in commands {
        let out = umask_000(&sb, args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    let mut seen = 0;
    for (path, meta) in tree(&sb.home()) {
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:04o}", path.display());
        seen += 1;
    }
    assert!(seen > 20, "only {seen} entries");
    for name in ["audit.jsonl", "keyring.json", "blobs/FORMAT"] {
        assert!(sb.home().join(name).exists(), "{name}");
    }

    // A store folder others can write to is refused, saying how to fix it.
    for (folder, mode) in [("blobs", 0o777), ("blobs", 0o775), ("blobs/objects", 0o757)] {
        let folder = sb.home().join(folder);
        fs::set_permissions(&folder, fs::Permissions::from_mode(mode)).unwrap();
        let out = sb.run(&["blob", "ls", "docs"]);
        assert_fails(&out, 12, "config");
        assert!(
            stderr(&out).contains(&format!("chmod 700 {}", folder.display())),
            "{}",
            describe(&out)
        );
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
    }
    sb.ok(&["blob", "ls", "docs"]);
}

/// Runs `sanctum` commands in a private mount namespace where the home is a fresh 4 MiB tmpfs:
/// a small put, then (with the disk filled) `blob ls`, `health` and a put of 300 KiB, then the
/// leftover files. Returns the script's stdout: `<name>=<status>` lines, each command's stderr
/// after `# <name>`, then the leftovers after `# leftovers`.
const FULL_DISK_SCRIPT: &str = r##"
home="$0"; bin="$1"; small="$2"; big="$3"
mount -t tmpfs -o size=4m,mode=0700 tmpfs "$home" || exit 99
run() { name="$1"; shift; "$bin" --home "$home" "$@" >/dev/null 2>"$home.$name.err"; echo "$name=$?"; }
run put_small blob put docs small "$small"
dd if=/dev/zero of="$home/filler" bs=4k 2>/dev/null
run ls blob ls docs
run health health
run put_big blob put docs big "$big"
rm -f "$home/filler"
run ls_after blob ls docs
for name in put_small ls health put_big ls_after; do echo "# $name"; cat "$home.$name.err"; done
echo "# leftovers"
find "$home" -name '*.tmp*' -o -name '*tmp-*' -o -name 'health-*'
"##;

#[test]
fn a_full_disk_leaves_nothing_and_names_the_file() {
    let sb = Sandbox::new();
    if !can_mount_privately(&sb) {
        return;
    }
    let small = sb.file("small.txt", b"hello");
    let big = sb.file("big.bin", &random_bytes(300 * 1024, 5));
    let out = sb
        .program("unshare")
        .args(["-m", "sh", "-c", FULL_DISK_SCRIPT])
        .arg(sb.home())
        .arg(env!("CARGO_BIN_EXE_sanctum"))
        .arg(&small)
        .arg(&big)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let section = |name: &str| {
        let start = text
            .find(&format!("# {name}\n"))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            + name.len()
            + 3;
        let end = text[start..]
            .find("\n# ")
            .map_or(text.len(), |e| start + e + 1);
        text[start..end].to_string()
    };
    // Reads work on a full disk; the one write fails naming its temp file, and removes it.
    for expected in [
        "put_small=0",
        "ls=0",
        "health=0",
        "put_big=10",
        "ls_after=0",
    ] {
        assert!(text.lines().any(|l| l == expected), "{expected}: {text}");
    }
    let put = section("put_big");
    let objects = sb.home().join("blobs/objects/t/default/n/docs");
    assert!(
        put.contains("error[permanent_adapter]")
            && put.contains(&format!("{}/", objects.display())),
        "{text}"
    );
    assert!(section("leftovers").trim().is_empty(), "{text}");
}
