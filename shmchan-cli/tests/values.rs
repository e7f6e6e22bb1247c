//! Values stored through the library (`Shared<T, SeqLock | FcntlLock>`), decoded field by field by
//! the real binary from the layout stored in the segment.

mod common;

use common::*;
use shmchan::{FcntlLock, Key, SeqLock, Shared, ShmSafe};

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Inner {
    x: i32,
    y: f32,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    levels: [u32; 4],
    inner: Inner,
    pair: [Inner; 2],
}

fn tick() -> Tick {
    Tick {
        seq: 7,
        price: 101.25,
        levels: [1, 2, 3, 4],
        inner: Inner { x: -5, y: 0.5 },
        pair: [Inner { x: 10, y: 1.5 }, Inner { x: 20, y: 2.5 }],
    }
}

fn assert_tick_fields(v: &serde_json::Value) {
    assert_eq!(v["value"]["seq"], 7, "{v}");
    assert_eq!(v["value"]["price"], 101.25);
    assert_eq!(v["value"]["levels"], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(v["value"]["inner"]["x"], -5);
    assert_eq!(v["value"]["inner"]["y"], 0.5);
    assert_eq!(v["value"]["pair"][1]["x"], 20);
    assert_eq!(v["value"]["pair"][1]["y"], 2.5);
    assert_eq!(v["shmchan"]["type_name"], "Tick");
    assert_eq!(v["shmchan"]["kind"], "value");
    assert_eq!(
        v["shmchan"]["fingerprint"],
        format!("{:016x}", <Tick as ShmSafe>::FINGERPRINT)
    );
    assert_eq!(v["shmchan"]["fingerprint_matches_layout"], true);
}

#[test]
fn inspect_decodes_every_field_of_a_seqlock_value() {
    let _s = serial();
    let key = test_key(30);
    let s = Shared::<Tick, SeqLock>::create_with(Key::raw(key), tick()).expect("create");
    s.write(|t| t.seq += 1);
    s.write(|t| t.seq -= 1);
    let arg = format!("0x{:08x}", key as u32);
    let v = json(&["inspect", &arg]);
    assert_tick_fields(&v);
    assert_eq!(v["shmchan"]["lock"], "seqlock");
    assert!(
        v["read"]
            .as_str()
            .unwrap_or_default()
            .contains("sequence 4"),
        "{v}"
    );
    assert_eq!(v["writer"], "free");

    let text = ok(&["inspect", &arg]);
    for line in ["seq ", "inner.x ", "pair[1].y "] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(line)),
            "{line}: {text}"
        );
    }
    let l = text
        .lines()
        .find(|l| l.trim_start().starts_with("inner.x"))
        .unwrap_or_default();
    assert!(l.contains("i32") && l.trim_end().ends_with("-5"), "{l}");
    let l = text
        .lines()
        .find(|l| l.trim_start().starts_with("levels"))
        .unwrap_or_default();
    assert!(l.contains("[u32; 4]") && l.contains("[1, 2, 3, 4]"), "{l}");

    let row = ls_row_sysv(s.info().expect("info").shmid.expect("sysv")).expect("listed");
    assert_eq!(row["status"], "shmchan");
    assert_eq!(row["shmchan"]["type_name"], "Tick");
    assert_eq!(row["shmchan"]["lock"], "seqlock");
    assert_eq!(row["creator"], "alive");
    assert_eq!(row["attached"], 1);
}

#[test]
fn inspect_reads_an_fcntl_value_under_its_read_lock() {
    let _s = serial();
    let name = format!("/shmchan-test-{}-fcntl", std::process::id());
    let s = Shared::<Tick, FcntlLock>::create_with(Key::name(&name).expect("name"), tick())
        .expect("create");
    let v = json(&["inspect", &name]);
    assert_tick_fields(&v);
    assert_eq!(v["shmchan"]["lock"], "fcntl");
    assert!(
        v["read"].as_str().unwrap_or_default().contains("read lock"),
        "{v}"
    );
    let lock_path = s.lock_path().expect("lock file").display().to_string();
    assert_eq!(v["shmchan"]["lock_path"], lock_path);

    // While a writer holds the lock, the tool waits (bounded) and says why it gave up.
    let guard = s.lock_write().expect("write lock");
    let v = json(&["inspect", &name]);
    assert!(
        v["error"].as_str().unwrap_or_default().contains("writer"),
        "{v}"
    );
    drop(guard);
}

