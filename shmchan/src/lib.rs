//! # shmchan
//!
//! Typed shared memory between processes, on Linux.
//!
//! Define plain-old-data structs, mark them `#[derive(ShmSafe)]`, and share them between forked
//! workers or unrelated processes, either as a **shared value** ([`Shared`]: one `T` that every
//! process reads and writes under a lock) or through a **channel** ([`channel()`], [`Sender`],
//! [`Receiver`]: a queue of `T` messages from one process to another). Other processes may crash
//! at any instruction or write garbage into the memory; safe code using shmchan still never has
//! undefined behaviour, only errors or wrong-but-valid values (see [Trust model](#trust-model)).
//!
//! # Types that can be shared
//!
//! [`ShmSafe`] marks a type whose every bit pattern is a valid value and which has no padding and
//! no pointers: integers, floats, arrays of them, and `#[repr(C)]` structs of such fields. The
//! derive checks all of it at compile time, records the type's layout (so tools can decode a
//! segment without the Rust type) and a fingerprint of it (so a process built from another
//! definition gets [`Error::LayoutMismatch`] instead of misreading the bytes), and generates
//! typed *views* (`TickView`, `TickViewMut`) that read or write one field at a time.
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
//! assert_eq!(v.levels().get(4), None); // array views return `Option`, never index out of bounds
//! assert_eq!(t, Tick { seq: 0, price: 1.5, levels: [7, 0, 0, 0] });
//! ```
//!
//! `bool`, `char`, enums, references, `Box`, `Vec`, `String` and `Option` are refused with a
//! message saying what to store instead (`u8`, `u32`, an index, a fixed array).
//!
//! # A value shared with forked children
//!
//! An anonymous segment (`mmap(MAP_SHARED | MAP_ANONYMOUS)`, no file and no name) is inherited by
//! the children a process forks after creating it, and disappears with the last of them: nothing
//! to name, nothing that can leak. Create the value, then fork:
//!
//! ```
//! use shmchan::{SeqLock, Shared, ShmSafe};
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
//! #[repr(C)]
//! struct Stats {
//!     jobs: u64,
//!     last_worker: u32,
//!     _pad: [u8; 4],
//! }
//!
//! let stats = Shared::<Stats, SeqLock>::anonymous(Stats::default())?;
//!
//! // SAFETY: the child only updates the shared value and leaves with `_exit`.
//! let pid = unsafe { libc::fork() };
//! assert!(pid >= 0, "fork failed");
//! if pid == 0 {
//!     // The child: one whole-value update, seen by the parent.
//!     stats.write(|s| {
//!         s.jobs += 1;
//!         s.last_worker = std::process::id();
//!     });
//!     // SAFETY: `_exit` ends the child without running the parent's destructors twice.
//!     unsafe { libc::_exit(0) };
//! }
//! let mut status = 0;
//! // SAFETY: `pid` is our child; `status` is a valid place for its exit status.
//! assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
//!
//! let seen = stats.read(); // a consistent snapshot, never a mix of two writes
//! assert_eq!((seen.jobs, seen.last_worker), (1, pid as u32));
//! # Ok::<(), shmchan::Error>(())
//! ```
//!
//! Each value is paired with a lock, chosen by the second type parameter:
//!
//! - [`SeqLock`] (the default): readers never wait for, block or write to the writer, and a
//!   writer killed half-way through leaves the previous value readable (the lock keeps two
//!   copies). Best for values read often by many processes: quotes, counters, status.
//! - [`FcntlLock`]: a kernel record lock on an empty lock file (`fcntl(F_SETLKW)`). Readers
//!   exclude writers, [`lock_read`](Shared::lock_read) / [`lock_write`](Shared::lock_write) give
//!   guards that deref to the value in place (sound because every shmchan handle takes the lock),
//!   and a holder's death releases the lock at once.
//!
//! Both offer `read`, `write`, `store`, `with_view` (a few fields of a consistent snapshot) and
//! `update` (field-wise writes through the mutable view), plus `try_` and `_timeout` forms that
//! return an error instead of waiting without bound.
//!
//! # A value by key, between unrelated processes
//!
//! Processes that do not fork from each other meet by a [`Key`]: a POSIX name
//! ([`Key::name`]`("/tick")`, the object `/dev/shm/tick`), or a System V key (`ftok` through
//! [`Key::from_path`], a [`Key::raw`] number, or [`Key::private`]). The creator writes a header
//! describing the type; an opener checks it (magic, version, kind, lock, sizes, fingerprint)
//! before touching the value.
//!
//! ```
//! use shmchan::{Error, FcntlLock, Key, Shared};
//!
//! let key = Key::name(&format!("/shmchan-doc-tour-{}", std::process::id()))?;
//!
//! // The publisher creates it (and fails with `Exists` if someone else already did)...
//! let publisher = Shared::<[u64; 4], FcntlLock>::create(key)?;
//! publisher.store([1, 2, 3, 4]);
//!
//! // ...any other process opens it by the same key: read-write, or read-only.
//! let reader = Shared::<[u64; 4], FcntlLock>::open_read_only(key)?;
//! assert_eq!(reader.read(), [1, 2, 3, 4]);
//! {
//!     let guard = reader.lock_read()?; // the record lock is held while the guard lives
//!     assert_eq!(guard[2], 3);
//! }
//!
//! // Opening with another type, or the other lock, is a typed error, not a misread.
//! assert!(matches!(
//!     Shared::<[u32; 8], FcntlLock>::open(key),
//!     Err(Error::LayoutMismatch { .. })
//! ));
//!
//! // `open_or_create` is the usual call for a process that may start first or second.
//! let same = Shared::<[u64; 4], FcntlLock>::open_or_create(key)?;
//! same.write(|v| v[0] = 10);
//! assert_eq!(publisher.read()[0], 10);
//! # drop((reader, same));
//! // The creator's handle removes the object when no one else holds it (`persist()` keeps it).
//! drop(publisher);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every system call failure becomes an [`Error`] whose message names the call, the errno and
//! what to do (`Exists`, for instance, suggests `open_or_create` or `shmchan rm`, and
//! `InvalidSize` says which limit was hit and points to `shmchan limits`). Keyed segments also
//! offer [`Segment::info`] (the kernel's attach count, creator and last pids, times, mode),
//! [`Shared::set_mode`], [`Shared::remove`] (wipes the bytes, then removes) and [`limits`].
//!
//! # A channel
//!
//! [`channel()`] creates an anonymous single-producer single-consumer ring: create it before
//! `fork`, keep the [`Sender`] in one process and the [`Receiver`] in the other. Sending and
//! receiving make no system call while the other side keeps up; a waiting side sleeps on a
//! shared futex. Messages arrive exactly once and in order, and once the sender is dropped or
//! killed, `recv` returns what it had committed, then [`Error::Disconnected`].
//!
//! ```
//! use shmchan::{Error, ShmSafe};
//!
//! #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
//! #[repr(C)]
//! struct Job {
//!     id: u64,
//!     cost: f64,
//! }
//!
//! let (tx, rx) = shmchan::channel::<Job>(64)?;
//!
//! // SAFETY: the child only sends on the channel and leaves with `_exit`.
//! let pid = unsafe { libc::fork() };
//! assert!(pid >= 0, "fork failed");
//! if pid == 0 {
//!     drop(rx);
//!     for id in 0..1000 {
//!         if tx.send(Job { id, cost: 0.5 }).is_err() {
//!             // SAFETY: as below.
//!             unsafe { libc::_exit(1) };
//!         }
//!     }
//!     drop(tx); // closes the sending end: the receiver sees `Disconnected` after the last job
//!     // SAFETY: `_exit` ends the child without running the parent's destructors twice.
//!     unsafe { libc::_exit(0) };
//! }
//! drop(tx);
//! let mut next = 0;
//! loop {
//!     match rx.recv() {
//!         Ok(job) => {
//!             assert_eq!(job.id, next); // in order, none lost, none twice
//!             next += 1;
//!         }
//!         Err(Error::Disconnected) => break,
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! assert_eq!(next, 1000);
//! let mut status = 0;
//! // SAFETY: `pid` is our child; `status` is a valid place for its exit status.
//! assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Between unrelated processes, one side calls [`Sender::create`]`(key, capacity)` or
//! [`Receiver::create`], the other the matching `open(key)`. `try_send`/`try_recv` never block,
//! `send_timeout`/`recv_timeout` block at most as long as asked, and the batch forms
//! (`send_batch`, `recv_batch`) move many messages per synchronisation.
//!
//! # Trust model
//!
//! - A process that follows the protocol but crashes at any instruction (inside a write,
//!   holding a lock, half-way through creating a segment) leaves no torn value, no survivor
//!   stuck waiting for it, and nothing that `shmchan rm --stale` (below) does not clean up.
//! - A process that writes arbitrary bytes into a segment it can write causes, in the others,
//!   an [`Error`] naming what was wrong ([`Error::Corrupted`], [`Error::NotShmchan`],
//!   [`Error::Timeout`]...) or wrong but valid values, never undefined behaviour, a panic, a wait
//!   without a bound, or an action outside the segment.
//! - POSIX objects can be shrunk by anyone allowed to write them (`ftruncate`), which makes the
//!   kernel send `SIGBUS` to processes touching the lost pages; System V segments cannot be
//!   resized. Give POSIX objects a mode that lets in only processes you trust, or use System V.
//!
//! Values themselves are not validated: a hostile writer can store any bit pattern, and you read
//! it as the valid `T` it is. Check your data's own invariants where they matter.
//!
//! # The `shmchan` command
//!
//! The `shmchan-cli` crate installs a `shmchan` binary (`cargo install shmchan-cli`) that finds
//! and decodes segments without the Rust types, through the layout each segment stores:
//!
//! ```text
//! shmchan ls                            # System V segments and POSIX objects, shmchan's decoded
//! shmchan inspect /tick                 # the header and every field, read under the value's lock
//! shmchan watch /tick --interval 200ms  # the same, refreshed, changed fields highlighted
//! shmchan rm --stale --dry-run          # what crashed processes left behind
//! shmchan limits                        # shmmax, shmmni, shmall, /dev/shm space
//! ```
//!
//! Every command takes `--json`, and refuses to remove segments it cannot decode unless given
//! `--force`.
//!
//! # Modules
//!
//! - [`mod@channel`]: the channel ends, their errors and wait strategies.
//! - [`mod@format`]: the bytes of a segment described once (header, stored layout, seqlock block,
//!   ring header, holder tables) with pure decoders, for tools and readers in other languages
//!   that look at segments without the Rust type; the `shmchan` command is built on it.
//! - [`segment`]: keys, segment kinds, headers, raw segments of bare atomic words (for ports of C
//!   programs that share an `int`), kernel limits.
//! - [`view`]: the array views used by the generated views.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Lets the derive's absolute paths (`::shmchan::...`) resolve inside this crate's own tests.
extern crate self as shmchan;

