//! Restarts: a reader notices that its segment was removed or re-created under the same key,
//! and whether the creator still runs. The dead creator is this test binary re-executed, so
//! nothing runs after `fork` in a multi-threaded harness.

use shmchan::{Key, Segment};
use std::process::Command;

const ROLE: &str = "SHMCHAN_RESTART_TEST_CREATE";

fn name(tag: &str) -> String {
    format!("/shmchan-test-restart-{}-{tag}", std::process::id())
}

/// Runs only when re-executed with `ROLE` set: creates the named segment, then exits without
/// dropping it (as a killed publisher would leave it).
#[test]
fn creator_role() {
    let Ok(name) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::create_raw(Key::name(&name).expect("name"), 64, 0o600).expect("create");
    std::mem::forget(seg);
    std::process::exit(0);
}

#[test]
fn a_reader_sees_that_the_creator_is_dead() {
    let name = name("dead");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "creator_role", "--nocapture"])
        .env(ROLE, &name)
        .status()
        .expect("run the creator");
    assert!(status.success());
    let key = Key::name(&name).expect("name");
    let reader = Segment::open_any(key, true).expect("the segment outlives its creator");
    assert!(!reader.creator_alive(), "the creator exited");
    assert!(!reader.is_removed().expect("is_removed"));
    shmchan::tool::posix_unlink(&name).expect("clean up");
    assert!(reader.is_removed().expect("is_removed"));
}

#[test]
fn a_reader_of_a_restarted_posix_publisher_sees_its_segment_removed() {
    let name = name("posix");
    let key = Key::name(&name).expect("name");
    let first = Segment::create_raw(key, 64, 0o600).expect("create");
    let reader = Segment::open_any(key, true).expect("open");
    assert!(reader.creator_alive());
    assert!(!reader.is_removed().expect("is_removed"));
    // The publisher exits cleanly (unlinking its object) and restarts under the same name.
    drop(first);
    assert!(reader.is_removed().expect("is_removed"));
    let second = Segment::create_raw(key, 64, 0o600).expect("re-create");
    assert!(
        reader.is_removed().expect("is_removed"),
        "the name now designates another object"
    );
    assert!(!second.is_removed().expect("is_removed"));
    let fresh = Segment::open_any(key, true).expect("reopen");
    assert!(!fresh.is_removed().expect("is_removed"));
    drop(second);
}

#[test]
fn a_reader_of_a_removed_sysv_segment_sees_it_removed() {
    let key = Key::raw(0x5d00_0000 | (std::process::id() as i32 & 0xffff));
    let creator = Segment::create_raw(key, 64, 0o600).expect("create");
    let reader = Segment::open_any(key, true).expect("open");
    assert!(!reader.is_removed().expect("is_removed"));
    creator.remove().expect("remove");
    assert!(reader.is_removed().expect("is_removed"));
}

#[test]
fn anonymous_segments_are_never_removed() {
    let seg = Segment::anonymous_raw(8).expect("anonymous");
    assert!(!seg.is_removed().expect("is_removed"));
    assert!(seg.creator_alive());
}
