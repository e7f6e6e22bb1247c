//! The liveness table of one channel end: who holds it (pid + start time) and whether it is
//! closed. Each end of a channel has one, inside the ring header.
//!
//! ```text
//!   0  closed     u32  1 once the end is closed (last holder dropped it or died); sticky
//!   4  attached   u32  1 once any process has held the end
//!   8  untracked  u32  1 if a holder could not be recorded (table full)
//!  12  reserved   u32
//!  16  holders    [HolderRecord; 32]: pid u32 (0 = free slot), reserved u32, start time u64
//! ```
//!
//! A pid with bit 31 set is a *reservation* made by a parent for a child it is forking; its
//! start-time word then holds the wall-clock nanoseconds of the reservation.

use super::source::ByteSource;
use crate::error::Result;
use core::mem::{offset_of, size_of};

/// Holder slots per end.
pub const MAX_HOLDERS: usize = 32;
/// Set in a holder's pid word: "reserved for a child being forked by this pid".
pub const RESERVED: u32 = 1 << 31;

/// One holder slot as stored.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::liveness::HolderRecord>(), 16);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HolderRecord {
    /// The holder's pid (0: free slot; bit 31: a fork reservation).
    pub pid: u32,
    /// Unused.
    pub reserved: u32,
    /// The holder's start time (clock ticks since boot; 0 if unknown).
    pub start_time: u64,
}

/// The liveness table of one end, as stored.
///
/// # Examples
///
/// ```
/// use shmchan::format::liveness::SideRecord;
/// assert_eq!(size_of::<SideRecord>(), 16 + 32 * 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SideRecord {
    /// 1 once closed.
    pub closed: u32,
    /// 1 once any process held the end.
    pub attached: u32,
    /// 1 if a holder could not be recorded.
    pub untracked: u32,
    /// Unused.
    pub reserved: u32,
    /// The holder table.
    pub holders: [HolderRecord; MAX_HOLDERS],
}

const _: () = {
    assert!(offset_of!(SideRecord, attached) == 4);
    assert!(offset_of!(SideRecord, untracked) == 8);
    assert!(offset_of!(SideRecord, holders) == 16);
    assert!(size_of::<HolderRecord>() == 16);
    assert!(offset_of!(HolderRecord, start_time) == 8);
    assert!(size_of::<SideRecord>() == 16 + MAX_HOLDERS * 16);
};

/// What `/proc` says about a process or thread, judged by its id and recorded start time (a
/// later process that reuses the id has another start time).
///
/// # Examples
///
/// ```
/// use shmchan::format::liveness::{liveness, Liveness};
/// assert_eq!(liveness(std::process::id(), 0), Liveness::Alive);
/// assert_eq!(Liveness::Stopped.as_str(), "stopped");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Running or sleeping.
    Alive,
    /// Alive but stopped (`SIGSTOP`, traced): it will not make progress until continued.
    Stopped,
    /// Gone, a zombie, or a different process now holds the id (start time differs).
    Dead,
}

impl Liveness {
    /// `alive`, `stopped` or `dead`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::format::liveness::Liveness::Dead.as_str(), "dead");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stopped => "stopped",
            Liveness::Dead => "dead",
        }
    }
}

/// The liveness of process `pid` started at `start_time` (clock ticks since boot; 0 when not
/// recorded: then only the pid's existence is checked). Reads `/proc`.
///
/// # Examples
///
/// ```
/// use shmchan::format::liveness::{liveness, Liveness};
/// assert_eq!(liveness(std::process::id(), 0), Liveness::Alive);
/// assert_ne!(liveness(std::process::id(), 1), Liveness::Alive); // another start time
/// ```
pub fn liveness(pid: u32, start_time: u64) -> Liveness {
    crate::sys::proc::liveness(pid, start_time)
}

