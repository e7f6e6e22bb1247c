//! Helpers of the cross-process broadcast tests: the fork, pipe and shared-counter helpers of
//! the mpmc tests, plus a 64-byte message whose every word is derived from its sequence number
//! (a torn copy shows up as a mismatch).

#![allow(dead_code)]

#[path = "../mpmc_support/mod.rs"]
mod mpmc_support;

pub use mpmc_support::*;

use shmchan::ShmSafe;

/// 64 bytes: a sequence number and seven words derived from it.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Pattern {
    pub seq: u64,
    pub words: [u64; 7],
}

impl Pattern {
    pub fn new(seq: u64) -> Pattern {
        let mut words = [0; 7];
        for (i, w) in words.iter_mut().enumerate() {
            *w = (seq ^ (i as u64 + 1) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        Pattern { seq, words }
    }

    pub fn is_valid(&self) -> bool {
        *self == Pattern::new(self.seq)
    }
}

/// Parks the calling child until it is killed.
pub fn park() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// A POSIX name and key unique to this test process.
pub fn key(tag: &str) -> (String, shmchan::Key) {
    let name = format!("/shmchan-test-bc-{tag}-{}", std::process::id());
    let key = shmchan::Key::name(&name).unwrap();
    (name, key)
}
