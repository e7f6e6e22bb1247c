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

pub fn loan_latency(_cfg: &Config, _size: usize) -> f64 {
    f64::NAN
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
            let ack = Sender::<Msg>::create(key(&format!("{}-ack-{}", args[0], args[1])), 4)
                .expect("ack sender");
            util::tell("ready");
            for seq in 0..n {
                let m = rx.recv().expect("shmchan recv");
                util::check(&m, seq);
                ack.send(m).expect("ack");
            }
        }
        other => panic!("unknown role {other}"),
    }
}
