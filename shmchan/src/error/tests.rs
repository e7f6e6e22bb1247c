//! Unit tests of the errno mapping, the messages, `Debug` and `source()`.

use super::*;

#[test]
fn every_errno_of_the_table_maps_to_its_variant() {
    let t = || Target::SysV { key: 0x5400_0001 };
    let map = |e| Error::from_errno("shmget", e, t());
    assert!(matches!(map(Errno::EEXIST), Error::Exists { .. }));
    assert!(matches!(map(Errno::ENOENT), Error::NotFound { .. }));
    assert!(matches!(map(Errno::EACCES), Error::PermissionDenied { .. }));
    assert!(matches!(
        Error::from_errno("shmctl(IPC_RMID)", Errno::EPERM, t()),
        Error::PermissionDenied { .. }
    ));
    // EINVAL means "bad size" only for some calls: their callers build InvalidSize.
    assert!(matches!(
        map(Errno::EINVAL),
        Error::Os {
            errno: Errno::EINVAL,
            ..
        }
    ));
    assert!(matches!(map(Errno::ENOSPC), Error::NoSpace { .. }));
    assert!(matches!(map(Errno::ENOMEM), Error::NoMemory { .. }));
    assert!(matches!(map(Errno::EIDRM), Error::Removed { .. }));
    assert!(matches!(
        map(Errno::EFAULT),
        Error::Os {
            errno: Errno::EFAULT,
            ..
        }
    ));
}

#[test]
fn exists_message_names_call_errno_key_and_fix() {
    let msg =
        Error::from_errno("shmget", Errno::EEXIST, Target::SysV { key: 0x4100_0007 }).to_string();
    assert_eq!(
        msg,
        "shmget failed with EEXIST (File exists): System V segment with key 0x41000007 already exists; open it instead (`open`, or `open_or_create` to open it or create it in one call), or remove it first with `shmchan rm 0x41000007`"
    );
}

#[test]
fn debug_shows_the_variant_and_the_whole_message() {
    let e = Error::from_errno("shmget", Errno::EEXIST, Target::SysV { key: 0x4100_0007 });
    assert_eq!(format!("{e:?}"), format!("Exists {{ .. }}: {e}"));
    assert_eq!(
        format!("{:?}", Error::Disconnected),
        format!("Disconnected: {}", Error::Disconnected)
    );
    // What `fn main() -> Result<(), Box<dyn Error>>` prints on error.
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(format!("{boxed:?}").contains("open_or_create"));
}

#[test]
fn source_is_the_errno_of_the_failed_call() {
    use std::error::Error as _;
    let t = || Target::Posix { name: "/x".into() };
    for errno in [Errno::EACCES, Errno::ENOENT, Errno::EBADF] {
        let e = Error::from_errno("shm_open", errno, t());
        let src = e.source().and_then(|s| s.downcast_ref::<Errno>());
        assert_eq!(src, Some(&errno), "{e:?}");
        assert_eq!(e.errno(), Some(errno));
    }
    assert!(Error::Disconnected.source().is_none());
}

#[test]
fn permission_hints_name_what_refused() {
    let file = Target::Path {
        path: "/tmp/x.lock".into(),
    };
    let msg = Error::from_errno("open", Errno::EACCES, file).to_string();
    assert!(
        msg.contains("/tmp/x.lock") && msg.contains("ls -l"),
        "{msg}"
    );
    assert!(!msg.contains("ipcs"), "{msg}");
    let msg =
        Error::from_errno("shmctl(IPC_SET)", Errno::EPERM, Target::SysVId { id: 3 }).to_string();
    assert!(msg.contains("EPERM") && msg.contains("owner"), "{msg}");
}

#[test]
fn kind_mismatch_names_both_kinds() {
    let msg = Error::KindMismatch {
        expected: SegmentKind::Value,
        expected_lock: LockKind::Fcntl,
        found: SegmentKind::Value,
        found_lock: LockKind::SeqLock,
    }
    .to_string();
    assert!(msg.contains("holds a value with a SeqLock"), "{msg}");
    assert!(msg.contains("opened as a value with an FcntlLock"), "{msg}");
}
