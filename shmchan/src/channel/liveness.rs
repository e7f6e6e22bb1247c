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

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
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
fn now_ns() -> u64 {
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
        cache.retain(|&(p, o, t)| !(p == pid && o == object) && t.elapsed() < MAPS_RECHECK);
        if cache.len() < 64 {
            cache.push((pid, object, Instant::now()));
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
    fn claim_reservation(&self, parent: u32, child: u32, start: u64) {
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

    /// The pids of the recorded holders (diagnostics).
    pub(crate) fn holder_pids(&self) -> Vec<u32> {
        self.holders
            .iter()
            .map(|h| h.pid.load(Ordering::Acquire))
            .filter(|&p| p != 0)
            .collect()
    }
}

// ---- fork registry ----------------------------------------------------------------------

/// The sides held by handles in this process, so that a forked child registers itself as a
/// holder of each. Guarded by a spin lock rather than a `Mutex` because the fork handlers take
/// it in `prepare` and release it in `parent`/`child`, across the `fork`.
struct Registry {
    locked: AtomicBool,
    sides: UnsafeCell<Vec<usize>>,
}

// SAFETY: `sides` is only accessed while `locked` is held (acquired with Acquire, released with
// Release), which serialises all access across threads.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    sides: UnsafeCell::new(Vec::new()),
};

static INSTALL_FORK_HANDLERS: Once = Once::new();

fn install_fork_handlers() {
    INSTALL_FORK_HANDLERS.call_once(|| {
        // Failure (ENOMEM) only loses child registration: the child then is not counted as a
        // holder, which matters only if the parent drops its handle before the child's.
        let _ = proc::at_fork(fork_prepare, fork_parent, fork_child);
    });
}

impl Registry {
    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<usize>) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held, so no other thread accesses `sides`; the reference does not
        // outlive this call.
        let r = f(unsafe { &mut *self.sides.get() });
        self.unlock();
        r
    }
}

/// Serialises the keyed opens of this process (see [`opening`]); taken by the fork handlers
/// too, before [`REGISTRY`], so that a child is never forked holding it.
static OPENING: AtomicBool = AtomicBool::new(false);

/// Holds [`OPENING`] until dropped.
pub(crate) struct Opening(());

/// Serialises this process's keyed opens: its threads share one identity (pid and start
/// time), so the role word alone cannot tell two of them apart; under this lock the second
/// finds the first in the holder table.
pub(crate) fn opening() -> Opening {
    install_fork_handlers();
    lock_opening();
    Opening(())
}

fn lock_opening() {
    while OPENING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // Held across an open's `/proc` reads: yield rather than spin.
        std::thread::yield_now();
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        OPENING.store(false, Ordering::Release);
    }
}

extern "C" fn fork_prepare() {
    lock_opening();
    REGISTRY.lock();
    // Reserve a holder slot for the child in every end this process holds, before `fork`
    // returns in the parent (see the module docs).
    let reservation = proc::pid() | RESERVED;
    let now = now_ns();
    // SAFETY: the registry lock is held; entries point to live, mapped `Side`s (removed before
    // their handle unmaps, which needs the lock).
    let sides = unsafe { &*REGISTRY.sides.get() };
    for &side in sides {
        // SAFETY: see above.
        unsafe { &*(side as *const Side) }.attach(reservation, now);
    }
}

extern "C" fn fork_parent() {
    REGISTRY.unlock();
    OPENING.store(false, Ordering::Release);
}

extern "C" fn fork_child() {
    // Only one thread exists in the child and the lock is held (by `fork_prepare`, in the thread
    // that became this one): no allocation, no lock, only atomics, getpid/getppid and the raw
    // read of our start time.
    let pid = proc::pid();
    let parent = std::os::unix::process::parent_id();
    let start = procfs::own_start_time_no_alloc().unwrap_or(0);
    if start != 0 {
        OWN_START.store(pid, start);
    }
    // SAFETY: the registry lock is held (taken in `fork_prepare` before the fork); every entry
    // points to a `Side` inside a mapping that a live handle keeps mapped, and the child
    // inherited those mappings.
    let sides = unsafe { &*REGISTRY.sides.get() };
    for &side in sides {
        // SAFETY: see above: `side` is the address of a live, mapped `Side`.
        unsafe { &*(side as *const Side) }.claim_reservation(parent, pid, start);
    }
    REGISTRY.unlock();
    OPENING.store(false, Ordering::Release);
}

