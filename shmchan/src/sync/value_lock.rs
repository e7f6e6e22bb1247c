//! The two locks a [`Shared`](crate::Shared) value can use, [`SeqLock`] and [`FcntlLock`], and
//! the crate-internal [`LockBackend`] trait through which `Shared` drives either with the same
//! methods.

use super::owner_lock::{Acquired, OwnerWord};
use super::record_lock::{RecordGuard, RecordLock, Wait};
use super::seqlock::RawSeqLock;
use super::words::words_for;
use crate::segment::{Key, LockKind, Segment};
use crate::sys::fcntl;
use crate::{Error, Result, ShmSafe};
use core::ptr::NonNull;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What [`Shared`](crate::Shared) needs from a lock. Sealed: implemented by [`SeqLock`] and
/// [`FcntlLock`] only; its methods are not part of the public API.
pub trait LockBackend: Sized + Send + Sync + 'static {
    /// Recorded in the header; an opener with the other lock gets `KindMismatch`.
    const KIND: LockKind;

    /// Payload bytes for a `T`: lock words and data.
    fn payload_len<T: ShmSafe>() -> usize;

    /// A lock for a segment about to be created (the fcntl lock file is created here).
    fn create_lock() -> Result<Self>;

    /// The lock file to record in the header, if any.
    fn lock_path(&self) -> Option<&Path>;

    /// Initialises a payload being created.
    ///
    /// # Safety
    ///
    /// `payload` is 128-aligned, `payload_len::<T>()` bytes, writable and not yet visible to
    /// anyone else.
    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: &T);

    /// The lock of an opened segment (the fcntl lock file named in its header).
    fn open_lock(seg: &Segment) -> Result<Self>;

    /// A consistent snapshot, trying for at most `timeout` (`None`: as long as it takes).
    ///
    /// # Safety
    ///
    /// `payload` is the payload of a segment initialised by [`init`](Self::init) for the same
    /// `T`, mapped for as long as the call runs.
    unsafe fn read<T: ShmSafe>(&self, payload: NonNull<u8>, timeout: Option<Duration>)
    -> Result<T>;

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

/// An fcntl record lock (seed 000's technique): an empty lock file, `F_WRLCK` on its first byte
/// to write, `F_RDLCK` to read; OFD locks where the kernel has them, opened per process, plus an
/// in-process lock so threads exclude each other too.
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
    /// The fork generation of the process that created the lock file (it removes it), or `None`.
    creator: Option<u64>,
}

/// Releases the owner lock when dropped (also when the writer's closure panics: the value is
/// then left as it was, both copies complete).
struct OwnerGuard<'a>(&'a OwnerWord);

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl LockBackend for SeqLock {
    const KIND: LockKind = LockKind::SeqLock;

    fn payload_len<T: ShmSafe>() -> usize {
        RawSeqLock::<T>::region_len()
    }

    fn create_lock() -> Result<Self> {
        Ok(SeqLock { _private: () })
    }

    fn lock_path(&self) -> Option<&Path> {
        None
    }

    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: &T) {
        // SAFETY: forwarded: aligned, region_len bytes, writable, not yet shared.
        unsafe { RawSeqLock::init(payload, value) }
    }

    fn open_lock(_seg: &Segment) -> Result<Self> {
        Ok(SeqLock { _private: () })
    }

    unsafe fn read<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        // SAFETY: an initialised region for `T`, mapped during the call (caller).
        let raw = unsafe { RawSeqLock::<T>::from_raw(payload.as_ptr()) };
        let Some(timeout) = timeout else {
            return Ok(raw.read());
        };
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        loop {
            if let Some(v) = raw.try_read() {
                return Ok(v);
            }
            attempts = attempts.wrapping_add(1);
            if attempts % 64 == 0 {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: format!(
                            "a consistent snapshot: the sequence changed during each of {attempts} reads (a writer writing without pause, or a process scribbling on the lock words)"
                        ),
                        holder_pid: None,
                    });
                }
                std::thread::yield_now();
            }
        }
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
        let how = raw.owner().acquire(timeout).map_err(|e| match e {
            // `try_write`: same answer as the fcntl lock's non-blocking attempt.
            Error::Timeout { .. } if timeout == Some(Duration::ZERO) => Error::WouldBlock {
                what: "taking the seqlock writer lock (another live writer holds it)",
            },
            e => e,
        })?;
        let _guard = OwnerGuard(raw.owner());
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
        // SAFETY: we hold the owner lock and repaired after any takeover.
        let mut value = unsafe { raw.current() };
        let r = f(&mut value);
        // SAFETY: as above; the region is writable (caller).
        unsafe { raw.publish(&value) };
        Ok(r)
    }

    fn segment_gone(&mut self, _key: Option<Key>, _removed: bool) {}
}

