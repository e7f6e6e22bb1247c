//! Typed single-producer single-consumer channels between processes.
//!
//! A channel is a ring of `T` slots in one shared memory segment, with the producer's and the
//! consumer's indices on separate cache lines. Sending and receiving make no system call while
//! the peer keeps up; a side that must wait spins briefly, then sleeps on a shared futex with a
//! timeout, and is woken only if it announced itself. A side whose peer dropped its end, or was
//! killed, gets [`Error::Disconnected`](crate::Error::Disconnected) (after every committed
//! message was delivered).
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
//! let (tx, rx) = shmchan::channel::<Tick>(1024)?;
//! // Typically: fork here, send in one process, receive in the other.
//! tx.send(Tick { seq: 1, price: 10.5 })?;
//! assert_eq!(rx.recv()?.seq, 1);
//! # Ok::<(), shmchan::Error>(())
//! ```

#[cfg(feature = "async")]
mod async_ops;
mod error;
mod keyed;
pub(crate) mod layout;
pub(crate) mod liveness;
mod loan;
mod membership;
mod memory;
mod receiver;
mod ring;
mod role;
mod sender;
pub(crate) mod wait;

pub use error::{SendTimeoutError, TrySendError};
pub use loan::{Loan, RecvRef};
pub use receiver::Receiver;
pub use sender::Sender;
pub use wait::{LIVENESS_INTERVAL, WaitStrategy};

use std::sync::Arc;

use crate::{Result, ShmSafe};
use layout::Geometry;
use memory::RingMemory;
use role::Role;

/// Creates an anonymous channel of at least `capacity` messages (rounded up to a power of two).
///
/// The ring lives in an anonymous shared mapping: create the channel **before** `fork`, then
/// keep the [`Sender`] in one process and the [`Receiver`] in the other (dropping the unused end
/// in each). For unrelated processes use [`Sender::create`] and [`Receiver::open`] with a key.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
/// 2^32; the errors of creating the mapping (`NoMemory`...).
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::channel::<[u64; 8]>(256)?;
/// assert_eq!(tx.capacity(), 256);
/// assert!(shmchan::channel::<u8>(0).is_err());
/// # drop(rx);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel<T: ShmSafe>(capacity: usize) -> Result<(Sender<T>, Receiver<T>)> {
    let geometry = Geometry::for_type::<T>(capacity)?;
    let (memory, geometry) = RingMemory::anonymous::<T>(&geometry)?;
    let memory = Arc::new(memory);
    // Unclaimed: after a `fork`, whichever process uses an end first takes its role.
    Ok((
        Sender::attach(Arc::clone(&memory), geometry, Role::Unclaimed)?,
        Receiver::attach(memory, geometry, Role::Unclaimed)?,
    ))
}

#[cfg(test)]
mod tests;
