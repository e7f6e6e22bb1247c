//! An mpmc segment whose header another process rewrote: opening reports typed errors, live
//! handles and the format decoder return errors or wrong-but-valid values, never panic or
//! hang; and nothing is left behind.

mod mpmc_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use mpmc_support::leftover_shm;
use shmchan::format::mpmc::MpmcState;
use shmchan::{Error, Key, Segment, mpmc};

/// Payload word indices (8-byte words) of the header fields the tests rewrite.
const CAPACITY: usize = 1;
const SLOT_SIZE: usize = 2;
const MAX_HOLDERS: usize = 5;
const TAIL: usize = 16;
const HEAD: usize = 32;
const TABLES: usize = 96;

fn key(tag: &str) -> (String, Key) {
    let name = format!("/shmchan-test-mpmc-hostile-{tag}-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    (name, key)
}

#[test]
fn opening_a_rewritten_header_is_a_typed_error() {
    let (name, key) = key("open");
    let rx = mpmc::Receiver::<u64>::create(key, 8).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    for (word, bad) in [
        (CAPACITY, 0),
        (CAPACITY, 3),
        (CAPACITY, u64::MAX),
        (SLOT_SIZE, 1),
        (MAX_HOLDERS, 0),
        (MAX_HOLDERS, u64::MAX),
        (0, 0), // magic
    ] {
        let w = seg.atomic_u64(word).unwrap();
        let good = w.swap(bad, Ordering::Relaxed);
        assert!(
            matches!(mpmc::Sender::<u64>::open(key), Err(Error::Corrupted { .. })),
            "word {word} = {bad}"
        );
        assert!(
            MpmcState::read(&seg, seg.header()).is_err(),
            "word {word} = {bad}"
        );
        w.store(good, Ordering::Relaxed);
    }
    assert!(mpmc::Sender::<u64>::open(key).is_ok());
    assert!(matches!(
        shmchan::Receiver::<u64>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    drop((rx, seg));
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn live_handles_survive_hostile_indices_and_garbage_tables() {
    let (name, key) = key("live");
    let rx = mpmc::Receiver::<[u64; 2]>::create(key, 4).unwrap();
    let tx = mpmc::Sender::<[u64; 2]>::open(key).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    let word = |i: usize| seg.atomic_u64(i).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        match round % 4 {
            0 => {
                word(TAIL).store(u64::MAX - round, Ordering::Relaxed);
                word(HEAD).store(round, Ordering::Relaxed);
            }
            1 => {
                word(TAIL).store(noise(), Ordering::Relaxed);
                word(HEAD).store(noise(), Ordering::Relaxed);
            }
            2 => {
                // Garbage over both holder tables (2 x 32 entries x 4 words) and the slots.
                for i in TABLES..TABLES + 2 * 32 * 4 + 4 * 3 {
                    if noise() % 3 == 0 {
                        word(i).store(noise(), Ordering::Relaxed);
                    }
                }
            }
            _ => {
                word(TAIL).store(1 << 63, Ordering::Relaxed);
                word(HEAD).store((1 << 63) - 1, Ordering::Relaxed);
            }
        }
        let _ = tx.try_send([round, round]);
        let _ = rx.try_recv();
        let _ = rx.recv_timeout(Duration::from_millis(1));
        let _ = tx.send_timeout([1, 2], Duration::from_millis(1));
        if let Ok(st) = MpmcState::read(&seg, seg.header()) {
            assert!(st.queued.is_none_or(|q| q <= 4));
        }
    }
    drop((tx, rx, seg));
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}
