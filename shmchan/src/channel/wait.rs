//! Blocking: spin briefly, then announce and sleep on a shared futex; wake only announced
//! waiters.
//!
//! Each side has a wait word in the ring header (`rx_wait` for the consumer, `tx_wait` for the
//! producer). A side about to sleep stores 1 in its word, then re-checks its condition, then
//! `FUTEX_WAIT`s on the word while it still holds 1. The other side, after changing what the
//! sleeper waits for (publishing an index, or closing its end), checks the word and, only if it
//! holds 1, stores 0 and `FUTEX_WAKE`s it: no system call on the fast path.
//!
//! **No lost wake-up.** Sleeper: `W(word=1); fence(SeqCst); R(condition)`. Waker:
//! `W(condition); fence(SeqCst); R(word)`. With both fences sequentially consistent, at least one
//! side sees the other's store (the store-buffering pattern is forbidden for SeqCst fences). If
//! the sleeper sees the new condition it does not sleep. Otherwise the waker sees `word == 1`,
//! stores 0 and wakes: the sleeper's `FUTEX_WAIT(word, 1)` either finds 0 and returns at once
//! (the kernel compares and queues atomically under the futex bucket lock) or is already queued
//! and is woken. Every sleep also has a timeout, after which the sleeper checks the peer's
//! liveness: a dead peer cannot wake anyone.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::Result;
use crate::sys::futex::{self, WaitOutcome};

/// How a blocked `send`/`recv` waits.
///
/// # Examples
///
/// ```
/// use shmchan::channel::WaitStrategy;
///
/// let (tx, rx) = shmchan::channel::<u64>(8)?;
/// rx.set_wait_strategy(WaitStrategy::Spin);   // lowest latency, burns a core while waiting
/// tx.set_wait_strategy(WaitStrategy::Block);  // sleep at once, no spinning
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Spin a few microseconds, yield a few times, then sleep on the futex (the default).
    #[default]
    Adaptive,
    /// Never sleep: busy-wait (checking the peer's liveness every [`LIVENESS_INTERVAL`]).
    Spin,
    /// Sleep on the futex at once.
    Block,
}

/// How long a sleeper waits before checking whether the peer is still alive; bounds how long a
/// SIGKILLed peer goes unnoticed by a blocked `send`/`recv`.
///
/// # Examples
///
/// ```
/// assert!(shmchan::channel::LIVENESS_INTERVAL < std::time::Duration::from_millis(100));
/// ```
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

/// `spin_loop` probes an adaptive wait spends before it yields, then sleeps. Short: a peer on
/// another core answers within a few probes, and a long spin on a machine with more runnable
/// processes than cores keeps the very process it waits for off the core (2,000 probes made
/// broadcast round trips to 2 and 4 subscriber processes on 2 cores 10 to 15 times slower).
const ADAPTIVE_SPINS: u32 = 64;
/// `yield_now` rounds before sleeping.
const YIELD_ROUNDS: u32 = 4;
/// How long an adaptive wait keeps yielding (after at least [`YIELD_ROUNDS`] rounds) before it
/// sleeps. On a machine with more runnable processes than cores, a sleeper's wake-up waits for
/// the scheduler (tens of microseconds), while a yielding waiter runs again as soon as the
/// processes ahead of it yield or block; the window bounds the CPU a quiet wait burns.
pub(crate) const YIELD_FOR: Duration = Duration::from_micros(50);
/// Probes between two full attempts while spinning (a full attempt also notices a closed peer).
const PROBES_PER_ATTEMPT: u32 = 256;

/// The most operations between two looks at the clock by [`ClockPacer`].
const MAX_STRIDE: u64 = 64;
/// Operations further apart than this are "slow": the pacer then looks at every one.
const SLOW: Duration = Duration::from_millis(1);