/// A fresh lock file path: `$XDG_RUNTIME_DIR` (per-user, mode 0700, cleared at logout) when set,
/// else the temporary directory.
fn new_lock_path() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(
        "shmchan-{}-{n}-{nanos:08x}.lock",
        crate::sys::proc::pid()
    ))
}

impl FcntlLock {
    pub(crate) fn lock_read(&self, wait: Wait) -> Result<RecordGuard> {
        self.lock.lock_read(wait)
    }

    pub(crate) fn lock_write(&self, wait: Wait) -> Result<RecordGuard> {
        self.lock.lock_write(wait)
    }

    fn remove_file(&self) {
        // Already gone (removed by hand, or by another handle) is fine.
        let _ = fcntl::unlink(self.lock.path());
    }
}

impl LockBackend for FcntlLock {
    const KIND: LockKind = LockKind::Fcntl;

    fn payload_len<T: ShmSafe>() -> usize {
        (words_for::<T>() * 8).max(8)
    }

    fn create_lock() -> Result<Self> {
        let mut tries = 0;
        loop {
            match RecordLock::create(&new_lock_path()) {
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
        Some(self.lock.path())
    }

    unsafe fn init<T: ShmSafe>(payload: *mut u8, value: &T) {
        // SAFETY: the payload is 128-aligned and `Shared` refuses types aligned to more than 128
        // (`check_type`), so it is aligned for `T`; payload_len bytes, writable, not yet shared.
        unsafe {
            payload.write_bytes(0, Self::payload_len::<T>());
            payload.cast::<T>().write(*value);
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
            lock: RecordLock::open(&path, !seg.is_read_only())?,
            creator: None,
        })
    }

    unsafe fn read<T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(d) => Wait::Until(Instant::now() + d),
        };
        let _guard = self.lock.lock_read(wait)?;
        // SAFETY: the payload holds an initialised `T` (caller), and every writer takes the
        // write lock we now exclude, so nothing writes these bytes during the read.
        Ok(unsafe { payload.cast::<T>().as_ptr().read() })
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
            Some(d) => Wait::Until(Instant::now() + d),
        };
        let _guard = self.lock.lock_write(wait)?;
        let slot = payload.cast::<T>().as_ptr();
        // `f` works on a private copy, written back only when it returns: a panicking `f`
        // leaves the shared value as it was, as with the seqlock (`lock_write()` is the
        // in-place alternative).
        // SAFETY: an initialised `T` (caller); the write lock excludes every other reader and
        // writer that follows the protocol while `_guard` lives.
        let mut value = unsafe { slot.read() };
        let r = f(&mut value);
        // SAFETY: as above, and the mapping is writable (caller).
        unsafe { slot.write(value) };
        Ok(r)
    }

    fn segment_gone(&mut self, key: Option<Key>, removed: bool) {
        match key {
            // Anonymous or IPC_PRIVATE (shared by fork only, never opened by key): only the
            // creating process removes the file; forked children reach it through the
            // descriptor they inherited, even once it is unlinked.
            None => {
                if self.creator == Some(crate::sys::proc::fork_generation()) {
                    self.remove_file();
                }
            }
            Some(key) if key.is_private() => {
                if self.creator == Some(crate::sys::proc::fork_generation()) {
                    self.remove_file();
                }
            }
            Some(key) => {
                // Keyed: the file goes with the segment. Whichever handle's drop removed the
                // segment (the last to detach) finds it gone and removes the file too.
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
