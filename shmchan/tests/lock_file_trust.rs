//! The lock file path in a segment header is untrusted: anyone who can write the segment can
//! rewrite it and re-seal the header's checksum (it is not keyed). An opener must accept only
//! the library's own lock files, answer anything else with a typed error at once (no hang on a
//! FIFO, no symlink followed), and never unlink a file it did not lock. Anonymous values leave
//! no lock file behind, however the process ends.

use shmchan::{Error, FcntlLock, Key, Shared};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod shared_support;
use shared_support::{Child, serial};

/// The offset of the payload (= the header's length) and of the checksum in the fixed header.
const OFF_PAYLOAD_OFF: usize = 64;
const OFF_CHECKSUM: usize = 120;

/// What an attacker computes to re-seal a header it rewrote: FNV-1a 64 over the header with the
/// magic, state, flags and checksum words zeroed.
fn reseal(h: &mut [u8]) {
    let mut sum: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &x) in h.iter().enumerate() {
        let skip =
            i < 8 || (20..24).contains(&i) || (28..32).contains(&i) || (120..128).contains(&i);
        sum ^= if skip { 0 } else { u64::from(x) };
        sum = sum.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h[OFF_CHECKSUM..OFF_CHECKSUM + 8].copy_from_slice(&sum.to_ne_bytes());
}

/// Rewrites the lock path in the header of POSIX object `name` (same length) and re-seals it.
fn point_header_at(name: &str, old: &Path, new: &Path) {
    let old = old.as_os_str().as_encoded_bytes();
    let new = new.as_os_str().as_encoded_bytes();
    assert_eq!(
        old.len(),
        new.len(),
        "test paths must keep the header's length"
    );
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm{name}"))
        .expect("open the object as a file");
    let mut fixed = [0u8; 128];
    f.read_exact_at(&mut fixed, 0).unwrap();
    let len = u64::from_ne_bytes(
        fixed[OFF_PAYLOAD_OFF..OFF_PAYLOAD_OFF + 8]
            .try_into()
            .unwrap(),
    );
    let mut h = vec![0u8; len as usize];
    f.read_exact_at(&mut h, 0).unwrap();
    let at = h
        .windows(old.len())
        .position(|w| w == old)
        .expect("the lock path is in the header");
    h[at..at + new.len()].copy_from_slice(new);
    reseal(&mut h);
    f.write_all_at(&h, 0).unwrap();
}

/// A name of the library's pattern (`shmchan-<pid>-<n>-<hex>.lock`) exactly `len` bytes long.
fn pattern_name(len: usize) -> String {
    let fixed = "shmchan--0-deadbeef.lock".len();
    assert!(len > fixed, "name too short to imitate");
    format!("shmchan-{}-0-deadbeef.lock", "9".repeat(len - fixed))
}

/// Opens `key` for writing and read-only on another thread: must fail with `Corrupted` well
/// within a second (a FIFO must not make it hang).
fn assert_refused(key: Key, case: &str) {
    for read_only in [false, true] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = if read_only {
                Shared::<u64, FcntlLock>::open_read_only(key).map(drop)
            } else {
                Shared::<u64, FcntlLock>::open(key).map(drop)
            };
            let _ = tx.send(r);
        });
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Err(Error::Corrupted { what })) => {
                assert!(what.contains("not a shmchan lock file"), "{case}: {what}")
            }
            Ok(other) => {
                panic!("{case} (read_only {read_only}): expected Corrupted, got {other:?}")
            }
            Err(_) => panic!("{case} (read_only {read_only}): open hung"),
        }
    }
}

struct Case {
    tag: &'static str,
    /// Makes the hostile file at the given path; returns what must still exist afterwards.
    make: fn(&Path) -> Vec<PathBuf>,
    /// Where to put it, given the real lock path.
    place: fn(&Path) -> PathBuf,
}

fn same_dir(real: &Path) -> PathBuf {
    let len = real.file_name().unwrap().len();
    real.with_file_name(pattern_name(len))
}

