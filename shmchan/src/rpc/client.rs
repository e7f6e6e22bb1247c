//! The calling end: writes a request into its slot, queues a token naming it, and waits for
//! the reply to that call.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slots::{Slots, token};
use crate::channel::wait::{self, WaitStrategy};
use crate::channel::{SendTimeoutError, TrySendError};
use crate::mpmc;
use crate::mpmc::layout::{Entry, corrupted};
use crate::{Error, Result, ShmSafe};

/// A calling end of an rpc channel. Any number of clients (up to the channel's
/// `max_clients`), in any processes, may call at once; each gets exactly the answers to its own
/// calls.
///
/// Create one with [`channel`](super::channel()) (anonymous, before `fork`) or
/// [`Client::connect`] (keyed); [`Clone`] makes another in the same process, with its own slot.
/// A copy carried into a child by `fork` gets its own slot in the child. It may move between
/// threads (`Send`) but not be shared by them (not `Sync`): give each thread its own clone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (server, client) = shmchan::rpc::channel::<u64, u64>(16)?;
/// let other = client.clone();
/// std::thread::spawn(move || {
///     while let Ok((n, replier)) = server.recv() {
///         let _ = replier.reply(n + 1);
///     }
/// });
/// assert_eq!(client.call(1, Duration::from_secs(5))?, 2);
/// assert_eq!(other.call(10, Duration::from_secs(5))?, 11);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Client<Req: ShmSafe, Resp: ShmSafe> {
    tx: mpmc::Sender<u64>,
    slots: Arc<Slots>,
    strategy: Cell<WaitStrategy>,
    _types: std::marker::PhantomData<fn(Req) -> Resp>,
}

/// The table is the queue's producer table: say "client" in the error.
#[cfg(feature = "async")]
mod async_ops;

