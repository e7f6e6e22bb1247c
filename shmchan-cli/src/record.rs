//! One row of `shmchan ls`: what the kernel says about a segment plus what its header says.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use crate::args::SegmentArg;
use crate::attach::ParticipantAttachment;
use crate::probe::{self, Probe};
use shmchan::SegmentKind;
use shmchan::format::liveness::{Liveness, liveness};
use shmchan::tool::{PosixObject, posix_path};

use crate::bytes::{Opened, describe};
use crate::procfs::{self, PosixEntry, SysvEntry};
use crate::reader;

/// Where a segment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A System V segment.
    Sysv {
        /// Its id.
        shmid: i32,
        /// Its key (0 = private or removed).
        key: i32,
    },
    /// A POSIX object in `/dev/shm`.
    Posix {
        /// `/name`.
        name: String,
    },
}

impl Location {
    /// What to type to designate it again: the shmid or the name.
    pub fn arg(&self) -> String {
        match self {
            Location::Sysv { shmid, .. } => shmid.to_string(),
            Location::Posix { name } => name.clone(),
        }
    }

    /// Opens its bytes, read-only unless `writable`.
    pub fn open(&self, writable: bool) -> Result<Opened, String> {
        match self {
            Location::Sysv { shmid, .. } => ParticipantAttachment::attach(*shmid, writable)
                .map(Opened::Sysv)
                .map_err(|e| describe(&format!("shmat({shmid})"), &e)),
            Location::Posix { name } => PosixObject::open(name, writable)
                .map(Opened::Posix)
                .map_err(|e| describe(&format!("open({})", posix_path(name)), &e)),
        }
    }
}

/// A segment with everything known about it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it is.
    pub location: Location,
    /// Size in bytes.
    pub size: u64,
    /// Attached processes (System V: the kernel's count; POSIX: processes mapping it, from
    /// `/proc/*/maps`, as far as we may read them).
    pub attached: u64,
    /// Owner uid.
    pub uid: u32,
    /// The creator's uid (System V: the kernel's `cuid`; POSIX: the owner), whom an fcntl
    /// value's lock file must belong to.
    pub creator_uid: u32,
    /// Permission bits.
    pub mode: u32,
    /// `IPC_RMID` already called, waiting for the last detach.
    pub removed: bool,
    /// `SHM_LOCK`ed: its pages stay in memory.
    pub locked: bool,
    /// The creator pid: from the shmchan header when valid, else the kernel's (System V only).
    pub creator: Option<u32>,
    /// Whether the creator runs (start time checked when the header recorded one).
    pub creator_liveness: Option<Liveness>,
    /// Last attach/detach pid (System V).
    pub lpid: Option<u32>,
    /// Last change (ctime for System V, mtime for POSIX), seconds since the epoch.
    pub changed: i64,
    /// What its first bytes say.
    pub probe: Probe,
    /// For a channel: its state (capacity, head, tail, queued, peers), or why it is unreadable.
    pub channel: Option<Result<serde_json::Value, String>>,
}

/// Attaches once, reads the header and, for a channel, its indices.
fn look(location: &Location) -> (Probe, Option<Result<serde_json::Value, String>>) {
    let bytes = match location.open(false) {
        Ok(b) => b,
        Err(msg) => return (Probe::Unreadable(msg), None),
    };
    let probe = probe::probe(bytes.source());
    let channel = match &probe {
        Probe::Shmchan(h) if h.segment_kind() == Some(SegmentKind::Channel) => {
            Some(reader::channel_state(bytes.source(), h).map(|(j, _)| j))
        }
        Probe::Shmchan(h) if h.segment_kind() == Some(SegmentKind::Mpmc) => {
            Some(reader::mpmc_state(bytes.source(), h).map(|(j, _)| j))
        }
        Probe::Shmchan(h) if h.segment_kind() == Some(SegmentKind::Rpc) => {
            Some(crate::rpc::rpc_state(bytes.source(), h).map(|(j, _)| j))
        }
        Probe::Shmchan(h) if h.segment_kind() == Some(SegmentKind::Broadcast) => {
            Some(crate::broadcast::broadcast_state(bytes.source(), h).map(|(j, _)| j))
        }
        _ => None,
    };
    (probe, channel)
}

impl Record {
    fn from_sysv(e: &SysvEntry) -> Record {
        let location = Location::Sysv {
            shmid: e.shmid,
            key: e.key,
        };
        let (probe, channel) = look(&location);
        let mut r = Record {
            location,
            size: e.size,
            attached: e.nattch,
            uid: e.uid,
            creator_uid: e.cuid,
            mode: e.perms & 0o777,
            removed: e.marked_for_removal(),
            locked: e.perms & procfs::SHM_LOCKED != 0,
            creator: Some(e.cpid),
            creator_liveness: None,
            lpid: Some(e.lpid),
            changed: e.ctime,
            probe,
            channel,
        };
        r.fill_creator();
        r
    }

    fn from_posix(e: &PosixEntry, mappers: &HashMap<u64, u64>) -> Record {
        let location = Location::Posix {
            name: e.name.clone(),
        };
        let (probe, channel) = look(&location);
        let mut r = Record {
            location,
            size: e.size,
            attached: mappers.get(&e.ino).copied().unwrap_or(0),
            uid: e.uid,
            creator_uid: e.uid,
            mode: e.mode & 0o777,
            removed: false,
            locked: false,
            creator: None,
            creator_liveness: None,
            lpid: None,
            changed: e.mtime,
            probe,
            channel,
        };
        r.fill_creator();
        r
    }

