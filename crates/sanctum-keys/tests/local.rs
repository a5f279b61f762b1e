//! The local keyring: shared provider behaviours plus file-level checks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{aad, assert_kind, key, tenant};
use sanctum_keys::{KeyErrorKind, KeyProvider, LocalKeyring};

fn keyring() -> (tempfile::TempDir, LocalKeyring) {
    let dir = tempfile::tempdir().unwrap();
    let ring = LocalKeyring::open(dir.path().join("keyring.json")).unwrap();
    (dir, ring)
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn round_trip() {
    let (_d, p) = keyring();
    assert_eq!(p.kind(), "local-keyring");
    assert!(p.is_development());
    common::round_trip(&p).await;
}

#[tokio::test]
async fn wrong_aad_and_tampering() {
    let (_d, p) = keyring();
    common::wrong_aad_and_tampering(&p).await;
}

#[tokio::test]
async fn rotation_and_rewrap() {
    let (_d, p) = keyring();
    common::rotation_and_rewrap(&p).await;
}

#[tokio::test]
async fn destroy_shreds() {
    let (_d, p) = keyring();
    common::destroy_shreds(&p).await;
}

#[tokio::test]
async fn destroy_unknown_tenant() {
    let (_d, p) = keyring();
    common::destroy_unknown_tenant(&p).await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let (_d, p) = keyring();
    common::tenants_are_isolated(&p).await;
}

#[tokio::test]
async fn invalid_tenants() {
    let (d, p) = keyring();
    common::invalid_tenants(&p).await;
    // Nothing escaped the directory: only the keyring and its lock file exist.
    let mut names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keyring.json", "keyring.json.lock"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_wraps() {
    let (_d, p) = keyring();
    common::concurrent_first_wraps(&p).await;
}

#[tokio::test]
async fn file_is_private_and_persistent() {
    let (d, p) = keyring();
    let path = d.path().join("keyring.json");
    assert!(!path.exists(), "created on first use, not on open");
    p.health_check().await.unwrap();
    let t = tenant("file");
    let k = key();
    let a = aad(&t, "ns", "namespace-key");
    let w = p.wrap(&t, &k, &a).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&d.path().join("keyring.json.lock")), 0o600);
    // The key itself is not in the file (only KEKs are).
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&B64.encode(k)));
    assert!(text.contains("sanctum-keys/local-keyring/v1"));
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    // Another instance (a restart) reads the same KEKs.
    drop(p);
    let p2 = LocalKeyring::open(&path).unwrap();
    assert_eq!(*p2.unwrap(&t, &w, &a).await.unwrap(), k);
    // Destroy persists, and the KEK bytes are gone from the file.
    let kek = {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["tenants"][&t]["versions"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    p2.destroy(&t).await.unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(!after.contains(&kek));
    let p3 = LocalKeyring::open(&path).unwrap();
    assert_kind(p3.unwrap(&t, &w, &a).await, KeyErrorKind::Destroyed);
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn group_or_world_readable_file_is_refused() {
    let (d, p) = keyring();
    let path = d.path().join("keyring.json");
    let t = tenant("perm");
    let w = p.wrap(&t, &key(), b"a").await.unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalKeyring::open(&path).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Permanent);
    assert!(err.message.contains("chmod 600"), "{err}");
    // An already open keyring refuses it too.
    assert_kind(p.unwrap(&t, &w, b"a").await, KeyErrorKind::Permanent);
    assert_kind(p.health_check().await, KeyErrorKind::Permanent);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(LocalKeyring::open(&path).is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(LocalKeyring::open(&path).is_ok());
    p.unwrap(&t, &w, b"a").await.unwrap();
}

#[tokio::test]
async fn symlinks_and_garbage_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("real.json");
    std::fs::write(&target, "{}").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Not our format.
    assert_eq!(
        LocalKeyring::open(&target).unwrap_err().kind,
        KeyErrorKind::Permanent
    );
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = LocalKeyring::open(&link).unwrap_err();
    assert!(err.message.contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn creates_missing_directory_privately() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("sub/dir/keyring.json");
    let p = LocalKeyring::open(&path).unwrap();
    p.wrap(&tenant("dir"), &key(), b"a").await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&d.path().join("sub/dir")), 0o700);
}

