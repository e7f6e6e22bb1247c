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
