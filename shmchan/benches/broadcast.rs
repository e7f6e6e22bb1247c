//! Broadcast benchmarks, all in one run: one publisher (this process) and 1, 2 or 4 subscriber
//! processes (`fork`), 64-byte messages, against the same fan-out over pipes (one pipe per
//! subscriber, one `write` per message and subscriber, one `read` per message).
//!
//! - throughput: the publisher sends `N` messages; every subscriber receives all of them
//!   (`Overflow::Block`); timed until the last subscriber has its last message;
//! - latency: round trips, the publisher sends one message to every subscriber and the first
//!   subscriber answers over an spsc channel (a pipe for the pipe case); the median round trip,
//!   with the default (adaptive: spin, then sleep) and the blocking (sleep at once) wait
//!   strategy. With more processes than CPUs, spinning subscribers take the CPU the one that
//!   must answer needs: the blocking column is then the one to compare with pipes.
//!
//! `cargo bench -p shmchan --bench broadcast` prints a table and writes
//! `target/broadcast-bench.csv`; `-- --quick` runs a shorter version. A plain binary rather
//! than criterion: every case forks peer processes, and all cases must run on the same machine
//! state to be comparable.

use std::io::Write as _;
use std::os::fd::RawFd;
use std::time::Instant;

use shmchan::broadcast::{self, WaitStrategy};

type Msg = [u64; 8];

fn fork_child() -> Option<libc::pid_t> {
    // SAFETY: the benchmark is single-threaded when it forks; the child never returns into
    // the parent's code (it calls `exit_child`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    (pid != 0).then_some(pid)
}

fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(code) }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "benchmark child failed (status {status})"
    );
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: closing a descriptor this process owns, once.
    unsafe { libc::close(fd) };
}

fn write_msg(fd: RawFd, m: &Msg) {
    // SAFETY: writing 64 bytes from a live local; a pipe write of <= PIPE_BUF is atomic.
    let n = unsafe { libc::write(fd, m.as_ptr().cast(), size_of::<Msg>()) };
    assert_eq!(n, size_of::<Msg>() as isize);
}

/// Reads one whole message; false at end of file.
fn read_msg(fd: RawFd, m: &mut Msg) -> bool {
    let mut got = 0;
    let len = size_of::<Msg>();
    while got < len {
        // SAFETY: reading into the unread tail of a live local of `len` bytes.
        let n = unsafe { libc::read(fd, m.as_mut_ptr().cast::<u8>().add(got).cast(), len - got) };
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    true
}

/// Room for every subscriber copy that exists at once: each forked child inherits all of
/// them before it drops the ones it does not use (4 + 4 x 4 at the peak).
fn options(capacity: usize) -> broadcast::PublisherOptions<Msg> {
    broadcast::Publisher::options()
        .capacity(capacity)
        .max_subscribers(32)
}

fn msg(i: u64) -> Msg {
    [i; 8]
}

// ---- throughput ---------------------------------------------------------------------------

fn shm_throughput(subs: usize, n: u64) -> f64 {
    let (tx, rx) = options(1024).anonymous().expect("channel");
    let mut rxs = vec![rx];
    for _ in 1..subs {
        rxs.push(tx.subscribe().expect("subscribe"));
    }
    let mut children = Vec::new();
    for me in 0..subs {
        let Some(pid) = fork_child() else {
            drop(tx);
            let Some(rx) = rxs.into_iter().nth(me) else {
                exit_child(1)
            };
            let mut next = 0;
            while let Ok(m) = rx.recv() {
                if m[0] != next {
                    exit_child(2);
                }
                next += 1;
            }
            exit_child(if next == n { 0 } else { 3 })
        };
        children.push(pid);
    }
    drop(rxs);
    let t0 = Instant::now();
    for i in 0..n {
        tx.send(msg(i)).expect("send");
    }
    drop(tx);
    children.into_iter().for_each(reap);
    n as f64 / t0.elapsed().as_secs_f64()
}

fn pipe_throughput(subs: usize, n: u64) -> f64 {
    let pipes: Vec<(RawFd, RawFd)> = (0..subs).map(|_| pipe()).collect();
    let mut children = Vec::new();
    for me in 0..subs {
        let Some(pid) = fork_child() else {
            for (i, &(r, w)) in pipes.iter().enumerate() {
                close(w);
                if i != me {
                    close(r);
                }
            }
            let mut m = msg(0);
            let mut next = 0;
            while read_msg(pipes[me].0, &mut m) {
                if m[0] != next {
                    exit_child(2);
                }
                next += 1;
            }
            exit_child(if next == n { 0 } else { 3 })
        };
        children.push(pid);
    }
    pipes.iter().for_each(|&(r, _)| close(r));
    let t0 = Instant::now();
    for i in 0..n {
        let m = msg(i);
        pipes.iter().for_each(|&(_, w)| write_msg(w, &m));
    }
    pipes.iter().for_each(|&(_, w)| close(w));
    children.into_iter().for_each(reap);
    n as f64 / t0.elapsed().as_secs_f64()
}

// ---- latency ------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn shm_latency(subs: usize, rounds: usize, strategy: WaitStrategy) -> f64 {
    let (tx, rx) = options(64).anonymous().expect("channel");
    let mut rxs = vec![rx];
    for _ in 1..subs {
        rxs.push(tx.subscribe().expect("subscribe"));
    }
    let (pong_tx, pong_rx) = shmchan::channel::<u64>(64).expect("pong channel");
    rxs.iter().for_each(|r| r.set_wait_strategy(strategy));
    tx.set_wait_strategy(strategy);
    pong_tx.set_wait_strategy(strategy);
    pong_rx.set_wait_strategy(strategy);
    let mut children = Vec::new();
    for me in 0..subs {
        let Some(pid) = fork_child() else {
            drop((tx, pong_rx));
            let Some(rx) = rxs.into_iter().nth(me) else {
                exit_child(1)
            };
            let pong = (me == 0).then_some(pong_tx);
            while let Ok(m) = rx.recv() {
                if pong.as_ref().is_some_and(|p| p.send(m[0]).is_err()) {
                    exit_child(2);
                }
            }
            exit_child(0)
        };
        children.push(pid);
    }
    drop((rxs, pong_tx));
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds as u64 + 100 {
        let t0 = Instant::now();
        tx.send(msg(i)).expect("send");
        assert_eq!(pong_rx.recv().expect("pong"), i);
        if i >= 100 {
            samples.push(t0.elapsed().as_nanos() as f64);
        }
    }
    drop(tx);
    children.into_iter().for_each(reap);
    median(samples)
}

