//! The holder tables: which processes hold producer and consumer handles, what position each
//! is claiming, and whether they are still alive.
//!
//! Each *handle* (every `Sender` and `Receiver`, clones included) owns one entry of its side's
//! table while it lives. An entry's `owner` word packs the pid and the low 32 bits of the
//! process's start time, written with one compare-and-swap, so a reader never sees a pid with
//! a stale start time; a later process that reuses the pid has another start time and is told
//! apart. The `intent` word says which position the handle is claiming or holding (see
//! `queue.rs`); an entry whose holder is dead is reused only once its intent is 0, or the
//! position it names is provably finished, so a dead claimer is never forgotten before its
//! slot has been recovered.
//!
//! **Fork.** After `fork` the child has copies of the parent's handles, as with file
//! descriptors. The parent's `pthread_atfork` *prepare* handler reserves one entry per handle
//! for the child (pid with [`RESERVED`] set, dated), before `fork` returns: if the parent drops
//! its handles right after `fork`, the side still has a live holder, the child-to-be. The
//! child's handler turns each reservation into the child's own entry (its start time is filled
//! in on the first operation, once reading `/proc` is allowed again). The child never touches
//! the parent's entries, and a reservation nobody claimed (the `fork` failed) expires after
//! [`RESERVATION_TTL_MS`]. A handle whose table was full at the fork registers on first use.
//!
//! **Succession.** A side with a single writer (the broadcast publisher) uses a table
//! [`with_successors`](Table::with_successors): entry 0 is the writer, and the other entries
//! only take fork reservations. A child's copy then holds a *successor* entry: it keeps the
//! side alive (so subscribers are not told `Disconnected` while the parent hands its
//! publisher to a child), cannot write, and moves to entry 0 with one compare-and-swap on its
//! first operation after entry 0 was freed or its holder died.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::layout::Entry;
use crate::channel::liveness::Probe;
use crate::format::mpmc::{RESERVED, split_owner};
use crate::sys::proc::{self, Liveness};
use crate::{Error, Result};

/// How long an unclaimed fork reservation counts as a live holder.
pub(crate) const RESERVATION_TTL_MS: u32 = 1_000;

/// No entry.
const NONE: usize = usize::MAX;

/// Wall-clock milliseconds, low 32 bits (only compared with wrapping arithmetic against a 1 s
/// lifetime).
fn now_ms32() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32)
}

/// The owner word for process `pid` started at `start` (0: unknown).
fn owner_word(pid: u32, start: u64) -> u64 {
    u64::from(pid) | (u64::from(start as u32) << 32)
}

/// Whether the holder in an `owner` word is alive or stopped (reads `/proc`); a fresh
/// reservation counts as alive, a free entry as not. Pid and start time only: a table's
/// [`Table::holder_alive`] also checks that the process still maps the table.
pub(crate) fn owner_alive(owner: u64) -> bool {
    let (pid, low) = split_owner(owner);
    if pid == 0 {
        false
    } else if pid & RESERVED != 0 {
        now_ms32().wrapping_sub(low) < RESERVATION_TTL_MS
    } else {
        // A stopped (SIGSTOP) process is alive: it will continue, and must never be robbed.
        proc::liveness_low32(pid, low) != Liveness::Dead
    }
}

/// One side's table in shared memory and its flag words.
#[derive(Clone, Copy)]
pub(crate) struct Table {
    entries: *const Entry,
    len: usize,
    attached: *const AtomicU32,
    departed: *const AtomicU32,
    /// Whether a holder's process still maps the table (found on first need).
    probe: *const OnceLock<Probe>,
    /// Entry 0 is the one writer; the others are fork successors (see the module docs).
    successors: bool,
}

impl Table {
    /// # Safety
    ///
    /// `entries` must point to `len` entries, and `attached`/`departed` to words, in memory
    /// mapped for as long as the table (and every copy of it) is used; `probe` must stay valid
    /// as long, and be shared only by tables of the same mapping.
    pub(crate) unsafe fn new(
        entries: *const Entry,
        len: usize,
        attached: *const AtomicU32,
        departed: *const AtomicU32,
        probe: *const OnceLock<Probe>,
    ) -> Table {
        Table {
            entries,
            len,
            attached,
            departed,
            probe,
            successors: false,
        }
    }

    fn probe(&self) -> &Probe {
        // SAFETY: `new`'s contract.
        let probe = unsafe { &*self.probe };
        probe.get_or_init(|| Probe::for_mapping(self.entries.cast()))
    }

