//! An rpc segment that another process scribbles on: live servers and clients, new connections
//! and the format decoder return errors, timeouts or wrong-but-valid values, never panic or
//! hang; and nothing is left behind.

mod rpc_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rpc_support::{Req, Resp, answer, leftover_shm, posix_name};
use shmchan::format::rpc::RpcState;
use shmchan::{Key, Segment, rpc};

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Mostly small numbers, flag bits and extremes: the values that reach edge cases.
    fn word(&mut self) -> u64 {
        match self.next() % 8 {
            0 => 0,
            1 => u64::MAX,
            2 => self.next() % 64,
            3 => 1 << (self.next() % 64),
            4 => ((self.next() % 4096) << 16) | (self.next() % 8),
            _ => self.next(),
        }
    }
}

#[test]
fn scribbled_segments_give_errors_or_valid_values_never_panics_or_hangs() {
    let name = posix_name("hostile");
    let key = Key::name(&name).unwrap();
    let server = rpc::Server::<Req, Resp>::options()
        .capacity(8)
        .max_clients(4)
        .create(key)
        .unwrap();
    let client = rpc::Client::<Req, Resp>::connect(key).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    let words = seg.payload_len() / 8;
    let pristine: Vec<u64> = (0..words).map(|i| seg.load_u64(i).unwrap()).collect();
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let short = Duration::from_millis(2);
    for round in 0..400 {
        // Rewrite a few words (the header sometimes, the queue and the slots mostly).
        for _ in 0..1 + noise.next() % 6 {
            let i = if round % 5 == 0 {
                (noise.next() % 16) as usize
            } else {
                (noise.next() % words as u64) as usize
            };
            seg.atomic_u64(i)
                .unwrap()
                .store(noise.word(), Ordering::Relaxed);
        }
        let t0 = Instant::now();
        let _ = client.call(Req::new(1, round), short);
        if let Ok(Some((req, replier))) = server.try_recv() {
            replier.reply(answer(&req)).unwrap();
        }
        let _ = server.recv_timeout(short);
        let _ = rpc::Client::<Req, Resp>::connect(key);
        let _ = RpcState::read(&seg, seg.header());
        let _ = (
            server.pending_requests(),
            server.client_count(),
            client.server_count(),
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "round {round} took {:?}",
            t0.elapsed()
        );
        if round % 50 == 49 {
            // Start again from a sane image now and then, so later rounds reach deeper states.
            for (i, w) in pristine.iter().enumerate() {
                seg.atomic_u64(i).unwrap().store(*w, Ordering::Relaxed);
            }
        }
    }
    drop((client, server, seg));
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}
