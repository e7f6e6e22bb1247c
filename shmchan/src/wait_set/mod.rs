//! Waiting on many endpoints at once: [`WaitSet`].
//!
//! # How it works
//!
//! Every endpoint that can be waited on has a *wait word*: a 32-bit futex word in its shared
//! segment, the one its own blocking `recv` (or `send`) sleeps on. A waiter announces itself by
//! storing 1 there; whoever changes what the waiter waits for (publishes a message, frees a
//! slot, closes its end) issues a fence, and only if the word holds 1 stores 0 and wakes the
//! futex. A sender therefore makes no system call while nobody waits.
//!
//! [`WaitSet::wait`] first checks every endpoint (re-reading the shared state: a message is
//! ready, or the peer is gone so that `try_recv` would return an error). If none is ready it
//! stores 1 in every wait word, issues a sequentially consistent fence, checks again (so a
//! message published meanwhile is never missed: either the check sees it, or its sender sees
//! the 1 and wakes us), and sleeps on all the words at once with one `futex_waitv` system call.
//! Each sleep lasts at most [`LIVENESS_INTERVAL`]; every `LIVENESS_INTERVAL` the set also runs
//! each endpoint's peer-liveness check (a killed process cannot wake anyone), so a dead peer
//! makes its endpoint ready within about that interval.
//!
//! # Fallback for kernels before 5.16
//!
//! `futex_waitv` appeared in Linux 5.16. Where it is missing (`ENOSYS`, or refused by a seccomp
//! filter), the set sleeps on one word at a time in turn, for at most 2 ms each
//! ([`FALLBACK_SLICE`]), checking every endpoint between two slices: an endpoint whose word is
//! slept on is noticed at once, any other within 2 ms. That costs a few hundred short system
//! calls per second while waiting, instead of none. The same round robin, over groups of 128
//! words, serves sets with more than 128 distinct words (the kernel's limit for one
//! `futex_waitv`). A set with a single distinct word always sleeps on it directly.

mod impls;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::channel::LIVENESS_INTERVAL;
use crate::sys::futex::{self, WAITV_MAX, WaitAnyOutcome};
use crate::{Error, Result};

/// How long the fallback (no `futex_waitv`) sleeps on one word before looking at the others.
pub(crate) const FALLBACK_SLICE: Duration = Duration::from_millis(2);

/// Set once a `futex_waitv` call said the kernel does not have it: later waits go straight to
/// the fallback.
static WAITV_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

pub(crate) mod sealed {
    use std::sync::atomic::AtomicU32;

    /// What an endpoint gives a [`WaitSet`](super::WaitSet). Not nameable outside the crate,
    /// so only the crate's endpoints can be added.
    ///
    /// To make an endpoint waitable: return the futex word its own blocking operation sleeps
    /// on (every change that makes the endpoint ready must be followed by a SeqCst fence and,
    /// if the word holds non-zero, a store of 0 and a `FUTEX_WAKE` of all or one waiter), and a
    /// readiness check; then `impl Waitable for X {}`.
    pub trait Sealed {
        /// The futex word to sleep on (stable while `self` is borrowed).
        fn wait_set_word(&self, _: Token) -> &AtomicU32;

        /// Whether the endpoint's `try_` operation would now return something or an error:
        /// re-reads the shared state, never consumes anything. With `liveness` (at most once
        /// per [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL)), first runs the
        /// endpoint's slow checks: whether its peer died, whether a slot is stuck with a dead
        /// holder (and recovers it). False positives are allowed (the caller's `try_` then
        /// returns nothing and it waits again); a false negative is only allowed until the
        /// next `liveness` check.
        fn wait_set_ready(&self, _: Token, liveness: bool) -> bool;
    }

    /// Proof of a call from inside the crate: methods of a supertrait can be called on a
    /// `dyn Waitable` without naming the trait, but not without a value of this type.
    #[derive(Clone, Copy)]
    pub struct Token(pub(crate) ());
}

use sealed::Token;

/// An endpoint a [`WaitSet`] can wait on: receiving ends of [`spsc`](mod@crate::spsc) and
/// [`mpmc`](crate::mpmc) channels (ready when a message can be received, or when their peer is
/// gone so that `try_recv` reports it), and their sending ends (ready when there is room, or
/// when the receivers are gone); [`broadcast`](crate::broadcast) subscribers and publishers
/// likewise.
///
/// Sealed: only shmchan's endpoints implement it.
///
/// # Examples
///
/// ```
/// fn waitable<W: shmchan::Waitable>(_: &W) {}
///
/// let (tx, rx) = shmchan::mpmc::channel::<u64>(8)?;
/// waitable(&rx);
/// waitable(&tx);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub trait Waitable: sealed::Sealed {}

