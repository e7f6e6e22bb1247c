//! `recv_async` and `send_async` (the `async` feature): the blocking protocol of `wait.rs`, with
//! the process's async notifier as the sleeper.

use std::future::Future;
use std::sync::atomic::Ordering;

use super::liveness::{MAX_HOLDERS, PeerState, Probe, RESERVED, Side};
use super::{Receiver, RecvRef, Sender, TrySendError};
use crate::async_rt::{ChannelWait, Keep, Look, Periodic, Shm};
use crate::{Error, Result, ShmSafe};

/// The notifier's full liveness look at the peer's end `side`: wake the future once it is
/// closed or every holder is dead (`check_peer`, which closes it then), or when `ready` (a
/// message or room after all: a wait word another process scribbled over).
fn look(side: &Side, probe: &Probe, ready: impl FnOnce() -> bool) -> Look {
    let gone = side.check_peer(probe) == PeerState::Closed;
    let mut pids = Vec::new();
    let mut settled = true;
    for i in 0..MAX_HOLDERS {
        match side.holder_slot(i) {
            0 => {}
            w if w & RESERVED != 0 => settled = false,
            pid => pids.push(pid),
        }
    }
    // No holder (yet, or any more): nothing to watch, look again next tick.
    settled &= !pids.is_empty();
    Look {
        fire: gone || ready(),
        pids,
        settled,
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Receives the next message, waiting asynchronously while the channel is empty: the async
    /// form of [`recv`](Receiver::recv), for any executor (std `Future`/`Waker` only).
    ///
    /// A pending future announces itself to the sender exactly as a blocked `recv` does, and
    /// this process's notifier thread (started on first use) sleeps on the channel's futex
    /// word and wakes it: no polling, and no system call for the sender while nobody waits. A
    /// sender that dies is noticed within about [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL).
    /// It takes `&mut self` so that the future is `Send` (a receiver is `Send`, not `Sync`).
    ///
    /// **Cancellation-safe**: dropping the future before it completes (a lost `select!`
    /// branch, a timeout) takes no message; the next receive gets it.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv); [`Error::Os`] if the notifier thread could not be
    /// started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<u64>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     // Typically: the sender is in another process.
    ///     std::thread::spawn(move || tx.send(42));
    ///     assert_eq!(rx.recv_async().await?, 42);
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_async(&mut self) -> impl Future<Output = Result<T>> + Send + '_ {
        let mut wait = ChannelWait::new(true).with_strategy(self.wait_strategy());
        // The closure holds `&mut self` (not `&self`): what makes the future `Send`.
        std::future::poll_fn(move |cx| {
            let this = &*self;
            wait.poll(
                cx,
                this.wait_word(),
                || this.async_liveness(),
                || this.try_recv().transpose(),
            )
        })
    }

    /// Receives the next message in place, waiting asynchronously while the channel is empty:
    /// the async form of [`recv_ref`](Receiver::recv_ref). The guard reads the message in its
    /// slot and releases the slot when dropped; no copy is made.
    ///
    /// Waits exactly as [`recv_async`](Receiver::recv_async) does (announced, woken by this
    /// process's notifier thread, a dead sender noticed within about
    /// [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL)).
    ///
    /// **Cancellation-safe**: the message is only taken when the future completes with the
    /// guard, in the same poll that found it; a future dropped before that takes nothing.
    ///
    /// # Errors
    ///
    /// As for [`recv_ref`](Receiver::recv_ref); [`Error::Os`] if the notifier thread could
    /// not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<[u32; 4]>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     // Typically: the sender is in another process.
    ///     std::thread::spawn(move || tx.send([1, 2, 3, 4]));
    ///     let msg = rx.recv_ref_async().await?;
    ///     assert_eq!(msg.view().get(3), Some(4));
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    // Not an `async fn`: the written `Send` bound makes a regression a compile error here
    // rather than in a user's `tokio::spawn`.
    #[allow(clippy::manual_async_fn)]
    pub fn recv_ref_async(&mut self) -> impl Future<Output = Result<RecvRef<'_, T>>> + Send + '_ {
        async move {
            let mut wait = ChannelWait::new(true).with_strategy(self.wait_strategy());
            // A reborrow moved into the closure (not `&self` captured): what keeps the future
            // `Send`, and what gives `self` back for the guard once the wait is over.
            let this: &mut Self = &mut *self;
            let index = std::future::poll_fn(move |cx| {
                let this = &*this;
                wait.poll(
                    cx,
                    this.wait_word(),
                    || this.async_liveness(),
                    || this.try_peek().transpose(),
                )
            })
            .await?;
            // No await between finding the message and building its guard: nothing to cancel.
            Ok(RecvRef::new(self, index))
        }
    }

    /// What the notifier keeps and checks at each tick for a pending receive: the sender
    /// closed or dead, or a message published after all.
    fn async_liveness(&self) -> (Keep, Periodic) {
        let (memory, header) = self.async_parts();
        let probe = memory.probe();
        let header = Shm::new(header);
        let check = move || {
            // SAFETY: the registration this check belongs to keeps the mapping.
            let h = unsafe { header.get() };
            look(&h.sender.0, &probe, || {
                h.tail.0.load(Ordering::Acquire) != h.head.0.load(Ordering::Acquire)
            })
        };
        let keep: Keep = memory.clone();
        (keep, Periodic::Check(Box::new(check)))
    }
}

