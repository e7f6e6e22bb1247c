//! Segments that are not shmchan's, or claim to be and lie: listed with a reason, never a crash,
//! never removed without `--force`.

mod common;

use common::*;

const MAGIC: &[u8; 8] = b"SHMCHAN\0";

#[test]
fn foreign_sysv_segment_is_listed_as_not_shmchan() {
    let _s = serial();
    let seg = RawSysv::new(libc::IPC_PRIVATE, 4096, b"hello from another program");
    let row = ls_row_sysv(seg.shmid).expect("ls lists the segment");
    assert_eq!(row["status"], "not shmchan");
    assert_eq!(row["size"], 4096);
    assert_eq!(row["creator_pid"], std::process::id());
    assert_eq!(row["creator"], "alive");
    assert!(
        row["reason"].as_str().unwrap_or("").contains("magic"),
        "{row}"
    );
    let text = ok(&["ls"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{} ", seg.shmid)) && l.contains("not shmchan")),
        "{text}"
    );
    let text = ok(&["inspect", &seg.shmid.to_string()]);
    assert!(text.contains("not shmchan"), "{text}");
}

#[test]
fn garbage_after_the_magic_is_corrupted_with_a_reason() {
    let _s = serial();
    let mut bytes = MAGIC.to_vec();
    bytes.extend((0..200u32).map(|i| (i.wrapping_mul(151) ^ 0x5a) as u8));
    let seg = RawSysv::new(libc::IPC_PRIVATE, 4096, &bytes);
    let row = ls_row_sysv(seg.shmid).expect("ls lists the segment");
    assert_eq!(row["status"], "corrupted", "{row}");
    assert!(!row["reason"].as_str().unwrap_or("").is_empty());
    let out = shmchan(&["inspect", &seg.shmid.to_string()]);
    assert!(
        out.status.success(),
        "inspect of a corrupted segment reports, does not fail"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("corrupted"));
    // Not removed by rm --stale: its header is not readable enough to know its creator.
    let out = json(&["rm", "--stale", "--dry-run"]);
    assert!(
        !out.to_string().contains(&format!("\"{}\"", seg.shmid)),
        "{out}"
    );
}

#[test]
fn truncated_header_is_corrupted() {
    let _s = serial();
    let seg = RawSysv::new(
        libc::IPC_PRIVATE,
        24,
        &[MAGIC.as_slice(), &[1, 0, 0, 0]].concat(),
    );
    let row = ls_row_sysv(seg.shmid).expect("ls lists the segment");
    assert_eq!(row["status"], "corrupted", "{row}");
    assert!(
        row["reason"].as_str().unwrap_or("").contains("truncated"),
        "{row}"
    );
}

#[test]
fn tiny_and_empty_posix_objects_are_not_shmchan() {
    let _s = serial();
    let empty = RawPosix::new("empty", b"");
    let tiny = RawPosix::new("tiny", b"SHM");
    for obj in [&empty, &tiny] {
        let row = ls_row_posix(&obj.name).expect("ls lists the object");
        assert_eq!(row["status"], "not shmchan", "{row}");
        let text = ok(&["inspect", &obj.name]);
        assert!(text.contains("not shmchan"), "{text}");
    }
}

#[test]
fn rm_refuses_foreign_segments_without_force() {
    let _s = serial();
    let seg = RawSysv::new(libc::IPC_PRIVATE, 4096, b"not ours");
    let id = seg.shmid.to_string();
    let err = fails(&["rm", &id]);
    assert!(err.contains("--force"), "{err}");
    assert!(sysv_exists(seg.shmid), "refused rm removed nothing");
    let out = ok(&["rm", "--force", "--dry-run", &id]);
    assert!(out.contains("would remove"), "{out}");
    assert!(sysv_exists(seg.shmid), "dry run removed nothing");
    let out = ok(&["rm", "--force", &id]);
    assert!(out.contains("removed"), "{out}");
    assert!(!sysv_exists(seg.shmid), "rm --force removed it");
}

#[test]
fn rm_refuses_foreign_posix_objects_and_force_unlinks() {
    let _s = serial();
    let obj = RawPosix::new("rm", b"someone else's data");
    let err = fails(&["rm", &obj.name]);
    assert!(err.contains("--force"), "{err}");
    assert!(std::path::Path::new(&format!("/dev/shm{}", obj.name)).exists());
    ok(&["rm", "--force", &obj.name]);
    assert!(!std::path::Path::new(&format!("/dev/shm{}", obj.name)).exists());
}

#[test]
fn keys_find_their_segment() {
    let _s = serial();
    let key = test_key(1);
    let seg = RawSysv::new(key, 128, b"keyed");
    let arg = format!("0x{:08x}", key as u32);
    let v = json(&["inspect", &arg]);
    assert_eq!(v["shmid"], seg.shmid);
    assert_eq!(v["key"], arg);
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let _s = serial();
    for args in [
        &["inspect", "0xnothex"][..],
        &["inspect", "-5"],
        &["inspect", "/a/b"],
        &["inspect", "0x0"],
        &["inspect", "2147483647"],
        &["inspect", "/shmchan-test-no-such-object"],
        &["rm", "2147483647"],
        &["watch", "1", "--interval", "fast"],
    ] {
        let err = fails(args);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains("error"), "{args:?}: {err}");
    }
    // An unknown id among known ones: the error is reported, nothing else happens.
    let err = fails(&["rm", "2147483647"]);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("no System V segment"))
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn limits_reports_kernel_values() {
    let _s = serial();
    let v = json(&["limits"]);
    let shmmni: u64 = std::fs::read_to_string("/proc/sys/kernel/shmmni")
        .expect("shmmni")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(v["shmmni"], shmmni);
    assert_eq!(v["shmmin"], 1);
    assert!(v["shmmax"].as_u64().is_some());
    let text = ok(&["limits"]);
    assert!(text.contains("sysctl -w kernel.shmmax="), "{text}");
    assert!(text.contains("/dev/shm"), "{text}");
}

