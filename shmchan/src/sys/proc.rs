//! Process and thread identity and liveness, robust against pid reuse: an owner is identified by
//! its id *and* its start time (`/proc/<pid>/stat` field 22, in clock ticks since boot); and
//! the fork generation, which tells per-process state that it now runs in a forked child.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The calling process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// The calling thread's id (system-unique among live threads on Linux).
pub(crate) fn tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

pub(crate) use crate::format::liveness::Liveness;

/// Fields 3 (state) and 22 (start time) of a `/proc/.../stat` file.
fn parse_stat(stat: &str) -> Option<(u8, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces or ')': split after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // `rest` starts at field 3; field 22 is 19 further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn read_stat(path: &str) -> Option<(u8, u64)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// The start time of process `pid`, or `None` if it does not exist.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(&format!("/proc/{pid}/stat")).map(|(_, t)| t)
}

/// The start time of thread `tid` (any process), or `None` if it does not exist.
pub(crate) fn thread_start_time(tid: u32) -> Option<u64> {
    // /proc/<tid>/stat resolves for any thread id, not only for thread-group leaders.
    read_stat(&format!("/proc/{tid}/stat")).map(|(_, t)| t)
}

/// The process id (thread group id) of thread `tid`, or `None` if it does not exist.
pub(crate) fn thread_group_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/<id>/stat` answers by id: fields 3 and 22, `None` for a process that is gone.
type StatAnswers = Vec<(u32, Option<(u8, u64)>)>;

std::thread_local! {
    /// The `/proc/<id>/stat` answers read so far inside [`memoized`] on this thread.
    static STAT_MEMO: std::cell::RefCell<Option<StatAnswers>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f`, reading each `/proc/<id>/stat` (for [`liveness`] and [`liveness_low32`]) and each
/// `/proc/<pid>/maps` (for `procfs::maps_object`) at most once on this thread while it runs:
/// one sweep over many handles whose peers are the same processes (the async notifier's
/// liveness tick) costs one read per process, not one per handle.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) fn memoized<R>(f: impl FnOnce() -> R) -> R {
    let outer = STAT_MEMO.with(|m| m.borrow_mut().replace(Vec::new()));
    let r = super::procfs::memoized(f);
    STAT_MEMO.with(|m| *m.borrow_mut() = outer);
    r
}

/// Fields 3 and 22 of `/proc/<id>/stat` (through the memo of [`memoized`] when one is active).
fn stat_of(id: u32) -> Option<(u8, u64)> {
    let memo = STAT_MEMO.with(|m| {
        m.borrow()
            .as_ref()
            .map(|v| v.iter().find(|(i, _)| *i == id).map(|&(_, s)| s))
    });
    match memo {
        None => read_stat(&format!("/proc/{id}/stat")),
        Some(Some(s)) => s,
        Some(None) => {
            let s = read_stat(&format!("/proc/{id}/stat"));
            STAT_MEMO.with(|m| {
                if let Some(v) = m.borrow_mut().as_mut() {
                    v.push((id, s));
                }
            });
            s
        }
    }
}

/// Whether the process or thread `id` started at `start_time` still exists.
///
/// A `start_time` of 0 means "unknown": only existence is checked.
pub(crate) fn liveness(id: u32, start_time: u64) -> Liveness {
    if id == 0 {
        return Liveness::Dead;
    }
    match stat_of(id) {
        None => Liveness::Dead,
        Some((_, t)) if start_time != 0 && t != start_time => Liveness::Dead,
        Some((b'Z' | b'X' | b'x', _)) => Liveness::Dead,
        Some((b'T' | b't', _)) => Liveness::Stopped,
        Some(_) => Liveness::Alive,
    }
}

/// Like [`liveness`], but compares only the low 32 bits of the start time (what fits next to a
/// thread id in one 64-bit lock word). `start_low32 == 0` means "unknown": only existence is
/// checked.
pub(crate) fn liveness_low32(id: u32, start_low32: u32) -> Liveness {
    if id == 0 {
        return Liveness::Dead;
    }
    match stat_of(id) {
        None => Liveness::Dead,
        Some((_, t)) if start_low32 != 0 && t as u32 != start_low32 => Liveness::Dead,
        Some((b'Z' | b'X' | b'x', _)) => Liveness::Dead,
        Some((b'T' | b't', _)) => Liveness::Stopped,
        Some(_) => Liveness::Alive,
    }
}

/// A process, held by a pidfd (Linux 5.3+): tells whether it exited with one `poll`, no
/// `/proc` read, and never confuses it with a later process that reuses its pid.
#[cfg(feature = "async")]
pub(crate) struct ProcessHandle(std::os::fd::OwnedFd);

