//! A keyed System V segment whose creating process ended without dropping its handle (`_exit`,
//! `process::exit`, `exec`, SIGKILL) is left with no attachments. The next `create` /
//! `open_or_create` of its key reclaims it when its creator is dead and it was not persisted,
//! and otherwise says in the `Exists` error why it was kept.
//!
//! The creators are this test binary re-executed (a fresh process may allocate freely), which
//! creates the segment and leaves with `libc::_exit`.

use shmchan::{Error, Key, Segment};
use std::process::Command;

const ROLE: &str = "SHMCHAN_TEST_RECLAIM_ROLE";
const KEY: &str = "SHMCHAN_TEST_RECLAIM_KEY";

/// The children's entry point: does nothing in a normal test run.
#[test]
fn reclaim_child_entry() {
    let (Ok(role), Ok(key)) = (std::env::var(ROLE), std::env::var(KEY)) else {
        return;
    };
    let key = Key::raw(key.parse().expect("a key from the parent"));
    let mut seg = Segment::create_raw(key, 64, 0o600).expect("child creates the segment");
    seg.write_bytes(0, b"old").expect("child writes");
    if role == "persist" {
        seg.persist();
    }
    if role == "exec" {
        // Become `sleep`: exec detaches the segment but the creator (same pid, same start
        // time) lives on.
        use std::os::unix::process::CommandExt as _;
        println!("created");
        let err = Command::new("sleep").arg("60").exec();
        panic!("exec sleep: {err}");
    }
    // Leave without dropping `seg`: no destructor runs, nothing is detached by us.
    // SAFETY: `_exit` only ends the process.
    unsafe { libc::_exit(0) };
}

/// Runs a child that creates a System V segment with `key` and `_exit`s without dropping it.
fn leave_stale_segment(key: i32, role: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new(exe)
        .args([
            "reclaim_child_entry",
            "--exact",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(KEY, key.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("re-exec the test binary");
    assert!(status.success(), "{status:?}");
    // The segment is still there, with no attachment.
    // SAFETY: shmget takes plain integers.
    let id = unsafe { libc::shmget(key, 0, 0) };
    assert!(id >= 0, "the child left no segment");
}

fn test_key(n: i32) -> i32 {
    0x5a00_0000 | ((std::process::id() as i32 & 0xffff) << 4) | n
}

/// Removes whatever has the key (cleanup of the tests that keep it).
fn remove_key(key: i32) {
    // SAFETY: plain integers; IPC_RMID ignores the buffer.
    unsafe {
        let id = libc::shmget(key, 0, 0);
        if id >= 0 {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

#[test]
fn create_reclaims_a_segment_whose_creator_exited_without_dropping() {
    let key = test_key(1);
    leave_stale_segment(key, "plain");
    let seg = Segment::create_raw(Key::raw(key), 64, 0o600).expect("create reclaims it");
    assert_eq!(seg.header().creator_pid, std::process::id());
    let mut b = [1u8; 3];
    seg.read_bytes(0, &mut b).expect("read");
    assert_eq!(b, [0; 3], "a new segment, not the old one");
    seg.remove().expect("remove");
}

#[test]
fn open_or_create_reclaims_instead_of_opening_the_dead_segment() {
    let key = test_key(2);
    leave_stale_segment(key, "plain");
    let seg = Segment::open_or_create_raw(Key::raw(key), 64, 0o600).expect("open_or_create");
    assert_eq!(seg.header().creator_pid, std::process::id());
    seg.remove().expect("remove");
}

#[test]
fn a_persisted_stale_segment_is_kept_and_the_error_says_why() {
    let key = test_key(3);
    leave_stale_segment(key, "persist");
    let err = Segment::create_raw(Key::raw(key), 64, 0o600).unwrap_err();
    let msg = err.to_string();
    remove_key(key);
    assert!(matches!(err, Error::Exists { .. }), "{err:?}");
    assert!(msg.contains("persist"), "{msg}");
}

#[test]
fn an_attached_stale_segment_is_kept_and_the_error_says_why() {
    let key = test_key(4);
    leave_stale_segment(key, "plain");
    // Someone still uses it: attached without a shmchan handle.
    // SAFETY: plain integers; a NULL address lets the kernel choose; detached below.
    let addr = unsafe { libc::shmat(libc::shmget(key, 0, 0), std::ptr::null(), libc::SHM_RDONLY) };
    assert_ne!(addr as isize, -1);
    let err = Segment::create_raw(Key::raw(key), 64, 0o600).unwrap_err();
    let msg = err.to_string();
    // SAFETY: `addr` is our attachment, not used after this.
    unsafe { libc::shmdt(addr) };
    remove_key(key);
    assert!(matches!(err, Error::Exists { .. }), "{err:?}");
    assert!(msg.contains("1 process"), "{msg}");
}

/// The attach count of the segment with `key`.
fn nattch(key: i32) -> Option<u64> {
    // SAFETY: plain integers, and a zeroed `shmid_ds` the kernel fills in.
    unsafe {
        let id = libc::shmget(key, 0, 0);
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        (id >= 0 && libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0).then_some(ds.shm_nattch)
    }
}

#[test]
fn a_segment_whose_creator_execd_is_kept_until_the_creator_is_gone() {
    use std::io::BufRead as _;
    let key = test_key(5);
    let exe = std::env::current_exe().expect("test binary path");
    /// Kills and reaps the exec'd creator even when an assertion fails.
    struct Creator(std::process::Child);
    impl Drop for Creator {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(exe)
        .args([
            "reclaim_child_entry",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ROLE, "exec")
        .env(KEY, key.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("re-exec the test binary");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let creator = Creator(child);
    let mut line = String::new();
    while !line.contains("created") {
        line.clear();
        assert!(out.read_line(&mut line).expect("read") > 0, "child ended");
    }
    // The exec detaches the segment; wait (bounded) until the kernel shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while nattch(key) != Some(0) {
        assert!(std::time::Instant::now() < deadline, "still attached");
        std::thread::yield_now();
    }
    let err = Segment::create_raw(Key::raw(key), 64, 0o600).unwrap_err();
    assert!(err.to_string().contains("still runs"), "{err}");
    assert_eq!(
        nattch(key),
        Some(0),
        "the check removed or kept it attached"
    );
    drop(creator);
    let seg = Segment::create_raw(Key::raw(key), 64, 0o600).expect("reclaimed now");
    seg.remove().expect("remove");
}