// The async notifier and the futures' plumbing (the `async` feature).
#[cfg(feature = "async")]
mod async_rt;
pub mod broadcast;
pub mod channel;
pub mod format;
pub mod mpmc;
pub mod rpc;
/// Single-producer single-consumer channels: the module [`channel`](mod@channel) under the
/// name that sits beside [`mpmc`] (both paths name the same items).
///
/// ```
/// let (tx, rx) = shmchan::spsc::channel::<u64>(8)?;
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub use channel as spsc;
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
mod wait_set;

#[doc(hidden)]
pub mod __private;

/// Registrations of this process's async notifier (0 once every pending future completed or
/// was dropped), and whether its thread runs here. For tests; not public API.
#[cfg(feature = "async")]
#[doc(hidden)]
pub fn __async_notifier_state() -> (usize, bool) {
    (async_rt::registrations(), async_rt::notifier_started())
}

pub use channel::{Receiver, Sender, channel};
pub use error::{Errno, Error, Result, Target};
pub use segment::{
    DecodedHeader, Key, Limits, LockKind, Segment, SegmentInfo, SegmentKind, limits,
};
pub use shared::{Lock, Shared, SharedOptions, SharedReader};
pub use shm_safe::{ARRAY_FIELD, Field, Layout, PrimKind, ShmSafe, TypeDesc, fingerprint};

/// Derives [`ShmSafe`] for a `#[repr(C)]` or `#[repr(transparent)]` struct, checking at compile
/// time that it has no padding and only `ShmSafe` fields, and generates its typed views
/// (`<Name>View<'a>`, `<Name>ViewMut<'a>`).
pub use shmchan_derive::ShmSafe;
pub use sync::fcntl_guard::{FcntlReadGuard, FcntlWriteGuard};
pub use sync::value_lock::{FcntlLock, SeqLock};
pub use wait_set::{WaitSet, Waitable};

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
