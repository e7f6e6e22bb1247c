//! Zero-copy benchmarks, all in one run, across two processes (`fork`), for messages of 64 B,
//! 4 KiB, 64 KiB, 1 MiB and 4 MiB:
//!
//! - round-trip latency (pingpong, both sides with the default adaptive wait, pinned to CPUs 0
//!   and 1 as in the channel benchmark, so that a hop never waits for the other side's time
//!   slice; pipes unpinned): a loaned send
//!   (`loan` + one word written through the view + `send`) answered the same way after
//!   `recv_ref` reads that word in place, over spsc channels, mpmc queues and broadcast
//!   channels (`Overflow::Block`, one subscriber); the copy path (`send(T)` / `recv() -> T`:
//!   the whole message copied in and out); a pipe pair (the whole message written and read
//!   back);
//! - one-way throughput (messages/s and GiB/s): loans (one word written per message, read in
//!   place), the copy path, and a pipe (whole messages).
//!
//! The loaned figures move one word of payload: that is the point of a loan (the producer
//! builds the message in place, the consumer reads what it needs in place), and what
//! zero-copy frameworks measure. The copy and pipe figures move every byte.
//!
//! `cargo bench -p shmchan --bench loan` prints a table and writes `target/loan-bench.csv`;
//! `-- --quick` runs a shorter version. A plain binary, like the channel benchmark: every case
//! forks a peer, and all cases must run on the same machine state to be comparable.

use std::hint::black_box;
use std::io::Write as _;
use std::os::fd::RawFd;
use std::time::Instant;

use shmchan::channel::WaitStrategy;

/// Forks: `None` in the child (which must end with [`exit_child`]), the child's pid in the
/// parent. With `pinned`, the parent runs on CPU 0 and the child on CPU 1 until [`unpin`].
fn fork_child(pinned: bool) -> Option<libc::pid_t> {
    if pinned {
        pin(Some(0));
    }
    // SAFETY: the bench thread is the only one doing work when it forks (the main thread only
    // waits in `join`), and the child never returns into the parent's code (`exit_child`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 && pinned {
        pin(Some(1));
    }
    (pid != 0).then_some(pid)
}

/// Pins the calling thread to `cpu`, or lets it run anywhere (`None`).
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

