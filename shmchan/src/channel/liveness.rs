//! Who holds each end of a channel, and whether they are still alive.
//!
//! Each end (sender side, receiver side) has a [`Side`] in the ring header: a state word
//! (closed flag and epoch), a small table of *holders*, the processes that hold a handle to that
//! end, each identified by its pid and start time (robust against pid reuse, see
//! [`crate::sys::proc::liveness`]), and the end's [`RoleWord`]: which one process uses it.
//!
//! A process enters the table when it creates or opens the end, and when it is `fork`ed from a
//! process that holds it: after `fork` both processes hold a copy of the handle, exactly as with
//! a file descriptor. The parent's `pthread_atfork` *prepare* handler reserves a slot for the
//! child in every end it holds (the slot names the parent's pid with [`RESERVED`] set, and the
//! time), and the child's handler claims the reservation with its own pid and start time.
//! Reserving in the parent, before `fork` returns, matters: the parent may drop its copy right
//! after `fork`, before the child has run at all, and that must not close the end. A
//! reservation nobody claimed within [`RESERVATION_TTL`] (the `fork` failed) is discarded by the
//! peer's liveness check. A holder leaves when it drops its handle.
//!
//! A holder is alive while its process runs (same pid, same start time) **and still maps the
//! ring**: a process that `exec`ed keeps its pid and start time but lost every mapping, and so
//! every handle; it is no longer a holder. The end is **closed** when the last holder leaves,
//! or when the peer, after a futex wait timed out, finds every remaining holder dead.
//!
//! Closing is conditional on the state word not having changed since the holders were looked
//! at (a compare-and-swap on the word read before): an opener bumps the epoch after joining, so
//! a closer that looked at the table before the opener joined cannot close the opener's end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::role::RoleWord;
use crate::sys::futex;
use crate::sys::proc::{self, Liveness};
use crate::sys::procfs::{self, MappedObject};
use crate::{Error, Result};

/// Holders recorded per side. More processes than this holding one end at once (a pool that
/// forks many workers before they drop the ends they do not use) makes the side *untracked*:
/// it then closes only by an explicit drop of a tracked holder, never by death detection.
pub(crate) const MAX_HOLDERS: usize = 32;

/// Set in a slot's pid word: "reserved for a child being forked by this pid".
pub(crate) const RESERVED: u32 = 1 << 31;

/// How long an unclaimed fork reservation counts as a live holder.
pub(crate) const RESERVATION_TTL: Duration = Duration::from_secs(1);

/// The closed bit of [`Side`]'s state word; the other bits count opens (the epoch).
const CLOSED: u32 = 1;

/// Wall-clock nanoseconds, to date fork reservations (only compared against a 1 s lifetime).
pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How this process tells whether a recorded process still holds the ring: the identity of
/// the ring's shared object, which a holder maps (`None` if it could not be found: then only
/// the pid and start time are checked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    object: Option<MappedObject>,
}

impl Probe {
    /// The probe for the ring mapped at `base` in this process.
    pub(crate) fn for_mapping(base: *const u8) -> Probe {
        Probe {
            object: procfs::object_mapped_at(base as usize),
        }
    }

    /// A probe that checks pids and start times only.
    #[cfg(test)]
    pub(crate) fn pids_only() -> Probe {
        Probe { object: None }
    }

    /// Whether process `pid`, which started at `start` (0: unknown), runs and maps the ring.
    fn process_holds(&self, pid: u32, start: u64) -> bool {
        proc::liveness(pid, start) != Liveness::Dead && self.still_mapped(pid)
    }

    /// Like [`Self::process_holds`], with only the low 32 bits of the start time (a role word).
    pub(crate) fn process_holds_low32(&self, pid: u32, start_low32: u32) -> bool {
        proc::liveness_low32(pid, start_low32) != Liveness::Dead && self.still_mapped(pid)
    }

    fn still_mapped(&self, pid: u32) -> bool {
        let Some(object) = self.object else {
            return true;
        };
        if MAPPED_RECENTLY.seen(pid, object) {
            return true;
        }
        // Unreadable maps (another user's process): assume it still holds the ring.
        let mapped = procfs::maps_object(pid, object) != Some(false);
        if mapped {
            MAPPED_RECENTLY.record(pid, object);
        }
        mapped
    }

