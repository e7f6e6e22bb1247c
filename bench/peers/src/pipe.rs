//! The baseline: one pipe per subscriber, the publisher writing every message into each.

use std::io::{Read, Write};
use std::time::Instant;

use crate::util::{self, Config, Msg, Peer};

fn bytes(m: &Msg) -> [u8; 64] {
    let mut b = [0u8; 64];
    for (i, w) in m.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

fn from_bytes(b: &[u8; 64]) -> Msg {
    let mut m = [0u64; 8];
    for (i, w) in m.iter_mut().enumerate() {
        *w = u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    }
    m
}

/// Messages per second each subscriber received.
pub fn throughput(cfg: &Config, subs: usize) -> f64 {
    let n = cfg.messages;
    let mut peers: Vec<Peer> = (0..subs)
        .map(|_| Peer::spawn("pipe-thr", &[n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    let start = Instant::now();
    for seq in 0..n {
        let b = bytes(&util::msg(seq));
        for p in &mut peers {
            p.inp.write_all(&b).expect("write to pipe");
        }
    }
    for p in &mut peers {
        p.expect("done");
    }
    let secs = start.elapsed().as_secs_f64();
    peers.into_iter().for_each(Peer::finish);
    n as f64 / secs
}

/// Half the mean time for one message to reach every subscriber and every answer to come back.
pub fn latency(cfg: &Config, subs: usize) -> f64 {
    let n = cfg.round_trips;
    let mut peers: Vec<Peer> = (0..subs)
        .map(|_| Peer::spawn("pipe-lat", &[n.to_string()]))
        .collect();
    for p in &mut peers {
        p.expect("ready");
    }
    let start = Instant::now();
    let mut back = [0u8; 64];
    for seq in 0..n {
        let b = bytes(&util::msg(seq));
        for p in &mut peers {
            p.inp.write_all(&b).expect("write to pipe");
        }
        for p in &mut peers {
            util::read_exact(p, &mut back);
            util::check(&from_bytes(&back), seq);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    peers.into_iter().for_each(Peer::finish);
    ns
}

pub fn child(role: &str, args: &[String]) {
    let n: u64 = args[0].parse().expect("message count");
    util::tell("ready");
    let mut input = std::io::stdin().lock();
    let mut b = [0u8; 64];
    match role {
        "pipe-thr" => {
            for seq in 0..n {
                input.read_exact(&mut b).expect("read from pipe");
                util::check(&from_bytes(&b), seq);
            }
            util::tell("done");
        }
        "pipe-lat" => {
            let mut out = std::io::stdout().lock();
            for seq in 0..n {
                input.read_exact(&mut b).expect("read from pipe");
                util::check(&from_bytes(&b), seq);
                out.write_all(&b).expect("answer");
                out.flush().expect("flush");
            }
        }
        other => panic!("unknown role {other}"),
    }
}
