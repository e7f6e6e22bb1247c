//! Zero copy on mpmc queues under crashes and hostile peers: a sender SIGKILLed or SIGSTOPped
//! holding a loan, a receiver SIGKILLed holding a guard, and another process writing into the
//! queue (the very slots being loaned or read in place included).

mod mpmc_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mpmc_support::{Msg, Signal, child_main, fork, serial};
use shmchan::Error;
use shmchan::mpmc::{self, Loan};

/// Parks the calling child until it is killed.
fn park() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Writes `Msg::new(producer, seq)` field by field through the loan's view.
fn fill(slot: &mut Loan<'_, Msg>, producer: u64, seq: u64) {
    let m = Msg::new(producer, seq);
    let mut v = slot.view_mut();
    v.set_producer(m.producer);
    v.set_seq(m.seq);
    v.set_check(m.check);
}

/// A bound on "at once" for a party that must not wait longer than recovery takes.
const PROMPT: Duration = Duration::from_secs(2);

#[test]
fn a_producer_killed_holding_a_loan_is_skipped_and_counted() {
    let _g = serial();
    let (mut tx, rx) = mpmc::channel::<Msg>(8).unwrap();
    let loaned = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            let Ok(mut slot) = tx.loan() else { return 1 };
            slot.view_mut().set_producer(1); // half written
            loaned.notify();
            park()
        })
    };
    loaned.wait();
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    // Another producer's message, at the next position, arrives within the liveness interval.
    tx.send(Msg::new(0, 0)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Msg::new(0, 0)
    );
    assert!(
        t0.elapsed() < mpmc::LIVENESS_INTERVAL + PROMPT,
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((rx.recovered(), rx.lost()), (1, 0));
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn a_stopped_producer_holding_a_loan_is_waited_for_not_robbed() {
    let _g = serial();
    let (mut tx, rx) = mpmc::channel::<Msg>(8).unwrap();
    let (loaned, go) = (Signal::new(), Signal::new());
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            let Ok(mut slot) = tx.loan() else { return 1 };
            loaned.notify();
            go.wait();
            fill(&mut slot, 1, 0);
            if slot.send().is_ok() { 0 } else { 2 }
        })
    };
    drop(tx);
    loaned.wait();
    child.signal(libc::SIGSTOP);
    child.wait_stopped();
    // Ten liveness intervals: recovery is attempted several times and must refuse.
    match rx.recv_timeout(mpmc::LIVENESS_INTERVAL * 10) {
        Err(Error::Timeout { holder_pid, .. }) => assert_eq!(holder_pid, Some(child.pid as u32)),
        other => panic!("expected a timeout naming the stopped sender, got {other:?}"),
    }
    assert_eq!(rx.recovered(), 0, "a stopped process was robbed");
    child.signal(libc::SIGCONT);
    go.notify();
    assert_eq!(rx.recv().unwrap(), Msg::new(1, 0));
    assert_eq!(child.wait(), 0, "the resumed sender's publication failed");
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn a_consumer_killed_holding_a_guard_never_blocks_producers_and_is_counted_lost() {
    let _g = serial();
    let (tx, mut rx) = mpmc::channel::<u64>(4).unwrap();
    tx.send(100).unwrap();
    let held = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(tx);
            let Ok(msg) = rx.recv_ref() else { return 1 };
            if msg.view() != 100 {
                return 2;
            }
            held.notify();
            park()
        })
    };
    held.wait();
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    for i in 1..4 {
        tx.send(i).unwrap();
    }
    // The ring wraps onto the slot the dead consumer held.
    let t0 = Instant::now();
    tx.send_timeout(4, Duration::from_secs(5)).unwrap();
    assert!(
        t0.elapsed() < mpmc::LIVENESS_INTERVAL + PROMPT,
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((tx.recovered(), tx.lost()), (0, 1));
    for i in 1..5 {
        assert_eq!(rx.recv_ref().unwrap().to_owned(), i);
    }
}

// ---- hostile peers ------------------------------------------------------------------------------

/// Payload word indices (8-byte words) of an mpmc queue with the default 32 holders per side.
const TAIL: usize = 16;
const HEAD: usize = 32;
const TABLES: usize = 96;
const SLOTS: usize = TABLES + 2 * 32 * 4;