    /// Whether the holder recorded as (`pid`, `start`) is alive (a fresh fork reservation
    /// counts as alive).
    fn holder_alive(&self, pid: u32, start: u64) -> bool {
        if pid & RESERVED != 0 {
            let ttl = u64::try_from(RESERVATION_TTL.as_nanos()).unwrap_or(u64::MAX);
            return now_ns().saturating_sub(start) < ttl;
        }
        self.process_holds(pid, start)
    }
}

/// How long a process found mapping a ring is trusted to still map it: reading a large
/// process's `/proc/<pid>/maps` on every liveness check (every [`LIVENESS_INTERVAL`] while
/// blocked) would cost more than the wait; an `exec` is noticed within this time instead.
///
/// [`LIVENESS_INTERVAL`]: super::LIVENESS_INTERVAL
const MAPS_RECHECK: Duration = Duration::from_secs(1);

/// Recent positive answers of [`procfs::maps_object`] in this process. Only ever
/// `try_lock`ed: a `fork` while another thread held the lock leaves it locked for good in the
/// child, which then simply does without the cache.
struct MappedRecently(Mutex<Vec<(u32, MappedObject, Instant)>>);

static MAPPED_RECENTLY: MappedRecently = MappedRecently(Mutex::new(Vec::new()));

impl MappedRecently {
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Vec<(u32, MappedObject, Instant)>>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn seen(&self, pid: u32, object: MappedObject) -> bool {
        self.lock().is_some_and(|cache| {
            cache
                .iter()
                .any(|&(p, o, t)| p == pid && o == object && t.elapsed() < MAPS_RECHECK)
        })
    }

    fn record(&self, pid: u32, object: MappedObject) {
        let Some(mut cache) = self.lock() else {
            return;
        };
        // One clock read, not one per entry: a sweep over many channels records many.
        let now = Instant::now();
        cache.retain(|&(p, o, t)| {
            !(p == pid && o == object) && now.saturating_duration_since(t) < MAPS_RECHECK
        });
        // Room for many channels: the async notifier checks every pending end each tick.
        if cache.len() < 1024 {
            cache.push((pid, object, now));
        }
    }
}

/// One holder slot: `pid` is the claim word (0 = free), `start` its start time (0 = not yet
/// known, then only the pid's existence is checked).
#[repr(C)]
pub(crate) struct Holder {
    pid: AtomicU32,
    _reserved: AtomicU32,
    start: AtomicU64,
}

/// The liveness words of one end of a channel, in shared memory. All-zero bytes are a valid,
/// never-attached side. Offsets within the side: `state` 0, `attached` 4, `untracked` 8,
/// `holders` 16 (32 x 16 bytes: pid u32, reserved u32, start u64), `role` 528.
#[repr(C)]
pub(crate) struct Side {
    /// Bit 0: closed (the last holder dropped the end or died). Bits 1..: the epoch, bumped by
    /// each open of a keyed end.
    state: AtomicU32,
    /// 1 once any process has held this end: a side never attached is "not yet connected"
    /// (a keyed receiver that has not opened yet), not "disconnected".
    attached: AtomicU32,
    /// 1 if a holder could not be recorded (table full): death detection is off for this side.
    untracked: AtomicU32,
    _reserved: AtomicU32,
    holders: [Holder; MAX_HOLDERS],
    /// The process that uses this end (produces or consumes) now.
    pub(crate) role: RoleWord,
}

/// What the peer's side looks like from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerState {
    /// Not yet attached (keyed channel whose other end has not opened yet).
    NotYetAttached,
    /// At least one holder is alive (possibly stopped).
    Connected,
    /// Closed: dropped, or every holder died.
    Closed,
}

