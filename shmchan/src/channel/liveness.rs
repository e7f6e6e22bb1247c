//! Who holds each end of a channel, and whether they are still alive.
//!
//! Each end (sender side, receiver side) has a [`Side`] in the ring header: a `closed` flag and a
//! small table of *holders*, the processes that hold a handle to that end, each identified by
//! its pid and start time (robust against pid reuse, see [`crate::sys::proc::liveness`]).
//!
//! A process enters the table when it creates or opens the end, and when it is `fork`ed from a
//! process that holds it: after `fork` both processes hold a copy of the handle, exactly as with
//! a file descriptor. The parent's `pthread_atfork` *prepare* handler reserves a slot for the
//! child in every end it holds (the slot names the parent's pid with [`RESERVED`] set, and the
//! time), and the child's handler claims the reservation with its own pid. Reserving in the
//! parent, before `fork` returns, matters: the parent may drop its copy right after `fork`,
//! before the child has run at all, and that must not close the end. A reservation nobody
//! claimed within [`RESERVATION_TTL`] (the `fork` failed) is discarded by the peer's liveness
//! check. It leaves when it drops its handle. The end is **closed** when the last
//! holder leaves, or when the peer, after a futex wait timed out, finds every remaining holder
//! dead. `closed` is sticky: a channel never reconnects.

use std::cell::{Cell, UnsafeCell};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys::proc::{self, Liveness};

/// Holders recorded per side. More processes than this holding one end at once (a pool that
/// forks many workers before they drop the ends they do not use) makes the side *untracked*:
/// it then closes only by an explicit drop of a tracked holder, never by death detection.
pub(crate) const MAX_HOLDERS: usize = 32;

/// Set in a slot's pid word: "reserved for a child being forked by this pid".
pub(crate) const RESERVED: u32 = 1 << 31;

/// How long an unclaimed fork reservation counts as a live holder.
pub(crate) const RESERVATION_TTL: Duration = Duration::from_secs(1);

