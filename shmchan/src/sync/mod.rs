//! Cross-process synchronisation: the sequence lock, the robust writer lock and fcntl record
//! locks.
//!
//! These are the algorithms behind [`Shared`](crate::Shared); they work over raw memory regions
//! and are crate-internal. `docs/locking.md` explains the memory-ordering argument, crash
//! recovery and the fcntl pitfalls.

pub(crate) mod atomic_value;
pub(crate) mod fcntl_guard;
mod fcntl_value;
pub(crate) mod lock_file;
pub(crate) mod notify;
pub(crate) mod owner_lock;
pub(crate) mod record_lock;
pub(crate) mod seqlock;
pub(crate) mod value_lock;
pub(crate) mod words;
