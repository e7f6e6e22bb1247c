//! The async notifier: one thread per process sleeps, with one `futex_waitv` call, on the futex
//! words of every endpoint that has a pending future, and wakes their `Waker`s; a second one,
//! the ticker, does the periodic liveness checks.
//!
//! **Adding an async operation to an endpoint** takes its wait word (`wait_word()`), its `try_`
//! operation and an `Arc` of its mapping: `recv_async` is a `poll_fn` that calls
//! [`ChannelWait::poll`] with the three (see `channel/async_ops.rs`); `exclusive` says whether
//! the endpoint is the only waiter on its word.
//!
//! **Announced waiters only.** A pending future announces itself in shared memory exactly as a
//! blocked thread does (a channel's wait word set to 1, a value's `watchers` count), re-checks,
//! and only then registers its word here. Senders and writers keep their fast path: a fence and
//! a load, a system call only when someone announced. The notifier is the sleeper of that
//! protocol: it waits while each word still holds what the future saw, and wakes the future
//! when the word changed (the waker's `FUTEX_WAKE` also ends its `futex_waitv`).
//!
//! **Registrations.** A future keeps one registration ([`Waiter`](futures::Waiter)) while it is pending, and
//! drops it when it completes or is dropped. Two kinds:
//!
//! - *kept*: the registration holds a reference to the endpoint's mapping ([`Keep`]), so the
//!   notifier may read the word, and the ticker run a liveness check ([`Periodic`]), even if
//!   the future was leaked (`mem::forget`) and the endpoint dropped. Used by channels.
//! - *one-shot*: no reference to the mapping (a [`Shared`](crate::Shared) value has none to
//!   give), so the notifier never touches the word itself: it only hands its address to the
//!   kernel, which merely reads it (an unmapped address fails the call with `EFAULT`, never a
//!   fault here). Such a registration is disarmed as soon as the kernel reports any change it
//!   cannot attribute, and its future re-checks and re-registers.
//!
//! **Ticks.** A second thread, the ticker, does what needs a clock, so that the notifier's wait
//! has no timeout (re-arming a `futex_waitv` over 100 shared words costs about 0.35 ms of
//! kernel time: doing it every tick would cost more than 100 idle futures may). Every
//! [`LIVENESS_INTERVAL`] while registrations are armed, it wakes the futures whose liveness
//! check fires ([`Periodic`]): a full [`Look`] at the peer's holders (`/proc` read once per
//! process per pass, [`proc::memoized`]) every [`FULL_CHECK_TICKS`] ticks, and between them one
//! pidfd `poll` per holder process, however many registrations name it; a full look as soon as
//! one is gone. A killed peer thus surfaces within about one interval. One-shot registrations
//! are re-polled every few ticks, which bounds what a process scribbling on the notification
//! words can delay. With no registration both threads sleep without a timeout: zero CPU.
//!
//! **Control word.** The notifier's private word is part of every `futex_waitv`: a future that
//! adds a word while the notifier sleeps bumps it and wakes it, so the next wait includes the
//! new word. Only a change of the set does so; a re-poll that keeps its word registered only
//! refreshes its `Waker` under the lock.
//!
//! **Fallback.** Without `futex_waitv` (Linux before 5.16, or refused by a seccomp filter) the
//! notifier sleeps on its control word alone, [`FALLBACK_POLL`] at a time, and looks at every
//! kept word after each sleep; one-shot registrations are re-polled then too. The same bound
//! applies to the words beyond the kernel's 128 per call.
//!
//! **Fork.** The notifier belongs to the process that started it: a child forked afterwards has
//! neither of its threads, and must not touch the parent's state (its lock may have been held by a
//! parent thread at the fork, for good in the child). Each instance records the fork generation
//! it was made in; the first registration in a child makes a new instance (the parent's copy
//! is left alone and leaked), and a future carried across `fork` forgets the parent's
//! registration instead of removing it.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::channel::LIVENESS_INTERVAL;
use crate::sys::futex::{self, WAITV_MAX, WaitAnyOutcome};
use crate::sys::proc;
use crate::{Errno, Error, Result};