/// Wall-clock nanoseconds, to date fork reservations (only compared against a 1 s lifetime).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Whether the holder in a slot is alive (a fresh reservation counts as alive).
fn holder_alive(pid: u32, start: u64) -> bool {
    if pid & RESERVED != 0 {
        return now_ns().saturating_sub(start) < RESERVATION_TTL.as_nanos() as u64;
    }
    proc::liveness(pid, start) != Liveness::Dead
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
/// never-attached side.
#[repr(C)]
pub(crate) struct Side {
    /// 1 once the end is closed (last holder dropped it or died). Sticky.
    closed: AtomicU32,
    /// 1 once any process has held this end: a side never attached is "not yet connected"
    /// (a keyed receiver that has not opened yet), not "disconnected".
    attached: AtomicU32,
    /// 1 if a holder could not be recorded (table full): death detection is off for this side.
    untracked: AtomicU32,
    _reserved: AtomicU32,
    holders: [Holder; MAX_HOLDERS],
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
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) != 0
    }

    /// Marks the side closed (SeqCst: it takes part in the wake-up protocol's store→fence→load
    /// pattern, see `wait.rs`).
    pub(crate) fn close(&self) {
        self.closed.store(1, Ordering::SeqCst);
    }

    /// The pids of the recorded holders that are not dead (reads `/proc`).
    pub(crate) fn live_holders(&self) -> Vec<u32> {
        self.holders
            .iter()
            .filter_map(|h| {
                let pid = h.pid.load(Ordering::Acquire);
                (pid != 0 && holder_alive(pid, h.start.load(Ordering::Acquire))).then_some(pid)
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
    fn claim_reservation(&self, parent: u32, child: u32) {
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
                h.start.store(0, Ordering::Release);
                return;
            }
        }
        self.attach(child, 0);
    }

    /// Fills in the start time of the caller's slot (registered by the fork handler, which
    /// cannot read `/proc` without allocating).
    pub(crate) fn set_start_time(&self, pid: u32, start: u64) {
        if let Some(h) = self
            .holders
            .iter()
            .find(|h| h.pid.load(Ordering::Acquire) == pid)
        {
            h.start.store(start, Ordering::Release);
        }
    }

    /// Removes process `pid` from the holders; closes the side if no holder remains. Returns
    /// true if this call closed it.
    pub(crate) fn detach(&self, pid: u32) -> bool {
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
            self.close();
            return true;
        }
        false
    }

    /// Looks at the peer side: forgets holders that died, and closes the side if none is left.
    /// Reads `/proc`: call it only on slow paths (after a futex wait timed out).
    pub(crate) fn check_peer(&self) -> PeerState {
        if self.is_closed() {
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
            if !holder_alive(pid, h.start.load(Ordering::Acquire)) {
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
            self.close();
            PeerState::Closed
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

extern "C" fn fork_prepare() {
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
}

extern "C" fn fork_child() {
    // Only one thread exists in the child and the lock is held (by `fork_prepare`, in the thread
    // that became this one): no allocation, no lock, only atomics and getpid/getppid.
    let pid = proc::pid();
    let parent = std::os::unix::process::parent_id();
    // SAFETY: the registry lock is held (taken in `fork_prepare` before the fork); every entry
    // points to a `Side` inside a mapping that a live handle keeps mapped, and the child
    // inherited those mappings.
    let sides = unsafe { &*REGISTRY.sides.get() };
    for &side in sides {
        // SAFETY: see above: `side` is the address of a live, mapped `Side`.
        unsafe { &*(side as *const Side) }.claim_reservation(parent, pid);
    }
    REGISTRY.unlock();
}

/// This process's membership in one side: registered on creation, deregistered on drop.
pub(crate) struct Membership {
    side: *const Side,
    generation: Cell<u64>,
}

// SAFETY: `side` points to shared memory accessed only through atomics; moving the membership
// to another thread of the same process changes nothing about who holds the side.
unsafe impl Send for Membership {}

impl Membership {
    /// Records the calling process as a holder of `side` and registers the side for forks.
    ///
    /// # Safety
    ///
    /// `side` must point to a `Side` in memory that stays mapped until this value is dropped
    /// (in every process that inherits it by `fork`).
    pub(crate) unsafe fn join(side: *const Side) -> Membership {
        INSTALL_FORK_HANDLERS.call_once(|| {
            // Failure (ENOMEM) only loses child registration: the child then is not counted as
            // a holder, which matters only if the parent drops its handle before the child's.
            let _ = proc::at_fork(fork_prepare, fork_parent, fork_child);
        });
        let pid = proc::pid();
        let start = proc::process_start_time(pid).unwrap_or(0);
        // SAFETY: the caller guarantees `side` is valid.
        unsafe { &*side }.attach(pid, start);
        REGISTRY.with(|v| v.push(side as usize));
        Membership {
            side,
            generation: Cell::new(proc::fork_generation()),
        }
    }

    /// The side this membership is in.
    pub(crate) fn side(&self) -> &Side {
        // SAFETY: `join`'s contract keeps the side mapped while `self` lives.
        unsafe { &*self.side }
    }

    /// Called on each operation: in a forked child, fills in this process's start time once.
    #[inline]
    pub(crate) fn refresh_after_fork(&self) {
        let generation = proc::fork_generation();
        if generation != self.generation.get() {
            self.generation.set(generation);
            let pid = proc::pid();
            let start = proc::process_start_time(pid).unwrap_or(0);
            self.side().set_start_time(pid, start);
        }
    }

    /// Leaves the side; returns true if this closed it (the peer must be woken).
    pub(crate) fn leave(self) -> bool {
        let me = self.side as usize;
        REGISTRY.with(|v| {
            if let Some(i) = v.iter().position(|&s| s == me) {
                v.swap_remove(i);
            }
        });
        let closed = self.side().detach(proc::pid());
        std::mem::forget(self);
        closed
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Normally consumed by `leave`; this only runs if a handle is torn down early (e.g. a
        // failed open). Deregister so that the registry never points to unmapped memory.
        let me = self.side as usize;
        REGISTRY.with(|v| {
            if let Some(i) = v.iter().position(|&s| s == me) {
                v.swap_remove(i);
            }
        });
        self.side().detach(proc::pid());
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
        assert_eq!(side.check_peer(), PeerState::NotYetAttached);
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
        assert_eq!(side.check_peer(), PeerState::Closed);
        assert!(side.is_closed());
    }

    #[test]
    fn a_live_holder_keeps_the_side_connected() {
        let side = zeroed_side();
        let me = proc::pid();
        side.attach(me, proc::process_start_time(me).unwrap());
        assert_eq!(side.check_peer(), PeerState::Connected);
        assert_eq!(side.holder_pids(), vec![me]);
        assert_eq!(side.live_holders(), vec![me]);
    }

    #[test]
    fn a_fork_reservation_keeps_the_side_open_until_claimed_or_stale() {
        let side = zeroed_side();
        side.attach(10, 0);
        side.attach(10 | RESERVED, now_ns());
        // The parent leaves before its child ran: still open.
        assert!(!side.detach(10));
        assert_eq!(side.check_peer(), PeerState::Connected);
        side.claim_reservation(10, proc::pid());
        assert_eq!(side.holder_pids(), vec![proc::pid()]);
        // A reservation from a failed fork expires.
        let side = zeroed_side();
        side.attach(
            10 | RESERVED,
            now_ns() - 2 * RESERVATION_TTL.as_nanos() as u64,
        );
        assert_eq!(side.check_peer(), PeerState::Closed);
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
        assert_eq!(side.check_peer(), PeerState::Connected);
    }
}