mod forged {
    use super::*;
    use shmchan::format::layout::encode;
    use shmchan::{Field, Layout, PrimKind, TypeDesc};

    const GOOD: Layout = Layout {
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
                ty: TypeDesc::Prim(PrimKind::I64),
            },
        ],
    };

    #[test]
    fn a_forged_but_consistent_header_decodes() {
        let _s = serial();
        // No lock: the value sits at the payload start.
        let mut bytes = forge_segment(1, 0, "Pair", &encode(&GOOD), 16, 16);
        let off = bytes.len() - 16;
        bytes[off..off + 8].copy_from_slice(&41u64.to_ne_bytes());
        bytes[off + 8..].copy_from_slice(&(-2i64).to_ne_bytes());
        let obj = RawPosix::new("forged-good", &bytes);
        let v = json(&["inspect", &obj.name]);
        assert_eq!(v["status"], "shmchan", "{v}");
        assert_eq!(v["value"]["a"], 41, "{v}");
        assert_eq!(v["value"]["b"], -2, "{v}");
    }

    #[test]
    fn impossible_field_offsets_are_corrupted() {
        let _s = serial();
        const PAST_THE_END: Layout = Layout {
            fields: &[Field {
                name: "a",
                offset: 1 << 40,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::U64),
            }],
            ..GOOD
        };
        // The codec accepts this one (the size fits the struct); the tool checks the type's size.
        const WRONG_SIZE: Layout = Layout {
            fields: &[Field {
                name: "a",
                offset: 8,
                size: 8,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Prim(PrimKind::U64),
                    len: 1 << 61,
                },
            }],
            ..GOOD
        };
        for (tag, layout) in [("past", PAST_THE_END), ("size", WRONG_SIZE)] {
            let obj = RawPosix::new(
                &format!("forged-{tag}"),
                &forge_segment(1, 0, "Pair", &encode(&layout), 16, 16),
            );
            let row = ls_row_posix(&obj.name).expect("listed");
            assert_eq!(row["status"], "corrupted", "{tag}: {row}");
            let reason = row["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("layout"), "{tag}: {reason}");
            let out = shmchan(&["inspect", &obj.name]);
            assert!(
                out.status.success(),
                "{tag}: inspect reports, does not crash"
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("corrupted"));
        }
    }

    #[test]
    fn payload_claimed_past_the_segment_is_corrupted() {
        let _s = serial();
        let mut bytes = forge_segment(1, 0, "Pair", &encode(&GOOD), 16, 1 << 20);
        bytes.truncate(bytes.len() - (1 << 20) + 16);
        let obj = RawPosix::new("forged-short", &bytes);
        let row = ls_row_posix(&obj.name).expect("listed");
        assert_eq!(row["status"], "corrupted", "{row}");
        assert!(
            row["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("segment has"),
            "{row}"
        );
    }

    #[test]
    fn a_channel_with_a_garbage_ring_is_reported_not_decoded() {
        let _s = serial();
        let obj = RawPosix::new(
            "forged-ring",
            &forge_segment(
                2,
                0,
                "u64",
                &encode(&<u64 as shmchan::ShmSafe>::LAYOUT),
                8,
                4096,
            ),
        );
        let v = json(&["inspect", &obj.name]);
        assert_eq!(v["status"], "shmchan", "{v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains("ring"),
            "{v}"
        );
        let row = ls_row_posix(&obj.name).expect("listed");
        assert!(row["channel"]["error"].is_string(), "{row}");
    }

    #[test]
    fn a_claimed_huge_value_is_refused_not_allocated() {
        let _s = serial();
        const HUGE: Layout = Layout {
            type_name: "array",
            size: 1 << 40,
            align: 8,
            fields: &[],
        };
        for lock in [0, 1] {
            let obj = RawPosix::new(
                &format!("forged-huge-{lock}"),
                &forge_segment(1, lock, "array", &encode(&HUGE), 1 << 40, 16),
            );
            let v = json(&["inspect", &obj.name]);
            assert!(
                v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("does not fit"),
                "{v}"
            );
        }
    }
}

