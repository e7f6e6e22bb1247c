//! Guards that give in-place access to an [`FcntlLock`](crate::FcntlLock)ed value while its
//! record lock is held.

use super::notify::VersionWords;
use super::record_lock::RecordGuard;
use crate::ShmSafe;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Shared access to an [`FcntlLock`](crate::FcntlLock)ed value while its read lock is held;
/// derefs to `&T`. From [`Shared::lock_read`](crate::Shared::lock_read).
///
/// The reference points into shared memory. It is sound because every process that follows the
/// protocol takes the write lock before writing; a process that writes without it breaks that
/// promise (as it would for any lock).
///
/// # Panics
///
/// Dereferencing panics in a child forked while the guard was held: the lock is the parent's,
/// and the child's copy of the guard neither grants access nor releases anything.
///
/// # Examples
///
/// ```
/// let s = shmchan::Shared::<u64, shmchan::FcntlLock>::anonymous(3)?;
/// let g = s.lock_read()?;
/// assert_eq!(*g + 1, 4);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct FcntlReadGuard<'a, T: ShmSafe> {
    ptr: NonNull<T>,
    guard: RecordGuard,
    _life: PhantomData<&'a T>,
    _not_send: PhantomData<*const ()>,
}

/// Exclusive access to an [`FcntlLock`](crate::FcntlLock)ed value while its write lock is held;
/// derefs to `&mut T`. From [`Shared::lock_write`](crate::Shared::lock_write). See
/// [`FcntlReadGuard`] for why the reference is sound.
///
/// # Panics
///
/// Dereferencing panics in a child forked while the guard was held (as for
/// [`FcntlReadGuard`]): a child never gets `&mut T` without holding the lock itself.
///
/// # Examples
///
/// ```
/// let s = shmchan::Shared::<[u8; 4], shmchan::FcntlLock>::anonymous(*b"abcd")?;
/// let mut g = s.lock_write()?;
/// g[0] = b'x';
/// drop(g); // releases the lock
/// assert_eq!(&s.read(), b"xbcd");
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct FcntlWriteGuard<'a, T: ShmSafe> {
    ptr: NonNull<T>,
    /// Counts the write when the guard drops (the version readers wait on).
    versions: &'a VersionWords,
    guard: RecordGuard,
    _life: PhantomData<&'a mut T>,
    _not_send: PhantomData<*const ()>,
}

/// Refuses access through a guard copied into a forked child: the parent may release the lock
/// (and a writer change the value) while the child holds the reference.
#[track_caller]
fn check_owner(guard: &RecordGuard) {
    assert!(
        guard.in_owner_process(),
        "shmchan: an fcntl lock guard was used in a child forked while it was held; the lock belongs to the parent (take the lock again in the child)"
    );
}

impl<T: ShmSafe> core::ops::Deref for FcntlReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        check_owner(&self.guard);
        // SAFETY: the payload holds an initialised `T`, stays mapped for `'a`, and the read lock
        // (held until the guard drops) keeps writers out.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> core::ops::Deref for FcntlWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        check_owner(&self.guard);
        // SAFETY: as for the read guard; the write lock excludes everyone else.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> core::ops::DerefMut for FcntlWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        check_owner(&self.guard);
        // SAFETY: the write lock (held until the guard drops) excludes every other reader and
        // writer; `&mut self` makes this the only reference derived from the guard.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: ShmSafe> FcntlReadGuard<'_, T> {
    /// A guard over the value at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised `T` that stays mapped for `'a`, and `guard` holds the
    /// read (or write) lock that every writer of that value takes.
    pub(crate) unsafe fn new(ptr: NonNull<T>, guard: RecordGuard) -> Self {
        FcntlReadGuard {
            ptr,
            guard,
            _life: PhantomData,
            _not_send: PhantomData,
        }
    }
}

impl<'a, T: ShmSafe> FcntlWriteGuard<'a, T> {
    /// A guard over the value at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised, writable `T` that stays mapped for `'a`, `versions` are
    /// its version words, and `guard` holds the write lock that every reader and writer of that
    /// value takes.
    pub(crate) unsafe fn new(
        ptr: NonNull<T>,
        versions: &'a VersionWords,
        guard: RecordGuard,
    ) -> Self {
        FcntlWriteGuard {
            ptr,
            versions,
            guard,
            _life: PhantomData,
            _not_send: PhantomData,
        }
    }
}

impl<T: ShmSafe> Drop for FcntlWriteGuard<'_, T> {
    fn drop(&mut self) {
        // Still under the lock (the record guard is dropped after this): count the write and
        // wake waiters. Not in a forked child's copy, which wrote nothing.
        if self.guard.in_owner_process() {
            self.versions.bump();
        }
    }
}
