//! What a `Sender` and a `Receiver` share: the mapping, the queue, this handle's holder entry,
//! and the bookkeeping of the slow paths (peer liveness, stuck-slot timers).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use super::holders::{Holder, Table};
use super::layout::{Entry, Geometry};
use super::memory::QueueMemory;
use super::queue::Queue;
use crate::channel::{LIVENESS_INTERVAL, WaitStrategy};
use crate::{Result, ShmSafe};

/// The most sends between two looks at the clock.
const MAX_SENDS_PER_CLOCK: u32 = 256;

/// Which table a handle registers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Producer,
    Consumer,
}

pub(crate) struct Endpoint<T: ShmSafe> {
    pub(crate) queue: Queue<T>,
    pub(crate) geometry: Geometry,
    role: Role,
    holder: Holder,
    pub(crate) strategy: Cell<WaitStrategy>,
    /// The peer side's departures counter when it was last scanned.
    seen_departures: Cell<u32>,
    last_scan: Cell<Option<Instant>>,
    peer_gone: Cell<bool>,
    /// The position this handle has found stuck, and since when (or the last scan).
    stuck: Cell<Option<(u64, Instant)>>,
    /// The live holder that kept the stuck position, when known (for `Timeout` errors).
    pub(crate) stuck_holder: Cell<Option<u32>>,
    /// Sends left before the sender looks at the clock, and how many it allows between two
    /// looks (adapted to the sending rate: see [`Endpoint::clock_due`]).
    countdown: Cell<u32>,
    budget: Cell<u32>,
    last_clock: Cell<Option<Instant>>,
    // Last: unmapped after the fields above, which point into it, are gone.
    memory: Arc<QueueMemory>,
}

impl<T: ShmSafe> Endpoint<T> {
    /// Takes a role on a queue already validated for `geometry`, registering this handle in
    /// its table (a full table leaves it unregistered: see [`Endpoint::entry`]).
    pub(crate) fn attach(memory: Arc<QueueMemory>, geometry: Geometry, role: Role) -> Self {
        // SAFETY: `memory` holds a queue initialised or validated for `geometry` and stays
        // mapped while `self.memory` lives, which outlives `queue` and `holder` (field order).
        let queue = unsafe { Queue::<T>::new(memory.base(), &geometry, memory.probe()) };
        let table = match role {
            Role::Producer => *queue.producers(),
            Role::Consumer => *queue.consumers(),
        };
        // SAFETY: the table lies in the same mapping, kept alive as above.
        let holder =
            unsafe { Holder::join(table, role_name(role), &|i| finished(&queue, role, i)) };
        let seen = peer_table(&queue, role).departures();
        Endpoint {
            queue,
            geometry,
            role,
            holder,
            strategy: Cell::new(WaitStrategy::default()),
            seen_departures: Cell::new(seen),
            last_scan: Cell::new(None),
            peer_gone: Cell::new(false),
            stuck: Cell::new(None),
            stuck_holder: Cell::new(None),
            countdown: Cell::new(0),
            budget: Cell::new(1),
            last_clock: Cell::new(None),
            memory,
        }
    }

    /// Another handle of the same role on the same queue (a clone).
    pub(crate) fn duplicate(&self) -> Self {
        let e = Endpoint::attach(Arc::clone(&self.memory), self.geometry, self.role);
        e.strategy.set(self.strategy.get());
        e
    }

    /// This handle's holder entry (registering it now if it has none, e.g. in a child forked
    /// while the table was full).
    ///
    /// # Errors
    ///
    /// [`crate::Error::TooManyHolders`] if the table is full.
    #[inline]
    pub(crate) fn entry(&self) -> Result<&Entry> {
        let (queue, role) = (&self.queue, self.role);
        self.holder.entry(&|i| finished(queue, role, i))
    }

    /// Leaves the table; returns whether an entry was freed.
    pub(crate) fn leave(&self) -> bool {
        self.holder.leave()
    }

    fn peer(&self) -> &Table {
        peer_table(&self.queue, self.role)
    }

    /// On the send path: the time, if it is due to be looked at. A sender that sends fast
    /// looks every [`MAX_SENDS_PER_CLOCK`] sends (microseconds apart, so a dead receiver is
    /// still noticed within [`LIVENESS_INTERVAL`] while the ring has room); one that sends
    /// rarely looks at every send (the clock read is cheap next to the pause between sends).
    #[inline]
    pub(crate) fn clock_due(&self) -> Option<Instant> {
        let left = self.countdown.get();
        if left > 1 {
            self.countdown.set(left - 1);
            return None;
        }
        let now = Instant::now();
        let budget = match self.last_clock.replace(Some(now)) {
            Some(prev) if now.duration_since(prev) < LIVENESS_INTERVAL / 16 => {
                (self.budget.get() * 2).min(MAX_SENDS_PER_CLOCK)
            }
            _ => 1,
        };
        self.budget.set(budget);
        self.countdown.set(budget);
        Some(now)
    }

    /// Whether the other side has been attached and has no live holder now. Scans the peer
    /// table (reading `/proc`) only when a peer left since the last scan, when the time `now`
    /// is given and [`LIVENESS_INTERVAL`] passed since the last scan, or when the last scan
    /// found it gone.
    pub(crate) fn peer_disconnected(&self, now: Option<Instant>) -> bool {
        let peer = self.peer();
        if !peer.is_attached() {
            return false;
        }
        let departures = peer.departures();
        let mut due = departures != self.seen_departures.get() || self.peer_gone.get();
        if let (false, Some(t)) = (due, now) {
            due = self
                .last_scan
                .get()
                .is_none_or(|last| t.saturating_duration_since(last) >= LIVENESS_INTERVAL);
        }
        if !due {
            return false;
        }
        self.seen_departures.set(departures);
        self.last_scan.set(Some(now.unwrap_or_else(Instant::now)));
        let gone = !peer.any_alive();
        self.peer_gone.set(gone);
        gone
    }

    /// The pids of the other side's live holders.
    pub(crate) fn peer_pids(&self) -> Vec<u32> {
        self.peer().live_pids()
    }

    /// Records that `pos` is stuck; true once it has been stuck for [`LIVENESS_INTERVAL`]
    /// (and then restarts the timer, so scans of `/proc` are that far apart).
    pub(crate) fn stuck_long_enough(&self, pos: u64) -> bool {
        let now = Instant::now();
        match self.stuck.get() {
            Some((p, since)) if p == pos => {
                if now.duration_since(since) >= LIVENESS_INTERVAL {
                    self.stuck.set(Some((pos, now)));
                    true
                } else {
                    false
                }
            }
            _ => {
                self.stuck.set(Some((pos, now)));
                false
            }
        }
    }

    /// The mapping, the header and the other side's table, for the async notifier: it keeps
    /// the mapping while a future of this handle is pending, and checks the peers' liveness.
    #[cfg(feature = "async")]
    pub(crate) fn async_parts(&self) -> (&Arc<QueueMemory>, &super::layout::MpmcHeader, Table) {
        (&self.memory, self.queue.header(), *self.peer())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    }
}

fn peer_table<T: ShmSafe>(queue: &Queue<T>, role: Role) -> &Table {
    match role {
        Role::Producer => queue.consumers(),
        Role::Consumer => queue.producers(),
    }
}

fn finished<T: ShmSafe>(queue: &Queue<T>, role: Role, intent: u64) -> bool {
    match role {
        Role::Producer => queue.producer_claim_finished(intent),
        Role::Consumer => queue.consumer_claim_finished(intent),
    }
}
