//! [`Waitable`] for the channel endpoints: each gives its own blocking operation's wait word
//! and a readiness check that re-reads the shared state.
//!
//! An endpoint type becomes waitable by having two crate-private inherent methods,
//! `wait_word(&self) -> &AtomicU32` (the word its blocking operation sleeps on, cleared and
//! woken by whoever makes it ready) and `wait_set_ready(&self, liveness: bool) -> bool` (see
//! [`Sealed::wait_set_ready`]), and a line in the `waitable!` list below.

use std::sync::atomic::AtomicU32;

use super::Waitable;
use super::sealed::{Sealed, Token};
use crate::{ShmSafe, broadcast, channel, mpmc, rpc};

/// Implements [`Waitable`] for endpoint types generic over `ShmSafe` parameters, forwarding to
/// their `wait_word()` and `wait_set_ready(liveness)` methods.
macro_rules! waitable {
    ($(impl<$($g:ident),+> $ty:ty;)*) => {$(
        impl<$($g: ShmSafe),+> Sealed for $ty {
            #[inline]
            fn wait_set_word(&self, _: Token) -> &AtomicU32 {
                self.wait_word()
            }

            #[inline]
            fn wait_set_ready(&self, _: Token, liveness: bool) -> bool {
                <$ty>::wait_set_ready(self, liveness)
            }
        }

        impl<$($g: ShmSafe),+> Waitable for $ty {}
    )*};
}

waitable! {
    impl<T> channel::Receiver<T>;
    impl<T> channel::Sender<T>;
    impl<T> mpmc::Receiver<T>;
    impl<T> mpmc::Sender<T>;
    impl<Req, Resp> rpc::Server<Req, Resp>;
    impl<T> broadcast::Subscriber<T>;
    impl<T> broadcast::Publisher<T>;
}
