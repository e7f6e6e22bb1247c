//! The classic file-lock technique for shared memory: the lock file holds no data, it only
//! coordinates access. Worker processes increment a shared counter under an fcntl record lock
//! (`F_WRLCK` on the first byte of an empty lock file), the parent checks that the final count
//! is exact.
//!
//! ```sh
//! cargo run --example fcntl_counter            # 4 workers x 2000 increments
//! cargo run --example fcntl_counter -- 8 500   # 8 workers x 500
//! ```
//!
//! Each increment is a deliberately slow read-modify-write (read, yield, write back): without the
//! lock, increments would be lost and the final count would come out short.

use shmchan::{FcntlLock, Shared, ShmSafe};
use std::io::Write;

#[derive(ShmSafe, Clone, Copy, Debug, Default)]
#[repr(C)]
struct Counter {
    count: u64,
    /// Which worker incremented last.
    last_pid: u32,
    _pad: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: u64 = args.next().map_or(Ok(4), |a| a.parse())?;
    let increments: u64 = args.next().map_or(Ok(2000), |a| a.parse())?;

    let counter = Shared::<Counter, FcntlLock>::anonymous(Counter::default())?;
    println!(
        "lock file: {}",
        counter
            .lock_path()
            .map_or("-".into(), |p| p.display().to_string())
    );
    std::io::stdout().flush()?;

    let mut children = Vec::new();
    for _ in 0..workers {
        // SAFETY: single-threaded program; the child only uses the shared value and `_exit`s.
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error().into()),
            0 => {
                let pid = std::process::id();
                let mut failed = 0;
                for i in 0..increments {
                    // Alternate the two styles: a guard that derefs to the value in place, and
                    // the closure API shared with SeqLock.
                    if i % 2 == 0 {
                        match counter.lock_write() {
                            Ok(mut c) => {
                                let n = c.count;
                                std::thread::yield_now();
                                c.count = n + 1;
                                c.last_pid = pid;
                            }
                            Err(_) => failed = 1,
                        }
                    } else {
                        counter.write(|c| {
                            let n = c.count;
                            std::thread::yield_now();
                            c.count = n + 1;
                            c.last_pid = pid;
                        });
                    }
                }
                // SAFETY: ends the child without running the parent's destructors again (the
                // parent removes the lock file).
                unsafe { libc::_exit(failed) }
            }
            pid => children.push(pid),
        }
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a live out-parameter.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("worker {pid} failed ({status:#x})").into());
        }
    }
    let c = counter.read();
    let expected = workers * increments;
    println!(
        "final count {} (expected {expected}), last incremented by pid {}",
        c.count, c.last_pid
    );
    if c.count != expected {
        return Err(format!("lost {} increments", expected - c.count).into());
    }
    println!("exact: the record lock excluded every worker");
    Ok(())
}
