//! Crash leftovers: a child process creates a shmchan segment and is killed with SIGKILL; the
//! tool must then call the segment stale (attach count 0, creator dead), `ls` must not remove it
//! by looking at it, `rm --stale` must remove exactly it.
//!
//! This file re-executes itself as the child (environment variable `SHMCHAN_CLI_STALE_CHILD`),
//! so it has its own `main` instead of the libtest harness.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::*;
use shmchan::{Key, Segment};

const CHILD_ENV: &str = "SHMCHAN_CLI_STALE_CHILD";

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
    let exe = std::env::current_exe().expect("own path");
    let mut kid = Command::new(exe)
        .env(CHILD_ENV, key.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the creator");
    let mut line = String::new();
    BufReader::new(kid.stdout.take().expect("child stdout"))
        .read_line(&mut line)
        .expect("read the child's handshake");
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

fn main() {
    if let Ok(key) = std::env::var(CHILD_ENV) {
        child(key.parse().expect("key from the parent"));
    }
    // `cargo test -- --list` and filters: this binary has one test and runs it.
    if std::env::args().any(|a| a == "--list") {
        println!("stale_segment_of_a_killed_creator_is_found_and_removed: test");
        return;
    }
    stale_segment_of_a_killed_creator_is_found_and_removed();
    println!("test stale_segment_of_a_killed_creator_is_found_and_removed ... ok");
}
