//! Forked workers update one `Shared<Stats, SeqLock>` while the parent prints consistent
//! snapshots with a live progress line.
//!
//! ```sh
//! cargo run --release --example fork_workers            # 4 workers
//! cargo run --release --example fork_workers -- 8 200000 # 8 workers, 200000 updates each
//! ```
//!
//! Every update keeps an invariant across several fields (`total` equals the sum of
//! `per_worker`, `last_value` was written by `last_worker`). The parent's snapshots come from
//! the seqlock: it never waits for a writer and never sees a half-written update, so the
//! invariant holds in every line it prints. A torn snapshot would make it stop with an error.

use shmchan::{SeqLock, Shared, ShmSafe};
use std::io::Write;
use std::time::{Duration, Instant};

const MAX_WORKERS: usize = 16;

#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Stats {
    /// Sum of `per_worker`.
    total: u64,
    /// Updates done by each worker.
    per_worker: [u64; MAX_WORKERS],
    /// Who wrote last, and the value it wrote (`worker * 1_000_000_000 + its count`).
    last_worker: u64,
    last_value: u64,
}

fn consistent(s: &Stats) -> bool {
    let sum: u64 = s.per_worker.iter().sum();
    let w = s.last_worker as usize;
    sum == s.total
        && (s.total == 0
            || (w < MAX_WORKERS && s.last_value == s.last_worker * 1_000_000_000 + s.per_worker[w]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let updates: u64 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    if !(1..=MAX_WORKERS).contains(&workers) {
        return Err(format!("workers must be 1..={MAX_WORKERS}").into());
    }

    // Created before fork: every child maps the same memory.
    let stats = Shared::<Stats, SeqLock>::anonymous(Stats::default())?;
    std::io::stdout().flush()?;
    let mut children = Vec::new();
    for w in 0..workers {
        // SAFETY: this program is single-threaded; the child only updates the shared value and
        // leaves with `_exit`.
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error().into()),
            0 => {
                for _ in 0..updates {
                    stats.write(|s| {
                        s.per_worker[w] += 1;
                        s.total += 1;
                        s.last_worker = w as u64;
                        s.last_value = w as u64 * 1_000_000_000 + s.per_worker[w];
                    });
                }
                // SAFETY: ends the child without running the parent's destructors again.
                unsafe { libc::_exit(0) }
            }
            pid => children.push(pid),
        }
    }

    let goal = workers as u64 * updates;
    let start = Instant::now();
    let mut snapshots = 0u64;
    let mut last_print = start;
    loop {
        let s = stats.read();
        snapshots += 1;
        if !consistent(&s) {
            return Err(format!("inconsistent snapshot: {s:?}").into());
        }
        if last_print.elapsed() >= Duration::from_millis(100) || s.total == goal {
            last_print = Instant::now();
            print!(
                "\r{:>10}/{goal} updates ({:5.1}%), last by worker {}, {snapshots} consistent snapshots read",
                s.total,
                100.0 * s.total as f64 / goal as f64,
                s.last_worker,
            );
            std::io::stdout().flush()?;
        }
        if s.total == goal {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err("workers did not finish in 5 minutes".into());
        }
    }
    println!();
    for pid in children {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a live out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("worker {pid} failed ({status:#x})").into());
        }
    }
    let s = stats.read();
    println!(
        "done in {:.2?}: {} updates, per worker {:?}",
        start.elapsed(),
        s.total,
        &s.per_worker[..workers]
    );
    Ok(())
}