    /// Whether the holder in an `owner` word holds this table: a fresh fork reservation, or a
    /// process that runs (or is stopped) with that start time and still maps the table. A
    /// process that `exec`ed after `fork` (a child spawned by `fork` and `exec`, which never
    /// dropped the handles it inherited) keeps its pid and start time but lost the mapping,
    /// and with it every handle: it holds nothing (noticed within a second: a process found
    /// mapping the table is trusted to for that long).
    pub(crate) fn holder_alive(&self, owner: u64) -> bool {
        let (pid, low) = split_owner(owner);
        if pid == 0 || pid & RESERVED != 0 {
            return owner_alive(owner);
        }
        self.probe().process_holds_low32(pid, low)
    }

    /// The live (or stopped) holders' pids.
    pub(crate) fn live_pids(&self) -> Vec<u32> {
        self.entries()
            .iter()
            .filter_map(|e| {
                let owner = e.owner.load(Ordering::Acquire);
                self.holder_alive(owner).then_some(owner as u32 & !RESERVED)
            })
            .collect()
    }

    /// Whether any holder is alive (stops at the first).
    pub(crate) fn any_alive(&self) -> bool {
        self.entries()
            .iter()
            .any(|e| self.holder_alive(e.owner.load(Ordering::Acquire)))
    }

    /// This table with entry 0 for the side's one writer and the others for fork successors:
    /// [`register`](Table::register) only takes entry 0, a fork reservation only another.
    pub(crate) fn with_successors(self) -> Table {
        Table {
            successors: true,
            ..self
        }
    }

    /// The entries a handle registers in (`register`): entry 0 alone with successors.
    fn registrable(&self) -> &[Entry] {
        let entries = self.entries();
        if self.successors {
            &entries[..entries.len().min(1)]
        } else {
            entries
        }
    }

    /// The first entry a fork may reserve for a child (`reserve`): 1 with successors.
    fn first_reservable(&self) -> usize {
        usize::from(self.successors)
    }

    /// The entries (atomics only, so a shared slice over memory others write is sound).
    pub(crate) fn entries(&self) -> &[Entry] {
        // SAFETY: `new`'s contract: `len` entries, mapped while `self` is used.
        unsafe { std::slice::from_raw_parts(self.entries, self.len) }
    }

    fn attached(&self) -> &AtomicU32 {
        // SAFETY: `new`'s contract.
        unsafe { &*self.attached }
    }

    fn departed(&self) -> &AtomicU32 {
        // SAFETY: `new`'s contract.
        unsafe { &*self.departed }
    }