#[test]
fn primitive_values_decode_as_one_line() {
    let _s = serial();
    let key = test_key(31);
    let _s2 = Shared::<u64, SeqLock>::create_with(Key::raw(key), 123_456).expect("create");
    let v = json(&["inspect", &format!("0x{:08x}", key as u32)]);
    assert_eq!(v["value"], 123_456, "{v}");
}

#[test]
fn rm_wipes_and_removes_an_unused_shmchan_segment() {
    let _s = serial();
    let key = test_key(32);
    let _cleanup = RemoveKeyOnDrop(key);
    let mut s = Shared::<Tick, SeqLock>::create_with(Key::raw(key), tick()).expect("create");
    s.persist();
    let shmid = s.info().expect("info").shmid.expect("sysv");
    let arg = format!("0x{:08x}", key as u32);
    // In use by this process: refused.
    let err = fails(&["rm", &arg]);
    assert!(err.contains("in use"), "{err}");
    drop(s);
    assert!(sysv_exists(shmid), "persisted: still there");
    let out = ok(&["rm", "--dry-run", &arg]);
    assert!(
        out.contains("would remove") && out.contains("Tick"),
        "{out}"
    );
    assert!(sysv_exists(shmid));
    let out = ok(&["rm", &arg]);
    assert!(out.contains("removed"), "{out}");
    assert!(!sysv_exists(shmid));
}

#[test]
fn inspect_never_shows_a_torn_value_while_a_writer_runs() {
    let _s = serial();
    let key = test_key(33);
    no_torn_reads(Key::raw(key), &format!("0x{:08x}", key as u32));
}

#[test]
fn inspect_never_shows_a_torn_posix_value_while_a_writer_runs() {
    let _s = serial();
    // POSIX objects are read with pread, not mapped: the protocol must hold there too.
    let name = format!("/shmchan-test-{}-torn", std::process::id());
    no_torn_reads(Key::name(&name).expect("name"), &name);
}

fn no_torn_reads(key: Key, arg: &str) {
    let s = Shared::<Tick, SeqLock>::create_with(key, Tick::default()).expect("create");
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the writer however the reading side ends, so a failed assertion cannot hang the
    /// scope waiting for it.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            // Every write keeps the invariant: every field derives from `seq`.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.write(|t| {
                    t.seq += 1;
                    let n = t.seq as u32;
                    t.price = t.seq as f64;
                    t.levels = [n; 4];
                    t.inner = Inner {
                        x: n as i32,
                        y: n as f32,
                    };
                    t.pair = [t.inner; 2];
                });
            }
        });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let v = json(&["inspect", arg]);
            let val = &v["value"];
            let seq = val["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no value: {v}"));
            assert_eq!(val["price"].as_f64(), Some(seq as f64), "torn: {val}");
            assert_eq!(
                val["levels"],
                serde_json::json!([seq, seq, seq, seq]),
                "torn: {val}"
            );
            assert_eq!(val["pair"][1]["x"].as_u64(), Some(seq), "torn: {val}");
            seen.insert(seq);
        }
        assert!(
            seen.len() > 1,
            "the writer made progress between reads: {seen:?}"
        );
    });
}

#[test]
fn rm_unlinks_an_unused_posix_value_and_refuses_one_in_use() {
    let _s = serial();
    let name = format!("/shmchan-test-{}-rm", std::process::id());
    let path = format!("/dev/shm{name}");
    /// Unlinks the object if the test did not.
    struct Unlink<'a>(&'a str);
    impl Drop for Unlink<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = Unlink(&path);
    let mut s = Shared::<Tick, SeqLock>::create_with(Key::name(&name).expect("name"), tick())
        .expect("create");
    s.persist();
    let err = fails(&["rm", &name]);
    assert!(err.contains("in use by 1 process"), "{err}");
    drop(s);
    assert!(
        std::path::Path::new(&path).exists(),
        "persisted: still there"
    );
    let row = ls_row_posix(&name).expect("listed");
    assert_eq!(
        (row["attached"].as_u64(), row["creator"].as_str()),
        (Some(0), Some("alive")),
        "{row}"
    );
    let out = ok(&["rm", &name]);
    assert!(out.contains("removed POSIX object"), "{out}");
    assert!(!std::path::Path::new(&path).exists());
}
