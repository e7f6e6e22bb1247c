//! `Shared::options()`: the mode reaches both the segment and the fcntl lock file, so another
//! user the mode lets in can read (0o640) or write (0o660); an error names the file that
//! refused. Root bypasses permission checks, so the other user is this test binary re-executed
//! as uid/gid 65534 (`nobody`).

use shmchan::{Error, FcntlLock, Key, Lock, SeqLock, Shared};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

const ROLE: &str = "SHMCHAN_TEST_OPTIONS_CHILD";
const NOBODY: u32 = 65534;

fn file_mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn set_mode_changes_the_lock_file_too() {
    let key = Key::name(&format!("/shmchan-test-opt-setmode-{}", std::process::id())).unwrap();
    let s = Shared::<u64, FcntlLock>::create(key).expect("create");
    let lock = s.lock_path().expect("a named lock file").to_owned();
    assert_eq!(file_mode(&lock), 0o600);
    s.set_mode(0o640).expect("set_mode");
    assert_eq!(s.info().expect("info").mode, Some(0o640));
    assert_eq!(file_mode(&lock), 0o640, "the lock file follows the segment");
}

#[test]
fn options_apply_mode_init_and_persist() {
    let key = Key::name(&format!("/shmchan-test-opt-apply-{}", std::process::id())).unwrap();
    let s = Shared::<u64, FcntlLock>::options()
        .mode(0o660)
        .init(9)
        .persist(true)
        .create(key)
        .expect("create");
    assert_eq!(s.read(), 9);
    assert_eq!(s.info().expect("info").mode, Some(0o660));
    assert_eq!(file_mode(s.lock_path().expect("lock file")), 0o660);
    drop(s);
    // Persisted: still there after its creator's handle is gone.
    let again = Shared::<u64, FcntlLock>::open(key).expect("persisted");
    assert_eq!(again.read(), 9);
    again.remove().expect("remove");
}

/// Creates a value of `mode` whose segment and lock file belong to group `nobody`, then runs
/// the child role as `nobody` with `expect` ("read", "write", or "lockfile": the segment allows
/// writing, the lock file only reading).
fn as_group_member<L: Lock>(lock: &str, tag: &str, mode: u32, expect: &str) {
    let name = format!("/shmchan-test-opt-{tag}-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let s = Shared::<u64, L>::options()
        .mode(mode)
        .init(41)
        .create(key)
        .expect("create");
    s.segment().set_owner(0, NOBODY).expect("chown the segment");
    if let Some(p) = s.lock_path() {
        std::os::unix::fs::chown(p, None, Some(NOBODY)).expect("chown the lock file");
        if expect == "lockfile" {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, format!("{lock} {name} {expect}"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{lock} {mode:o} {expect}: {stdout}");
    assert!(
        stdout.contains("1 passed"),
        "the child did not run: {stdout}"
    );
    if expect != "read" && expect != "lockfile" {
        assert_eq!(s.read(), 42, "the other user's write arrived");
    }
}

#[test]
fn another_user_reads_and_writes_as_the_mode_allows() {
    if !is_root() {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    as_group_member::<SeqLock>("seqlock", "sq-640", 0o640, "read");
    as_group_member::<SeqLock>("seqlock", "sq-660", 0o660, "write");
    as_group_member::<FcntlLock>("fcntl", "fc-640", 0o640, "read");
    as_group_member::<FcntlLock>("fcntl", "fc-660", 0o660, "write");
    as_group_member::<FcntlLock>("fcntl", "fc-lock", 0o660, "lockfile");
}

fn child<L: Lock>(key: Key, expect: &str) {
    let r = Shared::<u64, L>::open_read_only(key).expect("read-only open is allowed");
    assert_eq!(r.read(), 41);
    match (expect, Shared::<u64, L>::open(key)) {
        ("write", Ok(w)) => w.store(42),
        ("read", Err(e @ Error::PermissionDenied { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("EACCES"), "{msg}");
        }
        ("lockfile", Err(e @ Error::PermissionDenied { .. })) => {
            let msg = e.to_string();
            assert!(
                msg.contains(".lock"),
                "the error names the lock file: {msg}"
            );
        }
        (want, got) => panic!("expected {want}, got {:?}", got.map(|_| ())),
    }
}

/// Not a test on its own: the other user's half of the tests above.
#[test]
fn child_role() {
    let Ok(spec) = std::env::var(ROLE) else {
        return;
    };
    let mut it = spec.split(' ');
    let (lock, name, expect) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let key = Key::name(name).unwrap();
    match lock {
        "seqlock" => child::<SeqLock>(key, expect),
        _ => child::<FcntlLock>(key, expect),
    }
}
