//! Change notification for shared values: `version()` readers can sleep on until a writer
//! completes a write, without polling and without a system call on the write path when nobody
//! waits.
//!
//! Two 32-bit words in shared memory: `changed`, the futex word a writer bumps after a write when
//! someone waits, and `watchers`, how many waiters announced themselves. The handshake is a
//! store/load pair that must not be reordered on either side:
//!
//! - writer: publishes (a Release store of the version), *orders*, loads `watchers`; if it is
//!   not zero, bumps `changed` and `FUTEX_WAKE`s;
//! - waiter: reads `changed`, increments `watchers`, *orders*, loads the version; if it still
//!   equals `seen`, `FUTEX_WAIT`s on `changed` expecting the value it read.
//!
//! Either the writer's `watchers` load sees the increment (and the bump makes the futex wait
//! return at once, or wakes it), or the waiter's version load sees the write. So a waiter never
//! sleeps through a write.
//!
//! How each side *orders* depends on the lock. The fcntl path uses a `SeqCst` fence on both
//! sides ([`ChangeWords::notify`]). The seqlock path must not add a fence to every write (it
//! would cost a fifth of a small `store()`), and needs none: its writer releases the owner word
//! with a read-modify-write *before* loading `watchers` ([`ChangeWords::notify_after_release`]),
//! and a waiter performs a read-modify-write on that same owner word (one that changes nothing)
//! after announcing itself. Read-modify-writes of one location are totally ordered: if the
//! waiter's comes later, the writer's release synchronises with it and the waiter sees the new
//! version; if it comes earlier, it synchronises with the writer's (acquire-release) release,
//! and the writer sees the announcement. Every wait has a timeout slice, so hostile values in these words cost
//! a spurious wake-up or a late one, never a hang past the caller's timeout.

use super::words::words_for;
use crate::Error;
use crate::sys::futex;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

/// How long one futex wait lasts at most: bounds the delay a waiter suffers when another process
/// scribbled on the words (or when it could not announce itself, see [`ChangeWords::wait`]).
const SLICE: Duration = Duration::from_millis(50);

/// How often a waiter that cannot announce itself (a read-only mapping) looks again.
const POLL: Duration = Duration::from_millis(1);

/// The notification words, in shared memory (`#[repr(C)]`, atomics only, 8 bytes).
#[repr(C)]
pub(crate) struct ChangeWords {
    /// Futex word: bumped after a write when `watchers != 0`.
    changed: AtomicU32,
    /// Waiters that announced themselves.
    watchers: AtomicU32,
}

const _: () = assert!(size_of::<ChangeWords>() == 8);