/// Waits until any of several endpoints, of any kinds and in any processes' segments, is ready.
///
/// [`add`](WaitSet::add) endpoints (each call returns the endpoint's index), then
/// [`wait`](WaitSet::wait): it returns the index of an endpoint that is ready, and the caller
/// calls that endpoint's `try_recv` (or `try_send`). Readiness is a hint, not a reservation:
/// with several receivers on one mpmc queue another one may take the message first, so
/// `try_recv` can return `Ok(None)`; loop back to `wait` then. An endpoint whose peer is gone
/// stays ready (its `try_recv` reports [`Error::Disconnected`]): [`remove`](WaitSet::remove)
/// it then.
///
/// While waiting the process sleeps in the kernel (one `futex_waitv` on all the endpoints'
/// words), waking every [`LIVENESS_INTERVAL`] to check whether a peer died; senders pay a
/// system call only while someone waits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (job_tx, jobs) = shmchan::mpmc::channel::<u64>(64)?;
/// let (tick_tx, ticks) = shmchan::spsc::channel::<u32>(64)?;
///
/// let mut set = shmchan::WaitSet::new();
/// let a = set.add(&jobs);
/// let b = set.add(&ticks);
///
/// tick_tx.send(7)?;
/// let ready = set.wait(Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, b);
/// assert_eq!(ticks.try_recv()?, Some(7));
///
/// job_tx.send(1)?;
/// assert_eq!(set.wait(None)?, a);
/// assert_eq!(jobs.try_recv()?, Some(1));
///
/// // Nothing ready: a timeout.
/// let e = set.wait(Some(Duration::from_millis(10))).unwrap_err();
/// assert!(matches!(e, shmchan::Error::Timeout { .. }));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct WaitSet<'a> {
    /// By index; `None` once removed (indices stay stable).
    endpoints: Vec<Option<&'a dyn Waitable>>,
    /// How many are still in the set.
    live: usize,
    /// The distinct wait words, each with the value a sleeper expects (1).
    words: Vec<(&'a AtomicU32, u32)>,
    /// Where the next readiness scan starts (round robin, so a busy endpoint cannot starve
    /// the others).
    next: usize,
    /// Which word (or group of words) the fallback sleeps on next.
    next_group: usize,
    last_liveness: Option<Instant>,
    /// How often the liveness checks run ([`LIVENESS_INTERVAL`]; longer in tests that must
    /// see a wake-up arrive without them).
    liveness_every: Duration,
    force_fallback: bool,
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("endpoints", &self.live)
            .field("words", &self.words.len())
            .finish()
    }
}

