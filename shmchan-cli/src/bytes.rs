//! The bytes of a segment the command looks at: a System V attachment or a POSIX object read
//! with `pread`, both from the library's tool layer, behind one [`ByteSource`].

use std::io;

use shmchan::format::ByteSource;
use shmchan::tool::PosixObject;

use crate::attach::ParticipantAttachment;

/// An opened segment.
pub enum Opened {
    /// A System V segment, attached by id.
    Sysv(ParticipantAttachment),
    /// A POSIX object.
    Posix(PosixObject),
}

impl Opened {
    /// The source to decode from.
    pub fn source(&self) -> &dyn ByteSource {
        match self {
            Opened::Sysv(a) => a.source(),
            Opened::Posix(p) => p,
        }
    }

    /// Overwrites every byte with zero (requires a writable opening).
    pub fn wipe(&self) -> io::Result<()> {
        match self {
            Opened::Sysv(a) => a.source().wipe(),
            Opened::Posix(p) => p.wipe(),
        }
    }
}

/// One line naming the failed call, the errno and, where it helps, what to do.
pub fn describe(call: &str, err: &io::Error) -> String {
    if err.raw_os_error().is_none() {
        return format!("{call} failed: {err}");
    }
    // io::Error's text ends in " (os error N)": the symbolic name says it better.
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    let hint = if shmchan::tool::is_permission_error(err) {
        ": you are not its owner (or root) and its mode does not allow this; run as its owner or root"
    } else if shmchan::tool::is_gone_error(err) {
        if err.kind() == io::ErrorKind::NotFound {
            ": it does not exist (any more)"
        } else {
            ": it was probably removed meanwhile (see `shmchan ls`)"
        }
    } else {
        ""
    };
    format!(
        "{call} failed: {} ({text}){hint}",
        shmchan::tool::errno_name(err)
    )
}
