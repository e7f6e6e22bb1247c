//! Zero copy on mpmc queues: loans written in place and messages read in place, across threads
//! and forked processes; dropped and forgotten guards never stall the others; messages of 64 MiB
//! on a 256 KiB stack. Crashes and hostile peers: `mpmc_loan_crash.rs`.

mod mpmc_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mpmc_support::{Msg, Signal, child_main, fork, serial};
use shmchan::mpmc::{self, Loan, TrySendError};
use shmchan::{Error, ShmSafe};

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

/// A bound on "at once" for a consumer that must not wait for a held position: far below the
/// timeouts the tests allow, far above a scheduling hiccup.
const PROMPT: Duration = Duration::from_secs(2);

#[test]
fn loans_and_guards_hand_messages_over_in_place_and_mix_with_copies() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<Msg>(4).unwrap();
    for seq in 0..20 {
        if seq % 2 == 0 {
            let mut slot = tx.loan().unwrap();
            fill(&mut slot, 1, seq);
            assert_eq!(slot.view().seq(), seq);
            slot.send().unwrap();
        } else {
            tx.send(Msg::new(1, seq)).unwrap();
        }
        if seq % 3 == 0 {
            assert_eq!(rx.recv().unwrap(), Msg::new(1, seq));
        } else {
            let msg = rx.recv_ref().unwrap();
            assert_eq!((msg.view().producer(), msg.view().seq()), (1, seq));
            assert_eq!(msg.to_owned(), Msg::new(1, seq));
            assert_eq!(*msg.to_boxed(), Msg::new(1, seq));
        }
    }
    let mut slot = tx.try_loan().unwrap().expect("room");
    slot.write(Msg::new(2, 0));
    slot.send().unwrap();
    assert_eq!(
        rx.try_recv_ref().unwrap().unwrap().to_owned(),
        Msg::new(2, 0)
    );
    assert!(rx.try_recv_ref().unwrap().is_none());
    assert_eq!((rx.recovered(), rx.lost()), (0, 0));
}

#[test]
fn a_dropped_unsent_loan_is_skipped_at_once_and_not_counted() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<Msg>(4).unwrap();
    let tx2 = tx.clone();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 1, 0);
    drop(slot);
    // Position 0 was given up: the message of another sender, at position 1, arrives at once
    // although the sender that claimed position 0 is alive.
    tx2.send(Msg::new(2, 0)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_ref_timeout(Duration::from_secs(5))
            .unwrap()
            .to_owned(),
        Msg::new(2, 0)
    );
    assert!(t0.elapsed() < PROMPT, "{:?}", t0.elapsed());
    assert!(
        rx.try_recv().unwrap().is_none(),
        "the dropped loan was published"
    );
    assert_eq!((rx.recovered(), rx.lost()), (0, 0));
    // The ring is usable to its full capacity afterwards.
    for seq in 0..4 {
        tx.try_send(Msg::new(1, seq)).unwrap();
    }
    assert!(matches!(
        tx.try_send(Msg::new(1, 4)),
        Err(TrySendError::Full(_))
    ));
}

#[test]
fn a_loan_dropped_in_a_live_process_does_not_stall_consumers_in_another() {
    let _g = serial();
    let (mut tx, rx) = mpmc::channel::<Msg>(8).unwrap();
    let dropped = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            let Ok(mut slot) = tx.loan() else { return 1 };
            fill(&mut slot, 1, 0);
            drop(slot);
            dropped.notify();
            park()
        })
    };
    dropped.wait();
    // The child is alive and still holds its sender; its given-up position must not hold
    // this receiver back.
    tx.send(Msg::new(0, 0)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Msg::new(0, 0)
    );
    assert!(t0.elapsed() < PROMPT, "{:?}", t0.elapsed());
    assert_eq!(rx.recovered(), 0);
    child.kill();
}

