//! Attaching to a segment whose bytes are the fuzz input: the input becomes a POSIX shared
//! memory object (header, seqlock or ring, payload, all as another process might have left
//! them), then every way of opening it is tried (value, read-only value, both ends of an spsc
//! channel and of an mpmc queue, raw segment), and each handle is used a little. Any input
//! gives `Ok` or `Err`, never a panic, a crash or a wait longer than the bound asked for.
//!
//! Only `SeqLock` values are opened: an `FcntlLock` opener would act on the lock-file path the
//! header names, and this target must not open or unlink files an input names.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmchan::format::{DecodedHeader, HeaderState};
use shmchan::{Key, Receiver, Segment, Sender, SeqLock, Shared, ShmSafe};

/// The message and value type of the seed corpus (`fuzz/corpus/attach`), which holds segments
/// created for exactly this type: its fingerprint gets inputs past the type check.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Tick {
    pub seq: u64,
    pub price: f64,
    pub levels: [u32; 4],
}

const SHORT: Duration = Duration::from_millis(1);

fn name() -> String {
    format!("shmchan-fuzz-attach-{}", std::process::id())
}

fuzz_target!(|data: &[u8]| {
    // An opener waits (about a second per open, bounded) for a header that is not published
    // yet: an object shorter than the fixed header, or one whose header does not decode or is
    // not marked ready, may be a segment whose creator is still writing it. Such inputs would
    // slow this target to a run per second, and `header_decode` covers them (the openers
    // decode the header with the same `DecodedHeader::parse`). So this target explores what
    // lies behind a valid header, through the library's own use of it: the seqlock block,
    // the ring header, the holder tables (`segment_decode` runs the pure decoders over them).
    match DecodedHeader::parse(data) {
        Ok(h) if h.state == HeaderState::Ready => {}
        _ => return,
    }
    let name = name();
    let path = format!("/dev/shm/{name}");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let key = Key::name(&format!("/{name}")).expect("a valid POSIX name");
    exercise(key);
    let _ = std::fs::remove_file(&path);
});

fn exercise(key: Key) {
    if let Ok(seg) = Segment::open_any(key, true) {
        let h = seg.header();
        let _ = format!("{h:?}");
        let mut bytes = vec![0u8; seg.len().min(1 << 20)];
        let _ = seg.copy_out(0, &mut bytes);
        let _ = seg.info();
    }
    if let Ok(s) = Shared::<Tick, SeqLock>::open(key) {
        let _ = s.try_read();
        let _ = s.read_timeout(SHORT);
        let _ = s.try_write(|t| t.seq = t.seq.wrapping_add(1));
        let _ = s.write_timeout(SHORT, |t| t.price += 1.0);
        let _ = s.read_timeout(SHORT);
    }
    if let Ok(r) = Shared::<Tick, SeqLock>::open_read_only(key) {
        let _ = r.try_read();
        let _ = r.read_timeout(SHORT);
    }
    if let Ok(rx) = Receiver::<Tick>::open(key) {
        for _ in 0..3 {
            let _ = rx.try_recv();
        }
        let _ = rx.len();
        let _ = rx.recv_timeout(SHORT);
    }
    if let Ok(tx) = Sender::<Tick>::open(key) {
        for seq in 0..3 {
            let _ = tx.try_send(Tick {
                seq,
                ..Tick::default()
            });
        }
        let _ = tx.len_hint();
    }
    if let Ok(rx) = shmchan::mpmc::Receiver::<Tick>::open(key) {
        for _ in 0..3 {
            let _ = rx.try_recv();
        }
        let _ = rx.recv_timeout(SHORT);
    }
    if let Ok(tx) = shmchan::mpmc::Sender::<Tick>::open(key) {
        for seq in 0..3 {
            let _ = tx.try_send(Tick {
                seq,
                ..Tick::default()
            });
        }
    }
}