impl<T: ShmSafe> Sender<T> {
    /// Sends `value`, waiting asynchronously while the channel is full: the async form of
    /// [`send`](Sender::send), for any executor (std `Future`/`Waker` only).
    ///
    /// Waits like [`Receiver::recv_async`]: announced to the receiver, woken by this process's
    /// notifier thread; a receiver that dies is noticed within about
    /// [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL). Takes `&mut self` so that the future
    /// is `Send` when `T` is.
    ///
    /// **Cancellation**: dropping the future before it completes does not send `value`;
    /// nothing already sent is affected.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send); [`Error::Os`] if the notifier thread could not be
    /// started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::channel::<u64>(1)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     tx.send_async(1).await?;
    ///     // Full: the second send waits until the receiver (usually another process) takes one.
    ///     let reader =
    ///         std::thread::spawn(move || Ok::<_, shmchan::Error>((rx.recv()?, rx.recv()?)));
    ///     tx.send_async(2).await?;
    ///     assert_eq!(reader.join().unwrap()?, (1, 2));
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_async(&mut self, value: T) -> impl Future<Output = Result<()>> + '_ {
        let mut wait = ChannelWait::new(true).with_strategy(self.wait_strategy());
        // The closure holds `&mut self` (not `&self`): what makes the future `Send`.
        std::future::poll_fn(move |cx| {
            let this = &*self;
            wait.poll(
                cx,
                this.wait_word(),
                || this.async_liveness(),
                || match this.try_send(value) {
                    Ok(()) => Some(Ok(())),
                    Err(TrySendError::Full(_)) => None,
                    Err(TrySendError::Disconnected(_)) => Some(Err(Error::Disconnected)),
                    Err(TrySendError::Failed(e)) => Some(Err(e)),
                },
            )
        })
    }

    /// What the notifier keeps and checks at each tick for a pending send: the receiver closed
    /// or dead, or room made after all.
    fn async_liveness(&self) -> (Keep, Periodic) {
        let (memory, header) = self.async_parts();
        let probe = memory.probe();
        let head = header.head.0.load(Ordering::Acquire);
        let header = Shm::new(header);
        let check = move || {
            // SAFETY: the registration this check belongs to keeps the mapping.
            let h = unsafe { header.get() };
            look(&h.receiver.0, &probe, || {
                h.head.0.load(Ordering::Acquire) != head
            })
        };
        let keep: Keep = memory.clone();
        (keep, Periodic::Check(Box::new(check)))
    }
}
