//! `version()` and `wait_changed()`: a reader in another process sleeps until a write completes
//! (futex, no polling), for both locks, through writes by closure, `store` and (fcntl) a write
//! guard; and times out when nothing is written.

use shmchan::{Error, FcntlLock, Key, Lock, SeqLock, Shared};
use std::time::{Duration, Instant};

mod shared_support;
use shared_support::{Child, Handshake, serial};

/// A child waits for each of three writes by the parent and reports what it saw.
fn reader_in_another_process_wakes_on_each_write<L: Lock>(write: impl Fn(&Shared<u64, L>, u64))
where
    Shared<u64, L>: Sync,
{
    let s = Shared::<u64, L>::anonymous(0).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        let mut seen = s.version();
        for round in 1..=3u32 {
            hs.set(round); // "waiting for write `round`"
            match s.wait_changed(seen, Some(Duration::from_secs(20))) {
                Ok(v) if v > seen => seen = v,
                _ => return 1,
            }
            if s.read() < u64::from(round) {
                return 2;
            }
        }
        0
    });
    for round in 1..=3u32 {
        hs.wait_for(round);
        write(&s, u64::from(round));
    }
    assert_eq!(child.wait(), 0);
    assert_eq!(s.version(), 3);
}

#[test]
fn seqlock_reader_in_another_process_wakes_on_each_write() {
    let _s = serial();
    reader_in_another_process_wakes_on_each_write::<SeqLock>(|s, v| s.store(v));
}

#[test]
fn fcntl_reader_in_another_process_wakes_on_each_write_and_guard() {
    let _s = serial();
    reader_in_another_process_wakes_on_each_write::<FcntlLock>(|s, v| {
        if v == 2 {
            *s.lock_write().unwrap() = v;
        } else {
            s.write(|n| *n = v);
        }
    });
}

#[test]
fn wait_changed_times_out_and_version_counts_writes() {
    let _s = serial();
    let s = Shared::<[u8; 3], SeqLock>::anonymous(*b"abc").unwrap();
    assert_eq!(s.version(), 0);
    let t = Instant::now();
    assert!(matches!(
        s.wait_changed(0, Some(Duration::from_millis(20))),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(20));
    s.store(*b"xyz");
    s.update(|v| v.set(0, b'q'));
    assert_eq!(s.version(), 2);
    assert_eq!(s.wait_changed(0, None).unwrap(), 2);
    // A failed try_write or one whose closure panicked is not a completed write.
    let _ = std::panic::catch_unwind(|| s.write(|_| panic!("no")));
    assert_eq!(s.version(), 2);
}

#[test]
fn read_only_handle_sees_changes_too() {
    let _s = serial();
    let key = Key::name(&format!("/shmchan-test-notify-ro-{}", std::process::id())).unwrap();
    let w = Shared::<u64, FcntlLock>::create(key).unwrap();
    let r = Shared::<u64, FcntlLock>::open_read_only(key).unwrap();
    let seen = r.version();
    std::thread::scope(|t| {
        t.spawn(|| w.store(4));
        assert!(r.wait_changed(seen, Some(Duration::from_secs(10))).unwrap() > seen);
    });
    assert_eq!(r.read(), 4);
}
