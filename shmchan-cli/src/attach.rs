//! Attaching a System V segment as a well-behaved participant of shmchan's cleanup protocol.
//!
//! A shmchan segment created with "remove when unused" (the default for keyed segments; the
//! `flags` word of the header, bit 0) is removed by whichever handle detaches last: each handle
//! detaches, then stats, and removes the segment if the attach count is 0. The tool's short
//! read-only attachment counts too: a handle dropped while `shmchan ls` is attached sees one
//! attachment left and keeps the segment. So the tool plays by the same rule: if someone else
//! was attached when it attached, and after its own detach nobody is, it was the last one and
//! removes the segment, as that handle would have. A segment nobody was attached to (a crash
//! leftover, or a persisted one) is never removed by looking at it.

use std::io;

use crate::procfs::SHM_DEST;
use crate::sys::{self, SegmentBytes, SysvAttachment};

/// Offset of the header's `flags` word and its "remove when unused" bit (DESIGN §3,
/// `shmchan/src/segment/header.rs`).
const OFF_FLAGS: u64 = 28;
const FLAG_REMOVE_WHEN_UNUSED: u32 = 1;
const MAGIC: &[u8; 8] = b"SHMCHAN\0";

/// A System V attachment that follows the last-detacher-removes rule on drop.
pub struct ParticipantAttachment {
    inner: Option<SysvAttachment>,
    shmid: i32,
    others_at_attach: u64,
}

impl ParticipantAttachment {
    /// Attaches `shmid` (read-only unless `writable`) and notes how many others are attached.
    pub fn attach(shmid: i32, writable: bool) -> io::Result<Self> {
        let inner = SysvAttachment::attach(shmid, writable)?;
        let others_at_attach = sys::shm_stat(shmid)
            .map(|st| st.shm_nattch.saturating_sub(1))
            .unwrap_or(0);
        Ok(ParticipantAttachment {
            inner: Some(inner),
            shmid,
            others_at_attach,
        })
    }

    fn remove_when_unused(a: &SysvAttachment) -> bool {
        let mut magic = [0u8; 8];
        let mut flags = [0u8; 4];
        a.read_at(0, &mut magic).is_ok()
            && &magic == MAGIC
            && a.read_at(OFF_FLAGS, &mut flags).is_ok()
            && u32::from_ne_bytes(flags) & FLAG_REMOVE_WHEN_UNUSED != 0
    }

    fn inner(&self) -> &SysvAttachment {
        // `inner` is `None` only inside `drop`.
        self.inner.as_ref().expect("attachment present until drop")
    }
}

/// The decision, apart from the system calls so it can be tested: remove when the segment asked
/// for it, someone else was attached with us, nobody is now, and no one removed it already.
pub fn last_detacher_removes(
    flagged: bool,
    others_at_attach: u64,
    nattch_now: u64,
    dest: bool,
) -> bool {
    flagged && others_at_attach > 0 && nattch_now == 0 && !dest
}

impl Drop for ParticipantAttachment {
    fn drop(&mut self) {
        let Some(a) = self.inner.take() else { return };
        // Read the flag just before detaching: `persist()` may have cleared it meanwhile.
        let flagged = Self::remove_when_unused(&a);
        drop(a);
        if !flagged || self.others_at_attach == 0 {
            return;
        }
        if let Ok(st) = sys::shm_stat(self.shmid) {
            let dest = u32::from(st.shm_perm.mode) & SHM_DEST != 0;
            if last_detacher_removes(flagged, self.others_at_attach, st.shm_nattch, dest) {
                // A second IPC_RMID by the other handle fails harmlessly (EINVAL/EIDRM).
                let _ = sys::shm_remove(self.shmid);
            }
        }
    }
}

impl SegmentBytes for ParticipantAttachment {
    fn len(&self) -> u64 {
        self.inner().len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner().read_at(offset, buf)
    }
    fn wipe(&self) -> io::Result<()> {
        self.inner().wipe()
    }
    fn load_u64_acquire(&self, offset: u64) -> io::Result<u64> {
        self.inner().load_u64_acquire(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_last_detacher_that_shared_the_segment_removes_it() {
        assert!(last_detacher_removes(true, 1, 0, false));
        // A crash leftover (nobody attached when we looked) stays for `rm --stale`.
        assert!(!last_detacher_removes(true, 0, 0, false));
        assert!(
            !last_detacher_removes(false, 1, 0, false),
            "persisted segments stay"
        );
        assert!(
            !last_detacher_removes(true, 1, 1, false),
            "someone is still attached"
        );
        assert!(!last_detacher_removes(true, 1, 0, true), "already removed");
    }
}
