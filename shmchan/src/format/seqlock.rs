//! A `SeqLock` value's payload: the control block (writer lock, sequence counter) and two
//! copies of the value, read by [`read_snapshot`] following the lock's protocol.
//!
//! ```text
//!   0  owner record  writer lock: (tid << 32 | start time low 32 bits), (pid << 32 | tid),
//!                    futex word, waiter count                                  (line 0)
//! 128  sequence      u64: even = copy 0 complete, odd = copy 0 being written   (line 1)
//! 256  copy 0        the value as whole u64 words, padded to a multiple of 128 bytes
//! 256 + stride       copy 1, same size
//! ```
//!
//! A writer makes the sequence odd, writes copy 0, makes it even, then writes copy 1: at every
//! instant the copy `sequence & 1` is complete, so a reader never waits for a writer and a
//! writer killed mid-write leaves a complete value behind.

use super::DecodedHeader;
use super::source::ByteSource;
use crate::error::{Error, Result};
use core::mem::{offset_of, size_of};
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

/// Alignment of the control block and of each copy.
pub const COPY_ALIGN: u64 = 128;

/// The writer lock words at the start of the control block.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::seqlock::OwnerRecord>(), 24);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct OwnerRecord {
    /// `(tid << 32) | (start time & 0xffff_ffff)` of the holder; 0 when free.
    pub owner: u64,
    /// `(pid << 32) | tid` of the latest holder, to name the process of a dead one.
    pub info: u64,
    /// Futex word, bumped on release when someone waits.
    pub wake: u32,
    /// Threads (about to be) asleep on `wake`.
    pub waiters: u32,
}

/// The control block: the owner record alone on the first 128-byte line, the sequence counter
/// alone on the second.
///
/// # Examples
///
/// ```
/// use shmchan::format::seqlock::SeqLockControl;
/// assert_eq!(size_of::<SeqLockControl>(), 256);
/// assert_eq!(std::mem::offset_of!(SeqLockControl, sequence), 128);
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C, align(128))]
pub struct SeqLockControl {
    /// The writer lock.
    pub owner: OwnerRecord,
    _pad0: [u8; 128 - size_of::<OwnerRecord>()],
    /// The sequence counter.
    pub sequence: u64,
    _pad1: [u8; 120],
}

const _: () = {
    assert!(size_of::<SeqLockControl>() == 256);
    assert!(offset_of!(SeqLockControl, owner) == 0);
    assert!(offset_of!(SeqLockControl, sequence) == 128);
    assert!(offset_of!(OwnerRecord, info) == 8);
    assert!(offset_of!(OwnerRecord, wake) == 16);
    assert!(offset_of!(OwnerRecord, waiters) == 20);
};

/// Offset of copy 0 from the start of the payload.
pub const COPIES_OFFSET: u64 = size_of::<SeqLockControl>() as u64;

/// Bytes between copy 0 and copy 1 for a value of `type_size` bytes: its size rounded up to
/// whole words, then to [`COPY_ALIGN`]. `None` on overflow.
///
/// # Examples
///
/// ```
/// use shmchan::format::seqlock::copy_stride;
/// assert_eq!(copy_stride(1), Some(128));
/// assert_eq!(copy_stride(129), Some(256));
/// assert_eq!(copy_stride(u64::MAX), None);
/// ```
pub const fn copy_stride(type_size: u64) -> Option<u64> {
    match type_size.checked_next_multiple_of(8) {
        Some(w) => w.checked_next_multiple_of(COPY_ALIGN),
        None => None,
    }
}

/// Bytes the payload needs for a value of `type_size` bytes (control block + two copies).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::format::seqlock::region_len(8), Some(256 + 2 * 128));
/// ```
pub const fn region_len(type_size: u64) -> Option<u64> {
    match copy_stride(type_size) {
        Some(s) => match s.checked_mul(2) {
            Some(two) => two.checked_add(COPIES_OFFSET),
            None => None,
        },
        None => None,
    }
}

/// Who holds the writer lock, as the control block says.
///
/// # Examples
///
/// ```
/// use shmchan::format::seqlock::{OwnerRecord, WriterLock};
///
/// assert_eq!(WriterLock::from_record(&OwnerRecord::default()), WriterLock::Free);
/// let held = OwnerRecord { owner: (7 << 32) | 99, info: (5 << 32) | 7, ..Default::default() };
/// assert_eq!(
///     WriterLock::from_record(&held),
///     WriterLock::Held { tid: 7, start_low32: 99, pid: Some(5) }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterLock {
    /// Nobody writes.
    Free,
    /// A thread holds it (possibly a dead one: the next writer then takes it over).
    Held {
        /// The holder's thread id.
        tid: u32,
        /// The low 32 bits of its start time, to tell it from a later thread with its id.
        start_low32: u32,
        /// Its process, when the info word names the same thread.
        pid: Option<u32>,
    },
}

