//! How `WaitSet` and the async notifier wait on a sender: its wait word, its readiness, and
//! what the notifier keeps while a future of it is pending.

use super::*;

impl<T: ShmSafe> Sender<T> {
    /// The futex word this sender sleeps on: whoever makes it ready (room frees up or the receiver closes)
    /// clears the word and wakes it if it holds 1. A waiter stores 1, issues a SeqCst fence, re-checks with a
    /// `try_` operation and sleeps while the word holds 1 (the protocol of `channel::wait`);
    /// `WaitSet` and the async notifier wait on it the same way.
    pub(crate) fn wait_word(&self) -> &std::sync::atomic::AtomicU32 {
        &self.header().tx_wait.0
    }

    /// For `WaitSet`: whether `try_send` would now succeed or fail with an error other than
    /// `Full` (the receiver's end closed, or this process cannot take the sending role: waiting is
    /// using, so this claims the role as `try_send` would).
    /// With `check_peer`, first looks whether the receiver died (reads `/proc`: at most once per
    /// `LIVENESS_INTERVAL`).
    pub(crate) fn wait_set_ready(&self, check_peer: bool) -> bool {
        if self.ensure_role().is_err() {
            return true;
        }
        if check_peer {
            // Impossible constants: `try_` reports them.
            if self.geometry.check_unchanged(self.header()).is_err() {
                return true;
            }
            let _ = self.check_receiver();
        }
        self.ring.probe_space() || self.header().receiver.0.is_closed()
    }

    /// The mapping and the ring header, for the async notifier: it keeps the mapping while a
    /// future of this end is pending, and checks the receiver's liveness in the header.
    #[cfg(feature = "async")]
    pub(crate) fn async_parts(&self) -> (&Arc<RingMemory>, &RingHeader) {
        (&self.memory, self.header())
    }
}