#[test]
fn a_forgotten_loan_holds_consumers_only_until_its_sender_acts_or_drops() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<Msg>(8).unwrap();
    let tx2 = tx.clone();
    // Forgotten, then the sender sends again: the forgotten position is given up first.
    std::mem::forget(tx.loan().unwrap());
    tx2.send(Msg::new(2, 0)).unwrap();
    // While the loan is forgotten, its claimer (this process) is alive: receivers wait, and
    // a timeout names the claimer.
    match rx.recv_ref_timeout(mpmc::LIVENESS_INTERVAL * 4) {
        Err(Error::Timeout { holder_pid, .. }) => {
            assert_eq!(holder_pid, Some(std::process::id()))
        }
        other => panic!("expected a timeout naming this process, got {other:?}"),
    }
    tx.send(Msg::new(1, 0)).unwrap();
    assert_eq!(rx.recv_timeout(PROMPT).unwrap(), Msg::new(2, 0));
    assert_eq!(rx.recv_timeout(PROMPT).unwrap(), Msg::new(1, 0));

    // Forgotten, then the sender is dropped: the drop gives the position up.
    std::mem::forget(tx.loan().unwrap());
    drop(tx);
    tx2.send(Msg::new(2, 1)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        rx.recv_ref_timeout(Duration::from_secs(5))
            .unwrap()
            .to_owned(),
        Msg::new(2, 1)
    );
    assert!(t0.elapsed() < PROMPT, "{:?}", t0.elapsed());
    assert_eq!((rx.recovered(), rx.lost()), (0, 0));
    drop(tx2);
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
}

#[test]
fn a_guard_consumes_its_message_and_a_forgotten_one_is_released_by_the_next_receive() {
    let _g = serial();
    let (tx, mut rx) = mpmc::channel::<u64>(2).unwrap();
    tx.send_batch(&[1, 2]).unwrap();
    let msg = rx.recv_ref().unwrap();
    assert_eq!(msg.view(), 1);
    // Held: the ring is still full.
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    drop(msg);
    tx.try_send(3).unwrap();
    // Forgotten: its message is consumed, and the next receive releases its slot.
    std::mem::forget(rx.recv_ref().unwrap());
    assert!(matches!(tx.try_send(4), Err(TrySendError::Full(4))));
    assert_eq!(rx.recv().unwrap(), 3);
    tx.try_send(4).unwrap();
    tx.try_send(5).unwrap();
    // Forgotten, then the receiver is dropped: the drop releases it.
    let mut rx2 = rx.clone();
    std::mem::forget(rx2.recv_ref().unwrap());
    drop(rx2);
    assert_eq!(rx.recv().unwrap(), 5);
    tx.try_send(6).unwrap();
    tx.try_send(7).unwrap();
    assert_eq!(rx.recv().unwrap(), 6);
    assert_eq!((tx.recovered(), tx.lost()), (0, 0));
}

