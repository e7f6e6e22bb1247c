//! Request-response between processes: one server, many clients.
//!
//! A [`Client`] [`call`](Client::call)s with a request of type `Req` and waits for the
//! response of type `Resp`; a [`Server`] [`recv`](Server::recv)s each request together with a
//! [`Replier`] that answers exactly that call. Any number of clients (up to `max_clients`, set
//! at creation) may call at once, from any processes; each gets exactly the answers to its own
//! calls.
//!
//! # How it works
//!
//! One shared memory segment holds a request queue (an [`mpmc`](crate::mpmc) queue of small
//! tokens) and one *slot* per client. A client owns a slot while it lives (its entry in the
//! client table, with its pid and start time). A call writes the request into the slot under a
//! fresh call id, then queues the token "slot `i`, call `c`". The server takes the token, reads
//! the request from slot `i` and hands out a replier for call `c`, which writes the response
//! into the same slot and wakes the client. Every call id of a slot is used once, and the
//! client only accepts the reply whose id is its call's, so a late reply to a call that timed
//! out is never taken for the answer to a later one.
//!
//! # Crashes and disconnection
//!
//! - A **client killed** at any point leaves its slot behind; once its process is gone the slot
//!   is reused by the next client that connects (or clone). A request it had queued is still
//!   received by the server, whose reply is then dropped; a client killed while queueing its
//!   token is recovered as in [`mpmc`](crate::mpmc) (counted in [`Server::recovered`]).
//! - A **server killed** (or dropped) makes every waiting and every later `call` return
//!   [`Error::Disconnected`](crate::Error::Disconnected): at once after a drop, within
//!   [`LIVENESS_INTERVAL`] (plus a `/proc` read) after a death.
//! - A server may be **restarted**: [`Server::open`] attaches a new server process to an
//!   existing keyed channel, and connected clients' next calls are answered by it.
//! - [`Server::recv`] returns `Disconnected` once no request is queued and every client handle
//!   is gone; a keyed server may keep receiving, for clients that connect later.
//! - A call that times out ([`Error::Timeout`](crate::Error::Timeout)) gives its request up: a
//!   server that has not taken it yet skips it ([`Server::stale_requests`]) and a late reply
//!   to it is dropped ([`Server::dropped_replies`]).
//!
//! Another process writing arbitrary bytes into the segment causes errors, timeouts or wrong
//! (but valid) requests and responses, never undefined behaviour or a panic.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use shmchan::ShmSafe;
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Add {
//!     a: u64,
//!     b: u64,
//! }
//!
//! let (server, client) = shmchan::rpc::channel::<Add, u64>(64)?;
//! // Typically: fork here; the child serves, the parent (and its other children) call.
//! std::thread::spawn(move || {
//!     while let Ok((req, replier)) = server.recv() {
//!         let _ = replier.reply(req.a + req.b);
//!     }
//! });
//! assert_eq!(client.call(Add { a: 2, b: 3 }, Duration::from_secs(5))?, 5);
//! # Ok::<(), shmchan::Error>(())
//! ```

mod client;
mod keyed;
pub(crate) mod layout;
mod memory;
mod options;
mod server;
mod slots;

pub use crate::channel::{LIVENESS_INTERVAL, WaitStrategy};
pub use client::Client;
pub use options::RpcOptions;
pub use server::{Replier, Server};

use std::sync::Arc;

use crate::{Result, ShmSafe};
use layout::{DEFAULT_MAX_CLIENTS, RpcGeometry};
use slots::Slots;

/// Creates an anonymous rpc channel whose request queue holds at least `capacity` requests
/// (rounded up to a power of two), with room for 32 clients; returns the server and a first
/// client ([`Clone`] it, before or after `fork`, for more).
///
/// The channel lives in an anonymous shared mapping: create it **before** `fork`. For unrelated
/// processes use [`Server::create`] and [`Client::connect`] with a key.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
/// 2^32; the errors of creating the mapping.
///
/// # Examples
///
/// ```
/// let (server, client) = shmchan::rpc::channel::<[u64; 2], u64>(64)?;
/// assert_eq!((server.capacity(), server.max_clients()), (64, 32));
/// assert!(shmchan::rpc::channel::<u8, u8>(0).is_err());
/// # drop(client);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel<Req: ShmSafe, Resp: ShmSafe>(
    capacity: usize,
) -> Result<(Server<Req, Resp>, Client<Req, Resp>)> {
    channel_with_clients(capacity, DEFAULT_MAX_CLIENTS)
}

/// [`channel`] with room for `max_clients` clients (1 to 4096; every clone and every copy a
/// forked child uses takes one).
///
/// # Errors
///
/// As for [`channel`]; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a client
/// count outside 1..=4096.
///
/// # Examples
///
/// ```
/// let (server, client) = shmchan::rpc::channel_with_clients::<u32, u32>(16, 2)?;
/// let second = client.clone();
/// let third = client.clone(); // no slot left: its calls fail
/// assert!(matches!(
///     third.call(1, std::time::Duration::from_millis(1)),
///     Err(shmchan::Error::TooManyHolders { side: "client", max: 2 })
/// ));
/// # drop((server, second));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel_with_clients<Req: ShmSafe, Resp: ShmSafe>(
    capacity: usize,
    max_clients: usize,
) -> Result<(Server<Req, Resp>, Client<Req, Resp>)> {
    let geometry = RpcGeometry::for_types::<Req, Resp>(capacity, max_clients)?;
    let memory = memory::anonymous::<Req>(&geometry)?;
    Ok(ends(memory, geometry))
}

/// A server and a client on an initialised channel.
fn ends<Req: ShmSafe, Resp: ShmSafe>(
    memory: Arc<crate::mpmc::memory::QueueMemory>,
    geometry: RpcGeometry,
) -> (Server<Req, Resp>, Client<Req, Resp>) {
    let slots = Arc::new(Slots::new(Arc::clone(&memory), geometry));
    let rx = crate::mpmc::Receiver::attach(Arc::clone(&memory), geometry.queue);
    let tx = crate::mpmc::Sender::attach(memory, geometry.queue);
    (
        Server::attach(rx, Arc::clone(&slots)),
        Client::attach(tx, slots),
    )
}

#[cfg(test)]
mod tests;
