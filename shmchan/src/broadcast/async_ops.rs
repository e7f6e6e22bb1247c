//! `Subscriber::recv_async` (the `async` feature): the blocking protocol of `channel::wait`,
//! with the process's async notifier as the sleeper.

use std::future::Future;

use super::Subscriber;
use crate::async_rt::{ChannelWait, Keep, Periodic};
use crate::{Result, ShmSafe};

impl<T: ShmSafe> Subscriber<T> {
    /// Receives the next message, waiting asynchronously while there is none: the async form of
    /// [`recv`](Subscriber::recv), for any executor (std `Future`/`Waker` only).
    ///
    /// A pending future announces itself on the subscribers' wait word as a blocked `recv`
    /// does, and this process's notifier thread (started on first use) sleeps on it: the
    /// publisher makes no extra system call while nobody waits. The future is polled again at
    /// every liveness tick, so a publisher that died is noticed within about
    /// [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL). It takes `&mut self` so that the future
    /// is `Send` (a subscriber is `Send`, not `Sync`).
    ///
    /// **Cancellation-safe**: dropping the future before it completes takes no message; the
    /// next receive gets it.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Subscriber::recv) ([`Error::Lagged`](crate::Error::Lagged),
    /// [`Error::Disconnected`](crate::Error::Disconnected), ...); [`Error::Os`](crate::Error::Os)
    /// if the notifier thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<u64>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     // Typically: the publisher is in another process.
    ///     std::thread::spawn(move || tx.send(42));
    ///     assert_eq!(rx.recv_async().await?, 42);
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_async(&mut self) -> impl Future<Output = Result<T>> + Send + '_ {
        // Subscribers share their wait word: leave it announced for the next waker.
        let mut wait = ChannelWait::new(false);
        // The closure holds `&mut self` (not `&self`): what makes the future `Send`.
        std::future::poll_fn(move |cx| {
            let this = &*self;
            wait.poll(
                cx,
                this.wait_word(),
                || {
                    let keep: Keep = this.ring().memory().clone();
                    (keep, Periodic::Always)
                },
                || this.try_recv().transpose(),
            )
        })
    }
}
