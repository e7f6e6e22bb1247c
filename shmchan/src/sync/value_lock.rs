//! The two locks a [`Shared`](crate::Shared) value can use, [`SeqLock`] and [`FcntlLock`], and
//! the crate-internal [`LockBackend`] trait through which `Shared` drives either with the same
//! methods.

use super::owner_lock::Acquired;
use super::record_lock::RecordLock;
use super::seqlock::RawSeqLock;
use super::words::with_scratch;
use crate::segment::{Key, LockKind, Segment};
use crate::{Error, Result, ShmSafe};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::path::Path;
use std::time::{Duration, Instant};

/// What [`Shared`](crate::Shared) needs from a lock. Sealed: implemented by [`SeqLock`] and
/// [`FcntlLock`] only; its methods are not part of the public API.
pub trait LockBackend: Sized + Send + Sync + 'static {
    /// Recorded in the header; an opener with the other lock gets `KindMismatch`.
    const KIND: LockKind;

    /// Payload bytes for a `T`: lock words and data.
    fn payload_len<T: ShmSafe>() -> usize;

    /// A lock for a segment about to be created (the fcntl lock file is created here: named
    /// when `named`, i.e. other processes open the segment by key and the lock file by the path
    /// in its header; else unnamed, reached only by forked children).
    fn create_lock(named: bool, mode: u32) -> Result<Self>;

    /// Gives the lock's file (if any) permission bits `mode`, as the segment's.
    fn set_mode(&self, mode: u32) -> Result<()>;

    /// The lock file to record in the header, if any.
    fn lock_path(&self) -> Option<&Path>;

    /// Initialises a payload being created.
    ///
    /// # Safety
    ///
    /// `payload` is 128-aligned, `payload_len::<T>()` bytes, writable and not yet visible to
    /// anyone else. `value: None` makes the value all-zero bytes without building a `T` (a
    /// large value is never put on the stack).
    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: Option<&T>);

    /// The lock of an opened segment (the fcntl lock file named in its header).
    fn open_lock(seg: &Segment) -> Result<Self>;

    /// A consistent snapshot into `out` (every byte written), trying for at most `timeout`
    /// (`None`: as long as it takes).
    ///
    /// # Safety
    ///
    /// `payload` is the payload of a segment initialised by [`init`](Self::init) for the same
    /// `T`, mapped for as long as the call runs.
    unsafe fn read_into<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        out: &mut MaybeUninit<T>,
        timeout: Option<Duration>,
    ) -> Result<()>;

    /// A consistent snapshot, trying for at most `timeout` (`None`: as long as it takes).
    ///
    /// # Safety
    ///
    /// As for [`read_into`](Self::read_into).
    #[inline]
    unsafe fn read<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        let mut out = MaybeUninit::uninit();
        // SAFETY: forwarded.
        unsafe { self.read_into(payload, &mut out, timeout) }?;
        // SAFETY: `read_into` wrote every byte, and any bit pattern is a `T` (`ShmSafe`).
        Ok(unsafe { out.assume_init() })
    }

    /// A consistent snapshot, panicking where [`read`](Self::read) would fail: the hot path of
    /// `Shared::read`, overridden where it cannot fail.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read).
    #[inline]
    unsafe fn read_or_panic<T: ShmSafe>(&self, payload: NonNull<u8>) -> T {
        // SAFETY: forwarded.
        unsafe { self.read(payload, None) }.unwrap_or_else(|e| panic!("shmchan: read failed: {e}"))
    }

    /// Runs `f` on the value under the writer lock and publishes the result.
    ///
    /// `timeout: None` waits as long as the holder lives and recovers silently from a dead
    /// holder; `Some(d)` gives up after `d` with `Timeout` and reports a dead holder's takeover
    /// as `WriterDied` (after repairing, without running `f`).
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read), and the mapping is writable.
    unsafe fn write<T: ShmSafe, R>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R>;

    /// Completed writes so far (see [`Shared::version`](crate::Shared::version)).
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read).
    unsafe fn version<T: ShmSafe>(&self, payload: NonNull<u8>) -> u64;

    /// Waits until the version differs from `seen` (see
    /// [`Shared::wait_changed`](crate::Shared::wait_changed)); `announce: false` for a handle
    /// that cannot write the segment.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read), and the mapping is writable if `announce`.
    unsafe fn wait_changed<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        seen: u64,
        timeout: Option<Duration>,
        announce: bool,
    ) -> Result<u64>;

    /// Runs `remove` (which wipes and removes the segment, unmapping the payload) while holding
    /// the value exclusively: the writer lock, so no reader's `&T` and no writer overlaps the
    /// wipe. Waits like [`write`](Self::write) with no timeout. The lock is not released
    /// through the payload afterwards (it is unmapped, and the wipe cleared the lock words).
    ///
    /// # Safety
    ///
    /// As for [`write`](Self::write); after `remove` runs nothing may access `payload`.
    unsafe fn remove_exclusively<T: ShmSafe, R>(
        &self,
        payload: NonNull<u8>,
        remove: impl FnOnce() -> R,
    ) -> Result<R>;

    /// Called when the lock made by [`create_lock`](Self::create_lock) ends up used by no
    /// segment (creation failed, or `open_or_create` opened someone else's): removes what
    /// `create_lock` made.
    fn discard(&mut self);

    /// Called after the handle's segment was dropped (`removed`: it was removed explicitly).
    fn segment_gone(&mut self, key: Option<Key>, removed: bool);

    /// The value's change-notification words, for `changed_async`.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read); the words are used only while the payload stays mapped.
    #[cfg(feature = "async")]
    #[allow(private_interfaces)] // The trait is sealed: no one outside the crate calls it.
    unsafe fn change_words<'a, T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
    ) -> &'a super::notify::ChangeWords;

    /// What an async waiter runs between announcing itself and checking the version: its half
    /// of the ordering the writer's notify relies on (see `notify.rs`).
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read), and the mapping is writable.
    #[cfg(feature = "async")]
    unsafe fn order_after_announce<T: ShmSafe>(&self, payload: NonNull<u8>);
}

