//! `WaitSet` across processes: receivers fed by forked senders (every message exactly once,
//! in order per sender), killed senders making their receivers ready within the liveness
//! interval, and an idle wait that sleeps instead of polling. Each scenario runs with
//! `futex_waitv` and with the fallback for kernels without it. Real `fork`, pipe handshakes,
//! no sleeps as synchronisation.

mod mpmc_support;

use std::time::{Duration, Instant};

use mpmc_support::{Child, Msg, Signal, child_main, fork, leftover_shm, serial};
use shmchan::channel::LIVENESS_INTERVAL;
use shmchan::{Error, Key, Segment, WaitSet, mpmc, spsc};

const PER: u64 = 3_000;
/// Scheduling slack on a loaded machine, on top of the liveness interval.
const SLACK: Duration = Duration::from_millis(600);

/// Blocks the calling (child) process until it is killed: reads a pipe nobody writes.
fn park(never: &Signal) -> ! {
    never.wait();
    child_main(|| 99)
}

fn forked_senders_each_message_once(fallback: bool) {
    let _g = serial();
    let (tx_a, rx_a) = spsc::channel::<Msg>(16).unwrap();
    let (tx_b, rx_b) = spsc::channel::<Msg>(16).unwrap();
    let (tx_m, rx_m) = mpmc::channel::<Msg>(16).unwrap();
    let go = Signal::new();
    let mut children: Vec<Child> = Vec::new();
    let mut spsc_tx = vec![Some(tx_a), Some(tx_b)];
    let mut mpmc_tx = Some(tx_m);
    // Producers 0 and 1 feed the two spsc channels, 2 and 3 share the mpmc queue.
    for producer in 0..4u64 {
        match fork() {
            Some(c) => children.push(c),
            None => child_main(|| {
                let mine_spsc = (producer < 2).then(|| spsc_tx[producer as usize].take());
                let mine_mpmc = (producer >= 2).then(|| mpmc_tx.take());
                drop((spsc_tx, mpmc_tx, &rx_a, &rx_b, &rx_m));
                go.wait();
                let sent = match (mine_spsc.flatten(), mine_mpmc.flatten()) {
                    (Some(tx), None) => (0..PER).try_for_each(|s| tx.send(Msg::new(producer, s))),
                    (None, Some(tx)) => (0..PER).try_for_each(|s| tx.send(Msg::new(producer, s))),
                    _ => return 3,
                };
                if sent.is_ok() { 0 } else { 2 }
            }),
        }
    }
    drop((spsc_tx, mpmc_tx));

    let mut set = WaitSet::new();
    set.__force_fallback(fallback);
    let ia = set.add(&rx_a);
    let ib = set.add(&rx_b);
    let im = set.add(&rx_m);
    for _ in 0..4 {
        go.notify();
    }
    let mut seen = vec![vec![false; PER as usize]; 4];
    let mut last = [None::<u64>; 4];
    let mut wakes = 0u64;
    while !set.is_empty() {
        let i = set
            .wait(Some(Duration::from_secs(30)))
            .expect("a ready endpoint");
        wakes += 1;
        loop {
            let got = match i {
                _ if i == ia => rx_a.try_recv(),
                _ if i == ib => rx_b.try_recv(),
                _ if i == im => rx_m.try_recv(),
                _ => unreachable!(),
            };
            match got {
                Ok(Some(m)) => {
                    assert!(m.is_valid() && m.producer < 4 && m.seq < PER, "{m:?}");
                    let p = m.producer as usize;
                    assert!(!seen[p][m.seq as usize], "duplicate {m:?}");
                    assert!(last[p].is_none_or(|l| l < m.seq), "reordered {m:?}");
                    seen[p][m.seq as usize] = true;
                    last[p] = Some(m.seq);
                }
                Ok(None) => break,
                Err(Error::Disconnected) => {
                    assert!(set.remove(i));
                    break;
                }
                Err(e) => panic!("endpoint {i}: {e}"),
            }
        }
    }
    for mut c in children {
        assert_eq!(c.wait(), 0);
    }
    for (p, s) in seen.iter().enumerate() {
        assert!(s.iter().all(|&b| b), "producer {p}: messages missing");
    }
    assert!(wakes > 0);
}

#[test]
fn forked_senders_each_message_once_waitv() {
    forked_senders_each_message_once(false);
}

#[test]
fn forked_senders_each_message_once_fallback() {
    forked_senders_each_message_once(true);
}

