//! `recv_async` and `send_async` (the `async` feature): the blocking protocol of
//! `channel::wait`, with the process's async notifier as the sleeper.

use std::future::Future;
use std::sync::atomic::Ordering;

use super::claim::check_align;
use super::holders::Table;
use super::{Receiver, RecvRef, Sender};
use crate::async_rt::{ChannelWait, Keep, Look, Periodic, Shm};
use crate::channel::TrySendError;
use crate::{Error, Result, ShmSafe};

/// The peer table, movable into the notifier's check.
struct PeerTable(Table);

// SAFETY: a `Table` only points at atomics in the queue's mapping, which the registration that
// owns the check keeps mapped; atomics may be read from any thread.
unsafe impl Send for PeerTable {}

impl PeerTable {
    /// The pids of the side's live holders, if it was attached once (reads `/proc`).
    fn live(&self) -> Option<Vec<u32>> {
        self.0.is_attached().then(|| self.0.live_pids())
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Receives the next message, waiting asynchronously while the queue is empty: the async
    /// form of [`recv`](Receiver::recv), for any executor (std `Future`/`Waker` only).
    ///
    /// A pending future announces itself exactly as a blocked `recv` does, and this process's
    /// notifier thread (started on first use) sleeps on the queue's futex word and wakes it: no
    /// polling, and no system call for senders while nobody waits. Every sender gone (dropped,
    /// or its process dead) surfaces as [`Error::Disconnected`] within a few
    /// [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL)s. Takes `&mut self` so that the
    /// future is `Send` (a receiver is `Send`, not `Sync`): give each task its own clone.
    ///
    /// **Cancellation-safe**: dropping the future before it completes takes no message; it
    /// stays in the queue for the next receive, by this receiver or another.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv); [`Error::Os`] if the notifier thread could not be
    /// started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<u64>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     std::thread::spawn(move || tx.send(42));
    ///     assert_eq!(rx.recv_async().await?, 42);
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_async(&mut self) -> impl Future<Output = Result<T>> + Send + '_ {
        let mut wait = ChannelWait::new(false).with_strategy(self.wait_strategy());
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

    /// Receives the next message in place, waiting asynchronously while the queue is empty:
    /// the async form of [`recv_ref`](Receiver::recv_ref). Waits as
    /// [`recv_async`](Receiver::recv_async) does.
    ///
    /// **Cancellation-safe**: a message is only taken in the poll that completes the future
    /// with its guard; a future dropped before that takes nothing.
    ///
    /// # Errors
    ///
    /// As for [`recv_ref`](Receiver::recv_ref); [`Error::Os`] if the
    /// notifier thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<[u16; 4]>(8)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     std::thread::spawn(move || tx.send([5, 6, 7, 8]));
    ///     let msg = rx.recv_ref_async().await?;
    ///     assert_eq!(msg.view().get(2), Some(7));
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    // Not an `async fn`: the written `Send` bound makes a regression a compile error here.
    #[allow(clippy::manual_async_fn)]
    pub fn recv_ref_async(&mut self) -> impl Future<Output = Result<RecvRef<'_, T>>> + Send + '_ {
        async move {
            check_align::<T>()?;
            let mut wait = ChannelWait::new(false).with_strategy(self.wait_strategy());
            // A reborrow moved into the closure (not `&self` captured): what keeps the future
            // `Send`, and what gives `self` back for the guard once the wait is over.
            let this: &mut Self = &mut *self;
            let pos = std::future::poll_fn(move |cx| {
                let this = &*this;
                wait.poll(
                    cx,
                    this.wait_word(),
                    || this.async_liveness(),
                    || this.try_claim_ref().transpose(),
                )
            })
            .await?;
            // No await between claiming the message and building its guard.
            Ok(RecvRef {
                receiver: self,
                pos,
            })
        }
    }

    /// What the notifier keeps and checks at each tick for a pending receive: every sender
    /// dead, or positions claimed beyond `head` (a message in flight, or one stuck behind a
    /// dead sender, which only polling recovers).
    fn async_liveness(&self) -> (Keep, Periodic) {
        let (memory, header, peer) = self.endpoint().async_parts();
        let header = Shm::new(header);
        let peer = PeerTable(peer);
        let check = move || {
            // SAFETY: the registration this check belongs to keeps the mapping.
            let h = unsafe { header.get() };
            // Positions claimed beyond `head`: a message in flight, or one stuck behind a dead
            // sender, which only the future's own polls (every tick, then) recover.
            let in_flight = h.tail.0.load(Ordering::Acquire) != h.head.0.load(Ordering::Acquire);
            let live = peer.live();
            let gone = live.as_ref().is_some_and(Vec::is_empty);
            let pids = live.unwrap_or_default();
            Look {
                fire: gone || in_flight,
                settled: !in_flight && !pids.is_empty(),
                pids,
            }
        };
        let keep: Keep = memory.clone();
        (keep, Periodic::Check(Box::new(check)))
    }
}

impl<T: ShmSafe> Sender<T> {
    /// Sends `value`, waiting asynchronously while the queue is full: the async form of
    /// [`send`](Sender::send), for any executor (std `Future`/`Waker` only).
    ///
    /// Waits like [`Receiver::recv_async`]; while it is pending the notifier also wakes it
    /// every [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL), so that it frees a slot
    /// held by a dead receiver and notices that every receiver is gone, as a blocked `send`
    /// does. Takes `&mut self` so that the future is `Send` when `T` is.
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
    /// let (mut tx, rx) = shmchan::mpmc::channel::<u64>(1)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     tx.send_async(1).await?;
    ///     let reader =
    ///         std::thread::spawn(move || Ok::<_, shmchan::Error>((rx.recv()?, rx.recv()?)));
    ///     tx.send_async(2).await?;
    ///     assert_eq!(reader.join().unwrap()?, (1, 2));
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_async(&mut self, value: T) -> impl Future<Output = Result<()>> + '_ {
        let mut wait = ChannelWait::new(false).with_strategy(self.wait_strategy());
        std::future::poll_fn(move |cx| {
            let this = &*self;
            wait.poll(
                cx,
                this.wait_word(),
                || {
                    let (memory, _, _) = this.endpoint().async_parts();
                    let keep: Keep = memory.clone();
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
