//! A pool of forked workers, each fed by its own channel, each answering on its own result
//! channel (shmchan channels are single-producer single-consumer). The parent spreads jobs
//! without blocking on any one channel (`try_send` / `try_recv_batch`, and a 1 ms
//! `recv_timeout` when idle), so a full job queue and a full result queue can never deadlock it.
//!
//! ```sh
//! cargo run --example worker_pool            # 4 workers
//! cargo run --example worker_pool -- 2       # 2 workers
//! ```

use std::time::{Duration, Instant};

use shmchan::channel::TrySendError;
use shmchan::{Error, Receiver, Sender, ShmSafe};

/// Count the primes in `start..start + len`.
#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Job {
    id: u64,
    start: u64,
    len: u64,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Done {
    id: u64,
    worker: u32,
    primes: u32,
}

const JOBS: u64 = 400;
const JOB_LEN: u64 = 2_500;

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn count_primes(job: &Job) -> u32 {
    (job.start..job.start + job.len)
        .filter(|&n| is_prime(n))
        .count() as u32
}

fn worker(index: u32, jobs: Receiver<Job>, results: Sender<Done>) -> shmchan::Result<u64> {
    let mut done = 0;
    loop {
        let job = match jobs.recv() {
            Ok(job) => job,
            Err(Error::Disconnected) => return Ok(done), // the parent has no more work
            Err(e) => return Err(e),
        };
        results.send(Done {
            id: job.id,
            worker: index,
            primes: count_primes(&job),
        })?;
        done += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4)
        .clamp(1, 16);

    // One job channel and one result channel per worker, all created before forking.
    let mut job_tx = Vec::new();
    let mut job_rx = Vec::new();
    let mut res_tx = Vec::new();
    let mut res_rx = Vec::new();
    for _ in 0..workers {
        let (t, r) = shmchan::channel::<Job>(16)?;
        job_tx.push(t);
        job_rx.push(Some(r));
        let (t, r) = shmchan::channel::<Done>(16)?;
        res_tx.push(Some(t));
        res_rx.push(r);
    }

    let t0 = Instant::now();
    let mut pids = Vec::new();
    for i in 0..workers {
        // SAFETY: single-threaded here; the child runs `worker` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            // The child inherited every handle: keep its own two, drop the rest so the other
            // channels' ends are held only by the processes that use them.
            let (Some(jobs), Some(results)) = (job_rx[i].take(), res_tx[i].take()) else {
                // SAFETY: ends the child.
                unsafe { libc::_exit(2) };
            };
            drop((job_tx, job_rx, res_tx, res_rx));
            let code = match worker(i as u32, jobs, results) {
                Ok(n) => {
                    println!("  worker {i} (pid {}): {n} jobs", std::process::id());
                    0
                }
                Err(e) => {
                    eprintln!("worker {i}: {e}");
                    1
                }
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    // The workers' ends now belong to the workers.
    drop(job_rx);
    drop(res_tx);

    let mut next_job = 0u64;
    let mut results = vec![None; JOBS as usize];
    let mut received = 0;
    let mut batch = Vec::new();
    while received < JOBS as usize {
        let mut progress = false;
        for (w, tx) in job_tx.iter().enumerate() {
            while next_job < JOBS {
                let job = Job {
                    id: next_job,
                    start: next_job * JOB_LEN,
                    len: JOB_LEN,
                };
                match tx.try_send(job) {
                    Ok(()) => {
                        next_job += 1;
                        progress = true;
                    }
                    Err(TrySendError::Full(_)) => break,
                    Err(e) => return Err(format!("worker {w}: {e}").into()),
                }
            }
        }
        for rx in &res_rx {
            batch.clear();
            rx.try_recv_batch(&mut batch, 64)?;
            for d in &batch {
                results[d.id as usize] = Some(d.primes);
                received += 1;
                progress = true;
            }
        }
        if !progress {
            // Nothing to hand out and nothing back yet: wait a little on one worker's results
            // (in turn), instead of spinning over all of them.
            let w = received % workers;
            match res_rx[w].recv_timeout(Duration::from_millis(1)) {
                Ok(d) => {
                    results[d.id as usize] = Some(d.primes);
                    received += 1;
                }
                Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(format!("worker {w}: {e}").into()),
            }
        }
    }
    drop(job_tx); // workers see Disconnected once their queue is empty, and exit
    for pid in pids {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    let elapsed = t0.elapsed();

    let total: u64 = results.iter().map(|r| u64::from(r.unwrap_or(0))).sum();
    let expected = (0..JOBS * JOB_LEN).filter(|&n| is_prime(n)).count() as u64;
    println!(
        "{workers} workers: {JOBS} jobs, {total} primes below {} in {elapsed:.2?} (single-process check: {expected})",
        JOBS * JOB_LEN
    );
    if total != expected {
        return Err("the pool's count differs from the single-process count".into());
    }
    Ok(())
}
