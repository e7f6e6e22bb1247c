//! The robust writer lock: one word in shared memory naming the owning thread (its TID and the
//! low 32 bits of its start time), futex waits with a timeout, and takeover when the owner is
//! dead.
//!
//! Why TID and not PID: writers exclude each other across threads *and* processes, and Linux TIDs
//! are unique system-wide among live threads. Why the start time: a TID can be reused after its
//! thread dies; a different start time means the id now belongs to someone else, so the
//! recorded owner is dead. Why a 64-bit owner word and a separate futex word: the TID and start
//! time must change together in one atomic step (a waiter reading them apart could pair a new
//! owner's TID with an old owner's start time and steal a live lock), and a futex word is 32 bits.

use crate::Error;
use crate::sys::futex;
use crate::sys::proc::{self, Liveness};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a waiter sleeps before looking at the owner's liveness again: bounds how long a dead
/// owner can block the next writer.
const CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// Busy iterations before the first liveness check and sleep: most holds are shorter.
const SPINS: u32 = 100;

/// The lock words, placed in shared memory (`#[repr(C)]`, only atomics, 24 bytes).
#[repr(C)]
pub(crate) struct OwnerWord {
    /// `(tid << 32) | start_time_low32`; 0 when free.
    owner: AtomicU64,
    /// `(pid << 32) | tid` of the latest owner, written just after acquiring; used to name the
    /// process of a dead owner (whose `/proc` entry is gone).
    info: AtomicU64,
    /// Futex word: bumped on release when someone waits.
    wake: AtomicU32,
    /// How many threads are (about to be) asleep on `wake`.
    waiters: AtomicU32,
}

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a free lock or from a live owner's release.
    Clean,
    /// From a dead owner (`pid` is its process); the protected data may be half-written.
    TookOver {
        /// The dead owner's process id (its thread id if the pid was never recorded).
        pid: u32,
    },
    /// The owner word held an impossible value (no thread id); it was reset and taken.
    Corrupted {
        /// The raw word that was found.
        word: u64,
    },
}

thread_local! {
    /// (fork generation it was computed in, owner word, pid)
    static ME: Cell<(u64, u64, u32)> = const { Cell::new((u64::MAX, 0, 0)) };
}

/// The calling thread's identity in fork generation `generation`: `(owner word, pid)`.
#[inline]
fn me(generation: u64) -> (u64, u32) {
    let (g, word, pid) = ME.get();
    if g == generation && word != 0 {
        return (word, pid);
    }
    me_slow(generation)
}

/// First use on this thread, or a forked child (new TID, copied thread-locals): read `/proc`.
#[cold]
#[inline(never)]
fn me_slow(generation: u64) -> (u64, u32) {
    let tid = proc::tid();
    let start = proc::thread_start_time(tid).unwrap_or(0) as u32;
    let word = (u64::from(tid) << 32) | u64::from(start);
    let pid = proc::pid();
    ME.set((generation, word, pid));
    (word, pid)
}

/// A held writer lock, released on drop. It remembers who took it (the owner word and the fork
/// generation) so that a copy carried into a forked child (a `fork` inside a write) never
/// releases the parent's lock, and so that a lock taken away meanwhile (a process overwrote the
/// owner word) is not released on the new owner's behalf.
pub(crate) struct OwnerGuard<'a> {
    lock: &'a OwnerWord,
    me: u64,
    generation: u64,
}

impl OwnerGuard<'_> {
    /// Whether the calling process took this lock (not a child forked while it was held).
    #[inline]
    pub(crate) fn in_owner_process(&self) -> bool {
        self.generation == crate::sys::proc::fork_generation()
    }

    /// Whether the lock is still held by the thread that took it, as far as the owner word
    /// tells: `false` in a forked child, or once another process overwrote the word.
    pub(crate) fn still_held(&self) -> bool {
        self.in_owner_process() && self.lock.owner.load(Ordering::Relaxed) == self.me
    }
}

impl OwnerGuard<'_> {
    /// Forgets the lock without touching its words: for a holder that wiped and unmapped them
    /// (removing the segment).
    pub(crate) fn disarm(self) {
        if self.in_owner_process() {
            held::remove(self.generation);
        }
        core::mem::forget(self);
    }
}

impl Drop for OwnerGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.in_owner_process() {
            // A forked child's copy: the lock belongs to the parent's thread.
            return;
        }
        held::remove(self.generation);
        self.lock.release(self.me);
    }
}

/// How many writer locks the calling thread holds, to tell a nested write from an owner word
/// that another process forged with this thread's identity: a thread that holds none cannot be
/// the owner. (Addresses would not tell more: one value can be mapped at two addresses in one
/// process, through two handles.)
mod held {
    use super::Cell;

    thread_local! {
        /// (fork generation, count): a count of another generation is a forked parent's.
        static HELD: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    }

    #[inline]
    fn count(generation: u64) -> u32 {
        let (g, n) = HELD.get();
        if g == generation { n } else { 0 }
    }

    #[inline]
    pub(super) fn add(generation: u64) {
        HELD.set((generation, count(generation).saturating_add(1)));
    }