#[cfg(feature = "async")]
impl ProcessHandle {
    /// A handle on process `pid`; `None` if it does not exist or pidfds are unavailable.
    pub(crate) fn open(pid: u32) -> Option<ProcessHandle> {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        let fd = std::os::fd::RawFd::try_from(fd)
            .ok()
            .filter(|&fd| fd >= 0)?;
        // SAFETY: `fd` was just returned by pidfd_open: open, and owned by nobody else.
        Some(ProcessHandle(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    /// Whether the process has exited (a zombie counts as exited).
    pub(crate) fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.0),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// Registers fork handlers (`pthread_atfork`): `prepare` runs in the forking thread before
/// `fork`, `parent` and `child` after it in each process. glibc's `fork()` runs them; raw
/// `clone` and `posix_spawn` do not.
///
/// Returns the `errno` on failure (`ENOMEM`).
pub(crate) fn at_fork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> Result<(), super::Errno> {
    // SAFETY: the three handlers are plain `extern "C"` functions that live for the whole
    // program; pthread_atfork only records them.
    let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if r == 0 {
        Ok(())
    } else {
        Err(super::Errno::from_raw(r))
    }
}

/// Bumped by the `pthread_atfork` child handler in every forked child; `u64::MAX` when the
/// handler could not be registered.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static FORK_HANDLER: Once = Once::new();

extern "C" fn bump_fork_generation() {
    // Runs in the child right after fork, single-threaded: an atomic add is async-signal-safe.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in a child after every `fork`, so per-process state (an fcntl lock
/// file's descriptor, a thread's owner word, a channel end's holder entry) is recreated cheaply
/// without calling `getpid` on every operation. The one fork detector of the crate: fcntl
/// locks, owner locks and channels all compare against it.
///
/// A child handler registered on first use (`pthread_atfork`) bumps it; if registration fails
/// (`ENOMEM`), the value is derived from the pid, which differs in every child too. Children
/// made by raw `clone` or `vfork`-like spawns run no handler, but such children only `exec`.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORK_HANDLER.call_once(|| {
        // SAFETY: registering a child handler that only touches an atomic; the prepare and
        // parent handlers are absent (None).
        let r = unsafe { libc::pthread_atfork(None, None, Some(bump_fork_generation)) };
        if r != 0 {
            FORK_GENERATION.store(u64::MAX, Ordering::Relaxed);
        }
    });
    let g = FORK_GENERATION.load(Ordering::Relaxed);
    if g == u64::MAX {
        u64::from(pid()) | (1 << 63)
    } else {
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_handles_parentheses_in_comm() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(parse_stat(line), Some((b'S', 123456)));
    }

    #[test]
    fn self_is_alive_and_start_time_is_checked() {
        let t = process_start_time(pid()).expect("own /proc/self/stat");
        assert_eq!(liveness(pid(), t), Liveness::Alive);
        assert_eq!(liveness(pid(), t + 1), Liveness::Dead);
        assert_eq!(thread_group_of(tid()), Some(pid()));
        assert!(thread_start_time(tid()).is_some());
    }

    #[test]
    fn memoized_reads_each_process_once_and_only_inside() {
        let t = process_start_time(pid()).expect("own /proc/self/stat");
        memoized(|| {
            assert_eq!(liveness(pid(), t), Liveness::Alive);
            assert_eq!(liveness(pid(), t + 1), Liveness::Dead);
            assert_eq!(liveness_low32(pid(), t as u32), Liveness::Alive);
            STAT_MEMO.with(|m| assert_eq!(m.borrow().as_ref().map(Vec::len), Some(1)));
        });
        STAT_MEMO.with(|m| assert!(m.borrow().is_none()));
    }

    #[cfg(feature = "async")]
    #[test]
    fn a_process_handle_sees_its_process_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let Some(h) = ProcessHandle::open(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return; // no pidfd on this kernel
        };
        assert!(!h.exited());
        child.kill().expect("kill");
        let t = std::time::Instant::now();
        while !h.exited() {
            assert!(t.elapsed() < std::time::Duration::from_secs(10));
            std::thread::yield_now();
        }
        child.wait().expect("wait");
        assert!(h.exited());
    }

    #[test]
    fn reaped_child_is_dead() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let id = child.id();
        child.wait().expect("wait");
        assert_eq!(liveness(id, 0), Liveness::Dead);
    }

    #[test]
    fn fork_generation_changes_in_a_forked_child_only() {
        let before = fork_generation();
        // SAFETY: the child only loads an atomic and calls `_exit`: async-signal-safe work, as
        // required after fork in a multi-threaded process.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let changed = fork_generation() != before;
            // SAFETY: `_exit` ends the child without running the parent's destructors.
            unsafe { libc::_exit(if changed { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `status` is a live int; `child` is our child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        assert_eq!(fork_generation(), before, "the parent's generation moved");
    }
}
