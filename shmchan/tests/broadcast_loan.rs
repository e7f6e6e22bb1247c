//! Zero copy on broadcast channels (`Overflow::Block`): loans written in place and messages
//! read in place by forked subscribers, each getting every message; an unsent loan publishing
//! nothing; a guard holding its slot (and a SIGKILLed subscriber holding one releasing the
//! publisher within `LIVENESS_INTERVAL`); `DropOldest` refusing loans with a typed error; and
//! messages of 64 MiB on 256 KiB stacks.

// A `Loan` has no destructor (dropping it unsent publishes nothing); the tests drop and forget
// loans explicitly to pin that behaviour down whatever the implementation.
#![allow(clippy::drop_non_drop, clippy::forget_non_drop)]

mod broadcast_support;

use std::time::{Duration, Instant};

use broadcast_support::{Pattern, Signal, child_main, fork, park, serial};
use shmchan::broadcast::{LIVENESS_INTERVAL, Loan, Overflow, Publisher, TrySendError, channel};
use shmchan::{Error, ShmSafe};

/// Time a blocked publisher may take to notice a dead subscriber beyond one liveness interval
/// on a loaded machine (as in `broadcast_crash.rs`).
const NOTICE: Duration = Duration::from_millis(500);

/// Writes `Pattern::new(seq)` field by field through the loan's view.
fn fill(slot: &mut Loan<'_, Pattern>, seq: u64) {
    let mut v = slot.view_mut();
    v.set_seq(seq);
    v.words().store(Pattern::new(seq).words);
}

#[test]
fn a_loan_written_through_its_view_reaches_every_subscriber_in_place() {
    let _g = serial();
    let (mut tx, mut a) = channel::<Pattern>(4).unwrap();
    let mut b = tx.subscribe().unwrap();
    for seq in 0..50 {
        let mut slot = tx.loan().unwrap();
        fill(&mut slot, seq);
        assert_eq!(slot.view().seq(), seq);
        slot.send().unwrap();
        for rx in [&mut a, &mut b] {
            let msg = rx.recv_ref().unwrap();
            assert_eq!(msg.view().seq(), seq);
            assert_eq!(msg.view().words().get(6), Some(Pattern::new(seq).words[6]));
            assert_eq!(msg.to_owned(), Pattern::new(seq));
            assert_eq!(*msg.to_boxed(), Pattern::new(seq));
        }
    }
    assert!(a.try_recv().unwrap().is_none());
    assert!(b.try_recv_ref().unwrap().is_none());
}

#[test]
fn loans_copies_and_in_place_reads_interleave_in_order() {
    let _g = serial();
    let (mut tx, mut rx) = channel::<Pattern>(8).unwrap();
    for seq in 0..200u64 {
        match seq % 3 {
            0 => tx.send(Pattern::new(seq)).unwrap(),
            1 => {
                let mut slot = tx.try_loan().unwrap().expect("room");
                slot.write(Pattern::new(seq));
                slot.send().unwrap();
            }
            _ => {
                let boxed = Box::new(Pattern::new(seq));
                let mut slot = tx.loan_timeout(Duration::from_secs(5)).unwrap();
                slot.write_from(&boxed);
                slot.send().unwrap();
            }
        }
        if seq % 2 == 0 {
            assert_eq!(rx.recv().unwrap(), Pattern::new(seq));
        } else {
            let msg = rx.recv_ref_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(msg.to_owned(), Pattern::new(seq));
        }
    }
}

