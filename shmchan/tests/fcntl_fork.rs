//! `Shared<T, FcntlLock>` across real processes: exclusion between processes, threads and a
//! parent and its forked child (which must not share the parent's OFD lock), and a SIGKILLed
//! holder whose lock the kernel releases at once.
//!
//! Fork-heavy: its own test binary, tests serialised by `serial()`, children `_exit`.

use shmchan::{Error, FcntlLock, Shared};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod shared_support;
use shared_support::{Child, Handshake, exit_child, fork_here, serial, wait_pid};

/// A read-modify-write that loses updates unless writers exclude each other: the value is read,
/// the thread yields, then the incremented value is written back.
fn bump(s: &Shared<u64, FcntlLock>, times: u64) {
    for _ in 0..times {
        s.write(|n| {
            let v = *n;
            std::thread::yield_now();
            *n = v + 1;
        });
    }
}

#[test]
fn processes_and_threads_increment_an_exact_count() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(0).unwrap();
    let mut children: Vec<Child> = (0..3)
        .map(|_| {
            Child::spawn(|| {
                bump(&s, 300);
                0
            })
        })
        .collect();
    std::thread::scope(|sc| {
        sc.spawn(|| bump(&s, 300));
        sc.spawn(|| bump(&s, 300));
    });
    for c in &mut children {
        assert_eq!(c.wait(), 0);
    }
    assert_eq!(s.read(), 5 * 300);
}

#[test]
fn forked_child_does_not_share_the_parents_lock() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(1).unwrap();
    let guard = s.lock_write().unwrap();
    // With a shared open file description the child would be granted the parent's OFD lock.
    let mut child = Child::spawn(|| match s.try_write(|n| *n = 2) {
        Err(Error::WouldBlock { .. }) => {
            match s.write_timeout(Duration::from_millis(20), |n| *n = 2) {
                Err(Error::Timeout { .. }) => 0,
                _ => 2,
            }
        }
        _ => 1,
    });
    assert_eq!(child.wait(), 0, "the child got the lock the parent holds");
    drop(guard);
    // And the other way round: a child holding the lock excludes the parent.
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        let g = s.lock_write();
        hs.set(1);
        hs.wait_for(2);
        drop(g);
        0
    });
    hs.wait_for(1);
    assert!(matches!(
        s.try_write(|n| *n = 3),
        Err(Error::WouldBlock { .. })
    ));
    hs.set(2);
    assert_eq!(child.wait(), 0);
    s.try_write(|n| *n = 3)
        .expect("free after the child released it");
    assert_eq!(s.read(), 3);
}

#[test]
fn readers_in_two_processes_share_the_lock() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(5).unwrap();
    let hs = Handshake::new();
    let guard = s.lock_read().unwrap();
    let mut child = Child::spawn(|| {
        // A second reader gets in while the parent reads; a writer does not.
        let ok = s.lock_read().map(|g| *g == 5).unwrap_or(false)
            && matches!(s.try_write(|n| *n = 6), Err(Error::WouldBlock { .. }));
        hs.set(1);
        i32::from(!ok)
    });
    hs.wait_for(1);
    assert_eq!(child.wait(), 0);
    drop(guard);
}

#[test]
fn killed_holder_releases_the_lock_within_100ms() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(0).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        let _g = s.lock_write();
        hs.set(1);
        loop {
            // SAFETY: pause(2) has no preconditions; we wait here to be killed.
            unsafe { libc::pause() };
        }
    });
    hs.wait_for(1);
    assert!(matches!(s.try_write(|_| ()), Err(Error::WouldBlock { .. })));
    let t = Instant::now();
    child.signal(libc::SIGKILL);
    // Blocking write: granted as soon as the kernel drops the dead process's lock.
    s.write(|n| *n = 42);
    let took = t.elapsed();
    assert!(took < Duration::from_millis(100), "took {took:?}");
    assert_eq!(child.wait(), 128 + libc::SIGKILL);
    assert_eq!(s.read(), 42);
    assert_eq!(hs.counter().load(Ordering::Relaxed), 0);
}

/// A `fork` while a write guard is held: the child's copy must not give `&mut T` (the parent
/// may release the lock and another writer change the value meanwhile) and must not release the
/// parent's lock; a `fork` inside a closure `write` must not write the child's copy back.
#[test]
fn child_forked_while_a_guard_is_held_gets_no_access_and_releases_nothing() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(1).unwrap();
    let hs = Handshake::new();
    let mut g = s.lock_write().unwrap();
    *g = 2;
    let pid = fork_here();
    if pid == 0 {
        let deref = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| *g = 99)).is_err();
        drop(g); // must not release the parent's lock
        let excluded = matches!(s.try_write(|v| *v = 7), Err(Error::WouldBlock { .. }));
        hs.set(1);
        exit_child(i32::from(!(deref && excluded)));
    }
    hs.wait_for(1);
    assert_eq!(
        wait_pid(pid),
        0,
        "the child got access or released the lock"
    );
    // The parent still holds it: another process is excluded.
    let mut probe = Child::spawn(|| i32::from(s.try_write(|_| ()).is_ok()));
    assert_eq!(
        probe.wait(),
        0,
        "the parent's lock was released by the child"
    );
    drop(g);
    assert_eq!(s.read(), 2);

    // A fork inside a closure write. The parent's closure then panics, so it writes nothing
    // back itself: whatever the value is afterwards, only the child can have written it.
    let mut pid = -1;
    let mut child_code = -1;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.write_timeout(Duration::from_secs(5), |v| {
            pid = fork_here();
            if pid == 0 {
                *v = 99;
                return;
            }
            child_code = wait_pid(pid);
            panic!("the parent's closure gives up");
        })
    }));
    if pid == 0 {
        let ok = matches!(r, Ok(Err(Error::InvalidArgument { .. })));
        exit_child(i32::from(!ok));
    }
    assert!(r.is_err(), "the parent's closure panicked");
    assert_eq!(child_code, 0, "the child's write did not fail");
    assert_eq!(
        s.read(),
        2,
        "the child wrote its copy back without the lock"
    );
}

/// `remove()` wipes the payload: never while another process holds a read guard (a `&T` into
/// it). It waits for the guard to go.
#[test]
fn remove_waits_for_a_read_guard_in_another_process_before_wiping() {
    let _s = serial();
    let s = Shared::<[u64; 4], FcntlLock>::anonymous([7; 4]).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        let g = s.lock_read().unwrap();
        hs.set(1);
        hs.wait_for(2);
        // The parent's remove() has started (and, unless it waits for us, finished): the value
        // under our read guard must not have changed.
        let intact = *g == [7; 4];
        drop(g);
        i32::from(!intact)
    });
    hs.wait_for(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let remover = sc.spawn(move || {
            let r = s.remove();
            let _ = done_tx.send(());
            r
        });
        // Give a remove that does not wait the time to wipe; one that waits is still blocked.
        let finished_early = done_rx.recv_timeout(Duration::from_millis(200)).is_ok();
        hs.set(2);
        assert_eq!(
            child.wait(),
            0,
            "the payload was wiped under the child's read guard"
        );
        assert!(!finished_early, "remove() did not wait for the read guard");
        remover.join().unwrap().expect("remove");
    });
}
