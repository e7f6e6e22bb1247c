//! One publisher, three subscribers, four processes found by name: a broadcast channel with a
//! fast subscriber, a slow one, and one that is killed (SIGKILL) mid-run.
//!
//! - In `block` mode the publisher waits for the slowest *live* subscriber: the slow one sets
//!   the pace, and the killed one (which stopped reading first) stops holding the publisher
//!   back as soon as it is dead. Every surviving subscriber receives every message.
//! - In `drop-oldest` mode the publisher never waits: a subscriber that falls a whole ring
//!   behind is told how many messages it missed (`Error::Lagged`), and continues with the
//!   oldest message still held. Received plus missed is every message, and none is torn.
//!
//! Each process checks what it received and exits non-zero if anything is wrong; the demo
//! checks every exit status.
//!
//! ```sh
//! cargo run --example pubsub                                    # both modes, non-interactive
//! cargo run --example pubsub -- subscriber /ticks slow 100000 block   # or by hand, in
//! cargo run --example pubsub -- publisher /ticks 100000 block 1       # two terminals
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmchan::broadcast::{Overflow, Publisher, Subscriber};
use shmchan::{Error, Key, ShmSafe};

/// One market tick; `check` is derived from the rest, so a torn message would show.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    volume: u64,
    check: u64,
}

impl Tick {
    fn new(seq: u64) -> Tick {
        let price = 100.0 + (seq % 1000) as f64 / 8.0;
        let volume = seq.wrapping_mul(7) % 10_000;
        Tick {
            seq,
            price,
            volume,
            check: Tick::checksum(seq, price, volume),
        }
    }

    fn checksum(seq: u64, price: f64, volume: u64) -> u64 {
        (seq ^ price.to_bits().rotate_left(17) ^ volume << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn is_valid(&self) -> bool {
        self.check == Tick::checksum(self.seq, self.price, self.volume)
    }
}

/// The tick after which the victim stops reading (and waits to be killed).
const VICTIM_STOPS_AT: u64 = 500;
/// How long anything in the demo may take before it counts as stuck.
const PATIENCE: Duration = Duration::from_secs(30);

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        None | Some("demo") => {
            for mode in ["block", "drop-oldest"] {
                demo(mode)?;
            }
            println!("-- done: every process saw what it should");
            Ok(())
        }
        Some("publisher") => {
            let (name, count, mode) = (req(arg(1))?, req(arg(2))?.parse()?, req(arg(3))?);
            let subscribers = arg(4).unwrap_or("1").parse()?;
            publish(name, count, overflow(mode)?, subscribers)
        }
        Some("subscriber") => {
            let (name, role, count, mode) = (
                req(arg(1))?,
                req(arg(2))?,
                req(arg(3))?.parse()?,
                req(arg(4))?,
            );
            subscribe(name, role, count, overflow(mode)?)
        }
        Some(other) => Err(usage(other).into()),
    }
}

fn usage(got: &str) -> String {
    format!(
        "unknown role {got:?}; usage: pubsub [demo | publisher NAME COUNT MODE [SUBSCRIBERS] \
         | subscriber NAME fast|slow|victim COUNT MODE], MODE = block | drop-oldest"
    )
}

fn req(a: Option<&str>) -> AnyResult<&str> {
    a.ok_or_else(|| usage("(missing argument)").into())
}

fn overflow(mode: &str) -> AnyResult<Overflow> {
    match mode {
        "block" => Ok(Overflow::Block),
        "drop-oldest" => Ok(Overflow::DropOldest),
        other => Err(format!("unknown mode {other:?}: block or drop-oldest").into()),
    }
}