/// A copy of the binary that user `nobody` (65534) can execute: the build directory may sit under
/// a directory only root may enter (CI clones anywhere). Removed on drop.
struct NobodyBinary(std::path::PathBuf);

impl NobodyBinary {
    fn new() -> NobodyBinary {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("shmchan-cli-test-{}-nobody", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let bin = NobodyBinary(dir);
        let exe = bin.0.join("shmchan");
        std::fs::copy(env!("CARGO_BIN_EXE_shmchan"), &exe).expect("copy the binary");
        for (path, mode) in [(&bin.0, 0o755), (&exe, 0o755)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        bin
    }

    /// Runs the copy as `nobody`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(self.0.join("shmchan"))
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run shmchan as nobody")
    }
}

impl Drop for NobodyBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn another_users_private_segment_is_unreadable_and_kept() {
    let _s = serial();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running the tool as another user needs root");
        return;
    }
    let nobody = NobodyBinary::new();
    let seg = RawSysv::new(libc::IPC_PRIVATE, 4096, b"SHMCHAN\0 secret");
    let id = seg.shmid.to_string();
    let out = nobody.run(&["--json", "ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = rows
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["shmid"] == seg.shmid))
        .cloned()
        .expect("listed with its kernel metadata");
    assert_eq!(row["status"], "unreadable", "{row}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("EACCES"),
        "{row}"
    );
    assert_eq!(row["size"], 4096);
    // inspect prints what it could and fails: a script must not take the segment as read.
    let out = nobody.run(&["inspect", &id]);
    assert!(
        !out.status.success(),
        "inspect of an unreadable segment exits non-zero"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unreadable"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("EACCES"));
    let out = nobody.run(&["rm", "--force", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EACCES") || err.contains("EPERM"), "{err}");
    assert!(sysv_exists(seg.shmid), "nothing removed");
}
