//! Crashes: a child process creates a shmchan segment and is killed with SIGKILL; the tool must
//! then call the segment stale (attach count 0, creator dead), `ls` must not remove it by looking
//! at it, `rm --stale` must remove exactly it. A channel whose receiving process is killed shows
//! that process dead. A writer killed inside its write leaves the value readable, and the tool
//! names the dead lock holder.
//!
//! This file re-executes itself as the child (environment variable `SHMCHAN_CLI_STALE_CHILD`),
//! so it has its own `main` instead of the libtest harness.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::*;
use shmchan::{Key, Receiver, Segment, Sender, SeqLock, Shared};

const CHILD_ENV: &str = "SHMCHAN_CLI_STALE_CHILD";
const RECEIVER_ENV: &str = "SHMCHAN_CLI_RECEIVER_CHILD";
const WRITER_ENV: &str = "SHMCHAN_CLI_WRITER_CHILD";

/// The writer's child: take the seqlock's writer lock and stay inside the write until killed.
fn writer_child(key: i32) -> ! {
    let s = match Shared::<u64, SeqLock>::open(Key::raw(key)) {
        Ok(s) => s,
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    };
    s.write(|v| {
        *v = 99;
        println!("writing");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    });
    std::process::exit(0);
}

/// The receiving end's child: open the channel, say so, wait to be killed.
fn receiver_child(key: i32) -> ! {
    match Receiver::<u64>::open(Key::raw(key)) {
        Ok(rx) => {
            println!("ready");
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            drop(rx);
            std::process::exit(0);
        }
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    }
}