/// Creates the channel, waits for `subscribers` to join, publishes `count` ticks and exits
/// (its handle drops: subscribers see `Disconnected` once they drained, and the name is
/// removed).
fn publish(name: &str, count: u64, overflow: Overflow, subscribers: usize) -> AnyResult<()> {
    let tx = Publisher::<Tick>::options()
        .capacity(64)
        .max_subscribers(8)
        .overflow(overflow)
        .create(Key::name(name)?)?;
    let deadline = Instant::now() + PATIENCE;
    while tx.peer_count() < subscribers {
        tx.wait_for_peer(deadline.saturating_duration_since(Instant::now()))?;
        if Instant::now() >= deadline {
            return Err("the subscribers did not join in time".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("publisher: {subscribers} subscribers joined; publishing {count} ticks");
    let t0 = Instant::now();
    for seq in 0..count {
        tx.send_timeout(Tick::new(seq), PATIENCE)
            .map_err(|e| format!("publisher stuck at tick {seq}: {e}"))?;
        if seq % 64 == 63 {
            // A market pace: bursts of 64 ticks (the fast subscriber keeps up, the slow one
            // does not).
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!(
        "publisher: {count} ticks in {:?}, {} subscribers left",
        t0.elapsed(),
        tx.peer_count()
    );
    Ok(())
}

/// Subscribes by name (waiting for the publisher to create it) and receives until the
/// publisher is gone, checking every tick.
fn subscribe(name: &str, role: &str, count: u64, overflow: Overflow) -> AnyResult<()> {
    let key = Key::name(name)?;
    let deadline = Instant::now() + PATIENCE;
    let rx = loop {
        match Subscriber::<Tick>::open(key) {
            Err(Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other?,
        }
    };
    // Every subscriber joined before the publisher started (it waits for them): from tick 0.
    let (mut next, mut received, mut missed, mut lags) = (0u64, 0u64, 0u64, 0u64);
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok(t) => {
                if !t.is_valid() {
                    return Err(format!("{role}: torn tick {t:?}").into());
                }
                if t.seq != next {
                    return Err(format!("{role}: tick {} where {next} was due", t.seq).into());
                }
                next = t.seq + 1;
                received += 1;
                if role == "slow" && received % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if role == "victim" && t.seq + 1 >= VICTIM_STOPS_AT {
                    // Tell the demo, then stop reading until killed: in block mode the
                    // publisher is held back by this process until it is dead.
                    println!(
                        "victim: stopped reading after tick {} ({received} received)",
                        t.seq
                    );
                    loop {
                        std::thread::park();
                    }
                }
            }
            Err(Error::Lagged { missed: n }) => {
                lags += 1;
                if lags <= 2 {
                    eprintln!("{role}: lagged, missed {n} ticks");
                }
                missed += n;
                next += n;
            }
            Err(Error::Disconnected) => break,
            Err(e) => return Err(format!("{role}: {e}").into()),
        }
    }
    println!(
        "{role}: received {received}, missed {missed} (told {lags} times), all in order and intact"
    );
    let ok = match overflow {
        Overflow::Block => received == count && missed == 0,
        _ => received + missed == count,
    };
    if !ok {
        return Err(format!("{role}: {received} + {missed} missed of {count}").into());
    }
    Ok(())
}

fn spawn(args: &[&str], piped: bool) -> std::io::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args);
    if piped {
        cmd.stdout(Stdio::piped());
    }
    cmd.spawn()
}

/// Waits for `child` at most until `deadline`; kills it if it is still running then.
fn wait(child: &mut Child, who: &str, deadline: Instant) -> AnyResult<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Err(format!("{who} did not finish in time").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn demo(mode: &str) -> AnyResult<()> {
    const COUNT: &str = "3000";
    let name = format!("/shmchan-pubsub-{mode}-{}", std::process::id());
    println!("-- {mode}: a publisher and three subscribers (fast, slow, victim) on {name}");
    let mut publisher = spawn(&["publisher", &name, COUNT, mode, "3"], false)?;
    let mut fast = spawn(&["subscriber", &name, "fast", COUNT, mode], false)?;
    let mut slow = spawn(&["subscriber", &name, "slow", COUNT, mode], false)?;
    let mut victim = spawn(&["subscriber", &name, "victim", COUNT, mode], true)?;
    let deadline = Instant::now() + PATIENCE;

    // The victim says when it stopped reading; then it is killed mid-run.
    let mut line = String::new();
    if let Some(out) = victim.stdout.take() {
        let mut out = BufReader::new(out);
        while out.read_line(&mut line)? > 0 && !line.starts_with("victim: stopped") {
            line.clear();
        }
    }
    print!("{line}");
    victim.kill()?;
    let status = victim.wait()?;
    println!("demo: killed the victim ({status})");

    let mut failed = Vec::new();
    for (who, child) in [
        ("publisher", &mut publisher),
        ("fast", &mut fast),
        ("slow", &mut slow),
    ] {
        let status = wait(child, who, deadline)?;
        if !status.success() {
            failed.push(format!("{who}: {status}"));
        }
    }
    if !line.starts_with("victim: stopped reading") {
        failed.push(format!("victim said {line:?}"));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{mode}: {}", failed.join(", ")).into())
    }
}