/// The start time of process or thread `id` (clock ticks since boot, `/proc/<id>/stat` field
/// 22), `None` if it does not exist.
///
/// # Examples
///
/// ```
/// assert!(shmchan::format::liveness::start_time(std::process::id()).is_some());
/// ```
pub fn start_time(id: u32) -> Option<u64> {
    crate::sys::proc::thread_start_time(id)
}

/// A holder of a channel end.
///
/// # Examples
///
/// ```
/// use shmchan::format::liveness::SideState;
///
/// let mut bytes = vec![0u8; 528];
/// bytes[16..20].copy_from_slice(&std::process::id().to_ne_bytes());
/// let side = SideState::read(&bytes, 0)?;
/// assert_eq!(side.holders[0].pid, std::process::id());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Its pid (without the reservation bit).
    pub pid: u32,
    /// Its recorded start time (0: unknown).
    pub start_time: u64,
    /// A slot a parent reserved for a child it is forking.
    pub reservation: bool,
}

impl Holder {
    /// Whether it still runs (a reservation counts as alive: its child is being forked).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::liveness::{Liveness, SideState};
    ///
    /// let mut bytes = vec![0u8; 528];
    /// bytes[16..20].copy_from_slice(&std::process::id().to_ne_bytes());
    /// let side = SideState::read(&bytes, 0)?;
    /// assert_eq!(side.holders[0].liveness(), Liveness::Alive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn liveness(&self) -> Liveness {
        if self.reservation {
            Liveness::Alive
        } else {
            liveness(self.pid, self.start_time)
        }
    }
}

/// One end's liveness table, decoded.
///
/// # Examples
///
/// ```
/// let side = shmchan::format::liveness::SideState::read(&vec![0u8; 528], 0)?;
/// assert!(!side.attached);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SideState {
    /// Closed for good.
    pub closed: bool,
    /// Some process has held it.
    pub attached: bool,
    /// Some holder could not be recorded: death detection is off for this end.
    pub untracked: bool,
    /// The recorded holders (free slots left out).
    pub holders: Vec<Holder>,
}

impl SideState {
    /// Decodes the table at `at` in `src`.
    ///
    /// # Errors
    ///
    /// The read's error (the table lies outside `src`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::liveness::SideState;
    ///
    /// let bytes = vec![0u8; 1024];
    /// let side = SideState::read(&bytes, 0)?;
    /// assert!(!side.closed && !side.attached && side.holders.is_empty());
    /// assert!(SideState::read(&bytes, 1000).is_err());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read(src: &(impl ByteSource + ?Sized), at: u64) -> Result<SideState> {
        let b = src.read_vec(at, size_of::<SideRecord>() as u64)?;
        let word = |o: usize| super::header::u32_at(&b, o).unwrap_or(0);
        let holders = (0..MAX_HOLDERS)
            .filter_map(|i| {
                let o = offset_of!(SideRecord, holders) + i * size_of::<HolderRecord>();
                let pid = super::header::u32_at(&b, o + offset_of!(HolderRecord, pid))?;
                let start = super::header::u64_at(&b, o + offset_of!(HolderRecord, start_time))?;
                (pid != 0).then_some(Holder {
                    pid: pid & !RESERVED,
                    start_time: start,
                    reservation: pid & RESERVED != 0,
                })
            })
            .collect();
        Ok(SideState {
            closed: word(offset_of!(SideRecord, closed)) != 0,
            attached: word(offset_of!(SideRecord, attached)) != 0,
            untracked: word(offset_of!(SideRecord, untracked)) != 0,
            holders,
        })
    }

    /// Whether every recorded holder is dead (and there is at least one): the peer will find
    /// the end disconnected at its next liveness check.
    ///
    /// # Examples
    ///
    /// ```
    /// let side = shmchan::format::liveness::SideState::read(&vec![0u8; 528], 0)?;
    /// assert!(!side.all_holders_dead()); // no holder at all: not "all dead"
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn all_holders_dead(&self) -> bool {
        !self.holders.is_empty() && self.holders.iter().all(|h| h.liveness() == Liveness::Dead)
    }
}
