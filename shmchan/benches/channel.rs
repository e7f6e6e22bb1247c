//! Channel benchmarks, all in one run, across two processes (`fork`):
//!
//! - round-trip latency (pingpong): bare shared-memory spin on two atomics (the floor),
//!   shmchan channels in spin and in blocking (futex) mode, a pipe pair, a UNIX socket pair;
//! - one-way throughput of 8-byte and 64-byte messages: shmchan (per message and batched), a
//!   pipe and a UNIX socket pair (one `write`/`read` per message, the same bytes).
//!
//! `cargo bench -p shmchan --bench channel` prints a table and writes `target/channel-bench.csv`
//! (`scripts/bench_chart.py` turns it into `docs/channel-bench.svg`). `-- --quick` runs a
//! shorter version. A plain binary rather than criterion: every case forks a peer process, and
//! all cases must run on the same machine state to be comparable.

use std::hint::black_box;
use std::io::Write as _;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use shmchan::channel::WaitStrategy;
use shmchan::{Receiver, Sender};

type Msg8 = u64;
type Msg64 = [u64; 8];

struct Config {
    batches: usize,
    per_batch: usize,
    stream_shm: usize,
    stream_fd: usize,
}

/// Forks: `None` in the child (which must end with [`exit_child`]), the child's pid in the
/// parent.
fn fork_child() -> Option<libc::pid_t> {
    // SAFETY: the benchmark is single-threaded when it forks, so the child may run arbitrary
    // code; it never returns into the parent's code (it calls `exit_child`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 && PINNED.load(Ordering::Relaxed) {
        pin(Some(1));
    }
    (pid != 0).then_some(pid)
}

