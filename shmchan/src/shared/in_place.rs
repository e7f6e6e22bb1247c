//! In-place access to an [`FcntlLock`]ed value: guards that hold its record lock.

use super::Shared;
use super::inner::read_guard;
#[cfg(doc)]
use crate::Error;
use crate::sync::fcntl_guard::{FcntlReadGuard, FcntlWriteGuard};
use crate::sync::notify::fcntl_tail;
use crate::sync::record_lock::Wait;
use crate::{FcntlLock, Result, ShmSafe};

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
        // SAFETY: the payload holds an initialised `T` followed by its version words (checked
        // at open), mapped while `self` lives, writable (this is not a read-only handle), and
        // `guard` holds the write lock.
        Ok(unsafe {
            FcntlWriteGuard::new(
                self.inner.payload.cast(),
                fcntl_tail::<T>(self.inner.payload),
                guard,
            )
        })
    }
}
