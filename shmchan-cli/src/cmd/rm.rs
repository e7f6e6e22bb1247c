//! `shmchan rm`: wipe, then `IPC_RMID` / `shm_unlink`. Refuses other programs' segments and
//! segments still in use unless `--force`; never asks anything (flags say it all, so scripts and
//! terminals behave the same).

use serde_json::json;

use crate::Output;
use crate::args::SegmentArg;
use crate::bytes;
use crate::probe::Probe;
use crate::record::{self, Location, Record};
use shmchan::format::liveness::Liveness;

/// What happened to one segment.
enum Outcome {
    Removed,
    WouldRemove,
    Refused(String),
    Failed(String),
}

/// Removes the named segments.
pub fn run(out: &Output, args: &[SegmentArg], force: bool, dry_run: bool) -> Result<(), String> {
    let mut results = Vec::new();
    let mut seen: Vec<Location> = Vec::new();
    for arg in args {
        let rec = match record::find(arg) {
            Ok(r) => r,
            Err(e) => {
                results.push((arg.to_string(), None, Outcome::Failed(e)));
                continue;
            }
        };
        // `123` and `0xKEY` may designate the same segment: remove it once.
        if seen.contains(&rec.location) {
            continue;
        }
        seen.push(rec.location.clone());
        let outcome = match refusal(&rec, force) {
            Some(why) => Outcome::Refused(why),
            None if dry_run => Outcome::WouldRemove,
            None => remove(&rec, force),
        };
        results.push((arg.to_string(), Some(rec), outcome));
    }
    report(out, results)
}

/// Removes every stale shmchan segment, or only those of `only` (the others are refused with the
/// reason they are not stale).
pub fn run_stale(out: &Output, only: &[SegmentArg], dry_run: bool) -> Result<(), String> {
    let candidates = if only.is_empty() {
        record::list_all()?
            .into_iter()
            .filter(Record::is_stale)
            .collect()
    } else {
        only.iter()
            .map(record::find)
            .collect::<Result<Vec<_>, _>>()?
    };
    let results = candidates
        .into_iter()
        .map(|rec| {
            let outcome = match not_stale_because(&rec) {
                Some(why) => Outcome::Refused(why),
                None if dry_run => Outcome::WouldRemove,
                None => remove(&rec, false),
            };
            (rec.location.arg(), Some(rec), outcome)
        })
        .collect();
    report(out, results)
}

fn not_stale_because(r: &Record) -> Option<String> {
    let arg = r.location.arg();
    if !matches!(r.probe, Probe::Shmchan(_)) {
        return Some(format!(
            "{arg} is not stale: {} ({})",
            r.probe.status(),
            r.probe.reason().unwrap_or_default()
        ));
    }
    if r.attached > 0 {
        return Some(format!(
            "{arg} is not stale: {} process(es) attached",
            r.attached
        ));
    }
    match (r.creator, r.creator_liveness) {
        (_, Some(Liveness::Dead)) => None,
        (Some(pid), Some(l)) => Some(format!(
            "{arg} is not stale: its creator pid {pid} is {}",
            l.as_str()
        )),
        _ => Some(format!("{arg} is not stale: its creator is unknown")),
    }
}

fn refusal(r: &Record, force: bool) -> Option<String> {
    if force {
        return None;
    }
    if r.probe.header().is_none() {
        return Some(format!(
            "{} is {} ({}): pass --force to remove it anyway",
            r.location.arg(),
            r.probe.status(),
            r.probe.reason().unwrap_or_default()
        ));
    }
    if r.attached > 0 {
        return Some(format!(
            "{} is in use by {} process(es){}: stop them, or pass --force",
            r.location.arg(),
            r.attached,
            r.creator
                .map(|p| format!(" (creator pid {p})"))
                .unwrap_or_default()
        ));
    }
    None
}

/// Wipes the bytes (so no reader still attached, or a later reuse, sees old data), then removes.
fn remove(r: &Record, force: bool) -> Outcome {
    let wiped = r.location.open(true).and_then(|seg| {
        // The attach count was 0 when we looked; if a process attached since, it is using the
        // segment: wiping it under that process is not what was asked.
        if let (false, Location::Sysv { shmid, .. }) = (force, &r.location) {
            let others =
                shmchan::tool::sysv_stat(*shmid).map_or(0, |st| st.attach_count.saturating_sub(1));
            if others > 0 && r.attached == 0 {
                return Err(format!(
                    "{others} process(es) attached since it was looked at"
                ));
            }
        }
        seg.wipe().map_err(|e| bytes::describe("wiping", &e))
    });
    if let Err(e) = wiped {
        if !force {
            return Outcome::Failed(format!(
                "{e}; nothing removed (pass --force to remove without wiping)"
            ));
        }
    }
    let res = match &r.location {
        Location::Sysv { shmid, .. } => shmchan::tool::sysv_remove(*shmid)
            .map_err(|e| bytes::describe(&format!("shmctl({shmid}, IPC_RMID)"), &e)),
        Location::Posix { name } => shmchan::tool::posix_unlink(name)
            .map_err(|e| bytes::describe(&format!("shm_unlink({name})"), &e)),
    };
    match res {
        Ok(()) => Outcome::Removed,
        Err(e) => Outcome::Failed(e),
    }
}

fn report(out: &Output, results: Vec<(String, Option<Record>, Outcome)>) -> Result<(), String> {
    let mut failures = 0;
    let mut json_rows = Vec::new();
    let mut text = String::new();
    for (arg, rec, outcome) in &results {
        let what = rec.as_ref().map_or(arg.clone(), describe);
        let (status, detail) = match outcome {
            Outcome::Removed => ("removed", None),
            Outcome::WouldRemove => ("would remove", None),
            Outcome::Refused(why) => ("refused", Some(why.clone())),
            Outcome::Failed(why) => ("failed", Some(why.clone())),
        };
        if matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_)) {
            failures += 1;
            eprintln!("shmchan: error: {}", detail.clone().unwrap_or_default());
        } else {
            text.push_str(&format!("{status} {what}\n"));
        }
        json_rows.push(json!({
            "segment": rec.as_ref().map_or(arg.clone(), |r| r.location.arg()),
            "status": status,
            "detail": detail,
        }));
    }
    if out.json {
        out.print_json(&json!(json_rows));
    } else if results.is_empty() {
        out.print("nothing to remove\n");
    } else {
        out.print(&text);
    }
    if failures > 0 {
        return Err(format!(
            "{failures} of {} segment(s) not removed",
            results.len()
        ));
    }
    Ok(())
}

fn describe(r: &Record) -> String {
    let ty = r
        .probe
        .header()
        .map(|h| format!(" ({} {})", h.kind_name(), h.type_name))
        .unwrap_or_default();
    match &r.location {
        Location::Sysv { shmid, .. } => {
            format!("System V segment {shmid} (key {}){ty}", r.key_text())
        }
        Location::Posix { name } => format!("POSIX object {name}{ty}"),
    }
}
