//! [`SegmentKind`] and [`LockKind`]: what a segment holds and which lock guards it, as stored in
//! its header.

use crate::error::Error;

/// What a segment holds (stored in its header).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::SegmentKind::Channel as u32, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum SegmentKind {
    /// One value with a lock (`Shared<T, L>`).
    Value = 1,
    /// A single-producer single-consumer ring of messages.
    Channel = 2,
    /// Untyped bytes accessed as atomic words and atomic byte copies (`Segment::create_raw`).
    Raw = 3,
    /// A multi-producer multi-consumer queue (`shmchan::mpmc`).
    Mpmc = 4,
    /// A one-publisher, many-subscriber ring (`shmchan::broadcast`).
    Broadcast = 5,
    /// A request-response channel: one server, many clients (`shmchan::rpc`).
    Rpc = 6,
}

impl TryFrom<u32> for SegmentKind {
    type Error = Error;

    /// The kind a header's `kind` word names.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] for a value no shmchan version writes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::SegmentKind;
    ///
    /// assert_eq!(SegmentKind::try_from(2)?, SegmentKind::Channel);
    /// assert!(SegmentKind::try_from(9).is_err());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    fn try_from(v: u32) -> Result<SegmentKind, Error> {
        match v {
            1 => Ok(SegmentKind::Value),
            2 => Ok(SegmentKind::Channel),
            3 => Ok(SegmentKind::Raw),
            4 => Ok(SegmentKind::Mpmc),
            5 => Ok(SegmentKind::Broadcast),
            6 => Ok(SegmentKind::Rpc),
            _ => Err(unknown("kind", v)),
        }
    }
}

/// Which lock guards a segment's payload (stored in its header).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::LockKind::SeqLock as u32, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum LockKind {
    /// No lock (channels synchronise through their indices).
    None = 0,
    /// A sequence lock: lock-free readers, one writer.
    SeqLock = 1,
    /// An fcntl record lock on a lock file.
    Fcntl = 2,
}

impl TryFrom<u32> for LockKind {
    type Error = Error;

    /// The lock kind a header's `lock_kind` word names.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] for a value no shmchan version writes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::LockKind;
    ///
    /// assert_eq!(LockKind::try_from(1)?, LockKind::SeqLock);
    /// assert!(LockKind::try_from(7).is_err());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    fn try_from(v: u32) -> Result<LockKind, Error> {
        match v {
            0 => Ok(LockKind::None),
            1 => Ok(LockKind::SeqLock),
            2 => Ok(LockKind::Fcntl),
            _ => Err(unknown("lock kind", v)),
        }
    }
}

fn unknown(what: &str, v: u32) -> Error {
    Error::Corrupted {
        what: format!("segment header: unknown {what} {v}"),
    }
}