/// Two keyrings on one file (as two processes would have) creating tenants and rotating at the same
/// time: every tenant and every version survives, and every wrap still unwraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_lose_no_updates() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("keyring.json");
    let a = Arc::new(LocalKeyring::open(&path).unwrap());
    let b = Arc::new(LocalKeyring::open(&path).unwrap());
    let shared = tenant("shared");
    a.wrap(&shared, &key(), b"x").await.unwrap();

    const PER: usize = 12;
    let mut tasks = Vec::new();
    for (who, p) in [("a", a.clone()), ("b", b.clone())] {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..PER {
                let t = tenant(&format!("{who}{i}"));
                let k = key();
                let w = p.wrap(&t, &k, b"x").await.unwrap();
                assert_eq!(w.kek_version, 1);
                assert_eq!(p.rotate(&t).await.unwrap(), 2);
                p.rotate(&shared).await.unwrap();
                made.push((t, k, w));
            }
            made
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.unwrap());
    }
    // Every tenant exists with both versions, seen from either instance and a fresh one.
    let c = LocalKeyring::open(&path).unwrap();
    for p in [&*a, &*b, &c] {
        for (t, k, w) in &made {
            assert_eq!(*p.unwrap(t, w, b"x").await.unwrap(), *k);
            let w2 = p.rewrap(t, w, b"x").await.unwrap();
            assert_eq!(w2.kek_version, 2);
        }
    }
    // The shared tenant got every rotation: 1 + 2 * PER versions.
    let expected = 1 + 2 * PER as u32 + 1;
    assert_eq!(c.rotate(&shared).await.unwrap(), expected);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["tenants"].as_object().unwrap().len(), 1 + 2 * PER);
}

#[tokio::test]
async fn sweep_removes_temp_files_of_killed_writers() {
    let (dir, ring) = keyring();
    let t = tenant("sweep");
    let aad = aad(&t, "ns", "dek");
    ring.wrap(&t, &key(), &aad).await.unwrap();
    let hour = std::time::Duration::from_secs(3600);
    // What a writer killed between creating its temporary file and the rename leaves.
    let old = dir.path().join(".keyring.json.tmp-123-00112233aabbccdd");
    let young = dir.path().join(".keyring.json.tmp-456-00112233aabbccdd");
    let other = dir.path().join(".other.json.tmp-1-00");
    for (path, age) in [(&old, 2 * hour), (&young, hour / 2), (&other, 2 * hour)] {
        std::fs::write(path, b"{\"partial").unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    }
    let swept = LocalKeyring::sweep_temp_files(ring.path(), hour).unwrap();
    assert_eq!(swept, (1, 9));
    assert!(!old.exists() && young.exists() && other.exists());
    let swept = LocalKeyring::sweep_temp_files(ring.path(), std::time::Duration::ZERO).unwrap();
    assert_eq!(swept, (1, 9));
    assert!(other.exists() && ring.path().exists());
    // The keyring still works, and a missing folder has nothing to sweep.
    ring.wrap(&t, &key(), &aad).await.unwrap();
    let gone = dir.path().join("missing/keyring.json");
    assert_eq!(LocalKeyring::sweep_temp_files(gone, hour).unwrap(), (0, 0));
}

/// Changes the owner of `path` to uid/gid 65534 (`nobody`); `false` (with the reason printed) if
/// this process may not, so the caller can skip.
fn chown_to_nobody(path: &std::path::Path) -> bool {
    match std::os::unix::fs::chown(path, Some(65534), Some(65534)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "skipped: cannot chown {} to uid 65534 ({e}); needs root",
                path.display()
            );
            false
        }
    }
}

