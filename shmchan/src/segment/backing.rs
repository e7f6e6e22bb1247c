//! The three ways a segment's bytes are held (an anonymous mapping, a System V attachment, a
//! mapped POSIX object) and the dispatch from a [`Key`] to the right one.

use super::lifecycle::INIT_WAIT;
use super::{Key, header, posix, sysv};
use crate::error::{Error, Result, Target};
use crate::sys::mman::{Mapping, Region};
use std::time::Instant;

/// What a backing does when its handle drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cleanup {
    /// Nothing beyond unmapping/detaching.
    Never,
    /// Remove: creation did not complete.
    Always,
    /// Remove if the header's remove-when-unused flag is set (and, for System V, no one is
    /// attached any more).
    IfFlagged,
}

#[derive(Debug)]
pub(super) enum Backing {
    Anon(Mapping),
    SysV(sysv::SysvBacking),
    Posix(posix::PosixBacking),
}

impl Backing {
    pub(super) fn region(&self) -> Option<Region<'_>> {
        match self {
            Backing::Anon(m) => Some(m.region()),
            Backing::SysV(s) => s.region(),
            Backing::Posix(p) => Some(p.region()),
        }
    }

    /// The region this process may touch now: for a POSIX object, the part the object still
    /// backs (it may have been shrunk by a peer); System V segments and anonymous mappings
    /// cannot shrink.
    pub(super) fn live_region(&self) -> Option<Region<'_>> {
        match self {
            Backing::Posix(p) => Some(p.live_region()),
            _ => self.region(),
        }
    }

    pub(super) fn set_cleanup(&mut self, c: Cleanup) {
        match self {
            Backing::Anon(_) => {}
            Backing::SysV(s) => s.cleanup = c,
            Backing::Posix(p) => p.cleanup = c,
        }
    }
}

impl Backing {
    /// Creates the keyed backing exclusively, sized for `image`.
    pub(super) fn create(
        key: &Key,
        image: &header::Image,
        mode: u32,
        target: &Target,
    ) -> Result<Backing> {
        match (key.sysv_key(), key.posix_name()) {
            (Some(k), _) => Ok(Backing::SysV(sysv::SysvBacking::create(
                k,
                image.total_len,
                mode,
                target,
            )?)),
            (None, Some(name)) => Ok(Backing::Posix(posix::PosixBacking::create(
                name,
                image.total_len,
                mode,
                target,
            )?)),
            (None, None) => Err(Error::InvalidArgument {
                what: format!("{key} is neither a System V key nor a POSIX name"),
            }),
        }
    }

    /// Opens the existing keyed backing; a POSIX opener waits until `deadline` for its size.
    pub(super) fn open(key: &Key, read_only: bool, target: &Target) -> Result<Backing> {
        if key.is_private() {
            return Err(Error::InvalidArgument {
                what: "an IPC_PRIVATE segment cannot be opened by key: share it by fork, or create it with a real key".into(),
            });
        }
        match (key.sysv_key(), key.posix_name()) {
            (Some(k), _) => Ok(Backing::SysV(sysv::SysvBacking::open(
                k, read_only, target,
            )?)),
            (None, Some(name)) => Ok(Backing::Posix(posix::PosixBacking::open(
                name,
                read_only,
                Instant::now() + INIT_WAIT,
                target,
            )?)),
            (None, None) => Err(Error::InvalidArgument {
                what: format!("{key} is neither a System V key nor a POSIX name"),
            }),
        }
    }

    /// Removes the keyed segment now (`IPC_RMID` / `shm_unlink`); nothing for an anonymous one.
    pub(super) fn remove(&self, target: &Target) -> Result<()> {
        match self {
            Backing::Anon(_) => Ok(()),
            Backing::SysV(s) => s.remove(target),
            Backing::Posix(p) => p.unlink(target),
        }
    }
}
