//! `changed_async` (the `async` feature): the async form of `wait_changed`, woken by the
//! process's async notifier.

use std::future::Future;

use super::Shared;
use crate::async_rt::ChangeWait;
use crate::{Lock, Result, ShmSafe};

impl<T: ShmSafe, L: Lock> Shared<T, L> {
    /// Waits asynchronously until [`version`](Self::version) differs from `seen`, and returns
    /// the new version: the async form of [`wait_changed`](Self::wait_changed), for any
    /// executor (std `Future`/`Waker` only).
    ///
    /// A pending future announces itself to writers exactly as `wait_changed` does, and this
    /// process's notifier thread (started on first use) sleeps on the value's futex word and
    /// wakes it: writers make a system call only while someone waits. For a deadline, wrap it
    /// in your executor's timeout. Read the value after it completes.
    ///
    /// **Cancellation-safe**: dropping the future withdraws its announcement (writers stop
    /// waking anyone for it); a later call with the same `seen` returns at once if a write
    /// happened meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Os`](crate::Error::Os) if the notifier thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// let seen = s.version();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let now = std::thread::scope(|t| {
    ///     t.spawn(|| s.store(5)); // typically: a writer in another process
    ///     rt.block_on(s.changed_async(seen))
    /// })?;
    /// assert!(now > seen);
    /// assert_eq!(s.read(), 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn changed_async(&self, seen: u64) -> impl Future<Output = Result<u64>> + Send + '_ {
        let mut wait = ChangeWait::new();
        let inner = &self.inner;
        // A read-only mapping cannot announce its waiter to writers.
        let announce = !inner.seg.is_read_only();
        std::future::poll_fn(move |cx| {
            // SAFETY: the payload was initialised for `T` by this lock kind (checked at open)
            // and stays mapped while `self` is borrowed, which outlives the future.
            let words = unsafe { inner.lock.change_words::<T>(inner.payload) };
            wait.poll(
                cx,
                words,
                announce,
                seen,
                || inner.version(),
                // SAFETY: as above; called only when `announce`, i.e. on a writable mapping.
                || unsafe { inner.lock.order_after_announce::<T>(inner.payload) },
            )
        })
    }
}

#[cfg(test)]
impl<T: ShmSafe, L: Lock> Shared<T, L> {
    /// The value's change words (tests of the async notifier).
    pub(crate) fn change_words_for_tests(&self) -> &crate::sync::notify::ChangeWords {
        // SAFETY: the payload of this live value, mapped while `self` is borrowed.
        unsafe { self.inner.lock.change_words::<T>(self.inner.payload) }
    }
}