/// The current fork generation of this process (changes in each forked child).
#[inline]
pub(crate) fn fork_generation() -> u64 {
    proc::fork_generation()
}

/// This process's membership in one side: registered on creation, deregistered on drop.
pub(crate) struct Membership {
    side: *const Side,
}

// SAFETY: `side` points to shared memory accessed only through atomics; moving the membership
// to another thread of the same process changes nothing about who holds the side.
unsafe impl Send for Membership {}

impl Membership {
    /// Records the calling process as a holder of `side` (unless `recorded`: the creator wrote
    /// itself into the table before publishing the segment) and registers the side for forks.
    ///
    /// # Safety
    ///
    /// `side` must point to a `Side` in memory that stays mapped until this value is dropped
    /// (in every process that inherits it by `fork`).
    pub(crate) unsafe fn join(side: *const Side, recorded: bool) -> Membership {
        install_fork_handlers();
        if !recorded {
            let pid = proc::pid();
            let start = proc::process_start_time(pid).unwrap_or(0);
            // SAFETY: the caller guarantees `side` is valid.
            unsafe { &*side }.attach(pid, start);
        }
        REGISTRY.with(|v| v.push(side as usize));
        Membership { side }
    }

    /// The side this membership is in.
    pub(crate) fn side(&self) -> &Side {
        // SAFETY: `join`'s contract keeps the side mapped while `self` lives.
        unsafe { &*self.side }
    }

    /// Leaves the side; returns true if this closed it (the peer must be woken).
    pub(crate) fn leave(self) -> bool {
        let closed = self.deregister();
        std::mem::forget(self);
        closed
    }

    fn deregister(&self) -> bool {
        let me = self.side as usize;
        REGISTRY.with(|v| {
            if let Some(i) = v.iter().position(|&s| s == me) {
                v.swap_remove(i);
            }
        });
        self.side().detach(proc::pid())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Normally consumed by `leave`; this only runs if a handle is torn down early (e.g. a
        // failed open). Deregister so that the registry never points to unmapped memory.
        self.deregister();
    }
}

/// The identity under which the calling process claims an end's role: its pid and the low 32
/// bits of its start time.
pub(crate) fn own_identity() -> (u32, u32) {
    let (pid, _, low32) = own_identity_full();
    (pid, low32)
}

/// The calling process's pid, start time, and the start time's low 32 bits.
pub(crate) fn own_identity_full() -> (u32, u64, u32) {
    let pid = proc::pid();
    let start = match OWN_START.load(Ordering::Acquire) {
        (p, start) if p == pid => start,
        _ => {
            let start = proc::process_start_time(pid).unwrap_or(0);
            OWN_START.store(pid, start);
            start
        }
    };
    (pid, start, start as u32)
}

/// This process's start time, cached for [`own_identity_full`] (and refilled in a forked
/// child by the fork handler, without allocating).
static OWN_START: OwnStart = OwnStart {
    pid: AtomicU32::new(0),
    start: AtomicU64::new(0),
};

struct OwnStart {
    pid: AtomicU32,
    start: AtomicU64,
}

impl OwnStart {
    /// `(pid, start)`; `start` belongs to `pid` (stored before it, read after it).
    fn load(&self, order: Ordering) -> (u32, u64) {
        let pid = self.pid.load(order);
        (pid, self.start.load(Ordering::Relaxed))
    }

    fn store(&self, pid: u32, start: u64) {
        // Invalidate first so that no reader pairs the old pid with the new time.
        self.pid.store(0, Ordering::Relaxed);
        self.start.store(start, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
    }
}

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
