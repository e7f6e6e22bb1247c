//! [`Shared<T, L>`]: a value in a segment paired with a lock, and [`SharedReader<T, L>`], its
//! read-only counterpart.
//!
//! Both locks offer the same methods: [`read`](Shared::read), [`write`](Shared::write),
//! [`store`](Shared::store), [`with_view`](Shared::with_view), [`update`](Shared::update),
//! [`try_write`](Shared::try_write), [`write_timeout`](Shared::write_timeout). The lock decides
//! what happens underneath (see [`SeqLock`] and [`FcntlLock`]).

mod inner;
mod reader;
mod restart;

pub use reader::SharedReader;

#[cfg(doc)]
use crate::Error;
use crate::segment::{Key, Segment, SegmentInfo};
use crate::sync::fcntl_guard::{FcntlReadGuard, FcntlWriteGuard};
use crate::sync::record_lock::Wait;
use crate::sync::value_lock::LockBackend;
use crate::{FcntlLock, Result, SeqLock, ShmSafe};
use core::mem::ManuallyDrop;
use inner::{Inner, read_guard, with_view, zeroed};
use std::path::Path;
use std::time::Duration;

/// The lock of a [`Shared`] value: [`SeqLock`] or [`FcntlLock`]. Sealed: its methods are
/// internal; use it to write code generic over the lock.
///
/// # Examples
///
/// ```
/// use shmchan::{FcntlLock, Lock, SeqLock, Shared};
///
/// fn bump<L: Lock>(s: &Shared<u64, L>) -> u64 {
///     s.write(|n| {
///         *n += 1;
///         *n
///     })
/// }
/// assert_eq!(bump(&Shared::<u64, SeqLock>::anonymous(0)?), 1);
/// assert_eq!(bump(&Shared::<u64, FcntlLock>::anonymous(5)?), 6);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub trait Lock: LockBackend {}
impl Lock for SeqLock {}
impl Lock for FcntlLock {}

/// A `T` in shared memory, paired with a lock `L` ([`SeqLock`] by default, or [`FcntlLock`]).
///
/// Create it anonymous before `fork` (children share it), or keyed (System V or POSIX, by
/// [`Key`]) for unrelated processes. Every method that touches the value goes through the lock:
/// [`read`](Self::read) returns a consistent snapshot, [`write`](Self::write) updates the whole
/// value exclusively. The handle is `Send + Sync`: threads may share it by reference.
///
/// Cleanup: dropping an anonymous handle unmaps it. A keyed segment is removed when its last
/// handle detaches (System V) or when its creating handle drops (POSIX), unless
/// [`persist`](Self::persist) was called; [`remove`](Self::remove) removes it at once. An
/// [`FcntlLock`]'s lock file goes with its segment.
///
/// # Examples
///
/// ```
/// use shmchan::{SeqLock, Shared};
///
/// let s = Shared::<[u32; 4], SeqLock>::anonymous([0; 4])?;
/// s.write(|v| v[0] += 1);
/// s.update(|v| v.set(1, 7));
/// assert_eq!(s.read(), [1, 7, 0, 0]);
/// assert_eq!(s.with_view(|v| v.get(1)), Some(7));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Shared<T: ShmSafe, L: Lock = SeqLock> {
    inner: Inner<T, L>,
}