/// A sequence lock: readers never block and never write shared memory; one writer at a time
/// (threads or processes) through a robust owner word that survives the writer's death.
///
/// The default lock of [`Shared`](crate::Shared). Choose it for values read far more often than
/// written, by many readers, where a reader must never wait for (or be stopped by) a writer.
/// `docs/locking.md` has the algorithm.
///
/// # Examples
///
/// ```
/// use shmchan::{SeqLock, Shared};
///
/// let s = Shared::<[u64; 2], SeqLock>::anonymous([1, 1])?;
/// s.write(|v| *v = [2, 2]);
/// assert_eq!(s.read(), [2, 2]);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub struct SeqLock {
    _private: (),
}

/// An fcntl record lock (the classic Unix technique): an empty lock file, `F_WRLCK` on its
/// first byte to write, `F_RDLCK` to read; OFD locks where the kernel has them, opened per
/// process, plus an in-process lock so threads exclude each other too.
///
/// A keyed value's lock file is created in `$XDG_RUNTIME_DIR` (or the temporary directory),
/// mode 0600, and its path recorded in the segment header; an opener accepts only such a file
/// (the library's name pattern and directory, regular, empty, owned by the segment's creator)
/// and fails with [`Error::Corrupted`] for anything else. An anonymous value's lock file has no
/// name: forked children reach it through the descriptor they inherit, and nothing is left
/// behind however the process ends.
///
/// Choose it when readers must see the value only between writes (every read blocks writers),
/// when the value is large and written in place, or to interoperate with programs that use the
/// same lock file. `docs/locking.md` lists the fcntl pitfalls and how they are avoided.
///
/// # Examples
///
/// ```
/// use shmchan::{FcntlLock, Shared};
///
/// let s = Shared::<u64, FcntlLock>::anonymous(0)?;
/// s.write(|n| *n += 1);
/// assert_eq!(s.read(), 1);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub struct FcntlLock {
    pub(super) lock: RecordLock,
    /// The fork generation of the process that created the lock file (only it may discard an
    /// unused one), or `None`.
    pub(super) creator: Option<u64>,
}

impl LockBackend for SeqLock {
    const KIND: LockKind = LockKind::SeqLock;

    fn payload_len<T: ShmSafe>() -> usize {
        RawSeqLock::<T>::region_len()
    }

    fn create_lock(_named: bool, _mode: u32) -> Result<Self> {
        Ok(SeqLock { _private: () })
    }

    fn set_mode(&self, _mode: u32) -> Result<()> {
        Ok(())
    }