impl WriterLock {
    /// Decodes the owner record.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::seqlock::{OwnerRecord, WriterLock};
    /// // The info word names another thread: the pid is unknown.
    /// let r = OwnerRecord { owner: (7 << 32) | 1, info: (5 << 32) | 8, ..Default::default() };
    /// assert!(matches!(WriterLock::from_record(&r), WriterLock::Held { tid: 7, pid: None, .. }));
    /// ```
    pub fn from_record(r: &OwnerRecord) -> WriterLock {
        if r.owner == 0 {
            return WriterLock::Free;
        }
        let tid = (r.owner >> 32) as u32;
        let info_tid = r.info as u32;
        WriterLock::Held {
            tid,
            start_low32: r.owner as u32,
            pid: (info_tid == tid && r.info >> 32 != 0).then_some((r.info >> 32) as u32),
        }
    }
}

/// A consistent copy of a `SeqLock` value.
///
/// # Examples
///
/// ```
/// use shmchan::{SeqLock, Shared};
/// let s = Shared::<u32, SeqLock>::anonymous(7)?;
/// let snap = shmchan::format::seqlock::read_snapshot(s.segment(), s.segment().header(), std::time::Duration::ZERO)?;
/// assert_eq!((snap.bytes.as_slice(), snap.sequence), (&7u32.to_ne_bytes()[..], 0));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeqLockSnapshot {
    /// The value's bytes (`type_size` of them).
    pub bytes: Vec<u8>,
    /// The sequence number it was read at.
    pub sequence: u64,
    /// Which copy it came from (0 or 1).
    pub copy: u8,
    /// How many tries it took.
    pub attempts: u64,
    /// The writer lock, read after the value.
    pub writer: WriterLock,
}

/// Reads the value of a `SeqLock` segment whose header is `h` from `src` (the whole segment),
/// following the reader protocol: load the sequence (Acquire), copy copy `sequence & 1`,
/// fence (Acquire), reload the sequence, accept when unchanged. Retries until `deadline`
/// elapses.
///
/// # Errors
///
/// [`Error::Corrupted`] if the payload cannot hold a seqlock over the stored type,
/// [`Error::Timeout`] if the sequence kept moving for `deadline`, or the read's error.
///
/// # Examples
///
/// ```
/// use shmchan::{SeqLock, Shared};
/// use std::time::Duration;
///
/// let s = Shared::<u64, SeqLock>::anonymous(41)?;
/// s.store(42);
/// let snap = shmchan::format::seqlock::read_snapshot(s.segment(), s.segment().header(), Duration::from_millis(100))?;
/// assert_eq!(snap.bytes, 42u64.to_ne_bytes());
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn read_snapshot(
    src: &(impl ByteSource + ?Sized),
    h: &DecodedHeader,
    deadline: Duration,
) -> Result<SeqLockSnapshot> {
    let corrupted = |what: String| Error::Corrupted { what };
    region_len(h.type_size)
        .filter(|&n| n <= h.payload_len)
        .ok_or_else(|| {
            corrupted(format!(
                "a payload of {} bytes cannot hold a seqlock over a {}-byte value",
                h.payload_len, h.type_size
            ))
        })?;
    let base = h.payload_off;
    let stride = copy_stride(h.type_size).unwrap_or(0);
    let words_len = h.type_size.next_multiple_of(8);
    let seq_at = base + offset_of!(SeqLockControl, sequence) as u64;
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let s1 = src.load_u64(seq_at)?;
        let copy = base + COPIES_OFFSET + (s1 & 1) * stride;
        let mut bytes = src.read_vec(copy, words_len)?;
        fence(Ordering::Acquire);
        let s2 = src.load_u64(seq_at)?;
        if s1 == s2 {
            bytes.truncate(h.type_size as usize);
            let writer =
                read_owner(src, base).map_or(WriterLock::Free, |r| WriterLock::from_record(&r));
            return Ok(SeqLockSnapshot {
                bytes,
                sequence: s1,
                copy: (s1 & 1) as u8,
                attempts,
                writer,
            });
        }
        if start.elapsed() > deadline {
            return Err(Error::Timeout {
                holder_pid: None,
                what: format!(
                    "a stable value: the sequence kept moving for {deadline:?} ({attempts} attempts), writers too busy; try again"
                ),
            });
        }
        std::thread::yield_now();
    }
}

/// The owner record of the control block at payload offset `base`.
///
/// # Errors
///
/// The read's error.
///
/// # Examples
///
/// ```
/// use shmchan::{SeqLock, Shared};
/// use shmchan::format::seqlock::{read_owner, WriterLock};
///
/// let s = Shared::<u64, SeqLock>::anonymous(1)?;
/// let r = read_owner(s.segment(), s.segment().header().payload_off)?;
/// assert_eq!(WriterLock::from_record(&r), WriterLock::Free);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn read_owner(src: &(impl ByteSource + ?Sized), base: u64) -> Result<OwnerRecord> {
    let at = |f: usize| base + (offset_of!(SeqLockControl, owner) + f) as u64;
    let owner = src.load_u64(at(offset_of!(OwnerRecord, owner)))?;
    let info = src.load_u64(at(offset_of!(OwnerRecord, info)))?;
    let mut w = [0u8; 8];
    src.read_at(at(offset_of!(OwnerRecord, wake)), &mut w)?;
    Ok(OwnerRecord {
        owner,
        info,
        wake: u32::from_ne_bytes([w[0], w[1], w[2], w[3]]),
        waiters: u32::from_ne_bytes([w[4], w[5], w[6], w[7]]),
    })
}
