//! The only place that calls `libc`/`nix`: thin wrappers that turn `-1` + `errno` into
//! `Result<_, Errno>` (`Errno::result`, as nix does). Everything above this module is free of
//! `libc::` calls and builds its typed [`Error`](crate::Error)s where it knows what failed.

// Some wrappers are used only by modules still being written.
#![allow(dead_code)]

pub(crate) mod fcntl;
pub(crate) mod futex;
pub(crate) mod lockfile;
pub(crate) mod mman;
pub(crate) mod posix_shm;
pub(crate) mod proc;
pub(crate) mod sysv;
pub mod tool;

pub(crate) use nix::errno::Errno;