mod futures;
#[cfg(test)]
mod tests;

pub(crate) use futures::{ChangeWait, ChannelWait, notifier_started, registrations};

/// Keeps an endpoint's mapping alive while a registration may read its words: a clone of the
/// `Arc` the endpoint holds its memory in.
pub(crate) type Keep = Arc<dyn Send + Sync>;

/// What the notifier does for a kept registration at each liveness tick.
pub(crate) enum Periodic {
    /// A liveness check: a full look (it may read only the kept mapping's shared words and
    /// `/proc`) that says whether to wake the future and which processes hold the peer's end.
    /// Between full looks the ticker only checks that those processes still exist, once per
    /// process per tick, however many registrations name them.
    Check(Box<dyn FnMut() -> Look + Send>),
    /// Wakes the future at every tick (states only its own polling can resolve, such as a slot
    /// stuck behind a dead process).
    Always,
}

/// What a full liveness look found.
pub(crate) struct Look {
    /// Wake the future (the peer is gone, or it should look for itself).
    pub(crate) fire: bool,
    /// The pids of the peer's live holders.
    pub(crate) pids: Vec<u32>,
    /// Nothing in flight: the next full look can wait [`FULL_CHECK_TICKS`] ticks unless one
    /// of `pids` dies (false: look again at the next tick, e.g. a fork reservation not yet
    /// claimed, or no holder yet).
    pub(crate) settled: bool,
}

/// A registration's full liveness look runs every this many ticks (a holder that `exec`ed, or
/// that left while others remain, is noticed then), and at any tick where one of the processes
/// it found no longer exists (what a kill is).
pub(crate) const FULL_CHECK_TICKS: u64 = 150;

/// Whether process `pid` exists (alive, stopped, not a zombie): a `poll` of its pidfd in
/// `handles` when one could be opened, else one `/proc` read; remembered for the rest of the
/// tick in `seen`.
fn exists(
    seen: &mut Vec<(u32, bool)>,
    handles: &[(u32, Option<proc::ProcessHandle>)],
    pid: u32,
) -> bool {
    if let Some(&(_, e)) = seen.iter().find(|(p, _)| *p == pid) {
        return e;
    }
    let e = match handles.iter().find(|(p, _)| *p == pid) {
        Some((_, Some(h))) => !h.exited(),
        _ => proc::liveness(pid, 0) != proc::Liveness::Dead,
    };
    seen.push((pid, e));
    e
}

/// A pointer into a kept mapping, movable into a [`Periodic::Check`] closure.
pub(crate) struct Shm<T>(*const T);

// SAFETY: a `Shm` only ever gives shared access to a `T: Sync` (atomics in shared memory),
// which any thread may have.
unsafe impl<T: Sync> Send for Shm<T> {}

impl<T> Shm<T> {
    /// Remembers `r`'s address.
    pub(crate) fn new(r: &T) -> Shm<T> {
        Shm(r)
    }

    /// The pointee.
    ///
    /// # Safety
    ///
    /// The mapping `r` pointed into is still mapped: the closure holding this `Shm` belongs to
    /// a registration whose [`Keep`] keeps it so.
    pub(crate) unsafe fn get(&self) -> &T {
        // SAFETY: mapped (caller); the address came from a reference, so it is aligned.
        unsafe { &*self.0 }
    }
}

/// How long the notifier sleeps at most without `futex_waitv`, or with more words than one call
/// takes, before it looks at every word again.
pub(crate) const FALLBACK_POLL: Duration = Duration::from_millis(2);

/// One-shot registrations are re-polled every this many liveness ticks.
const ONE_SHOT_TICKS: u64 = 3;

/// A registration's place in the notifier's table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key {
    index: u32,
    generation: u32,
}

