//! Multi-process segment tests: a `fork`ed child touches the segment only, through
//! atomics prepared by the parent, and leaves with `libc::_exit` (no allocation, no locks, no
//! destructors in the child of this multi-threaded test harness).

use shmchan::{Key, Segment};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Forks; the child runs `child` (which must not allocate or panic) and `_exit`s with its
/// return value; the parent returns the child's exit code.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child`, which by contract performs atomic operations on
    // memory mapped before the fork and futex calls, then `_exit`s without unwinding or running
    // destructors: nothing that could need a lock another thread held at fork time.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: `_exit` ends the child at once; it is async-signal-safe.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a live out-parameter.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

/// Waits (bounded, futex) until `word` holds `want`; false on timeout. Allocation-free.
fn wait_for(seg_word: &AtomicU32, want: u32, seg: &Segment, index: usize) -> bool {
    for _ in 0..500 {
        let now = seg_word.load(Ordering::Acquire);
        if now == want {
            return true;
        }
        seg.wait_u32(index, now, Duration::from_millis(10));
    }
    false
}

#[test]
fn anonymous_shared_child_sees_parent_value_and_parent_sees_child_increment() {
    // Seed 000's Kerrisk program: the parent initialises, the child increments, the parent
    // reads after `wait`.
    let seg = Segment::anonymous_raw(64).expect("anonymous segment");
    let counter = seg.atomic_u64(0).expect("word 0");
    counter.store(1, Ordering::Relaxed);
    let code = in_child(|| {
        if counter.load(Ordering::Acquire) != 1 {
            return 2;
        }
        counter.fetch_add(1, Ordering::AcqRel);
        0
    });
    assert_eq!(code, 0, "the child did not see the parent's value");
    assert_eq!(counter.load(Ordering::Acquire), 2);
}

/// Parent and child both write after the fork and each sees the other's write.
#[test]
fn anonymous_shared_handshake_across_fork() {
    let seg = Segment::anonymous_raw(16).expect("anonymous segment");
    let value = seg.atomic_u64(0).expect("word 0");
    let flag = seg.atomic_u32(2).expect("word 2");
    let child = |value: &AtomicU64, flag: &AtomicU32| {
        if !wait_for(flag, 1, &seg, 2) {
            return 3;
        }
        value.fetch_add(1, Ordering::AcqRel);
        flag.store(2, Ordering::Release);
        seg.wake_u32(2);
        0
    };
    // SAFETY: as in `in_child`; the parent side runs between fork and waitpid.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = child(value, flag);
        // SAFETY: see `in_child`.
        unsafe { libc::_exit(code) };
    }
    value.store(41, Ordering::Relaxed);
    flag.store(1, Ordering::Release);
    seg.wake_u32(2);
    let answered = wait_for(flag, 2, &seg, 2);
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(answered, "the child never answered");
    assert_eq!(libc::WEXITSTATUS(status), 0);
    assert_eq!(value.load(Ordering::Acquire), 42);
}

#[test]
fn anonymous_private_child_writes_are_not_seen_by_the_parent() {
    let seg = Segment::anonymous_private_raw(8).expect("MAP_PRIVATE segment");
    let word = seg.atomic_u64(0).expect("word 0");
    word.store(1, Ordering::Relaxed);
    let code = in_child(|| {
        if word.load(Ordering::Acquire) != 1 {
            return 2; // the copy must start with the parent's contents
        }
        word.store(99, Ordering::Release);
        if word.load(Ordering::Acquire) != 99 {
            return 3; // the child's own copy is writable
        }
        0
    });
    assert_eq!(code, 0);
    assert_eq!(
        word.load(Ordering::Acquire),
        1,
        "copy-on-write leaked the child's write"
    );
}

#[test]
fn sysv_private_segment_is_shared_with_a_forked_child_and_removed_after() {
    let seg = Segment::create_raw(Key::private(), 64, 0o600).expect("IPC_PRIVATE segment");
    let shmid = seg.info().expect("IPC_STAT").shmid.expect("a System V id");
    let counter = seg.atomic_u64(0).expect("word 0");
    let code = in_child(|| {
        counter.fetch_add(5, Ordering::AcqRel);
        0
    });
    assert_eq!(code, 0);
    assert_eq!(counter.load(Ordering::Acquire), 5);
    // The child's inherited attachment went away with it.
    assert_eq!(seg.info().expect("IPC_STAT").attach_count, Some(1));
    drop(seg);
    assert!(
        Segment::open_sysv_id(shmid, true).is_err(),
        "the creator's drop did not remove its IPC_PRIVATE segment"
    );
}

#[test]
fn keyed_segment_is_seen_by_a_child_that_opens_it_by_key() {
    let key = Key::name(&format!("/shmchan-test-fork-{}", std::process::id())).expect("name");
    let seg = Segment::create_raw(key, 64, 0o600).expect("create");
    seg.atomic_u64(0).expect("word").store(7, Ordering::Release);
    // Opening allocates: the child is a fresh process (re-exec) rather than a fork.
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_role_open_by_key",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMCHAN_TEST_CHILD_KEY", key.to_string())
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        seg.load_u64(0),
        Some(8),
        "the child's increment is not visible"
    );
    seg.remove().expect("remove");
}

/// Not a test on its own: the child half of `keyed_segment_is_seen_by_a_child_that_opens_it_by_key`,
/// run in a re-executed test binary. Does nothing unless the parent set the variable.
#[test]
fn child_role_open_by_key() {
    let Ok(name) = std::env::var("SHMCHAN_TEST_CHILD_KEY") else {
        return;
    };
    let seg = Segment::open_raw(Key::name(&name).expect("name"), false).expect("open by key");
    assert_eq!(
        seg.header().creator_pid,
        std::os::unix::process::parent_id()
    );
    let w = seg.atomic_u64(0).expect("word");
    assert_eq!(w.fetch_add(1, Ordering::AcqRel), 7);
}
