//! What the kernel says about segments and processes, read from `/proc` and `/dev/shm` without
//! attaching anything.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// Where the kernel lists System V segments.
pub const SYSV_TABLE: &str = "/proc/sysvipc/shm";
/// Where POSIX shared memory objects live; `SHM_DEST` (`IPC_RMID` was called, the segment goes
/// when the last process detaches, its key reset to `IPC_PRIVATE`) and `SHM_LOCKED` in the
/// mode bits.
pub use shmchan::tool::{POSIX_DIR, SHM_DEST, SHM_LOCKED};

/// One line of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysvEntry {
    /// The IPC key (0 = `IPC_PRIVATE`, also after `IPC_RMID`).
    pub key: i32,
    /// The segment id.
    pub shmid: i32,
    /// Permission bits plus `SHM_DEST` / `SHM_LOCKED`.
    pub perms: u32,
    /// Size in bytes as requested at creation.
    pub size: u64,
    /// Creator pid.
    pub cpid: u32,
    /// Last `shmat`/`shmdt` pid.
    pub lpid: u32,
    /// Current attach count.
    pub nattch: u64,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Last attach, detach and change times (seconds since the epoch, 0 = never).
    pub atime: i64,
    /// Last detach time.
    pub dtime: i64,
    /// Last change time.
    pub ctime: i64,
    /// Resident and swapped bytes, when the kernel reports them.
    pub rss: Option<u64>,
    /// Swapped bytes.
    pub swap: Option<u64>,
}

impl SysvEntry {
    /// Whether `IPC_RMID` was already called (gone once the last process detaches).
    pub fn marked_for_removal(&self) -> bool {
        self.perms & SHM_DEST != 0
    }
}

/// Parses the whole of `/proc/sysvipc/shm`. Columns are found by their header names, so a kernel
/// that adds or reorders columns is still read; lines that do not parse are skipped.
pub fn parse_sysv_table(text: &str) -> Vec<SysvEntry> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: HashMap<&str, usize> = header
        .split_whitespace()
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    lines
        .filter_map(|line| parse_sysv_line(&cols, line))
        .collect()
}

fn parse_sysv_line(cols: &HashMap<&str, usize>, line: &str) -> Option<SysvEntry> {
    let values: Vec<&str> = line.split_whitespace().collect();
    let get = |name: &str| cols.get(name).and_then(|&i| values.get(i)).copied();
    let num = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());
    let unum = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
    let u32_of = |name: &str| unum(name).and_then(|v| u32::try_from(v).ok());
    Some(SysvEntry {
        key: i32::try_from(num("key")?).ok()?,
        shmid: i32::try_from(num("shmid")?).ok()?,
        // The kernel prints the mode in octal.
        perms: u32::from_str_radix(get("perms")?, 8).ok()?,
        size: unum("size")?,
        cpid: u32_of("cpid")?,
        lpid: u32_of("lpid").unwrap_or(0),
        nattch: unum("nattch")?,
        uid: u32_of("uid")?,
        gid: u32_of("gid").unwrap_or(0),
        cuid: u32_of("cuid").unwrap_or(0),
        cgid: u32_of("cgid").unwrap_or(0),
        atime: num("atime").unwrap_or(0),
        dtime: num("dtime").unwrap_or(0),
        ctime: num("ctime").unwrap_or(0),
        rss: unum("rss"),
        swap: unum("swap"),
    })
}

/// Reads and parses `/proc/sysvipc/shm`.
pub fn sysv_segments() -> Result<Vec<SysvEntry>, String> {
    std::fs::read_to_string(SYSV_TABLE)
        .map(|t| parse_sysv_table(&t))
        .map_err(|e| format!("cannot read {SYSV_TABLE}: {e} (is /proc mounted?)"))
}

/// One file in `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixEntry {
    /// The `shm_open` name: `/` + file name.
    pub name: String,
    /// Size in bytes (`st_size`).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last modification (seconds since the epoch).
    pub mtime: i64,
    /// Inode number: tells this object from an older, unlinked one that had the same name and
    /// is still mapped by some process.
    pub ino: u64,
}

