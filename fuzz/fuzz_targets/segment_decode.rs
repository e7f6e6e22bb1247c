//! Every `shmchan::format` decoder over the input taken as a whole segment, as a tool that
//! reads segments without their Rust type does (the `shmchan` command): the fixed header, the
//! whole header, the seqlock block and its snapshot, the ring header with its queued messages,
//! the liveness tables, and the mpmc, broadcast and rpc states. Each decoder must be total for
//! any decoded header, whatever its kind.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmchan::format::broadcast::BroadcastState;
use shmchan::format::header::{self, RawHeader};
use shmchan::format::liveness::SideState;
use shmchan::format::mpmc::MpmcState;
use shmchan::format::ring::{PEEK_MAX, RingState};
use shmchan::format::rpc::RpcState;
use shmchan::format::seqlock::{read_owner, read_snapshot};

fuzz_target!(|data: &[u8]| {
    if let Some(raw) = RawHeader::decode(data) {
        let _ = (
            raw.has_magic(),
            raw.claimed_header_len(),
            raw.remove_when_unused(),
        );
    }
    let _ = header::read_raw(data);
    let Ok(h) = header::read(data) else {
        return;
    };
    assert!(h.total_len <= data.len() as u64);
    assert_eq!(h.payload_off.checked_add(h.payload_len), Some(h.total_len));
    if let Ok(st) = RingState::read(data, &h) {
        let msgs = st.peek(data, &h, u64::MAX);
        assert!(msgs.len() as u64 <= PEEK_MAX.min(st.meta.capacity));
        for (_, m) in &msgs {
            assert_eq!(m.len() as u64, h.type_size);
        }
        let _ = format!("{st:?}");
    }
    if let Ok(snap) = read_snapshot(data, &h, Duration::ZERO) {
        assert_eq!(snap.bytes.len() as u64, h.type_size);
        let _ = format!("{snap:?}");
    }
    if let Ok(st) = MpmcState::read(data, &h) {
        let _ = format!("{st:?}");
    }
    if let Ok(st) = BroadcastState::read(data, &h) {
        let _ = format!("{st:?}");
    }
    if let Ok(st) = RpcState::read(data, &h) {
        let _ = format!("{st:?}");
    }
    let _ = read_owner(data, h.payload_off);
    for at in [0, h.payload_off, h.total_len.saturating_sub(1), u64::MAX] {
        let _ = SideState::read(data, at);
    }
});
