//! How `WaitSet` and the async notifier wait on a receiver: its wait word, its readiness, and
//! what the notifier keeps while a future of it is pending.

use super::*;

impl<T: ShmSafe> Receiver<T> {
    /// The futex word this receiver sleeps on: whoever makes it ready (a message arrives or the sender closes)
    /// clears the word and wakes it if it holds 1. A waiter stores 1, issues a SeqCst fence, re-checks with a
    /// `try_` operation and sleeps while the word holds 1 (the protocol of `channel::wait`);
    /// `WaitSet` and the async notifier wait on it the same way.
    pub(crate) fn wait_word(&self) -> &std::sync::atomic::AtomicU32 {
        &self.header().rx_wait.0
    }

    /// For `WaitSet`: whether `try_recv` would now return a message or an error (the sender's
    /// end closed, or this process cannot take the receiving role: waiting is using, so this
    /// claims the role as `try_recv` would). With `check_peer`, first looks whether the sender died (reads
    /// `/proc`: at most once per `LIVENESS_INTERVAL`).
    pub(crate) fn wait_set_ready(&self, check_peer: bool) -> bool {
        if self.ensure_role().is_err() {
            return true;
        }
        if check_peer {
            // Impossible constants: `try_` reports them.
            if self.geometry.check_unchanged(self.header()).is_err() {
                return true;
            }
            let _ = self.check_sender();
        }
        self.ring.probe_message() || self.header().sender.0.is_closed()
    }

    /// The mapping and the ring header, for the async notifier: it keeps the mapping while a
    /// future of this end is pending, and checks the sender's liveness in the header.
    #[cfg(feature = "async")]
    pub(crate) fn async_parts(&self) -> (&Arc<RingMemory>, &RingHeader) {
        (&self.memory, self.header())
    }
}