fn other_dir(real: &Path) -> PathBuf {
    let len = real.file_name().unwrap().len();
    let dir = real.parent().unwrap().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(pattern_name(len - 2))
}

fn mkfifo(p: &Path) -> Vec<PathBuf> {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    vec![p.to_owned()]
}

fn symlink_to_victim(p: &Path) -> Vec<PathBuf> {
    let victim = p.with_file_name(format!("victim-{}", std::process::id()));
    std::fs::write(&victim, b"").unwrap();
    std::os::unix::fs::symlink(&victim, p).unwrap();
    vec![p.to_owned(), victim]
}

fn non_empty(p: &Path) -> Vec<PathBuf> {
    std::fs::write(p, b"precious").unwrap();
    vec![p.to_owned()]
}

fn empty_file(p: &Path) -> Vec<PathBuf> {
    std::fs::write(p, b"").unwrap();
    vec![p.to_owned()]
}

#[test]
fn hostile_lock_paths_give_a_typed_error_at_once_and_nothing_is_unlinked() {
    let _s = serial();
    let cases = [
        Case {
            tag: "fifo",
            make: mkfifo,
            place: same_dir,
        },
        Case {
            tag: "symlink",
            make: symlink_to_victim,
            place: same_dir,
        },
        Case {
            tag: "nonempty",
            make: non_empty,
            place: same_dir,
        },
        Case {
            tag: "otherdir",
            make: empty_file,
            place: other_dir,
        },
    ];
    for case in cases {
        let name = format!("/shmchan-test-trust-{}-{}", case.tag, std::process::id());
        let key = Key::name(&name).unwrap();
        let s = Shared::<u64, FcntlLock>::create_with(key, 7).unwrap();
        let real = s.lock_path().unwrap().to_owned();
        let evil = (case.place)(&real);
        let _ = std::fs::remove_file(&evil);
        let keep = (case.make)(&evil);
        point_header_at(&name, &real, &evil);
        assert_refused(key, case.tag);
        // The creator's own handle still works and removes only its own file.
        s.store(8);
        s.remove().unwrap();
        assert!(
            !real.exists(),
            "{}: the creator's lock file is removed",
            case.tag
        );
        for p in &keep {
            assert!(
                std::fs::symlink_metadata(p).is_ok(),
                "{}: {} was unlinked",
                case.tag,
                p.display()
            );
            std::fs::remove_file(p).unwrap();
        }
        if case.tag == "otherdir" {
            let _ = std::fs::remove_dir(evil.parent().unwrap());
        }
    }
}

/// Lock files a process with this pid created, still present in the lock directory.
fn lock_files_of(pid: u32) -> Vec<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let prefix = format!("shmchan-{pid}-");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn anonymous_value_leaves_no_lock_file_when_its_process_exits_without_dropping() {
    let _s = serial();
    let mut child = Child::spawn(|| {
        let s = Shared::<u64, FcntlLock>::anonymous(1).unwrap();
        s.store(2);
        let g = s.lock_write().unwrap();
        drop(g);
        // Exits without dropping `s` (atexit handlers run, destructors do not).
        std::process::exit(if s.read() == 2 { 0 } else { 1 });
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    let left = lock_files_of(pid);
    for p in &left {
        let _ = std::fs::remove_file(p);
    }
    assert!(left.is_empty(), "leaked {left:?}");
}

#[test]
fn forked_child_of_an_anonymous_value_locks_through_its_inherited_descriptor() {
    let _s = serial();
    let s = Shared::<u64, FcntlLock>::anonymous(0).unwrap();
    let g = s.lock_write().unwrap();
    // The child opens its own description of the unnamed file: it is excluded by the parent.
    let mut child = Child::spawn(|| match s.try_write(|n| *n = 1) {
        Err(Error::WouldBlock { .. }) => 0,
        other => {
            eprintln!("child: {other:?}");
            1
        }
    });
    assert_eq!(child.wait(), 0);
    drop(g);
    let mut child = Child::spawn(|| i32::from(s.try_write(|n| *n = 5).is_err()));
    assert_eq!(child.wait(), 0);
    assert_eq!(s.read(), 5);
}
