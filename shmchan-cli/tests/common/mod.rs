//! Helpers for tests that run the real `shmchan` binary against segments the test creates.
//! Every segment is owned by a guard that removes it on drop, also when the test fails.

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// `ls`/`inspect` attach segments for a moment; a library handle dropped at that instant would
/// see an attach count of 1 and leave its segment behind. Tests of this binary therefore run one
/// at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the test-wide lock (poisoning from an earlier failed test is ignored).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `shmchan <args>` and returns its output.
pub fn shmchan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmchan"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run the shmchan binary")
}

/// Runs `shmchan <args>`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = shmchan(args);
    assert!(
        out.status.success(),
        "shmchan {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `shmchan --json <args>`, asserts success, parses stdout.
pub fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{text}"))
}

/// Runs `shmchan <args>`, asserts failure with a one-line error, returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = shmchan(args);
    assert!(!out.status.success(), "shmchan {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.trim().is_empty(), "no message from {args:?}");
    err
}

/// The `ls --json` row of a System V segment.
pub fn ls_row_sysv(shmid: i32) -> Option<serde_json::Value> {
    json(&["ls"])
        .as_array()
        .expect("ls --json is an array")
        .iter()
        .find(|r| r["shmid"] == shmid)
        .cloned()
}

/// The `ls --json` row of a POSIX object.
pub fn ls_row_posix(name: &str) -> Option<serde_json::Value> {
    json(&["ls"])
        .as_array()
        .expect("ls --json is an array")
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
}

/// Whether `/proc/sysvipc/shm` lists `shmid`.
pub fn sysv_exists(shmid: i32) -> bool {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .expect("read /proc/sysvipc/shm")
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(&shmid.to_string()))
}

/// A raw System V segment, created with `shmget` and filled with given bytes, removed on drop.
pub struct RawSysv {
    /// Its id.
    pub shmid: i32,
}

impl RawSysv {
    /// A new `IPC_PRIVATE` (or keyed) segment of `size` bytes starting with `content`.
    pub fn new(key: i32, size: usize, content: &[u8]) -> RawSysv {
        // SAFETY: shmget takes no pointers.
        let shmid = unsafe { libc::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(shmid >= 0, "shmget: {}", std::io::Error::last_os_error());
        let seg = RawSysv { shmid };
        // SAFETY: attaching a segment we just created at a kernel-chosen address.
        let addr = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
        assert!(
            addr as isize != -1,
            "shmat: {}",
            std::io::Error::last_os_error()
        );
        let n = content.len().min(size);
        // SAFETY: the attachment is `size` bytes long, we write `n <= size` bytes; no one else
        // knows this private segment yet.
        unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), addr.cast::<u8>(), n) };
        // SAFETY: `addr` came from shmat above and is not used afterwards.
        unsafe { libc::shmdt(addr) };
        seg
    }
}

impl Drop for RawSysv {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no buffer; failing (already removed by the test) is fine.
        unsafe { libc::shmctl(self.shmid, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// A raw POSIX object `/shmchan-test-<pid>-<tag>` with given content, removed on drop.
pub struct RawPosix {
    /// `/name`.
    pub name: String,
}

impl RawPosix {
    /// Creates it.
    pub fn new(tag: &str, content: &[u8]) -> RawPosix {
        let name = format!("/shmchan-test-{}-{tag}", std::process::id());
        std::fs::write(format!("/dev/shm{name}"), content).expect("create /dev/shm object");
        RawPosix { name }
    }
}

impl Drop for RawPosix {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.name));
    }
}

/// A System V key unlikely to collide with other tests: derived from the pid and a tag.
pub fn test_key(tag: u8) -> i32 {
    (0x5c00_0000 | ((std::process::id() & 0xffff) << 8) | u32::from(tag)) as i32
}
