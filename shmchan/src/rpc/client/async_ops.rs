//! `Client::call_async` (the `async` feature): the request goes out through the request
//! queue's `send_async`, and the reply is awaited on the client's own slot word with the
//! process's async notifier as the sleeper.

use std::sync::Arc;
use std::time::Instant;

use super::super::slots::{Slots, token};
use super::{Client, client_side};
use crate::async_rt::{ChannelWait, Keep, Periodic};
use crate::mpmc::layout::corrupted;
use crate::{Error, Result, ShmSafe};

/// Marks the call abandoned unless it completed: a future dropped while waiting (a lost
/// `select!` branch, a `tokio::time::timeout`) leaves no request the server would answer into
/// the void, and a late reply is never taken for a later call's.
struct Pending<'a> {
    slots: &'a Slots,
    index: usize,
    call: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.slots.abandon(self.index, self.call);
        }
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Client<Req, Resp> {
    /// Sends `req` and waits asynchronously for the server's reply: the async form of
    /// [`call`](Client::call), for any executor (std `Future`/`Waker` only). Bound it with the
    /// executor's timeout (e.g. `tokio::time::timeout`).
    ///
    /// The reply is awaited on this client's own slot, announced like a blocked `call`, and
    /// woken by this process's notifier thread (started on first use): no polling. The future
    /// is polled again at every liveness tick, so a dead server is noticed within about
    /// [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL). It takes `&mut self` so that the future
    /// is `Send` when `Req` is (a client is `Send`, not `Sync`).
    ///
    /// **Cancellation**: dropping the future abandons the call: a server that has not taken
    /// the request yet skips it, and a reply to it is dropped, never returned by a later call.
    ///
    /// # Errors
    ///
    /// As for [`call`](Client::call) ([`Error::Disconnected`] when the server is gone, ...),
    /// without its timeout; [`Error::Os`] if the notifier thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, mut client) = shmchan::rpc::channel::<u32, u32>(4)?;
    /// // Typically: the server is another process.
    /// std::thread::spawn(move || {
    ///     let (req, replier) = server.recv()?;
    ///     replier.reply(req * 2)
    /// });
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(client.call_async(21))?, 42);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub async fn call_async(&mut self, req: Req) -> Result<Resp> {
        let index = self.slot_index()?;
        if self.tx.endpoint().peer_disconnected(Some(Instant::now())) {
            return Err(Error::Disconnected);
        }
        let slots = Arc::clone(&self.slots);
        let slot = slots
            .slot(index)
            .ok_or_else(|| corrupted("rpc client slot outside the channel"))?;
        let call = slots.next_call(slot);
        slots.write_request(index, call, &req);
        let mut pending = Pending {
            slots: &slots,
            index,
            call,
            done: false,
        };
        self.tx
            .send_async(token(index, call))
            .await
            .map_err(client_side)?;
        // This client is the only waiter on its slot's word.
        let mut wait = ChannelWait::new(true).with_strategy(self.wait_strategy());
        // The closure holds `&mut self` (not `&self`, which is not `Send`): what makes the
        // future `Send`.
        let this = &mut *self;
        let slots = &slots;
        let got = std::future::poll_fn(move |cx| {
            let end = this.tx.endpoint();
            wait.poll(
                cx,
                &slot.wait,
                || {
                    let keep: Keep = Arc::<Slots>::clone(slots);
                    (keep, Periodic::Always)
                },
                || {
                    if let Some(r) = slots.read_reply::<Resp>(index, call) {
                        return Some(Ok(r));
                    }
                    if let Err(e) = slots.geometry().check_unchanged(slots.header()) {
                        return Some(Err(e));
                    }
                    end.peer_disconnected(Some(Instant::now()))
                        .then_some(Err(Error::Disconnected))
                },
            )
        })
        .await;
        pending.done = got.is_ok();
        got
    }
}