    fn lock_path(&self) -> Option<&Path> {
        None
    }

    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: Option<&T>) {
        // SAFETY: forwarded: aligned, region_len bytes, writable, not yet shared.
        unsafe { RawSeqLock::init(payload, value) }
    }

    fn open_lock(_seg: &Segment) -> Result<Self> {
        Ok(SeqLock { _private: () })
    }

    unsafe fn read_into<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        out: &mut MaybeUninit<T>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        // SAFETY: an initialised region for `T`, mapped during the call (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        // A timeout too large to add to the clock is as good as none.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut attempts = 0u32;
        while !raw.try_read_into(out) {
            attempts = attempts.wrapping_add(1);
            if attempts % 64 == 0 {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Timeout {
                        what: format!(
                            "a consistent snapshot: the sequence changed during each of {attempts} reads (a writer writing without pause, or a process scribbling on the lock words)"
                        ),
                        holder_pid: None,
                    });
                }
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        Ok(())
    }

    #[inline]
    unsafe fn read_or_panic<T: ShmSafe>(&self, payload: NonNull<u8>) -> T {
        // SAFETY: an initialised region for `T`, mapped during the call (caller).
        unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) }.read()
    }

    unsafe fn write<T: ShmSafe, R>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        // SAFETY: an initialised, writable region for `T`, mapped during the call (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        // The guard releases the lock when dropped (also when `f` panics: the value is then left
        // as it was, both copies complete), but never from a forked child's copy.
        let (how, guard) = raw.owner().acquire(timeout).map_err(|e| match e {
            // `try_write`: same answer as the fcntl lock's non-blocking attempt.
            Error::Timeout { .. } if timeout == Some(Duration::ZERO) => Error::WouldBlock {
                what: "taking the seqlock writer lock (another live writer holds it)",
            },
            e => e,
        })?;
        let report = timeout.is_some();
        match how {
            Acquired::Clean => {}
            Acquired::TookOver { pid } => {
                // SAFETY: we hold the owner lock; the region is writable.
                unsafe { raw.repair() };
                if report {
                    return Err(Error::WriterDied { pid });
                }
            }
            Acquired::Corrupted { word } => {
                // SAFETY: as above.
                unsafe { raw.repair() };
                if report {
                    return Err(Error::Corrupted {
                        what: format!(
                            "the seqlock owner word held {word:#018x}, which names no thread; it was reset"
                        ),
                    });
                }
            }
        }
        // A large `T` is copied into a heap buffer, never onto the stack.
        let r = with_scratch::<T, _>(|slot| {
            // SAFETY: we hold the owner lock and repaired after any takeover.
            unsafe { raw.current_into(slot) };
            // SAFETY: `current_into` wrote every byte; any bit pattern is a `T`.
            let value = unsafe { slot.assume_init_mut() };
            let r = f(value);
            if !guard.in_owner_process() {
                return Err(forked_inside("write"));
            }
            // The owner word changed under us: only another process writing it does that.
            // Report it where the caller asked to be told; `write` (which must not panic over
            // bytes another process wrote) publishes anyway: the copies are atomic words, so
            // the worst outcome of a second writer is a wrong but valid value.
            if report && !guard.still_held() {
                return Err(Error::Corrupted {
                    what: "the seqlock writer lock was taken from this thread while it wrote (another process overwrote the owner word); nothing was published".into(),
                });
            }
            // SAFETY: as above; the region is writable (caller).
            unsafe { raw.publish(value) };
            Ok(r)
        })?;
        // Release first: the release's read-modify-write of the owner word is what orders the
        // publication before the watchers check (see `notify.rs`), so no fence is needed.
        drop(guard);
        raw.changes().notify_after_release();
        Ok(r)
    }

    #[inline]
    unsafe fn version<T: ShmSafe>(&self, payload: NonNull<u8>) -> u64 {
        // SAFETY: an initialised region for `T`, mapped during the call (caller).
        unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) }.version()
    }

    unsafe fn wait_changed<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        seen: u64,
        timeout: Option<Duration>,
        announce: bool,
    ) -> Result<u64> {
        // SAFETY: an initialised region for `T`, mapped during the call, writable if
        // `announce` (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        raw.changes().wait(
            || raw.version(),
            seen,
            timeout,
            announce,
            || raw.owner().sync_with_release(),
        )
    }

    unsafe fn remove_exclusively<T: ShmSafe, R>(
        &self,
        payload: NonNull<u8>,
        remove: impl FnOnce() -> R,
    ) -> Result<R> {
        // SAFETY: an initialised, writable region for `T`, mapped until `remove` runs (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        let (_, guard) = raw.owner().acquire(None)?;
        let r = remove();
        // The owner word was wiped (and unmapped): release nothing through it.
        guard.disarm();
        Ok(r)
    }

    fn discard(&mut self) {}

    fn segment_gone(&mut self, _key: Option<Key>, _removed: bool) {}

    #[cfg(feature = "async")]
    #[allow(private_interfaces)] // The trait is sealed: no one outside the crate calls it.
    unsafe fn change_words<'a, T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
    ) -> &'a super::notify::ChangeWords {
        // SAFETY: an initialised region for `T`, mapped while the words are used (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        // SAFETY: the words live in the mapping, not in `raw`: the caller's lifetime applies.
        unsafe { &*core::ptr::from_ref(raw.changes()) }
    }

    #[cfg(feature = "async")]
    unsafe fn order_after_announce<T: ShmSafe>(&self, payload: NonNull<u8>) {
        // SAFETY: an initialised, writable region for `T`, mapped during the call (caller).
        unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) }
            .owner()
            .sync_with_release();
    }
}

/// The error of a write whose process forked inside its closure, seen in the child: the lock
/// belongs to the parent, so the child publishes nothing and releases nothing.
pub(crate) fn forked_inside(what: &str) -> Error {
    Error::InvalidArgument {
        what: format!(
            "this process was forked inside a {what} of this value: the lock belongs to the parent, so the child published nothing (take locks in the child itself, after fork)"
        ),
    }
}
