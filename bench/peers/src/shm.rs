//! shmchan: broadcast (keyed, `Overflow::Block`), acknowledgements over spsc channels, and
//! loaned spsc messages.

use std::time::Instant;

use shmchan::broadcast::{Publisher, Subscriber};
use shmchan::{Key, Receiver, Sender};

use crate::util::{self, Config, Msg, Peer};

/// Message sizes of the loan cases.
pub const LOAN_SIZES: [usize; 5] = [64, 4 << 10, 64 << 10, 1 << 20, 4 << 20];

fn key(name: &str) -> Key {
    Key::name(&format!("/{name}")).expect("POSIX name")
}

fn publisher(name: &str) -> Publisher<Msg> {
    Publisher::<Msg>::options()
        .capacity(1024)
        .max_subscribers(8)
        .create(key(name))
        .expect("shmchan publisher")
}

pub fn throughput(cfg: &Config, subs: usize) -> f64 {
    let n = cfg.messages;
    let name = util::unique("shm-thr");
    let tx = publisher(&name);
    let mut peers: Vec<Peer> = (0..subs)
        .map(|_| Peer::spawn("shm-thr", &[name.clone(), n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    let start = Instant::now();
    for seq in 0..n {
        tx.send(util::msg(seq)).expect("shmchan send");
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
    let name = util::unique("shm-lat");
    let tx = publisher(&name);
    let mut peers: Vec<Peer> = (0..subs)
        .map(|i| Peer::spawn("shm-lat", &[name.clone(), i.to_string(), n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    let acks: Vec<Receiver<Msg>> = (0..subs)
        .map(|i| Receiver::open(key(&format!("{name}-ack-{i}"))).expect("ack receiver"))
        .collect();
    if let Ok(w) = std::env::var("PEERS_WAIT") {
        acks.iter().for_each(|a| a.set_wait_strategy(strategy(&w)));
    }
    let start = Instant::now();
    for seq in 0..n {
        tx.send(util::msg(seq)).expect("shmchan send");
        for a in &acks {
            util::check(&a.recv().expect("ack"), seq);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    drop(acks);
    peers.into_iter().for_each(Peer::finish);
    ns
}

/// Half the mean round trip of a loaned message: `loan`, one word written in place, `send`;
/// the peer reads that word in place (`recv_ref`) and answers the same way.
pub fn loan_latency(cfg: &Config, size: usize) -> f64 {
    match size {
        64 => loan_pingpong::<8>(cfg),
        4096 => loan_pingpong::<512>(cfg),
        65536 => loan_pingpong::<8192>(cfg),
        1048576 => loan_pingpong::<131072>(cfg),
        4194304 => loan_pingpong::<524288>(cfg),
        _ => unreachable!("no case for {size} bytes"),
    }
}

fn loan_pingpong<const W: usize>(cfg: &Config) -> f64 {
    let n = cfg.loan_round_trips;
    let name = util::unique("shm-loan");
    let mut tx = Sender::<[u64; W]>::create(key(&format!("{name}-a2b")), 2).expect("sender");
    let mut peer = Peer::spawn(
        "shm-loan",
        &[name.clone(), (W * 8).to_string(), n.to_string()],
    );
    peer.expect("ready");
    let mut rx = Receiver::<[u64; W]>::open(key(&format!("{name}-b2a"))).expect("receiver");
    let start = Instant::now();
    for seq in 0..n {
        let mut slot = tx.loan().expect("loan");
        slot.view_mut().set(0, seq);
        slot.send().expect("send");
        let msg = rx.recv_ref().expect("recv_ref");
        assert_eq!(msg.view().get(0), Some(seq));
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    drop((tx, rx));
    peer.finish();
    ns
}

fn loan_peer<const W: usize>(name: &str, n: u64) {
    let mut rx = Receiver::<[u64; W]>::open(key(&format!("{name}-a2b"))).expect("receiver");
    let mut tx = Sender::<[u64; W]>::create(key(&format!("{name}-b2a")), 2).expect("sender");
    util::tell("ready");
    for seq in 0..n {
        let word = rx.recv_ref().expect("recv_ref").view().get(0);
        assert_eq!(word, Some(seq));
        let mut slot = tx.loan().expect("loan");
        slot.view_mut().set(0, seq);
        slot.send().expect("send");
    }
    // Wait for the parent to take the last answer before the channel goes (in place: a
    // 4 MiB message would not fit on the stack).
    while rx.recv_ref().is_ok() {}
}

pub fn child(role: &str, args: &[String]) {
    match role {
        "shm-thr" => {
            let n: u64 = args[1].parse().expect("count");
            let rx = Subscriber::<Msg>::open(key(&args[0])).expect("subscriber");
            util::tell("ready");
            for seq in 0..n {
                util::check(&rx.recv().expect("shmchan recv"), seq);
            }
            util::tell("done");
        }
        "shm-lat" => {
            let n: u64 = args[2].parse().expect("count");
            let rx = Subscriber::<Msg>::open(key(&args[0])).expect("subscriber");
            if let Ok(w) = std::env::var("PEERS_WAIT") {
                rx.set_wait_strategy(strategy(&w));
            }
            let ack = Sender::<Msg>::create(key(&format!("{}-ack-{}", args[0], args[1])), 4)
                .expect("ack sender");
            util::tell("ready");
            for seq in 0..n {
                let m = rx.recv().expect("shmchan recv");
                util::check(&m, seq);
                ack.send(m).expect("ack");
            }
        }
        "shm-loan" => {
            let size: usize = args[1].parse().expect("size");
            let n: u64 = args[2].parse().expect("count");
            match size {
                64 => loan_peer::<8>(&args[0], n),
                4096 => loan_peer::<512>(&args[0], n),
                65536 => loan_peer::<8192>(&args[0], n),
                1048576 => loan_peer::<131072>(&args[0], n),
                4194304 => loan_peer::<524288>(&args[0], n),
                _ => unreachable!("no case for {size} bytes"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn strategy(w: &str) -> shmchan::channel::WaitStrategy {
    match w {
        "spin" => shmchan::channel::WaitStrategy::Spin,
        "block" => shmchan::channel::WaitStrategy::Block,
        _ => shmchan::channel::WaitStrategy::Adaptive,
    }
}
