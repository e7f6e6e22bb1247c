//! `/proc` reads for channel liveness: the calling process's start time without allocating
//! (for `pthread_atfork` child handlers), and whether a process still maps a given shared
//! object (a process that `exec`ed lost every mapping, though it keeps its pid and start time).

/// The identity of a mapped object: the device and inode `/proc/<pid>/maps` shows for it.
/// Anonymous shared mappings, System V segments and POSIX objects all have one (an inode of
/// the kernel's shared-memory filesystem), the same in every process that maps the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MappedObject {
    dev: (u32, u32),
    inode: u64,
}

/// One line of a maps file: address range and the object's identity.
fn parse_maps_line(line: &str) -> Option<(usize, usize, MappedObject)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode = fields.next()?.parse().ok()?;
    Some((start, end, MappedObject { dev, inode }))
}

/// The object mapped at `addr` in the calling process, or `None` if `/proc/self/maps` cannot
/// be read or shows no object with an inode there.
pub(crate) fn object_mapped_at(addr: usize) -> Option<MappedObject> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(parse_maps_line)
        .find(|&(start, end, _)| start <= addr && addr < end)
        .map(|(_, _, object)| object)
        .filter(|o| o.inode != 0)
}

/// Whether process `pid` maps `object` anywhere: `None` if its maps cannot be read (it is
/// gone, or belongs to another user and is not readable by us).
pub(crate) fn maps_object(pid: u32, object: MappedObject) -> Option<bool> {
    let memo = MAPS_MEMO.with(|m| {
        m.borrow()
            .as_ref()
            .map(|v| v.iter().find(|(p, _)| *p == pid).map(|(_, o)| o.clone()))
    });
    let objects = match memo {
        Some(Some(objects)) => objects,
        None => {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
            return Some(
                maps.lines()
                    .filter_map(parse_maps_line)
                    .any(|(_, _, o)| o == object),
            );
        }
        Some(None) => {
            let objects = std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .ok()
                .map(|maps| {
                    maps.lines()
                        .filter_map(parse_maps_line)
                        .map(|(_, _, o)| o)
                        .collect::<Vec<_>>()
                });
            MAPS_MEMO.with(|m| {
                if let Some(v) = m.borrow_mut().as_mut() {
                    v.push((pid, objects.clone()));
                }
            });
            objects
        }
    };
    objects.map(|o| o.contains(&object))
}

/// `/proc/<pid>/maps` answers by pid: the objects listed, `None` if unreadable.
type MapsAnswers = Vec<(u32, Option<Vec<MappedObject>>)>;

std::thread_local! {
    /// The objects each `/proc/<pid>/maps` listed, read so far inside [`memoized`].
    static MAPS_MEMO: std::cell::RefCell<Option<MapsAnswers>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f`, reading each `/proc/<pid>/maps` at most once on this thread for [`maps_object`]
/// while it runs (see `proc::memoized`).
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) fn memoized<R>(f: impl FnOnce() -> R) -> R {
    let outer = MAPS_MEMO.with(|m| m.borrow_mut().replace(Vec::new()));
    let r = f();
    MAPS_MEMO.with(|m| *m.borrow_mut() = outer);
    r
}

/// Field 22 (start time) of a `/proc/.../stat` line given as bytes.
fn stat_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 1..)?;
    // `rest` starts at field 3; field 22 is the 20th whitespace-separated field of it.
    let field = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(19)?;
    let mut value: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// The calling process's start time (`/proc/self/stat` field 22), read with raw system calls
/// into a stack buffer: no allocation, no lock, so it may run in a `fork` child handler.
pub(crate) fn own_start_time_no_alloc() -> Option<u64> {
    const PATH: &[u8] = b"/proc/self/stat\0";
    // SAFETY: `PATH` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(PATH.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let rest = &mut buf[len..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    stat_start_time(&buf[..len.min(buf.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let line = "7f12a4c00000-7f12a4c01000 rw-s 00000000 00:01 4242     /dev/zero (deleted)";
        assert_eq!(
            parse_maps_line(line),
            Some((
                0x7f12a4c00000,
                0x7f12a4c01000,
                MappedObject {
                    dev: (0, 1),
                    inode: 4242
                }
            ))
        );
        assert_eq!(parse_maps_line("garbage"), None);
    }

    #[test]
    fn own_start_time_matches_the_allocating_reader() {
        assert_eq!(
            own_start_time_no_alloc(),
            super::super::proc::process_start_time(std::process::id())
        );
        assert_eq!(stat_start_time(b"1 (a) b) S 1 2 3"), None);
    }
}
