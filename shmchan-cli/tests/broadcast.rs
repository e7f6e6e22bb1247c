//! Broadcast channels created through the library: `ls` and `inspect` show the publisher and
//! its fork successors, the mode, and each subscriber's liveness, cursor and lag.

mod common;

use common::*;
use shmchan::Key;
use shmchan::broadcast::{Overflow, Publisher, Subscriber};

#[test]
fn ls_and_inspect_show_cursors_and_lag_per_subscriber() {
    let _s = serial();
    let key = test_key(60);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Publisher::<u64>::options()
        .capacity(8)
        .max_subscribers(4)
        .overflow(Overflow::DropOldest)
        .create(Key::raw(key))
        .expect("create the channel");
    let reader = Subscriber::<u64>::open(Key::raw(key)).expect("subscribe");
    let idle = Subscriber::<u64>::open(Key::raw(key)).expect("subscribe");
    for i in 0..3 {
        tx.send(i).expect("send");
    }
    // The reader catches up; its cursor is stored when it finds the ring empty.
    while reader.try_recv().expect("recv").is_some() {}
    let v = json(&["inspect", &arg]);
    assert_eq!(v["shmchan"]["kind"], "broadcast", "{v}");
    let c = &v["channel"];
    assert_eq!(
        (
            c["capacity"].as_u64(),
            c["tail"].as_u64(),
            c["overflow"].as_str()
        ),
        (Some(8), Some(3), Some("drop-oldest")),
        "{c}"
    );
    let me = u64::from(std::process::id());
    assert_eq!(c["publisher"]["pid"].as_u64(), Some(me), "{c}");
    assert_eq!(c["publisher"]["liveness"], "alive", "{c}");
    let mut lags: Vec<(u64, u64)> = c["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .map(|s| {
            (
                s["pid"].as_u64().unwrap_or(0),
                s["lag"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    lags.sort();
    assert_eq!(lags, vec![(me, 0), (me, 3)], "{c}");
    assert_eq!(c["queued"].as_u64(), Some(3), "{c}");
    let text = ok(&["inspect", &arg]);
    assert!(text.contains("broadcast capacity 8"), "{text}");
    assert!(text.contains("3 behind"), "{text}");
    let row = ls_row_sysv(
        shmchan::Segment::open_any(Key::raw(key), true)
            .expect("open")
            .info()
            .expect("info")
            .shmid
            .expect("shmid"),
    )
    .expect("listed");
    assert_eq!(row["shmchan"]["kind"], "broadcast");
    drop((reader, idle, tx));
}

#[test]
fn inspect_shows_a_killed_subscriber_as_dead_with_its_cursor() {
    let _s = serial();
    let key = test_key(61);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Publisher::<u64>::create(Key::raw(key), 8).expect("create the channel");
    tx.send(1).expect("send");
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only opens a subscriber, writes one byte and pauses until killed.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match Subscriber::<u64>::open(Key::raw(key)) {
            Ok(rx) => {
                std::mem::forget(rx);
                // SAFETY: writing one byte from a live local.
                unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
                loop {
                    // SAFETY: pause has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            Err(_) => 1,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    let mut b = [0u8];
    // SAFETY: reading one byte into a live local.
    assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1);
    let mut status = 0;
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    tx.send(2).expect("send");
    let v = json(&["inspect", &arg]);
    let subs = v["channel"]["subscribers"]
        .as_array()
        .expect("subscribers")
        .clone();
    assert_eq!(subs.len(), 1, "{v}");
    assert_eq!(subs[0]["pid"].as_i64(), Some(i64::from(pid)), "{v}");
    assert_eq!(subs[0]["liveness"], "dead", "{v}");
    assert_eq!(
        (subs[0]["cursor"].as_u64(), subs[0]["lag"].as_u64()),
        (Some(1), Some(1))
    );
    // A dead subscriber does not count in the slowest lag `ls` shows.
    assert_eq!(v["channel"]["queued"].as_u64(), Some(0), "{v}");
    assert!(ok(&["inspect", &arg]).contains("(dead), at #1, 1 behind"));
    drop(tx);
}

#[test]
fn inspect_shows_a_forked_copy_of_the_publisher_as_its_successor() {
    let _s = serial();
    let key = test_key(62);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Publisher::<u64>::create(Key::raw(key), 8).expect("create the channel");
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only writes one byte and pauses until killed (its copy of `tx` was
    // registered as a successor before `fork` returned).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: writing one byte from a live local.
        unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    }
    let mut b = [0u8];
    // SAFETY: reading one byte into a live local.
    assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1);
    let v = json(&["inspect", &arg]);
    let c = &v["channel"];
    let me = u64::from(std::process::id());
    assert_eq!(c["publisher"]["pid"].as_u64(), Some(me), "{c}");
    let successors = c["successors"].as_array().expect("successors").clone();
    assert_eq!(successors.len(), 1, "{c}");
    assert_eq!(successors[0]["pid"].as_i64(), Some(i64::from(pid)), "{c}");
    assert_eq!(successors[0]["liveness"], "alive", "{c}");
    // The parent's publisher leaves: the child's copy is what keeps the channel connected.
    drop(tx);
    let text = ok(&["inspect", &arg]);
    assert!(
        text.contains("publisher gone (a successor takes its place on its first send)"),
        "{text}"
    );
    assert!(text.contains(&format!("successors (forked copies of the publisher; one takes its place once it is gone): pid {pid} (alive)")), "{text}");
    let mut status = 0;
    // SAFETY: signalling and reaping our own child; closing our own descriptors.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let v = json(&["inspect", &arg]);
    assert_eq!(v["channel"]["successors"][0]["liveness"], "dead", "{v}");
    shmchan::Segment::open_any(Key::raw(key), false)
        .expect("open")
        .remove()
        .expect("remove");
}
