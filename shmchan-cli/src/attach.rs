//! Attaching a System V segment as a well-behaved participant of shmchan's cleanup protocol.
//!
//! A shmchan segment created with "remove when unused" (the default for keyed segments; a flag
//! word of the header) is removed by whichever handle detaches last: each handle
//! detaches, then stats, and removes the segment if the attach count is 0. The tool's short
//! read-only attachment counts too: a handle dropped while `shmchan ls` is attached sees one
//! attachment left and keeps the segment. So the tool plays by the same rule: if someone else
//! was attached when it attached, and after its own detach nobody is, it was the last one and
//! removes the segment, as that handle would have. A segment nobody was attached to (a crash
//! leftover, or a persisted one) is never removed by looking at it.

use std::io;

use shmchan::tool::{self, SysvAttachment};

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
        let others_at_attach = tool::sysv_stat(shmid)
            .map(|st| st.attach_count.saturating_sub(1))
            .unwrap_or(0);
        Ok(ParticipantAttachment {
            inner: Some(inner),
            shmid,
            others_at_attach,
        })
    }

    fn remove_when_unused(a: &SysvAttachment) -> bool {
        shmchan::format::header::read_raw(a)
            .is_ok_and(|raw| raw.has_magic() && raw.remove_when_unused())
    }

    /// The attachment's bytes.
    pub fn source(&self) -> &SysvAttachment {
        // `inner` is `None` only inside `drop`, after which nothing calls this.
        match &self.inner {
            Some(a) => a,
            None => unreachable!("the attachment is present until drop"),
        }
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
        if let Ok(st) = tool::sysv_stat(self.shmid) {
            let dest = st.marked_for_removal();
            if last_detacher_removes(flagged, self.others_at_attach, st.attach_count, dest) {
                // A second IPC_RMID by the other handle fails harmlessly (EINVAL/EIDRM).
                let _ = tool::sysv_remove(self.shmid);
            }
        }
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