/// Paces a busy side's looks at the clock, so that it can check its peer's liveness every
/// [`LIVENESS_INTERVAL`] without reading the clock on every operation (a clock read costs
/// about as much as a whole `send` on some machines). It looks when an operation's index is a
/// multiple of the stride (no counter to store on the hot path). The stride doubles, up to
/// [`MAX_STRIDE`], while operations come faster than one per [`SLOW`], and drops to 1 as soon
/// as they come slower: a peer that died is noticed within about `LIVENESS_INTERVAL` at a
/// steady rate, and within `MAX_STRIDE` operations when the rate falls suddenly.
pub(crate) struct ClockPacer {
    /// `stride - 1` (the stride is a power of two).
    mask: Cell<u64>,
    last_look: Cell<Option<Instant>>,
}

impl ClockPacer {
    pub(crate) fn new() -> ClockPacer {
        ClockPacer {
            mask: Cell::new(0),
            last_look: Cell::new(None),
        }
    }

    /// Whether operations `first..first + n` include one at which to look at the clock
    /// ([`Self::look`]).
    #[inline]
    pub(crate) fn due(&self, first: u64, n: u64) -> bool {
        let mask = self.mask.get();
        first & mask == 0 || (first & !mask) != (first.wrapping_add(n - 1) & !mask)
    }

    /// Whether operation `index` is one at which to look at the clock.
    #[inline]
    pub(crate) fn due_at(&self, index: u64) -> bool {
        index & self.mask.get() == 0
    }

    /// Looks at the clock, adapts the stride, and returns the time.
    pub(crate) fn look(&self) -> Instant {
        let now = Instant::now();
        let stride = match self.last_look.get() {
            Some(t) if now.duration_since(t) < SLOW => {
                (self.mask.get().wrapping_add(1) * 2).min(MAX_STRIDE)
            }
            _ => 1,
        };
        self.last_look.set(Some(now));
        self.mask.set(stride - 1);
        now
    }
}

/// Wakes the side sleeping on `word` if it announced itself. Call after changing what it waits
/// for (see the module docs for why the fence makes this race-free).
#[inline]
pub(crate) fn notify(word: &AtomicU32) {
    fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) != 0 {
        word.store(0, Ordering::Relaxed);
        futex::wake(word, 1);
    }
}

/// Waits until `attempt` returns `Some`, following `strategy`, until `deadline`.
///
/// `attempt` must re-read the shared state each call (it also reports a closed peer as an
/// error); `probe` is a cheap, unvalidated "worth attempting now?" check used while spinning;
/// `check_peer` runs after each futex timeout (and every [`LIVENESS_INTERVAL`] while spinning)
/// to notice a dead peer. Returns `Ok(None)` when the deadline passed.
pub(crate) fn block_on<R>(
    word: &AtomicU32,
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    attempt: impl FnMut() -> Result<Option<R>>,
    probe: impl Fn() -> bool,
    check_peer: impl FnMut() -> Result<()>,
) -> Result<Option<R>> {
    block_on_word(
        Word::Own(word),
        strategy,
        deadline,
        attempt,
        probe,
        check_peer,
    )
}

/// [`block_on`] for a wait word that several waiters share (mpmc consumers or producers,
/// broadcast subscribers): a waiter leaves the word as it is when it returns, because storing 0
/// could erase the announcement of another waiter that is about to sleep, which would then miss
/// the next wake-up and sleep until its timeout. Only wakers clear a shared word; a word left at
/// 1 costs the next waker one needless `FUTEX_WAKE`. Wakers of a shared word wake every waiter.
pub(crate) fn block_on_shared<R>(
    word: &AtomicU32,
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    attempt: impl FnMut() -> Result<Option<R>>,
    probe: impl Fn() -> bool,
    check_peer: impl FnMut() -> Result<()>,
) -> Result<Option<R>> {
    block_on_word(
        Word::Shared(word),
        strategy,
        deadline,
        attempt,
        probe,
        check_peer,
    )
}