    /// Records `pid` (start time `start`) in a free entry, or in the entry of a dead holder
    /// whose claim is over (`finished(intent)` says whether a dead holder's `intent` names a
    /// position nobody needs to recover any more).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if every entry belongs to a live holder or to a dead one whose
    /// claim is still pending recovery.
    pub(crate) fn register(
        &self,
        pid: u32,
        start: u64,
        side: &'static str,
        finished: &dyn Fn(u64) -> bool,
    ) -> Result<usize> {
        let mine = owner_word(pid, start);
        let entries = self.registrable();
        for (i, e) in entries.iter().enumerate() {
            if e.owner
                .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.init(e, start);
                return Ok(i);
            }
        }
        for (i, e) in entries.iter().enumerate() {
            let owner = e.owner.load(Ordering::Acquire);
            if owner == 0 || self.holder_alive(owner) {
                continue;
            }
            let intent = e.intent.load(Ordering::Acquire);
            if intent != 0 {
                if !finished(intent) {
                    continue;
                }
                // The position it named is done: forget it (a CAS, in case a recovery clears
                // it at the same time).
                let _ = e
                    .intent
                    .compare_exchange(intent, 0, Ordering::AcqRel, Ordering::Relaxed);
                if e.intent.load(Ordering::Acquire) != 0 {
                    continue;
                }
            }
            if e.owner
                .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.init(e, start);
                return Ok(i);
            }
        }
        Err(Error::TooManyHolders {
            side,
            max: entries.len(),
        })
    }

    /// Takes a free entry, or the entry of a dead holder with no pending claim, for `owner`
    /// (a fork reservation); returns its index.
    fn reserve(&self, owner: u64) -> Option<usize> {
        let first = self.first_reservable();
        let entries = self.entries().get(first..)?;
        let free = entries.iter().position(|e| {
            e.owner
                .compare_exchange(0, owner, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        let i = free.or_else(|| {
            entries.iter().position(|e| {
                let old = e.owner.load(Ordering::Acquire);
                old != 0
                    && e.intent.load(Ordering::Acquire) == 0
                    && !self.holder_alive(old)
                    && e.owner
                        .compare_exchange(old, owner, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
            })
        })?;
        entries[i].intent.store(0, Ordering::Release);
        entries[i].inherited.store(0, Ordering::Release);
        entries[i].start_time.store(0, Ordering::Release);
        Some(first + i)
    }

    fn init(&self, e: &Entry, start: u64) {
        e.intent.store(0, Ordering::Release);
        e.inherited.store(0, Ordering::Release);
        e.start_time.store(start, Ordering::Release);
        self.attached().store(1, Ordering::Release);
    }

    /// Frees entry `index` if process `pid` holds it, and bumps the side's departures.
    fn release(&self, index: usize, pid: u32) {
        let Some(e) = self.entries().get(index) else {
            return;
        };
        let owner = e.owner.load(Ordering::Acquire);
        if owner as u32 != pid {
            return;
        }
        e.intent.store(0, Ordering::Release);
        e.inherited.store(0, Ordering::Release);
        e.start_time.store(0, Ordering::Relaxed);
        if e.owner
            .compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.departed().fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether some handle ever registered on this side.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached().load(Ordering::Acquire) != 0
    }

    /// The departures counter (changes each time a handle of this side leaves).
    pub(crate) fn departures(&self) -> u32 {
        self.departed().load(Ordering::Acquire)
    }
}

/// A handle's registration, at a stable heap address so the fork handlers can reach it.
struct Registration {
    table: Table,
    /// This process's entry, [`NONE`] if not registered.
    index: AtomicUsize,
    /// During a fork: the entry reserved for the child.
    child_index: AtomicUsize,
    /// During a fork: the reservation word written in `child_index`.
    child_owner: AtomicU64,
}

/// Every live registration of this process, for the fork handlers.
struct Registry {
    locked: AtomicBool,
    regs: UnsafeCell<Vec<usize>>,
}

// SAFETY: `regs` is only accessed while `locked` is held (acquired with Acquire, released with
// Release), which serialises all access across threads.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    regs: UnsafeCell::new(Vec::new()),
};

/// The forking parent's pid, between the prepare and child handlers.
static FORKING_PARENT: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();

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
        // SAFETY: the lock is held, so no other thread accesses `regs`; the reference does not
        // outlive this call.
        let r = f(unsafe { &mut *self.regs.get() });
        self.unlock();
        r
    }
}

/// The registrations, while the registry lock is held by the caller.
///
/// # Safety
///
/// The caller holds `REGISTRY`'s lock; every address in it is a live `Registration` (removed
/// before it is freed, which needs the lock).
unsafe fn locked_regs<'a>() -> impl Iterator<Item = &'a Registration> {
    // SAFETY: forwarded to the caller.
    let regs = unsafe { &*REGISTRY.regs.get() };
    regs.iter().map(|&r| {
        // SAFETY: see the function's contract.
        unsafe { &*(r as *const Registration) }
    })
}

extern "C" fn fork_prepare() {
    REGISTRY.lock();
    let parent = proc::pid();
    FORKING_PARENT.store(parent, Ordering::Relaxed);
    let reservation = u64::from(parent | RESERVED) | (u64::from(now_ms32()) << 32);
    // SAFETY: the registry lock is held (just taken).
    for reg in unsafe { locked_regs() } {
        // In the parent, before `fork`: reading `/proc` to reuse a dead entry is allowed here.
        let slot = reg.table.reserve(reservation);
        // The child's entry starts with the parent's `inherited` word (a subscriber's cursor:
        // the child's copy of the handle reads from the same position).
        let entries = reg.table.entries();
        if let (Some(child), Some(parent)) = (
            slot.and_then(|i| entries.get(i)),
            entries.get(reg.index.load(Ordering::Relaxed)),
        ) {
            child
                .inherited
                .store(parent.inherited.load(Ordering::Acquire), Ordering::Release);
        }
        reg.child_index
            .store(slot.unwrap_or(NONE), Ordering::Relaxed);
        reg.child_owner.store(reservation, Ordering::Relaxed);
    }
}

extern "C" fn fork_parent() {
    // SAFETY: the registry lock is held (taken in `fork_prepare`).
    for reg in unsafe { locked_regs() } {
        reg.child_index.store(NONE, Ordering::Relaxed);
    }
    REGISTRY.unlock();
}

