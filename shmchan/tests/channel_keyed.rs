//! Keyed channels (POSIX names and System V keys): opening from another process, type and kind
//! checks at open, one sender and one receiver, and a header scribbled by another process.

use std::ffi::CString;
use std::sync::Mutex;

use shmchan::channel::TrySendError;
use shmchan::{Error, Key, Receiver, Sender, SeqLock, Shared, ShmSafe};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn test_name(what: &str) -> String {
    format!("/shmchan-test-chan-{what}-{}", std::process::id())
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Order {
    id: u64,
    qty: u32,
    side: u32,
}

/// Forks: `None` in the child (which must end in [`child_main`]), the child's pid in the parent.
fn fork() -> Option<libc::pid_t> {
    // SAFETY: the child runs a few channel or memory operations and `_exit`s (`child_main`);
    // `SERIAL` keeps this binary's other test threads idle.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    (pid != 0).then_some(pid)
}

/// Runs the child's `body` and exits with its code (101 if it panicked).
fn child_main(body: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
    // SAFETY: ends the child at once.
    unsafe { libc::_exit(code) }
}

/// Waits for child `pid`; its exit code, or 128 + signal.
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our child, valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

#[test]
fn another_process_opens_the_channel_by_name() {
    let _g = serial();
    let key = Key::name(&test_name("open")).unwrap();
    let rx = Receiver::<Order>::create(key, 8).unwrap();
    // The child is a separate opener: it never uses the inherited receiver.
    let Some(pid) = fork() else {
        child_main(|| {
            let tx = match Sender::<Order>::open(key) {
                Ok(tx) => tx,
                Err(_) => return 2,
            };
            for id in 0..100 {
                if tx
                    .send(Order {
                        id,
                        qty: 1,
                        side: 0,
                    })
                    .is_err()
                {
                    return 3;
                }
            }
            0
        })
    };
    for id in 0..100 {
        assert_eq!(rx.recv().unwrap().id, id);
    }
    assert_eq!(wait(pid), 0);
    // The child exited without dropping (it `_exit`ed): found dead, so disconnected.
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn system_v_keys_work_too() {
    let _g = serial();
    let key = Key::raw(0x5C00_0000 | (std::process::id() as i32 & 0xFFFF));
    let tx = Sender::<u64>::create(key, 4).unwrap();
    let rx = Receiver::<u64>::open(key).unwrap();
    tx.send_batch(&[1, 2, 3]).unwrap();
    drop(tx);
    let mut out = Vec::new();
    while rx.try_recv_batch(&mut out, 8).is_ok() {}
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn open_checks_the_message_type() {
    let _g = serial();
    let key = Key::name(&test_name("type")).unwrap();
    let _tx = Sender::<Order>::create(key, 8).unwrap();
    assert!(matches!(
        Receiver::<u64>::open(key),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Receiver::<[u8; 16]>::open(key),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(Receiver::<Order>::open(key).is_ok());
}

#[test]
fn a_channel_is_not_a_shared_value_and_a_value_is_not_a_channel() {
    let _g = serial();
    let key = Key::name(&test_name("kind")).unwrap();
    let _tx = Sender::<u64>::create(key, 8).unwrap();
    assert!(matches!(
        Shared::<u64, SeqLock>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    let key = Key::name(&test_name("kind-value")).unwrap();
    let _value = Shared::<u64, SeqLock>::create(key).unwrap();
    assert!(matches!(
        Receiver::<u64>::open(key),
        Err(Error::KindMismatch { .. })
    ));
}

#[test]
fn a_channel_has_one_sender_and_one_receiver() {
    let _g = serial();
    let key = Key::name(&test_name("single")).unwrap();
    let me = std::process::id();
    let tx = Sender::<u32>::create(key, 8).unwrap();
    assert!(matches!(
        Sender::<u32>::open(key),
        Err(Error::InUse { pid, .. }) if pid == me
    ));
    let rx = Receiver::<u32>::open(key).unwrap();
    assert!(matches!(
        Receiver::<u32>::open(key),
        Err(Error::InUse { pid, .. }) if pid == me
    ));
    drop(rx);
    assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
    // A receiving end whose holder left is re-opened, and the channel works again.
    let rx = Receiver::<u32>::open(key).unwrap();
    tx.send(2).unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
}

#[test]
fn bad_capacities_are_refused_before_creating_anything() {
    let _g = serial();
    let key = Key::name(&test_name("cap")).unwrap();
    assert!(matches!(
        Sender::<u64>::create(key, 0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Receiver::<u64>::create(key, usize::MAX),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Receiver::<u64>::open(key),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_receiver_created_first_waits_for_its_sender() {
    let _g = serial();
    let key = Key::name(&test_name("wait")).unwrap();
    let rx = Receiver::<u64>::create(key, 8).unwrap();
    // No sender has ever opened: empty, not disconnected (even past a liveness check).
    assert!(matches!(
        rx.recv_timeout(std::time::Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    let tx = Sender::<u64>::open(key).unwrap();
    tx.send(9).unwrap();
    assert_eq!(rx.recv().unwrap(), 9);
}

/// Maps the POSIX object `name` in this (child) process and returns the ring's base.
fn map_ring(name: &CString) -> Option<*mut u8> {
    // SAFETY: `name` is a valid C string; the fd is closed after mapping.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
    if fd < 0 {
        return None;
    }
    let len = 64 * 1024;
    // SAFETY: mapping `len` bytes of an object at least that long (the test's ring is larger).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    // SAFETY: closing our fd; the mapping stays.
    unsafe { libc::close(fd) };
    if base == libc::MAP_FAILED {
        return None;
    }
    let base = base as *mut u8;
    // The segment header records the payload offset at byte 64 (docs/segments.md).
    // SAFETY: inside the mapping, 8-aligned.
    let payload = unsafe { (base.add(64) as *const u64).read_volatile() } as usize;
    // SAFETY: the payload offset lies inside the mapping for this test's small ring.
    Some(unsafe { base.add(payload) })
}

#[test]
fn indices_scribbled_by_another_process_are_reported_as_corruption() {
    let _g = serial();
    let name = test_name("scribble");
    let key = Key::name(&name).unwrap();
    let tx = Sender::<[u64; 64]>::create(key, 64).unwrap(); // > 64 KiB of slots
    let rx = Receiver::<[u64; 64]>::open(key).unwrap();
    let cname = CString::new(name).unwrap();
    let Some(pid) = fork() else {
        child_main(|| {
            let Some(ring) = map_ring(&cname) else {
                return 2;
            };
            // tail (ring offset 128) jumps far beyond head + capacity.
            // SAFETY: the ring header's tail word, 8-aligned, inside the mapping.
            unsafe { (ring.add(128) as *mut u64).write_volatile(1 << 40) };
            0
        })
    };
    let code = wait(pid);
    assert_eq!(code, 0);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    assert!(matches!(rx.recv(), Err(Error::Corrupted { .. })));
    assert!(matches!(
        tx.try_send([2; 64]),
        Err(TrySendError::Failed(Error::Corrupted { .. }))
    ));
}

#[test]
fn a_capacity_rewritten_by_another_process_is_reported_as_corruption() {
    let _g = serial();
    let name = test_name("scribble-cap");
    let key = Key::name(&name).unwrap();
    let tx = Sender::<[u64; 64]>::create(key, 64).unwrap();
    let rx = Receiver::<[u64; 64]>::open(key).unwrap();
    let cname = CString::new(name).unwrap();
    let Some(pid) = fork() else {
        child_main(|| {
            let Some(ring) = map_ring(&cname) else {
                return 2;
            };
            // meta.capacity (ring offset 8) grows a hundredfold.
            // SAFETY: the ring header's capacity word, 8-aligned, inside the mapping.
            unsafe { (ring.add(8) as *mut u64).write_volatile(1 << 20) };
            0
        })
    };
    let code = wait(pid);
    assert_eq!(code, 0);
    // Slot addresses still come from the capacity validated at open: the empty ring's slow
    // path notices the change.
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    // A new opener refuses the segment outright (validation comes before anything else).
    assert!(matches!(
        Receiver::<[u64; 64]>::open(key),
        Err(Error::Corrupted { .. })
    ));
    drop(tx);
}
