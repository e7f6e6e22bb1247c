//! Real shmchan segments created through the library, looked at by the real binary.

mod common;

use common::*;
use shmchan::{Key, Segment};

#[test]
fn ls_and_inspect_decode_a_raw_shmchan_segment() {
    let _s = serial();
    let key = test_key(20);
    let seg = Segment::create_raw(Key::raw(key), 4096, 0o600).expect("create raw segment");
    seg.write_bytes(0, b"hello, shmchan")
        .expect("write payload");
    let shmid = seg.info().expect("info").shmid.expect("System V id");
    let row = ls_row_sysv(shmid).expect("ls lists it");
    assert_eq!(row["status"], "shmchan", "{row}");
    assert_eq!(row["shmchan"]["kind"], "raw");
    assert_eq!(row["creator"], "alive");
    assert_eq!(row["creator_pid"], std::process::id());
    assert_eq!(row["stale"], false);
    let v = json(&["inspect", &format!("0x{:08x}", key as u32)]);
    assert!(
        v["raw_prefix_hex"]
            .as_str()
            .unwrap_or("")
            .starts_with(&hex(b"hello, shmchan")),
        "{v}"
    );
    let text = ok(&["inspect", &shmid.to_string()]);
    assert!(text.contains("hello, shmchan"), "{text}");
    seg.remove().expect("remove");
}

#[test]
fn a_process_mapping_an_unlinked_object_is_not_counted_for_its_successor() {
    let _s = serial();
    let name = format!("/shmchan-test-{}-successor", std::process::id());
    // This process maps the first object, which is then unlinked: its mapping stays.
    let old = Segment::create_raw(Key::name(&name).expect("name"), 4096, 0o600).expect("create");
    shmchan::tool::posix_unlink(&name).expect("unlink the first object");
    // A new object under the same name, mapped by nobody.
    let path = format!("/dev/shm{name}");
    std::fs::write(&path, [0u8; 64]).expect("create the successor");
    let row = ls_row_posix(&name).expect("ls lists the successor");
    std::fs::remove_file(&path).expect("remove the successor");
    drop(old);
    assert_eq!(row["size"], 64, "{row}");
    assert_eq!(
        row["attached"], 0,
        "the old mapping is another inode: {row}"
    );
}