#[test]
fn hostile_writes_under_loans_and_guards_give_errors_or_valid_values_never_a_panic_or_hang() {
    let _g = serial();
    let name = format!("/shmchan-test-mpmc-loan-hostile-{}", std::process::id());
    let key = shmchan::Key::name(&name).unwrap();
    let mut rx = mpmc::Receiver::<[u64; 2]>::create(key, 4).unwrap();
    let mut tx = mpmc::Sender::<[u64; 2]>::open(key).unwrap();
    let seg = shmchan::Segment::open_any(key, false).unwrap();
    let word = |i: usize| seg.atomic_u64(i).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // 4 slots of 3 words (seq, then the message).
    let slot_words = SLOTS..SLOTS + 4 * 3;
    for round in 0..300u64 {
        let scribble = |noise: &mut dyn FnMut() -> u64| match round % 5 {
            0 => {
                word(TAIL).store(noise(), Ordering::Relaxed);
                word(HEAD).store(noise(), Ordering::Relaxed);
            }
            1 => {
                for i in TABLES..slot_words.end {
                    if noise() % 3 == 0 {
                        word(i).store(noise(), Ordering::Relaxed);
                    }
                }
            }
            2 => {
                // Every word of the slots: sequence numbers and messages being read or written.
                for i in slot_words.clone() {
                    word(i).store(noise(), Ordering::Relaxed);
                }
            }
            3 => word(TAIL).store(u64::MAX - round, Ordering::Relaxed),
            _ => {}
        };
        if let Ok(Some(mut slot)) = tx.try_loan() {
            slot.view_mut().set(0, round);
            scribble(&mut noise);
            let _ = slot.view().get(1);
            if round % 2 == 0 {
                let _ = slot.send();
            } // else dropped unsent
        }
        scribble(&mut noise);
        if let Ok(msg) = rx.recv_ref_timeout(Duration::from_millis(1)) {
            let _ = msg.view().get(0);
            scribble(&mut noise);
            let _ = (msg.to_owned(), msg.to_boxed());
        }
        let _ = tx.loan_timeout(Duration::from_millis(1)).map(|mut s| {
            s.write([round, !round]);
            s.send()
        });
        let _ = rx.try_recv_ref().map(|m| m.map(|m| m.to_owned()));
        let _ = tx.try_send([round, round]);
        let _ = rx.try_recv();
    }
    drop((tx, rx, seg));
    assert!(
        mpmc_support::leftover_shm(&name[1..]).is_empty(),
        "segment leaked"
    );
}

#[test]
fn a_loaned_slot_skipped_or_a_held_slot_freed_by_a_hostile_peer_is_an_error_or_left_alone() {
    let _g = serial();
    let name = format!("/shmchan-test-mpmc-loan-seq-{}", std::process::id());
    let key = shmchan::Key::name(&name).unwrap();
    let mut rx = mpmc::Receiver::<[u64; 2]>::create(key, 4).unwrap();
    let mut tx = mpmc::Sender::<[u64; 2]>::open(key).unwrap();
    let seg = shmchan::Segment::open_any(key, false).unwrap();
    // Slot 0's sequence number: its first word (slots of 3 words).
    let seq0 = seg.atomic_u64(SLOTS).unwrap();
    const SKIP: u64 = 1 << 63;

    // Position 0 loaned, then marked skipped behind the sender's back: `send` reports it and
    // delivers nothing.
    let mut slot = tx.loan().unwrap();
    slot.write([1, 1]);
    assert_eq!(seq0.load(Ordering::Relaxed), 0);
    seq0.store(1 | SKIP, Ordering::Relaxed);
    assert!(matches!(slot.send(), Err(Error::Corrupted { .. })));
    assert_eq!(rx.try_recv().unwrap(), None);

    // Position 4 (slot 0 again) received in place, then freed behind the receiver's back: the
    // guard's release leaves the slot alone, and the queue goes on.
    tx.send_batch(&[[2, 2], [3, 3], [4, 4], [5, 5]]).unwrap();
    for m in 2..5 {
        assert_eq!(rx.recv().unwrap(), [m, m]);
    }
    let msg = rx.recv_ref().unwrap();
    assert_eq!(msg.view().get(0), Some(5));
    assert_eq!(seq0.load(Ordering::Relaxed), 5);
    seq0.store(8, Ordering::Relaxed);
    drop(msg);
    assert_eq!(seq0.load(Ordering::Relaxed), 8);
    tx.send([6, 6]).unwrap();
    assert_eq!(rx.recv_ref().unwrap().to_owned(), [6, 6]);
    drop((tx, rx, seg));
    assert!(
        mpmc_support::leftover_shm(&name[1..]).is_empty(),
        "segment leaked"
    );
}