impl Default for WaitSet<'_> {
    fn default() -> Self {
        WaitSet::new()
    }
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = shmchan::WaitSet::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> WaitSet<'a> {
        WaitSet {
            endpoints: Vec::new(),
            live: 0,
            words: Vec::new(),
            next: 0,
            next_group: 0,
            last_liveness: None,
            liveness_every: LIVENESS_INTERVAL,
            force_fallback: false,
        }
    }

    /// Adds an endpoint; returns its index, which [`wait`](WaitSet::wait) returns when it is
    /// ready (indices count up from 0 in the order of the calls).
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::spsc::channel::<u8>(4)?;
    /// let (_tx2, rx2) = shmchan::mpmc::channel::<u8>(4)?;
    /// let mut set = shmchan::WaitSet::new();
    /// assert_eq!(set.add(&rx), 0);
    /// assert_eq!(set.add(&rx2), 1);
    /// assert_eq!(set.len(), 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn add<W: Waitable>(&mut self, endpoint: &'a W) -> usize {
        let word = sealed::Sealed::wait_set_word(endpoint, Token(()));
        if !self.words.iter().any(|(w, _)| std::ptr::eq(*w, word)) {
            self.words.push((word, 1));
        }
        self.endpoints.push(Some(endpoint));
        self.live += 1;
        self.endpoints.len() - 1
    }

    /// Removes the endpoint of `index` (e.g. once its `try_recv` said
    /// [`Error::Disconnected`]); the other endpoints keep their indices, and `add` never
    /// reuses this one. Returns whether it was in the set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = shmchan::spsc::channel::<u8>(4)?;
    /// let (_tx2, rx2) = shmchan::spsc::channel::<u8>(4)?;
    /// let mut set = shmchan::WaitSet::new();
    /// let a = set.add(&rx);
    /// let _b = set.add(&rx2);
    /// drop(tx);
    /// assert_eq!(set.wait(None)?, a);
    /// assert!(matches!(rx.try_recv(), Err(shmchan::Error::Disconnected)));
    /// assert!(set.remove(a));
    /// assert!(!set.remove(a));
    /// assert_eq!(set.len(), 1);
    /// assert!(set.wait(Some(Duration::from_millis(5))).is_err()); // rx2: nothing yet
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn remove(&mut self, index: usize) -> bool {
        let Some(slot) = self.endpoints.get_mut(index) else {
            return false;
        };
        if slot.take().is_none() {
            return false;
        }
        self.live -= 1;
        self.words.clear();
        for e in self.endpoints.iter().flatten() {
            let word = e.wait_set_word(Token(()));
            if !self.words.iter().any(|(w, _)| std::ptr::eq(*w, word)) {
                self.words.push((word, 1));
            }
        }
        true
    }

    /// How many endpoints are in the set (added and not removed).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::WaitSet::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the set has no endpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::WaitSet::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Blocks until an endpoint is ready and returns its index (as returned by
    /// [`add`](WaitSet::add)); waits at most `timeout`, or for ever with `None`. When several
    /// are ready, successive calls take them in turn.
    ///
    /// Ready means that the endpoint's `try_recv` (`try_send` for a sender) would now return a
    /// message (room) or an error such as [`Error::Disconnected`]. A peer that was killed
    /// makes its endpoint ready within about [`LIVENESS_INTERVAL`].
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing was ready within `timeout` (`Some(Duration::ZERO)` only
    /// polls); [`Error::InvalidArgument`] on an empty set (it would never wake).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = shmchan::spsc::channel::<u64>(8)?;
    /// let mut set = shmchan::WaitSet::new();
    /// let i = set.add(&rx);
    /// std::thread::spawn(move || tx.send(3));
    /// assert_eq!(set.wait(Some(Duration::from_secs(10)))?, i);
    /// assert_eq!(rx.try_recv()?, Some(3));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<usize> {
        if self.live == 0 {
            return Err(Error::InvalidArgument {
                what: "WaitSet::wait on an empty set would never return: add an endpoint first"
                    .into(),
            });
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let now = Instant::now();
            let liveness = self
                .last_liveness
                .is_none_or(|t| now.saturating_duration_since(t) >= self.liveness_every);
            if liveness {
                self.last_liveness = Some(now);
            }
            if let Some(i) = self.find_ready(liveness) {
                return Ok(i);
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(self.timeout_error());
            }
            // Announce, then re-check (see the module docs: no lost wake-up). The words stay
            // announced afterwards: other processes may be waiting on the same words (several
            // receivers of one mpmc queue), and clearing their announcement could make them
            // miss a wake-up; a stale 1 only costs the next sender one wake-up call.
            for (w, _) in &self.words {
                w.store(1, Ordering::Relaxed);
            }
            fence(Ordering::SeqCst);
            if let Some(i) = self.find_ready(false) {
                return Ok(i);
            }
            let since = self.last_liveness.map_or(Duration::ZERO, |t| t.elapsed());
            let mut sleep = self.liveness_every.saturating_sub(since);
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.timeout_error());
                }
                sleep = sleep.min(left);
            }
            if !sleep.is_zero() {
                self.sleep(sleep);
            }
        }
    }

    /// The first ready endpoint from the round-robin start. With `liveness`, checks every
    /// endpoint (so each runs its liveness check), then picks.
    fn find_ready(&mut self, liveness: bool) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next % n;
        let mut found = None;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(e) = self.endpoints[i] else {
                continue;
            };
            if e.wait_set_ready(Token(()), liveness) {
                found.get_or_insert(i);
                if !liveness {
                    break;
                }
            }
        }
        if let Some(i) = found {
            self.next = i + 1;
        }
        found
    }

    fn timeout_error(&self) -> Error {
        Error::Timeout {
            what: format!(
                "any of the {} endpoints of a WaitSet to become ready",
                self.live
            ),
            holder_pid: None,
        }
    }

    /// Sleeps at most `d` on the announced words (all at once where the kernel allows, else one
    /// slice on one of them).
    fn sleep(&mut self, d: Duration) {
        let words = &self.words[..];
        if let [(w, v)] = words {
            futex::wait(w, *v, Some(d));
            return;
        }
        let waitv = !self.force_fallback && !WAITV_UNSUPPORTED.load(Ordering::Relaxed);
        if waitv && words.len() <= WAITV_MAX {
            match futex::wait_any(words, Some(d)) {
                WaitAnyOutcome::Unsupported => WAITV_UNSUPPORTED.store(true, Ordering::Relaxed),
                WaitAnyOutcome::Woken(_) | WaitAnyOutcome::TimedOut => return,
            }
        }
        // Round robin: one slice on one group (a single word without futex_waitv).
        let group = if waitv && !WAITV_UNSUPPORTED.load(Ordering::Relaxed) {
            WAITV_MAX
        } else {
            1
        };
        let groups = words.len().div_ceil(group);
        let g = self.next_group % groups;
        self.next_group = g + 1;
        let chunk = &words[g * group..((g + 1) * group).min(words.len())];
        let slice = d.min(FALLBACK_SLICE);
        if let [(w, v)] = chunk {
            futex::wait(w, *v, Some(slice));
        } else if futex::wait_any(chunk, Some(slice)) == WaitAnyOutcome::Unsupported {
            WAITV_UNSUPPORTED.store(true, Ordering::Relaxed);
        }
    }

    /// Test hook: makes this set use the fallback for kernels without `futex_waitv` (one word
    /// at a time, 2 ms each). Not public API.
    #[doc(hidden)]
    pub fn __force_fallback(&mut self, on: bool) {
        self.force_fallback = on;
    }
}

#[cfg(test)]
mod tests;
