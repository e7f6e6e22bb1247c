//! Helpers of the cross-process rpc tests: the forking and shared-counter helpers of the mpmc
//! tests, a pipe handshake that can time out, and request/response types whose answers say
//! which request they answer.

#![allow(dead_code)]

#[path = "../mpmc_support/mod.rs"]
mod mpmc_support;

#[allow(unused_imports)] // each test binary uses a different subset
pub use mpmc_support::{Child, child_main, fork, leftover_shm, serial};

use std::os::fd::RawFd;
use std::time::Duration;

use shmchan::ShmSafe;

/// A request naming its client and sequence number, with some payload.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Req {
    pub client: u64,
    pub seq: u64,
    pub payload: [u64; 4],
}

/// The answer to a request: its client, its sequence number and a check derived from both.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Resp {
    pub client: u64,
    pub seq: u64,
    pub check: u64,
}

impl Req {
    pub fn new(client: u64, seq: u64) -> Req {
        Req {
            client,
            seq,
            payload: [client ^ seq, client.wrapping_mul(31), seq << 3, 0xC0FFEE],
        }
    }
}

/// What a correct server answers to `r`.
pub fn answer(r: &Req) -> Resp {
    Resp {
        client: r.client,
        seq: r.seq,
        check: r.payload.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, w| {
            (h ^ w).wrapping_mul(0x100_0000_01B3)
        }),
    }
}

/// A one-way pipe of one-byte messages; `wait_timeout` gives up instead of hanging a test.
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

    /// The next byte, or `None` if none came within `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<u8> {
        let mut pfd = libc::pollfd {
            fd: self.read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if r != 1 {
            return None;
        }
        let mut b = [0u8];
        // SAFETY: reading one byte into a live local.
        let n = unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) };
        (n == 1).then_some(b[0])
    }

    pub fn wait(&self) -> u8 {
        self.wait_timeout(Duration::from_secs(30))
            .expect("no handshake from the other process within 30 s")
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

/// Parks the calling child until it is killed.
pub fn park() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// A POSIX name unique to this test process and `tag`.
pub fn posix_name(tag: &str) -> String {
    format!("/shmchan-test-rpc-{tag}-{}", std::process::id())
}

/// Removes the segment of a key when dropped (a segment whose creating process was killed is
/// not removed by it).
pub struct RemoveOnDrop(pub shmchan::Key);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Ok(seg) = shmchan::Segment::open_any(self.0, false) {
            let _ = seg.remove();
        }
    }
}
