//! Kernel metadata and control operations: `IPC_STAT`, `IPC_SET`, `SHM_LOCK`/`SHM_UNLOCK`,
//! removal with wiping, `persist`, and `limits()`.

use shmchan::{Error, Key, Segment};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

fn sysv_key(n: u32) -> Key {
    Key::raw((0x5300_0000 | ((std::process::id() & 0x3_ffff) << 6) | n) as i32)
}

fn posix_key(tag: &str) -> Key {
    Key::name(&format!("/shmchan-test-info-{tag}-{}", std::process::id())).expect("name")
}

struct Cleanup(Key);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(seg) = Segment::open_any(self.0, false) {
            let _ = seg.remove();
        }
    }
}

fn euid_egid() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self").expect("/proc/self");
    (m.uid(), m.gid())
}

#[test]
fn sysv_info_reports_ipc_stat() {
    let key = sysv_key(1);
    let _c = Cleanup(key);
    let before = SystemTime::now() - std::time::Duration::from_secs(2);
    let a = Segment::create_raw(key, 1000, 0o600).expect("create");
    let info = a.info().expect("IPC_STAT");
    assert!(info.size >= a.header().total_len);
    assert_eq!(info.size as usize, a.len());
    assert_eq!(info.attach_count, Some(1));
    assert_eq!(info.creator_pid, Some(std::process::id()));
    assert_eq!(info.last_pid, Some(std::process::id()));
    assert_eq!(info.mode, Some(0o600));
    let (uid, gid) = euid_egid();
    assert_eq!((info.uid, info.gid), (Some(uid), Some(gid)));
    assert_eq!((info.creator_uid, info.creator_gid), (Some(uid), Some(gid)));
    assert!(info.attach_time.expect("attached") >= before);
    assert!(info.change_time.expect("created") >= before);
    assert!(!info.marked_for_removal && !info.locked_in_memory);

    let b = Segment::open_raw(key, true).expect("open");
    assert_eq!(a.info().expect("stat").attach_count, Some(2));
    drop(b);
    let info = a.info().expect("stat");
    assert_eq!(info.attach_count, Some(1));
    assert!(info.detach_time.is_some());
}

#[test]
fn set_mode_and_set_owner_use_ipc_set_and_fchmod() {
    let (uid, gid) = euid_egid();
    for key in [sysv_key(2), posix_key("mode")] {
        let _c = Cleanup(key);
        let seg = Segment::create_raw(key, 64, 0o600).expect("create");
        seg.set_mode(0o640).expect("set_mode");
        assert_eq!(seg.info().expect("stat").mode, Some(0o640), "{key}");
        seg.set_owner(uid, gid).expect("set_owner to ourselves");
        let info = seg.info().expect("stat");
        assert_eq!(
            (info.uid, info.gid, info.mode),
            (Some(uid), Some(gid), Some(0o640))
        );
        seg.remove().expect("remove");
    }
    let anon = Segment::anonymous_raw(8).expect("anonymous");
    assert!(matches!(
        anon.set_mode(0o600),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(anon.info().expect("anonymous info").mode, None);
}

#[test]
fn posix_info_reports_fstat() {
    let key = posix_key("fstat");
    let _c = Cleanup(key);
    let seg = Segment::create_raw(key, 100, 0o640).expect("create");
    let info = seg.info().expect("fstat");
    assert_eq!(info.size, seg.header().total_len);
    assert_eq!(
        info.mode,
        Some(0o640),
        "create must apply the mode exactly, despite the umask"
    );
    assert_eq!(info.attach_count, None);
}

#[test]
fn lock_in_memory_works_or_explains_cap_ipc_lock() {
    let key = sysv_key(3);
    let _c = Cleanup(key);
    let seg = Segment::create_raw(key, 4096, 0o600).expect("create");
    match seg.lock_in_memory() {
        Ok(()) => {
            assert!(seg.info().expect("stat").locked_in_memory);
            seg.unlock_in_memory().expect("SHM_UNLOCK");
            assert!(!seg.info().expect("stat").locked_in_memory);
        }
        Err(e @ Error::PermissionDenied { .. }) => {
            assert!(e.to_string().contains("CAP_IPC_LOCK"), "{e}");
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
    let anon = Segment::anonymous_raw(4096).expect("anonymous");
    match anon.lock_in_memory() {
        Ok(()) => anon.unlock_in_memory().expect("munlock"),
        Err(e) => assert!(matches!(
            e,
            Error::NoMemory { .. } | Error::PermissionDenied { .. }
        )),
    }
}

#[test]
fn remove_wipes_the_payload_before_removing() {
    for key in [sysv_key(4), posix_key("wipe")] {
        let _c = Cleanup(key);
        let creator = Segment::create_raw(key, 64, 0o600).expect("create");
        creator.write_bytes(0, b"confidential").expect("write");
        let other = Segment::open_raw(key, true).expect("open");
        creator.remove().expect("remove");
        let mut out = [0xffu8; 12];
        other.read_bytes(0, &mut out).expect("still mapped");
        assert_eq!(out, [0u8; 12], "{key}: payload not wiped");
        assert!(matches!(
            Segment::open_raw(key, true),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn persist_keeps_a_segment_after_every_handle_is_gone() {
    for key in [sysv_key(5), posix_key("persist")] {
        let _c = Cleanup(key);
        let mut seg = Segment::create_raw(key, 64, 0o600).expect("create");
        seg.atomic_u64(0)
            .expect("word")
            .store(123, Ordering::Release);
        seg.persist();
        drop(seg);
        let again = Segment::open_raw(key, false).expect("still there");
        assert_eq!(again.load_u64(0), Some(123));
        assert!(!again.header().remove_when_unused);
        drop(again);
        let again = Segment::open_raw(key, false).expect("an opener's drop keeps it too");
        again.remove().expect("remove");
        assert!(matches!(
            Segment::open_raw(key, false),
            Err(Error::NotFound { .. })
        ));
    }
}

#[test]
fn limits_match_proc_sys_kernel() {
    let l = shmchan::limits().expect("limits");
    let read = |n: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/kernel/{n}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let Some(v) = read("shmmax") {
        assert_eq!(l.shmmax, v);
    }
    if let Some(v) = read("shmall") {
        assert_eq!(l.shmall, v);
    }
    if let Some(v) = read("shmmni") {
        assert_eq!(l.shmmni, v);
    }
    assert!(l.shmmin >= 1);
    assert!(l.segments_in_use <= l.shmmni);
}

#[test]
fn futex_wait_works_through_a_read_only_attachment() {
    // Openers wait for READY on the state word even when attached read-only: FUTEX_WAIT must
    // sleep there (not fail with EFAULT and turn the bounded wait into a busy loop).
    for key in [sysv_key(6), posix_key("futex")] {
        let _c = Cleanup(key);
        let _rw = Segment::create_raw(key, 64, 0o600).expect("create");
        let ro = Segment::open_raw(key, true).expect("read-only");
        let t = std::time::Instant::now();
        assert_eq!(
            ro.wait_u32(0, 0, std::time::Duration::from_millis(100)),
            Some(0)
        );
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(90),
            "{key}: FUTEX_WAIT returned after {:?}",
            t.elapsed()
        );
    }
}