/// A sender process killed while the set waits makes its receiver ready, and `try_recv` then
/// says `Disconnected`; the other, live, endpoints stay quiet.
fn a_killed_sender_makes_its_receiver_ready(fallback: bool) {
    let _g = serial();
    let (_live_tx, live_rx) = spsc::channel::<Msg>(16).unwrap();
    let (tx_s, rx_s) = spsc::channel::<Msg>(16).unwrap();
    let (tx_m, rx_m) = mpmc::channel::<Msg>(16).unwrap();
    let (ready, never) = (Signal::new(), Signal::new());
    let mut spsc_child = match fork() {
        Some(c) => c,
        None => {
            drop(tx_m);
            tx_s.send(Msg::new(0, 0)).unwrap();
            ready.notify();
            park(&never);
        }
    };
    let mut mpmc_child = match fork() {
        Some(c) => c,
        None => {
            drop(tx_s);
            tx_m.send(Msg::new(1, 0)).unwrap();
            ready.notify();
            park(&never);
        }
    };
    drop((tx_s, tx_m));
    ready.wait();
    ready.wait();

    let mut set = WaitSet::new();
    set.__force_fallback(fallback);
    let il = set.add(&live_rx);
    let is = set.add(&rx_s);
    let im = set.add(&rx_m);
    // The two messages first.
    for _ in 0..2 {
        let i = set.wait(Some(Duration::from_secs(10))).unwrap();
        assert_ne!(i, il);
        let m = if i == is {
            rx_s.try_recv()
        } else {
            rx_m.try_recv()
        };
        assert!(m.unwrap().is_some());
    }
    assert!(set.wait(Some(Duration::from_millis(50))).is_err());

    for (child, index) in [(&mut spsc_child, is), (&mut mpmc_child, im)] {
        child.kill();
        let t0 = Instant::now();
        let i = set.wait(Some(Duration::from_secs(10))).unwrap();
        let took = t0.elapsed();
        assert_eq!(i, index);
        assert!(
            took < LIVENESS_INTERVAL + SLACK,
            "dead sender noticed after {took:?}"
        );
        let r = if i == is {
            rx_s.try_recv()
        } else {
            rx_m.try_recv()
        };
        assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
        set.remove(i);
    }
    assert!(set.wait(Some(Duration::from_millis(30))).is_err());
}

#[test]
fn a_killed_sender_makes_its_receiver_ready_waitv() {
    a_killed_sender_makes_its_receiver_ready(false);
}

#[test]
fn a_killed_sender_makes_its_receiver_ready_fallback() {
    a_killed_sender_makes_its_receiver_ready(true);
}

/// An mpmc sender killed between claiming a slot and publishing it: the set recovers the slot
/// (as `try_recv` would) and reports the receiver ready, which then says `Disconnected`.
fn a_sender_killed_holding_a_claim(fallback: bool) {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<Msg>(16).unwrap();
    let (ready, never) = (Signal::new(), Signal::new());
    let mut child = match fork() {
        Some(c) => c,
        None => {
            let _ = tx.__try_send_with_hook(Msg::new(0, 0), || {
                ready.notify();
                park(&never);
            });
            child_main(|| 98)
        }
    };
    drop(tx);
    ready.wait();
    let mut set = WaitSet::new();
    set.__force_fallback(fallback);
    let i = set.add(&rx);
    assert!(set.wait(Some(Duration::from_millis(50))).is_err());
    child.kill();
    let t0 = Instant::now();
    assert_eq!(set.wait(Some(Duration::from_secs(10))).unwrap(), i);
    let took = t0.elapsed();
    assert!(
        took < 2 * LIVENESS_INTERVAL + SLACK,
        "dead claimer noticed after {took:?}"
    );
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    assert_eq!(rx.recovered(), 1);
}

#[test]
fn a_sender_killed_holding_a_claim_waitv() {
    a_sender_killed_holding_a_claim(false);
}

#[test]
fn a_sender_killed_holding_a_claim_fallback() {
    a_sender_killed_holding_a_claim(true);
}

/// CPU time of this thread, user plus system.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid out-value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; RUSAGE_THREAD reports the calling thread.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A second of waiting on quiet endpoints (live peers, no messages) costs little CPU: the set
/// sleeps in the kernel, waking only for liveness checks (and, in the fallback, its short
/// slices), never busy-polling.
fn an_idle_wait_sleeps(fallback: bool, budget: Duration) {
    let (_tx, rx) = spsc::channel::<u64>(16).unwrap();
    let (_tx2, rx2) = mpmc::channel::<u64>(16).unwrap();
    let (_tx3, rx3) = spsc::channel::<u64>(16).unwrap();
    let mut set = WaitSet::new();
    set.__force_fallback(fallback);
    set.add(&rx);
    set.add(&rx2);
    set.add(&rx3);
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    assert!(matches!(
        set.wait(Some(Duration::from_secs(1))),
        Err(Error::Timeout { .. })
    ));
    let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
    eprintln!("idle wait (fallback: {fallback}): {cpu:?} CPU in {wall:?}");
    assert!(wall >= Duration::from_secs(1));
    assert!(cpu < budget, "{cpu:?} of CPU while idle for {wall:?}");
}

#[test]
fn an_idle_wait_sleeps_waitv() {
    an_idle_wait_sleeps(false, Duration::from_millis(100));
}

#[test]
fn an_idle_wait_sleeps_fallback() {
    an_idle_wait_sleeps(true, Duration::from_millis(200));
}

/// Another process rewrote the queue's indices into impossible values: the set reports the
/// endpoint ready (at the next liveness check) so that `try_recv` can report the corruption,
/// instead of sleeping on it for ever.
#[test]
fn impossible_indices_make_the_endpoint_ready() {
    /// Payload word index (8-byte words) of the mpmc `tail`.
    const TAIL: usize = 16;
    let name = format!("/shmchan-test-waitset-hostile-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let rx = mpmc::Receiver::<u64>::create(key, 8).unwrap();
    let tx = mpmc::Sender::<u64>::open(key).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    let mut set = WaitSet::new();
    let i = set.add(&rx);
    assert!(set.wait(Some(Duration::from_millis(30))).is_err());
    let tail = seg.atomic_u64(TAIL).unwrap();
    let good = tail.swap(1_000_000, std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    assert_eq!(set.wait(Some(Duration::from_secs(10))).unwrap(), i);
    assert!(t0.elapsed() < LIVENESS_INTERVAL + SLACK);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    tail.store(good, std::sync::atomic::Ordering::Relaxed);
    drop(set);
    drop((tx, rx, seg));
    assert_eq!(leftover_shm("waitset-hostile"), Vec::<String>::new());
}
