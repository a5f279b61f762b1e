//! Salts after a fork: a copy of the process never hands out the salt the original hands out.
//!
//! Two cases, in one test so that no other test thread of this binary runs while it forks:
//!
//! - a plain `fork()`: the child has a new pid;
//! - a process that is pid 1 forking into a new PID namespace, so that its child is pid 1 too.
//!   A salt pool that noticed forks by a changed pid (the code before issue 12, item 6) hands
//!   both processes the same next salt here, and this case fails on it. Creating a PID
//!   namespace needs root or an unprivileged user namespace; where both are refused, the case
//!   says so on stderr and only the plain fork is checked.
//!
//! Each process draws its next salt as production code does (the header of a new message)
//! and 16 bytes of [`fill_random`], and the parent compares them.
//!
//! Why `unsafe` is allowed here: `fork`, `unshare`, `pipe`, `write`, `waitpid` and `_exit` are
//! raw system calls, which Rust only reaches through `unsafe`. The library crates keep
//! `#![forbid(unsafe_code)]`; this test file is the only place the crate allows it.
#![allow(unsafe_code)]

use sanctum_crypto::{Context, DataKey, Encryptor, Header, KeyRef, SALT_LEN, fill_random};
use std::io::Read;
use std::os::fd::FromRawFd;

/// What a process reports: who it is and what it drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Draw {
    tag: u8,
    pid: u32,
    salt: [u8; SALT_LEN],
    random: [u8; 16],
}

const RECORD_LEN: usize = 1 + 4 + SALT_LEN + 16;

impl Draw {
    /// Draws the next salt (through a new message's header) and 16 random bytes.
    fn now(tag: u8) -> Draw {
        let key = DataKey::from_bytes([7; 32]);
        let ctx = Context {
            tenant: "t",
            namespace: "n",
            object_key: "k",
            body_id: "b",
            kind: "blob-body",
        };
        let (_, header) = Encryptor::new(&key, KeyRef::new("k", 1).unwrap(), &ctx).unwrap();
        let salt = Header::parse(&header).unwrap().0.salt;
        let mut random = [0u8; 16];
        fill_random(&mut random).unwrap();
        Draw {
            tag,
            pid: std::process::id(),
            salt,
            random,
        }
    }

    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[0] = self.tag;
        r[1..5].copy_from_slice(&self.pid.to_be_bytes());
        r[5..5 + SALT_LEN].copy_from_slice(&self.salt);
        r[5 + SALT_LEN..].copy_from_slice(&self.random);
        r
    }

    fn decode(r: &[u8]) -> Draw {
        Draw {
            tag: r[0],
            pid: u32::from_be_bytes(r[1..5].try_into().unwrap()),
            salt: r[5..5 + SALT_LEN].try_into().unwrap(),
            random: r[5 + SALT_LEN..].try_into().unwrap(),
        }
    }
}

/// Writes one record to the pipe (one `write` of fewer than PIPE_BUF bytes: atomic).
fn report(fd: i32, draw: Draw) -> bool {
    let r = draw.encode();
    // SAFETY: `fd` is the pipe's open write end and `r` a live buffer of `r.len()` bytes.
    let n = unsafe { libc::write(fd, r.as_ptr().cast(), r.len()) };
    n == r.len() as isize
}

/// Runs `f` in a forked child, which exits with `f`'s code and never returns here (a panic
/// is exit code 101). Returns the child's pid.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f` and then `_exit`s: it never returns into the test
    // harness, and never unwinds past this frame.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` and returns its exit code (or -1 if it did not exit normally).
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `pid` is our own child; `status` is a live i32.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// A pipe: (read end as a file, raw write end).
fn pipe() -> (std::fs::File, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is a fresh descriptor that nothing else owns.
    (unsafe { std::fs::File::from_raw_fd(fds[0]) }, fds[1])
}

/// Runs `children` (which report through the write end), closes the parent's write end, and
/// returns every record written plus the exit code of the child.
fn collect(children: impl FnOnce(i32) -> i32) -> (Vec<Draw>, i32) {
    let (mut read, write) = pipe();
    let pid = fork_child(|| children(write));
    // SAFETY: the parent's copy of the write end; the child has its own.
    unsafe { libc::close(write) };
    let mut bytes = Vec::new();
    read.read_to_end(&mut bytes).unwrap();
    let code = wait(pid);
    assert_eq!(bytes.len() % RECORD_LEN, 0, "partial record");
    (bytes.chunks(RECORD_LEN).map(Draw::decode).collect(), code)
}

/// Exit code of a first child that may not create a PID namespace.
const NO_PID_NAMESPACE: i32 = 77;

#[test]
fn a_copy_of_the_process_never_repeats_a_salt() {
    // Warm whatever state the salt source keeps in this process.
    let warm = Draw::now(b'w');

    // 1. A plain fork: the child draws its next salt, so does the parent.
    let (draws, code) = collect(|write| if report(write, Draw::now(b'c')) { 0 } else { 1 });
    let parent = Draw::now(b'p');
    assert_eq!(code, 0, "child failed");
    assert_eq!(draws.len(), 1);
    let child = draws[0];
    assert_ne!(child.pid, parent.pid);
    assert_ne!(
        child.salt, parent.salt,
        "a forked child repeated its parent's salt"
    );
    assert_ne!(
        child.random, parent.random,
        "a forked child repeated fill_random"
    );
    for earlier in [warm.salt, child.salt] {
        assert_ne!(parent.salt, earlier);
    }

    // 2. Pid 1 forks into a new PID namespace: both are pid 1.
    // First child: make the next child the first process (pid 1) of a new PID namespace.
    let (draws, code) = collect(|write| {
        // SAFETY: plain system calls; this process is single-threaded (a fresh fork).
        let unshared = unsafe {
            libc::unshare(libc::CLONE_NEWPID) == 0
                || libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) == 0
        };
        if !unshared {
            return NO_PID_NAMESPACE;
        }
        let init = fork_child(|| {
            // Pid 1 of the new namespace: warm the salt source, then fork into another new
            // PID namespace, whose first process is pid 1 as well.
            let warm = Draw::now(b'w');
            // SAFETY: as above; this process is single-threaded.
            if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
                return 2;
            }
            let child = fork_child(|| if report(write, Draw::now(b'c')) { 0 } else { 1 });
            let ours = report(write, Draw::now(b'p')) && report(write, warm);
            // A namespace's first process must outlive the processes inside it.
            match (wait(child), ours) {
                (0, true) => 0,
                _ => 3,
            }
        });
        wait(init)
    });
    if code == NO_PID_NAMESPACE {
        eprintln!("skipped the PID-namespace case: this process may not create PID namespaces");
        return;
    }
    assert_eq!(code, 0, "a process of the PID-namespace case failed");
    let find = |tag| *draws.iter().find(|d| d.tag == tag).unwrap();
    let (child, parent, warm) = (find(b'c'), find(b'p'), find(b'w'));
    assert_eq!(draws.len(), 3);
    // The setup of the defect: the same pid before and after the fork.
    assert_eq!((warm.pid, parent.pid, child.pid), (1, 1, 1));
    assert_ne!(
        child.salt, parent.salt,
        "a child forked into a new PID namespace repeated its parent's salt"
    );
    assert_ne!(child.random, parent.random);
    assert_ne!(child.salt, warm.salt);
}
