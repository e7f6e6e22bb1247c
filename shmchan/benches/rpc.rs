//! Round-trip latency of an rpc call (request to a server process, reply back) against the same
//! exchange over a pair of pipes, in the same run: a client process calls N times, a forked
//! server answers. 32-byte requests and responses. Prints a table;
//! `cargo bench -p shmchan --bench rpc`.

use std::time::{Duration, Instant};

use shmchan::rpc::{self, WaitStrategy};

const ROUNDS: u64 = 20_000;

type Msg = [u64; 4];

fn fork() -> libc::pid_t {
    // SAFETY: the child only uses the channel / pipes it inherited, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

fn wait_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our child; valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// `ROUNDS` calls through an anonymous rpc channel, both sides waiting with `strategy`.
fn rpc_round_trip(strategy: WaitStrategy) -> Duration {
    let (server, client) = rpc::channel::<Msg, Msg>(16).unwrap();
    server.set_wait_strategy(strategy);
    client.set_wait_strategy(strategy);
    let pid = fork();
    if pid == 0 {
        drop(client);
        for _ in 0..ROUNDS {
            let (req, replier) = server.recv().unwrap();
            replier.reply([req[0] + 1, req[1], req[2], req[3]]).unwrap();
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(server);
    let timeout = Duration::from_secs(10);
    let start = Instant::now();
    for i in 0..ROUNDS {
        let r = client.call([i, 1, 2, 3], timeout).unwrap();
        assert_eq!(r[0], i + 1);
    }
    let d = start.elapsed();
    wait_child(pid);
    d
}

/// `ROUNDS` 32-byte requests and 32-byte responses over two pipes.
fn pipe_round_trip() -> Duration {
    let mut a = [0; 2];
    let mut b = [0; 2];
    // SAFETY: valid out-arrays.
    unsafe {
        assert_eq!(libc::pipe(a.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(b.as_mut_ptr()), 0);
    }
    let io = |fd: i32, msg: &mut Msg, write: bool| {
        // SAFETY: 32 bytes from/to a live local on our own pipe descriptors (pipe writes of up
        // to PIPE_BUF bytes are atomic, and a reader of a 32-byte message gets it whole).
        let n = unsafe {
            if write {
                libc::write(fd, msg.as_ptr().cast(), 32)
            } else {
                libc::read(fd, msg.as_mut_ptr().cast(), 32)
            }
        };
        assert_eq!(n, 32);
    };
    let pid = fork();
    if pid == 0 {
        let mut m = [0u64; 4];
        for _ in 0..ROUNDS {
            io(a[0], &mut m, false);
            m[0] += 1;
            io(b[1], &mut m, true);
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    let start = Instant::now();
    for i in 0..ROUNDS {
        let mut m = [i, 1, 2, 3];
        io(a[1], &mut m, true);
        io(b[0], &mut m, false);
        assert_eq!(m[0], i + 1);
    }
    let d = start.elapsed();
    wait_child(pid);
    // SAFETY: closing our own descriptors once.
    unsafe {
        for fd in [a[0], a[1], b[0], b[1]] {
            libc::close(fd);
        }
    }
    d
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let per_call = |d: Duration| d.as_nanos() as f64 / ROUNDS as f64;
    let mut rows = Vec::new();
    for _ in 0..3 {
        let adaptive = per_call(rpc_round_trip(WaitStrategy::Adaptive));
        let block = per_call(rpc_round_trip(WaitStrategy::Block));
        let pipe = per_call(pipe_round_trip());
        rows.push((adaptive, block, pipe));
    }
    println!(
        "rpc round trip, {ROUNDS} calls between two processes, 32-byte messages, 3 interleaved runs:"
    );
    println!("| run | rpc (Adaptive) | rpc (Block) | pipe pair | Adaptive / pipe | Block / pipe |");
    println!("|---|---|---|---|---|---|");
    for (i, (a, b, p)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.2} µs | {:.2} µs | {:.2} µs | {:.2}x | {:.2}x |",
            i + 1,
            a / 1e3,
            b / 1e3,
            p / 1e3,
            a / p,
            b / p
        );
    }
}
