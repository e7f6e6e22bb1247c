//! Shared (inter-process) futexes: `FUTEX_WAIT` with a timeout and `FUTEX_WAKE`, without
//! `FUTEX_PRIVATE_FLAG` because the word lives in memory mapped by several processes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Why a [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Woken by `FUTEX_WAKE` or a signal, or the word no longer held `expected` (`EAGAIN`):
    /// the caller re-checks its condition either way.
    Woken,
    /// The timeout expired.
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (forever when `None`).
///
/// Spurious wake-ups are possible; callers loop on their own condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned `u32` for the duration of the call (it is borrowed);
    // FUTEX_WAIT only reads it. `ts_ptr` is null or points to a live timespec (a relative
    // timeout for FUTEX_WAIT). The remaining arguments are ignored by FUTEX_WAIT.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 && super::Errno::last() == super::Errno::ETIMEDOUT {
        WaitOutcome::TimedOut
    } else {
        // 0, EAGAIN (value changed), EINTR (signal): all mean "look again".
        WaitOutcome::Woken
    }
}

/// Wakes up to `count` waiters on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> usize {
    let count = count.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE does not access memory through the
    // other arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            0usize,
            0usize,
            0u32,
        )
    };
    r.max(0) as usize
}

/// Why a [`wait_any`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitAnyOutcome {
    /// Woken, by `FUTEX_WAKE` on the word at this index, by a signal (`None`), or because one
    /// word no longer held its expected value (`EAGAIN`, `None`): callers re-check everything.
    Woken(Option<usize>),
    /// The timeout expired.
    TimedOut,
    /// The kernel has no `futex_waitv` (Linux before 5.16, or a seccomp filter refusing it):
    /// callers fall back to waiting on one word at a time with short timeouts.
    Unsupported,
}

/// The most words one [`wait_any`] sleeps on (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAITV_MAX: usize = 128;

/// `struct futex_waitv` of `<linux/futex.h>`.
#[derive(Clone, Copy)]
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: the words are 32 bits (and, without `FUTEX2_PRIVATE`, shared between
/// processes).
const FUTEX2_SIZE_U32: u32 = 0x02;

/// Sleeps while every `words[i].0` holds `words[i].1`, at most `timeout` (forever when
/// `None`), with one `futex_waitv` call (Linux 5.16 and later). At most [`WAITV_MAX`] words;
/// more, or none, is [`WaitAnyOutcome::Woken(None)`](WaitAnyOutcome::Woken) at once.
///
/// Used by `WaitSet` and the async notifier.
pub(crate) fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> WaitAnyOutcome {
    waitv(
        words
            .iter()
            .map(|(w, expected)| (w.as_ptr() as u64, *expected)),
        words.len(),
        timeout,
    )
}

/// [`wait_any`] over raw addresses, for a waiter that must not hold references to the words:
/// the async notifier sleeps on words of mappings that a leaked future may let go away during
/// the call. The kernel only reads the words; an address no longer mapped makes the call fail
/// with `EFAULT`, reported as [`WaitAnyOutcome::Woken(None)`](WaitAnyOutcome::Woken) (look
/// again), never a fault in this process.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) fn wait_any_raw(
    words: &[(*const AtomicU32, u32)],
    timeout: Option<Duration>,
) -> WaitAnyOutcome {
    waitv(
        words.iter().map(|&(w, expected)| (w as u64, expected)),
        words.len(),
        timeout,
    )
}

