//! `shmchan inspect`: a segment's kernel metadata, its shmchan header, and its decoded value or
//! channel state.

use serde_json::{Value as Json, json};

use crate::Output;
use crate::args::SegmentArg;
use crate::cmd::utc;
use crate::probe::Probe;
use crate::procfs;
use crate::reader;
use crate::record::{self, Location, Record};
use crate::value;
use shmchan::SegmentKind;

/// Everything `inspect` shows, computed once (watch re-computes it at each refresh).
pub struct Report {
    /// Lines before the fields.
    pub head: Vec<String>,
    /// Decoded fields: (path, type, value).
    pub fields: Vec<(String, String, String)>,
    /// Lines after the fields.
    pub tail: Vec<String>,
    /// The same as JSON.
    pub json: Json,
    /// Why part of the segment could not be read (the command then exits non-zero).
    pub unreadable: Option<String>,
}

/// Builds the report for one segment.
pub fn report(arg: &SegmentArg) -> Result<Report, String> {
    let r = record::find(arg)?;
    Ok(build(&r))
}

fn build(r: &Record) -> Report {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut fields = Vec::new();
    let mut json = r.to_json();
    head.push(match &r.location {
        Location::Sysv { shmid, .. } => format!("System V segment {shmid} (key {})", r.key_text()),
        Location::Posix { name } => format!("POSIX object {name}"),
    });
    head.push(format!(
        "  size      {} bytes, {} attached{}, owner {}, mode {:04o}",
        r.size,
        r.attached,
        match (r.removed, r.locked) {
            (true, _) => ", removed (IPC_RMID done, waiting for the last detach)",
            (false, true) => ", locked in memory (SHM_LOCK)",
            _ => "",
        },
        procfs::user_name(r.uid),
        r.mode
    ));
    let creator = match (r.creator, r.creator_liveness) {
        (Some(pid), Some(l)) => format!("pid {pid} ({})", l.as_str()),
        _ => "unknown".to_owned(),
    };
    // `watch` attaches at every refresh: say so rather than show our own pid as a stranger's.
    let last = r.lpid.map_or(String::new(), |p| {
        let us = if p == std::process::id() {
            " (this shmchan command)"
        } else {
            ""
        };
        format!(", last attach/detach pid {p}{us}")
    });
    head.push(format!(
        "  creator   {creator}{last}, changed {}",
        utc(r.changed)
    ));

    let h = match &r.probe {
        Probe::Shmchan(h) => h,
        other => {
            head.push(format!(
                "  status    {}: {}",
                other.status(),
                other.reason().unwrap_or_default()
            ));
            if let Some(h) = other.header() {
                head.push(format!(
                    "  header    version {}, {}, {}, {}, type {:?}, fingerprint {:016x}",
                    h.version,
                    h.kind_name(),
                    h.lock_name(),
                    h.state_name(),
                    h.type_name,
                    h.fingerprint
                ));
            }
            let unreadable = match other {
                Probe::Unreadable(why) => Some(why.clone()),
                _ => None,
            };
            return Report {
                head,
                fields,
                tail,
                json,
                unreadable,
            };
        }
    };
    head.push(format!(
        "  shmchan   format {}, {}, {}, {}",
        h.version,
        h.kind_name(),
        h.lock_name(),
        h.state_name()
    ));
    if h.segment_kind() == Some(shmchan::SegmentKind::Raw) {
        head.push("  type      none (raw bytes, accessed as atomic words)".to_owned());
    } else {
        head.push(format!(
            "  type      {} ({} bytes, align {}), fingerprint {:016x}",
            h.type_name, h.type_size, h.type_align, h.fingerprint
        ));
    }
    if !h.fingerprint_matches {
        head.push(
            "  WARNING   the fingerprint is not the hash of the stored layout: fields may be misdecoded"
                .to_owned(),
        );
    }
    head.push(format!(
        "  payload   offset {}, {} bytes; segment {} bytes",
        h.payload_off, h.payload_len, h.total_len
    ));
    if let Some(p) = &h.lock_path {
        head.push(format!("  lock file {p}"));
    }
    let bytes = match r.location.open(false) {
        Ok(b) => b,
        Err(e) => {
            tail.push(format!("cannot read the payload: {e}"));
            json["error"] = json!(e);
            return Report {
                head,
                fields,
                tail,
                json,
                unreadable: Some(e),
            };
        }
    };
    let bytes = bytes.source();
    let mut unreadable = None;
    if h.segment_kind() == Some(SegmentKind::Raw) {
        let n = h.payload_len.min(256);
        match bytes.read_vec(h.payload_off, n) {
            Ok(b) => {
                tail.push(format!(
                    "raw payload, first {n} of {} bytes:",
                    h.payload_len
                ));
                let mut previous: Option<&[u8]> = None;
                let mut starred = false;
                for (i, chunk) in b.chunks(16).enumerate() {
                    // Like hexdump: a run of identical lines is shown once, then `*`.
                    if previous == Some(chunk) {
                        if !starred {
                            tail.push("  *".to_owned());
                            starred = true;
                        }
                        continue;
                    }
                    previous = Some(chunk);
                    starred = false;
                    let hex: Vec<String> = chunk.iter().map(|x| format!("{x:02x}")).collect();
                    let text: String = chunk
                        .iter()
                        .map(|&c| {
                            if c.is_ascii_graphic() || c == b' ' {
                                c as char
                            } else {
                                '.'
                            }
                        })
                        .collect();
                    tail.push(format!("  {:06x}  {:<47}  {text}", i * 16, hex.join(" ")));
                }
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                json["raw_prefix_hex"] = json!(hex);
            }
            Err(e) => {
                tail.push(format!("raw payload unreadable: {e}"));
                unreadable = Some(e.to_string());
            }
        }
    } else if let Some(
        kind @ (SegmentKind::Channel
        | SegmentKind::Mpmc
        | SegmentKind::Rpc
        | SegmentKind::Broadcast),
    ) = h.segment_kind()
    {
        let state = match kind {
            SegmentKind::Channel => reader::channel_state(bytes, h),
            SegmentKind::Rpc => crate::rpc::rpc_state(bytes, h),
            SegmentKind::Broadcast => crate::broadcast::broadcast_state(bytes, h),
            _ => reader::mpmc_state(bytes, h),
        };
        match state {
            Ok((j, lines)) => {
                json["channel"] = j;
                tail.extend(lines);
            }
            Err(e) => {
                tail.push(format!("channel state unreadable: {e}"));
                json["error"] = json!(e);
            }
        }
    } else {
        match reader::read_value(bytes, h, r.creator_uid) {
            Ok(v) => {
                if let Some(w) = &v.writer {
                    head.push(format!("  writer    {w}"));
                    json["writer"] = json!(w);
                }
                head.push(format!("value ({}):", v.how));
                fields = value::flatten(&v.value, &v.ty);
                json["value"] = value::to_json(&v.value);
                json["read"] = json!(v.how);
            }
            Err(e) => {
                tail.push(format!("value unreadable: {e}"));
                json["error"] = json!(e);
            }
        }
    }
    Report {
        head,
        fields,
        tail,
        json,
        unreadable,
    }
}