/// Whose wait word a blocked operation sleeps on.
#[derive(Clone, Copy)]
enum Word<'a> {
    /// This waiter's alone: it clears its own announcement when it returns, sparing the waker a
    /// system call.
    Own(&'a AtomicU32),
    /// Shared with other waiters: left to the wakers.
    Shared(&'a AtomicU32),
}

fn block_on_word<R>(
    which: Word<'_>,
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Result<Option<R>>,
    probe: impl Fn() -> bool,
    mut check_peer: impl FnMut() -> Result<()>,
) -> Result<Option<R>> {
    let (word, own) = match which {
        Word::Own(w) => (w, true),
        Word::Shared(w) => (w, false),
    };
    let withdraw = || {
        if own {
            word.store(0, Ordering::Relaxed);
        }
    };
    let mut spin_budget = match strategy {
        WaitStrategy::Spin => u32::MAX,
        WaitStrategy::Adaptive => ADAPTIVE_SPINS,
        WaitStrategy::Block => 0,
    };
    let mut yields = 0;
    let mut yield_until = None::<Instant>;
    let mut last_check = None::<Instant>;
    loop {
        if let Some(r) = attempt()? {
            return Ok(Some(r));
        }
        if spin_budget > 0 {
            let mut n = 0;
            while n < PROBES_PER_ATTEMPT && n < spin_budget && !probe() {
                std::hint::spin_loop();
                n += 1;
            }
            if strategy == WaitStrategy::Spin && (n == PROBES_PER_ATTEMPT || n == 0) {
                // Busy-waiting and still nothing: look at the clock (every few hundred probes,
                // never on the way to a message).
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(None);
                }
                let due = last_check.get_or_insert(now);
                if now.duration_since(*due) >= LIVENESS_INTERVAL {
                    *due = now;
                    check_peer()?;
                }
            } else if strategy != WaitStrategy::Spin {
                spin_budget -= n.min(spin_budget);
                if n == 0 {
                    // The probe said ready at once but the attempt failed: do not spin forever
                    // on an inconsistent probe.
                    spin_budget = spin_budget.saturating_sub(PROBES_PER_ATTEMPT);
                }
            }
            continue;
        }
        if strategy == WaitStrategy::Adaptive {
            let yielding = yields < YIELD_ROUNDS || {
                let now = Instant::now();
                now < *yield_until.get_or_insert(now + YIELD_FOR)
            };
            if yielding {
                yields += 1;
                std::thread::yield_now();
                continue;
            }
        }
        // Announce, then re-check (the sleeper's half of the protocol in the module docs).
        word.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        match attempt() {
            Ok(None) => {}
            other => {
                withdraw();
                return other;
            }
        }
        let mut timeout = LIVENESS_INTERVAL;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                withdraw();
                return Ok(None);
            }
            timeout = timeout.min(left);
        }
        let outcome = futex::wait(word, 1, Some(timeout));
        withdraw();
        if outcome == WaitOutcome::TimedOut {
            check_peer()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a blocking wait whose first attempt fails and second succeeds (so it announces
    /// itself, re-checks and returns) while another waiter's announcement is in the word;
    /// returns the word afterwards.
    fn word_after_early_return(shared: bool) -> u32 {
        let word = AtomicU32::new(1); // another waiter announced itself and is about to sleep
        let mut calls = 0;
        let attempt = || {
            calls += 1;
            Ok((calls > 1).then_some(()))
        };
        let r = if shared {
            block_on_shared(
                &word,
                WaitStrategy::Block,
                None,
                attempt,
                || false,
                || Ok(()),
            )
        } else {
            block_on(
                &word,
                WaitStrategy::Block,
                None,
                attempt,
                || false,
                || Ok(()),
            )
        };
        assert_eq!(r.unwrap(), Some(()));
        word.load(Ordering::Relaxed)
    }

    /// A waiter on a shared word must not erase another's announcement: that one would then
    /// sleep through the next wake-up until its timeout (before the fix, broadcast subscribers
    /// and mpmc consumers did).
    #[test]
    fn a_waiter_leaves_a_shared_word_to_the_wakers() {
        assert_eq!(word_after_early_return(true), 1);
    }

    /// A waiter alone on its word withdraws its announcement, sparing the waker a system call.
    #[test]
    fn a_waiter_clears_its_own_word() {
        assert_eq!(word_after_early_return(false), 0);
    }
}
