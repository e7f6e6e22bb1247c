//! In-process tests of the slot protocol and of opening a rewritten channel.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::layout::RpcGeometry;
use super::slots::{Delivery, Slots, token};
use super::{Client, Server, channel, memory};
use crate::format::rpc::{ABANDONED, WRITING};
use crate::{Error, Key, Segment};

fn slots() -> Slots {
    let g = RpcGeometry::for_types::<[u64; 3], [u64; 2]>(8, 4).unwrap();
    Slots::new(memory::anonymous::<[u64; 3]>(&g).unwrap(), g)
}

#[test]
fn a_reply_is_accepted_only_for_its_own_call() {
    let s = slots();
    let slot = s.slot(1).unwrap();
    let c1 = s.next_call(slot);
    s.write_request(1, c1, &[1u64, 2, 3]);
    let (i, got, req) = s.read_request::<[u64; 3]>(token(1, c1)).unwrap();
    assert_eq!((i, got, req), (1, c1, [1, 2, 3]));
    // The server answers call 1 while the client is still on it...
    assert_eq!(s.write_reply(1, c1, &[10u64, 10]), Delivery::Delivered);
    // ...but the client had given up and moved on to call 2 before reading it.
    let c2 = s.next_call(slot);
    assert!(c2 > c1);
    s.write_request(1, c2, &[4u64, 5, 6]);
    assert_eq!(
        s.read_reply::<[u64; 2]>(1, c2),
        None,
        "call 1's reply taken for call 2's"
    );
    assert!(!s.probe_reply(1, c2));
    // A replier of call 1 that comes later still is dropped; call 2's own reply is taken.
    assert_eq!(s.write_reply(1, c1, &[11u64, 11]), Delivery::Stale);
    assert_eq!(s.write_reply(1, c2, &[20u64, 20]), Delivery::Delivered);
    assert_eq!(s.read_reply::<[u64; 2]>(1, c2), Some([20, 20]));
    // Replies only move forward: a second reply to call 2 is dropped too.
    assert_eq!(s.write_reply(1, c2, &[21u64, 21]), Delivery::Stale);
    assert_eq!(s.read_reply::<[u64; 2]>(1, c2), Some([20, 20]));
    assert_eq!(s.counters().dropped_replies.load(Ordering::Relaxed), 2);
}

#[test]
fn stale_abandoned_torn_and_impossible_tokens_are_skipped() {
    let s = slots();
    let slot = s.slot(0).unwrap();
    let c1 = s.next_call(slot);
    s.write_request(0, c1, &[7u64; 3]);
    s.abandon(0, c1);
    assert_eq!(slot.request_call.load(Ordering::Relaxed), c1 | ABANDONED);
    assert!(s.read_request::<[u64; 3]>(token(0, c1)).is_none());
    assert_eq!(s.write_reply(0, c1, &[0u64; 2]), Delivery::Stale);
    // The next call id skips the flag bits.
    let c2 = s.next_call(slot);
    assert_eq!(c2, c1 + 1);
    // A request being written (marker set) is not read.
    slot.request_call.store(c2 | WRITING, Ordering::Relaxed);
    assert!(s.read_request::<[u64; 3]>(token(0, c2)).is_none());
    // A token for a slot that does not exist, or an old call of a live slot.
    s.write_request(0, c2, &[8u64; 3]);
    assert!(s.read_request::<[u64; 3]>(token(4, c2)).is_none());
    assert!(
        s.read_request::<[u64; 3]>(token(u16::MAX as usize, c2))
            .is_none()
    );
    assert!(s.read_request::<[u64; 3]>(token(0, c1)).is_none());
    assert_eq!(s.read_request::<[u64; 3]>(token(0, c2)).unwrap().2, [8; 3]);
    assert_eq!(s.counters().stale_requests.load(Ordering::Relaxed), 5);
    assert!(s.slot(4).is_none() && s.wait_word(4).is_none());
}

#[test]
fn hostile_call_words_never_panic_or_hang() {
    let s = slots();
    let slot = s.slot(2).unwrap();
    for bad in [
        0,
        u64::MAX,
        WRITING,
        ABANDONED,
        WRITING - 1,
        1 << 48,
        (1 << 48) - 1,
    ] {
        slot.request_call.store(bad, Ordering::Relaxed);
        slot.reply_call.store(bad, Ordering::Relaxed);
        let c = s.next_call(slot);
        assert_eq!(c & (WRITING | ABANDONED), 0);
        assert_ne!(c & ((1 << 48) - 1), 0);
        let _ = s.read_request::<[u64; 3]>(token(2, c));
        let _ = s.write_reply(2, c, &[1u64; 2]);
        let _ = s.read_reply::<[u64; 2]>(2, c);
    }
}

#[test]
fn geometry_rejects_bad_sizes_with_rpc_words() {
    let e = RpcGeometry::for_types::<u8, u8>(0, 4).unwrap_err();
    assert!(e.to_string().contains("rpc capacity"), "{e}");
    let e = RpcGeometry::for_types::<u8, u8>(4, 0).unwrap_err();
    assert!(e.to_string().contains("rpc max_clients"), "{e}");
    assert!(RpcGeometry::for_types::<u8, u8>(4, 4097).is_err());
    let g = RpcGeometry::for_types::<[u8; 3], u64>(3, 5).unwrap();
    assert_eq!((g.queue.capacity, g.max_clients, g.request_size), (4, 5, 8));
    assert_eq!(g.slot_stride % 128, 0);
    assert_eq!(g.slots_offset % 128, 0);
}

#[test]
fn opening_a_rewritten_header_is_a_typed_error() {
    let key = Key::name(&format!(
        "/shmchan-test-rpc-unit-open-{}",
        std::process::id()
    ))
    .unwrap();
    let server = Server::<u64, u32>::create(key, 8).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    // Payload words: magic, capacity, max clients, response fingerprint, slots offset, stride.
    for word in [0, 1, 2, 4, 9, 10] {
        let w = seg.atomic_u64(word).unwrap();
        let good = w.load(Ordering::Relaxed);
        for bad in [0, 3, u64::MAX, good ^ 1] {
            w.store(bad, Ordering::Relaxed);
            let r = Client::<u64, u32>::connect(key);
            assert!(
                matches!(
                    r,
                    Err(Error::Corrupted { .. } | Error::LayoutMismatch { .. })
                ),
                "word {word} = {bad}: {r:?}"
            );
        }
        w.store(good, Ordering::Relaxed);
    }
    assert!(Client::<u64, u32>::connect(key).is_ok());
    drop((seg, server));
}

#[test]
fn server_recv_disconnects_after_the_last_client_and_calls_after_the_server() {
    let (server, client) = channel::<u8, u8>(4).unwrap();
    let c2 = client.clone();
    assert_ne!(client.slot().unwrap(), c2.slot().unwrap());
    drop(client);
    assert!(server.try_recv().unwrap().is_none());
    drop(c2);
    assert!(matches!(server.try_recv(), Err(Error::Disconnected)));
    let (server, client) = channel::<u8, u8>(4).unwrap();
    drop(server);
    assert!(matches!(
        client.call(1, Duration::from_secs(5)),
        Err(Error::Disconnected)
    ));
}

#[test]
fn ends_and_repliers_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<Server<u8, u8>>();
    is_send::<Client<u8, u8>>();
    is_send::<super::Replier<u8>>();
}
