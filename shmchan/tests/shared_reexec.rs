//! Unrelated processes (this test binary re-executed, not forked) sharing keyed values: each
//! opens the segment by key, the fcntl lock through the path recorded in the header, and writers
//! exclude each other through the seqlock's owner word or the record lock.

use shmchan::{FcntlLock, Key, SeqLock, Shared};
use std::process::Command;

const ROLE: &str = "SHMCHAN_TEST_REEXEC_ROLE";
const NAME: &str = "SHMCHAN_TEST_REEXEC_NAME";
const INCREMENTS: u64 = 400;

fn increment_seq(key: Key) {
    let s = Shared::<[u64; 4], SeqLock>::open(key).expect("child opens the seqlock value");
    for _ in 0..INCREMENTS {
        s.write(|v| {
            let n = v[0] + 1;
            std::thread::yield_now();
            *v = [n; 4];
        });
    }
}

fn increment_fcntl(key: Key) {
    let s = Shared::<u64, FcntlLock>::open(key).expect("child opens the fcntl value");
    for _ in 0..INCREMENTS {
        s.write(|n| {
            let v = *n;
            std::thread::yield_now();
            *n = v + 1;
        });
    }
}

/// The children's entry point: does nothing in a normal test run.
#[test]
fn reexec_child_entry() {
    let (Ok(role), Ok(name)) = (std::env::var(ROLE), std::env::var(NAME)) else {
        return;
    };
    let key = Key::name(&name).expect("key from the parent");
    match role.as_str() {
        "seq" => increment_seq(key),
        "fcntl" => increment_fcntl(key),
        "fcntl-threads" => std::thread::scope(|s| {
            s.spawn(|| increment_fcntl(key));
            s.spawn(|| increment_fcntl(key));
        }),
        other => panic!("unknown role {other}"),
    }
}

fn run_children(role: &str, name: &str, n: usize) -> Vec<std::process::Child> {
    run_children_with(role, name, n, &[])
}

fn run_children_with(
    role: &str,
    name: &str,
    n: usize,
    env: &[(&str, &str)],
) -> Vec<std::process::Child> {
    let exe = std::env::current_exe().expect("test binary path");
    (0..n)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "reexec_child_entry",
                    "--exact",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(ROLE, role)
                .env(NAME, name)
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("re-exec the test binary")
        })
        .collect()
}

fn wait_all(children: Vec<std::process::Child>) {
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a child failed");
    }
}

#[test]
fn unrelated_processes_exclude_each_other_through_the_seqlock_owner_word() {
    let name = format!("/shmchan-test-reexec-seq-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let s = Shared::<[u64; 4], SeqLock>::create(key).unwrap();
    let children = run_children("seq", &name, 2);
    increment_seq(key);
    wait_all(children);
    assert_eq!(s.read(), [3 * INCREMENTS; 4]);
}

#[test]
fn unrelated_processes_exclude_each_other_through_the_recorded_lock_file() {
    let name = format!("/shmchan-test-reexec-fcntl-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let s = Shared::<u64, FcntlLock>::create(key).unwrap();
    let path = s.lock_path().unwrap().to_owned();
    let children = run_children("fcntl", &name, 2);
    increment_fcntl(key);
    wait_all(children);
    assert_eq!(s.read(), 3 * INCREMENTS);
    drop(s);
    assert!(!path.exists(), "the lock file goes with the segment");
}

/// The classic `F_SETLKW` fallback (kernels without OFD locks), forced through the environment in
/// every participant: processes exclude each other through the kernel, the two threads of each
/// process through the in-process state (classic locks alone would let them both in).
#[test]
fn classic_record_locks_exclude_processes_and_threads() {
    let name = format!("/shmchan-test-reexec-classic-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let s = Shared::<u64, FcntlLock>::create(key).unwrap();
    let children = run_children_with("fcntl-threads", &name, 3, &[("SHMCHAN_FCNTL_CLASSIC", "1")]);
    wait_all(children);
    assert_eq!(s.read(), 3 * 2 * INCREMENTS);
}