struct Entry {
    /// The futex word's address.
    word: usize,
    /// What the word held when the future checked; it is woken once it holds anything else.
    expected: u32,
    waker: Waker,
    /// In the set the notifier waits on (false once the word fired, until the future re-arms).
    armed: bool,
    /// Included in the current `futex_waitv` call.
    in_set: bool,
    /// `Some` for a kept registration: the notifier may read `word` and run `periodic`.
    keep: Option<Keep>,
    periodic: Option<Periodic>,
    /// The peer holders' pids the last full look found, and the tick of the next one.
    watch: Vec<u32>,
    next_look: u64,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Registrations (armed or not).
    live: usize,
    /// The notifier thread runs.
    started: bool,
    /// The ticker thread runs.
    ticker_started: bool,
    /// The ticker sleeps without a timeout (nothing was armed): a new registration wakes it.
    ticker_idle: bool,
    /// A registration was added, re-armed or removed since the ticker last went through them.
    dirty: bool,
    /// The notifier is (about to be) asleep on the set it last built: a change of the set must
    /// wake it.
    sleeping: bool,
    /// `futex_waitv` is missing: the notifier polls every [`FALLBACK_POLL`].
    fallback: bool,
}

impl State {
    fn insert(&mut self, entry: Entry) -> Key {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.entry = Some(entry);
            return Key {
                index,
                generation: slot.generation,
            };
        }
        self.slots.push(Slot {
            generation: 0,
            entry: Some(entry),
        });
        Key {
            index: (self.slots.len() - 1) as u32,
            generation: 0,
        }
    }

    fn get_mut(&mut self, key: Key) -> Option<&mut Entry> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
            .and_then(|s| s.entry.as_mut())
    }

    fn remove(&mut self, key: Key) -> Option<Entry> {
        let slot = self
            .slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)?;
        let entry = slot.entry.take()?;
        self.free.push(key.index);
        self.live -= 1;
        Some(entry)
    }

    fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.slots.iter_mut().filter_map(|s| s.entry.as_mut())
    }
}

/// Why the notifier's last sleep ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Woke {
    /// Word `i` of the last set (0: the control word) was woken.
    Index(usize),
    /// Something changed, the kernel did not say what.
    Unknown,
    /// The timeout expired.
    Timeout,
}

/// The notifier of one process (one fork generation).
pub(crate) struct Notifier {
    /// The fork generation this instance belongs to.
    generation: u64,
    /// The private word of every wait: bumped to make the notifier rebuild its set.
    control: AtomicU32,
    /// The ticker's private word: bumped to wake it from an untimed sleep.
    ticker: AtomicU32,
    state: Mutex<State>,
}

/// The current process's notifier, or null before first use (or a parent's, after a fork).
static CURRENT: AtomicPtr<Notifier> = AtomicPtr::new(core::ptr::null_mut());

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| Error::Os {
            call: "pthread_create (a thread of the shmchan async notifier)",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        })
}

impl Notifier {
    fn new(generation: u64, fallback: bool) -> Notifier {
        Notifier {
            generation,
            control: AtomicU32::new(0),
            ticker: AtomicU32::new(0),
            state: Mutex::new(State {
                fallback,
                ..State::default()
            }),
        }
    }