/// A symlink at the keyring's path, or at its lock file's, is refused at every open: open, read,
/// write and lock. The open itself fails (`O_NOFOLLOW`), so nothing behind a link is read, locked
/// or created.
#[tokio::test]
async fn symlinks_are_refused_at_every_open() {
    let (d, p) = keyring();
    let path = d.path().join("keyring.json");
    let t = tenant("link");
    let w = p.wrap(&t, &key(), b"a").await.unwrap();
    // Swap a symlink to a valid copy of the keyring in under the open keyring.
    let real = d.path().join("real.json");
    std::fs::copy(&path, &real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::read(&real).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    for err in [
        p.unwrap(&t, &w, b"a").await.unwrap_err(),
        p.rotate(&t).await.unwrap_err(),
        p.health_check().await.unwrap_err(),
        LocalKeyring::open(&path).unwrap_err(),
    ] {
        assert_eq!(err.kind, KeyErrorKind::Permanent, "{err}");
        assert!(err.message.contains("symbolic link"), "{err}");
        assert!(err.message.contains(path.to_str().unwrap()), "{err}");
    }
    assert_eq!(
        std::fs::read(&real).unwrap(),
        before,
        "the link's target is untouched"
    );
    // Back to a real file: it works again.
    std::fs::remove_file(&path).unwrap();
    std::fs::rename(&real, &path).unwrap();
    p.unwrap(&t, &w, b"a").await.unwrap();

    // A symlinked lock file, dangling (an open that follows it would create its target) or not.
    let lock = d.path().join("keyring.json.lock");
    let created = d.path().join("created-through-the-link");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&created, &lock).unwrap();
    let err = p.rotate(&t).await.unwrap_err();
    assert!(err.message.contains("keyring lock file"), "{err}");
    assert!(err.message.contains("symbolic link"), "{err}");
    assert!(!created.exists(), "the lock's link was followed");
    std::fs::write(&created, b"").unwrap();
    std::fs::set_permissions(&created, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = p.rotate(&t).await.unwrap_err();
    assert!(err.message.contains("symbolic link"), "{err}");
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(p.rotate(&t).await.unwrap(), 2);
}

/// A keyring (or lock file) that another user owns is refused, even with mode 0600.
#[tokio::test]
async fn a_file_owned_by_another_user_is_refused() {
    let (d, p) = keyring();
    let path = d.path().join("keyring.json");
    let t = tenant("owner");
    let w = p.wrap(&t, &key(), b"a").await.unwrap();
    if !chown_to_nobody(&path) {
        return;
    }
    let err = LocalKeyring::open(&path).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Permanent);
    assert!(err.message.contains("owned by uid 65534"), "{err}");
    assert!(err.message.contains(path.to_str().unwrap()), "{err}");
    assert_kind(p.unwrap(&t, &w, b"a").await, KeyErrorKind::Permanent);
    std::os::unix::fs::chown(&path, Some(my_uid()), None).unwrap();
    p.unwrap(&t, &w, b"a").await.unwrap();
    let lock = d.path().join("keyring.json.lock");
    assert!(chown_to_nobody(&lock));
    let err = p.rotate(&t).await.unwrap_err();
    assert!(err.message.contains("keyring lock file"), "{err}");
    assert!(err.message.contains("owned by uid 65534"), "{err}");
}

/// This process's effective uid (the owner of a file it just created).
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("probe");
    std::fs::write(&f, b"").unwrap();
    std::fs::metadata(&f).unwrap().uid()
}