    /// The header's creator (pid + start time, robust against pid reuse) wins over the kernel's
    /// `cpid` (pid only).
    fn fill_creator(&mut self) {
        if let Some(h) = self.probe.header() {
            self.creator = Some(h.creator_pid);
            self.creator_liveness = Some(liveness(h.creator_pid, h.creator_start));
        } else if let Some(pid) = self.creator {
            self.creator_liveness = Some(liveness(pid, 0));
        }
    }

    /// `IPC_RMID`'d segments keep a zero key; show `-` then. Private keys show `private`.
    pub fn key_text(&self) -> String {
        match &self.location {
            Location::Sysv { key: 0, .. } => "private".to_owned(),
            Location::Sysv { key, .. } => format!("0x{:08x}", *key as u32),
            Location::Posix { .. } => "-".to_owned(),
        }
    }

    /// Whether `rm --stale` may take it: a valid shmchan header (a corrupted one cannot be
    /// trusted to name its creator), nobody attached, and its creator dead.
    pub fn is_stale(&self) -> bool {
        matches!(self.probe, Probe::Shmchan(_))
            && self.attached == 0
            && self.creator_liveness == Some(Liveness::Dead)
    }

    /// `3/8` (queued / capacity) for a channel, `?` when its ring is unreadable.
    pub fn fill_text(&self) -> String {
        match &self.channel {
            Some(Ok(j)) => match (j["queued"].as_u64(), j["capacity"].as_u64()) {
                (Some(q), Some(c)) => format!("{q}/{c}"),
                _ => "corrupted".to_owned(),
            },
            Some(Err(_)) => "?".to_owned(),
            None => String::new(),
        }
    }

    /// The row as JSON.
    pub fn to_json(&self) -> Json {
        let (kind, id, key, name) = match &self.location {
            Location::Sysv { shmid, key } => (
                "sysv",
                Some(*shmid),
                Some(format!("0x{:08x}", *key as u32)),
                None,
            ),
            Location::Posix { name } => ("posix", None, None, Some(name.clone())),
        };
        let h = self.probe.header();
        json!({
            "type": kind,
            "shmid": id,
            "key": key,
            "name": name,
            "size": self.size,
            "attached": self.attached,
            "uid": self.uid,
            "owner": procfs::user_name(self.uid),
            "mode": format!("{:04o}", self.mode),
            "removed": self.removed,
            "locked_in_memory": self.locked,
            "creator_pid": self.creator,
            "creator": self.creator_liveness.map(Liveness::as_str),
            "last_pid": self.lpid,
            "changed": self.changed,
            "status": self.probe.status(),
            "reason": self.probe.reason(),
            "stale": self.is_stale(),
            "shmchan": h.map(|h| h.to_json()),
            "channel": match &self.channel {
                Some(Ok(j)) => j.clone(),
                Some(Err(e)) => json!({ "error": e }),
                None => Json::Null,
            },
        })
    }
}

/// Every System V segment and POSIX object.
pub fn list_all() -> Result<Vec<Record>, String> {
    let sysv = procfs::sysv_segments()?;
    let posix = procfs::posix_objects();
    let mappers = if posix.is_empty() {
        HashMap::new()
    } else {
        procfs::posix_mappers()
    };
    let mut out: Vec<Record> = sysv.iter().map(Record::from_sysv).collect();
    out.extend(posix.iter().map(|p| Record::from_posix(p, &mappers)));
    // A segment removed between the listing and our look is gone, not "unreadable".
    if out.iter().any(|r| matches!(r.probe, Probe::Unreadable(_))) {
        let ids: Vec<i32> = procfs::sysv_segments()?.iter().map(|e| e.shmid).collect();
        out.retain(|r| match (&r.probe, &r.location) {
            (Probe::Unreadable(_), Location::Sysv { shmid, .. }) => ids.contains(shmid),
            (Probe::Unreadable(_), Location::Posix { name }) => {
                procfs::posix_object(name).is_some()
            }
            _ => true,
        });
    }
    Ok(out)
}

/// The segment a command-line argument designates.
pub fn find(arg: &SegmentArg) -> Result<Record, String> {
    match arg {
        SegmentArg::Id(id) => procfs::sysv_segments()?
            .iter()
            .find(|e| e.shmid == *id)
            .map(Record::from_sysv)
            .ok_or_else(|| {
                format!("no System V segment with id {id} (see `shmchan ls` or `ipcs -m`)")
            }),
        SegmentArg::Key(key) => {
            let segs = procfs::sysv_segments()?;
            let found: Vec<&SysvEntry> = segs.iter().filter(|e| e.key == *key).collect();
            match found.as_slice() {
                [] => Err(format!(
                    "no System V segment with key 0x{:08x} (see `shmchan ls` or `ipcs -m`)",
                    *key as u32
                )),
                [one] => Ok(Record::from_sysv(one)),
                _ => Err(format!(
                    "several segments have key 0x{:08x}: give the shmid instead",
                    *key as u32
                )),
            }
        }
        SegmentArg::Name(name) => {
            let entry = procfs::posix_object(name).ok_or_else(|| {
                format!(
                    "no POSIX object {name} (no regular file {})",
                    posix_path(name)
                )
            })?;
            Ok(Record::from_posix(&entry, &procfs::posix_mappers()))
        }
    }
}
