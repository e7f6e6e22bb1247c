//! The two locks a [`Shared`](crate::Shared) value can use, [`SeqLock`] and [`FcntlLock`], and
//! the crate-internal [`LockBackend`] trait through which `Shared` drives either with the same
//! methods.

use super::lock_file;
use super::notify::{VersionWords, fcntl_tail, fcntl_tail_offset};
use super::owner_lock::Acquired;
use super::record_lock::{RecordGuard, RecordLock, Wait};
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
    lock: RecordLock,
    /// The fork generation of the process that created the lock file (only it may discard an
    /// unused one), or `None`.
    creator: Option<u64>,
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

/// The user who created a keyed segment (System V: the kernel's creator uid; POSIX: the owner
/// of the object), whom its lock file must belong to.
fn creator_uid(seg: &Segment) -> Result<u32> {
    let info = seg.info()?;
    info.creator_uid
        .or(info.uid)
        .ok_or_else(|| Error::InvalidArgument {
            what: "an fcntl lock file named in the header of a segment that has no owner (anonymous segments are shared by fork only)".into(),
        })
}

impl FcntlLock {
    pub(crate) fn lock_read(&self, wait: Wait) -> Result<RecordGuard> {
        self.lock.lock_read(wait)
    }

    pub(crate) fn lock_write(&self, wait: Wait) -> Result<RecordGuard> {
        self.lock.lock_write(wait)
    }

    fn remove_file(&self) {
        // Only while the name still names the file this handle locks; already gone is fine.
        self.lock.unlink();
    }
}

impl LockBackend for FcntlLock {
    const KIND: LockKind = LockKind::Fcntl;

    fn payload_len<T: ShmSafe>() -> usize {
        fcntl_tail_offset::<T>() + size_of::<VersionWords>()
    }

    fn set_mode(&self, mode: u32) -> Result<()> {
        match self.lock.path() {
            Some(_) => self.lock.set_mode(mode),
            None => Ok(()),
        }
    }

    fn create_lock(named: bool, mode: u32) -> Result<Self> {
        if !named {
            return Ok(FcntlLock {
                lock: RecordLock::create_unnamed(&lock_file::lock_dir())?,
                creator: Some(crate::sys::proc::fork_generation()),
            });
        }
        let mut tries = 0;
        loop {
            let path = lock_file::new_lock_path_in(&lock_file::lock_dir_for(mode));
            match RecordLock::create(&path, mode) {
                Ok(lock) => {
                    return Ok(FcntlLock {
                        lock,
                        creator: Some(crate::sys::proc::fork_generation()),
                    });
                }
                // A leftover file with the same name (pid reuse): pick another name.
                Err(Error::Exists { .. }) if tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn lock_path(&self) -> Option<&Path> {
        self.lock.path()
    }

    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: Option<&T>) {
        // SAFETY: the payload is 128-aligned and `Shared` refuses types aligned to more than 128
        // (`check_type`), so it is aligned for `T`; payload_len bytes, writable, not yet shared.
        unsafe {
            payload.write_bytes(0, Self::payload_len::<T>());
            if let Some(value) = value {
                core::ptr::copy_nonoverlapping(value, payload.cast::<T>(), 1);
            }
        }
    }

    fn open_lock(seg: &Segment) -> Result<Self> {
        let path = seg
            .header()
            .lock_path
            .clone()
            .ok_or_else(|| Error::Corrupted {
                what: "the header of an fcntl-locked segment names no lock file".into(),
            })?;
        Ok(FcntlLock {
            lock: RecordLock::open(&path, !seg.is_read_only(), creator_uid(seg)?)?,
            creator: None,
        })
    }

    unsafe fn read_into<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        out: &mut MaybeUninit<T>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(d) => Wait::after(d),
        };
        let _guard = self.lock.lock_read(wait)?;
        // SAFETY: the payload holds an initialised `T` (caller), and every writer takes the
        // write lock we now exclude, so nothing writes these bytes during the copy.
        unsafe {
            core::ptr::copy_nonoverlapping(payload.cast::<T>().as_ptr(), out.as_mut_ptr(), 1)
        };
        Ok(())
    }

    unsafe fn write<T: ShmSafe, R>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(Duration::ZERO) => Wait::No,
            Some(d) => Wait::after(d),
        };
        let guard = self.lock.lock_write(wait)?;
        let slot = payload.cast::<T>().as_ptr();
        // `f` works on a private copy, written back only when it returns: a panicking `f`
        // leaves the shared value as it was, as with the seqlock (`lock_write()` is the
        // in-place alternative).
        // A large `T` is copied into a heap buffer, never onto the stack.
        let r = with_scratch::<T, _>(|copy| {
            // SAFETY: an initialised `T` (caller); the write lock excludes every other reader
            // and writer that follows the protocol while `guard` lives.
            unsafe { core::ptr::copy_nonoverlapping(slot, copy.as_mut_ptr(), 1) };
            // SAFETY: every byte was just written; any bit pattern is a `T`.
            let value = unsafe { copy.assume_init_mut() };
            let r = f(value);
            if !guard.in_owner_process() {
                return Err(forked_inside("write"));
            }
            // SAFETY: as above, and the mapping is writable (caller).
            unsafe { core::ptr::copy_nonoverlapping(value, slot, 1) };
            Ok(r)
        })?;
        // SAFETY: an initialised payload for `T` (caller).
        unsafe { fcntl_tail::<T>(payload) }.bump();
        drop(guard);
        Ok(r)
    }

    #[inline]
    unsafe fn version<T: ShmSafe>(&self, payload: NonNull<u8>) -> u64 {
        // SAFETY: an initialised payload for `T` (caller).
        unsafe { fcntl_tail::<T>(payload) }.version()
    }

    unsafe fn wait_changed<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        seen: u64,
        timeout: Option<Duration>,
        announce: bool,
    ) -> Result<u64> {
        // SAFETY: an initialised payload for `T`, writable if `announce` (caller).
        let tail = unsafe { fcntl_tail::<T>(payload) };
        tail.changes().wait(
            || tail.version(),
            seen,
            timeout,
            announce,
            || core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst),
        )
    }

    unsafe fn remove_exclusively<T: ShmSafe, R>(
        &self,
        _payload: NonNull<u8>,
        remove: impl FnOnce() -> R,
    ) -> Result<R> {
        let guard = self.lock.lock_write(Wait::Forever)?;
        let r = remove();
        // The kernel lock lives in the lock file, not in the payload: release it normally.
        drop(guard);
        Ok(r)
    }

    fn discard(&mut self) {
        if self.creator == Some(crate::sys::proc::fork_generation()) {
            self.remove_file();
        }
    }

    fn segment_gone(&mut self, key: Option<Key>, removed: bool) {
        match key {
            // Anonymous or IPC_PRIVATE (shared by fork only, never opened by key): the lock
            // file has no name (`create_lock(false)`), nothing to remove.
            None => {}
            Some(key) if key.is_private() => {}
            Some(key) => {
                // Keyed: the file goes with the segment. Whichever handle's drop removed the
                // segment (the last to detach) finds it gone and removes the file too, if the
                // name still names the file it locked.
                let gone = removed
                    || matches!(
                        Segment::open_any(key, true),
                        Err(Error::NotFound { .. } | Error::Removed { .. })
                    );
                if gone {
                    self.remove_file();
                }
            }
        }
    }
}
