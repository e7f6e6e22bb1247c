//! # shmchan
//!
//! Typed shared memory between processes.
//!
//! Define plain-old-data structs, mark them `#[derive(ShmSafe)]`, and share them between forked
//! workers or unrelated processes through anonymous (`mmap`), System V (`shmget`) or POSIX
//! (`shm_open`) segments, each value paired with a lock (a lock-free-reader sequence lock or an
//! fcntl record lock), or stream them through channels.
//!
//! ```
//! use shmchan::ShmSafe;
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
//! #[repr(C)]
//! pub struct Tick {
//!     pub seq: u64,
//!     pub price: f64,
//!     pub levels: [u32; 4],
//! }
//!
//! let mut t = Tick::default();
//! let mut v = TickViewMut::new(&mut t);
//! v.set_price(1.5);
//! v.levels().set(0, 7);
//! assert_eq!(t, Tick { seq: 0, price: 1.5, levels: [7, 0, 0, 0] });
//! ```
//!
//! See `docs/` in the repository for the design, the segment layout and the safety rules.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Lets the derive's absolute paths (`::shmchan::...`) resolve inside this crate's own tests.
extern crate self as shmchan;

pub mod channel;
pub mod format;
pub mod mpmc;
#[doc(hidden)]
pub use sys::tool;
mod error;
pub mod segment;
mod shared;
mod shm_safe;
// Crate-internal: the lock algorithms; their public face is `Shared`, `SeqLock`, `FcntlLock`.
mod sync;
pub(crate) mod sys;
pub mod view;

#[doc(hidden)]
pub mod __private;

pub use channel::{Receiver, Sender, channel};
pub use error::{Error, Result, Target};
pub use segment::{
    DecodedHeader, Key, Limits, LockKind, Segment, SegmentInfo, SegmentKind, limits,
};
pub use shared::{Lock, Shared, SharedReader};
pub use shm_safe::{ARRAY_FIELD, Field, Layout, PrimKind, ShmSafe, TypeDesc, fingerprint};

/// Derives [`ShmSafe`] for a `#[repr(C)]` or `#[repr(transparent)]` struct, checking at compile
/// time that it has no padding and only `ShmSafe` fields, and generates its typed views
/// (`<Name>View<'a>`, `<Name>ViewMut<'a>`).
pub use shmchan_derive::ShmSafe;
pub use sync::fcntl_guard::{FcntlReadGuard, FcntlWriteGuard};
pub use sync::value_lock::{FcntlLock, SeqLock};

/// Fails to compile unless `$t` implements [`ShmSafe`].
///
/// Usable at module level in any crate.
///
/// # Examples
///
/// ```
/// shmchan::assert_shm_safe!([u64; 4]);
/// ```
///
/// ```compile_fail
/// shmchan::assert_shm_safe!(bool);
/// ```
#[macro_export]
macro_rules! assert_shm_safe {
    ($t:ty $(,)?) => {
        const _: fn() = || {
            fn assert_shm_safe<T: ?::core::marker::Sized + $crate::ShmSafe>() {}
            assert_shm_safe::<$t>();
        };
    };
}

/// Fails to compile unless `$t` is [`ShmSafe`] with exactly the given size and alignment.
///
/// Pin the layout of a type another program depends on, in the crate that uses it.
///
/// # Examples
///
/// ```
/// shmchan::assert_layout!([u32; 4], size = 16, align = 4);
/// ```
///
/// ```compile_fail
/// shmchan::assert_layout!(u64, size = 4, align = 8);
/// ```
#[macro_export]
macro_rules! assert_layout {
    ($t:ty, size = $size:expr, align = $align:expr $(,)?) => {
        $crate::assert_shm_safe!($t);
        const _: () = {
            ::core::assert!(
                <$t as $crate::ShmSafe>::LAYOUT.size == $size,
                ::core::concat!(
                    "assert_layout!: size of `",
                    ::core::stringify!($t),
                    "` is not ",
                    ::core::stringify!($size)
                )
            );
            ::core::assert!(
                <$t as $crate::ShmSafe>::LAYOUT.align == $align,
                ::core::concat!(
                    "assert_layout!: alignment of `",
                    ::core::stringify!($t),
                    "` is not ",
                    ::core::stringify!($align)
                )
            );
        };
    };
}
