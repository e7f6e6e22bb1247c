//! `shmchan watch` refreshes and marks the fields that changed since the previous refresh.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use common::*;
use shmchan::format::layout::encode;
use shmchan::{Field, Layout, PrimKind, TypeDesc};

const PAIR: Layout = Layout {
    type_name: "Pair",
    size: 16,
    align: 8,
    fields: &[
        Field {
            name: "a",
            offset: 0,
            size: 8,
            ty: TypeDesc::Prim(PrimKind::U64),
        },
        Field {
            name: "b",
            offset: 8,
            size: 8,
            ty: TypeDesc::Prim(PrimKind::U64),
        },
    ],
};

/// Reads one refresh (lines up to the blank separator line) from `watch`'s output.
fn next_report(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Vec<String> {
    let mut report = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read watch output");
        if line.is_empty() {
            return report;
        }
        report.push(line);
    }
    panic!("watch ended early; last report: {report:?}");
}

/// The line showing field `name`, e.g. `* a  u64  5`.
fn field_line<'a>(report: &'a [String], name: &str) -> &'a str {
    report
        .iter()
        .find(|l| l[2..].split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in {report:?}"))
}

#[test]
fn watch_marks_changed_fields_only() {
    let _s = serial();
    let mut bytes = forge_segment(1, 0, "Pair", &encode(&PAIR), 16, 16);
    let value_at = (bytes.len() - 16) as u64;
    let n = bytes.len();
    bytes[n - 16..n - 8].copy_from_slice(&1u64.to_ne_bytes());
    bytes[n - 8..].copy_from_slice(&2u64.to_ne_bytes());
    let obj = RawPosix::new("watch", &bytes);

    let mut watch = Command::new(env!("CARGO_BIN_EXE_shmchan"))
        .args(["watch", &obj.name, "--interval", "10ms", "--count", "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn shmchan watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();

    let first = next_report(&mut lines);
    assert!(
        field_line(&first, "a").starts_with("  "),
        "nothing marked on the first refresh: {first:?}"
    );

    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{}", obj.name))
        .expect("open the object");
    file.write_all_at(&5u64.to_ne_bytes(), value_at)
        .expect("change a");

    // The first refresh that shows the new value is the one that must mark it.
    let changed = loop {
        let r = next_report(&mut lines);
        if field_line(&r, "a").ends_with(" 5") {
            break r;
        }
        assert!(
            field_line(&r, "a").starts_with("  "),
            "unchanged a is not marked: {r:?}"
        );
    };
    assert!(field_line(&changed, "a").starts_with("* "), "{changed:?}");
    assert!(
        field_line(&changed, "b").starts_with("  "),
        "b did not change: {changed:?}"
    );
    let after = next_report(&mut lines);
    assert!(
        field_line(&after, "a").starts_with("  "),
        "a is stable again: {after:?}"
    );

    watch.kill().expect("stop watch");
    watch.wait().expect("reap watch");
}

#[test]
fn watch_json_prints_one_document_per_refresh_and_stops_after_count() {
    let _s = serial();
    let obj = RawPosix::new(
        "watch-json",
        &forge_segment(1, 0, "Pair", &encode(&PAIR), 16, 16),
    );
    let out = ok(&[
        "--json",
        "watch",
        &obj.name,
        "--interval",
        "10ms",
        "--count",
        "3",
    ]);
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(docs.len(), 3);
    assert!(docs.iter().all(|d| d["value"]["b"] == 0));
}

#[test]
fn watch_of_a_removed_segment_fails_with_a_reason() {
    let _s = serial();
    let obj = RawPosix::new(
        "watch-gone",
        &forge_segment(1, 0, "Pair", &encode(&PAIR), 16, 16),
    );
    let name = obj.name.clone();
    drop(obj);
    let err = fails(&["watch", &name, "--count", "2"]);
    assert!(err.contains("no POSIX object"), "{err}");
}
