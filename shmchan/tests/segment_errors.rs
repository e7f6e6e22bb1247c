//! Every errno of the System V and POSIX calls provoked for real through the public API, and what the error says.

use shmchan::{Error, Key, Segment};

/// A System V key unique to this test process (`n` < 64).
fn sysv_key(n: u32) -> Key {
    Key::raw((0x5200_0000 | ((std::process::id() & 0x3_ffff) << 6) | n) as i32)
}

fn posix_key(tag: &str) -> Key {
    Key::name(&format!("/shmchan-test-err-{tag}-{}", std::process::id())).expect("name")
}

/// Removes whatever a key designates when the test ends, even on failure.
struct Cleanup(Key);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(seg) = Segment::open_any(self.0, false) {
            let _ = seg.remove();
        }
    }
}

#[test]
fn eexist_names_the_key_and_how_to_remove_it() {
    for key in [sysv_key(1), posix_key("eexist")] {
        let _c = Cleanup(key);
        let seg = Segment::create_raw(key, 64, 0o600).expect("create");
        let err = Segment::create_raw(key, 64, 0o600).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err:?}");
        assert_eq!(err.errno(), Some(shmchan::Errno::EEXIST));
        let msg = err.to_string();
        assert!(msg.contains("EEXIST"), "{msg}");
        assert!(msg.contains(&format!("shmchan rm {key}")), "{msg}");
        seg.remove().expect("remove");
    }
}

