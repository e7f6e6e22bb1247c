//! Typed one-to-many channels between processes: one [`Publisher`], up to `max_subscribers`
//! [`Subscriber`]s, each subscriber receiving every message.
//!
//! A subscriber joins at the newest message (it receives what is published after it joined),
//! in any process, at any time: anonymous channels hand subscribers to children forked
//! afterwards ([`channel`], [`Publisher::subscribe`]); keyed channels are found by a System V
//! key or a POSIX name ([`Subscriber::open`]). Sending and receiving make no system call while
//! the ring is neither empty nor full; a blocked side spins briefly, then sleeps on a shared
//! futex with a timeout.
//!
//! # How it works
//!
//! The channel is a ring of `capacity` slots (a power of two). The publisher's cursor says how
//! many messages it published; each subscriber has its own cursor in the channel's subscriber
//! table, next to its pid and start time. Each slot carries a stamp naming the position it
//! holds, written before and after the message like a sequence lock, so a subscriber that
//! copies a slot the publisher is overwriting notices and never returns a torn message.
//!
//! # When a subscriber falls behind: [`Overflow`]
//!
//! - [`Overflow::Block`] (the default): the publisher waits while the slowest *live*
//!   subscriber is a whole lap behind. A subscriber that drops its handle stops counting at
//!   once; one whose process died (even by `SIGKILL`) within [`LIVENESS_INTERVAL`] of the
//!   publisher waiting for it. A stopped (`SIGSTOP`) subscriber is alive and holds the
//!   publisher back: [`Publisher::send_timeout`] bounds that wait.
//! - [`Overflow::DropOldest`]: the publisher never waits; it overwrites the oldest message.
//!   A subscriber that was lapped gets [`Error::Lagged { missed }`](crate::Error::Lagged) once,
//!   saying how many messages it lost, and continues with the oldest message still held.
//!
//! # Zero copy
//!
//! In `Overflow::Block` mode, [`Publisher::loan`] lends the next slot to be written in place
//! ([`Loan`]), and [`Subscriber::recv_ref`] reads the next message in its slot ([`RecvRef`]),
//! which the publisher does not overwrite until the guard drops: messages of any size pass
//! without a copy. `DropOldest` channels refuse both with
//! [`Error::InvalidArgument`](crate::Error::InvalidArgument) (use `send` and `recv` there).
//!
//! # Disconnection
//!
//! [`Subscriber::recv`] returns [`Error::Disconnected`](crate::Error::Disconnected) once the
//! publisher is gone (dropped, or its process dead) and every message it published has been
//! received. The publisher is never disconnected: publishing while no subscriber listens is
//! allowed (nobody receives those messages); [`Publisher::peer_count`] and
//! [`Publisher::wait_for_peer`] tell whether anyone listens. A keyed channel's publisher may be
//! re-opened ([`Publisher::open`]) after it died (or, System V, left while subscribers remain
//! attached); subscribers continue with its messages.
//!
//! After `fork`, a child's copies of subscribers are subscribers of their own, registered
//! before `fork` returns, reading from the same position as the parent's. There is only one
//! publisher: a child's copy of it can publish only once the parent's has left (until then
//! its sends fail with [`Error::TooManyHolders`](crate::Error::TooManyHolders)), but it is a
//! publisher handle (a *successor*, registered before `fork` returns): subscribers are
//! disconnected only once the parent's publisher and the children's copies are all gone, and
//! a hand-off (the parent drops its publisher, the child publishes) leaves no gap. Drop the
//! handles a child does not use, the publisher's copy included: a subscribing child that keeps
//! it keeps its own subscribers connected.
//!
//! Size `max_subscribers` for every subscriber handle that exists at once, in all processes,
//! counting the copies a `fork` makes before the child drops the ones it does not use (a parent
//! holding 4 subscribers and forking 4 children has 20 at the peak). A copy that finds the table
//! full at the fork is registered on its first receive instead; until then it held nobody back,
//! so it may report [`Error::Lagged`](crate::Error::Lagged) even in `Block` mode (never a torn
//! message). Alternatively, subscribe in the child ([`Publisher::subscribe`] works on a child's
//! copy of the publisher), after a handshake.
//!
//! # Examples
//!
//! ```
//! use shmchan::ShmSafe;
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Tick {
//!     seq: u64,
//!     price: f64,
//! }
//!
//! let (tx, rx) = shmchan::broadcast::channel::<Tick>(1024)?;
//! let rx2 = tx.subscribe()?;
//! // Typically: fork subscriber processes here.
//! tx.send(Tick { seq: 1, price: 1.5 })?;
//! assert_eq!(rx.recv()?.seq, 1);
//! assert_eq!(rx2.recv()?.seq, 1);
//! # Ok::<(), shmchan::Error>(())
//! ```

#[cfg(feature = "async")]
mod async_ops;
pub(crate) mod layout;
mod loan;
mod memory;
mod options;
mod publisher;
mod ring;
mod subscriber;

pub use crate::channel::{LIVENESS_INTERVAL, SendTimeoutError, TrySendError, WaitStrategy};
pub use loan::{Loan, RecvRef};
pub use options::PublisherOptions;
pub use publisher::Publisher;
pub use subscriber::Subscriber;

use crate::{Result, ShmSafe};

/// What the publisher does when the slowest subscriber is a whole lap behind.
///
/// # Examples
///
/// ```
/// use shmchan::broadcast::{Overflow, Publisher};
///
/// let (tx, rx) = Publisher::<u32>::options()
///     .capacity(2)
///     .overflow(Overflow::DropOldest)
///     .anonymous()?;
/// for i in 0..5 {
///     tx.send(i)?; // never blocks
/// }
/// assert!(matches!(rx.recv(), Err(shmchan::Error::Lagged { missed: 3 })));
/// assert_eq!(rx.recv()?, 3);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Wait for the slowest live subscriber (no message is ever lost by a live subscriber).
    #[default]
    Block,
    /// Overwrite the oldest message; a lapped subscriber is told how many it missed.
    DropOldest,
}

/// Creates an anonymous channel of at least `capacity` messages (rounded up to a power of two,
/// and to at least 2) in `Overflow::Block` mode, with room for 32 subscribers, and its first
/// subscriber.
///
/// The channel lives in an anonymous shared mapping: create it, and the subscribers
/// ([`Publisher::subscribe`]), **before** `fork`. For unrelated processes use
/// [`Publisher::create`] and [`Subscriber::open`] with a key; for other settings,
/// [`Publisher::options`].
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
/// 2^32; the errors of creating the mapping.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::broadcast::channel::<[u64; 8]>(256)?;
/// assert_eq!(tx.capacity(), 256);
/// assert!(shmchan::broadcast::channel::<u8>(0).is_err());
/// # drop(rx);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel<T: ShmSafe>(capacity: usize) -> Result<(Publisher<T>, Subscriber<T>)> {
    Publisher::options().capacity(capacity).anonymous()
}

#[cfg(test)]
mod tests;
