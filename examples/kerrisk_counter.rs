//! Michael Kerrisk's anonymous shared memory program (*The Linux Programming Interface*,
//! ch. 49, `anon_mmap.c`), with shmchan.
//!
//! The parent maps an anonymous shared segment (`mmap(MAP_SHARED | MAP_ANONYMOUS, fd -1)`)
//! *before* `fork`, sets a counter to 1; the child prints it and increments it; the parent waits
//! for the child and prints 2. With `--private` the mapping is `MAP_PRIVATE` instead: the child
//! increments its own copy-on-write copy and the parent still prints 1.
//!
//! ```sh
//! cargo run --example kerrisk_counter
//! cargo run --example kerrisk_counter -- --private
//! ```
//!
//! The counter is an `AtomicU64` in the segment rather than C's bare `int *`: two processes
//! touching the same memory without synchronisation is a data race, which Rust does not allow.

use shmchan::Segment;
use std::io::Write;
use std::sync::atomic::Ordering;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let private = std::env::args().any(|a| a == "--private");
    // The parent creates the mapped region before calling fork().
    let seg = if private {
        Segment::anonymous_private_raw(std::mem::size_of::<u64>())?
    } else {
        Segment::anonymous_raw(std::mem::size_of::<u64>())?
    };
    let counter = seg.atomic_u64(0).ok_or("the segment holds one u64")?;
    counter.store(1, Ordering::Release); // initialise the integer in the mapped region
    std::io::stdout().flush()?;

    // SAFETY: this program is single-threaded, so the child may do anything the parent could;
    // it only prints, touches the shared counter and leaves with `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().into()),
        0 => {
            // Child: increment the shared integer and exit.
            println!("Child started, value = {}", counter.load(Ordering::Acquire));
            counter.fetch_add(1, Ordering::AcqRel);
            let _ = std::io::stdout().flush();
            // SAFETY: ends the child without running the parent's destructors a second time.
            unsafe { libc::_exit(0) }
        }
        child => {
            // Parent: wait for the child to terminate, then read what it wrote.
            let mut status = 0;
            // SAFETY: `child` is our child process; `status` is a live out-parameter.
            if unsafe { libc::waitpid(child, &mut status, 0) } == -1 {
                return Err(std::io::Error::last_os_error().into());
            }
            println!(
                "In parent, value = {}{}",
                counter.load(Ordering::Acquire),
                if private {
                    " (MAP_PRIVATE: the child changed its own copy)"
                } else {
                    ""
                }
            );
            Ok(()) // dropping `seg` unmaps it (munmap)
        }
    }
}