#[test]
fn try_and_timeout_variants_report_full_empty_and_closed_ends() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<u32>(2).unwrap();
    assert!(rx.try_recv_ref().unwrap().is_none());
    assert!(matches!(
        rx.recv_ref_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    tx.send_batch(&[1, 2]).unwrap();
    assert!(tx.try_loan().unwrap().is_none());
    assert!(matches!(
        tx.loan_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(rx.recv().unwrap(), 1);
    let mut slot = tx.loan_timeout(Duration::from_secs(5)).unwrap();
    slot.write(3);
    drop(rx);
    assert!(matches!(slot.send(), Err(Error::Disconnected)));
    assert!(matches!(tx.loan(), Err(Error::Disconnected)));
    assert!(matches!(tx.try_loan(), Err(Error::Disconnected)));

    let (tx, mut rx) = mpmc::channel::<u32>(2).unwrap();
    tx.send(9).unwrap();
    drop(tx);
    assert_eq!(rx.recv_ref().unwrap().to_owned(), 9);
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
    assert!(matches!(rx.try_recv_ref(), Err(Error::Disconnected)));
}

#[test]
fn a_blocked_loan_wakes_when_a_guard_releases_its_slot() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<u64>(2).unwrap();
    tx.send_batch(&[1, 2]).unwrap();
    let producer = std::thread::spawn(move || {
        let mut slot = tx.loan_timeout(Duration::from_secs(10)).unwrap();
        slot.write(3);
        slot.send().unwrap();
    });
    let msg = rx.recv_ref().unwrap();
    assert_eq!(msg.view(), 1);
    drop(msg);
    producer.join().unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv().unwrap(), 3);
}

#[test]
fn types_aligned_past_8_bytes_are_refused_by_loans_not_misaligned() {
    let _g = serial();
    if align_of::<u128>() <= 8 {
        return; // nothing to refuse on this target
    }
    let (mut tx, mut rx) = mpmc::channel::<u128>(2).unwrap();
    assert!(matches!(tx.loan(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(tx.try_loan(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(
        rx.try_recv_ref(),
        Err(Error::InvalidArgument { .. })
    ));
    // The copy path still works, and nothing was claimed by the refused calls.
    tx.send(12).unwrap();
    assert!(matches!(rx.recv_ref(), Err(Error::InvalidArgument { .. })));
    assert_eq!(rx.recv().unwrap(), 12);
}

#[test]
fn a_forked_producer_loans_and_the_parent_receives_in_place() {
    let _g = serial();
    let (mut tx, mut rx) = mpmc::channel::<Msg>(8).unwrap();
    const N: u64 = 20_000;
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            for seq in 0..N {
                let Ok(mut slot) = tx.loan() else { return 1 };
                fill(&mut slot, 1, seq);
                if slot.send().is_err() {
                    return 2;
                }
            }
            0
        })
    };
    drop(tx);
    for seq in 0..N {
        let msg = rx.recv_ref().unwrap();
        assert_eq!(msg.to_owned(), Msg::new(1, seq), "lost, torn or reordered");
    }
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
    assert_eq!(child.wait(), 0);
    assert_eq!((rx.recovered(), rx.lost()), (0, 0));
}

#[test]
fn a_loan_carried_into_a_forked_child_neither_publishes_nor_skips_the_parents_slot() {
    let _g = serial();
    let (mut tx, rx) = mpmc::channel::<Msg>(4).unwrap();
    let done = Signal::new();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 1, 0);
    let Some(mut child) = fork() else {
        child_main(|| {
            // The child's copy of the loan: refused, and its drop does nothing.
            let code = match slot.send() {
                Err(Error::InUse { pid, .. }) if pid == std::os::unix::process::parent_id() => 0,
                Err(_) => 3,
                Ok(()) => 4,
            };
            done.notify();
            code
        })
    };
    done.wait();
    assert_eq!(child.wait(), 0);
    assert!(rx.try_recv().unwrap().is_none(), "the child published");
    // Had the child skipped the slot, this publication would fail.
    slot.send().unwrap();
    assert_eq!(rx.recv().unwrap(), Msg::new(1, 0));
    assert_eq!(rx.recovered(), 0);
}

#[test]
fn a_guard_carried_into_a_forked_child_does_not_release_the_parents_slot() {
    let _g = serial();
    let (tx, mut rx) = mpmc::channel::<u64>(2).unwrap();
    tx.send_batch(&[1, 2]).unwrap();
    let done = Signal::new();
    let msg = rx.recv_ref().unwrap();
    let Some(mut child) = fork() else {
        child_main(|| {
            let ok = msg.view() == 1;
            drop(msg);
            done.notify();
            if ok { 0 } else { 5 }
        })
    };
    done.wait();
    assert_eq!(child.wait(), 0);
    // Still held by the parent's guard: the ring is full.
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert_eq!(msg.view(), 1);
    drop(msg);
    tx.try_send(3).unwrap();
}

#[test]
fn producers_mixing_loans_and_copies_deliver_exactly_once_to_mixed_consumers() {
    let _g = serial();
    const PRODUCERS: u64 = 3;
    const N: u64 = 5_000;
    let (tx, rx) = mpmc::channel::<Msg>(16).unwrap();
    let mut children = Vec::new();
    for p in 0..PRODUCERS {
        let Some(child) = fork() else {
            child_main(|| {
                drop(rx);
                let mut tx = tx.clone();
                for seq in 0..N {
                    let ok = match seq % 3 {
                        0 => tx.send(Msg::new(p, seq)).is_ok(),
                        1 => tx.loan().is_ok_and(|mut slot| {
                            fill(&mut slot, p, seq);
                            slot.send().is_ok()
                        }),
                        _ => {
                            // A loan given up first, then the message through a new one.
                            drop(tx.loan());
                            tx.loan().is_ok_and(|mut slot| {
                                slot.write(Msg::new(p, seq));
                                slot.send().is_ok()
                            })
                        }
                    };
                    if !ok {
                        return 1;
                    }
                }
                0
            })
        };
        children.push(child);
    }
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|c| {
            let mut rx = rx.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = [None::<u64>; PRODUCERS as usize];
                loop {
                    let m = if c == 0 {
                        match rx.recv_ref_timeout(Duration::from_secs(30)) {
                            Ok(r) => r.to_owned(),
                            Err(Error::Disconnected) => break,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        match rx.recv_timeout(Duration::from_secs(30)) {
                            Ok(m) => m,
                            Err(Error::Disconnected) => break,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    assert!(m.is_valid(), "torn message {m:?}");
                    let l = &mut last[m.producer as usize];
                    assert!(l.is_none_or(|s| s < m.seq), "reordered {m:?} after {l:?}");
                    *l = Some(m.seq);
                    got.push((m.producer, m.seq));
                }
                got
            })
        })
        .collect();
    drop(rx);
    let mut all = HashSet::new();
    for c in consumers {
        for key in c.join().unwrap() {
            assert!(all.insert(key), "{key:?} received twice");
        }
    }
    assert_eq!(all.len() as u64, PRODUCERS * N, "messages lost");
    for mut child in children {
        assert_eq!(child.wait(), 0);
    }
}

// ---- 64 MiB messages on a 256 KiB stack ------------------------------------------------------

const WORDS: usize = 8 << 20; // 64 MiB of u64

/// A 64 MiB message with a header, through the derive.
#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Frame {
    seq: u64,
    len: u64,
    data: [u64; WORDS - 2],
}

fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread panicked (or overflowed its stack)")
}

#[test]
fn messages_of_64_mib_pass_through_mpmc_in_place_on_256_kib_stacks() {
    let _g = serial();
    let (mut tx, mut rx) =
        on_small_stack(|| mpmc::channel::<Frame>(2).expect("a queue of 64 MiB messages"));
    const N: u64 = 4;
    let producer = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for seq in 0..N - 1 {
                let mut slot = tx.loan().unwrap();
                let mut v = slot.view_mut();
                v.set_seq(seq);
                v.set_len((WORDS - 2) as u64);
                let mut data = v.data();
                data.set(0, seq);
                data.set(WORDS / 2, seq * 3);
                data.set(WORDS - 3, !seq);
                slot.send().unwrap();
            }
            // The last one built on the heap and copied in whole.
            let seq = N - 1;
            // SAFETY: `Frame` is only integers, for which all-zero bytes are a valid value.
            let mut boxed: Box<Frame> = unsafe { Box::new_zeroed().assume_init() };
            boxed.seq = seq;
            boxed.len = (WORDS - 2) as u64;
            boxed.data[0] = seq;
            boxed.data[WORDS / 2] = seq * 3;
            boxed.data[WORDS - 3] = !seq;
            let mut slot = tx.loan().unwrap();
            slot.write_from(&boxed);
            slot.send().unwrap();
        })
        .unwrap();
    let checked = on_small_stack(move || {
        for seq in 0..N {
            let msg = rx.recv_ref().unwrap();
            let v = msg.view();
            assert_eq!((v.seq(), v.len()), (seq, (WORDS - 2) as u64));
            let data = v.data();
            assert_eq!(data.get(0), Some(seq));
            assert_eq!(data.get(WORDS / 2), Some(seq * 3));
            assert_eq!(data.get(WORDS - 3), Some(!seq));
            assert_eq!(data.get(WORDS - 2), None);
            if seq >= N - 2 {
                let copy = msg.to_boxed();
                assert_eq!((copy.seq, copy.data[WORDS - 3]), (seq, !seq));
            }
        }
        assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
        true
    });
    producer
        .join()
        .expect("the producer panicked (or overflowed its stack)");
    assert!(checked);
}