extern "C" fn fork_child() {
    // Only one thread exists in the child and the registry lock is held (by `fork_prepare`,
    // in the thread that became this one): no allocation, no lock, only atomics and getpid.
    let child = u64::from(proc::pid());
    // SAFETY: the registry lock is held (taken in `fork_prepare` before the fork); the child
    // inherited every mapping the registrations point into.
    for reg in unsafe { locked_regs() } {
        let i = reg.child_index.swap(NONE, Ordering::Relaxed);
        let reserved = reg.child_owner.load(Ordering::Relaxed);
        let claimed = reg.table.entries().get(i).is_some_and(|e| {
            e.owner
                .compare_exchange(reserved, child, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        reg.index
            .store(if claimed { i } else { NONE }, Ordering::Relaxed);
    }
    REGISTRY.unlock();
}

/// A handle's membership in its side's table: one entry while the handle lives, re-made in a
/// forked child, released on drop.
pub(crate) struct Holder {
    reg: Box<Registration>,
    side: &'static str,
    generation: Cell<u64>,
}

// SAFETY: the registration is only atomics plus a copy of raw pointers into the mapping;
// moving the holder to another thread of the same process changes nothing about who holds it.
unsafe impl Send for Holder {}

impl Holder {
    /// Registers a new handle of `side` (`"producer"` or `"consumer"`) in `table`. If the table
    /// is full the handle is left unregistered and [`Holder::entry`] retries (and fails).
    ///
    /// # Safety
    ///
    /// `table` must stay mapped until this value is dropped (in every process that inherits
    /// it by `fork`).
    pub(crate) unsafe fn join(
        table: Table,
        side: &'static str,
        finished: &dyn Fn(u64) -> bool,
    ) -> Holder {
        INSTALL.call_once(|| {
            // Failure (ENOMEM) only loses the fork reservations: a child then registers on its
            // first operation instead.
            let _ = proc::at_fork(fork_prepare, fork_parent, fork_child);
        });
        let pid = proc::pid();
        let start = proc::process_start_time(pid).unwrap_or(0);
        let index = table.register(pid, start, side, finished).unwrap_or(NONE);
        let reg = Box::new(Registration {
            table,
            index: AtomicUsize::new(index),
            child_index: AtomicUsize::new(NONE),
            child_owner: AtomicU64::new(0),
        });
        let addr = &*reg as *const Registration as usize;
        REGISTRY.with(|v| v.push(addr));
        Holder {
            reg,
            side,
            generation: Cell::new(proc::fork_generation()),
        }
    }

    /// This handle's entry; in a forked child, first fills in the child's start time (or
    /// registers the child if no entry could be reserved at the fork). A successor (see the
    /// module docs) first takes entry 0.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if the handle has no entry and the table is still full, or
    /// is a successor and entry 0's holder lives.
    #[inline]
    pub(crate) fn entry(&self, finished: &dyn Fn(u64) -> bool) -> Result<&Entry> {
        let generation = proc::fork_generation();
        if generation != self.generation.get() {
            self.generation.set(generation);
            self.refresh_after_fork();
        }
        let mut index = self.reg.index.load(Ordering::Relaxed);
        if index == NONE || (index != 0 && self.reg.table.successors) {
            index = self.register(index, finished)?;
        }
        self.reg
            .table
            .entries()
            .get(index)
            .ok_or_else(|| super::layout::corrupted("holder entry index out of range"))
    }

    /// Registers this handle (it had no entry, or held successor entry `old`), releasing `old`
    /// once it has its new entry.
    #[cold]
    fn register(&self, old: usize, finished: &dyn Fn(u64) -> bool) -> Result<usize> {
        let pid = proc::pid();
        let start = proc::process_start_time(pid).unwrap_or(0);
        let index = self.reg.table.register(pid, start, self.side, finished)?;
        self.reg.index.store(index, Ordering::Relaxed);
        if old != NONE {
            // Entry 0 is this handle's now: the side kept a live holder throughout.
            self.reg.table.release(old, pid);
        }
        Ok(index)
    }

    #[cold]
    fn refresh_after_fork(&self) {
        let index = self.reg.index.load(Ordering::Relaxed);
        let Some(e) = self.reg.table.entries().get(index) else {
            return;
        };
        let pid = proc::pid();
        let start = proc::process_start_time(pid).unwrap_or(0);
        // The fork handler wrote the pid alone (start unknown); now the start time is known.
        if e.owner
            .compare_exchange(
                u64::from(pid),
                owner_word(pid, start),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            e.start_time.store(start, Ordering::Release);
        }
    }
}

impl Holder {
    /// Frees this process's entry (if it has one) and stops following forks; idempotent.
    /// Returns whether an entry was freed (the other side should then be woken: it may be
    /// waiting to see this side disconnect).
    pub(crate) fn leave(&self) -> bool {
        let me = &*self.reg as *const Registration as usize;
        REGISTRY.with(|v| {
            if let Some(i) = v.iter().position(|&r| r == me) {
                v.swap_remove(i);
            }
        });
        let index = self.reg.index.swap(NONE, Ordering::Relaxed);
        if index == NONE {
            return false;
        }
        self.reg.table.release(index, proc::pid());
        true
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Side {
        entries: Vec<Entry>,
        attached: AtomicU32,
        departed: AtomicU32,
        probe: OnceLock<Probe>,
    }

    fn side(n: usize) -> Box<Side> {
        Box::new(Side {
            entries: (0..n)
                .map(|_| Entry {
                    owner: AtomicU64::new(0),
                    intent: AtomicU64::new(0),
                    start_time: AtomicU64::new(0),
                    inherited: AtomicU64::new(0),
                })
                .collect(),
            attached: AtomicU32::new(0),
            departed: AtomicU32::new(0),
            // Heap memory is no mapped object: holders are checked by pid and start time.
            probe: OnceLock::new(),
        })
    }

    fn table(s: &Side) -> Table {
        // SAFETY: the boxed side outlives every use in the test.
        unsafe {
            Table::new(
                s.entries.as_ptr(),
                s.entries.len(),
                &s.attached,
                &s.departed,
                &s.probe,
            )
        }
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_full_table_is_a_typed_error_and_dead_idle_entries_are_reused() {
        let s = side(2);
        let t = table(&s);
        let me = proc::pid();
        let start = proc::process_start_time(me).unwrap();
        assert_eq!(t.register(me, start, "producer", &|_| false).unwrap(), 0);
        let dead = dead_pid();
        assert_eq!(t.register(dead, 0, "producer", &|_| false).unwrap(), 1);
        assert!(t.is_attached());
        // The dead holder was claiming position 6: not reusable until that is finished.
        s.entries[1].intent.store(7, Ordering::Relaxed);
        assert!(matches!(
            t.register(me, start, "producer", &|_| false),
            Err(Error::TooManyHolders { max: 2, .. })
        ));
        assert_eq!(t.register(me, start, "producer", &|i| i == 7).unwrap(), 1);
        assert_eq!(s.entries[1].intent.load(Ordering::Relaxed), 0);
        assert_eq!(t.live_pids(), vec![me, me]);
    }

    #[test]
    fn release_frees_only_the_callers_entry_and_counts_departures() {
        let s = side(2);
        let t = table(&s);
        let me = proc::pid();
        t.register(me, 0, "consumer", &|_| false).unwrap();
        t.release(0, me + 1);
        assert!(t.any_alive());
        t.release(0, me);
        assert!(!t.any_alive());
        assert_eq!(t.departures(), 1);
    }

    #[test]
    fn a_table_with_successors_registers_in_entry_0_and_reserves_the_others() {
        let s = side(3);
        let t = table(&s).with_successors();
        let me = proc::pid();
        let start = proc::process_start_time(me).unwrap();
        assert_eq!(t.register(me, start, "publisher", &|_| true).unwrap(), 0);
        // Entry 0 is live: a second writer is refused, with the writer count as the maximum.
        assert!(matches!(
            t.register(me, start, "publisher", &|_| true),
            Err(Error::TooManyHolders { max: 1, .. })
        ));
        let reservation = u64::from(me | RESERVED) | (u64::from(now_ms32()) << 32);
        assert_eq!(t.reserve(reservation), Some(1));
        assert_eq!(t.reserve(reservation), Some(2));
        assert_eq!(t.reserve(reservation), None);
        // Entry 0 freed: a registration takes it again, never a successor's entry.
        t.release(0, me);
        assert_eq!(t.register(me, start, "publisher", &|_| true).unwrap(), 0);
        // Entry 0's holder dead: its entry is taken over.
        s.entries[0]
            .owner
            .store(u64::from(dead_pid()), Ordering::Relaxed);
        assert_eq!(t.register(me, start, "publisher", &|_| true).unwrap(), 0);
        assert_eq!(t.live_pids(), vec![me, me, me]);
    }

    #[test]
    fn reservations_live_for_their_ttl_only() {
        let fresh = u64::from(10 | RESERVED) | (u64::from(now_ms32()) << 32);
        assert!(owner_alive(fresh));
        let stale = u64::from(10 | RESERVED)
            | (u64::from(now_ms32().wrapping_sub(2 * RESERVATION_TTL_MS)) << 32);
        assert!(!owner_alive(stale));
        assert!(!owner_alive(0));
        assert!(!owner_alive(u64::from(dead_pid())));
    }
}