    /// This process's notifier (made on first use here; its threads start with the first
    /// registration).
    fn current() -> &'static Notifier {
        let generation = proc::fork_generation();
        loop {
            let p = CURRENT.load(Ordering::Acquire);
            // SAFETY: a non-null `CURRENT` comes from `Box::into_raw` below and is never freed
            // (a replaced instance is leaked: a forked child must not touch it).
            if let Some(n) = unsafe { p.as_ref() } {
                if n.generation == generation {
                    return n;
                }
            }
            let fresh = Box::into_raw(Box::new(Notifier::new(generation, false)));
            match CURRENT.compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire) {
                // SAFETY: just leaked; never freed.
                Ok(_) => return unsafe { &*fresh },
                // SAFETY: `fresh` was never shared: ours to free.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }

    /// A notifier outside the process-wide slot, for tests (`fallback`: as without
    /// `futex_waitv`).
    #[cfg(test)]
    fn leaked(fallback: bool) -> &'static Notifier {
        Box::leak(Box::new(Notifier::new(proc::fork_generation(), fallback)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent table (no entry is half-made).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called with the lock held after the set changed: makes a sleeping notifier rebuild it,
    /// and an idle ticker start ticking.
    fn set_changed(&self, state: &mut State) {
        state.dirty = true;
        if state.sleeping && !state.fallback {
            state.sleeping = false;
            self.control.fetch_add(1, Ordering::Release);
            futex::wake(&self.control, 1);
        }
        if state.ticker_idle {
            state.ticker_idle = false;
            self.ticker.fetch_add(1, Ordering::Release);
            futex::wake(&self.ticker, 1);
        }
    }

    fn insert(&'static self, entry: Entry) -> Result<Key> {
        let mut state = self.lock();
        if !state.started {
            spawn("shmchan-notify", move || self.run())?;
            state.started = true;
        }
        if !state.ticker_started {
            spawn("shmchan-tick", move || self.tick())?;
            state.ticker_started = true;
        }
        let key = state.insert(entry);
        self.set_changed(&mut state);
        Ok(key)
    }

    /// Re-arms `key` for `word == expected` with `waker`; false if the key is gone.
    fn rearm(&self, key: Key, waker: &Waker, word: usize, expected: u32) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.get_mut(key) else {
            return false;
        };
        if !entry.waker.will_wake(waker) {
            entry.waker = waker.clone();
        }
        if entry.armed && entry.word == word && entry.expected == expected {
            return true;
        }
        entry.word = word;
        entry.expected = expected;
        entry.armed = true;
        self.set_changed(&mut state);
        true
    }

    fn remove(&self, key: Key) {
        let entry = {
            let mut state = self.lock();
            state.dirty = true;
            state.remove(key)
        };
        // Dropped outside the lock: the last reference to a mapping unmaps it.
        drop(entry);
    }

    /// The notifier thread: sleeps on every armed word (and its control word) at once, with no
    /// timeout, and wakes the futures whose word changed. Liveness is the ticker's job, so that
    /// an idle notifier stays in one `futex_waitv` call: re-arming a call over 100 words every
    /// tick would cost more than the 100 waiting futures are allowed to.
    fn run(&'static self) {
        let mut set: Vec<(usize, u32)> = Vec::new();
        let mut woke = Woke::Timeout;
        let mut fired: Vec<Waker> = Vec::new();
        loop {
            let (control, timeout, fallback) = {
                let mut state = self.lock();
                state.sleeping = false;
                let fallback = state.fallback;
                let overflow = set.len() >= WAITV_MAX - 1;
                let woken_word = match woke {
                    Woke::Index(i) if i > 0 => set.get(i - 1).map(|w| w.0),
                    _ => None,
                };
                let unknown = woke == Woke::Unknown || fallback;
                for entry in state.entries_mut().filter(|e| e.armed) {
                    let fire = match entry.keep {
                        Some(_) => {
                            // SAFETY: a kept registration holds the mapping of its word
                            // (aligned: it came from a `&AtomicU32`).
                            let word = unsafe { &*(entry.word as *const AtomicU32) };
                            word.load(Ordering::Acquire) != entry.expected
                        }
                        None => {
                            woken_word == Some(entry.word) || unknown || (overflow && !entry.in_set)
                        }
                    };
                    if fire {
                        entry.armed = false;
                        fired.push(entry.waker.clone());
                    }
                }
                set.clear();
                let mut any = false;
                for entry in state.entries_mut() {
                    entry.in_set = false;
                    if !entry.armed {
                        continue;
                    }
                    any = true;
                    let w = (entry.word, entry.expected);
                    if set.contains(&w) {
                        entry.in_set = true;
                    } else if set.len() < WAITV_MAX - 1 {
                        set.push(w);
                        entry.in_set = true;
                    }
                }
                let timeout =
                    (fallback || (any && set.len() >= WAITV_MAX - 1)).then_some(FALLBACK_POLL);
                let control = self.control.load(Ordering::Acquire);
                state.sleeping = true;
                (control, timeout, fallback)
            };
            for waker in fired.drain(..) {
                waker.wake();
            }
            if fallback {
                futex::wait(&self.control, control, timeout);
                woke = Woke::Unknown;
                continue;
            }
            let mut words: Vec<(*const AtomicU32, u32)> = Vec::with_capacity(set.len() + 1);
            words.push((&self.control, control));
            words.extend(set.iter().map(|&(w, e)| (w as *const AtomicU32, e)));
            woke = match futex::wait_any_raw(&words, timeout) {
                WaitAnyOutcome::Woken(Some(i)) => Woke::Index(i),
                // A change of the control word explains the early return (the other words are
                // compared again by the next call).
                WaitAnyOutcome::Woken(None) if self.control.load(Ordering::Acquire) != control => {
                    Woke::Index(0)
                }
                WaitAnyOutcome::Woken(None) => Woke::Unknown,
                WaitAnyOutcome::TimedOut => Woke::Timeout,
                WaitAnyOutcome::Unsupported => {
                    self.lock().fallback = true;
                    Woke::Unknown
                }
            };
        }
    }

    /// The ticker thread: every [`LIVENESS_INTERVAL`] while registrations are armed, wakes
    /// the futures whose liveness check fires, and every few ticks re-polls the one-shot ones.
    /// A tick where every watched process still exists and no full look is due touches no
    /// registration: one `/proc` read per watched process. Sleeps without a timeout while
    /// nothing is armed.
    fn tick(&'static self) {
        let mut number: u64 = 0;
        let mut seen: Vec<(u32, bool)> = Vec::new();
        // What the last pass over the registrations left: the pids to watch, the next full
        // look due, whether some registration wants every tick (or every few).
        let mut watched: Vec<u32> = Vec::new();
        let mut next_look = 0;
        let (mut every_tick, mut one_shots, mut any) = (false, false, false);
        let mut handles: Vec<(u32, Option<proc::ProcessHandle>)> = Vec::new();
        let mut fired: Vec<Waker> = Vec::new();
        loop {
            let word = {
                let mut state = self.lock();
                number += 1;
                seen.clear();
                let one_shot_tick = number % ONE_SHOT_TICKS == 0;
                let pass = state.dirty
                    || every_tick
                    || (one_shots && one_shot_tick)
                    || number >= next_look
                    || watched.iter().any(|&pid| !exists(&mut seen, &handles, pid));
                if pass {
                    state.dirty = false;
                    watched.clear();
                    next_look = u64::MAX;
                    (every_tick, one_shots, any) = (false, false, false);
                    proc::memoized(|| {
                        for entry in state.entries_mut().filter(|e| e.armed) {
                            any = true;
                            let fire = match (&mut entry.periodic, &entry.keep) {
                                (Some(Periodic::Always), _) => {
                                    every_tick = true;
                                    true
                                }
                                (Some(Periodic::Check(look)), _) => {
                                    let due = number >= entry.next_look
                                        || entry
                                            .watch
                                            .iter()
                                            .any(|&p| !exists(&mut seen, &handles, p));
                                    let mut fire = false;
                                    if due {
                                        let l = look();
                                        fire = l.fire;
                                        entry.watch = l.pids;
                                        entry.next_look =
                                            number + if l.settled { FULL_CHECK_TICKS } else { 1 };
                                    }
                                    watched.extend_from_slice(&entry.watch);
                                    next_look = next_look.min(entry.next_look);
                                    fire
                                }
                                (None, None) => {
                                    one_shots = true;
                                    one_shot_tick
                                }
                                (None, Some(_)) => false,
                            };
                            if fire {
                                fired.push(entry.waker.clone());
                            }
                        }
                    });
                    watched.sort_unstable();
                    watched.dedup();
                    // Keep a pidfd per watched process (opened after a full look found it).
                    handles.retain(|(p, _)| watched.binary_search(p).is_ok());
                    for &pid in &watched {
                        if !handles.iter().any(|(p, _)| *p == pid) {
                            handles.push((pid, proc::ProcessHandle::open(pid)));
                        }
                    }
                }
                state.ticker_idle = !any;
                self.ticker.load(Ordering::Acquire)
            };
            for waker in fired.drain(..) {
                waker.wake();
            }
            futex::wait(&self.ticker, word, any.then_some(LIVENESS_INTERVAL));
        }
    }
}
