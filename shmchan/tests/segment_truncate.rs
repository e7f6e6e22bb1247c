//! A POSIX shared memory object can be resized by anyone who may write it. A peer that shrinks
//! it (`ftruncate`) makes every access to the lost pages raise SIGBUS in every process mapping
//! it. The library checks the object's current size (`fstat`) before the accesses it makes on
//! its own (copying bytes out and in, persisting, removing, and the creator's drop, which
//! would otherwise die and leak the object) and reports an error instead.
//!
//! The peer is a forked child that only calls `shm_open`, `ftruncate` and `_exit`.

use shmchan::{Error, Key, Segment};
use std::ffi::CString;

fn name(tag: &str) -> String {
    format!("/shmchan-test-trunc-{tag}-{}", std::process::id())
}

/// Forks a peer that shrinks the object `name` to `len` bytes, and waits for it.
fn shrink_by_peer(name: &str, len: i64) {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: the child only makes async-signal-safe calls (shm_open, ftruncate, close, _exit)
    // on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let fd = libc::shm_open(c.as_ptr(), libc::O_RDWR, 0);
            let ok = fd >= 0 && libc::ftruncate(fd, len) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: `status` is a live int and `pid` our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

fn object_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(&name[1..]).exists()
}

#[test]
fn copies_out_and_in_of_a_shrunk_object_are_errors_not_sigbus() {
    let n = name("copy");
    let seg = Segment::create_raw(Key::name(&n).expect("name"), 3 * 4096, 0o600).expect("create");
    shrink_by_peer(&n, 4096);
    let mut buf = [0u8; 16];
    let err = seg.copy_out(2 * 4096, &mut buf).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("4096"), "{err}");
    assert!(seg.read_bytes(2 * 4096, &mut buf).is_err());
    assert!(seg.write_bytes(2 * 4096, &buf).is_err());
    // What is left can still be read.
    seg.copy_out(0, &mut buf)
        .expect("the first page is still there");
    seg.remove().expect("remove");
}

#[test]
fn the_creators_drop_survives_and_unlinks_an_object_shrunk_to_nothing() {
    let n = name("drop");
    let seg = Segment::create_raw(Key::name(&n).expect("name"), 4096, 0o600).expect("create");
    shrink_by_peer(&n, 0);
    drop(seg);
    assert!(!object_exists(&n), "the object leaked");
}

#[test]
fn remove_and_persist_of_a_shrunk_object_do_not_fault() {
    let n = name("rm");
    let mut seg =
        Segment::create_raw(Key::name(&n).expect("name"), 2 * 4096, 0o600).expect("create");
    shrink_by_peer(&n, 0);
    seg.persist();
    seg.remove().expect("remove unlinks it");
    assert!(!object_exists(&n));
}

#[test]
fn opening_a_shrunk_object_is_an_error() {
    let n = name("open");
    let key = Key::name(&n).expect("name");
    let seg = Segment::create_raw(key, 3 * 4096, 0o600).expect("create");
    shrink_by_peer(&n, 4096);
    let err = Segment::open_raw(key, true).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
    assert!(err.to_string().contains("4096"), "{err}");
    seg.remove().expect("remove");
}
