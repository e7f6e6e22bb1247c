//! The futures' side of the notifier: [`Waiter`] (a pending future's registration),
//! [`ChannelWait`] (a channel end's announce-register-recheck protocol) and [`ChangeWait`] (a
//! value's watcher count).

use super::*;
use crate::channel::WaitStrategy;
use crate::channel::wait::YIELD_FOR;

/// A pending future's registration with the notifier: [`arm`](Waiter::arm) it each time the
/// future returns `Pending`; dropping it (or [`disarm`](Waiter::disarm)) unregisters.
pub(crate) struct Waiter {
    reg: Option<(&'static Notifier, Key)>,
    /// The notifier to use instead of the process's (tests).
    #[cfg(test)]
    pub(crate) notifier: Option<&'static Notifier>,
}

impl Waiter {
    /// Not registered.
    pub(crate) const fn new() -> Waiter {
        Waiter {
            reg: None,
            #[cfg(test)]
            notifier: None,
        }
    }

    /// Asks for `cx`'s waker to be woken once `word` no longer holds `expected` (and at the
    /// ticks of `setup`'s [`Periodic`]). `setup` runs on first registration only: `Some` makes
    /// a kept registration, `None` a one-shot one (see the module docs).
    ///
    /// Call it after announcing the waiter and re-checking, as the blocking protocol does
    /// before `FUTEX_WAIT`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the notifier thread could not be started.
    pub(crate) fn arm(
        &mut self,
        cx: &Context<'_>,
        word: &AtomicU32,
        expected: u32,
        setup: impl FnOnce() -> Option<(Keep, Option<Periodic>)>,
    ) -> Result<()> {
        let address = core::ptr::from_ref(word) as usize;
        if let Some((n, key)) = self.reg {
            if n.generation != proc::fork_generation() {
                // Carried across `fork`: the registration is the parent's; forget it.
                self.reg = None;
            } else if n.rearm(key, cx.waker(), address, expected) {
                return Ok(());
            } else {
                self.reg = None;
            }
        }
        #[cfg(test)]
        let n = self.notifier.unwrap_or_else(Notifier::current);
        #[cfg(not(test))]
        let n = Notifier::current();
        let (keep, periodic) = match setup() {
            Some((keep, periodic)) => (Some(keep), periodic),
            None => (None, None),
        };
        let key = n.insert(Entry {
            word: address,
            expected,
            waker: cx.waker().clone(),
            armed: true,
            in_set: false,
            keep,
            periodic,
            watch: Vec::new(),
            next_look: 0,
        })?;
        self.reg = Some((n, key));
        Ok(())
    }