/// A folder that group or others can write to, or that another user owns, is refused, naming it
/// and the fix; the keyring works again once the folder is fixed.
#[tokio::test]
async fn unsafe_folders_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("keyring.json");
    let p = LocalKeyring::open(&path).unwrap();
    let t = tenant("dir");
    let w = p.wrap(&t, &key(), b"a").await.unwrap();

    for bad in [0o777, 0o770, 0o702, 0o1777] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = LocalKeyring::open(&path).unwrap_err();
        assert_eq!(err.kind, KeyErrorKind::Permanent, "{err}");
        assert!(
            err.message
                .contains(&format!("chmod 700 {}", dir.display())),
            "{bad:o}: {err}"
        );
        assert!(err.message.contains(&format!("{bad:04o}")), "{err}");
        assert_kind(p.unwrap(&t, &w, b"a").await, KeyErrorKind::Permanent);
        assert_kind(p.rotate(&t).await, KeyErrorKind::Permanent);
        // Refused before anything exists in it, too.
        assert!(LocalKeyring::open(dir.join("new.json")).is_err());
    }
    // Readable and searchable by others is fine; only writing is refused.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.unwrap(&t, &w, b"a").await.unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    if !chown_to_nobody(&dir) {
        return;
    }
    let err = LocalKeyring::open(&path).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Permanent);
    assert!(err.message.contains("owned by uid 65534"), "{err}");
    assert!(err.message.contains(dir.to_str().unwrap()), "{err}");
    assert_kind(p.unwrap(&t, &w, b"a").await, KeyErrorKind::Permanent);
    assert_kind(p.rotate(&t).await, KeyErrorKind::Permanent);
    // Root's folders are accepted (as this user's are).
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    p.unwrap(&t, &w, b"a").await.unwrap();
}

/// `relocate` moves a keyring once, keeps its keys, and never overwrites another one.
#[tokio::test]
async fn relocate_moves_once_and_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let old = data.join("keyring.json");
    let new = d.path().join("data.keys/keyring.json");
    // Nothing to move: nothing happens, nothing is created.
    assert!(!LocalKeyring::relocate(&old, &new).unwrap());
    assert!(!data.exists() && !new.parent().unwrap().exists());

    let p = LocalKeyring::open(&old).unwrap();
    let t = tenant("move");
    let k = key();
    let w = p.wrap(&t, &k, b"a").await.unwrap();
    drop(p);
    let bytes = std::fs::read(&old).unwrap();
    assert!(LocalKeyring::relocate(&old, &new).unwrap());
    assert!(!old.exists() && !data.join("keyring.json.lock").exists());
    assert_eq!(std::fs::read(&new).unwrap(), bytes);
    assert_eq!(mode(&new), 0o600);
    assert_eq!(mode(new.parent().unwrap()), 0o700);
    let p = LocalKeyring::open(&new).unwrap();
    assert_eq!(*p.unwrap(&t, &w, b"a").await.unwrap(), k);
    assert!(!LocalKeyring::relocate(&old, &new).unwrap(), "only once");

    // Two different keyrings: refused, naming both, and neither changes.
    let other = LocalKeyring::open(&old).unwrap();
    other.wrap(&tenant("other"), &key(), b"a").await.unwrap();
    let old_bytes = std::fs::read(&old).unwrap();
    let err = LocalKeyring::relocate(&old, &new).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Permanent);
    assert!(err.message.contains(old.to_str().unwrap()), "{err}");
    assert!(err.message.contains(new.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(&old).unwrap(), old_bytes);
    assert_eq!(std::fs::read(&new).unwrap(), bytes);

    // The same bytes at both (a copy cut short): the old one goes.
    std::fs::copy(&new, &old).unwrap();
    assert!(LocalKeyring::relocate(&old, &new).unwrap());
    assert!(!old.exists());
    assert_eq!(std::fs::read(&new).unwrap(), bytes);

    // A symlink at the old place is not followed or moved.
    std::os::unix::fs::symlink(&new, &old).unwrap();
    let moved = d.path().join("elsewhere/keyring.json");
    let err = LocalKeyring::relocate(&old, &moved).unwrap_err();
    assert!(err.message.contains("symbolic link"), "{err}");
    assert!(!moved.exists() && new.exists());
}

#[tokio::test]
async fn counters_persist_in_the_keyring_file() {
    let (dir, p) = keyring();
    common::counters_only_go_up(&p).await;
    let t = common::tenant("persisted");
    p.raise_counter(&t, "ns/docs", 9).await.unwrap();
    let reopened = LocalKeyring::open(dir.path().join("keyring.json")).unwrap();
    assert_eq!(reopened.counter(&t, "ns/docs").await.unwrap(), 9);
}