fn client_side(e: Error) -> Error {
    match e {
        Error::TooManyHolders { max, .. } => Error::TooManyHolders {
            side: "client",
            max,
        },
        other => other,
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Client<Req, Resp> {
    pub(crate) fn attach(tx: mpmc::Sender<u64>, slots: Arc<Slots>) -> Client<Req, Resp> {
        Client {
            tx,
            slots,
            strategy: Cell::new(WaitStrategy::default()),
            _types: std::marker::PhantomData,
        }
    }

    /// This handle's slot: the index of its entry in the client table (registering it now if
    /// it has none, e.g. in a child forked while the table was full).
    pub(crate) fn slot_index(&self) -> Result<usize> {
        let end = self.tx.endpoint();
        let entry = end.entry().map_err(client_side)?;
        let table = end.queue.producers().entries();
        let offset = (entry as *const Entry as usize).wrapping_sub(table.as_ptr() as usize);
        let index = offset / size_of::<Entry>();
        if index < table.len() {
            Ok(index)
        } else {
            Err(corrupted("rpc client entry outside the client table"))
        }
    }

    /// Calls the server: sends `req` and waits at most `timeout` (for room in the request
    /// queue, then for the reply) for the response to this call.
    ///
    /// Each client has one call in flight at a time; the answer returned is always the reply to
    /// this call, never a late reply to an earlier one that timed out.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if every server handle is gone (dropped, or its process died),
    /// noticed at once after a drop and within about
    /// [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL) after a death, also while waiting;
    /// [`Error::Timeout`] if no reply came in time (naming the server's pid; the request is then
    /// given up: a server that has not taken it yet skips it, and a late reply is dropped);
    /// [`Error::TooManyHolders`] if this handle has no slot and the client table is full;
    /// [`Error::Corrupted`] if another process wrote impossible values.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u32, u32>(4)?;
    /// // Nobody serves yet: the call times out.
    /// let e = client.call(1, Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// drop(server);
    /// assert!(matches!(client.call(1, Duration::from_secs(1)), Err(shmchan::Error::Disconnected)));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn call(&self, req: Req, timeout: Duration) -> Result<Resp> {
        self.call_with(req, timeout, || {})
    }

    /// Test hook: calls like [`call`](Client::call), running `claimed` after the request
    /// queue position is claimed and before the token is written and published. Not public
    /// API.
    #[doc(hidden)]
    pub fn __call_with_hook(
        &self,
        req: Req,
        timeout: Duration,
        claimed: impl FnOnce(),
    ) -> Result<Resp> {
        self.call_with(req, timeout, claimed)
    }

    fn call_with(&self, req: Req, timeout: Duration, claimed: impl FnOnce()) -> Result<Resp> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let index = self.slot_index()?;
        let end = self.tx.endpoint();
        if end.peer_disconnected(Some(start)) {
            return Err(Error::Disconnected);
        }
        let slots = &*self.slots;
        let slot = slots
            .slot(index)
            .ok_or_else(|| corrupted("rpc client slot outside the channel"))?;
        let call = slots.next_call(slot);
        slots.write_request(index, call, &req);
        // One attempt without blocking (what `send_timeout` starts with anyway), then wait for
        // room if the queue is full.
        let sent = match self.tx.__try_send_with_hook(token(index, call), claimed) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(t)) => match deadline {
                Some(d) => self
                    .tx
                    .send_timeout(t, d.saturating_duration_since(Instant::now())),
                None => self.tx.send(t).map_err(|e| match e {
                    Error::Disconnected => SendTimeoutError::Disconnected(t),
                    other => SendTimeoutError::Failed(other),
                }),
            },
            Err(TrySendError::Disconnected(t)) => Err(SendTimeoutError::Disconnected(t)),
            Err(TrySendError::Failed(e)) => Err(SendTimeoutError::Failed(e)),
        };
        match sent {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                slots.abandon(index, call);
                return Err(Error::Timeout {
                    what: "room in the rpc request queue".into(),
                    holder_pid: None,
                });
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(Error::Disconnected),
            Err(SendTimeoutError::Failed(e)) => return Err(client_side(e)),
        }
        let got = wait::block_on(
            &slot.wait,
            self.strategy.get(),
            deadline,
            || {
                if let Some(r) = slots.read_reply::<Resp>(index, call) {
                    return Ok(Some(r));
                }
                // Cheap unless a server left since the last look.
                if end.peer_disconnected(None) {
                    return Err(Error::Disconnected);
                }
                Ok(None)
            },
            || slots.probe_reply(index, call),
            || {
                slots.geometry().check_unchanged(slots.header())?;
                if end.peer_disconnected(Some(Instant::now())) {
                    Err(Error::Disconnected)
                } else {
                    Ok(())
                }
            },
        );
        match got {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => {
                slots.abandon(index, call);
                // A reply that landed just before the mark is still this call's answer.
                if let Some(r) = slots.read_reply::<Resp>(index, call) {
                    return Ok(r);
                }
                Err(Error::Timeout {
                    what: format!("the rpc server's reply to call {call}"),
                    holder_pid: end.peer_pids().first().copied(),
                })
            }
            Err(e) => {
                slots.abandon(index, call);
                Err(e)
            }
        }
    }

    /// Chooses how a `call` waits for its reply (spin, sleep, or both) and for room in the
    /// request queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::rpc::WaitStrategy;
    ///
    /// let (_server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// client.set_wait_strategy(WaitStrategy::Spin);
    /// assert_eq!(client.wait_strategy(), WaitStrategy::Spin);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.strategy.set(strategy);
        self.tx.set_wait_strategy(strategy);
    }

    /// How a `call` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(client.wait_strategy(), shmchan::rpc::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy.get()
    }

    /// How many server handles are alive now, in all processes (reads `/proc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(client.server_count(), 1);
    /// drop(server);
    /// assert_eq!(client.server_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn server_count(&self) -> usize {
        self.tx.peer_count()
    }

    /// Whether every server is known to be gone (dropped, or found dead).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert!(!client.is_disconnected());
    /// drop(server);
    /// assert!(client.is_disconnected());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.tx.is_disconnected()
    }

    /// This client's slot in the client table (as `shmchan inspect` shows it).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if this handle has no slot and the table is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let other = client.clone();
    /// assert_ne!(client.slot()?, other.slot()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn slot(&self) -> Result<usize> {
        self.slot_index()
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Clone for Client<Req, Resp> {
    /// Another client on the same channel, with its own slot. If the client table is full, the
    /// clone's calls fail with [`Error::TooManyHolders`] until a slot frees.
    fn clone(&self) -> Self {
        let c = Client::attach(self.tx.clone(), Arc::clone(&self.slots));
        c.set_wait_strategy(self.strategy.get());
        c
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> std::fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rpc::Client")
            .field("request", &Req::LAYOUT.type_name)
            .field("response", &Resp::LAYOUT.type_name)
            .field("slot", &self.slot_index().ok())
            .field("server_pids", &self.tx.endpoint().peer_pids())
            .finish()
    }
}
