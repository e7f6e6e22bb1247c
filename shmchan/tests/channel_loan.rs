//! Zero copy on spsc channels: loans written in place, messages read in place, across threads
//! and forked processes, and messages of 64 MiB on a 256 KiB stack.

// A `Loan` has no destructor today (dropping it unsent publishes nothing); the tests drop and
// forget loans explicitly to pin that behaviour down whatever the implementation.
#![allow(clippy::drop_non_drop, clippy::forget_non_drop)]

use std::time::Duration;

use shmchan::channel::{TrySendError, WaitStrategy};
use shmchan::{Error, ShmSafe};

mod fork_support;
use fork_support::{Pipe, child_main, fork, serial, wait};

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
struct Quote {
    seq: u64,
    price: f64,
    levels: [u32; 6],
}

impl Quote {
    fn new(seq: u64) -> Quote {
        Quote {
            seq,
            price: seq as f64 * 0.5,
            levels: [seq as u32; 6],
        }
    }
}

/// Writes `Quote::new(seq)` field by field through the loan's view.
fn fill(slot: &mut shmchan::channel::Loan<'_, Quote>, seq: u64) {
    let mut v = slot.view_mut();
    v.set_seq(seq);
    v.set_price(seq as f64 * 0.5);
    v.levels().store([seq as u32; 6]);
}

#[test]
fn a_loan_written_through_its_view_arrives_field_by_field() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<Quote>(4).unwrap();
    for seq in 0..10 {
        let mut slot = tx.loan().unwrap();
        fill(&mut slot, seq);
        assert_eq!(slot.view().seq(), seq);
        slot.send().unwrap();
        let msg = rx.recv_ref().unwrap();
        assert_eq!(msg.view().seq(), seq);
        assert_eq!(msg.view().price(), seq as f64 * 0.5);
        assert_eq!(msg.view().levels().get(5), Some(seq as u32));
        assert_eq!(msg.to_owned(), Quote::new(seq));
        assert_eq!(*msg.to_boxed(), Quote::new(seq));
    }
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn loans_and_copies_interleave_in_order() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<Quote>(8).unwrap();
    for seq in 0..100u64 {
        if seq % 3 == 0 {
            tx.send(Quote::new(seq)).unwrap();
        } else {
            let mut slot = tx.loan().unwrap();
            slot.write(Quote::new(seq));
            slot.send().unwrap();
        }
        if seq % 2 == 0 {
            assert_eq!(rx.recv().unwrap(), Quote::new(seq));
        } else {
            assert_eq!(rx.recv_ref().unwrap().to_owned(), Quote::new(seq));
        }
    }
}

#[test]
fn a_dropped_loan_publishes_nothing_and_the_next_loan_gets_the_same_slot() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<Quote>(2).unwrap();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 7);
    drop(slot);
    assert!(rx.try_recv_ref().unwrap().is_none());
    assert_eq!(tx.len_hint(), 0);
    // The same slot again, still holding what the dropped loan wrote.
    let mut slot = tx.loan().unwrap();
    assert_eq!(slot.view().seq(), 7);
    fill(&mut slot, 8);
    slot.send().unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(8));
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn forgetting_a_loan_only_gives_its_slot_to_the_next_send() {
    let _g = serial();
    let (mut tx, rx) = shmchan::channel::<Quote>(1).unwrap();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 1);
    std::mem::forget(slot);
    assert!(rx.try_recv().unwrap().is_none());
    tx.send(Quote::new(2)).unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(2));
}

#[test]
fn a_guard_holds_its_slot_until_dropped_and_a_forgotten_one_delivers_again() {
    let _g = serial();
    let (tx, mut rx) = shmchan::channel::<Quote>(1).unwrap();
    tx.send(Quote::new(1)).unwrap();
    let msg = rx.recv_ref().unwrap();
    // The only slot is still the receiver's.
    assert!(matches!(
        tx.try_send(Quote::new(2)),
        Err(TrySendError::Full(_))
    ));
    drop(msg);
    tx.send(Quote::new(2)).unwrap();
    std::mem::forget(rx.recv_ref().unwrap());
    // Not released: the same message again, and the sender still sees a full ring.
    assert!(matches!(
        tx.try_send(Quote::new(3)),
        Err(TrySendError::Full(_))
    ));
    assert_eq!(rx.recv().unwrap(), Quote::new(2));
    tx.send(Quote::new(3)).unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(3));
}