/// Ends a forked child without running the parent's destructors or atexit handlers.
fn exit_child() -> ! {
    // SAFETY: `_exit` has no preconditions.
    unsafe { libc::_exit(0) }
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

/// Median and 10th/90th percentile of per-round-trip means over batches, in ns.
fn summarize(mut per_rtt: Vec<f64>) -> (f64, f64, f64) {
    per_rtt.sort_by(f64::total_cmp);
    let at = |q: f64| per_rtt[((per_rtt.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// Times `cfg.batches` batches of `cfg.per_batch` calls of `round_trip`, after a warm-up.
fn time_round_trips(cfg: &Config, mut round_trip: impl FnMut(u64)) -> Vec<f64> {
    for i in 0..(cfg.per_batch as u64 * 10) {
        round_trip(i);
    }
    let mut per_rtt = Vec::with_capacity(cfg.batches);
    let mut i = 1 << 32;
    for _ in 0..cfg.batches {
        let t0 = Instant::now();
        for _ in 0..cfg.per_batch {
            round_trip(i);
            i += 1;
        }
        per_rtt.push(t0.elapsed().as_nanos() as f64 / cfg.per_batch as f64);
    }
    per_rtt
}

/// Whether the next forked child pins itself to CPU 1 (the parent being on CPU 0).
static PINNED: AtomicBool = AtomicBool::new(false);

/// Pins the calling process to `cpu`, or lets it run anywhere (`None`).
///
/// Busy-waiting cases pin the two processes to two different CPUs: on a loaded machine the
/// scheduler could otherwise put both spinners on one CPU, and each hop would wait for a time
/// slice. Blocking cases are left to the scheduler, as a real program would be (pipes in
/// particular benefit from its wake-up affinity).
fn pin(cpu: Option<usize>) {
    let ncpu = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(2);
    // SAFETY: `set` is a zeroed, then filled, cpu_set_t owned by this frame.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => (0..ncpu).for_each(|c| libc::CPU_SET(c, &mut set)),
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs `case` with the two processes pinned to CPUs 0 and 1, or unpinned.
fn pinned<R>(on: bool, case: impl FnOnce() -> R) -> R {
    PINNED.store(on, Ordering::Relaxed);
    pin(on.then_some(0));
    let r = case();
    pin(None);
    PINNED.store(false, Ordering::Relaxed);
    r
}

// ---- pingpong ---------------------------------------------------------------------------

fn bare_spin_pingpong(cfg: &Config) -> Vec<f64> {
    // Two words on separate 128-byte lines of a shared anonymous mapping.
    // SAFETY: a fresh anonymous shared mapping; checked for MAP_FAILED below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    // SAFETY: the mapping is 4096 bytes, zeroed, page-aligned; AtomicU64 accepts zero bytes.
    let ping = unsafe { &*(base as *const AtomicU64) };
    // SAFETY: as above, 128 bytes further.
    let pong = unsafe { &*((base as *const u8).add(128) as *const AtomicU64) };
    const STOP: u64 = u64::MAX;
    let Some(child) = fork_child() else {
        loop {
            let v = ping.load(Ordering::Acquire);
            if v == STOP {
                break;
            }
            if v != pong.load(Ordering::Relaxed) {
                pong.store(v, Ordering::Release);
            }
            std::hint::spin_loop();
        }
        exit_child()
    };
    let r = time_round_trips(cfg, |i| {
        let i = i + 1;
        ping.store(i, Ordering::Release);
        while pong.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
    });
    ping.store(STOP, Ordering::Release);
    reap(child);
    // SAFETY: unmapping what we mapped; no reference into it is used afterwards.
    unsafe { libc::munmap(base, 4096) };
    r
}

fn channel_pingpong(cfg: &Config, strategy: WaitStrategy) -> Vec<f64> {
    let (ping_tx, ping_rx) = shmchan::channel::<Msg8>(64).expect("channel");
    let (pong_tx, pong_rx) = shmchan::channel::<Msg8>(64).expect("channel");
    ping_tx.set_wait_strategy(strategy);
    pong_tx.set_wait_strategy(strategy);
    ping_rx.set_wait_strategy(strategy);
    pong_rx.set_wait_strategy(strategy);
    let Some(child) = fork_child() else {
        drop(ping_tx);
        drop(pong_rx);
        echo_loop(&ping_rx, &pong_tx);
        exit_child()
    };
    drop(ping_rx);
    drop(pong_tx);
    let r = time_round_trips(cfg, |i| {
        ping_tx.send(i).expect("send");
        black_box(pong_rx.recv().expect("recv"));
    });
    drop(ping_tx);
    reap(child);
    r
}

fn echo_loop(rx: &Receiver<Msg8>, tx: &Sender<Msg8>) {
    while let Ok(v) = rx.recv() {
        if tx.send(v).is_err() {
            break;
        }
    }
}

fn fd_pair(socket: bool) -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe {
        if socket {
            libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr())
        } else {
            libc::pipe(fds.as_mut_ptr())
        }
    };
    assert_eq!(r, 0, "pipe/socketpair failed");
    (fds[0], fds[1])
}

fn write_all(fd: RawFd, buf: &[u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: `buf[done..]` is valid for reads of its length.
        let n = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
        assert!(n > 0, "write failed");
        done += n as usize;
    }
}

/// Reads exactly `buf.len()` bytes; false on end of file.
fn read_exact(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: `buf[done..]` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

fn close(fd: RawFd) {
    // SAFETY: closing a descriptor we own, once.
    unsafe { libc::close(fd) };
}

/// Pingpong over two pipes (`socket = false`) or a UNIX stream socket pair.
fn fd_pingpong(cfg: &Config, socket: bool) -> Vec<f64> {
    // parent -> child on (a_read, a_write); child -> parent on (b_read, b_write). A socket pair
    // is bidirectional: both directions use one pair.
    let (a_read, a_write) = fd_pair(socket);
    let (b_read, b_write) = if socket {
        (a_write, a_read)
    } else {
        fd_pair(false)
    };
    let Some(child) = fork_child() else {
        // Drop the parent's ends, so that closing them in the parent means end-of-file here.
        if socket {
            close(a_write);
        } else {
            close(a_write);
            close(b_read);
        }
        let mut buf = [0u8; 8];
        while read_exact(a_read, &mut buf) {
            write_all(b_write, &buf);
        }
        exit_child()
    };
    let mut buf = [0u8; 8];
    let r = time_round_trips(cfg, |i| {
        write_all(a_write, &i.to_ne_bytes());
        assert!(read_exact(b_read, &mut buf));
    });
    if socket {
        close(a_write);
        reap(child);
        close(a_read);
    } else {
        close(a_write);
        reap(child);
        for fd in [a_read, b_read, b_write] {
            close(fd);
        }
    }
    r
}

// ---- throughput -------------------------------------------------------------------------

/// Messages per second received by the parent from a forked sender of `n` messages.
fn channel_stream<T: shmchan::ShmSafe + Default>(n: usize, batch: bool) -> f64 {
    let (tx, rx) = shmchan::channel::<T>(4096).expect("channel");
    let (go_tx, go_rx) = shmchan::channel::<u8>(1).expect("channel");
    let Some(child) = fork_child() else {
        drop(rx);
        drop(go_tx);
        let _ = go_rx.recv();
        let msgs = [T::default(); 256];
        if batch {
            let mut left = n;
            while left > 0 {
                let k = left.min(msgs.len());
                tx.send_batch(&msgs[..k]).expect("send_batch");
                left -= k;
            }
        } else {
            for _ in 0..n {
                tx.send(T::default()).expect("send");
            }
        }
        exit_child()
    };
    drop(tx);
    drop(go_rx);
    let mut got = 0;
    let mut buf = Vec::with_capacity(4096);
    let t0 = Instant::now();
    go_tx.send(1).expect("go");
    while got < n {
        if batch {
            buf.clear();
            got += rx.recv_batch(&mut buf, 4096).expect("recv_batch");
        } else {
            black_box(rx.recv().expect("recv"));
            got += 1;
        }
    }
    let dt = t0.elapsed();
    reap(child);
    n as f64 / dt.as_secs_f64()
}

fn fd_stream(n: usize, size: usize, socket: bool) -> f64 {
    let (r, w) = fd_pair(socket);
    let (go_r, go_w) = fd_pair(false);
    let Some(child) = fork_child() else {
        let mut go = [0u8; 1];
        read_exact(go_r, &mut go);
        let msg = vec![7u8; size];
        for _ in 0..n {
            write_all(w, &msg);
        }
        exit_child()
    };
    let mut buf = vec![0u8; size];
    let t0 = Instant::now();
    write_all(go_w, &[1]);
    for _ in 0..n {
        assert!(read_exact(r, &mut buf));
    }
    let dt = t0.elapsed();
    reap(child);
    for fd in [r, w, go_r, go_w] {
        close(fd);
    }
    n as f64 / dt.as_secs_f64()
}

// ---- main -------------------------------------------------------------------------------

/// One process, one thread: `n` messages of 64 bytes through `try_send` / `try_recv` in runs
/// of 256 (the ring never fills mid-run, so no waiting), then `n` polls of the empty ring and
/// `n` refused sends into a full one (what a consumer that keeps up, and a producer that
/// outruns its consumer, do between messages). For instruction counts under
/// `valgrind --tool=callgrind` (repeatable on a loaded machine, unlike timings): the
/// per-message cost of the hot paths is `(instructions of this function) / n`.
#[inline(never)]
fn single_thread_hot_paths(n: usize) {
    let (tx, rx) = shmchan::channel::<Msg64>(4096).expect("channel");
    let mut left = n;
    while left > 0 {
        let k = left.min(256);
        for i in 0..k {
            tx.try_send(black_box([i as u64; 8])).expect("room");
        }
        for _ in 0..k {
            black_box(rx.try_recv().expect("recv").expect("a message"));
        }
        left -= k;
    }
    empty_polls(&rx, n);
    let (tx, _rx) = shmchan::channel::<Msg64>(1).expect("channel");
    tx.try_send([0; 8]).expect("room");
    full_polls(&tx, n);
}

#[inline(never)]
fn empty_polls(rx: &Receiver<Msg64>, n: usize) {
    for _ in 0..n {
        assert!(black_box(rx.try_recv().expect("recv")).is_none());
    }
}

#[inline(never)]
fn full_polls(tx: &Sender<Msg64>, n: usize) {
    for _ in 0..n {
        assert!(black_box(tx.try_send([1; 8])).is_err());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--hot-paths") {
        let n = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        single_thread_hot_paths(n);
        return;
    }
    // `--only <text>`: run only the cases whose group or name contains `text`.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wanted = |group: &str, name: &str| {
        only.as_deref()
            .is_none_or(|o| group.contains(o) || name.contains(o))
    };
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = if quick {
        Config {
            batches: 50,
            per_batch: 100,
            stream_shm: 200_000,
            stream_fd: 50_000,
        }
    } else {
        Config {
            batches: 200,
            per_batch: 200,
            stream_shm: 2_000_000,
            stream_fd: 300_000,
        }
    };
    let mut csv = String::from("group,case,value,p10,p90,unit\n");
    let mut row = |group: &str, case: &str, (v, lo, hi): (f64, f64, f64), unit: &str| {
        println!("{group:<12} {case:<26} {v:>14.1} {unit}   (p10 {lo:.1}, p90 {hi:.1})");
        csv.push_str(&format!("{group},{case},{v:.1},{lo:.1},{hi:.1},{unit}\n"));
        std::io::stdout().flush().ok();
    };
    // Every case runs `REPEATS` times, interleaved with the others, so that a change in the
    // machine's load during the run affects all cases alike.
    const REPEATS: usize = 3;
    type Case<'a> = (&'a str, Box<dyn Fn() -> Vec<f64> + 'a>);
    let pingpongs: Vec<Case> = vec![
        (
            "bare spin (two atomics)",
            Box::new(|| pinned(true, || bare_spin_pingpong(&cfg))),
        ),
        (
            "shmchan spin",
            Box::new(|| pinned(true, || channel_pingpong(&cfg, WaitStrategy::Spin))),
        ),
        (
            "shmchan adaptive",
            Box::new(|| pinned(true, || channel_pingpong(&cfg, WaitStrategy::Adaptive))),
        ),
        (
            "shmchan blocking (futex)",
            Box::new(|| channel_pingpong(&cfg, WaitStrategy::Block)),
        ),
        ("pipe", Box::new(|| fd_pingpong(&cfg, false))),
        ("unix socket", Box::new(|| fd_pingpong(&cfg, true))),
    ];
    let pingpongs: Vec<Case> = pingpongs
        .into_iter()
        .filter(|(name, _)| wanted("pingpong", name))
        .collect();
    let mut samples = vec![Vec::new(); pingpongs.len()];
    for _ in 0..REPEATS {
        for (i, (_, run)) in pingpongs.iter().enumerate() {
            samples[i].extend(run());
        }
    }
    println!(
        "round trip: median (p10, p90) of {}-round-trip batch means, {} batches x {REPEATS} runs",
        cfg.per_batch, cfg.batches
    );
    for ((name, _), s) in pingpongs.iter().zip(samples) {
        row("pingpong", name, summarize(s), "ns");
    }

    let (n, m) = (cfg.stream_shm, cfg.stream_fd);
    type Stream<'a> = (&'a str, &'a str, Box<dyn Fn() -> f64>);
    let streams: Vec<Stream> = vec![
        (
            "throughput8",
            "shmchan",
            Box::new(move || channel_stream::<Msg8>(n, false)),
        ),
        (
            "throughput8",
            "shmchan batch",
            Box::new(move || channel_stream::<Msg8>(n, true)),
        ),
        (
            "throughput8",
            "pipe",
            Box::new(move || fd_stream(m, 8, false)),
        ),
        (
            "throughput8",
            "unix socket",
            Box::new(move || fd_stream(m, 8, true)),
        ),
        (
            "throughput64",
            "shmchan",
            Box::new(move || channel_stream::<Msg64>(n, false)),
        ),
        (
            "throughput64",
            "shmchan batch",
            Box::new(move || channel_stream::<Msg64>(n, true)),
        ),
        (
            "throughput64",
            "pipe",
            Box::new(move || fd_stream(m, 64, false)),
        ),
        (
            "throughput64",
            "unix socket",
            Box::new(move || fd_stream(m, 64, true)),
        ),
    ];
    let streams: Vec<Stream> = streams
        .into_iter()
        .filter(|(group, name, _)| wanted(group, name))
        .collect();
    let mut rates = vec![Vec::new(); streams.len()];
    for _ in 0..REPEATS {
        for (i, (_, _, run)) in streams.iter().enumerate() {
            rates[i].push(run());
        }
    }
    println!("one-way throughput: median (min, max) of {REPEATS} runs");
    for ((group, name, _), r) in streams.iter().zip(rates) {
        let (med, _, _) = summarize(r.clone());
        let min = r.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.iter().copied().fold(0.0, f64::max);
        row(group, name, (med, min, max), "msg/s");
    }

    let out = std::env::var("SHMCHAN_BENCH_CSV").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/channel-bench.csv").to_owned()
    });
    match std::fs::write(&out, &csv) {
        Ok(()) => println!("wrote {out}"),
        Err(e) => eprintln!("could not write {out}: {e}"),
    }
}