    /// Unregisters (nothing if not registered, or registered by the parent before a `fork`).
    pub(crate) fn disarm(&mut self) {
        if let Some((n, key)) = self.reg.take() {
            if n.generation == proc::fork_generation() {
                n.remove(key);
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// One endpoint's side of the blocking protocol of `channel::wait`, with the notifier as the
/// sleeper: poll with [`poll`](ChannelWait::poll); dropping it withdraws the announcement.
pub(crate) struct ChannelWait {
    pub(super) waiter: Waiter,
    /// The word this future announced itself on and the fork generation it did so in; cleared
    /// when done if `exclusive`.
    announced: Option<(usize, u64)>,
    /// Nobody else waits on this word (an spsc end): withdraw the announcement when done.
    exclusive: bool,
    /// Re-poll through the executor for a short window before announcing (the async form of
    /// an adaptive wait's yielding); see [`with_strategy`](ChannelWait::with_strategy).
    yielding: bool,
    /// When the yield window of this future ends (set on its first unready poll).
    yield_until: Option<std::time::Instant>,
}

impl ChannelWait {
    /// `exclusive`: this endpoint is the only waiter on its word (spsc ends). A shared word
    /// (mpmc) stays announced until the next waker clears it: another process may be asleep on
    /// it.
    pub(crate) const fn new(exclusive: bool) -> ChannelWait {
        ChannelWait {
            waiter: Waiter::new(),
            announced: None,
            exclusive,
            yielding: false,
            yield_until: None,
        }
    }

    /// Waits as the endpoint's [`WaitStrategy`] says. `Block`: announce and register on the
    /// first unready poll (one wake-up through the notifier thread, then the executor).
    /// `Adaptive` and `Spin`: for up to `YIELD_FOR` (50 us) first, wake its own waker and
    /// return `Pending`, so the executor runs its other tasks and polls again: a peer that
    /// answers within the window costs no system call on either side and no thread hop, at
    /// the price of that window of executor time when it does not. A future never yields
    /// past its window (`Spin` does not busy-poll an executor forever).
    pub(crate) fn with_strategy(mut self, strategy: WaitStrategy) -> ChannelWait {
        self.yielding = strategy != WaitStrategy::Block;
        self
    }

    /// One poll: `attempt` (a `try_` operation: `None` while not ready); if not ready,
    /// announce on `word` (store 1, SeqCst fence), attempt again, and register with the
    /// notifier. `setup` gives the mapping to keep and the liveness check, on first
    /// registration.
    pub(crate) fn poll<R>(
        &mut self,
        cx: &Context<'_>,
        word: &AtomicU32,
        setup: impl FnOnce() -> (Keep, Periodic),
        mut attempt: impl FnMut() -> Option<Result<R>>,
    ) -> Poll<Result<R>> {
        if let Some(r) = attempt() {
            self.done();
            return Poll::Ready(r);
        }
        if self.yielding && self.announced.is_none() {
            let now = std::time::Instant::now();
            if now < *self.yield_until.get_or_insert(now + YIELD_FOR) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        // The sleeper's half of the protocol: announce, then re-check.
        word.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.announced = Some((core::ptr::from_ref(word) as usize, proc::fork_generation()));
        if let Some(r) = attempt() {
            self.done();
            return Poll::Ready(r);
        }
        let setup = || {
            let (keep, periodic) = setup();
            Some((keep, Some(periodic)))
        };
        match self.waiter.arm(cx, word, 1, setup) {
            Ok(()) => Poll::Pending,
            Err(e) => {
                self.done();
                Poll::Ready(Err(e))
            }
        }
    }

    /// The operation finished (or the future is dropped): unregister, and withdraw an
    /// exclusive announcement made in this process.
    fn done(&mut self) {
        self.waiter.disarm();
        if let Some((word, generation)) = self.announced.take() {
            if self.exclusive && generation == proc::fork_generation() {
                // SAFETY: `ChannelWait` lives inside a future that borrows the endpoint whose
                // mapping holds `word`, so it is mapped while `self` exists.
                unsafe { &*(word as *const AtomicU32) }.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for ChannelWait {
    fn drop(&mut self) {
        self.done();
    }
}

/// Registrations of this process's notifier (armed or not): 0 once every future completed or
/// was dropped.
pub(crate) fn registrations() -> usize {
    // SAFETY: as in `Notifier::current`.
    match unsafe { CURRENT.load(Ordering::Acquire).as_ref() } {
        Some(n) if n.generation == proc::fork_generation() => n.lock().live,
        _ => 0,
    }
}

/// Whether this process has started its notifier thread.
pub(crate) fn notifier_started() -> bool {
    // SAFETY: as in `Notifier::current`.
    match unsafe { CURRENT.load(Ordering::Acquire).as_ref() } {
        Some(n) if n.generation == proc::fork_generation() => n.lock().started,
        _ => false,
    }
}

/// A value-change waiter's announcement (a `Shared` value's `watchers` count, see
/// `sync/notify.rs`) and its one-shot registration; dropping it withdraws both.
pub(crate) struct ChangeWait {
    waiter: Waiter,
    /// The announced waiter's change words and the fork generation it announced in.
    announced: Option<(usize, u64)>,
}

impl ChangeWait {
    /// Not announced.
    pub(crate) const fn new() -> ChangeWait {
        ChangeWait {
            waiter: Waiter::new(),
            announced: None,
        }
    }

    /// One poll: `Ready(v)` once `version()` differs from `seen`. Otherwise announces the waiter
    /// on `words` (once), runs `order`, checks again, and registers the futex word with the
    /// notifier, expecting the value read before the check. `announce: false` (a read-only
    /// mapping) skips the announcement: the notifier's periodic re-polls find the change.
    pub(crate) fn poll(
        &mut self,
        cx: &Context<'_>,
        words: &crate::sync::notify::ChangeWords,
        announce: bool,
        seen: u64,
        version: impl Fn() -> u64,
        order: impl FnOnce(),
    ) -> Poll<Result<u64>> {
        let v = version();
        if v != seen {
            self.done();
            return Poll::Ready(Ok(v));
        }
        let generation = proc::fork_generation();
        let expected = match self.announced {
            Some((_, g)) if g == generation => words.changed(),
            _ if announce => {
                let expected = words.announce();
                self.announced = Some((core::ptr::from_ref(words) as usize, generation));
                expected
            }
            _ => words.changed(),
        };
        if announce {
            order();
        }
        let v = version();
        if v != seen {
            self.done();
            return Poll::Ready(Ok(v));
        }
        match self.waiter.arm(cx, words.word(), expected, || None) {
            Ok(()) => Poll::Pending,
            Err(e) => {
                self.done();
                Poll::Ready(Err(e))
            }
        }
    }

    fn done(&mut self) {
        self.waiter.disarm();
        if let Some((words, generation)) = self.announced.take() {
            if generation == proc::fork_generation() {
                // SAFETY: `ChangeWait` lives inside a future that borrows the value whose
                // mapping holds `words`, so it is mapped while `self` exists.
                unsafe { &*(words as *const crate::sync::notify::ChangeWords) }.withdraw();
            }
        }
    }
}

impl Drop for ChangeWait {
    fn drop(&mut self) {
        self.done();
    }
}