/// Spawns this binary in a child role, returns it once it printed its first line.
fn spawn_child(env: &str, key: i32) -> (std::process::Child, String) {
    let mut kid = Command::new(std::env::current_exe().expect("own path"))
        .env(env, key.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a child");
    let mut line = String::new();
    BufReader::new(kid.stdout.take().expect("child stdout"))
        .read_line(&mut line)
        .expect("read the child's handshake");
    (kid, line)
}

/// The child: create a keyed raw segment, say so, then wait for stdin to close (it never does:
/// the parent kills us first).
fn child(key: i32) -> ! {
    let seg = match Segment::create_raw(Key::raw(key), 4096, 0o600) {
        Ok(s) => s,
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    };
    let shmid = seg.info().ok().and_then(|i| i.shmid).unwrap_or(-1);
    println!("ready {shmid}");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

/// Removes the segment by id if the test did not (on failure).
struct RemoveOnDrop(i32);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no buffer; failing because it is already gone is fine.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

fn stale_segment_of_a_killed_creator_is_found_and_removed() {
    let key = test_key(40);
    let arg = format!("0x{:08x}", key as u32);
    let (mut kid, line) = spawn_child(CHILD_ENV, key);
    let shmid: i32 = line
        .strip_prefix("ready ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("child failed: {line}"));
    let _cleanup = RemoveOnDrop(shmid);
    let creator = kid.id();

    // Alive creator: not stale, and `rm --stale` refuses to take it.
    let row = ls_row_sysv(shmid).expect("ls lists the child's segment");
    assert_eq!(row["creator"], "alive", "{row}");
    assert_eq!(row["stale"], false, "{row}");
    let err = fails(&["rm", "--stale", &arg]);
    assert!(err.contains("not stale"), "{err}");
    assert!(sysv_exists(shmid));

    kid.kill().expect("SIGKILL the creator");
    kid.wait().expect("reap the creator");

    let row = ls_row_sysv(shmid).expect("ls still lists it: looking removes nothing");
    assert_eq!(row["creator_pid"], creator);
    assert_eq!(row["creator"], "dead", "{row}");
    assert_eq!(row["attached"], 0, "{row}");
    assert_eq!(row["stale"], true, "{row}");
    assert!(ok(&["ls"]).contains("shmchan, stale"));
    assert!(sysv_exists(shmid), "ls did not remove the crash leftover");

    let dry = json(&["rm", "--stale", "--dry-run"]);
    let listed = dry
        .as_array()
        .expect("rm --json is an array")
        .iter()
        .any(|r| {
            r["segment"].as_str() == Some(&*shmid.to_string()) && r["status"] == "would remove"
        });
    assert!(listed, "dry run lists the stale segment: {dry}");
    assert!(sysv_exists(shmid), "dry run removed nothing");

    // Only this one: other stale segments on the machine belong to other people's tests.
    let out = ok(&["rm", "--stale", &arg]);
    assert!(out.contains("removed"), "{out}");
    assert!(!sysv_exists(shmid), "rm --stale removed it");
}

fn killed_receiver_shows_as_dead_in_the_channel_state() {
    let key = test_key(41);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Sender::<u64>::create(Key::raw(key), 4).expect("create the channel");
    tx.send(42).expect("send");
    let (mut kid, line) = spawn_child(RECEIVER_ENV, key);
    assert_eq!(line.trim(), "ready", "child failed: {line}");
    let pid = u64::from(kid.id());
    let holders = |v: &serde_json::Value| v["channel"]["receiver"]["holders"].clone();

    let v = json(&["inspect", &arg]);
    assert_eq!(v["channel"]["receiver"]["state"], "connected", "{v}");
    assert_eq!(
        holders(&v),
        serde_json::json!([{ "pid": pid, "liveness": "alive" }])
    );

    kid.kill().expect("SIGKILL the receiver");
    kid.wait().expect("reap the receiver");

    let v = json(&["inspect", &arg]);
    assert_eq!(
        holders(&v),
        serde_json::json!([{ "pid": pid, "liveness": "dead" }]),
        "{v}"
    );
    let state = v["channel"]["receiver"]["state"]
        .as_str()
        .unwrap_or_default();
    assert!(state.starts_with("all holders dead"), "{v}");
    assert_eq!(v["channel"]["queued"], 1, "the message is still there: {v}");
    assert_eq!(v["channel"]["sender"]["state"], "connected");
    let text = ok(&["inspect", &arg]);
    assert!(text.contains(&format!("pid {pid} (dead)")), "{text}");
}

fn value_stays_readable_and_the_dead_writer_is_named() {
    let key = test_key(42);
    let arg = format!("0x{:08x}", key as u32);
    let s = Shared::<u64, SeqLock>::create_with(Key::raw(key), 5).expect("create");
    let (mut kid, line) = spawn_child(WRITER_ENV, key);
    assert_eq!(line.trim(), "writing", "child failed: {line}");
    let pid = kid.id();

    let v = json(&["inspect", &arg]);
    assert_eq!(v["value"], 5, "{v}");
    let writer = v["writer"].as_str().unwrap_or_default().to_owned();
    assert!(
        writer.contains(&format!("pid {pid}")) && writer.contains("(alive)"),
        "{v}"
    );

    kid.kill().expect("SIGKILL the writer inside its write");
    kid.wait().expect("reap the writer");

    let v = json(&["inspect", &arg]);
    assert_eq!(v["value"], 5, "the last complete value: {v}");
    let writer = v["writer"].as_str().unwrap_or_default();
    assert!(
        writer.contains(&format!("pid {pid}")) && writer.contains("dead"),
        "{v}"
    );
    // The next writer takes the lock over.
    s.store(6);
    assert_eq!(json(&["inspect", &arg])["value"], 6);
}

fn main() {
    if let Ok(key) = std::env::var(CHILD_ENV) {
        child(key.parse().expect("key from the parent"));
    }
    if let Ok(key) = std::env::var(RECEIVER_ENV) {
        receiver_child(key.parse().expect("key from the parent"));
    }
    if let Ok(key) = std::env::var(WRITER_ENV) {
        writer_child(key.parse().expect("key from the parent"));
    }
    // `cargo test -- --list` and filters: this binary has one test and runs it.
    let tests: [(&str, fn()); 3] = [
        (
            "stale_segment_of_a_killed_creator_is_found_and_removed",
            stale_segment_of_a_killed_creator_is_found_and_removed,
        ),
        (
            "killed_receiver_shows_as_dead_in_the_channel_state",
            killed_receiver_shows_as_dead_in_the_channel_state,
        ),
        (
            "value_stays_readable_and_the_dead_writer_is_named",
            value_stays_readable_and_the_dead_writer_is_named,
        ),
    ];
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    // Run one after the other: `ls` attaching while another test drops a handle is what the
    // serial lock of the other test files avoids.
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
}