#[test]
fn try_and_timeout_variants_report_full_and_empty() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<u64>(1).unwrap();
    assert!(rx.try_recv_ref().unwrap().is_none());
    assert!(matches!(
        rx.recv_ref_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    let mut slot = tx.try_loan().unwrap().expect("room");
    slot.write(5);
    slot.send().unwrap();
    assert!(tx.try_loan().unwrap().is_none());
    assert!(matches!(
        tx.loan_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(
        rx.recv_ref_timeout(Duration::from_secs(5))
            .unwrap()
            .to_owned(),
        5
    );
    let mut slot = tx.loan_timeout(Duration::from_secs(5)).unwrap();
    slot.write(6);
    slot.send().unwrap();
    assert_eq!(rx.try_recv_ref().unwrap().map(|m| m.to_owned()), Some(6));
}

#[test]
fn loans_see_a_closed_end() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<u64>(4).unwrap();
    tx.loan().unwrap().send().unwrap();
    drop(tx);
    // The committed message first, then the close.
    assert!(rx.recv_ref().is_ok());
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
    assert!(matches!(rx.try_recv_ref(), Err(Error::Disconnected)));

    let (mut tx, rx) = shmchan::channel::<u64>(4).unwrap();
    let slot = tx.loan().unwrap();
    drop(rx);
    assert!(matches!(slot.send(), Err(Error::Disconnected)));
    assert!(matches!(tx.loan(), Err(Error::Disconnected)));
    assert!(matches!(tx.try_loan(), Err(Error::Disconnected)));
}

#[test]
fn a_blocked_loan_wakes_when_the_receiver_releases_a_slot() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<u64>(2).unwrap();
    tx.set_wait_strategy(WaitStrategy::Block);
    rx.set_wait_strategy(WaitStrategy::Block);
    const N: u64 = 20_000;
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            let mut slot = tx.loan().unwrap();
            slot.write(i);
            slot.send().unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(rx.recv_ref().unwrap().to_owned(), i);
    }
    producer.join().unwrap();
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
}

#[test]
fn a_forked_sender_and_receiver_hand_messages_over_in_place() {
    let _g = serial();
    let (mut tx, mut rx) = shmchan::channel::<Quote>(4).unwrap();
    const N: u64 = 50_000;
    let Some(child) = fork() else {
        child_main(|| {
            drop(rx);
            for seq in 0..N {
                let Ok(mut slot) = tx.loan() else { return 1 };
                fill(&mut slot, seq);
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
        assert_eq!(msg.to_owned(), Quote::new(seq), "lost, torn or reordered");
    }
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
    assert_eq!(wait(child), 0);
}

#[test]
fn a_loan_carried_into_a_forked_child_neither_publishes_nor_blocks_the_parent() {
    let _g = serial();
    let (mut tx, rx) = shmchan::channel::<Quote>(4).unwrap();
    let done = Pipe::new();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 1);
    let Some(child) = fork() else {
        child_main(|| {
            // The child's copy of the loan: refused, and its drop does nothing.
            let code = match slot.send() {
                Err(Error::InUse { pid, .. }) if pid == std::os::unix::process::parent_id() => 0,
                Err(_) => 3,
                Ok(()) => 4,
            };
            done.send(1);
            code
        })
    };
    assert_eq!(done.recv(), 1);
    assert_eq!(wait(child), 0);
    assert!(rx.try_recv().unwrap().is_none(), "the child published");
    slot.send().unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(1));
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn a_guard_carried_into_a_forked_child_does_not_release_the_parents_slot() {
    let _g = serial();
    let (tx, mut rx) = shmchan::channel::<Quote>(1).unwrap();
    tx.send(Quote::new(1)).unwrap();
    let done = Pipe::new();
    let msg = rx.recv_ref().unwrap();
    let Some(child) = fork() else {
        child_main(|| {
            let ok = msg.view().seq() == 1;
            drop(msg);
            done.send(1);
            if ok { 0 } else { 5 }
        })
    };
    assert_eq!(done.recv(), 1);
    assert_eq!(wait(child), 0);
    // Still held by the parent's guard: the ring is full.
    assert!(matches!(
        tx.try_send(Quote::new(2)),
        Err(TrySendError::Full(_))
    ));
    assert_eq!(msg.view().seq(), 1);
    drop(msg);
    tx.send(Quote::new(2)).unwrap();
    assert_eq!(rx.recv().unwrap(), Quote::new(2));
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
fn messages_of_64_mib_pass_in_place_between_threads_on_256_kib_stacks() {
    let _g = serial();
    let (mut tx, mut rx) =
        on_small_stack(|| shmchan::channel::<Frame>(2).expect("a channel of 64 MiB messages"));
    const N: u64 = 4;
    let producer = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for seq in 0..N {
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
            if seq == N - 1 {
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

#[test]
fn a_64_mib_array_passes_in_place_from_a_forked_process_on_a_256_kib_stack() {
    let _g = serial();
    type Big = [u64; WORDS];
    let (mut tx, mut rx) = shmchan::channel::<Big>(1).unwrap();
    let Some(child) = fork() else {
        child_main(move || {
            drop(rx);
            // The child runs the sending on a small-stack thread too.
            on_small_stack(move || {
                for round in 0..3u64 {
                    let Ok(mut slot) = tx.loan() else { return 1 };
                    let mut v = slot.view_mut();
                    v.set(0, round);
                    v.set(WORDS - 1, round + 100);
                    if slot.send().is_err() {
                        return 2;
                    }
                }
                0
            })
        })
    };
    drop(tx);
    let ok = on_small_stack(move || {
        for round in 0..3u64 {
            let msg = rx.recv_ref().unwrap();
            assert_eq!(msg.view().get(0), Some(round));
            assert_eq!(msg.view().get(WORDS - 1), Some(round + 100));
        }
        assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
        true
    });
    assert!(ok);
    assert_eq!(wait(child), 0);
}
