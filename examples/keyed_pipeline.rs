//! Two independent processes, started separately, connected by a channel found by its key
//! (a POSIX shared memory name). Whichever starts first creates the channel; the other opens it.
//!
//! ```sh
//! # in two terminals, in either order:
//! cargo run --example keyed_pipeline -- consumer /shmchan-pipeline
//! cargo run --example keyed_pipeline -- producer /shmchan-pipeline
//! # or let the example start both roles as separate processes (a smoke test):
//! cargo run --example keyed_pipeline
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use shmchan::{Error, Key, Receiver, Sender, ShmSafe};

/// One sensor reading. Both programs are built from this definition; a process built with a
/// different layout would get `Error::LayoutMismatch` when opening the channel.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Reading {
    seq: u64,
    sensor: u32,
    _pad: u32,
    celsius: f64,
}

const CAPACITY: usize = 1024;
/// How long a role waits for its peer to create or open the channel.
const PEER_WAIT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map_or("demo", String::as_str);
    let default_name = format!("/shmchan-pipeline-{}", std::process::id());
    let name = args.get(1).cloned().unwrap_or(default_name);
    let count: u64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    match role {
        "producer" => produce(&name, count),
        "consumer" => consume(&name, count),
        "demo" => demo(&name, count),
        other => Err(format!(
            "unknown role {other:?}; usage: keyed_pipeline [demo | producer NAME [COUNT] | consumer NAME [COUNT]]"
        )
        .into()),
    }
}

/// Retries `attempt` while the peer is still setting the channel up.
fn rendezvous<T>(
    what: &str,
    mut attempt: impl FnMut() -> shmchan::Result<T>,
) -> shmchan::Result<T> {
    let deadline = Instant::now() + PEER_WAIT;
    let mut said = false;
    loop {
        match attempt() {
            // Created and removed or still initialising by the peer: try again.
            Err(Error::Exists { .. } | Error::NotFound { .. } | Error::Timeout { .. })
                if Instant::now() < deadline =>
            {
                if !said {
                    eprintln!("{what}: waiting for the peer...");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn produce(name: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::name(name)?;
    // Open the consumer's channel if it exists, else create it (the consumer will open it).
    let tx = rendezvous("producer", || match Sender::<Reading>::open(key) {
        Err(Error::NotFound { .. }) => Sender::<Reading>::create(key, CAPACITY),
        other => other,
    })?;
    eprintln!("producer (pid {}): connected to {name}", std::process::id());
    for seq in 0..count {
        let sensor = (seq % 4) as u32;
        let celsius = 20.0 + f64::from(sensor) + (seq % 100) as f64 / 100.0;
        tx.send(Reading {
            seq,
            sensor,
            _pad: 0,
            celsius,
        })?;
    }
    eprintln!("producer: sent {count} readings");
    Ok(())
}

fn consume(name: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::name(name)?;
    let rx = rendezvous("consumer", || match Receiver::<Reading>::open(key) {
        Err(Error::NotFound { .. }) => Receiver::<Reading>::create(key, CAPACITY),
        other => other,
    })?;
    eprintln!("consumer (pid {}): connected to {name}", std::process::id());
    let t0 = Instant::now();
    let (mut n, mut sum) = (0u64, [0f64; 4]);
    loop {
        match rx.recv() {
            Ok(r) => {
                if r.seq != n {
                    return Err(format!("expected reading {n}, got {}", r.seq).into());
                }
                sum[r.sensor as usize % 4] += r.celsius;
                n += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "consumer: {n} readings in order in {dt:.3} s ({:.2} M/s)",
        n as f64 / dt / 1e6
    );
    for (sensor, s) in sum.iter().enumerate() {
        println!(
            "  sensor {sensor}: mean {:.3} C",
            s / (n as f64 / 4.0).max(1.0)
        );
    }
    if n != count {
        return Err(format!("expected {count} readings, got {n}").into());
    }
    Ok(())
}

/// Starts the two roles as two separate programs (this executable, re-run), like two
/// terminals would.
fn demo(name: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let n = count.to_string();
    let mut consumer = Command::new(&exe).args(["consumer", name, &n]).spawn()?;
    let mut producer = Command::new(&exe).args(["producer", name, &n]).spawn()?;
    let (p, c) = (producer.wait()?, consumer.wait()?);
    println!("demo: producer {p}, consumer {c}");
    if p.success() && c.success() {
        Ok(())
    } else {
        Err("a role failed".into())
    }
}
