//! `Subscriber::recv_async`, `Subscriber::recv_ref_async` and `Publisher::send_async` (the
//! `async` feature): the blocking protocol of `channel::wait`, with the process's async
//! notifier as the sleeper.

use std::future::Future;

use super::loan::loans_supported;
use super::{Publisher, RecvRef, Subscriber, TrySendError};
use crate::async_rt::{ChannelWait, Keep, Periodic};
use crate::{Error, Result, ShmSafe};

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
    /// As for [`recv`](Subscriber::recv) ([`Error::Lagged`],
    /// [`Error::Disconnected`], ...); [`Error::Os`]
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
        let mut wait = ChannelWait::new(false).with_strategy(self.wait_strategy());
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

    /// Receives the next message in place, waiting asynchronously while there is none: the
    /// async form of [`recv_ref`](Subscriber::recv_ref) (`Overflow::Block` channels only),
    /// waiting as [`recv_async`](Subscriber::recv_async) does. The guard reads the message in
    /// its slot; its drop moves this subscriber past it.
    ///
    /// **Cancellation-safe**: dropping the future before it completes takes no message; the
    /// next receive gets it.
    ///
    /// # Errors
    ///
    /// As for [`recv_ref`](Subscriber::recv_ref); [`Error::Os`] if the notifier thread could
    /// not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = shmchan::broadcast::channel::<[u64; 4]>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     // Typically: the publisher is in another process.
    ///     std::thread::spawn(move || {
    ///         let mut slot = tx.loan()?;
    ///         slot.write([1, 2, 3, 4]);
    ///         slot.send()
    ///     });
    ///     let msg = rx.recv_ref_async().await?;
    ///     assert_eq!(msg.view().get(2), Some(3));
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    // Not an `async fn`: the signature promises `Send`, as `recv_async`'s does.
    #[allow(clippy::manual_async_fn)]
    pub fn recv_ref_async(&mut self) -> impl Future<Output = Result<RecvRef<'_, T>>> + Send + '_ {
        async move {
            loans_supported::<T>(self.ring().geometry().overflow())?;
            let mut wait = ChannelWait::new(false).with_strategy(self.wait_strategy());
            let me = &mut *self;
            // The closure holds `&mut` (not `&`) across the await: what makes the future `Send`.
            let found = std::future::poll_fn(move |cx| {
                let this = &*me;
                wait.poll(
                    cx,
                    this.wait_word(),
                    || {
                        let keep: Keep = this.ring().memory().clone();
                        (keep, Periodic::Always)
                    },
                    || this.try_peek().transpose(),
                )
            })
            .await?;
            Ok(self.guard(found))
        }
    }
}

impl<T: ShmSafe> Publisher<T> {
    /// Sends `value` to every subscriber, waiting asynchronously while the slowest live
    /// subscriber is a whole lap behind (`Overflow::Block`): the async form of
    /// [`send`](Publisher::send), for any executor (std `Future`/`Waker` only). In
    /// `Overflow::DropOldest` mode it completes at its first poll.
    ///
    /// A pending future announces itself on the publisher's wait word as a blocked `send`
    /// does, and this process's notifier thread (started on first use) sleeps on it: a
    /// subscriber that moves its cursor, joins or leaves wakes it, and subscribers make no
    /// extra system call while nobody waits. The notifier also wakes it every
    /// [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL), so that a subscriber whose process
    /// died stops holding it back, as it stops holding a blocked `send`. Takes `&mut self`
    /// so that the future is `Send` when `T` is (a publisher is `Send`, not `Sync`).
    ///
    /// **Cancellation-safe**: dropping the future before it completes sends nothing and
    /// withdraws its announcement; nothing already sent is affected.
    ///
    /// # Errors
    ///
    /// As for [`send`](Publisher::send); [`Error::Os`] if the notifier thread could not be
    /// started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::broadcast::channel::<u64>(2)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     tx.send_async(1).await?;
    ///     tx.send_async(2).await?;
    ///     // The ring is full: the next send waits for the subscriber (usually in another
    ///     // process) without blocking the executor.
    ///     let reader = std::thread::spawn(move || {
    ///         Ok::<_, shmchan::Error>([rx.recv()?, rx.recv()?, rx.recv()?])
    ///     });
    ///     tx.send_async(3).await?;
    ///     assert_eq!(reader.join().unwrap()?, [1, 2, 3]);
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_async(&mut self, value: T) -> impl Future<Output = Result<()>> + '_ {
        // Only this handle waits on the publisher's word: withdraw the announcement when done.
        let mut wait = ChannelWait::new(true).with_strategy(self.wait_strategy());
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
                || match this.try_send(value) {
                    Ok(()) => Some(Ok(())),
                    Err(TrySendError::Full(_)) => None,
                    Err(TrySendError::Disconnected(_)) => Some(Err(Error::Disconnected)),
                    Err(TrySendError::Failed(e)) => Some(Err(e)),
                },
            )
        })
    }
}
