//! The role of an end: which one process produces (or consumes) now.
//!
//! Several processes may hold a copy of one end (a `Sender` carried across `fork`), but only
//! one may write the ring's slots: two producers writing the same slot would deliver a torn
//! message. Each end therefore has a role word in the ring header, claimed with a
//! compare-and-swap **before** the first write (or read) of a process and released when that
//! process drops its handle. A live claim is never taken away; a claim whose process died or
//! `exec`ed (it no longer maps the ring) is taken over. A second user gets
//! [`Error::InUse`] and touches nothing.
//!
//! The word holds `pid | start_time_low32 << 32` (0: free), so a reused pid does not inherit a
//! claim.

use std::sync::atomic::{AtomicU64, Ordering};

use super::liveness::{self, Probe};
use crate::{Error, Result};

/// A role word in shared memory (all-zero: unclaimed).
#[repr(transparent)]
pub(crate) struct RoleWord(AtomicU64);

/// Packs a claimant identity.
fn pack(pid: u32, start_low32: u32) -> u64 {
    u64::from(pid) | u64::from(start_low32) << 32
}

/// The pid in a packed word.
fn pid_of(word: u64) -> u32 {
    word as u32
}

impl RoleWord {
    /// Claims the role for (`pid`, `start_low32`) unless another live process holds it.
    /// `holds(pid, start_low32)` says whether a recorded claimant still runs and maps the ring.
    ///
    /// # Errors
    ///
    /// The pid of the live process that holds the role.
    pub(crate) fn claim(
        &self,
        pid: u32,
        start_low32: u32,
        holds: impl Fn(u32, u32) -> bool,
    ) -> Result<(), u32> {
        let me = pack(pid, start_low32);
        let mut seen = self.0.load(Ordering::Acquire);
        loop {
            if seen == me {
                return Ok(());
            }
            if seen != 0 && holds(pid_of(seen), (seen >> 32) as u32) {
                return Err(pid_of(seen));
            }
            // Free, or its claimant is gone. AcqRel: the previous claimant's last index store
            // (released before it released the role, or before it died) is visible to us.
            match self
                .0
                .compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => seen = now,
            }
        }
    }

    /// Claims the role for the calling process (see [`Self::claim`]; `probe` tells whether a
    /// recorded claimant still holds the ring), then runs `resync` (the
    /// handle takes the ring's indices); gives the role back if that fails. Returns the
    /// identity claimed under.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] naming `what()` if a live process holds the role; `resync`'s error.
    pub(crate) fn claim_here(
        &self,
        probe: impl Fn() -> Probe,
        what: impl FnOnce() -> String,
        resync: impl FnOnce() -> Result<()>,
    ) -> Result<(u32, u32)> {
        let (pid, start_low32) = liveness::own_identity();
        // `probe` (a `/proc/self/maps` read the first time) only if someone else holds it.
        self.claim(pid, start_low32, |p, s| probe().process_holds_low32(p, s))
            .map_err(|holder| Error::InUse {
                what: what(),
                pid: holder,
            })?;
        if let Err(e) = resync() {
            self.release(pid, start_low32);
            return Err(e);
        }
        Ok((pid, start_low32))
    }

    /// Gives the role up if (`pid`, `start_low32`) holds it.
    pub(crate) fn release(&self, pid: u32, start_low32: u32) {
        let _ = self.0.compare_exchange(
            pack(pid, start_low32),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Stores the claim of (`pid`, `start_low32`) in a ring nobody else can see yet.
    pub(crate) fn set_initial(&self, pid: u32, start_low32: u32) {
        self.0.store(pack(pid, start_low32), Ordering::Relaxed);
    }

    /// The pid that holds the role, if any (diagnostics).
    pub(crate) fn holder(&self) -> Option<u32> {
        let w = self.0.load(Ordering::Acquire);
        (w != 0).then(|| pid_of(w))
    }
}

/// How a new handle stands towards its end's role and holder table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// Role not claimed (an anonymous channel: claimed by the first process that uses it);
    /// the holder is to be recorded.
    Unclaimed,
    /// Role claimed under this identity (by `open`); the holder is to be recorded.
    Claimed((u32, u32)),
    /// Role and holder written into the ring before it was published (by `create`).
    Created((u32, u32)),
}

impl Role {
    /// `role` of a handle that has not claimed in any process.
    pub(crate) const NONE: u64 = u64::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_claim_is_kept_and_a_dead_one_taken_over() {
        let word = RoleWord(AtomicU64::new(0));
        assert_eq!(word.claim(10, 1, |_, _| true), Ok(()));
        assert_eq!(word.claim(10, 1, |_, _| true), Ok(()));
        assert_eq!(word.claim(11, 1, |_, _| true), Err(10));
        assert_eq!(word.holder(), Some(10));
        // Pid 10 died (or exec'd).
        assert_eq!(word.claim(11, 1, |pid, _| pid != 10), Ok(()));
        // Only the claimant releases.
        word.release(10, 1);
        assert_eq!(word.holder(), Some(11));
        word.release(11, 1);
        assert_eq!(word.holder(), None);
        // A reused pid with another start time is another claimant.
        word.set_initial(12, 5);
        assert_eq!(word.claim(12, 6, |_, start| start == 6), Ok(()));
    }
}