impl Side {
    /// Whether the side is closed (Acquire: everything the closer did before closing, such as
    /// its last `tail` publication, is visible after this returns true).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closes the side if its state word still is `seen` (open). SeqCst: it takes part in the
    /// wake-up protocol's store→fence→load pattern, see `wait.rs`. Returns true if this call
    /// closed it.
    fn close_if(&self, seen: u32) -> bool {
        seen & CLOSED == 0
            && self
                .state
                .compare_exchange(seen, seen | CLOSED, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// After joining as an opener: starts a new epoch, open (a closer that looked at the
    /// holders before we joined then fails its compare-and-swap).
    pub(crate) fn begin_epoch(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |s| {
                Some((s & !CLOSED).wrapping_add(2))
            });
        // Peers in `wait_for_holder` sleep on the state word.
        futex::wake(&self.state, u32::MAX);
    }

    /// Waits (futex on the state word, re-checking every [`LIVENESS_INTERVAL`]) until the side
    /// has a live holder, at most `timeout`; returns how many. `what` names the end for the
    /// timeout's message.
    ///
    /// [`LIVENESS_INTERVAL`]: super::LIVENESS_INTERVAL
    pub(crate) fn wait_for_holder(
        &self,
        probe: &Probe,
        timeout: Duration,
        what: &str,
    ) -> Result<usize> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let seen = self.state.load(Ordering::Acquire);
            let n = self.live_holders(probe).len();
            if n > 0 {
                return Ok(n);
            }
            let mut wait = super::LIVENESS_INTERVAL;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout {
                        what: format!("a process to hold the {what} end of the channel"),
                        holder_pid: None,
                    });
                }
                wait = wait.min(left);
            }
            futex::wait(&self.state, seen, Some(wait));
        }
    }

    /// The pids of the recorded holders that are alive (reads `/proc`).
    pub(crate) fn live_holders(&self, probe: &Probe) -> Vec<u32> {
        self.holders
            .iter()
            .filter_map(|h| {
                let pid = h.pid.load(Ordering::Acquire);
                (pid != 0 && probe.holder_alive(pid, h.start.load(Ordering::Acquire)))
                    .then_some(pid & !RESERVED)
            })
            .collect()
    }

    /// Records process `pid` (start time `start`, 0 if unknown) as a holder. Returns false if
    /// the table is full (the side is then marked untracked).
    pub(crate) fn attach(&self, pid: u32, start: u64) -> bool {
        for h in &self.holders {
            if h.pid
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                h.start.store(start, Ordering::Release);
                self.attached.store(1, Ordering::Release);
                return true;
            }
        }
        self.untracked.store(1, Ordering::Release);
        self.attached.store(1, Ordering::Release);
        false
    }

    /// In a forked child: turns the reservation its parent made into the child's own slot
    /// (or records the child afresh if the parent could not reserve one).
    pub(super) fn claim_reservation(&self, parent: u32, child: u32, start: u64) {
        for h in &self.holders {
            if h.pid
                .compare_exchange(
                    parent | RESERVED,
                    child,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                h.start.store(start, Ordering::Release);
                return;
            }
        }
        self.attach(child, start);
    }

    /// Removes process `pid` from the holders; closes the side if no holder remains. Returns
    /// true if this call closed it.
    pub(crate) fn detach(&self, pid: u32) -> bool {
        let seen = self.state.load(Ordering::Acquire);
        if let Some(h) = self
            .holders
            .iter()
            .find(|h| h.pid.load(Ordering::Acquire) == pid)
        {
            h.start.store(0, Ordering::Relaxed);
            h.pid.store(0, Ordering::Release);
        }
        let untracked = self.untracked.load(Ordering::Acquire) != 0;
        if !untracked
            && self
                .holders
                .iter()
                .all(|h| h.pid.load(Ordering::Acquire) == 0)
        {
            return self.close_if(seen);
        }
        false
    }

    /// Looks at the peer side: forgets holders that died, and closes the side if none is left.
    /// Reads `/proc`: call it only on slow paths (after a futex wait timed out).
    pub(crate) fn check_peer(&self, probe: &Probe) -> PeerState {
        let seen = self.state.load(Ordering::Acquire);
        if seen & CLOSED != 0 {
            return PeerState::Closed;
        }
        if self.attached.load(Ordering::Acquire) == 0 {
            return PeerState::NotYetAttached;
        }
        let mut any_alive = false;
        for h in &self.holders {
            let pid = h.pid.load(Ordering::Acquire);
            if pid == 0 {
                continue;
            }
            if !probe.holder_alive(pid, h.start.load(Ordering::Acquire)) {
                // Only clear the slot if it still names the dead process.
                let _ = h
                    .pid
                    .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
            } else {
                any_alive = true;
            }
        }
        if any_alive || self.untracked.load(Ordering::Acquire) != 0 {
            PeerState::Connected
        } else {
            self.close_if(seen);
            if self.is_closed() {
                PeerState::Closed
            } else {
                // Someone opened the end meanwhile.
                PeerState::Connected
            }
        }
    }

    /// The pid word of holder slot `i` (0: free; [`RESERVED`] set: a fork reservation), for
    /// the async notifier's cheap look between its full liveness checks.
    #[cfg(feature = "async")]
    pub(crate) fn holder_slot(&self, i: usize) -> u32 {
        self.holders
            .get(i)
            .map_or(0, |h| h.pid.load(Ordering::Acquire))
    }

    /// The pids of the recorded holders (diagnostics).
    pub(crate) fn holder_pids(&self) -> Vec<u32> {
        self.holders
            .iter()
            .map(|h| h.pid.load(Ordering::Acquire))
            .filter(|&p| p != 0)
            .collect()
    }
}

