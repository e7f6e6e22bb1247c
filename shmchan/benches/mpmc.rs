//! mpmc throughput across processes: `P` forked producers and `C` forked consumers (1, 2 and 4
//! of each) sharing one shmchan mpmc queue, against the same processes sharing one pipe (each
//! message one 64-byte `write` and one 64-byte `read`: writes of at most `PIPE_BUF` bytes are
//! atomic, so every read returns one whole message and each message goes to one consumer).
//!
//! `cargo bench -p shmchan --bench mpmc` prints a table (messages per second, and the ratio
//! mpmc / pipe) and writes `target/mpmc-bench.csv`; `-- --quick` runs a shorter version. Every
//! consumer counts what it received into a shared counter and the run checks the total, so a
//! lost or duplicated message fails the benchmark. A plain binary rather than criterion: every
//! case forks its processes, and all cases must run on the same machine state.

use std::hint::black_box;
use std::io::Write as _;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

type Msg64 = [u64; 8];

/// Forks: `None` in the child (which must end with [`exit_child`]), the child's pid in the
/// parent.
fn fork_child() -> Option<libc::pid_t> {
    // SAFETY: the benchmark is single-threaded when it forks, so the child may run arbitrary
    // code; it never returns into the parent's code (it calls `exit_child`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    (pid != 0).then_some(pid)
}

/// Ends a forked child without running the parent's destructors or atexit handlers.
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
    // SAFETY: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: closing a descriptor we own, once.
    unsafe { libc::close(fd) };
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

/// One `read` of up to `buf.len()` bytes; 0 at end of file.
fn read_once(fd: RawFd, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "read failed");
    n as usize
}

/// A counter in an anonymous shared mapping, visible to children forked afterwards.
struct SharedCounter(*mut AtomicU64);

impl SharedCounter {
    fn new() -> SharedCounter {
        // SAFETY: a fresh anonymous shared mapping; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedCounter(p.cast())
    }

    fn get(&self) -> &AtomicU64 {
        // SAFETY: the mapping is zeroed, page-aligned and lives until `drop`; every process
        // accesses the word atomically.
        unsafe { &*self.0 }
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: unmapping what we mapped, once; no reference into it outlives `self`.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// Forked children waiting for a byte each on a pipe before they start.
struct Pool {
    pids: Vec<libc::pid_t>,
    go: RawFd,
}

/// Forks `n` children that wait for the start signal and then run `child(index)`.
fn spawn(n: usize, mut child: impl FnMut(usize)) -> Pool {
    let (go_r, go_w) = pipe();
    let mut pids = Vec::new();
    for i in 0..n {
        match fork_child() {
            Some(pid) => pids.push(pid),
            None => {
                close(go_w);
                let mut b = [0u8];
                assert_eq!(read_once(go_r, &mut b), 1);
                // Never unwind into the parent's code: a failed child exits non-zero.
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(i)));
                exit_child(if ok.is_ok() { 0 } else { 101 })
            }
        }
    }
    close(go_r);
    Pool { pids, go: go_w }
}

impl Pool {
    /// Starts every child at once; returns the seconds until all of them exited.
    fn run(self) -> f64 {
        let t0 = Instant::now();
        write_all(self.go, &vec![1u8; self.pids.len()]);
        for pid in self.pids {
            reap(pid);
        }
        let dt = t0.elapsed().as_secs_f64();
        close(self.go);
        dt
    }
}

/// Messages per second through one mpmc queue.
fn mpmc_case(n: usize, producers: usize, consumers: usize) -> f64 {
    let (tx, rx) = shmchan::mpmc::channel::<Msg64>(1024).expect("mpmc channel");
    let received = SharedCounter::new();
    let (mut tx, mut rx) = (Some(tx), Some(rx));
    let per = n / producers;
    let pool = spawn(producers + consumers, |p| {
        if p < producers {
            drop(rx.take());
            let tx = tx.take().expect("sender");
            for i in 0..per {
                tx.send([(p * per + i) as u64; 8]).expect("send");
            }
        } else {
            drop(tx.take());
            let rx = rx.take().expect("receiver");
            let mut got = 0;
            while let Ok(m) = rx.recv() {
                black_box(m);
                got += 1;
            }
            received.get().fetch_add(got, Ordering::Relaxed);
        }
    });
    // The parent's copies: consumers see `Disconnected` once the producers' handles are gone.
    drop((tx, rx));
    let dt = pool.run();
    let got = received.get().load(Ordering::Relaxed) as usize;
    assert_eq!(got, per * producers, "mpmc: messages lost or duplicated");
    (per * producers) as f64 / dt
}

/// Messages per second through one pipe shared by the same processes.
fn pipe_case(n: usize, producers: usize, consumers: usize) -> f64 {
    let (r, w) = pipe();
    let received = SharedCounter::new();
    let per = n / producers;
    let pool = spawn(producers + consumers, |p| {
        if p < producers {
            close(r);
            let mut msg = [0u8; 64];
            for i in 0..per {
                msg[..8].copy_from_slice(&((p * per + i) as u64).to_ne_bytes());
                write_all(w, &msg);
            }
            close(w);
        } else {
            close(w);
            let mut buf = [0u8; 64];
            let mut got = 0;
            loop {
                match read_once(r, &mut buf) {
                    0 => break,
                    64 => got += 1,
                    k => panic!("a read of {k} bytes: messages are 64 bytes"),
                }
                black_box(&buf);
            }
            received.get().fetch_add(got, Ordering::Relaxed);
        }
    });
    // The parent's ends: consumers see end of file once every producer closed its copy.
    close(r);
    close(w);
    let dt = pool.run();
    let got = received.get().load(Ordering::Relaxed) as usize;
    assert_eq!(got, per * producers, "pipe: messages lost or duplicated");
    (per * producers) as f64 / dt
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_shm, n_pipe) = if quick {
        (200_000, 50_000)
    } else {
        (2_000_000, 300_000)
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("mpmc vs pipe, 64-byte messages, forked processes ({cpus} CPUs), medians of 3 runs");
    println!(
        "{:<4} {:<4} {:>14} {:>14} {:>8}",
        "P", "C", "mpmc msg/s", "pipe msg/s", "ratio"
    );
    let mut csv = String::from("producers,consumers,mpmc_msgs_per_s,pipe_msgs_per_s,ratio\n");
    for producers in [1, 2, 4] {
        for consumers in [1, 2, 4] {
            // Medians of three interleaved runs: one run of a fraction of a second on a shared
            // 2-core machine measures whatever else the scheduler was doing.
            let (mut shm, mut pipe) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                shm.push(mpmc_case(n_shm, producers, consumers));
                pipe.push(pipe_case(n_pipe, producers, consumers));
            }
            let (shm, pipe) = (median(shm), median(pipe));
            let ratio = shm / pipe;
            println!("{producers:<4} {consumers:<4} {shm:>14.0} {pipe:>14.0} {ratio:>7.1}x");
            std::io::stdout().flush().ok();
            csv.push_str(&format!(
                "{producers},{consumers},{shm:.0},{pipe:.0},{ratio:.2}\n"
            ));
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mpmc-bench.csv");
    if let Err(e) = std::fs::write(&path, csv) {
        eprintln!("could not write {}: {e}", path.display());
    } else {
        println!("wrote {}", path.display());
    }
}