impl<T: ShmSafe, L: Lock> Shared<T, L> {
    /// A new anonymous shared value (`mmap(MAP_SHARED | MAP_ANONYMOUS)`), shared with the
    /// children this process `fork`s afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::NoMemory`] if the mapping is refused; for [`FcntlLock`], the errors of creating
    /// the lock file (e.g. [`Error::PermissionDenied`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(5)?;
    /// assert_eq!(s.read(), 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn anonymous(value: T) -> Result<Self> {
        let inner = Inner::create_with(value, |spec, init| Segment::anonymous(spec, init))?;
        Ok(Shared { inner })
    }

    /// Creates a keyed shared value holding all-zero bytes (a valid `T`: every bit pattern of a
    /// [`ShmSafe`] type is). Fails if the key is taken.
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if a segment with this key exists; the segment errors of creation
    /// ([`Error::InvalidSize`], [`Error::NoSpace`], [`Error::PermissionDenied`]...).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-create-{}", std::process::id()))?;
    /// let s = Shared::<u64>::create(key)?;
    /// assert_eq!(s.read(), 0);
    /// assert!(matches!(Shared::<u64>::create(key), Err(Error::Exists { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key) -> Result<Self> {
        Self::create_with(key, zeroed())
    }

    /// Creates a keyed shared value holding `value`.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-create-with-{}", std::process::id()))?;
    /// let s = Shared::<[u8; 3]>::create_with(key, *b"abc")?;
    /// assert_eq!(&s.read(), b"abc");
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create_with(key: Key, value: T) -> Result<Self> {
        let inner = Inner::create_with(value, |spec, init| Segment::create(key, spec, init))?;
        Ok(Shared { inner })
    }

    /// Opens an existing keyed shared value for reading and writing, checking that it holds a
    /// `T` (same layout fingerprint) guarded by the same kind of lock.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::LayoutMismatch`] for another type;
    /// [`Error::KindMismatch`] for another lock kind or a channel; [`Error::NotShmchan`] for a
    /// foreign segment; [`Error::PermissionDenied`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, FcntlLock, Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-open-{}", std::process::id()))?;
    /// let a = Shared::<u32>::create_with(key, 3)?;
    /// assert_eq!(Shared::<u32>::open(key)?.read(), 3);
    /// assert!(matches!(Shared::<u64>::open(key), Err(Error::LayoutMismatch { .. })));
    /// assert!(matches!(Shared::<u32, FcntlLock>::open(key), Err(Error::KindMismatch { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Self> {
        Ok(Shared {
            inner: Inner::open(key, false)?,
        })
    }

    /// Opens the keyed shared value, or creates it holding all-zero bytes.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open) and [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-ooc-{}", std::process::id()))?;
    /// let a = Shared::<u64>::open_or_create(key)?;
    /// a.store(9);
    /// let b = Shared::<u64>::open_or_create(key)?;
    /// assert_eq!(b.read(), 9);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open_or_create(key: Key) -> Result<Self> {
        Ok(Shared {
            inner: Inner::open_or_create(key, zeroed())?,
        })
    }

    /// Opens an existing keyed shared value read-only: the handle has no write methods and the
    /// segment is attached without write permission.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-ro-{}", std::process::id()))?;
    /// let _w = Shared::<u16>::create_with(key, 8)?;
    /// assert_eq!(Shared::<u16>::open_read_only(key)?.read(), 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open_read_only(key: Key) -> Result<SharedReader<T, L>> {
        Ok(SharedReader {
            inner: Inner::open(key, true)?,
        })
    }

    /// A consistent snapshot of the value.
    ///
    /// With [`SeqLock`] it never blocks and never writes shared memory; it retries only while
    /// writes complete during its copy. With [`FcntlLock`] it takes the read lock.
    ///
    /// # Panics
    ///
    /// With [`FcntlLock`], if the lock cannot be taken at all (`fcntl` failing with e.g.
    /// `ENOLCK`, or the lock file cannot be reopened after `fork`); [`try_read`](Self::try_read)
    /// returns these as errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<(u64)>::anonymous(1)?;
    /// assert_eq!(s.read(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn read(&self) -> T {
        self.inner.read_or_panic()
    }

    /// Like [`read`](Self::read), returning the lock's failure instead of panicking.
    ///
    /// # Errors
    ///
    /// Never with [`SeqLock`]; with [`FcntlLock`], [`Error::Os`] naming the failing `fcntl` or
    /// `open`.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64, shmchan::FcntlLock>::anonymous(1)?;
    /// assert_eq!(s.try_read()?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_read(&self) -> Result<T> {
        self.inner.read(None)
    }

    /// Like [`try_read`](Self::try_read), giving up after `timeout`: with [`SeqLock`] when
    /// every attempt overlapped a write (a writer that never pauses, or a process scribbling on
    /// the sequence word), with [`FcntlLock`] when a writer (perhaps stopped) keeps the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and those of [`try_read`](Self::try_read).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let s = shmchan::Shared::<u64>::anonymous(4)?;
    /// assert_eq!(s.read_timeout(Duration::from_millis(10))?, 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.read(Some(timeout))
    }

    /// Updates the whole value exclusively: `f` gets a private copy of the latest value, and what
    /// it leaves there is published atomically (readers see the old or the new value, never a
    /// mix). Returns what `f` returns.
    ///
    /// Waits as long as another live writer holds the lock. If the holder died (killed mid
    /// write), the lock is taken over silently and the last complete value is used; use
    /// [`write_timeout`](Self::write_timeout) to be told. If `f` panics, nothing is published.
    ///
    /// # Panics
    ///
    /// When called from inside another `write`/`update` of the same value on the same thread
    /// (it would deadlock), and in the cases of [`read`](Self::read)'s panics.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u64; 2]>::anonymous([1, 2])?;
    /// let old_sum = s.write(|v| {
    ///     let sum = v[0] + v[1];
    ///     *v = [v[1], sum];
    ///     sum
    /// });
    /// assert_eq!((old_sum, s.read()), (3, [2, 3]));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.inner
            .write(None, f)
            .unwrap_or_else(|e| panic!("shmchan: write failed: {e}"))
    }

    /// Like [`write`](Self::write), but returns at once when another live writer holds the lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when another live writer (or, for [`FcntlLock`], a reader) holds
    /// the lock ([`write_timeout`](Self::write_timeout) names the holder); [`Error::WriterDied`]
    /// when the holder was dead: the lock was recovered and `f` did **not** run (call again);
    /// [`Error::InvalidArgument`] for a nested write.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// s.try_write(|n| *n = 7)?;
    /// assert_eq!(s.read(), 7);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_write<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.inner.write(Some(Duration::ZERO), f)
    }

    /// Like [`write`](Self::write), waiting at most `timeout` for the lock.
    ///
    /// A stopped holder (`SIGSTOP`) is alive: it is never stolen from, and the wait ends with
    /// [`Error::Timeout`] naming its pid.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with the holder's pid (when known); [`Error::WriterDied`] `{ pid }`
    /// when the holder had died: the lock was recovered, the last complete value kept, and `f`
    /// did **not** run (call again); [`Error::Corrupted`] when the lock word held an impossible
    /// value (it was reset); [`Error::InvalidArgument`] for a nested write.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// s.write_timeout(Duration::from_millis(100), |n| *n += 1)?;
    /// assert_eq!(s.read(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn write_timeout<R>(&self, timeout: Duration, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.inner.write(Some(timeout), f)
    }

    /// Replaces the value.
    ///
    /// # Panics
    ///
    /// As [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// s.store(3);
    /// assert_eq!(s.read(), 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn store(&self, value: T) {
        self.write(|v| *v = value);
    }

    /// Reads some fields of one consistent snapshot through the value's view.
    ///
    /// # Panics
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u32; 3]>::anonymous([4, 5, 6])?;
    /// assert_eq!(s.with_view(|v| v.get(0).zip(v.get(2))), Some((4, 6)));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn with_view<R>(&self, f: impl FnOnce(T::View<'_>) -> R) -> R {
        with_view(&self.read(), f)
    }

    /// Updates some fields exclusively through the value's mutable view; the result is published
    /// like a [`write`](Self::write).
    ///
    /// For a struct or an array the view writes into the value field by field; for a primitive
    /// `T` (`u64`...) the view is the value itself, and what the closure leaves in it is
    /// published (`s.update(|n| *n += 1)`).
    ///
    /// # Panics
    ///
    /// As [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u32; 3]>::anonymous([1, 2, 3])?;
    /// s.update(|v| v.set(2, v.get(0).unwrap_or(0) * 10));
    /// assert_eq!(s.read(), [1, 2, 10]);
    ///
    /// let n = shmchan::Shared::<u64>::anonymous(41)?;
    /// n.update(|n| *n += 1);
    /// assert_eq!(n.read(), 42);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn update<R>(&self, f: impl FnOnce(&mut T::ViewMut<'_>) -> R) -> R {
        self.write(|value| {
            // SAFETY: `value` is a unique reference to a private copy, valid and exclusive for
            // the closure.
            let mut view = unsafe { T::view_mut(value) };
            let result = f(&mut view);
            // SAFETY: as above; the view's borrow of `value` ends here (it is only read).
            unsafe { T::commit_view_mut(&view, value) };
            result
        })
    }

    /// The segment holding the value: its header, [`info`](Segment::info) and the other
    /// segment operations.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// assert_eq!(s.segment().header().type_name, "u64");
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.inner.seg
    }

    /// The key of a keyed segment, `None` for an anonymous one.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::Shared::<u64>::anonymous(0)?.key().is_none());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn key(&self) -> Option<Key> {
        self.inner.seg.key()
    }

    /// Kernel metadata of the segment (`IPC_STAT` / `fstat`): size, attach count, pids, times,
    /// mode.
    ///
    /// # Errors
    ///
    /// As [`Segment::info`].
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// assert!(s.info()?.size >= 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn info(&self) -> Result<SegmentInfo> {
        self.inner.seg.info()
    }

    /// Changes the segment's permission bits (`IPC_SET` / `fchmod`), e.g. `0o640`.
    ///
    /// # Errors
    ///
    /// As [`Segment::set_mode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mode-{}", std::process::id()))?;
    /// let s = Shared::<u64>::create(key)?;
    /// s.set_mode(0o640)?;
    /// assert_eq!(s.info()?.mode.map(|m| m & 0o777), Some(0o640));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        self.inner.seg.set_mode(mode)
    }

    /// Locks the segment in memory (`SHM_LOCK`): no swapping.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] without `CAP_IPC_LOCK`; as [`Segment::lock_in_memory`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let s = shmchan::Shared::<u64>::create(shmchan::Key::raw(0x5443))?;
    /// s.lock_in_memory()?;
    /// s.unlock_in_memory()?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_in_memory(&self) -> Result<()> {
        self.inner.seg.lock_in_memory()
    }

    /// Undoes [`lock_in_memory`](Self::lock_in_memory) (`SHM_UNLOCK`).
    ///
    /// # Errors
    ///
    /// As [`Segment::unlock_in_memory`].
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::create(shmchan::Key::private())?;
    /// match s.lock_in_memory() {
    ///     Ok(()) => s.unlock_in_memory()?,
    ///     // Without CAP_IPC_LOCK the kernel refuses, and the error says how to grant it.
    ///     Err(e @ shmchan::Error::PermissionDenied { .. }) => assert!(e.to_string().contains("CAP_IPC_LOCK")),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn unlock_in_memory(&self) -> Result<()> {
        self.inner.seg.unlock_in_memory()
    }

    /// Keeps a keyed segment (and its lock file) after this handle and its creator are gone;
    /// remove it later with [`remove`](Self::remove) or `shmchan rm`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-persist-{}", std::process::id()))?;
    /// let mut s = Shared::<u64>::create_with(key, 7)?;
    /// s.persist();
    /// drop(s);
    /// let s = Shared::<u64>::open(key)?; // still there
    /// assert_eq!(s.read(), 7);
    /// s.remove()?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn persist(&mut self) {
        self.inner.seg.persist();
    }

    /// Wipes and removes the segment now (`IPC_RMID` / `shm_unlink`), and its lock file.
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-remove-{}", std::process::id()))?;
    /// let s = Shared::<u64>::create(key)?;
    /// s.remove()?;
    /// assert!(matches!(Shared::<u64>::open(key), Err(Error::NotFound { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn remove(self) -> Result<()> {
        let Shared { mut inner } = self;
        inner.removed = true;
        // SAFETY: `removed` is set, so `Inner::drop` will not touch `seg` again.
        let seg = unsafe { ManuallyDrop::take(&mut inner.seg) };
        let result = seg.remove();
        // Drops the lock, removing its lock file (the segment is gone).
        drop(inner);
        result
    }

    /// The fcntl lock file, for [`FcntlLock`] values.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{FcntlLock, SeqLock, Shared};
    ///
    /// assert!(Shared::<u64, SeqLock>::anonymous(0)?.lock_path().is_none());
    /// let f = Shared::<u64, FcntlLock>::anonymous(0)?;
    /// assert!(f.lock_path().is_some_and(|p| p.exists()));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_path(&self) -> Option<&Path> {
        self.inner.lock.lock_path()
    }
}

