//! 100 receivers pending under tokio, their senders idle in another process, cost this process
//! under 1% of a core: the notifier sleeps in `futex_waitv` and its liveness tick reads `/proc`
//! once per peer process, not once per receiver. Its own binary, so that no other test's work
//! counts in the process's CPU time.

#![cfg(feature = "async")]

mod fork_support;

use std::time::{Duration, Instant};

use fork_support::{Pipe, child_main, fork, wait};

const RECEIVERS: usize = 100;
const IDLE: Duration = Duration::from_secs(2);

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: `usage` is a valid out-pointer; getrusage has no other precondition.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn a_hundred_idle_pending_receivers_cost_under_one_percent_of_a_core() {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        let (tx, rx) = shmchan::channel::<u64>(4).unwrap();
        senders.push(tx);
        receivers.push(rx);
    }
    let (go, done) = (Pipe::new(), Pipe::new());
    let Some(pid) = fork() else {
        drop(receivers);
        child_main(|| {
            // Idle until told, then one message on each channel.
            go.recv();
            for (i, tx) in senders.iter().enumerate() {
                if tx.send(i as u64).is_err() {
                    return 1;
                }
            }
            done.recv();
            0
        })
    };
    drop(senders);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|mut rx| rt.spawn(async move { rx.recv_async().await }))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while shmchan::__async_notifier_state().0 < RECEIVERS {
        assert!(
            Instant::now() < deadline,
            "the receivers did not all register"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Measured from the first ticks on: their full liveness looks (every receiver's peer read
    // from `/proc`) are the costliest part, and count.
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    std::thread::sleep(IDLE);
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "{RECEIVERS} idle pending receivers: {cpu:?} of CPU in {wall:?} ({:.3}% of a core)",
        share * 100.0
    );
    // Still pending, and all woken by one message each.
    go.send(1);
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(rt.block_on(t).unwrap().unwrap(), i as u64);
    }
    done.send(1);
    assert_eq!(wait(pid), 0);
    assert!(
        share < 0.01,
        "idle receivers cost {:.3}% of a core",
        share * 100.0
    );
}
