//! `shmchan limits`: the kernel's System V limits, current usage, `/dev/shm` space, and how to
//! raise each.

use serde_json::json;

use crate::Output;
use crate::procfs;
use crate::sys;
use crate::table::{Align, Table, human_bytes};

/// SHMMIN is fixed at 1 byte in Linux (no sysctl).
const SHMMIN: u64 = 1;

fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Runs the command.
pub fn run(out: &Output) -> Result<(), String> {
    let segs = procfs::sysv_segments()?;
    let page = sys::page_size();
    let shmmax = read_sysctl("shmmax");
    let shmall = read_sysctl("shmall");
    let shmmni = read_sysctl("shmmni");
    let used_bytes: u64 = segs.iter().map(|s| s.size).sum();
    let used_pages: u64 = segs.iter().map(|s| s.size.div_ceil(page)).sum();
    let dev_shm = sys::statvfs(procfs::POSIX_DIR).ok();

    if out.json {
        let v = json!({
            "page_size": page,
            "shmmax": shmmax,
            "shmmin": SHMMIN,
            "shmmni": shmmni,
            "shmall_pages": shmall,
            "sysv_segments": segs.len(),
            "sysv_bytes": used_bytes,
            "sysv_pages": used_pages,
            "dev_shm": dev_shm.map(|d| json!({"total": d.total, "available": d.available})),
        });
        out.print_json(&v);
        return Ok(());
    }

    let opt = |v: Option<u64>| v.map_or("unknown".to_owned(), |v| v.to_string());
    let mut t = Table::new(&[
        ("LIMIT", Align::Left),
        ("VALUE", Align::Right),
        ("IN USE", Align::Right),
        ("MEANING / HOW TO RAISE", Align::Left),
    ]);
    t.row(vec![
        "shmmax".into(),
        opt(shmmax),
        "-".into(),
        "largest System V segment, bytes: sysctl -w kernel.shmmax=<bytes>".into(),
    ]);
    t.row(vec![
        "shmmin".into(),
        SHMMIN.to_string(),
        "-".into(),
        "smallest System V segment, bytes (fixed by Linux)".into(),
    ]);
    t.row(vec![
        "shmmni".into(),
        opt(shmmni),
        segs.len().to_string(),
        "most System V segments system-wide: sysctl -w kernel.shmmni=<count>".into(),
    ]);
    t.row(vec![
        "shmall".into(),
        opt(shmall),
        used_pages.to_string(),
        format!("total System V pages ({page} B): sysctl -w kernel.shmall=<pages>"),
    ]);
    let mut text = t.render();
    text.push_str(&format!(
        "\nSystem V segments: {} using {}\n",
        segs.len(),
        human_bytes(used_bytes)
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
