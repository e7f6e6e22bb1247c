//! iceoryx2's publish-subscribe (IPC services), driven like its own benchmark.

use std::time::Instant;

use iceoryx2::port::update_connections::UpdateConnections as _;
use iceoryx2::prelude::*;

use crate::util::{self, Config, Msg, Peer};

type Ipc = ipc::Service;

fn node() -> Node<Ipc> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<Ipc>().expect("iceoryx2 node")
}

/// The service of the broadcast cases: as many subscribers as asked, a buffer of `buffer`
/// messages each, nothing dropped (`enable_safe_overflow(false)` with a publisher that retries
/// until delivered, as shmchan's `Overflow::Block`).
fn broadcast_service(
    node: &Node<Ipc>,
    name: &str,
    buffer: usize,
) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<Ipc, Msg, ()> {
    node.service_builder(&ServiceName::new(name).expect("service name"))
        .publish_subscribe::<Msg>()
        .max_publishers(1)
        .max_subscribers(8)
        .subscriber_max_buffer_size(buffer)
        .history_size(0)
        .enable_safe_overflow(false)
        .open_or_create()
        .expect("iceoryx2 service")
}

fn publisher(
    service: &iceoryx2::service::port_factory::publish_subscribe::PortFactory<Ipc, Msg, ()>,
) -> iceoryx2::port::publisher::Publisher<Ipc, Msg, ()> {
    service
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("iceoryx2 publisher")
}

/// Busy-polls `sub` for the next message (with `yield_now` between empty polls).
fn next(sub: &iceoryx2::port::subscriber::Subscriber<Ipc, Msg, ()>) -> Msg {
    loop {
        if let Some(s) = sub.receive().expect("iceoryx2 receive") {
            return *s.payload();
        }
        std::thread::yield_now();
    }
}