impl<T: ShmSafe> Shared<T, FcntlLock> {
    /// Takes the read lock and gives shared access to the value in place until the guard drops.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] naming the failing `fcntl`;
    /// [`Error::InvalidArgument`] when this thread already holds
    /// the write lock of this value (through any handle of this process).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u64; 2], shmchan::FcntlLock>::anonymous([1, 2])?;
    /// let g = s.lock_read()?;
    /// assert_eq!(g[1], 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_read(&self) -> Result<FcntlReadGuard<'_, T>> {
        read_guard(&self.inner)
    }

    /// Takes the write lock and gives exclusive access to the value in place until the guard
    /// drops.
    ///
    /// # Errors
    ///
    /// As [`lock_read`](Self::lock_read); [`Error::InvalidArgument`]
    /// also when this thread holds a read guard of this value (an upgrade would wait for itself:
    /// drop the read guard first).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u64; 2], shmchan::FcntlLock>::anonymous([1, 2])?;
    /// {
    ///     let mut g = s.lock_write()?;
    ///     g[0] += 10;
    /// }
    /// assert_eq!(s.read(), [11, 2]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_write(&self) -> Result<FcntlWriteGuard<'_, T>> {
        let guard = self.inner.lock.lock_write(Wait::Forever)?;
        // SAFETY: the payload holds an initialised `T`, mapped while `self` lives, writable
        // (this is not a read-only handle), and `guard` holds the write lock.
        Ok(unsafe { FcntlWriteGuard::new(self.inner.payload.cast(), guard) })
    }
}

impl<T: ShmSafe, L: Lock> core::fmt::Debug for Shared<T, L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("type", &T::LAYOUT.type_name)
            .field("lock", &L::KIND)
            .field("key", &self.key())
            .finish_non_exhaustive()
    }
}