pub(crate) use super::membership::{
    Membership, fork_generation, opening, own_identity, own_identity_full,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed_side() -> Box<Side> {
        // SAFETY: `Side` is made only of atomics, for which all-zero bytes are valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn last_holder_leaving_closes_the_side() {
        let side = zeroed_side();
        assert_eq!(
            side.check_peer(&Probe::pids_only()),
            PeerState::NotYetAttached
        );
        assert!(side.attach(10, 0));
        assert!(side.attach(11, 0));
        assert!(!side.detach(10));
        assert!(!side.is_closed());
        assert!(side.detach(11));
        assert!(side.is_closed());
    }

    #[test]
    fn dead_holders_are_pruned_and_close_the_side() {
        let side = zeroed_side();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        side.attach(dead, 0);
        assert_eq!(side.check_peer(&Probe::pids_only()), PeerState::Closed);
        assert!(side.is_closed());
    }

    #[test]
    fn a_live_holder_keeps_the_side_connected() {
        let side = zeroed_side();
        let me = proc::pid();
        side.attach(me, proc::process_start_time(me).unwrap());
        assert_eq!(side.check_peer(&Probe::pids_only()), PeerState::Connected);
        assert_eq!(side.holder_pids(), vec![me]);
        assert_eq!(side.live_holders(&Probe::pids_only()), vec![me]);
    }

    #[test]
    fn a_fork_reservation_keeps_the_side_open_until_claimed_or_stale() {
        let side = zeroed_side();
        side.attach(10, 0);
        side.attach(10 | RESERVED, now_ns());
        // The parent leaves before its child ran: still open.
        assert!(!side.detach(10));
        assert_eq!(side.check_peer(&Probe::pids_only()), PeerState::Connected);
        side.claim_reservation(10, proc::pid(), 0);
        assert_eq!(side.holder_pids(), vec![proc::pid()]);
        // A reservation from a failed fork expires.
        let side = zeroed_side();
        side.attach(
            10 | RESERVED,
            now_ns() - 2 * RESERVATION_TTL.as_nanos() as u64,
        );
        assert_eq!(side.check_peer(&Probe::pids_only()), PeerState::Closed);
    }

    #[test]
    fn a_full_table_makes_the_side_untracked() {
        let side = zeroed_side();
        for pid in 1..=MAX_HOLDERS as u32 {
            assert!(side.attach(pid + 1_000_000, 0));
        }
        assert!(!side.attach(42, 0));
        for pid in 1..=MAX_HOLDERS as u32 {
            side.detach(pid + 1_000_000);
        }
        assert!(!side.is_closed());
        assert_eq!(side.check_peer(&Probe::pids_only()), PeerState::Connected);
    }
}