#[test]
fn a_dropped_loan_publishes_nothing_and_the_next_loan_gets_the_same_slot() {
    let _g = serial();
    let (mut tx, mut rx) = channel::<Pattern>(2).unwrap();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 7);
    drop(slot);
    assert!(rx.try_recv_ref().unwrap().is_none());
    assert_eq!(tx.published(), 0);
    // The same slot again, still holding what the dropped loan wrote.
    let mut slot = tx.loan().unwrap();
    assert_eq!(slot.view().seq(), 7);
    fill(&mut slot, 8);
    slot.send().unwrap();
    // A forgotten loan publishes nothing either; the next send takes its slot.
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 9);
    std::mem::forget(slot);
    assert_eq!(tx.published(), 1);
    assert_eq!(rx.recv().unwrap(), Pattern::new(8));
    assert!(rx.try_recv().unwrap().is_none());
    tx.send(Pattern::new(10)).unwrap();
    assert_eq!(rx.recv().unwrap(), Pattern::new(10));
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn a_guard_holds_its_slot_until_dropped_and_a_forgotten_one_delivers_again() {
    let _g = serial();
    let (mut tx, mut rx) = channel::<u64>(2).unwrap();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let msg = rx.recv_ref().unwrap();
    assert_eq!(msg.to_owned(), 1);
    // Message 1's slot is still being read: the publisher may not write position 2 over it.
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert!(tx.try_loan().unwrap().is_none());
    drop(msg);
    tx.send(3).unwrap();
    std::mem::forget(rx.recv_ref().unwrap());
    // Not moved past: the same message again, and the publisher still sees a full ring.
    assert!(matches!(tx.try_send(4), Err(TrySendError::Full(4))));
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv_ref().unwrap().to_owned(), 3);
    tx.send(4).unwrap();
    drop(tx);
    assert_eq!(rx.recv_ref().unwrap().to_owned(), 4);
    assert!(matches!(rx.recv_ref(), Err(Error::Disconnected)));
    assert!(matches!(rx.try_recv_ref(), Err(Error::Disconnected)));
}

#[test]
fn drop_oldest_channels_refuse_loans_and_in_place_reads_with_a_typed_error() {
    let _g = serial();
    let (mut tx, mut rx) = Publisher::<u64>::options()
        .capacity(4)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    let says_why = |e: Error| match e {
        Error::InvalidArgument { what } => {
            assert!(what.contains("Overflow::Block"), "{what}");
            assert!(what.contains("recv()"), "{what}");
        }
        other => panic!("{other:?}"),
    };
    says_why(tx.loan().unwrap_err());
    says_why(tx.try_loan().unwrap_err());
    says_why(tx.loan_timeout(Duration::from_millis(1)).unwrap_err());
    tx.send(5).unwrap();
    says_why(rx.recv_ref().unwrap_err());
    says_why(rx.try_recv_ref().unwrap_err());
    says_why(rx.recv_ref_timeout(Duration::from_millis(1)).unwrap_err());
    // The copying path is unaffected, and nothing was taken.
    assert_eq!(rx.recv().unwrap(), 5);
}

/// Aligned to 16: broadcast slots are 8-aligned, so an in-place view would be misaligned.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
struct Wide {
    x: [u64; 2],
}

