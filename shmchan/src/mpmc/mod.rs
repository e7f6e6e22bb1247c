//! Typed multi-producer multi-consumer queues between processes.
//!
//! Any number of [`Sender`]s and [`Receiver`]s, in any processes, share one bounded queue in a
//! shared memory segment; each message is received exactly once, by one receiver, and the
//! messages of one sender are received in the order it sent them. Sending and receiving make no
//! system call while the queue is neither empty nor full; a blocked side spins briefly, then
//! sleeps on a shared futex with a timeout.
//!
//! # How it works
//!
//! The queue is a ring of `capacity` slots (a power of two), each with a sequence number, after
//! Dmitry Vyukov's bounded MPMC queue. Two free-running positions, `tail` and `head`, say where
//! the next sender and the next receiver claim a slot; each claims by a compare-and-swap on its
//! position, then writes (or copies out) the message, then hands the slot on by advancing the
//! slot's sequence number: "published" for receivers, "free for the next lap" for senders.
//! Senders therefore never wait for each other except for a single compare-and-swap, and
//! receivers likewise.
//!
//! # Crashes
//!
//! A process may be killed at any instruction. Each handle is registered in its side's *holder
//! table* (pid and start time, so a recycled pid is not mistaken for the holder), and writes
//! there, before claiming a position, which position it is claiming. So:
//!
//! - A sender killed **between claiming and publishing** a slot would leave every receiver
//!   waiting at that position. A receiver that has waited there for
//!   [`LIVENESS_INTERVAL`] looks up who claimed it; if every claimer is dead, it marks the slot
//!   *skipped* and moves on. The skip is counted in [`recovered`](Receiver::recovered); no
//!   message is lost (the dead sender's `send` never returned).
//! - A receiver killed **while holding a message** (after claiming it, before releasing its
//!   slot) would leave senders stuck once the ring wraps around to that slot. A sender that
//!   has waited on it for [`LIVENESS_INTERVAL`] frees the slot if every claimer is dead, and
//!   counts the message in [`lost`](Sender::lost): it was taken by the dead receiver.
//! - A **stopped** process (`SIGSTOP`, a debugger) is alive and is never robbed: the others
//!   wait for it, and `recv_timeout`/`send_timeout` report [`Error::Timeout`](crate::Error)
//!   naming it.
//!
//! The slot's hand-over and its recovery are both compare-and-swaps on the same sequence word,
//! so a slow but live process and a recovering one can never both succeed: a sender whose slot
//! was skipped (only possible if `/proc` lied, or a hostile process wrote the tables) gets an
//! error and the message is not delivered. Nothing else is ever duplicated or torn. Another
//! process writing arbitrary bytes into the segment causes errors or wrong messages, never
//! undefined behaviour or a panic.
//!
//! # Zero copy
//!
//! [`Sender::loan`] claims the next slot and lends it as a [`Loan`], written in place through
//! the message's generated views and published by [`Loan::send`]; [`Receiver::recv_ref`] takes
//! the next message and leaves it in its slot as a [`RecvRef`], read in place and released when
//! dropped. Loans and copies mix freely. A loan dropped unsent is skipped (receivers pass over
//! it at once); a `mem::forget`-ten loan or guard holds its position until its handle's next
//! operation or its drop, and a process killed holding one is recovered as above.
//!
//! ```
//! let (mut tx, mut rx) = shmchan::mpmc::channel::<[u64; 1024]>(4)?;
//! let mut slot = tx.loan()?;
//! slot.view_mut().set(7, 42);
//! slot.send()?;
//! assert_eq!(rx.recv_ref()?.view().get(7), Some(42));
//! # Ok::<(), shmchan::Error>(())
//! ```
//!
//! # Disconnection
//!
//! [`Receiver::recv`] returns [`Error::Disconnected`](crate::Error::Disconnected) once the
//! queue is empty and every sender handle is gone (dropped, or its process dead), and
//! [`Sender::send`] once every receiver handle is gone; a side that never had a handle (a keyed
//! queue whose receivers have not opened yet) is not disconnected. Sides are not closed for
//! good: a restarted worker may [`open`](Receiver::open) the key again. A dropped handle is
//! noticed at once; a killed one within [`LIVENESS_INTERVAL`], even while the queue has room.
//!
//! After `fork`, the child holds copies of the parent's handles (as with file descriptors) and
//! is registered for each of them before `fork` returns, so the parent may drop its copies at
//! once. (A child that `exec`s another program without dropping them first stays counted as a
//! holder until it exits: drop the handles before `exec`, or spawn with `posix_spawn`, which
//! `std::process::Command` normally uses.) Each side's table has room for 32 handles unless the
//! creator chose otherwise
//! ([`channel_with_holders`], [`Receiver::create_with_holders`]); a handle that finds its table
//! full fails with [`Error::TooManyHolders`](crate::Error::TooManyHolders).
//!
//! # Examples
//!
//! ```
//! use shmchan::ShmSafe;
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Job {
//!     id: u64,
//!     cost: f64,
//! }
//!
//! let (tx, rx) = shmchan::mpmc::channel::<Job>(1024)?;
//! // Typically: fork workers here; each keeps a clone of `rx`.
//! let workers: Vec<_> = (0..3).map(|_| rx.clone()).collect();
//! for id in 0..6 {
//!     tx.send(Job { id, cost: 1.5 })?;
//! }
//! let done: u64 = workers.iter().map(|w| w.recv().map(|j| j.id)).sum::<Result<u64, _>>()?;
//! assert!(done <= 3 + 4 + 5);
//! # Ok::<(), shmchan::Error>(())
//! ```

#[cfg(feature = "async")]
mod async_ops;
mod claim;
pub(crate) mod endpoint;
pub(crate) mod holders;
mod keyed;
pub(crate) mod layout;
mod loan;
pub(crate) mod memory;
pub(crate) mod queue;
mod receiver;
mod recv_ref;
mod sender;

pub use crate::channel::{LIVENESS_INTERVAL, SendTimeoutError, TrySendError, WaitStrategy};
pub use loan::Loan;
pub use receiver::Receiver;
pub use recv_ref::RecvRef;
pub use sender::Sender;

use std::sync::Arc;

use crate::{Result, ShmSafe};
use layout::{DEFAULT_MAX_HOLDERS, Geometry};
use memory::QueueMemory;

/// Creates an anonymous queue of at least `capacity` messages (rounded up to a power of two, and
/// to at least 2), with room for 32 sender and 32 receiver handles.
///
/// The queue lives in an anonymous shared mapping: create it **before** `fork`; every child
/// forked afterwards holds copies of both ends (drop the ones it does not use). For unrelated
/// processes use [`Receiver::create`] and [`Sender::open`] with a key.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
/// 2^32; the errors of creating the mapping.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::mpmc::channel::<[u64; 4]>(256)?;
/// assert_eq!(tx.capacity(), 256);
/// assert!(shmchan::mpmc::channel::<u8>(0).is_err());
/// # drop(rx);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel<T: ShmSafe>(capacity: usize) -> Result<(Sender<T>, Receiver<T>)> {
    channel_with_holders(capacity, DEFAULT_MAX_HOLDERS)
}

/// [`channel`] with room for `max_holders` handles per side (1 to 4096): a pool that forks
/// many workers before they drop the ends they do not use needs one entry per handle copy.
///
/// # Errors
///
/// As for [`channel`]; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a table
/// size outside 1..=4096.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::mpmc::channel_with_holders::<u32>(64, 128)?;
/// let clones: Vec<_> = (0..100).map(|_| tx.clone()).collect();
/// clones[99].send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// assert!(shmchan::mpmc::channel_with_holders::<u32>(64, 0).is_err());
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn channel_with_holders<T: ShmSafe>(
    capacity: usize,
    max_holders: usize,
) -> Result<(Sender<T>, Receiver<T>)> {
    let geometry = Geometry::for_type::<T>(capacity, max_holders)?;
    let memory = Arc::new(QueueMemory::anonymous::<T>(&geometry)?);
    Ok((
        Sender::attach(Arc::clone(&memory), geometry),
        Receiver::attach(memory, geometry),
    ))
}

#[cfg(test)]
mod tests;
