//! Fork, pipe and wait helpers shared by the channel test binaries: the child does its few
//! channel operations and pipe I/O, then `_exit`s; `serial()` keeps the binary's other test
//! threads idle while a test forks.

#![allow(dead_code)] // each test binary uses its own subset

use std::os::fd::RawFd;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forks: `None` in the child (which must end in [`child_main`]), the child's pid in the parent.
pub fn fork() -> Option<libc::pid_t> {
    // SAFETY: the child runs a few channel operations and pipe I/O, then `_exit`s
    // (`child_main`); `SERIAL` keeps this binary's other test threads idle meanwhile.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    (pid != 0).then_some(pid)
}

/// Runs the child's `body` and exits with its code (101 if it panicked).
pub fn child_main(body: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
    // SAFETY: ends the child at once, without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid`; its exit code, or 128 + signal.
pub fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our child; valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

pub fn kill(pid: libc::pid_t) {
    // SAFETY: sending SIGKILL to our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A pipe carrying one-byte messages between parent and child.
pub struct Pipe {
    read: RawFd,
    write: RawFd,
}

impl Pipe {
    pub fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Pipe {
            read: fds[0],
            write: fds[1],
        }
    }

    pub fn send(&self, b: u8) {
        // SAFETY: writing one byte from a live local.
        let n = unsafe { libc::write(self.write, [b].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }

    pub fn recv(&self) -> u8 {
        let mut b = [0u8];
        // SAFETY: reading one byte into a live local.
        let n = unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
        b[0]
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptors once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}