#[test]
fn over_aligned_messages_are_refused_in_place_and_still_pass_by_copy() {
    let _g = serial();
    let (mut tx, mut rx) = channel::<Wide>(4).unwrap();
    assert!(matches!(tx.loan(), Err(Error::InvalidArgument { what }) if what.contains("aligned")));
    tx.send(Wide { x: [1, 2] }).unwrap();
    assert!(matches!(
        rx.try_recv_ref(),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(rx.recv().unwrap(), Wide { x: [1, 2] });
}

#[test]
fn two_forked_subscribers_each_receive_every_loaned_message_in_place_once() {
    let _g = serial();
    const N: u64 = 20_000;
    let (mut tx, a) = channel::<Pattern>(8).unwrap();
    let b = tx.subscribe().unwrap();
    let reader = |mut rx: shmchan::broadcast::Subscriber<Pattern>| -> i32 {
        for seq in 0..N {
            let Ok(msg) = rx.recv_ref() else { return 2 };
            if msg.view().seq() != seq || !msg.to_owned().is_valid() {
                return 3; // lost, torn, duplicated or reordered
            }
        }
        match rx.recv_ref() {
            Err(Error::Disconnected) => 0,
            _ => 4,
        }
    };
    let Some(mut ca) = fork() else {
        child_main(move || {
            drop(tx); // else its copy keeps the channel connected
            drop(b);
            reader(a)
        })
    };
    let Some(mut cb) = fork() else {
        child_main(move || {
            drop(tx); // else its copy keeps the channel connected
            drop(a);
            reader(b)
        })
    };
    drop((a, b));
    for seq in 0..N {
        let mut slot = tx.loan().unwrap();
        fill(&mut slot, seq);
        slot.send().unwrap();
    }
    drop(tx);
    assert_eq!(ca.wait(), 0);
    assert_eq!(cb.wait(), 0);
}

#[test]
fn a_sigkilled_subscriber_holding_a_recv_ref_stops_holding_the_publisher_back() {
    let _g = serial();
    let (mut tx, mut fast) = channel::<Pattern>(4).unwrap();
    let slow = tx.subscribe().unwrap();
    let holding = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(fast);
            let mut slow = slow;
            let msg = match slow.recv_ref() {
                Ok(m) if m.to_owned() == Pattern::new(0) => m,
                _ => return 2,
            };
            holding.notify();
            std::hint::black_box(&msg);
            park()
        })
    };
    drop(slow);
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 0);
    slot.send().unwrap();
    holding.wait();
    assert_eq!(fast.recv().unwrap(), Pattern::new(0));
    // The child holds message 0 in place: the publisher may write positions 1..=3, not 4.
    let mut sent = 1;
    while let Some(mut slot) = tx.try_loan().unwrap() {
        fill(&mut slot, sent);
        slot.send().unwrap();
        assert_eq!(fast.recv().unwrap(), Pattern::new(sent));
        sent += 1;
        assert!(sent < 100, "the guard did not hold the publisher back");
    }
    assert_eq!(sent, 4);
    // Alive: it keeps holding the slot, however long the publisher waits.
    assert!(matches!(
        tx.loan_timeout(LIVENESS_INTERVAL * 2),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    let t0 = Instant::now();
    for seq in sent..sent + 64 {
        let mut slot = tx.loan_timeout(Duration::from_secs(5)).unwrap();
        fill(&mut slot, seq);
        slot.send().unwrap();
        assert_eq!(fast.recv_ref().unwrap().to_owned(), Pattern::new(seq));
    }
    let took = t0.elapsed();
    assert!(took < LIVENESS_INTERVAL + NOTICE, "{took:?}");
    assert_eq!(tx.peer_count(), 1);
}

#[test]
fn a_loan_carried_into_a_forked_child_cannot_be_sent_there_and_stays_the_parents() {
    let _g = serial();
    let (mut tx, rx) = channel::<Pattern>(4).unwrap();
    let done = Signal::new();
    let mut slot = tx.loan().unwrap();
    fill(&mut slot, 1);
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(rx);
            // The parent holds the publisher: the child's copy of the loan is refused.
            let code = match slot.send() {
                Err(Error::TooManyHolders { .. }) => 0,
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
    slot.send().unwrap();
    assert_eq!(rx.recv().unwrap(), Pattern::new(1));
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn a_guard_carried_into_a_forked_child_moves_only_the_childs_own_subscriber() {
    let _g = serial();
    let (tx, mut rx) = channel::<u64>(2).unwrap();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let done = Signal::new();
    let msg = rx.recv_ref().unwrap();
    let Some(mut child) = fork() else {
        child_main(move || {
            let ok = msg.to_owned() == 1;
            drop(msg);
            done.notify();
            if ok { 0 } else { 5 }
        })
    };
    done.wait();
    assert_eq!(child.wait(), 0);
    // The parent's guard still holds message 1's slot.
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert_eq!(msg.to_owned(), 1);
    drop(msg);
    tx.send(3).unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv().unwrap(), 3);
}

#[test]
fn a_forked_copy_registered_late_copies_what_it_cannot_protect_then_reads_in_place() {
    let _g = serial();
    // One subscriber entry: the child's copy finds the table full at the fork and registers on
    // its first receive. The publisher may have scanned the cursors before it saw the late
    // entry, so the messages already published are copied (and checked), not read in place.
    let (tx, rx) = Publisher::<u64>::options()
        .capacity(4)
        .max_subscribers(1)
        .anonymous()
        .unwrap();
    tx.send(10).unwrap();
    tx.send(11).unwrap();
    let (freed, registered, published) = (Signal::new(), Signal::new(), Signal::new());
    let Some(mut child) = fork() else {
        child_main(move || {
            let mut rx = rx;
            freed.wait();
            let mut got = Vec::new();
            for i in 0..3 {
                if i == 2 {
                    registered.notify();
                    published.wait();
                }
                let Ok(m) = rx.recv_ref() else { return 2 };
                got.push((m.to_owned(), format!("{m:?}").contains("copied: true")));
            }
            drop(rx);
            if got == [(10, true), (11, true), (12, false)] {
                0
            } else {
                3
            }
        })
    };
    drop(rx);
    freed.notify();
    registered.wait();
    tx.send(12).unwrap();
    published.notify();
    assert_eq!(child.wait(), 0);
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

fn small_stack<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .expect("spawn")
}

/// Checks frame `seq` in place (and copies the last one to the heap); 0 if right.
fn check_frame(rx: &mut shmchan::broadcast::Subscriber<Frame>, seq: u64, last: bool) -> i32 {
    let Ok(msg) = rx.recv_ref() else { return 2 };
    let v = msg.view();
    let data = v.data();
    let ok = (v.seq(), v.len()) == (seq, (WORDS - 2) as u64)
        && data.get(0) == Some(seq)
        && data.get(WORDS / 2) == Some(seq * 3)
        && data.get(WORDS - 3) == Some(!seq)
        && data.get(WORDS - 2).is_none();
    if !ok {
        return 3;
    }
    if last {
        let copy = msg.to_boxed();
        if (copy.seq, copy.data[WORDS / 2], copy.data[WORDS - 3]) != (seq, seq * 3, !seq) {
            return 4;
        }
    }
    0
}

#[test]
fn messages_of_64_mib_reach_a_forked_and_a_local_subscriber_in_place_on_256_kib_stacks() {
    let _g = serial();
    const N: u64 = 4;
    let (mut tx, mut local) = small_stack(|| channel::<Frame>(2).expect("64 MiB slots"))
        .join()
        .unwrap();
    let mut remote = tx.subscribe().unwrap();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(tx); // else its copy keeps the channel connected
            drop(local);
            small_stack(move || {
                for seq in 0..N {
                    let code = check_frame(&mut remote, seq, seq == N - 1);
                    if code != 0 {
                        return code;
                    }
                }
                match remote.recv_ref() {
                    Err(Error::Disconnected) => 0,
                    _ => 5,
                }
            })
            .join()
            .unwrap_or(101)
        })
    };
    drop(remote);
    let publisher = small_stack(move || {
        for seq in 0..N {
            let mut slot = tx.loan().unwrap();
            if seq % 2 == 0 {
                // Field by field, in place.
                let mut v = slot.view_mut();
                v.set_seq(seq);
                v.set_len((WORDS - 2) as u64);
                let mut data = v.data();
                data.set(0, seq);
                data.set(WORDS / 2, seq * 3);
                data.set(WORDS - 3, !seq);
            } else {
                // From a heap copy, never on the stack.
                let mut frame: Box<Frame> = {
                    let zeroed = Box::<Frame>::new_zeroed();
                    // SAFETY: all-zero bytes are a valid `Frame` (integers only).
                    unsafe { zeroed.assume_init() }
                };
                frame.seq = seq;
                frame.len = (WORDS - 2) as u64;
                frame.data[0] = seq;
                frame.data[WORDS / 2] = seq * 3;
                frame.data[WORDS - 3] = !seq;
                slot.write_from(&frame);
            }
            slot.send().unwrap();
        }
    });
    let checked = small_stack(move || {
        for seq in 0..N {
            assert_eq!(check_frame(&mut local, seq, seq == N - 1), 0, "frame {seq}");
        }
        assert!(matches!(local.recv_ref(), Err(Error::Disconnected)));
        true
    });
    publisher
        .join()
        .expect("the publisher panicked (or overflowed its stack)");
    assert!(
        checked
            .join()
            .expect("the subscriber panicked (or overflowed its stack)")
    );
    assert_eq!(child.wait(), 0);
}
