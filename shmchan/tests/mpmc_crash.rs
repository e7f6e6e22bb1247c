//! mpmc crash tests: producers and consumers SIGKILLed or SIGSTOPped at exact points (test
//! hooks between claiming and finishing a slot, with pipe handshakes) and at random points under
//! load. Fork-heavy, so in their own test binary.

mod mpmc_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mpmc_support::{Child, Msg, SharedCounters, Signal, child_main, fork, serial};
use shmchan::Error;
use shmchan::mpmc;

/// Parks the calling child until it is killed.
fn park() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

#[test]
fn a_producer_killed_between_claim_and_publish_is_skipped_and_counted() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<Msg>(8).unwrap();
    let claimed = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            tx.send(Msg::new(1, 0)).unwrap();
            // Claims position 1, then stops before writing and publishing it.
            let _ = tx.__try_send_with_hook(Msg::new(1, 1), || {
                claimed.notify();
                park()
            });
            1
        })
    };
    claimed.wait();
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    assert_eq!(rx.recv().unwrap(), Msg::new(1, 0));
    // A live producer (this process) publishes position 2; position 1 must not block it.
    tx.send(Msg::new(0, 0)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Msg::new(0, 0)
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!((rx.recovered(), rx.lost()), (1, 0));
    assert_eq!(rx.try_recv().unwrap(), None);
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn a_consumer_killed_holding_a_message_never_blocks_producers_and_is_counted_lost() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<u64>(4).unwrap();
    tx.send(100).unwrap();
    let claimed = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(tx);
            let _ = rx.__try_recv_with_hook(|| {
                claimed.notify();
                park()
            });
            1
        })
    };
    claimed.wait();
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    for i in 1..4 {
        tx.send(i).unwrap();
    }
    // The ring wraps onto the slot the dead consumer held.
    let t0 = Instant::now();
    tx.send_timeout(4, Duration::from_secs(5)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!((tx.recovered(), tx.lost()), (0, 1));
    for i in 1..5 {
        assert_eq!(rx.recv().unwrap(), i);
    }
}

