//! The segment side of a [`Shared`] value: its key, kernel metadata, permissions, memory
//! locking, persistence and removal.

use super::inner::Inner;
use super::{Lock, Shared};
use crate::segment::{Key, Segment, SegmentInfo};
#[cfg(doc)]
use crate::{Error, FcntlLock, SeqLock};
use crate::{Result, ShmSafe};
use core::mem::ManuallyDrop;
use std::path::Path;

impl<T: ShmSafe, L: Lock> Shared<T, L> {
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
    /// As [`Segment::set_mode`]; for [`FcntlLock`], `fchmod` of its lock
    /// file too (which gets the same mode; the segment's mode is changed first).
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
        self.inner.seg.set_mode(mode)?;
        // The lock file must let in whoever the segment lets in.
        self.inner.lock.set_mode(mode)
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
    /// The wipe happens under the value's writer lock: it first waits, as
    /// [`write`](Self::write) does, for the current writer and (with [`FcntlLock`]) for every
    /// read guard, in any process, to be dropped, so no reference into the value ever sees it
    /// change.
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`]; the lock errors of [`try_write`](Self::try_write) (e.g.
    /// [`Error::InvalidArgument`] when this thread holds a guard of the value through another
    /// handle), in which case nothing was removed.
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
        let Inner {
            seg,
            lock,
            payload,
            removed,
            ..
        } = &mut inner;
        let remove = || {
            *removed = true;
            // SAFETY: `removed` is set, so `Inner::drop` will not touch `seg` again; the closure
            // runs at most once.
            let seg = unsafe { ManuallyDrop::take(seg) };
            seg.remove()
        };
        // The wipe must not overlap a reader's `&T` (fcntl guards) or a writer: hold the writer
        // lock while the segment is wiped and removed.
        // SAFETY: the payload was initialised for `T` by this lock kind and is writable (this is
        // not a read-only handle); nothing touches it after `remove` unmapped it.
        let result = unsafe { lock.remove_exclusively::<T, _>(*payload, remove) };
        // Drops the lock, removing its lock file if the segment is gone.
        drop(inner);
        result?
    }

    /// The fcntl lock file of a keyed [`FcntlLock`] value; `None` for a [`SeqLock`] value and
    /// for an anonymous (or `IPC_PRIVATE`) one, whose lock file has no name: it is shared by
    /// `fork` only, so nothing is left behind however the process ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{FcntlLock, Key, SeqLock, Shared};
    ///
    /// assert!(Shared::<u64, SeqLock>::anonymous(0)?.lock_path().is_none());
    /// assert!(Shared::<u64, FcntlLock>::anonymous(0)?.lock_path().is_none());
    /// let key = Key::name(&format!("/shmchan-doc-lock-path-{}", std::process::id()))?;
    /// let f = Shared::<u64, FcntlLock>::create(key)?;
    /// assert!(f.lock_path().is_some_and(|p| p.exists()));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lock_path(&self) -> Option<&Path> {
        self.inner.lock.lock_path()
    }
}