#[test]
fn enoent_for_a_missing_key_or_name() {
    let err = Segment::open_raw(sysv_key(2), false).unwrap_err();
    assert!(
        matches!(err, Error::NotFound { call: "shmget", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ENOENT"));
    let err = Segment::open_raw(posix_key("enoent"), true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                call: "shm_open",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn oversize_requests_are_typed_errors_not_sigbus() {
    let key = sysv_key(3);
    let _c = Cleanup(key);
    let err = Segment::create_raw(key, usize::MAX - 64, 0o600).unwrap_err();
    assert!(matches!(err, Error::InvalidSize { .. }), "{err:?}");
    let limits = shmchan::limits().expect("limits");
    if limits.shmmax < (usize::MAX / 2) as u64 {
        let err = Segment::create_raw(key, limits.shmmax as usize + 1, 0o600).unwrap_err();
        assert!(matches!(err, Error::InvalidSize { .. }), "{err:?}");
        assert!(err.to_string().contains("shmmax"), "{err}");
    }
    let key = posix_key("nospace");
    let _c = Cleanup(key);
    let err = Segment::create_raw(key, 1 << 62, 0o600).unwrap_err();
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("/dev/shm"), "{err}");
    let err = Segment::anonymous_raw(1 << 62).unwrap_err();
    assert!(matches!(err, Error::NoMemory { .. }), "{err:?}");
}

#[test]
fn removed_segment_frees_the_key_at_once_and_is_removed_by_id() {
    let key = sysv_key(4);
    let _c = Cleanup(key);
    let a = Segment::create_raw(key, 64, 0o600).expect("create");
    let shmid = a.info().expect("stat").shmid.expect("id");
    let b = Segment::open_raw(key, false).expect("open");
    b.remove().expect("IPC_RMID");
    // The key is free at once (Linux makes a removed segment's key IPC_PRIVATE)...
    let err = Segment::open_raw(key, false).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // ...the memory lives until the last detach, and attaching it by id is refused.
    let info = a.info().expect("stat of a removed, attached segment");
    assert!(info.marked_for_removal);
    let err = Segment::open_sysv_id(shmid, true).unwrap_err();
    assert!(matches!(err, Error::Removed { .. }), "{err:?}");
    assert!(err.to_string().contains("EIDRM"), "{err}");
    drop(a);
    assert!(Segment::open_sysv_id(shmid, true).is_err());
}

#[test]
fn read_only_handles_cannot_write() {
    let key = posix_key("rdonly");
    let _c = Cleanup(key);
    let rw = Segment::create_raw(key, 16, 0o600).expect("create");
    rw.write_bytes(0, b"abc").expect("write");
    for ro in [
        Segment::open_raw(key, true).expect("open read-only"),
        Segment::open_any(key, true).expect("open_any read-only"),
    ] {
        assert!(ro.is_read_only());
        assert!(ro.atomic_u32(0).is_none() && ro.atomic_u64(0).is_none());
        assert!(matches!(
            ro.write_bytes(0, b"x"),
            Err(Error::InvalidArgument { .. })
        ));
        let mut out = [0u8; 3];
        ro.read_bytes(0, &mut out).expect("read");
        assert_eq!(&out, b"abc");
    }
    let sv = sysv_key(5);
    let _c2 = Cleanup(sv);
    let rw = Segment::create_raw(sv, 16, 0o600).expect("create sysv");
    rw.atomic_u32(1)
        .expect("rw")
        .store(9, std::sync::atomic::Ordering::Release);
    let ro = Segment::open_raw(sv, true).expect("SHM_RDONLY");
    assert_eq!(ro.load_u32(1), Some(9));
    assert!(ro.atomic_u32(1).is_none());
}

#[test]
fn foreign_object_is_not_shmchan_and_left_untouched() {
    // A POSIX object some other program made: opening it fails and changes nothing.
    let key = posix_key("foreign");
    let path = format!("/dev/shm{}", key.posix_name().expect("posix"));
    std::fs::write(&path, vec![0x5a; 4096]).expect("write a foreign object");
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(path.clone());
    let err = Segment::open_raw(key, true).unwrap_err();
    assert!(matches!(err, Error::NotShmchan { .. }), "{err:?}");
    let err = Segment::open_any(key, false).unwrap_err();
    assert!(matches!(err, Error::NotShmchan { .. }), "{err:?}");
    assert!(
        std::path::Path::new(&path).exists(),
        "a failed open removed a foreign object"
    );
    assert_eq!(std::fs::read(&path).expect("still there"), vec![0x5a; 4096]);
}

/// EACCES: a segment of mode 0400/0444 opened for writing by someone the mode does not let
/// write. Root bypasses IPC permission checks (CAP_IPC_OWNER), so as root the check runs in a
/// re-executed copy of this test binary under uid/gid 65534 (`nobody`).
#[test]
fn eacces_when_the_mode_forbids_writing() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let keys = [sysv_key(6), posix_key("eacces")];
    let _c: Vec<Cleanup> = keys.iter().map(|k| Cleanup(*k)).collect();
    let mut segs = Vec::new();
    for key in keys {
        let seg = Segment::create_raw(key, 64, 0o600).expect("create");
        // Read for everyone (so the other user can attach read-only), write for nobody.
        seg.set_mode(if root { 0o444 } else { 0o400 })
            .expect("set_mode");
        assert_eq!(
            seg.info().expect("stat").mode,
            Some(if root { 0o444 } else { 0o400 })
        );
        segs.push(seg);
    }
    if !root {
        for key in keys {
            check_eacces(key);
        }
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_role_eacces",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "SHMCHAN_TEST_EACCES_KEYS",
            format!("{} {}", keys[0], keys[1]),
        )
        .uid(65534)
        .gid(65534)
        .output()
        .expect("spawn the child as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains("1 passed"),
        "the child did not run: {stdout}"
    );
}

fn check_eacces(key: Key) {
    let err = Segment::open_raw(key, false).unwrap_err();
    match &err {
        Error::PermissionDenied { errno, .. } => assert_eq!(*errno, shmchan::Errno::EACCES),
        other => panic!("{key}: expected PermissionDenied, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("EACCES") && msg.contains("mode"), "{msg}");
    // Reading is allowed by the mode.
    Segment::open_raw(key, true).expect("read-only open is allowed");
}

/// EPERM: control operations reserved to the owner, the creator or a capability.
fn check_eperm_for_non_owner(key: Key) {
    let seg = Segment::open_raw(key, true).expect("read-only open");
    let eperm = |r: shmchan::Result<()>, what: &str| -> String {
        match r {
            Err(
                e @ Error::PermissionDenied {
                    errno: shmchan::Errno::EPERM,
                    ..
                },
            ) => e.to_string(),
            other => panic!("{what}: expected EPERM, got {other:?}"),
        }
    };
    let msg = eperm(seg.lock_in_memory(), "SHM_LOCK");
    assert!(msg.contains("CAP_IPC_LOCK"), "{msg}");
    let msg = eperm(seg.set_mode(0o666), "IPC_SET");
    assert!(msg.contains("owner"), "{msg}");
    eperm(seg.remove(), "IPC_RMID");
    // The failed removal removed nothing.
    Segment::open_raw(key, true).expect("still there");
}

/// Not a test on its own: the unprivileged half of `eacces_when_the_mode_forbids_writing`.
#[test]
fn child_role_eacces() {
    let Ok(keys) = std::env::var("SHMCHAN_TEST_EACCES_KEYS") else {
        return;
    };
    let mut it = keys.split(' ');
    let sysv = it.next().expect("sysv key");
    let sysv = i32::from_str_radix(sysv.trim_start_matches("0x"), 16)
        .or_else(|_| u32::from_str_radix(sysv.trim_start_matches("0x"), 16).map(|v| v as i32))
        .expect("hex key");
    check_eacces(Key::raw(sysv));
    check_eperm_for_non_owner(Key::raw(sysv));
    check_eacces(Key::name(it.next().expect("posix name")).expect("name"));
}