#[test]
fn a_stopped_producer_holding_a_claim_is_not_robbed() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<Msg>(8).unwrap();
    let (claimed, go) = (Signal::new(), Signal::new());
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            match tx.__try_send_with_hook(Msg::new(0, 0), || {
                claimed.notify();
                go.wait();
            }) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        })
    };
    drop(tx);
    claimed.wait();
    child.signal(libc::SIGSTOP);
    child.wait_stopped();
    // Ten liveness intervals: recovery is attempted several times and must refuse.
    let e = rx
        .recv_timeout(mpmc::LIVENESS_INTERVAL * 10)
        .expect_err("nothing can be received while the claimer is stopped");
    match e {
        Error::Timeout { holder_pid, .. } => {
            assert_eq!(
                holder_pid,
                Some(child.pid as u32),
                "the timeout names the claimer"
            )
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert_eq!(rx.recovered(), 0, "a stopped process was robbed");
    child.signal(libc::SIGCONT);
    go.notify();
    assert_eq!(rx.recv().unwrap(), Msg::new(0, 0));
    assert_eq!(child.wait(), 0, "the resumed producer's publish failed");
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert_eq!(rx.recovered(), 0);
}

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Waits (polling a progress counter; this paces the kills, it synchronises nothing) until
/// at least `n` messages were received in total (or a minute passed).
fn wait_for_progress(total: &SharedCounters, n: u64) {
    let t0 = Instant::now();
    while total.get()[0].load(Ordering::Relaxed) < n && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

const MAX_PRODUCERS: u64 = 16;
const PER: u64 = 3_000;

/// Counters shared with the children: `hits[p * PER + s]` (times message `p/s` was
/// received), `sent[p]` (sends of producer `p` that returned `Ok`), `total[0]`.
struct Record {
    hits: SharedCounters,
    sent: SharedCounters,
    total: SharedCounters,
}

/// The parent's handles, which every child inherits: a child drops the one it does not use
/// (its copy; the parent's is untouched), or it would count as a holder of that side.
struct Ends {
    tx: Option<mpmc::Sender<Msg>>,
    rx: Option<mpmc::Receiver<Msg>>,
}

fn spawn_producer(ends: &mut Ends, p: u64, rec: &Record) -> Child {
    let Some(child) = fork() else {
        child_main(|| {
            drop(ends.rx.take());
            let Some(tx) = &ends.tx else {
                return 5;
            };
            for i in 0..PER {
                if tx.send(Msg::new(p, i)).is_err() {
                    return 1;
                }
                rec.sent.get()[p as usize].store(i + 1, Ordering::Relaxed);
            }
            0
        })
    };
    child
}

fn spawn_consumer(ends: &mut Ends, rec: &Record) -> Child {
    let Some(child) = fork() else {
        child_main(|| {
            drop(ends.tx.take());
            let Some(rx) = &ends.rx else {
                return 5;
            };
            let mut last = [None::<u64>; MAX_PRODUCERS as usize];
            loop {
                match rx.recv() {
                    Ok(m) => {
                        if !m.is_valid() || m.producer >= MAX_PRODUCERS || m.seq >= PER {
                            return 2;
                        }
                        if last[m.producer as usize].is_some_and(|l| l >= m.seq) {
                            return 3;
                        }
                        last[m.producer as usize] = Some(m.seq);
                        let i = (m.producer * PER + m.seq) as usize;
                        rec.hits.get()[i].fetch_add(1, Ordering::Relaxed);
                        rec.total.get()[0].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Disconnected) => return 0,
                    Err(_) => return 4,
                }
            }
        })
    };
    child
}

/// Three producers and three consumers under load; `kills` times a random one is SIGKILLed at
/// a random point and replaced by a fresh process (a producer with a new id).
fn random_kills(seed: u64, kills: usize) {
    let _g = serial();
    let mut noise = Noise(seed);
    let (tx, rx) = mpmc::channel::<Msg>(16).unwrap();
    let mut ends = Ends {
        tx: Some(tx),
        rx: Some(rx),
    };
    let rec = Record {
        hits: SharedCounters::new((MAX_PRODUCERS * PER) as usize),
        sent: SharedCounters::new(MAX_PRODUCERS as usize),
        total: SharedCounters::new(1),
    };
    let mut next_id = 0;
    let mut producers: Vec<Child> = (0..3)
        .map(|_| {
            next_id += 1;
            spawn_producer(&mut ends, next_id - 1, &rec)
        })
        .collect();
    let mut consumers: Vec<Child> = (0..3).map(|_| spawn_consumer(&mut ends, &rec)).collect();
    let (mut killed_producers, mut killed_consumers) = (0u64, 0u64);
    let mut progress = 0;
    for _ in 0..kills {
        progress += 200 + noise.next() % 1_500;
        wait_for_progress(&rec.total, progress);
        let kill_producer = noise.next() % 2 == 0 && next_id < MAX_PRODUCERS;
        let pool = if kill_producer {
            &mut producers
        } else {
            &mut consumers
        };
        let k = (noise.next() % pool.len() as u64) as usize;
        let mut victim = pool.swap_remove(k);
        victim.kill();
        if kill_producer {
            killed_producers += 1;
            next_id += 1;
            producers.push(spawn_producer(&mut ends, next_id - 1, &rec));
        } else {
            killed_consumers += 1;
            consumers.push(spawn_consumer(&mut ends, &rec));
        }
    }
    for mut c in producers {
        assert_eq!(c.wait(), 0, "producer {} failed", c.pid);
    }
    // Every producer is done: our sender goes, then the consumers drain and see
    // `Disconnected`. Our receiver stays to read the counters (it never receives).
    drop(ends.tx.take());
    for mut c in consumers {
        assert_eq!(c.wait(), 0, "consumer {} failed", c.pid);
    }
    let mut missing_confirmed = 0;
    for p in 0..next_id {
        let confirmed = rec.sent.get()[p as usize].load(Ordering::Relaxed);
        for s in 0..PER {
            let h = rec.hits.get()[(p * PER + s) as usize].load(Ordering::Relaxed);
            assert!(h <= 1, "message {p}/{s} delivered {h} times");
            if s < confirmed && h == 0 {
                missing_confirmed += 1;
            }
            // Only the message being sent when the producer died may arrive unconfirmed.
            assert!(
                h == 0 || s <= confirmed,
                "message {p}/{s} delivered but its producer only sent {confirmed}"
            );
        }
    }
    // A confirmed message may be missing only if a killed consumer took it: it died holding
    // the slot (then the queue counted it as lost), or after receiving it and before recording
    // it (at most one per killed consumer).
    let rx = ends.rx.as_ref().unwrap();
    let (recovered, lost) = (rx.recovered(), rx.lost());
    eprintln!(
        "seed {seed:#x}: killed {killed_producers} producers and {killed_consumers} consumers; \
         {missing_confirmed} confirmed messages missing, lost {lost}, recovered {recovered}"
    );
    assert!(recovered <= killed_producers, "recovered {recovered}");
    assert!(lost <= killed_consumers, "lost {lost}");
    assert!(
        missing_confirmed <= lost + killed_consumers,
        "{missing_confirmed} confirmed messages missing, only {lost} counted lost"
    );
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
}

#[test]
fn random_kills_under_load_never_duplicate_and_lose_only_what_dead_consumers_held() {
    for seed in [
        0x9E37_79B9_7F4A_7C15u64,
        0x2545_f491_4f6c_dd1d,
        0x1234_5678_9abc_def1,
    ] {
        random_kills(seed, 8);
    }
}
