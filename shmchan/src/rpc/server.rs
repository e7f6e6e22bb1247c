//! The serving end: takes requests off the queue and hands out a [`Replier`] for each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::slots::{Delivery, Slots};
use crate::channel::WaitStrategy;
use crate::mpmc;
use crate::mpmc::queue::wake_all;
use crate::{Error, Result, ShmSafe};

/// The serving end of an rpc channel: receives the requests of every client, in the order
/// their tokens reached the request queue, and answers each through its [`Replier`].
///
/// Create one with [`channel`](super::channel()) (anonymous, before `fork`), [`Server::create`]
/// (keyed) or [`Server::options`]. A copy carried into a child by `fork` serves too: each
/// request goes to exactly one of the processes that hold a server (a pool of forked server
/// workers). Clients see [`Error::Disconnected`] once every server handle is gone; a child
/// forked while this process holds a server counts as one until it drops its copy or exits, so
/// children that only call should drop theirs (or be forked before the server exists). It may move
/// between threads (`Send`) but not be shared by them (not `Sync`); a [`Replier`] may be sent
/// to another thread to answer there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (server, client) = shmchan::rpc::channel::<u64, u64>(16)?;
/// let worker = std::thread::spawn(move || -> shmchan::Result<()> {
///     let (n, replier) = server.recv()?;
///     replier.reply(n * n)
/// });
/// assert_eq!(client.call(12, Duration::from_secs(5))?, 144);
/// worker.join().unwrap()?;
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Server<Req: ShmSafe, Resp: ShmSafe> {
    rx: mpmc::Receiver<u64>,
    slots: Arc<Slots>,
    _types: std::marker::PhantomData<fn(Req) -> Resp>,
}

/// The right to answer one request: [`reply`](Replier::reply) sends the response to the client
/// that made it. Dropping it without replying sends nothing (the client's `call` then times
/// out).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (server, client) = shmchan::rpc::channel::<u32, u32>(4)?;
/// let caller = std::thread::spawn(move || client.call(1, Duration::from_secs(5)));
/// let (req, replier) = server.recv()?;
/// assert!(replier.client_waiting());
/// replier.reply(req + 1)?;
/// assert_eq!(caller.join().unwrap()?, 2);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[must_use = "dropping a Replier sends no reply: the client waits until its timeout"]
pub struct Replier<Resp: ShmSafe> {
    slots: Arc<Slots>,
    slot: usize,
    call: u64,
    _types: std::marker::PhantomData<fn(Resp)>,
}

impl<Resp: ShmSafe> Replier<Resp> {
    /// Sends `resp` to the client that made the request and wakes it.
    ///
    /// If that client has gone (dropped, or its process died) or stopped waiting (its call
    /// timed out and it may have started another), the reply is **dropped without error**: a
    /// server should not stop serving because one client gave up. Dropped replies are counted
    /// (see [`Server::dropped_replies`]); [`client_waiting`](Replier::client_waiting) tells
    /// beforehand whether anyone still waits.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for failures of future transports.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let caller = std::thread::spawn(move || client.call(7, Duration::from_secs(5)));
    /// let (req, replier) = server.recv()?;
    /// replier.reply(req * 2)?;
    /// assert_eq!(caller.join().unwrap()?, 14);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn reply(self, resp: Resp) -> Result<()> {
        let _: Delivery = self.slots.write_reply(self.slot, self.call, &resp);
        Ok(())
    }

    /// Whether the client that made the request still waits for this reply (a snapshot: it may
    /// time out at any moment).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let caller = std::thread::spawn(move || client.call(1, Duration::from_secs(5)));
    /// let (req, replier) = server.recv()?;
    /// if replier.client_waiting() {
    ///     replier.reply(req)?; // else: skip the work, nobody waits
    /// }
    /// assert_eq!(caller.join().unwrap()?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn client_waiting(&self) -> bool {
        self.slots.is_current(self.slot, self.call)
    }

    /// The client's slot (its entry in the client table, as `shmchan inspect` shows it).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let caller = std::thread::spawn(move || client.call(5, Duration::from_secs(5)));
    /// let (req, replier) = server.recv()?;
    /// assert!(replier.client_slot() < server.max_clients());
    /// replier.reply(req)?;
    /// assert_eq!(caller.join().unwrap()?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn client_slot(&self) -> usize {
        self.slot
    }
}

