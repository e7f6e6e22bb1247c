//! A pool of forked workers sharing one mpmc job queue and one mpmc result queue: each job goes
//! to exactly one worker, whichever is free. The parent waits on both queues at once with a
//! `WaitSet` (room for more jobs, or results to collect), so neither a full job queue nor a
//! full result queue can deadlock it, and it never polls: while nothing can move it sleeps.
//!
//! ```sh
//! cargo run --example worker_pool            # 4 workers
//! cargo run --example worker_pool -- 2       # 2 workers
//! ```

use std::time::{Duration, Instant};

use shmchan::mpmc::{self, TrySendError};
use shmchan::{Error, ShmSafe, WaitSet};

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

fn worker(
    index: u32,
    jobs: mpmc::Receiver<Job>,
    results: mpmc::Sender<Done>,
) -> shmchan::Result<u64> {
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

    // Two queues for the whole pool, created before forking. Small on purpose: the parent
    // must keep both moving.
    let (job_tx, job_rx) = mpmc::channel::<Job>(16)?;
    let (res_tx, res_rx) = mpmc::channel::<Done>(16)?;

    let t0 = Instant::now();
    let mut pids = Vec::new();
    for i in 0..workers {
        // SAFETY: single-threaded here; the child runs `worker` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            // The child inherited all four handles: it keeps the job receiver and the result
            // sender, and drops the parent's ends so that they are held only by the parent.
            drop((job_tx, res_rx));
            let code = match worker(i as u32, job_rx, res_tx) {
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
    {
        let mut set = WaitSet::new();
        let room = set.add(&job_tx); // ready when the job queue has room
        let done = set.add(&res_rx); // ready when a result is waiting
        let mut feeding = true;
        while received < JOBS as usize {
            let ready = set.wait(Some(Duration::from_secs(60)))?;
            if ready == room {
                while next_job < JOBS {
                    let job = Job {
                        id: next_job,
                        start: next_job * JOB_LEN,
                        len: JOB_LEN,
                    };
                    match job_tx.try_send(job) {
                        Ok(()) => next_job += 1,
                        Err(TrySendError::Full(_)) => break,
                        Err(e) => return Err(format!("job queue: {e}").into()),
                    }
                }
                if next_job == JOBS && feeding {
                    // Every job is queued: the job queue's room no longer matters.
                    set.remove(room);
                    feeding = false;
                }
            } else if ready == done {
                batch.clear();
                match res_rx.try_recv_batch(&mut batch, 64) {
                    Ok(_) => {}
                    Err(Error::Disconnected) => {
                        return Err("every worker exited before the work was done".into());
                    }
                    Err(e) => return Err(e.into()),
                }
                for d in &batch {
                    results[d.id as usize] = Some(d.primes);
                    received += 1;
                }
            }
        }
    }
    drop(job_tx); // workers see Disconnected once the job queue is empty, and exit
    let mut failed = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    let elapsed = t0.elapsed();

    let total: u64 = results.iter().map(|r| u64::from(r.unwrap_or(0))).sum();
    let expected = (0..JOBS * JOB_LEN).filter(|&n| is_prime(n)).count() as u64;
    println!(
        "{workers} workers: {JOBS} jobs, {total} primes below {} in {elapsed:.2?} (single-process check: {expected})",
        JOBS * JOB_LEN
    );
    if failed > 0 {
        return Err(format!("{failed} workers failed").into());
    }
    if results.iter().any(Option::is_none) || total != expected {
        return Err("the pool's count differs from the single-process count".into());
    }
    Ok(())
}
