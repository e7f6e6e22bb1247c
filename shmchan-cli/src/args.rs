//! What a command line designates: a System V segment by id or key, or a POSIX object by name.

use std::fmt;
use std::str::FromStr;

/// A segment named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentArg {
    /// `123`: a System V `shmid` (as shown by `ipcs -m` and `shmchan ls`).
    Id(i32),
    /// `0x5400abcd`: a System V key (`ftok` or raw).
    Key(i32),
    /// `/tick`: a POSIX shared memory object (`shm_open` name, a file in `/dev/shm`).
    Name(String),
}

impl fmt::Display for SegmentArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentArg::Id(id) => write!(f, "System V segment id {id}"),
            SegmentArg::Key(key) => write!(f, "System V key 0x{:08x}", *key as u32),
            SegmentArg::Name(name) => write!(f, "POSIX object {name}"),
        }
    }
}

impl FromStr for SegmentArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected a shmid (123), a key (0x5400abcd) or a POSIX name (/tick)";
        if s.is_empty() {
            return Err(format!("empty segment argument: {EXPECTED}"));
        }
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            // Keys are 32-bit; `ipcs` prints them as unsigned hex, the kernel stores an int.
            return match u32::from_str_radix(hex, 16) {
                Ok(0) => Err("key 0x00000000 is IPC_PRIVATE and designates no segment: \
                               give the shmid instead (see `shmchan ls`)"
                    .to_owned()),
                Ok(k) => Ok(SegmentArg::Key(k as i32)),
                Err(_) => Err(format!(
                    "bad key `{s}`: a key is 1 to 8 hexadecimal digits after 0x"
                )),
            };
        }
        if let Some(rest) = s.strip_prefix('/') {
            return validate_posix_name(rest).map(|()| SegmentArg::Name(s.to_owned()));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<i32>()
                .map(SegmentArg::Id)
                .map_err(|_| format!("bad shmid `{s}`: ids are between 0 and {}", i32::MAX));
        }
        Err(format!("bad segment `{s}`: {EXPECTED}"))
    }
}

/// POSIX names are one path component under `/dev/shm`; refusing `/`, `.` and `..` keeps the
/// tool from ever touching a file outside it.
fn validate_posix_name(rest: &str) -> Result<(), String> {
    if rest.is_empty() || rest == "." || rest == ".." {
        return Err(format!(
            "bad POSIX name `/{rest}`: a name is `/` followed by at least one character other than `/`"
        ));
    }
    if rest.contains('/') || rest.contains('\0') {
        return Err(format!(
            "bad POSIX name `/{rest}`: a name has no `/` after the first (it is one file in /dev/shm)"
        ));
    }
    if rest.len() > 255 {
        return Err(format!(
            "bad POSIX name `/{rest}`: longer than 255 bytes (NAME_MAX)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_keys_and_names() {
        assert_eq!("123".parse(), Ok(SegmentArg::Id(123)));
        assert_eq!("0x54".parse(), Ok(SegmentArg::Key(0x54)));
        assert_eq!("0xffffffff".parse(), Ok(SegmentArg::Key(-1)));
        assert_eq!("/tick".parse(), Ok(SegmentArg::Name("/tick".into())));
    }

    #[test]
    fn rejects_bad_arguments_with_a_reason() {
        for bad in [
            "",
            "0x",
            "0xg1",
            "0x123456789",
            "-3",
            "abc",
            "99999999999",
            "/",
            "/a/b",
            "/..",
            "0x0",
        ] {
            let err = bad.parse::<SegmentArg>().expect_err(bad);
            assert!(!err.contains('\n'), "one line: {err}");
            assert!(!err.is_empty());
        }
    }
}
