//! Helpers for the multi-process tests of `Shared`: forked children that are always reaped,
//! handshake words in a raw shared segment, and a lock that serialises the tests of one binary.

#![allow(dead_code)] // each test binary uses a subset

use shmchan::Segment;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every test of a forking binary: no other test thread runs (and holds a lock) while
/// one of them forks.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A forked child, killed and reaped on drop if the test did not reap it (a failing test must not
/// leave processes behind).
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks; the child runs `f` and leaves with `_exit(f())` (101 if `f` panics).
    pub fn spawn(f: impl FnOnce() -> i32) -> Child {
        // SAFETY: the child runs only `f` (shmchan calls on memory mapped before the fork) and
        // `_exit`s without running atexit handlers or unwinding into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: ends the child at once, as a forked child of a threaded process must.
            unsafe { libc::_exit(code) };
        }
        Child { pid, reaped: false }
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }

    /// Waits for the child to end: its exit code, or 128 + signal.
    pub fn wait(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid);
        self.reaped = true;
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    /// Waits until the child has stopped (after SIGSTOP): a kernel handshake, no polling.
    pub fn wait_stopped(&self) {
        let mut status = 0;
        // SAFETY: as in `wait`; WUNTRACED reports the stop.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WUNTRACED) };
        assert_eq!(r, self.pid);
        assert!(libc::WIFSTOPPED(status), "child did not stop: {status:#x}");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill + reap our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, core::ptr::null_mut(), 0);
            }
        }
    }
}

/// Handshake words shared with children: word 0 is a flag, word 1 a counter.
pub struct Handshake(Segment);

impl Handshake {
    pub fn new() -> Handshake {
        Handshake(Segment::anonymous_raw(64).expect("handshake segment"))
    }

    pub fn set(&self, v: u32) {
        self.0.atomic_u32(0).unwrap().store(v, Ordering::Release);
        self.0.wake_u32(0);
    }

    /// Waits (futex) until word 0 equals `v`.
    pub fn wait_for(&self, v: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cur = self.0.load_u32(0).unwrap();
            if cur == v {
                return;
            }
            assert!(Instant::now() < deadline, "handshake never came");
            self.0.wait_u32(0, cur, Duration::from_millis(100));
        }
    }

    pub fn counter(&self) -> &std::sync::atomic::AtomicU64 {
        self.0.atomic_u64(1).unwrap()
    }
}

/// A bare `fork` for tests that fork in the middle of something (inside a write's closure, while
/// a guard is held): returns 0 in the child, which must end with [`exit_child`].
pub fn fork_here() -> libc::pid_t {
    // SAFETY: the caller keeps the child's work minimal and ends it with `exit_child`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

/// Ends a child made by [`fork_here`] at once, without unwinding into the harness.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Waits for a child made by [`fork_here`]: its exit code, or 128 + signal.
pub fn wait_pid(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}