fn pipe_latency(subs: usize, rounds: usize) -> f64 {
    let pipes: Vec<(RawFd, RawFd)> = (0..subs).map(|_| pipe()).collect();
    let (pong_r, pong_w) = pipe();
    let mut children = Vec::new();
    for me in 0..subs {
        let Some(pid) = fork_child() else {
            for (i, &(r, w)) in pipes.iter().enumerate() {
                close(w);
                if i != me {
                    close(r);
                }
            }
            close(pong_r);
            let mut m = msg(0);
            while read_msg(pipes[me].0, &mut m) {
                if me == 0 {
                    write_msg(pong_w, &m);
                }
            }
            exit_child(0)
        };
        children.push(pid);
    }
    pipes.iter().for_each(|&(r, _)| close(r));
    close(pong_w);
    let mut samples = Vec::with_capacity(rounds);
    let mut m = msg(0);
    for i in 0..rounds as u64 + 100 {
        let t0 = Instant::now();
        let out = msg(i);
        pipes.iter().for_each(|&(_, w)| write_msg(w, &out));
        assert!(read_msg(pong_r, &mut m) && m[0] == i);
        if i >= 100 {
            samples.push(t0.elapsed().as_nanos() as f64);
        }
    }
    pipes.iter().for_each(|&(_, w)| close(w));
    children.into_iter().for_each(reap);
    close(pong_r);
    median(samples)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds) = if quick {
        (50_000, 500)
    } else {
        (200_000, 2_000)
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "broadcast, 64-byte messages, 1 publisher, {cpus} CPUs, {n} messages, {rounds} round trips"
    );
    println!(
        "{:>4}  {:>12} {:>12} {:>6}   {:>11} {:>11} {:>11} {:>6}",
        "subs", "shm msg/s", "pipe msg/s", "ratio", "rtt adapt", "rtt block", "rtt pipe", "ratio"
    );
    let mut csv = String::from(
        "subscribers,shm_msgs_per_s,pipe_msgs_per_s,shm_rtt_adaptive_ns,shm_rtt_block_ns,pipe_rtt_ns\n",
    );
    for subs in [1, 2, 4] {
        let st = shm_throughput(subs, n);
        let pt = pipe_throughput(subs, n);
        let sa = shm_latency(subs, rounds, WaitStrategy::Adaptive);
        let sb = shm_latency(subs, rounds, WaitStrategy::Block);
        let pl = pipe_latency(subs, rounds);
        println!(
            "{subs:>4}  {st:>12.0} {pt:>12.0} {:>5.1}x   {sa:>11.0} {sb:>11.0} {pl:>11.0} {:>5.2}x",
            st / pt,
            sa.min(sb) / pl
        );
        csv.push_str(&format!("{subs},{st:.0},{pt:.0},{sa:.0},{sb:.0},{pl:.0}\n"));
    }
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/broadcast-bench.csv");
    if let Ok(mut f) = std::fs::File::create(&path) {
        let _ = f.write_all(csv.as_bytes());
    }
}
