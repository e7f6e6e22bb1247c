//! Noticing restarts: whether a handle's segment was removed (or its key now designates a new
//! segment), and whether its creator still runs.
//!
//! A reader of a keyed value keeps its mapping after the publisher removes the segment or
//! exits: it would go on reading a frozen value. These two questions let it notice and reopen.

use super::Segment;
use super::backing::Backing;
use crate::error::{Error, Result};
use crate::format::liveness::{Liveness, liveness};
use crate::sys;
use nix::errno::Errno;

impl Segment {
    /// Whether this handle's segment was removed, so that opening its key again would give
    /// another segment (or none): System V segments marked for removal (`IPC_RMID`, shown by
    /// the kernel as `SHM_DEST`), POSIX objects whose name was unlinked or now names another
    /// object. Anonymous segments are never removed while mapped.
    ///
    /// Readers call it when the value stops changing: a restarted publisher has created a new
    /// segment under the same key, and the reader should open it.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] or [`Error::Os`] if the kernel refuses to say.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Segment};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-removed-{}", std::process::id()))?;
    /// let creator = Segment::create_raw(key, 64, 0o600)?;
    /// let reader = Segment::open_any(key, true)?;
    /// assert!(!reader.is_removed()?);
    /// creator.remove()?;
    /// assert!(reader.is_removed()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_removed(&self) -> Result<bool> {
        match &self.backing {
            Backing::Anon(_) => Ok(false),
            Backing::SysV(s) => match sys::sysv::stat(s.shmid) {
                Ok(st) => Ok(st.mode & sys::sysv::SHM_DEST != 0),
                // The id is gone: removed and detached by everyone else (we are detached too,
                // or the kernel would keep it).
                Err(Errno::EIDRM | Errno::EINVAL) => Ok(true),
                Err(e) => Err(Error::from_errno(
                    "shmctl(IPC_STAT)",
                    e,
                    self.target.clone(),
                )),
            },
            Backing::Posix(p) => p
                .name_is_ours()
                .map(|ours| !ours)
                .map_err(|e| Error::from_errno("shm_open", e, self.target.clone())),
        }
    }

    /// Whether the process that created the segment still runs (its pid and start time, from
    /// the header, so a later process that reuses the pid does not count). A stopped creator
    /// counts as running.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(8)?;
    /// assert!(seg.creator_alive());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn creator_alive(&self) -> bool {
        liveness(self.header.creator_pid, self.header.creator_start_time) != Liveness::Dead
    }
}
