//! Message types aligned above the ring's 128-byte base: every slot must be aligned for the
//! type in every process (a misaligned slot is undefined behaviour in safe code), and
//! alignments no mapping can guarantee are refused with a typed error.

use std::ffi::CString;
use std::sync::Mutex;

use shmchan::{Error, Key, Receiver, Sender, ShmSafe};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(256))]
struct Aligned256 {
    words: [u64; 32],
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(1024))]
struct Aligned1024 {
    words: [u64; 128],
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(4096))]
struct Page {
    words: [u64; 512],
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(8192))]
struct TwoPages {
    words: [u64; 1024],
}

fn test_name(what: &str) -> String {
    format!("/shmchan-test-align-{what}-{}", std::process::id())
}

/// The address, in a fresh mapping of the POSIX object `name` made by this test, of the first
/// slot of the ring it holds, and the slot size (segment header: payload offset at byte 64;
/// ring header: slot size at 16, slots offset at 32).
fn first_slot_address(name: &str) -> (usize, usize) {
    let cname = CString::new(name).unwrap();
    // SAFETY: `cname` is a valid C string.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDONLY, 0) };
    assert!(fd >= 0, "shm_open {name}");
    let len = 64 * 1024;
    // SAFETY: a read-only shared mapping of `len` bytes of an object at least that long.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    // SAFETY: closing our descriptor; the mapping stays.
    unsafe { libc::close(fd) };
    assert_ne!(base, libc::MAP_FAILED);
    let base = base as *const u8;
    // SAFETY: 8-aligned words inside the mapping (the header and ring header are far smaller
    // than `len`).
    let (payload, slot_size, slots) = unsafe {
        let payload = (base.add(64) as *const u64).read_volatile() as usize;
        let ring = base.add(payload);
        (
            payload,
            (ring.add(16) as *const u64).read_volatile() as usize,
            (ring.add(32) as *const u64).read_volatile() as usize,
        )
    };
    let addr = base as usize + payload + slots;
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(base as *mut _, len) };
    (addr, slot_size)
}

fn round_trip<T: ShmSafe + PartialEq + std::fmt::Debug>(make: impl Fn(u64) -> T) {
    let (tx, rx) = shmchan::channel::<T>(4).unwrap();
    for round in 0..3u64 {
        for i in 0..4 {
            tx.send(make(round * 4 + i)).unwrap();
        }
        for i in 0..4 {
            assert_eq!(rx.recv().unwrap(), make(round * 4 + i));
        }
    }
}

#[test]
fn slots_are_aligned_for_a_256_byte_aligned_message() {
    let _g = serial();
    let name = test_name("256");
    let tx = Sender::<Aligned256>::create(Key::name(&name).unwrap(), 4).unwrap();
    let (addr, slot_size) = first_slot_address(&name);
    assert_eq!(addr % 256, 0, "first slot at {addr:#x}");
    assert_eq!(slot_size % 256, 0, "slot size {slot_size}");
    drop(tx);
    round_trip(|i| Aligned256 { words: [i; 32] });
}

#[test]
fn slots_are_aligned_for_a_1024_byte_aligned_message() {
    let _g = serial();
    let name = test_name("1024");
    let tx = Sender::<Aligned1024>::create(Key::name(&name).unwrap(), 4).unwrap();
    let (addr, slot_size) = first_slot_address(&name);
    assert_eq!(addr % 1024, 0, "first slot at {addr:#x}");
    assert_eq!(slot_size % 1024, 0, "slot size {slot_size}");
    drop(tx);
    round_trip(|i| Aligned1024 { words: [i; 128] });
}

#[test]
fn slots_are_aligned_for_a_page_aligned_message() {
    let _g = serial();
    let name = test_name("4096");
    let key = Key::name(&name).unwrap();
    let tx = Sender::<Page>::create(key, 2).unwrap();
    let (addr, slot_size) = first_slot_address(&name);
    assert_eq!(addr % 4096, 0, "first slot at {addr:#x}");
    assert_eq!(slot_size % 4096, 0, "slot size {slot_size}");
    // Another mapping (the opener's) agrees on the offset and validates it.
    let rx = Receiver::<Page>::open(key).unwrap();
    tx.send(Page { words: [7; 512] }).unwrap();
    assert_eq!(rx.recv().unwrap().words[511], 7);
    drop((tx, rx));
    round_trip(|i| Page { words: [i; 512] });
}

#[test]
fn alignments_above_a_page_are_refused() {
    let _g = serial();
    match shmchan::channel::<TwoPages>(2) {
        Err(Error::InvalidArgument { what }) => assert!(what.contains("4096"), "{what}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    let key = Key::name(&test_name("8192")).unwrap();
    assert!(matches!(
        Sender::<TwoPages>::create(key, 2),
        Err(Error::InvalidArgument { .. })
    ));
}
