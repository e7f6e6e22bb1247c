//! shmchan against iceoryx2 and pipes, in one run, between processes: this binary re-executes
//! itself once per peer (`shmchan-peers child ROLE ...`), so every transport runs between real,
//! unrelated processes on the same machine state.
//!
//! Cases (64-byte messages unless said otherwise):
//! - broadcast, one publisher to 1, 2 and 4 subscribers: throughput (every subscriber gets every
//!   message, nothing dropped) and latency (the publisher sends one message and waits for every
//!   subscriber's acknowledgement; half of that round trip is reported);
//! - loaned messages of 64 B to 4 MiB: round-trip latency, shmchan loans against iceoryx2 loans.
//!
//! Waiting: iceoryx2's subscribers have no blocking receive (its benchmark spins), so its peers
//! poll with `yield_now` between empty receives, which on a machine with fewer cores than
//! processes is what keeps it from starving the others. shmchan's ends use their default
//! adaptive wait (spin, yield, then sleep on a futex); the pipe blocks in `read`.
//!
//! `run.sh [--quick]` builds and runs it; results go to stdout and `target/peers.csv`.

mod ice;
mod pipe;
mod shm;
mod util;

use std::io::Write as _;
use util::{Case, Config};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let role = args.get(2).cloned().unwrap_or_default();
        let rest = &args[3..];
        match role.as_str() {
            r if r.starts_with("ice-") => ice::child(r, rest),
            r if r.starts_with("shm-") => shm::child(r, rest),
            r if r.starts_with("pipe-") => pipe::child(r, rest),
            other => panic!("unknown child role {other}"),
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = Config {
        messages: if quick { 50_000 } else { 200_000 },
        round_trips: if quick { 2_000 } else { 10_000 },
        loan_round_trips: if quick { 200 } else { 1_000 },
    };
    let machine = util::machine();
    println!("machine: {machine}");
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut record = |case: Case, value: f64| {
        println!("{:<48} {:>14.1} {}", case.name(), value, case.unit());
        rows.push((case.name(), value));
    };
    for subs in [1usize, 2, 4] {
        record(
            Case::new("broadcast throughput", "shmchan", subs),
            shm::throughput(&cfg, subs),
        );
        record(
            Case::new("broadcast throughput", "iceoryx2", subs),
            ice::throughput(&cfg, subs),
        );
        record(
            Case::new("broadcast throughput", "pipe", subs),
            pipe::throughput(&cfg, subs),
        );
        record(
            Case::new("broadcast latency", "shmchan", subs),
            shm::latency(&cfg, subs),
        );
        record(
            Case::new("broadcast latency", "iceoryx2", subs),
            ice::latency(&cfg, subs),
        );
        record(
            Case::new("broadcast latency", "pipe", subs),
            pipe::latency(&cfg, subs),
        );
    }
    for size in shm::LOAN_SIZES {
        record(
            Case::sized("loan latency", "shmchan", size),
            shm::loan_latency(&cfg, size),
        );
        record(
            Case::sized("loan latency", "iceoryx2", size),
            ice::loan_latency(&cfg, size),
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers.csv");
    let mut out = std::fs::File::create(&path).expect("write target/peers.csv");
    writeln!(out, "# {machine}").unwrap();
    writeln!(out, "case,value").unwrap();
    for (name, v) in rows {
        writeln!(out, "{name},{v:.1}").unwrap();
    }
    println!("wrote {}", path.display());
}