impl<Resp: ShmSafe> std::fmt::Debug for Replier<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rpc::Replier")
            .field("client_slot", &self.slot)
            .field("call", &self.call)
            .finish()
    }
}

fn timeout_error(holder_pid: Option<u32>) -> Error {
    Error::Timeout {
        what: "a request on the rpc channel".into(),
        holder_pid,
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Server<Req, Resp> {
    pub(crate) fn attach(rx: mpmc::Receiver<u64>, slots: Arc<Slots>) -> Server<Req, Resp> {
        Server {
            rx,
            slots,
            _types: std::marker::PhantomData,
        }
    }

    /// The futex word this server sleeps on: whoever makes it ready (a client queues a request,
    /// or the last client leaves) clears the word and wakes it if it holds 1. A waiter stores
    /// 1, issues a SeqCst fence, re-checks with [`try_recv`](Server::try_recv) and sleeps
    /// while the word holds 1 (the protocol of `channel::wait`); `WaitSet` and the async
    /// notifier wait on it the same way.
    #[allow(dead_code)]
    pub(crate) fn wait_word(&self) -> &AtomicU32 {
        self.rx.wait_word()
    }

    /// `WaitSet` readiness: that of the request queue (a request, a client to recover, or no
    /// client left). A stale request makes the server ready although `try_recv` then finds
    /// nothing: a false positive, which the set allows.
    pub(crate) fn wait_set_ready(&self, liveness: bool) -> bool {
        self.rx.wait_set_ready(liveness)
    }

    fn request(&self, token: u64) -> Option<(Req, Replier<Resp>)> {
        let (slot, call, req) = self.slots.read_request::<Req>(token)?;
        Some((
            req,
            Replier {
                slots: Arc::clone(&self.slots),
                slot,
                call,
                _types: std::marker::PhantomData,
            },
        ))
    }

    /// Receives the next request, blocking while there is none. Requests whose client has
    /// moved on before the server got to them (the client timed out, died, or its slot was
    /// reused) are skipped and counted in [`stale_requests`](Server::stale_requests).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] once no request is queued and every client handle is gone
    /// (dropped, or its process dead) after at least one connected: a keyed server may keep
    /// calling `recv` (or [`recv_timeout`](Server::recv_timeout)) and serve clients that connect
    /// later. [`Error::TooManyHolders`] if this handle (a copy in a forked child) found no entry
    /// in the server table; [`Error::Corrupted`] if another process wrote impossible values.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<[u8; 4], u32>(8)?;
    /// let caller = std::thread::spawn(move || client.call([1, 0, 0, 0], Duration::from_secs(5)));
    /// let (req, replier) = server.recv()?;
    /// replier.reply(u32::from_le_bytes(req))?;
    /// assert_eq!(caller.join().unwrap()?, 1); // the thread dropped the only client
    /// assert!(matches!(server.recv(), Err(shmchan::Error::Disconnected)));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv(&self) -> Result<(Req, Replier<Resp>)> {
        loop {
            let token = self.rx.recv()?;
            if let Some(r) = self.request(token) {
                return Ok(r);
            }
        }
    }

    /// Receives the next request, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no request arrived in time (naming the client that holds the
    /// next queue position, if one does: it may be stopped); otherwise as for
    /// [`recv`](Server::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let e = server.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Req, Replier<Resp>)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let token = match self.rx.recv_timeout(left) {
                Ok(t) => t,
                Err(Error::Timeout { holder_pid, .. }) => return Err(timeout_error(holder_pid)),
                Err(e) => return Err(e),
            };
            if let Some(r) = self.request(token) {
                return Ok(r);
            }
        }
    }

    /// Receives a request if one is ready, without blocking: `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when no request is queued and every client is gone; otherwise as
    /// for [`recv`](Server::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert!(server.try_recv()?.is_none());
    /// let caller = std::thread::spawn(move || client.call(3, Duration::from_secs(5)));
    /// loop {
    ///     if let Some((req, replier)) = server.try_recv()? {
    ///         replier.reply(req + 1)?;
    ///         break;
    ///     }
    ///     std::thread::yield_now(); // a real server would do other work here
    /// }
    /// assert_eq!(caller.join().unwrap()?, 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<Option<(Req, Replier<Resp>)>> {
        // Bounded: at most one queue's worth of stale tokens is skipped per call.
        for _ in 0..=self.slots.geometry().queue.capacity {
            match self.rx.try_recv()? {
                None => return Ok(None),
                Some(token) => {
                    if let Some(r) = self.request(token) {
                        return Ok(Some(r));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Chooses how a blocked `recv` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::rpc::WaitStrategy;
    ///
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// server.set_wait_strategy(WaitStrategy::Block);
    /// assert_eq!(server.wait_strategy(), WaitStrategy::Block);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.rx.set_wait_strategy(strategy);
    }

    /// How a blocked `recv` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(server.wait_strategy(), shmchan::rpc::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.rx.wait_strategy()
    }

    /// The request queue's capacity (the requested one rounded up to a power of two).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(100)?;
    /// assert_eq!(server.capacity(), 128);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// The most clients that can be connected at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel_with_clients::<u8, u8>(8, 3)?;
    /// assert_eq!(server.max_clients(), 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn max_clients(&self) -> usize {
        self.slots.geometry().max_clients as usize
    }

    /// Requests queued and not yet received (a snapshot; includes stale ones not yet skipped).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let _ = client.call(1, Duration::ZERO); // queued, then given up at once
    /// assert_eq!(server.pending_requests(), 1);
    /// assert!(server.try_recv()?.is_none()); // the abandoned request is skipped
    /// assert_eq!((server.pending_requests(), server.stale_requests()), (0, 1));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn pending_requests(&self) -> usize {
        self.rx.len_hint()
    }

    /// How many client handles are alive now, in all processes (reads `/proc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// let c2 = client.clone();
    /// assert_eq!(server.client_count(), 2);
    /// drop((client, c2));
    /// assert_eq!(server.client_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn client_count(&self) -> usize {
        self.rx.peer_count()
    }

    /// Request tokens skipped so far because their client had moved on (timed out and called
    /// again, died, or its slot was reused) before a server received them.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(server.stale_requests(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn stale_requests(&self) -> u64 {
        self.slots.counters().stale_requests.load(Ordering::Relaxed)
    }

    /// Replies dropped so far because their client had gone or stopped waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(server.dropped_replies(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn dropped_replies(&self) -> u64 {
        self.slots
            .counters()
            .dropped_replies
            .load(Ordering::Relaxed)
    }

    /// Queue slots recovered so far because a client died between claiming a queue position
    /// and publishing its token (that call never returned, so nothing is lost).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::channel::<u8, u8>(4)?;
    /// assert_eq!(server.recovered(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recovered(&self) -> u64 {
        self.rx.recovered()
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> std::fmt::Debug for Server<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rpc::Server")
            .field("request", &Req::LAYOUT.type_name)
            .field("response", &Resp::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("max_clients", &self.max_clients())
            .finish()
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Drop for Server<Req, Resp> {
    fn drop(&mut self) {
        // Leave the server table first, so that a client woken below that scans it finds this
        // handle gone; then wake clients blocked on a full queue and those waiting for replies.
        // (The queue receiver's own drop then finds the entry already freed.)
        if self.rx.endpoint().leave() {
            wake_all(&self.rx.endpoint().queue.header().tx_wait.0);
            self.slots.wake_all_clients();
        }
    }
}