/// Lists the regular files of `/dev/shm` (POSIX shared memory objects and, named `sem.*`, POSIX
/// named semaphores). A missing directory is an empty list.
pub fn posix_objects() -> Vec<PosixEntry> {
    let Ok(dir) = std::fs::read_dir(POSIX_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<PosixEntry> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            // symlink_metadata: never follow a link out of /dev/shm.
            let meta = entry.path().symlink_metadata().ok()?;
            if !meta.file_type().is_file() {
                return None;
            }
            Some(PosixEntry {
                name: format!("/{}", entry.file_name().to_str()?),
                size: meta.len(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                ino: meta.ino(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The metadata of one POSIX object, if it exists as a regular file.
pub fn posix_object(name: &str) -> Option<PosixEntry> {
    posix_objects().into_iter().find(|e| e.name == name)
}

/// How many processes map each `/dev/shm` object, by inode, from `/proc/<pid>/maps` (the POSIX
/// analogue of `shm_nattch`). By inode, not by name: a process still mapping an unlinked object
/// does not count as attached to a newer object of the same name. Processes whose maps we may
/// not read (other users, without privileges) are not counted.
pub fn posix_mappers() -> HashMap<u64, u64> {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for entry in proc_dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        let mut seen: Vec<u64> = maps
            .lines()
            .filter_map(mapped_shm_object)
            .map(|(_, ino)| ino)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for ino in seen {
            *counts.entry(ino).or_default() += 1;
        }
    }
    counts
}

/// The `/dev/shm` object a `/proc/<pid>/maps` line maps, if any: its name and inode.
fn mapped_shm_object(line: &str) -> Option<(&str, u64)> {
    // address perms offset dev inode path; the path may contain spaces.
    let mut fields = line.splitn(6, char::is_whitespace);
    let ino: u64 = fields.nth(4)?.parse().ok()?;
    let path = fields.next()?.trim_start();
    let rest = path.strip_prefix("/dev/shm/")?;
    Some((rest.strip_suffix(" (deleted)").unwrap_or(rest), ino))
}

/// The user name of `uid` from `/etc/passwd`, or the number.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
         0          3  1600                  4096   100   101      2  1000  1000  1000  1000 1700000000 1700000001 1700000002                  4096                     0
1409351681         98   644                 65536  2000  2000      0     0     0     0     0          0          0 1700000003                     0                     0
garbage line
";

    #[test]
    fn parses_the_kernel_table_by_column_name() {
        let t = parse_sysv_table(SAMPLE);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].shmid, 3);
        assert_eq!(t[0].perms, 0o1600);
        assert!(t[0].marked_for_removal());
        assert_eq!((t[0].cpid, t[0].lpid, t[0].nattch), (100, 101, 2));
        assert_eq!(t[0].rss, Some(4096));
        assert_eq!(t[1].key, 1409351681);
        assert_eq!(t[1].size, 65536);
        assert!(!t[1].marked_for_removal());
    }

    #[test]
    fn empty_or_odd_tables_parse_to_nothing() {
        assert!(parse_sysv_table("").is_empty());
        assert!(parse_sysv_table("key shmid\n1").is_empty());
    }

    #[test]
    fn maps_lines_name_their_shm_object() {
        let l = "7f00-7f01 rw-s 00000000 00:19 1234                       /dev/shm/tick";
        assert_eq!(mapped_shm_object(l), Some(("tick", 1234)));
        let l = "7f00-7f01 rw-s 00000000 00:19 99   /dev/shm/a b (deleted)";
        assert_eq!(mapped_shm_object(l), Some(("a b", 99)));
        assert_eq!(
            mapped_shm_object("7f00-7f01 r-xp 00000000 08:01 1 /usr/bin/x"),
            None
        );
        assert_eq!(mapped_shm_object("7f00-7f01 rw-p 00000000 00:00 0"), None);
    }
}
