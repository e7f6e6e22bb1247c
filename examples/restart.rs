//! A publisher that can exit, crash and restart while a reader keeps going and notices: the
//! restart pattern for keyed values.
//!
//! - The publisher opens the value with `open_or_create`: the first start creates it, a restart
//!   after a crash finds it and carries on (the killed process could not clean up).
//! - The reader sleeps in `wait_changed` (a futex: no polling). When nothing changes for a
//!   while it asks why: `is_removed()` says the publisher removed the segment (a clean exit
//!   unlinks it), so the reader opens the key again; `creator_alive()` says the creator died,
//!   so the reader keeps its handle and waits for a restart to write into the same segment.
//!
//! ```sh
//! cargo run --example restart                          # the whole story, non-interactive
//! cargo run --example restart -- reader /board         # or by hand, in two terminals:
//! cargo run --example restart -- publisher /board 50   # (Ctrl-C it, start it again)
//! ```

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmchan::{Error, Key, Shared, ShmSafe};

/// What the board shows.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Board {
    /// Which publisher process wrote it.
    publisher: u32,
    /// Its tick counter (1, 2, ...).
    tick: u32,
    price: f64,
}

/// How long without a change before the reader asks whether the publisher is gone.
const QUIET: Duration = Duration::from_millis(300);
/// How long the reader waits for a publisher to (re)appear.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("/shmchan-restart-{}", std::process::id()));
    match args.first().map(String::as_str) {
        None | Some("demo") => demo(&name),
        Some("publisher") => {
            let ticks = args
                .get(2)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(u32::MAX);
            let hang = args.get(3).is_some_and(|m| m == "hang");
            publish(&name, ticks, hang)
        }
        Some("reader") => {
            let key = Key::name(&name)?;
            let mut board = open(key)?;
            loop {
                board = follow(key, board, None, u32::MAX)?.1;
            }
        }
        Some(other) => Err(format!(
            "unknown role {other:?}; usage: restart [demo | reader NAME | publisher NAME [TICKS]]"
        )
        .into()),
    }
}

/// Publishes `ticks` ticks, then exits (dropping the handle: a creator removes the segment) or,
/// with `hang`, waits to be killed.
fn publish(name: &str, ticks: u32, hang: bool) -> Result<(), Box<dyn std::error::Error>> {
    let board = Shared::<Board>::open_or_create(Key::name(name)?)?;
    let me = std::process::id();
    for tick in 1..=ticks {
        board.store(Board {
            publisher: me,
            tick,
            price: 100.0 + f64::from(tick) / 4.0,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    if hang {
        // Until killed: a crashed publisher never drops its handle.
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// Opens the board, waiting for a publisher to create it.
fn open(key: Key) -> shmchan::Result<Shared<Board>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Shared::<Board>::open(key) {
            Err(Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Why the reader stopped following.
#[derive(Debug, PartialEq)]
enum Stop {
    /// It saw `ticks` ticks of one publisher.
    Ticks,
    /// The segment was removed (and reopened: the new handle is returned).
    Removed,
}

/// Follows the board until tick `ticks` of `publisher` (any publisher: `None`) arrived, or the
/// segment went away (then reopens it). A dead creator is reported, and the reader keeps
/// waiting on the same segment for a restarted publisher.
fn follow(
    key: Key,
    board: Shared<Board>,
    publisher: Option<u32>,
    ticks: u32,
) -> Result<(Stop, Shared<Board>), Box<dyn std::error::Error>> {
    let done = |b: &Board| b.tick >= ticks && publisher.is_none_or(|p| p == b.publisher);
    let mut seen = board.version();
    // The publisher may have written everything before we opened.
    if done(&board.read()) {
        return Ok((Stop::Ticks, board));
    }
    let mut told_dead = false;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match board.wait_changed(seen, Some(QUIET)) {
            Ok(v) => {
                seen = v;
                told_dead = false;
                let b = board.read();
                println!(
                    "reader: tick {:>2} from pid {} at {:.2}",
                    b.tick, b.publisher, b.price
                );
                if done(&b) {
                    return Ok((Stop::Ticks, board));
                }
            }
            Err(Error::Timeout { .. }) if Instant::now() < deadline => {
                if board.is_removed()? {
                    println!("reader: the publisher removed the board; opening the key again");
                    drop(board);
                    return Ok((Stop::Removed, open(key)?));
                }
                if !board.creator_alive() && !told_dead {
                    println!("reader: the publisher died; waiting on the same board for a restart");
                    told_dead = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn spawn_publisher(name: &str, ticks: u32, hang: bool) -> std::io::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["publisher", name, &ticks.to_string()]);
    if hang {
        cmd.arg("hang");
    }
    cmd.spawn()
}

/// Three publisher lives: a clean exit, a crash (SIGKILL), a restart after the crash.
fn demo(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    const TICKS: u32 = 5;
    let key = Key::name(name)?;

    println!("-- publisher 1 starts, publishes {TICKS} ticks and exits cleanly");
    let mut p1 = spawn_publisher(name, TICKS, false)?;
    let (_, board) = follow(key, open(key)?, Some(p1.id()), TICKS)?;
    assert!(p1.wait()?.success());
    assert!(board.is_removed()?, "a clean exit removes the board");
    println!("reader: is_removed() is true: the publisher removed the board");

    println!("-- publisher 2 starts under the same name");
    let mut p2 = spawn_publisher(name, TICKS, true)?;
    drop(board);
    let (_, board) = follow(key, open(key)?, Some(p2.id()), TICKS)?;
    println!("-- publisher 2 is killed (SIGKILL): it cannot clean up");
    p2.kill()?;
    p2.wait()?;
    assert!(!board.creator_alive() && !board.is_removed()?);
    println!("reader: creator_alive() is false, is_removed() false: waiting on the same board");

    let mut p3 = spawn_publisher(name, TICKS, false)?;
    println!("-- publisher 3 starts: open_or_create finds the board and carries on");
    let (stop, board) = follow(key, board, Some(p3.id()), TICKS)?;
    assert_eq!(stop, Stop::Ticks, "the reader stayed on the same board");
    assert!(p3.wait()?.success());
    // Publisher 3 opened (did not create) the board: the reader, its last user, removes it.
    board.remove()?;
    println!("-- done: the reader followed every restart and removed the board");
    Ok(())
}
