//! `shmchan ls`: every segment, with shmchan's decoded headers.

use serde_json::Value as Json;

use crate::Output;
use crate::procfs;
use crate::record::{self, Location, Record};
use crate::table::{Align, Table, human_bytes};

/// Runs the command.
pub fn run(out: &Output) -> Result<(), String> {
    let records = record::list_all()?;
    if out.json {
        out.print_json(&Json::Array(records.iter().map(Record::to_json).collect()));
        return Ok(());
    }
    out.print(&render(&records));
    Ok(())
}

fn render(records: &[Record]) -> String {
    if records.is_empty() {
        return "no System V segment and no POSIX object\n".to_owned();
    }
    let mut t = Table::new(&[
        ("ID/NAME", Align::Left),
        ("KEY", Align::Left),
        ("SIZE", Align::Right),
        ("ATT", Align::Right),
        ("OWNER", Align::Left),
        ("MODE", Align::Left),
        ("CREATOR", Align::Left),
        ("STATUS", Align::Left),
        ("TYPE", Align::Left),
        ("KIND", Align::Left),
        ("LOCK", Align::Left),
        ("FINGERPRINT", Align::Left),
        ("FILL", Align::Right),
    ]);
    let mut notes = Vec::new();
    for r in records {
        let creator = match (r.creator, r.creator_liveness) {
            (Some(pid), Some(l)) => format!("{pid} {}", l.as_str()),
            (Some(pid), None) => pid.to_string(),
            _ => "-".to_owned(),
        };
        let mut status = r.probe.status().to_owned();
        if r.removed {
            status.push_str(", removed");
        } else if r.is_stale() {
            status.push_str(", stale");
        }
        let (ty, kind, lock, fp) = match r.probe.header() {
            Some(h) => (
                if h.segment_kind() == Some(shmchan::SegmentKind::Raw) {
                    "-".to_owned()
                } else {
                    h.type_name.clone()
                },
                h.kind_name(),
                h.lock_name(),
                format!("{:016x}", h.fingerprint),
            ),
            None => Default::default(),
        };
        if let Some(reason) = r.probe.reason() {
            if r.probe.status() != "not shmchan" {
                notes.push(format!(
                    "{}: {}: {reason}",
                    r.location.arg(),
                    r.probe.status()
                ));
                if r.probe.status() == "corrupted" {
                    notes.push(format!(
                        "  (remove it with `shmchan rm {}`)",
                        r.location.arg()
                    ));
                }
            }
        }
        let id = match &r.location {
            Location::Sysv { shmid, .. } => shmid.to_string(),
            Location::Posix { name } => name.clone(),
        };
        t.row(vec![
            id,
            r.key_text(),
            human_bytes(r.size),
            r.attached.to_string(),
            procfs::user_name(r.uid),
            format!("{:04o}", r.mode),
            creator,
            status,
            ty,
            kind,
            lock,
            fp,
            r.fill_text(),
        ]);
    }
    let mut text = t.render();
    for n in notes {
        text.push_str(&n);
        text.push('\n');
    }
    text
}