    #[inline]
    pub(super) fn remove(generation: u64) {
        HELD.set((generation, count(generation).saturating_sub(1)));
    }

    /// Whether this thread holds any writer lock.
    pub(super) fn any(generation: u64) -> bool {
        count(generation) != 0
    }
}

/// Whether `/proc` answers for this process (it may be unmounted in a container or chroot).
fn proc_is_readable() -> bool {
    static READABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READABLE.get_or_init(|| proc::process_start_time(proc::pid()).is_some())
}

fn tid_of(word: u64) -> u32 {
    (word >> 32) as u32
}

impl OwnerWord {
    /// A free lock (all zero). Shared memory that is zero-filled already holds one.
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        OwnerWord {
            owner: AtomicU64::new(0),
            info: AtomicU64::new(0),
            wake: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Takes the lock, waiting at most `timeout` (forever with `None`; one attempt plus one
    /// liveness check with `Some(Duration::ZERO)`).
    ///
    /// # Errors
    ///
    /// - [`Error::Timeout`] naming the holder's pid when a live (possibly stopped) owner kept it
    ///   for the whole timeout; a stopped owner is never stolen from.
    /// - [`Error::InvalidArgument`] when the calling thread already holds it (a nested write).
    ///
    /// An owner word naming the calling thread while it holds no writer lock at all cannot come
    /// from this process: another process wrote it. It is taken over as
    /// [`Acquired::Corrupted`].
    #[inline]
    pub(crate) fn acquire(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(Acquired, OwnerGuard<'_>), Error> {
        let generation = crate::sys::proc::fork_generation();
        let (me, my_pid) = me(generation);
        // Fast path (a free lock) inline; everything else out of line.
        let how = if self
            .owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.record(me, my_pid);
            Acquired::Clean
        } else {
            self.acquire_as(me, my_pid, generation, timeout)?
        };
        held::add(generation);
        Ok((
            how,
            OwnerGuard {
                lock: self,
                me,
                generation,
            },
        ))
    }

    #[inline(never)]
    fn acquire_as(
        &self,
        me: u64,
        my_pid: u32,
        generation: u64,
        timeout: Option<Duration>,
    ) -> Result<Acquired, Error> {
        // A timeout too large to add to the clock waits as long as `None` (but still reports
        // a takeover as `None` does not).
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        let mut spins = 0;
        // Look at the owner in /proc when first blocked and after each sleep that timed out (a
        // live owner releases and wakes us; a dead one never does): not after every wake-up.
        let mut check_liveness = true;
        loop {
            let cur = self.owner.load(Ordering::Relaxed);
            if cur == 0 {
                if self
                    .owner
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record(me, my_pid);
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if cur == me {
                if held::any(generation) {
                    return Err(Error::InvalidArgument {
                        what: "nested write: this thread already holds the writer lock of this value (call write/update only outside another write's closure)".into(),
                    });
                }
                // This thread holds no writer lock, yet the word names it: forged.
                if self
                    .owner
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record(me, my_pid);
                    return Ok(Acquired::Corrupted { word: cur });
                }
                continue;
            }
            if spins < SPINS && timeout != Some(Duration::ZERO) {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            let remaining = match deadline {
                None => Some(CHECK_INTERVAL),
                Some(d) => d
                    .checked_duration_since(Instant::now())
                    .filter(|r| !r.is_zero())
                    .map(|r| r.min(CHECK_INTERVAL)),
            };
            if check_liveness || remaining.is_none() {
                check_liveness = false;
                if let Some(how) = self.take_if_dead(cur, me, my_pid) {
                    return Ok(how);
                }
            }
            let Some(remaining) = remaining else {
                return Err(self.timeout_error(cur));
            };
            // Read the wake counter before announcing ourselves and re-checking the owner: a
            // release after the re-check bumps it, so the futex wait returns at once.
            let seen = self.wake.load(Ordering::Acquire);
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.owner.load(Ordering::SeqCst) == cur
                && futex::wait(&self.wake, seen, Some(remaining)) == futex::WaitOutcome::TimedOut
            {
                check_liveness = true;
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A read-modify-write of the owner word that changes nothing: it is ordered with every
    /// acquisition and release of the lock (read-modify-writes of one location are totally
    /// ordered), which is what lets a writer skip a fence before checking for change waiters
    /// (see `notify.rs`).
    #[inline]
    pub(crate) fn sync_with_release(&self) {
        self.owner.fetch_add(0, Ordering::SeqCst);
    }

    /// Releases the lock if owner word `me` still holds it (a word another process wrote
    /// meanwhile is left alone: it names someone else now).
    #[inline]
    fn release(&self, me: u64) {
        if self
            .owner
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.wake.fetch_add(1, Ordering::Release);
            futex::wake(&self.wake, 1);
        }
    }

    #[inline]
    fn record(&self, me: u64, pid: u32) {
        self.info
            .store((u64::from(pid) << 32) | (me >> 32), Ordering::Relaxed);
    }

    /// The process of the thread in owner word `word`: from `/proc` while it lives, else from
    /// `info` if that names the same thread, else the thread id itself.
    fn pid_of(&self, word: u64) -> u32 {
        let tid = tid_of(word);
        if let Some(pid) = proc::thread_group_of(tid) {
            return pid;
        }
        let info = self.info.load(Ordering::Relaxed);
        if info as u32 == tid {
            (info >> 32) as u32
        } else {
            tid
        }
    }

    fn take_if_dead(&self, cur: u64, me: u64, my_pid: u32) -> Option<Acquired> {
        let tid = tid_of(cur);
        let how = if tid == 0 {
            Acquired::Corrupted { word: cur }
        } else if !proc_is_readable() {
            // Without /proc every owner would look dead: never take over, only time out.
            return None;
        } else {
            match proc::liveness_low32(tid, cur as u32) {
                Liveness::Dead => Acquired::TookOver {
                    pid: self.pid_of(cur),
                },
                Liveness::Alive | Liveness::Stopped => return None,
            }
        };
        // Only one waiter wins the takeover; the others see the new (live) owner.
        self.owner
            .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.record(me, my_pid);
        Some(how)
    }

    fn timeout_error(&self, cur: u64) -> Error {
        let pid = self.pid_of(cur);
        let state = match proc::liveness_low32(tid_of(cur), cur as u32) {
            Liveness::Stopped => " (stopped)",
            _ => "",
        };
        Error::Timeout {
            what: format!("the writer lock held by thread {}{state}", tid_of(cur)),
            holder_pid: Some(pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn threads_exclude_each_other() {
        let lock = Arc::new(OwnerWord::new());
        let inside = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside) = (Arc::clone(&lock), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let (how, guard) = lock.acquire(None).unwrap();
                        assert_eq!(how, Acquired::Clean);
                        assert!(!inside.swap(true, Ordering::Relaxed), "two owners at once");
                        std::thread::yield_now();
                        inside.store(false, Ordering::Relaxed);
                        drop(guard);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn nested_acquire_is_an_error_not_a_deadlock() {
        let lock = OwnerWord::new();
        let guard = lock.acquire(None).unwrap();
        assert!(matches!(
            lock.acquire(Some(Duration::from_secs(5))),
            Err(Error::InvalidArgument { .. })
        ));
        drop(guard);
        assert_eq!(lock.owner.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dead_owner_is_taken_over_and_named() {
        let lock = OwnerWord::new();
        // A thread that takes the lock and exits without releasing it.
        std::thread::scope(|s| {
            s.spawn(|| core::mem::forget(lock.acquire(None).unwrap()));
        });
        let t = Instant::now();
        match lock.acquire(Some(Duration::from_secs(5))).unwrap() {
            (Acquired::TookOver { pid }, _guard) => assert_eq!(pid, proc::pid()),
            (other, _) => panic!("expected a takeover, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn live_owner_times_out_with_its_pid() {
        let lock = OwnerWord::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let lock = &lock;
            s.spawn(move || {
                let guard = lock.acquire(None).unwrap();
                tx.send(()).unwrap();
                done_rx.recv().unwrap();
                drop(guard);
            });
            rx.recv().unwrap();
            match lock.acquire(Some(Duration::from_millis(30))) {
                Err(Error::Timeout { holder_pid, .. }) => assert_eq!(holder_pid, Some(proc::pid())),
                other => panic!("expected a timeout, got {:?}", other.map(|(how, _)| how)),
            }
            done_tx.send(()).unwrap();
        });
        assert_eq!(
            lock.acquire(Some(Duration::ZERO)).unwrap().0,
            Acquired::Clean
        );
    }

    #[test]
    fn impossible_owner_word_is_reported_as_corrupted() {
        let lock = OwnerWord::new();
        lock.owner.store(0x1234, Ordering::Relaxed); // no thread id in the high half
        assert_eq!(
            lock.acquire(Some(Duration::ZERO)).unwrap().0,
            Acquired::Corrupted { word: 0x1234 }
        );
    }

    #[test]
    fn owner_word_forged_with_this_threads_identity_is_corrupted_not_nested() {
        let lock = OwnerWord::new();
        // Another process wrote this thread's own tid and start time into the word.
        lock.owner
            .store(me(crate::sys::proc::fork_generation()).0, Ordering::Relaxed);
        let (how, guard) = lock.acquire(Some(Duration::ZERO)).unwrap();
        assert_eq!(
            how,
            Acquired::Corrupted {
                word: me(crate::sys::proc::fork_generation()).0
            }
        );
        // A real nested acquisition is still refused.
        assert!(matches!(
            lock.acquire(None),
            Err(Error::InvalidArgument { .. })
        ));
        drop(guard);
        assert_eq!(lock.owner.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn release_leaves_a_word_that_names_someone_else() {
        let lock = OwnerWord::new();
        let guard = lock.acquire(None).unwrap().1;
        assert!(guard.still_held());
        // Taken away meanwhile (a process overwrote the word).
        lock.owner.store(0x7777_0000_0001, Ordering::Relaxed);
        assert!(!guard.still_held());
        drop(guard);
        assert_eq!(lock.owner.load(Ordering::Relaxed), 0x7777_0000_0001);
    }
}
