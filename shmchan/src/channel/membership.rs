//! This process's membership in channel ends: the registry of sides its handles hold (so a
//! forked child registers itself as a holder of each, from `pthread_atfork` handlers), the
//! per-process lock that serialises keyed opens, and this process's identity (pid and start
//! time, read once per fork generation). The shared table itself is [`super::liveness`].

use std::cell::UnsafeCell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::liveness::*;
use crate::sys::proc;
use crate::sys::procfs;

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