fn unpin() {
    pin(None);
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

fn fd_pair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
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

/// Mean round-trip time in ns over `iters` round trips, after a tenth as many for warm-up.
fn time_round_trips(iters: u64, mut round_trip: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 + 1 {
        round_trip(i);
    }
    let t0 = Instant::now();
    for i in 0..iters {
        round_trip(i + (1 << 32));
    }
    t0.elapsed().as_nanos() as f64 / iters as f64
}

type Msg<const W: usize> = [u64; W];

fn adaptive_channel<const W: usize>(
    cap: usize,
) -> (shmchan::Sender<Msg<W>>, shmchan::Receiver<Msg<W>>) {
    let (tx, rx) = shmchan::channel::<Msg<W>>(cap).expect("channel");
    tx.set_wait_strategy(WaitStrategy::Adaptive);
    rx.set_wait_strategy(WaitStrategy::Adaptive);
    (tx, rx)
}

// ---- round trips ----------------------------------------------------------------------

/// Loaned round trips over two channel pairs of any kind with the loan API (`loan` / `send` /
/// `recv_ref`): the child answers each ping's word with a loaned pong. A macro, not a generic
/// function: spsc, mpmc and broadcast ends share method names but no trait.
macro_rules! loan_round_trips {
    ($iters:expr, $ping:expr, $pong:expr) => {{
        let (mut ping_tx, mut ping_rx) = $ping;
        let (mut pong_tx, mut pong_rx) = $pong;
        let Some(child) = fork_child(true) else {
            drop(ping_tx);
            drop(pong_rx);
            while let Ok(msg) = ping_rx.recv_ref() {
                let word = msg.view().get(0).unwrap_or(0);
                let Ok(mut slot) = pong_tx.loan() else { break };
                slot.view_mut().set(0, word);
                if slot.send().is_err() {
                    break;
                }
            }
            exit_child()
        };
        drop(ping_rx);
        drop(pong_tx);
        let r = time_round_trips($iters, |i| {
            let mut slot = ping_tx.loan().expect("loan");
            slot.view_mut().set(0, i);
            slot.send().expect("send");
            let msg = pong_rx.recv_ref().expect("recv_ref");
            black_box(msg.view().get(0));
        });
        drop(ping_tx);
        reap(child);
        unpin();
        r
    }};
}

fn loan_pingpong<const W: usize>(iters: u64) -> f64 {
    loan_round_trips!(iters, adaptive_channel::<W>(2), adaptive_channel::<W>(2))
}

/// [`loan_pingpong`] over two mpmc queues (one sender and one receiver each).
fn mpmc_loan_pingpong<const W: usize>(iters: u64) -> f64 {
    let queue = || {
        let (tx, rx) = shmchan::mpmc::channel::<Msg<W>>(2).expect("mpmc queue");
        tx.set_wait_strategy(WaitStrategy::Adaptive);
        rx.set_wait_strategy(WaitStrategy::Adaptive);
        (tx, rx)
    };
    loan_round_trips!(iters, queue(), queue())
}

/// [`loan_pingpong`] over two broadcast channels (`Overflow::Block`, one subscriber each).
/// The child's copy of the answering publisher takes over once the parent drops its own (it
/// is a successor, reserved at the fork), so the parent's subscriber never sees a gap.
fn broadcast_loan_pingpong<const W: usize>(iters: u64) -> f64 {
    let channel = || {
        let (tx, rx) = shmchan::broadcast::channel::<Msg<W>>(2).expect("broadcast channel");
        tx.set_wait_strategy(WaitStrategy::Adaptive);
        rx.set_wait_strategy(WaitStrategy::Adaptive);
        (tx, rx)
    };
    loan_round_trips!(iters, channel(), channel())
}

fn copy_pingpong<const W: usize>(iters: u64) -> f64 {
    let (ping_tx, ping_rx) = adaptive_channel::<W>(2);
    let (pong_tx, pong_rx) = adaptive_channel::<W>(2);
    let Some(child) = fork_child(true) else {
        drop(ping_tx);
        drop(pong_rx);
        while let Ok(m) = ping_rx.recv() {
            if pong_tx.send(m).is_err() {
                break;
            }
        }
        exit_child()
    };
    drop(ping_rx);
    drop(pong_tx);
    let mut msg = [0u64; W];
    let r = time_round_trips(iters, |i| {
        msg[0] = i;
        ping_tx.send(msg).expect("send");
        msg = black_box(pong_rx.recv().expect("recv"));
    });
    drop(ping_tx);
    reap(child);
    unpin();
    r
}

fn pipe_pingpong(iters: u64, size: usize) -> f64 {
    let (a_read, a_write) = fd_pair();
    let (b_read, b_write) = fd_pair();
    let Some(child) = fork_child(false) else {
        close(a_write);
        close(b_read);
        let mut buf = vec![0u8; size];
        while read_exact(a_read, &mut buf) {
            write_all(b_write, &buf);
        }
        exit_child()
    };
    let mut buf = vec![7u8; size];
    let r = time_round_trips(iters, |i| {
        buf[0] = i as u8;
        write_all(a_write, &buf);
        assert!(read_exact(b_read, &mut buf));
    });
    close(a_write);
    reap(child);
    for fd in [a_read, b_read, b_write] {
        close(fd);
    }
    r
}

// ---- throughput -----------------------------------------------------------------------

/// Messages per second received by the parent from a forked sender of `n` messages, through
/// loans (`loaned`) or copies.
fn channel_stream<const W: usize>(n: u64, loaned: bool) -> f64 {
    // As deep as the channel benchmark's ring (4096) where that fits in 64 MiB.
    let cap = ((64usize << 20) / (W * 8)).clamp(8, 4096);
    let (mut tx, mut rx) = adaptive_channel::<W>(cap);
    let (go_tx, go_rx) = shmchan::channel::<u8>(1).expect("channel");
    let Some(child) = fork_child(false) else {
        drop(rx);
        drop(go_tx);
        let _ = go_rx.recv();
        if loaned {
            for i in 0..n {
                let mut slot = tx.loan().expect("loan");
                slot.view_mut().set(0, i);
                slot.send().expect("send");
            }
        } else {
            let mut msg = [0u64; W];
            for i in 0..n {
                msg[0] = i;
                tx.send(msg).expect("send");
            }
        }
        exit_child()
    };
    drop(tx);
    drop(go_rx);
    let t0 = Instant::now();
    go_tx.send(1).expect("go");
    for _ in 0..n {
        if loaned {
            black_box(rx.recv_ref().expect("recv_ref").view().get(0));
        } else {
            black_box(rx.recv().expect("recv")[0]);
        }
    }
    let dt = t0.elapsed();
    reap(child);
    n as f64 / dt.as_secs_f64()
}

fn pipe_stream(n: u64, size: usize) -> f64 {
    let (r, w) = fd_pair();
    let (go_r, go_w) = fd_pair();
    let Some(child) = fork_child(false) else {
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

// ---- main -----------------------------------------------------------------------------

struct Report {
    csv: String,
}

impl Report {
    fn row(&mut self, group: &str, size: &str, case: &str, value: f64, unit: &str, extra: &str) {
        println!("{group:<11} {size:>6} {case:<8} {value:>14.1} {unit:<6} {extra}");
        self.csv
            .push_str(&format!("{group},{size},{case},{value:.1},{unit}\n"));
        std::io::stdout().flush().ok();
    }
}

/// Runs every case for messages of `W` words (`label` bytes); `scale` divides the counts.
fn size_cases<const W: usize>(label: &str, scale: u64, report: &mut Report) {
    let bytes = W * 8;
    // Fewer round trips for the larger messages, whose copies and pipe transfers are slow.
    let rtt_iters = (2_000_000 / (1 + bytes as u64 / 1024)).clamp(200, 20_000) / scale;
    // A loaned round trip costs the same at every size: as many as for 64 B, so that the
    // large sizes are not measured over a few hundred scheduler-noisy round trips.
    let loan_iters = 20_000 / scale;
    let stream_n = (20_000_000 / (1 + bytes as u64 / 64)).clamp(300, 200_000) / scale;
    // Medians of three interleaved runs of each case.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut loan, mut copy, mut pipe) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mpmc_loan, mut broadcast_loan) = (Vec::new(), Vec::new());
    for run in 0..5 {
        loan.push(loan_pingpong::<W>(loan_iters));
        mpmc_loan.push(mpmc_loan_pingpong::<W>(loan_iters));
        broadcast_loan.push(broadcast_loan_pingpong::<W>(loan_iters));
        // Loaned round trips are cheap: five runs of them, three of the slow copies and pipes.
        if run < 3 {
            copy.push(copy_pingpong::<W>(rtt_iters));
            pipe.push(pipe_pingpong(rtt_iters, bytes));
        }
    }
    let (loan, copy, pipe) = (median(loan), median(copy), median(pipe));
    report.row("round-trip", label, "loan", loan, "ns", "");
    let mpmc_loan = median(mpmc_loan);
    report.row("round-trip", label, "mpmc-loan", mpmc_loan, "ns", "");
    let broadcast_loan = median(broadcast_loan);
    report.row("round-trip", label, "bcast-loan", broadcast_loan, "ns", "");
    report.row("round-trip", label, "copy", copy, "ns", "");
    report.row("round-trip", label, "pipe", pipe, "ns", "");
    let (mut loan, mut copy, mut pipe) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        loan.push(channel_stream::<W>(stream_n, true));
        copy.push(channel_stream::<W>(stream_n, false));
        pipe.push(pipe_stream(stream_n, bytes));
    }
    let gib = |rate: f64| {
        format!(
            "({:.2} GiB/s of messages)",
            rate * bytes as f64 / (1u64 << 30) as f64
        )
    };
    for (case, rates) in [("loan", loan), ("copy", copy), ("pipe", pipe)] {
        let rate = median(rates);
        report.row("throughput", label, case, rate, "msg/s", &gib(rate));
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 5 } else { 1 };
    // The copy path moves whole messages through the stack (4 MiB by value, more than once):
    // run on a thread with room for that. The main thread only waits, so forking from the
    // bench thread forks a process with a single running thread.
    let report = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut report = Report {
                csv: String::from("group,size,case,value,unit\n"),
            };
            println!("medians of 5 runs (loan round trips) or 3 (the rest); loans move one word of payload, copy and pipe every byte");
            size_cases::<8>("64B", scale, &mut report);
            size_cases::<512>("4KiB", scale, &mut report);
            size_cases::<8192>("64KiB", scale, &mut report);
            size_cases::<131_072>("1MiB", scale, &mut report);
            size_cases::<524_288>("4MiB", scale, &mut report);
            report
        })
        .expect("spawn the bench thread")
        .join()
        .expect("the bench thread panicked");
    let out = std::env::var("SHMCHAN_LOAN_BENCH_CSV").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/loan-bench.csv").to_owned()
    });
    match std::fs::write(&out, &report.csv) {
        Ok(()) => println!("wrote {out}"),
        Err(e) => eprintln!("could not write {out}: {e}"),
    }
}
