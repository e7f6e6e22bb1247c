//! `shmchan watch`: `inspect` refreshed in place, fields that changed since the previous refresh
//! highlighted (reverse video on a terminal, a `*` in the margin otherwise).

use std::collections::HashMap;
use std::time::Duration;

use crate::Output;
use crate::args::SegmentArg;
use crate::cmd::inspect;

/// Runs the command until interrupted or `count` refreshes.
pub fn run(
    out: &Output,
    arg: &SegmentArg,
    interval: Duration,
    count: Option<u64>,
) -> Result<(), String> {
    let mut previous: Option<HashMap<String, String>> = None;
    let mut n = 0u64;
    loop {
        let rep = inspect::report(arg).map_err(|e| {
            if n > 0 {
                format!("{e} (it was there {n} refreshes ago: removed?)")
            } else {
                e
            }
        })?;
        if out.json {
            // One JSON document per line (JSON Lines), for scripts.
            out.print(&format!("{}\n", rep.json));
        } else {
            let prev = previous.as_ref();
            let changed = |path: &str, val: &str| {
                prev.is_some_and(|p| p.get(path).is_none_or(|old| old != val))
            };
            let text = inspect::render(&rep, &changed, out.tty);
            if out.tty {
                // Home, clear, redraw: refresh in place.
                out.print(&format!("\x1b[H\x1b[2J{text}"));
            } else {
                out.print(&format!("{text}\n"));
            }
        }
        previous = Some(
            rep.fields
                .iter()
                .map(|(p, _, v)| (p.clone(), v.clone()))
                .collect(),
        );
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}
