//! `shmchan limits`: the kernel's System V limits, current usage, `/dev/shm` space, and how to
//! raise each.

use serde_json::json;

use crate::Output;
use crate::procfs;
use crate::table::{Align, Table, human_bytes};

/// Values at or above this are the kernel's "no limit" defaults (`ULONG_MAX - 2^24`...).
const NO_LIMIT: u64 = 1 << 60;

/// What `limits` reports, from the library (`shmctl(IPC_INFO / SHM_INFO)`) where it can, else
/// from `/proc/sys/kernel` and `/proc/sysvipc/shm`.
struct Report {
    shmmax: Option<u64>,
    shmmin: u64,
    shmmni: Option<u64>,
    shmall: Option<u64>,
    page: u64,
    segments: u64,
    pages: u64,
    bytes: u64,
}

fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn gather() -> Result<Report, String> {
    let segs = procfs::sysv_segments()?;
    let bytes = segs.iter().map(|s| s.size).sum();
    Ok(match shmchan::limits() {
        Ok(l) => Report {
            shmmax: Some(l.shmmax),
            shmmin: l.shmmin,
            shmmni: Some(l.shmmni),
            shmall: Some(l.shmall),
            page: l.page_size,
            segments: l.segments_in_use,
            pages: l.pages_in_use,
            bytes,
        },
        Err(_) => {
            let page = shmchan::tool::page_size();
            Report {
                shmmax: read_sysctl("shmmax"),
                // Fixed at 1 byte by Linux (no sysctl).
                shmmin: 1,
                shmmni: read_sysctl("shmmni"),
                shmall: read_sysctl("shmall"),
                page,
                segments: segs.len() as u64,
                pages: segs.iter().map(|s| s.size.div_ceil(page)).sum(),
                bytes,
            }
        }
    })
}

fn show(v: Option<u64>, unit_bytes: Option<u64>) -> String {
    match (v, unit_bytes) {
        (None, _) => "unknown".to_owned(),
        (Some(v), _) if v >= NO_LIMIT => format!("{v} (no limit)"),
        (Some(v), Some(unit)) => format!("{v} ({})", human_bytes(v.saturating_mul(unit))),
        (Some(v), None) => v.to_string(),
    }
}

/// Runs the command.
pub fn run(out: &Output) -> Result<(), String> {
    let r = gather()?;
    let dev_shm = shmchan::tool::statvfs(procfs::POSIX_DIR).ok();

    if out.json {
        let v = json!({
            "page_size": r.page,
            "shmmax": r.shmmax,
            "shmmin": r.shmmin,
            "shmmni": r.shmmni,
            "shmall_pages": r.shmall,
            "sysv_segments": r.segments,
            "sysv_pages": r.pages,
            "sysv_bytes": r.bytes,
            "dev_shm": dev_shm.map(|d| json!({"total": d.total, "available": d.available})),
        });
        out.print_json(&v);
        return Ok(());
    }

    let mut t = Table::new(&[
        ("LIMIT", Align::Left),
        ("VALUE", Align::Right),
        ("IN USE", Align::Right),
        ("MEANING / HOW TO RAISE", Align::Left),
    ]);
    t.row(vec![
        "shmmax".into(),
        show(r.shmmax, Some(1)),
        "-".into(),
        "largest System V segment, bytes: sysctl -w kernel.shmmax=<bytes>".into(),
    ]);
    t.row(vec![
        "shmmin".into(),
        r.shmmin.to_string(),
        "-".into(),
        "smallest System V segment, bytes (fixed by Linux)".into(),
    ]);
    t.row(vec![
        "shmmni".into(),
        show(r.shmmni, None),
        r.segments.to_string(),
        "most System V segments system-wide: sysctl -w kernel.shmmni=<count>".into(),
    ]);
    t.row(vec![
        "shmall".into(),
        show(r.shmall, Some(r.page)),
        r.pages.to_string(),
        format!(
            "total System V pages of {} B: sysctl -w kernel.shmall=<pages>",
            r.page
        ),
    ]);
    let mut text = t.render();
    text.push_str(&format!(
        "\nSystem V segments: {} using {}\n",
        r.segments,
        human_bytes(r.bytes)
    ));
    match dev_shm {
        Some(d) => text.push_str(&format!(
            "/dev/shm (POSIX objects): {} free of {}: mount -o remount,size=<bytes> /dev/shm\n",
            human_bytes(d.available),
            human_bytes(d.total)
        )),
        None => text.push_str("/dev/shm: not mounted (POSIX shared memory unavailable)\n"),
    }
    text.push_str(
        "Persist sysctl settings in /etc/sysctl.d/90-shm.conf (e.g. `kernel.shmmax = 1073741824`), \
         then `sysctl --system`.\n",
    );
    out.print(&text);
    Ok(())
}
