//! [`FcntlLock`]'s side of [`LockBackend`]: the record lock on the lock file, the version words
//! after the value, and removing the lock file with its segment.

use super::lock_file;
use super::notify::{VersionWords, fcntl_tail, fcntl_tail_offset};
use super::record_lock::{RecordGuard, RecordLock, Wait};
use super::value_lock::{FcntlLock, LockBackend, forked_inside};
use super::words::with_scratch;
use crate::segment::{Key, LockKind, Segment};
use crate::{Error, Result, ShmSafe};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use std::path::Path;
use std::time::Duration;

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

    #[cfg(feature = "async")]
    #[allow(private_interfaces)] // The trait is sealed: no one outside the crate calls it.
    unsafe fn change_words<'a, T: ShmSafe>(
        &self,
        payload: NonNull<u8>,
    ) -> &'a super::notify::ChangeWords {
        // SAFETY: an initialised payload for `T`, mapped while the words are used (caller).
        unsafe { fcntl_tail::<T>(payload) }.changes()
    }

    #[cfg(feature = "async")]
    unsafe fn order_after_announce<T: ShmSafe>(&self, _payload: NonNull<u8>) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}
