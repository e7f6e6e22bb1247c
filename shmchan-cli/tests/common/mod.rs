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

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A shmchan header forged by hand (format of `shmchan/src/segment/header.rs`), with a valid
/// checksum, so a test can make the tool read a *consistent-looking* header that lies: a layout
/// descriptor with impossible offsets, a payload that does not fit. Returns header + payload.
pub fn forge_segment(
    kind: u32,
    lock: u32,
    type_name: &str,
    layout: &[u8],
    type_size: u64,
    payload_len: u64,
) -> Vec<u8> {
    let var = 128 + type_name.len() + layout.len();
    let payload_off = var.div_ceil(128) * 128;
    let mut b = vec![0u8; payload_off + payload_len as usize];
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let put64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    put32(&mut b, 8, 1);
    put32(&mut b, 12, kind);
    put32(&mut b, 16, lock);
    put32(&mut b, 24, std::process::id());
    put64(&mut b, 48, type_size);
    put64(&mut b, 56, 8);
    put64(&mut b, 64, payload_off as u64);
    put64(&mut b, 72, payload_len);
    put64(&mut b, 80, payload_off as u64 + payload_len);
    b[128..128 + type_name.len()].copy_from_slice(type_name.as_bytes());
    put32(&mut b, 96, 128);
    put32(&mut b, 100, type_name.len() as u32);
    let at = 128 + type_name.len();
    b[at..at + layout.len()].copy_from_slice(layout);
    put32(&mut b, 88, at as u32);
    put32(&mut b, 92, layout.len() as u32);
    // FNV-1a 64 over the header, with magic, state, flags and checksum counted as zero.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &x) in b[..payload_off].iter().enumerate() {
        let skip =
            i < 8 || (20..24).contains(&i) || (28..32).contains(&i) || (120..128).contains(&i);
        h ^= if skip { 0 } else { u64::from(x) };
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    put64(&mut b, 120, h);
    b[..8].copy_from_slice(b"SHMCHAN\0");
    put32(&mut b, 20, 2); // ready
    b
}

/// Removes the System V segment with `key`, if any, on drop: for tests that `persist()` a
/// segment and mean to remove it through the tool, so a failure does not leak it.
pub struct RemoveKeyOnDrop(pub i32);

impl Drop for RemoveKeyOnDrop {
    fn drop(&mut self) {
        // SAFETY: shmget with size 0 and no flags only looks the key up.
        let id = unsafe { libc::shmget(self.0, 0, 0) };
        if id >= 0 {
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}
