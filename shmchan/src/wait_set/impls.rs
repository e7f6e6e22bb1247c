//! [`Waitable`] for the channel endpoints: each gives its own blocking operation's wait word
//! and a readiness check that re-reads the shared state.

use std::sync::atomic::AtomicU32;

use super::Waitable;
use super::sealed::Sealed;
use crate::{ShmSafe, channel, mpmc};

/// Implements [`Waitable`] for an endpoint type with a `wait_word()` and a
/// `wait_set_ready(liveness)` method (the shape every shmchan endpoint provides).
macro_rules! waitable {
    ($($ty:ty),* $(,)?) => {$(
        impl<T: ShmSafe> Sealed for $ty {
            #[inline]
            fn wait_set_word(&self) -> &AtomicU32 {
                self.wait_word()
            }

            #[inline]
            fn wait_set_ready(&self, liveness: bool) -> bool {
                <$ty>::wait_set_ready(self, liveness)
            }
        }

        impl<T: ShmSafe> Waitable for $ty {}
    )*};
}

waitable!(
    channel::Receiver<T>,
    channel::Sender<T>,
    mpmc::Receiver<T>,
    mpmc::Sender<T>,
);
