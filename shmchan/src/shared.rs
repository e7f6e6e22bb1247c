//! [`Shared<T, L>`]: a value in a segment paired with a lock, and [`SharedReader<T, L>`], its
//! read-only counterpart.
//!
//! Both locks offer the same methods: [`read`](Shared::read), [`write`](Shared::write),
//! [`store`](Shared::store), [`with_view`](Shared::with_view), [`update`](Shared::update),
//! [`try_write`](Shared::try_write), [`write_timeout`](Shared::write_timeout). The lock decides
//! what happens underneath (see [`SeqLock`] and [`FcntlLock`]).

#[cfg(feature = "async")]
mod async_ops;
mod in_place;
mod inner;
mod options;
mod reader;
mod restart;
mod segment_ops;

pub use options::SharedOptions;
pub use reader::SharedReader;

/// The permission bits of a new keyed value and its lock file unless [`SharedOptions::mode`]
/// says otherwise: its owner only.
pub(crate) const DEFAULT_MODE: u32 = 0o600;

#[cfg(doc)]
use crate::Error;
use crate::segment::{Key, Segment};
use crate::sync::value_lock::LockBackend;
use crate::{FcntlLock, Result, SeqLock, ShmSafe};
use inner::{Inner, with_view};
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
        let inner = Inner::create_with(Some(&value), false, DEFAULT_MODE, |spec, init| {
            Segment::anonymous(spec, init)
        })?;
        Ok(Shared { inner })
    }

    /// Creates a keyed shared value holding all-zero bytes (a valid `T`: every bit pattern of a
    /// [`ShmSafe`] type is). Fails if the key is taken.
    ///
    /// The value is zeroed in place: no `T` is built on the stack, so values far larger than a
    /// thread's stack are fine (write them with [`write`](Self::write), which copies a large
    /// value through the heap, read them with [`read_boxed`](Self::read_boxed) or
    /// [`read_into`](Self::read_into)).
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
        let inner = Inner::create_with(None, !key.is_private(), DEFAULT_MODE, |spec, init| {
            Segment::create(key, spec, init)
        })?;
        Ok(Shared { inner })
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
        let inner = Inner::create_with(
            Some(&value),
            !key.is_private(),
            DEFAULT_MODE,
            |spec, init| Segment::create(key, spec, init),
        )?;
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
            inner: Inner::open_or_create(key, None, DEFAULT_MODE)?,
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

    /// A consistent snapshot in a new heap allocation: for values too large for the stack
    /// (the copy never passes through it).
    ///
    /// # Panics
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u64; 4096]>::anonymous([3; 4096])?;
    /// let b: Box<[u64; 4096]> = s.read_boxed();
    /// assert_eq!(b[4095], 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_boxed(&self) -> Box<T> {
        self.inner.read_boxed()
    }

    /// A consistent snapshot written over `out` (reuse one buffer for many reads of a large
    /// value).
    ///
    /// # Panics
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<[u32; 8]>::anonymous([1; 8])?;
    /// let mut buf = Box::new([0u32; 8]);
    /// s.read_into(&mut buf);
    /// assert_eq!(*buf, [1; 8]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_into(&self, out: &mut T) {
        self.inner.read_over(out);
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

    /// How many writes to the value have completed (in any process), a counter that only
    /// grows: compare two calls to tell whether the value changed, or pass one to
    /// [`wait_changed`](Self::wait_changed).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// let seen = s.version();
    /// s.store(1);
    /// assert_eq!(s.version(), seen + 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn version(&self) -> u64 {
        self.inner.version()
    }

    /// Blocks until [`version`](Self::version) differs from `seen`, and returns the new
    /// version; at most `timeout` (`None`: as long as it takes).
    ///
    /// The wait sleeps on a futex in the segment, woken by the writer (from any process) that
    /// completes the next write; writers make that system call only when someone waits. Read
    /// the value after it returns: `let v = s.version(); ...; s.wait_changed(v, None)?;
    /// s.read()`. A change made between the two calls returns at once.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no write completed within `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// let seen = s.version();
    /// std::thread::scope(|t| {
    ///     t.spawn(|| s.store(5));
    ///     let now = s.wait_changed(seen, Some(Duration::from_secs(10)))?;
    ///     assert!(now > seen);
    ///     Ok::<(), shmchan::Error>(())
    /// })?;
    /// assert_eq!(s.read(), 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_changed(&self, seen: u64, timeout: Option<Duration>) -> Result<u64> {
        self.inner.wait_changed(seen, timeout)
    }

    /// Updates the whole value exclusively: `f` gets a private copy of the latest value, and what
    /// it leaves there is published atomically (readers see the old or the new value, never a
    /// mix). Returns what `f` returns.
    ///
    /// Waits as long as another live writer holds the lock. If the holder died (killed mid
    /// write), the lock is taken over silently and the last complete value is used; use
    /// [`write_timeout`](Self::write_timeout) to be told. If `f` panics, nothing is published.
    ///
    /// A `fork` inside `f` gives the child a copy of the write, not the lock: in the child,
    /// nothing is published or released, and the write fails (a panic here,
    /// [`Error::InvalidArgument`] from [`try_write`](Self::try_write) and
    /// [`write_timeout`](Self::write_timeout)).
    ///
    /// # Panics
    ///
    /// When called from inside another `write`/`update` of the same value on the same thread
    /// (it would deadlock), in a child forked inside `f`, and in the cases of
    /// [`read`](Self::read)'s panics.
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
    /// [`Error::InvalidArgument`] for a nested write, and in a child forked inside `f`.
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
    /// value (it was reset) or was overwritten while `f` ran (nothing was published);
    /// [`Error::InvalidArgument`] for a nested write, and in a child forked inside `f`.
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
