//! The only place that calls `libc`/`nix`: thin wrappers that turn `-1` + `errno` into
//! `Result`s. Everything above this module is free of `libc::` calls.

// Some wrappers are used only by modules still being written.
#![allow(dead_code)]

pub(crate) mod fcntl;
pub(crate) mod futex;
pub(crate) mod mman;
pub(crate) mod posix_shm;
pub(crate) mod proc;
pub(crate) mod procfs;
pub(crate) mod sysv;

/// The calling thread's current `errno`.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
