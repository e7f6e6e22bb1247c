//! A forked producer streams typed ticks to its parent through a shmchan channel; the parent
//! checks every sequence number, prints a live rate, and a summary once the producer is done.
//!
//! ```sh
//! cargo run --release --example producer_consumer          # about 2 seconds
//! cargo run --example producer_consumer -- 0.5             # run the producer for 0.5 s
//! ```

use std::time::{Duration, Instant};

use shmchan::ShmSafe;

/// One market tick. `#[derive(ShmSafe)]` checks at compile time that it can live in shared
/// memory (no padding, no pointers); both processes use this same definition.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    /// Nanoseconds since the shared start instant, when the producer sent it.
    sent_ns: u64,
    price: f64,
    levels: [u32; 4],
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2.0);
    let run_for = Duration::from_secs_f64(seconds);

    // Create the channel before forking: the ring lives in an anonymous shared mapping that the
    // child inherits. 4096 slots of 40 bytes.
    let (tx, rx) = shmchan::channel::<Tick>(4096)?;
    // Both processes read the same monotonic clock: an `Instant` taken before the fork is a
    // common origin for latency measurements.
    let origin = Instant::now();

    // SAFETY: this program is single-threaded here, so the child may run normal code; it ends
    // with `_exit` and never returns into `main`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        drop(rx); // the child only produces
        let code = match produce(&tx, origin, run_for) {
            Ok(sent) => {
                eprintln!("producer (pid {}): sent {sent} ticks", std::process::id());
                0
            }
            Err(e) => {
                eprintln!("producer: {e}");
                1
            }
        };
        drop(tx); // closes the sending end: the consumer drains, then sees Disconnected
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(tx); // the parent only consumes

    println!(
        "consumer (pid {}) receiving from producer (pid {pid}), capacity {}",
        std::process::id(),
        rx.capacity()
    );
    let mut received = 0u64;
    let mut latency_sum = 0u128;
    let mut last_report = (Instant::now(), 0u64);
    let mut batch = Vec::with_capacity(1024);
    loop {
        batch.clear();
        match rx.recv_batch(&mut batch, 1024) {
            Ok(_) => {}
            Err(shmchan::Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
        let now_ns = origin.elapsed().as_nanos() as u64;
        for t in &batch {
            if t.seq != received || t.levels[0] != t.seq as u32 {
                return Err(format!("expected tick {received}, got {t:?}").into());
            }
            latency_sum += u128::from(now_ns.saturating_sub(t.sent_ns));
            received += 1;
        }
        let since = last_report.0.elapsed();
        if since >= Duration::from_millis(250) {
            let rate = (received - last_report.1) as f64 / since.as_secs_f64();
            println!(
                "  {:>12} ticks  {:>8.2} M ticks/s  last price {:.2}",
                received,
                rate / 1e6,
                batch.last().map_or(0.0, |t| t.price)
            );
            last_report = (Instant::now(), received);
        }
    }

    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let elapsed = origin.elapsed().as_secs_f64();
    println!("summary:");
    println!("  received      {received} ticks, in order, none lost or duplicated");
    println!(
        "  rate          {:.2} M ticks/s ({:.0} MB/s of {}-byte ticks)",
        received as f64 / elapsed / 1e6,
        received as f64 * size_of::<Tick>() as f64 / elapsed / 1e6,
        size_of::<Tick>()
    );
    if received > 0 {
        println!(
            "  mean latency  {:.1} us (send to batch receipt, includes queueing)",
            latency_sum as f64 / received as f64 / 1e3
        );
    }
    println!(
        "  producer      exited with status {}",
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        }
    );
    Ok(())
}

/// Sends ticks as fast as the consumer takes them, for `run_for`.
fn produce(tx: &shmchan::Sender<Tick>, origin: Instant, run_for: Duration) -> shmchan::Result<u64> {
    let mut seq = 0u64;
    let mut price = 100.0f64;
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        // Check the clock every 1024 ticks only.
        for _ in 0..1024 {
            price += if seq % 3 == 0 { 0.01 } else { -0.005 };
            let s = seq as u32;
            tx.send(Tick {
                seq,
                sent_ns: origin.elapsed().as_nanos() as u64,
                price,
                levels: [s, s.wrapping_add(1), s.wrapping_add(2), s.wrapping_add(3)],
            })?;
            seq += 1;
        }
    }
    Ok(seq)
}
