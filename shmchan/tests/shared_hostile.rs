//! Bytes another process wrote into a value's lock words, and extreme arguments: the value's
//! methods answer with a value or a typed error, never a panic (debug builds, with overflow
//! checks, run these), never a hang.

use shmchan::{Error, FcntlLock, SeqLock, Shared};
use std::time::Duration;

/// Payload words of the seqlock control block: the owner word, its info word, the futex and
/// waiter-count pair, and (one cache line on) the sequence counter.
const OWNER: usize = 0;
const INFO: usize = 1;
const WAKE: usize = 2;
const SEQ: usize = 16;

/// This thread's identity as the seqlock owner word spells it: `(tid << 32) | low 32 bits of
/// its start time` (`/proc/<tid>/stat` field 22).
fn my_owner_word() -> u64 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u64;
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let start: u64 = rest.split_whitespace().nth(19).unwrap().parse().unwrap();
    (tid << 32) | (start & 0xffff_ffff)
}

#[test]
fn owner_word_forged_with_the_writers_own_identity_is_recovered_not_a_panic() {
    let s = Shared::<[u64; 2], SeqLock>::anonymous([1, 1]).unwrap();
    let owner = s.segment().atomic_u64(OWNER).unwrap();
    // A peer writes this very thread's tid and start time into the owner word.
    owner.store(my_owner_word(), std::sync::atomic::Ordering::Release);
    s.write(|v| *v = [2, 2]);
    assert_eq!(s.read(), [2, 2]);

    owner.store(my_owner_word(), std::sync::atomic::Ordering::Release);
    match s.write_timeout(Duration::from_secs(1), |v| *v = [3, 3]) {
        Err(Error::Corrupted { what }) => assert!(what.contains("owner word"), "{what}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    s.write_timeout(Duration::from_secs(1), |v| *v = [3, 3])
        .expect("the lock was reset");
    assert_eq!(s.read(), [3, 3]);
}

/// A small deterministic generator (xorshift64*).
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn scribbled_lock_words_never_panic_or_hang() {
    let s = Shared::<[u64; 3], SeqLock>::anonymous([5; 3]).unwrap();
    let seg = s.segment();
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    for round in 0..300 {
        for w in [OWNER, INFO, WAKE, SEQ] {
            let v = match round % 4 {
                0 => next(&mut rng),
                1 => u64::MAX,
                2 => next(&mut rng) & 0xffff_ffff, // no thread id
                _ => next(&mut rng) | (u64::from(u32::MAX) << 32),
            };
            seg.atomic_u64(w)
                .unwrap()
                .store(v, std::sync::atomic::Ordering::Release);
        }
        // Every answer is a value or a typed error, within the timeouts.
        let _ = s.read_timeout(Duration::from_millis(20));
        let _ = s.try_read();
        match s.write_timeout(Duration::from_millis(20), |v| v[0] = round) {
            Ok(())
            | Err(Error::Corrupted { .. } | Error::WriterDied { .. } | Error::Timeout { .. }) => {}
            Err(e) => panic!("round {round}: unexpected {e}"),
        }
        let _ = s.try_write(|v| v[1] = round);
    }
}

#[test]
fn huge_timeouts_mean_forever_not_an_overflow_panic() {
    let s = Shared::<u64, SeqLock>::anonymous(1).unwrap();
    assert_eq!(s.read_timeout(Duration::MAX).unwrap(), 1);
    s.write_timeout(Duration::MAX, |n| *n = 2).unwrap();
    let f = Shared::<u64, FcntlLock>::anonymous(1).unwrap();
    assert_eq!(f.read_timeout(Duration::MAX).unwrap(), 1);
    f.write_timeout(Duration::MAX, |n| *n = 2).unwrap();
    assert_eq!(f.read(), 2);
}