pub fn throughput(cfg: &Config, subs: usize) -> f64 {
    let n = cfg.messages;
    let name = util::unique("ice-thr");
    let node = node();
    let service = broadcast_service(&node, &name, 1024);
    let tx = publisher(&service);
    let mut peers: Vec<Peer> = (0..subs)
        .map(|_| Peer::spawn("ice-thr", &[name.clone(), n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    tx.update_connections().expect("iceoryx2 connections");
    let start = Instant::now();
    for seq in 0..n {
        tx.send_copy(util::msg(seq)).expect("iceoryx2 send");
    }
    for p in &mut peers {
        p.expect("done");
    }
    let secs = start.elapsed().as_secs_f64();
    peers.into_iter().for_each(Peer::finish);
    n as f64 / secs
}

pub fn latency(cfg: &Config, subs: usize) -> f64 {
    let n = cfg.round_trips;
    let name = util::unique("ice-lat");
    let node = node();
    let service = broadcast_service(&node, &name, 1);
    let tx = publisher(&service);
    let acks: Vec<_> = (0..subs)
        .map(|i| {
            let s = broadcast_service(&node, &format!("{name}-ack-{i}"), 1);
            s.subscriber_builder().create().expect("ack subscriber")
        })
        .collect();
    let mut peers: Vec<Peer> = (0..subs)
        .map(|i| Peer::spawn("ice-lat", &[name.clone(), i.to_string(), n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    tx.update_connections().expect("iceoryx2 connections");
    let start = Instant::now();
    for seq in 0..n {
        tx.send_copy(util::msg(seq)).expect("iceoryx2 send");
        for a in &acks {
            util::check(&next(a), seq);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    peers.into_iter().for_each(Peer::finish);
    ns
}

/// The slice service of the loan cases, as iceoryx2's own benchmark sets it up.
fn slice_service(
    node: &Node<Ipc>,
    name: &str,
) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<Ipc, [u8], ()> {
    node.service_builder(&ServiceName::new(name).expect("service name"))
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(1)
        .enable_safe_overflow(true)
        .open_or_create()
        .expect("iceoryx2 slice service")
}

/// Loans a `size`-byte sample, writes its first 8 bytes and sends it. Like iceoryx2's
/// benchmark, the rest of the payload is left as the shared memory holds it: nobody reads it.
fn send_loaned(tx: &iceoryx2::port::publisher::Publisher<Ipc, [u8], ()>, size: usize, seq: u64) {
    let mut s = tx.loan_slice_uninit(size).expect("iceoryx2 loan");
    for (d, b) in s.payload_mut().iter_mut().zip(seq.to_ne_bytes()) {
        d.write(b);
    }
    // SAFETY: u8 has no invalid bit patterns and the shared-memory bytes are initialised memory
    // of the segment (iceoryx2's own benchmark does the same); only the first 8 bytes are read.
    unsafe { s.assume_init() }.send().expect("iceoryx2 send");
}

fn recv_loaned(rx: &iceoryx2::port::subscriber::Subscriber<Ipc, [u8], ()>) -> u64 {
    loop {
        if let Some(s) = rx.receive().expect("iceoryx2 receive") {
            return u64::from_ne_bytes(s.payload()[..8].try_into().expect("8 bytes"));
        }
        std::thread::yield_now();
    }
}

pub fn loan_latency(cfg: &Config, size: usize) -> f64 {
    let n = cfg.loan_round_trips;
    let name = util::unique("ice-loan");
    let node = node();
    let a2b = slice_service(&node, &format!("{name}-a2b"));
    let b2a = slice_service(&node, &format!("{name}-b2a"));
    let tx = a2b
        .publisher_builder()
        .initial_max_slice_len(size)
        .create()
        .expect("publisher");
    let rx = b2a.subscriber_builder().create().expect("subscriber");
    let mut peer = Peer::spawn("ice-loan", &[name, size.to_string(), n.to_string()]);
    peer.expect("ready");
    tx.update_connections().expect("iceoryx2 connections");
    let start = Instant::now();
    for seq in 0..n {
        send_loaned(&tx, size, seq);
        assert_eq!(recv_loaned(&rx), seq);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    peer.finish();
    ns
}

pub fn child(role: &str, args: &[String]) {
    let node = node();
    match role {
        "ice-thr" => {
            let n: u64 = args[1].parse().expect("count");
            let service = broadcast_service(&node, &args[0], 1024);
            let rx = service.subscriber_builder().create().expect("subscriber");
            util::tell("ready");
            for seq in 0..n {
                util::check(&next(&rx), seq);
            }
            util::tell("done");
        }
        "ice-lat" => {
            let n: u64 = args[2].parse().expect("count");
            let service = broadcast_service(&node, &args[0], 1);
            let rx = service.subscriber_builder().create().expect("subscriber");
            let ack = broadcast_service(&node, &format!("{}-ack-{}", args[0], args[1]), 1);
            let tx = publisher(&ack);
            // The parent's ack subscriber exists already: connect before saying ready.
            tx.update_connections().expect("connections");
            util::tell("ready");
            for seq in 0..n {
                let m = next(&rx);
                util::check(&m, seq);
                tx.send_copy(m).expect("ack");
            }
        }
        "ice-loan" => {
            let size: usize = args[1].parse().expect("size");
            let n: u64 = args[2].parse().expect("count");
            let a2b = slice_service(&node, &format!("{}-a2b", args[0]));
            let b2a = slice_service(&node, &format!("{}-b2a", args[0]));
            let rx = a2b.subscriber_builder().create().expect("subscriber");
            let tx = b2a
                .publisher_builder()
                .initial_max_slice_len(size)
                .create()
                .expect("publisher");
            tx.update_connections().expect("connections");
            util::tell("ready");
            for seq in 0..n {
                assert_eq!(recv_loaned(&rx), seq);
                send_loaned(&tx, size, seq);
            }
        }
        other => panic!("unknown role {other}"),
    }
}
