//! The on-segment format, described once: every structure shmchan places in shared memory as a
//! `#[repr(C)]` struct whose offsets are pinned by `const` assertions, and pure decoders from
//! copied bytes to owned values.
//!
//! The library's own code and any tool that reads segments without the writer's Rust type (the
//! `shmchan` command, a debugger script, a reader in another language) use these descriptions,
//! so an offset is written down in exactly one place.
//!
//! | structure | where | described by |
//! |---|---|---|
//! | segment header | offset 0 of every segment | [`header::RawHeader`], decoded by [`DecodedHeader::parse`] |
//! | stored layout | inside the header | [`layout`], decoded to a [`LayoutDesc`] |
//! | seqlock control block + two copies | start of a `SeqLock` value's payload | [`seqlock::SeqLockControl`], read by [`seqlock::read_snapshot`] |
//! | ring header | start of a channel's payload | [`ring::RingHeader`], decoded by [`ring::RingState::read`] |
//! | slots | after the ring header | [`ring::RingState::peek`] |
//! | liveness table | one per channel end, in the ring header | [`liveness::SideRecord`], decoded to [`liveness::SideState`] |
//! | mpmc queue header, holder tables, slots | start of an mpmc queue's payload | [`mpmc::MpmcHeader`], decoded by [`mpmc::MpmcState::read`] |
//! | rpc header, request queue, client slots | start of an rpc channel's payload | [`rpc::RpcHeader`], decoded by [`rpc::RpcState::read`] |
//! | broadcast header, subscriber table, stamped slots | start of a broadcast channel's payload | [`broadcast::BroadcastHeader`], decoded by [`broadcast::BroadcastState::read`] |
//!
//! # Trust
//!
//! Every decoder takes bytes another process may have written with any content, at any time.
//! They never panic, never allocate more than the segment holds, and return
//! [`Error::Corrupted`](crate::Error::Corrupted) or [`Error::NotShmchan`](crate::Error::NotShmchan)
//! naming what was impossible. The bytes come through a [`ByteSource`]: a plain byte slice (a
//! copy, a file), or a live mapping whose reads are atomic word loads (a racing writer then
//! gives wrong-but-valid bytes, never undefined behaviour).
//!
//! All integers are in the machine's native byte order: a segment is only shared on one machine.
//!
//! # Examples
//!
//! ```
//! use shmchan::format::{ByteSource, DecodedHeader};
//!
//! // Decode the header of a live segment from a copy of its bytes.
//! let seg = shmchan::Segment::anonymous_raw(64)?;
//! let mut bytes = vec![0u8; seg.len()];
//! seg.copy_out(0, &mut bytes)?;
//! let h = DecodedHeader::parse(&bytes)?;
//! assert_eq!(h.payload_len, 64);
//!
//! // Garbage is an error, never a panic.
//! assert!(DecodedHeader::parse(&[0xa5; 300]).is_err());
//! assert_eq!(bytes.as_slice().len_bytes(), bytes.len() as u64);
//! # Ok::<(), shmchan::Error>(())
//! ```

pub mod broadcast;
pub(crate) mod decoded;
pub mod header;
pub mod layout;
pub mod liveness;
pub mod mpmc;
pub mod ring;
pub mod rpc;
pub mod seqlock;
mod source;

pub use decoded::{DecodedHeader, HeaderState};
pub use layout::{FieldDesc, LayoutDesc, TypeDescOwned};
pub use source::ByteSource;
pub(crate) use source::{check_range, outside};

#[cfg(test)]
mod tests;