/// The report as text; `changed` marks field lines to highlight (watch), `color` enables ANSI.
pub fn render(rep: &Report, changed: &dyn Fn(&str, &str) -> bool, color: bool) -> String {
    let mut s = String::new();
    for l in &rep.head {
        s.push_str(l);
        s.push('\n');
    }
    let wp = rep
        .fields
        .iter()
        .map(|f| f.0.chars().count())
        .max()
        .unwrap_or(0);
    let wt = rep
        .fields
        .iter()
        .map(|f| f.1.chars().count())
        .max()
        .unwrap_or(0);
    for (path, ty, val) in &rep.fields {
        let line = format!("{path:<wp$}  {ty:<wt$}  {val}");
        match (changed(path, val), color) {
            // Bold reverse video: visible on light and dark terminals alike.
            (true, true) => s.push_str(&format!("  \x1b[1;7m{line}\x1b[0m\n")),
            // Without a terminal, a marker in the margin says the same.
            (true, false) => s.push_str(&format!("* {line}\n")),
            (false, _) => s.push_str(&format!("  {line}\n")),
        }
    }
    for l in &rep.tail {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Runs the command.
pub fn run(out: &Output, arg: &SegmentArg) -> Result<(), String> {
    let rep = report(arg)?;
    if out.json {
        out.print_json(&rep.json);
    } else {
        out.print(&render(&rep, &|_, _| false, false));
    }
    match rep.unreadable {
        Some(why) => Err(format!("could not read all of the segment: {why}")),
        None => Ok(()),
    }
}
