//! The classic System V shared memory exchange: two instances of one program swap messages
//! through a segment (`shmget`/`shmat`/`shmdt`/`shmctl(IPC_RMID)`).
//!
//! The first instance creates a segment whose key comes from `ftok` on the program's own
//! executable, writes a message, and waits for a second instance. The second instance (started
//! from another terminal) opens the segment by the same key, prints the message and answers.
//! The first prints the answer and destroys the segment (`IPC_RMID`, after wiping it).
//!
//! ```sh
//! cargo run --example sysv_exchange          # terminal 1: creates, waits
//! cargo run --example sysv_exchange          # terminal 2: answers
//! cargo run --example sysv_exchange -- --demo   # both roles in one command (smoke test)
//! ```
//!
//! Options: `--timeout SECS` (how long the first instance waits, default 120).
//!
//! The usual C version of this program leaves the hand-over unsynchronised (no semaphore); here
//! it is synchronised: the message is published with a `Release` store of a state word that the
//! reader loads with `Acquire`, and the waiting side sleeps on that word (a shared futex) instead
//! of polling.

use shmchan::{Error, Key, Segment};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Payload word 0: who wrote last.
const STATE: usize = 0;
const EMPTY: u32 = 0;
const MESSAGE_WRITTEN: u32 = 1;
const ANSWER_WRITTEN: u32 = 2;
/// Payload bytes 4..8: text length; text from byte 8.
const LEN_OFF: usize = 4;
const TEXT_OFF: usize = 8;
const PAYLOAD: usize = 256;

fn main() {
    if let Err(e) = run() {
        eprintln!("sysv_exchange: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let timeout = args
        .iter()
        .position(|a| a == "--timeout")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .transpose()?
        .map_or(Duration::from_secs(120), Duration::from_secs);
    // The key is based on the program's executable, as in the classic C program.
    let exe = std::env::current_exe()?;
    let key = Key::from_path(&exe, b'X')?;

    if args.iter().any(|a| a == "--demo") {
        return demo(key, &exe, timeout);
    }
    match Segment::create_raw(key, PAYLOAD, 0o600) {
        Ok(seg) => first_instance(seg, timeout),
        Err(Error::Exists { .. }) => second_instance(key),
        Err(e) => Err(e.into()),
    }
}

fn write_text(seg: &Segment, text: &str) -> Result<(), Error> {
    let bytes = &text.as_bytes()[..text.len().min(PAYLOAD - TEXT_OFF)];
    seg.write_bytes(TEXT_OFF, bytes)?;
    seg.write_bytes(LEN_OFF, &(bytes.len() as u32).to_ne_bytes())
}

fn read_text(seg: &Segment) -> Result<String, Error> {
    let mut len = [0u8; 4];
    seg.read_bytes(LEN_OFF, &mut len)?;
    let len = (u32::from_ne_bytes(len) as usize).min(PAYLOAD - TEXT_OFF);
    let mut text = vec![0u8; len];
    seg.read_bytes(TEXT_OFF, &mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Publishes what was just written: the state store is `Release`, the reader's load `Acquire`.
fn publish(seg: &Segment, state: u32) -> Result<(), Error> {
    seg.atomic_u32(STATE)
        .ok_or(Error::InvalidArgument {
            what: "segment too small".into(),
        })?
        .store(state, Ordering::Release);
    seg.wake_u32(STATE);
    Ok(())
}

/// Sleeps until the state word is `want`, at most `timeout`.
fn wait_state(seg: &Segment, want: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let now = seg.load_u32(STATE).unwrap_or(EMPTY);
        if now == want {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        seg.wait_u32(STATE, now, left.min(Duration::from_millis(500)));
    }
}

fn first_instance(seg: Segment, timeout: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    write_text(&seg, &format!("hello from the first instance (pid {pid})"))?;
    publish(&seg, MESSAGE_WRITTEN)?;
    println!(
        "[first, pid {pid}] created segment {} (key {}) and wrote a message",
        seg.info()?.shmid.unwrap_or(-1),
        seg.key().map(|k| k.to_string()).unwrap_or_default()
    );
    println!(
        "[first, pid {pid}] waiting up to {timeout:?} for a second instance: run the same command in another terminal"
    );
    let answered = wait_state(&seg, ANSWER_WRITTEN, timeout);
    if answered {
        println!("[first, pid {pid}] received: {:?}", read_text(&seg)?);
    } else {
        println!("[first, pid {pid}] nobody answered within {timeout:?}");
    }
    // The creator destroys the segment: wipe, then IPC_RMID.
    seg.remove()?;
    println!("[first, pid {pid}] segment removed");
    if answered {
        Ok(())
    } else {
        Err("no answer".into())
    }
}

fn second_instance(key: Key) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let seg = Segment::open_raw(key, false)?;
    let creator = seg.header().creator_pid;
    if !std::path::Path::new(&format!("/proc/{creator}")).exists() {
        // A first instance that was killed left its segment behind: clean up and start over.
        println!(
            "[second, pid {pid}] stale segment from dead pid {creator}: removing it; run again"
        );
        seg.remove()?;
        return Ok(());
    }
    if !wait_state(&seg, MESSAGE_WRITTEN, Duration::from_secs(5)) {
        return Err("the first instance never wrote its message".into());
    }
    println!("[second, pid {pid}] received: {:?}", read_text(&seg)?);
    write_text(
        &seg,
        &format!("hello back from the second instance (pid {pid})"),
    )?;
    publish(&seg, ANSWER_WRITTEN)?;
    println!("[second, pid {pid}] answered; detaching (the first instance removes the segment)");
    Ok(())
}

/// Both roles in one command: this process is the first instance and starts the second.
fn demo(
    key: Key,
    exe: &std::path::Path,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::create_raw(key, PAYLOAD, 0o600)?;
    let mut second = std::process::Command::new(exe).spawn()?;
    let result = first_instance(seg, timeout.min(Duration::from_secs(30)));
    let status = second.wait()?;
    result?;
    if !status.success() {
        return Err(format!("the second instance failed: {status}").into());
    }
    Ok(())
}
