//! Helpers of the cross-process mpmc tests: forked children, pipe handshakes, shared counters.
//! Fork-heavy tests take `serial()` so that no other test thread of the binary runs while one
//! forks.

#![allow(dead_code)]

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use shmchan::ShmSafe;

static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A message naming its producer and its sequence number, with a check word derived from both:
/// a torn or stale slot shows up as a wrong `check`.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Msg {
    pub producer: u64,
    pub seq: u64,
    pub check: u64,
}

impl Msg {
    pub fn new(producer: u64, seq: u64) -> Msg {
        Msg {
            producer,
            seq,
            check: (producer << 40 ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5,
        }
    }

    pub fn is_valid(&self) -> bool {
        *self == Msg::new(self.producer, self.seq)
    }
}

/// A forked child; killed and reaped on drop if the test did not reap it.
pub struct Child {
    pub pid: libc::pid_t,
    reaped: bool,
}

/// Forks: `None` in the child (which must end in [`child_main`]), the child in the parent.
pub fn fork() -> Option<Child> {
    // SAFETY: the child only runs queue operations, atomics and pipe I/O, then `_exit`s
    // (`child_main`); `serial()` keeps the other test threads of this binary idle meanwhile.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    (pid != 0).then(|| Child { pid, reaped: false })
}

/// Runs the child's `body` and exits with its code (101 if it panicked), never returning into
/// the test harness.
pub fn child_main(body: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
    // SAFETY: ends the child at once, without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

impl Child {
    /// Waits for the child and returns its exit code (or 128 + signal).
    pub fn wait(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid, "waitpid");
        self.reaped = true;
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    /// Waits until the child has stopped (after a `SIGSTOP`).
    pub fn wait_stopped(&self) {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WUNTRACED) };
        assert_eq!(r, self.pid, "waitpid");
        assert!(libc::WIFSTOPPED(status), "child did not stop: {status:#x}");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own, not yet reaped, child.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// SIGKILLs and reaps the child (it is a zombie, hence dead, until reaped anyway).
    pub fn kill(&mut self) -> i32 {
        self.signal(libc::SIGKILL);
        self.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// A pipe used as a one-byte handshake between parent and child.
pub struct Signal {
    read: RawFd,
    write: RawFd,
}

impl Signal {
    pub fn new() -> Signal {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Signal {
            read: fds[0],
            write: fds[1],
        }
    }

    pub fn notify(&self) {
        // SAFETY: writing one byte from a live local.
        let n = unsafe { libc::write(self.write, [1u8].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }

    /// Waits at most `ms` milliseconds; whether the signal came (for processes no test
    /// reaps, such as grandchildren, which must not outlive a failed test for long).
    pub fn wait_timeout(&self, ms: i32) -> bool {
        let mut fd = libc::pollfd {
            fd: self.read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut fd, 1, ms) } != 1 {
            return false;
        }
        self.wait();
        true
    }

    pub fn wait(&self) {
        let mut b = [0u8];
        // SAFETY: reading one byte into a live local.
        let n = unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptors once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// `n` counters in an anonymous shared mapping, visible to children forked afterwards.
pub struct SharedCounters {
    ptr: *mut AtomicU64,
    n: usize,
}

impl SharedCounters {
    pub fn new(n: usize) -> SharedCounters {
        let len = n.max(1) * 8;
        // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        SharedCounters {
            ptr: p.cast(),
            n: n.max(1),
        }
    }

    pub fn get(&self) -> &[AtomicU64] {
        // SAFETY: `n` zero-initialised, 8-aligned words mapped while `self` lives; all-zero is a
        // valid `AtomicU64`, and every process accesses them atomically.
        unsafe { std::slice::from_raw_parts(self.ptr, self.n) }
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr.cast(), self.n * 8) };
    }
}

/// POSIX objects this test binary may have left under `/dev/shm` (those whose name contains
/// `tag`).
pub fn leftover_shm(tag: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(tag))
                .collect()
        })
        .unwrap_or_default()
}