/// One `futex_waitv` call on `len` (address, expected value) pairs. The array lives on the
/// stack (3 KiB): a wait allocates nothing.
fn waitv(
    words: impl Iterator<Item = (u64, u32)>,
    len: usize,
    timeout: Option<Duration>,
) -> WaitAnyOutcome {
    if len == 0 || len > WAITV_MAX {
        return WaitAnyOutcome::Woken(None);
    }
    let mut array = [FutexWaitv {
        val: 0,
        uaddr: 0,
        flags: 0,
        reserved: 0,
    }; WAITV_MAX];
    let mut n = 0;
    for (slot, (uaddr, expected)) in array.iter_mut().zip(words) {
        *slot = FutexWaitv {
            val: u64::from(expected),
            uaddr,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        };
        n += 1;
    }
    let waiters = &array[..n];
    if n == 0 {
        return WaitAnyOutcome::Woken(None);
    }
    // futex_waitv takes an absolute deadline on the given clock.
    let deadline = timeout.map(|d| {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a live, writable timespec; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let now = Duration::new(
            now.tv_sec.max(0) as u64,
            now.tv_nsec.clamp(0, 999_999_999) as u32,
        );
        let at = now.saturating_add(d);
        libc::timespec {
            tv_sec: at.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: at.subsec_nanos() as libc::c_long,
        }
    });
    let ts_ptr = deadline
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `waiters` is a live array of `waiters.len()` (1..=128) futex_waitv entries; the
    // kernel only reads the user words they name (through `wait_any`, words borrowed for the
    // call; through `wait_any_raw`, an unmapped or misaligned one fails the call with
    // EFAULT/EINVAL and is never written); `ts_ptr` is null or points to a live absolute
    // timespec on CLOCK_MONOTONIC; flags must be 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return WaitAnyOutcome::Woken(usize::try_from(r).ok());
    }
    match super::Errno::last() {
        super::Errno::ETIMEDOUT => WaitAnyOutcome::TimedOut,
        super::Errno::ENOSYS | super::Errno::EPERM => WaitAnyOutcome::Unsupported,
        // EAGAIN (a word changed), EINTR (signal), anything else: look again.
        _ => WaitAnyOutcome::Woken(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    #[test]
    fn wait_times_out_when_nobody_wakes() {
        let w = AtomicU32::new(0);
        assert_eq!(
            wait(&w, 0, Some(Duration::from_millis(5))),
            WaitOutcome::TimedOut
        );
    }

    #[test]
    fn wait_returns_at_once_when_value_differs() {
        let w = AtomicU32::new(1);
        assert_eq!(
            wait(&w, 0, Some(Duration::from_secs(5))),
            WaitOutcome::Woken
        );
    }

    #[test]
    fn wait_any_times_out_and_sees_a_changed_word() {
        let (a, b) = (AtomicU32::new(0), AtomicU32::new(7));
        assert_eq!(
            wait_any(&[(&a, 0), (&b, 7)], Some(Duration::from_millis(5))),
            WaitAnyOutcome::TimedOut
        );
        assert_eq!(
            wait_any(&[(&a, 0), (&b, 6)], Some(Duration::from_secs(5))),
            WaitAnyOutcome::Woken(None)
        );
    }

    #[test]
    fn wait_any_names_the_woken_word() {
        let words = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let w2 = Arc::clone(&words);
        let t = std::thread::spawn(move || {
            loop {
                match wait_any(&[(&w2[0], 0), (&w2[1], 0)], Some(Duration::from_secs(10))) {
                    WaitAnyOutcome::Woken(Some(i)) => return Some(i),
                    WaitAnyOutcome::Woken(None) if w2[1].load(Ordering::Acquire) != 0 => {
                        return None;
                    }
                    WaitAnyOutcome::Unsupported => return Some(1),
                    _ => {}
                }
            }
        });
        words[1].store(1, Ordering::Release);
        while !t.is_finished() {
            wake(&words[1], 1);
            std::thread::yield_now();
        }
        // Woken on word 1 by name, or found it changed before sleeping.
        assert!(matches!(t.join().unwrap(), Some(1) | None));
    }

    #[test]
    fn wait_any_raw_survives_an_unmapped_word() {
        let a = AtomicU32::new(0);
        // An address that is mapped nowhere (page 0): the kernel refuses it, nothing faults.
        let nowhere = 8 as *const AtomicU32;
        assert!(matches!(
            wait_any_raw(&[(&a, 0), (nowhere, 0)], Some(Duration::from_secs(5))),
            WaitAnyOutcome::Woken(None) | WaitAnyOutcome::Unsupported
        ));
        assert!(matches!(
            wait_any_raw(&[(&a, 0)], Some(Duration::from_millis(5))),
            WaitAnyOutcome::TimedOut | WaitAnyOutcome::Unsupported
        ));
    }

    #[test]
    fn wake_releases_a_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, Some(Duration::from_secs(10)));
            }
        });
        w.store(1, Ordering::Release);
        while !t.is_finished() {
            wake(&w, 1);
            std::thread::yield_now();
        }
        t.join().unwrap();
    }
}
