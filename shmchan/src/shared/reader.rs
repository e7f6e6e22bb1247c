//! [`SharedReader`]: the read-only handle.

use super::inner::{Inner, read_guard, with_view};
use crate::segment::{Key, Segment, SegmentInfo};
use crate::sync::fcntl_guard::FcntlReadGuard;
#[cfg(doc)]
use crate::{Error, Shared};
use crate::{FcntlLock, Lock, Result, SeqLock, ShmSafe};
use std::path::Path;
use std::time::Duration;

/// A read-only handle on a shared value: [`read`](Self::read) and
/// [`with_view`](Self::with_view), no write methods. The segment is attached read-only
/// (`SHM_RDONLY` / `PROT_READ`), so even a bug cannot write it.
///
/// # Examples
///
/// ```
/// use shmchan::{Key, SeqLock, Shared};
///
/// let key = Key::name(&format!("/shmchan-doc-reader-{}", std::process::id()))?;
/// let w = Shared::<u64, SeqLock>::create_with(key, 41)?;
/// let r = Shared::<u64, SeqLock>::open_read_only(key)?;
/// w.write(|n| *n += 1);
/// assert_eq!(r.read(), 42);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct SharedReader<T: ShmSafe, L: Lock = SeqLock> {
    pub(super) inner: Inner<T, L>,
}

impl<T: ShmSafe, L: Lock> SharedReader<T, L> {
    /// A consistent snapshot of the value; see [`Shared::read`].
    ///
    /// # Panics
    ///
    /// As [`Shared::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert_eq!(r.read(), [1, 2]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn read(&self) -> T {
        self.inner.read_or_panic()
    }

    /// A consistent snapshot in a new heap allocation; see [`Shared::read_boxed`].
    ///
    /// # Panics
    ///
    /// As [`Shared::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()))?;
    /// let _w = shmchan::Shared::<[u64; 4096]>::create(key)?;
    /// let r = shmchan::Shared::<[u64; 4096]>::open_read_only(key)?;
    /// assert_eq!(r.read_boxed()[7], 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_boxed(&self) -> Box<T> {
        self.inner.read_boxed()
    }

    /// A consistent snapshot written over `out`; see [`Shared::read_into`].
    ///
    /// # Panics
    ///
    /// As [`Shared::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()))?;
    /// let _w = shmchan::Shared::<[u16; 3]>::create_with(key, [1, 2, 3])?;
    /// let r = shmchan::Shared::<[u16; 3]>::open_read_only(key)?;
    /// let mut out = [0; 3];
    /// r.read_into(&mut out);
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_into(&self, out: &mut T) {
        self.inner.read_over(out);
    }

    /// Like [`read`](Self::read), returning the lock's failure instead of panicking.
    ///
    /// # Errors
    ///
    /// As [`Shared::try_read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert_eq!(r.try_read()?, [1, 2]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_read(&self) -> Result<T> {
        self.inner.read(None)
    }

    /// A snapshot, giving up after `timeout`; see [`Shared::read_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Shared::read_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert_eq!(r.read_timeout(std::time::Duration::from_millis(10))?, [1, 2]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<T> {
        self.inner.read(Some(timeout))
    }

    /// How many writes to the value have completed; see [`Shared::version`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()))?;
    /// let w = shmchan::Shared::<u32>::create_with(key, 1)?;
    /// let r = shmchan::Shared::<u32>::open_read_only(key)?;
    /// let seen = r.version();
    /// w.store(2);
    /// assert_eq!(r.version(), seen + 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn version(&self) -> u64 {
        self.inner.version()
    }

    /// Blocks until the version differs from `seen`; see [`Shared::wait_changed`].
    ///
    /// A read-only handle cannot write the segment, so it cannot ask writers to wake it: it
    /// looks at the version again every millisecond (a [`Shared`] handle sleeps until woken).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no write completed within `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()))?;
    /// let w = shmchan::Shared::<u32>::create_with(key, 1)?;
    /// let r = shmchan::Shared::<u32>::open_read_only(key)?;
    /// let seen = r.version();
    /// assert!(r.wait_changed(seen, Some(Duration::from_millis(5))).is_err());
    /// w.store(2);
    /// assert_eq!(r.wait_changed(seen, None)?, seen + 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_changed(&self, seen: u64, timeout: Option<Duration>) -> Result<u64> {
        self.inner.wait_changed(seen, timeout)
    }

    /// Reads some fields of one consistent snapshot; see [`Shared::with_view`].
    ///
    /// # Panics
    ///
    /// As [`Shared::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert_eq!(r.with_view(|v| v.get(1)), Some(2));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn with_view<R>(&self, f: impl FnOnce(T::View<'_>) -> R) -> R {
        with_view(&self.read(), f)
    }

    /// The segment holding the value.
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert!(r.segment().is_read_only());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.inner.seg
    }

    /// The key of the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert_eq!(r.key(), Some(key));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn key(&self) -> Option<Key> {
        self.inner.seg.key()
    }

    /// Kernel metadata of the segment; see [`Shared::info`].
    ///
    /// # Errors
    ///
    /// As [`Segment::info`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert!(r.info()?.size > 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn info(&self) -> Result<SegmentInfo> {
        self.inner.seg.info()
    }

    /// The fcntl lock file, for [`FcntlLock`] values.
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-r{}-{}", line!(), std::process::id()));
    /// # let key = key?;
    /// # let _w = shmchan::Shared::<[u32; 2]>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2]>::open_read_only(key)?;
    /// assert!(r.lock_path().is_none());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_path(&self) -> Option<&Path> {
        self.inner.lock.lock_path()
    }
}

impl<T: ShmSafe> SharedReader<T, FcntlLock> {
    /// Takes the read lock; see [`Shared::lock_read`].
    ///
    /// # Errors
    ///
    /// As [`Shared::lock_read`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let key = shmchan::Key::name(&format!("/shmchan-doc-rl{}-{}", line!(), std::process::id()))?;
    /// let w = shmchan::Shared::<[u32; 2], shmchan::FcntlLock>::create_with(key, [1, 2])?;
    /// let r = shmchan::Shared::<[u32; 2], shmchan::FcntlLock>::open_read_only(key)?;
    /// assert_eq!(r.lock_read()?[1], 2);
    /// # drop(w);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_read(&self) -> Result<FcntlReadGuard<'_, T>> {
        read_guard(&self.inner)
    }
}

impl<T: ShmSafe, L: Lock> core::fmt::Debug for SharedReader<T, L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedReader")
            .field("type", &T::LAYOUT.type_name)
            .field("lock", &L::KIND)
            .field("key", &self.key())
            .finish_non_exhaustive()
    }
}