impl ChangeWords {
    /// Called by a writer after it published a new version: wakes the announced waiters, and
    /// costs only a fence and a load when there are none.
    #[inline]
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        self.notify_after_release();
    }

    /// [`notify`](Self::notify) without the fence, for a writer that has just released a lock
    /// word with an acquire-release read-modify-write which every announced waiter also
    /// read-modify-writes (see the module docs): a plain load when nobody waits.
    #[inline]
    pub(crate) fn notify_after_release(&self) {
        if self.watchers.load(Ordering::Relaxed) != 0 {
            self.changed.fetch_add(1, Ordering::Release);
            futex::wake(&self.changed, u32::MAX);
        }
    }

    /// Waits until `version()` differs from `seen` and returns it; at most `timeout` (`None`:
    /// forever). `announce: false` for a handle that cannot write the words (a read-only
    /// mapping): it cannot ask writers to wake it, so it looks again every millisecond.
    /// `order` runs between the announcement and the version check: the waiter's half of the
    /// ordering the writer's notify relies on (see the module docs).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the version did not change in time.
    pub(crate) fn wait(
        &self,
        version: impl Fn() -> u64,
        seen: u64,
        timeout: Option<Duration>,
        announce: bool,
        order: impl Fn(),
    ) -> Result<u64, Error> {
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        loop {
            let v = version();
            if v != seen {
                return Ok(v);
            }
            let slice = if announce { SLICE } else { POLL };
            let slice = match deadline {
                None => slice,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(slice),
                    _ => {
                        return Err(Error::Timeout {
                            what: format!("a change of the value (still at version {seen})"),
                            holder_pid: None,
                        });
                    }
                },
            };
            let expected = self.changed.load(Ordering::Acquire);
            if announce {
                self.watchers.fetch_add(1, Ordering::SeqCst);
                // Ordered after the announcement (see the module comment). A handle that
                // cannot announce polls instead, and may not write the words `order` touches.
                order();
            }
            if version() == seen {
                futex::wait(&self.changed, expected, Some(slice));
            }
            if announce {
                self.watchers.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The futex word a writer bumps: an async waiter waits while it holds what
    /// [`announce`](Self::announce) or [`changed`](Self::changed) returned.
    #[cfg(feature = "async")]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.changed
    }

    /// An async waiter's announcement (the first two steps of [`wait`](Self::wait)): reads
    /// `changed`, counts the waiter in `watchers`, and returns what it read. The caller then
    /// orders and checks the version, and withdraws with [`withdraw`](Self::withdraw).
    #[cfg(feature = "async")]
    pub(crate) fn announce(&self) -> u32 {
        let expected = self.changed.load(Ordering::Acquire);
        self.watchers.fetch_add(1, Ordering::SeqCst);
        expected
    }

    /// `changed` now, for a waiter that is already announced and checks again.
    #[cfg(feature = "async")]
    pub(crate) fn changed(&self) -> u32 {
        self.changed.load(Ordering::Acquire)
    }

    /// Withdraws an [`announce`](Self::announce)ment.
    #[cfg(feature = "async")]
    pub(crate) fn withdraw(&self) {
        self.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Announced waiters now.
    #[cfg(all(test, feature = "async"))]
    pub(crate) fn watchers(&self) -> u32 {
        self.watchers.load(Ordering::SeqCst)
    }
}

/// The version counter and notification words of an fcntl-locked value, placed right after the
/// value's words in the payload (`#[repr(C)]`, atomics only, 16 bytes): tools that read the
/// value at the start of the payload are not affected by them.
#[repr(C)]
pub(crate) struct VersionWords {
    /// Completed writes.
    version: core::sync::atomic::AtomicU64,
    changes: ChangeWords,
}

const _: () = assert!(size_of::<VersionWords>() == 16);

impl VersionWords {
    /// Completed writes so far.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Counts a completed write and wakes its waiters. Called by the writer holding the lock
    /// (one writer at a time: a load and a store are enough).
    #[inline]
    pub(crate) fn bump(&self) {
        let v = self.version.load(Ordering::Relaxed).wrapping_add(1);
        self.version.store(v, Ordering::Release);
        self.changes.notify();
    }

    /// The notification words.
    pub(crate) fn changes(&self) -> &ChangeWords {
        &self.changes
    }
}

/// Where an fcntl-locked value's [`VersionWords`] start: right after the value's words.
pub(crate) const fn fcntl_tail_offset<T>() -> usize {
    words_for::<T>() * 8
}

/// The version words of an fcntl-locked value.
///
/// # Safety
///
/// `payload` is the payload of an fcntl-locked segment for `T` (at least
/// `FcntlLock::payload_len::<T>()` bytes, 8-aligned), mapped while the reference is used; its
/// words are only accessed atomically.
pub(crate) unsafe fn fcntl_tail<'a, T>(payload: NonNull<u8>) -> &'a VersionWords {
    // SAFETY: in bounds and 8-aligned (the payload is 128-aligned and the offset a multiple of
    // 8); `VersionWords` holds only atomics, so sharing it with other processes is sound.
    unsafe {
        &*payload
            .as_ptr()
            .add(fcntl_tail_offset::<T>())
            .cast::<VersionWords>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqcst() {
        fence(Ordering::SeqCst);
    }
    use core::sync::atomic::AtomicU64;

    #[test]
    fn a_waiter_is_woken_by_a_write_and_times_out_without_one() {
        let words = ChangeWords {
            changed: AtomicU32::new(0),
            watchers: AtomicU32::new(0),
        };
        let version = AtomicU64::new(0);
        let get = || version.load(Ordering::SeqCst);
        assert!(matches!(
            words.wait(get, 0, Some(Duration::from_millis(5)), true, seqcst),
            Err(Error::Timeout { .. })
        ));
        assert_eq!(words.wait(get, 7, None, true, seqcst).unwrap(), 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Writes until the waiter has seen one (no sleep as synchronisation: the waiter
                // may announce itself before or after any of these).
                while words.watchers.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                version.store(1, Ordering::Release);
                words.notify();
            });
            let t = Instant::now();
            assert_eq!(
                words
                    .wait(get, 0, Some(Duration::from_secs(10)), true, seqcst)
                    .unwrap(),
                1
            );
            assert!(t.elapsed() < Duration::from_secs(5));
        });
        assert_eq!(words.watchers.load(Ordering::SeqCst), 0);
    }
}
