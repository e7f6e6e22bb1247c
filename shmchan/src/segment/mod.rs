//! Where shared bytes live: anonymous mappings, System V segments and POSIX shared memory
//! objects, each starting with a validated header.
//!
//! # For the engineers building on it (`Shared`, channels, the CLI)
//!
//! A [`Segment`] owns one mapping: `[header | payload]`. The header (see [`header`]) records
//! what the payload holds; the payload is yours, starts 128-aligned and is `payload_len` bytes.
//!
//! ```ignore
//! use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
//!
//! let spec = SegmentSpec::new(SegmentKind::Value, LockKind::SeqLock, &T::LAYOUT, T::FINGERPRINT,
//!                             payload_len);       // + .lock_path(..), .capacity(..), .mode(..)
//! // Creator: writes the header, runs `init` on the zeroed payload, then publishes READY.
//! let seg = Segment::anonymous(&spec, |payload: *mut u8| { /* write lock words, value */ })?;
//! let seg = Segment::create(key, &spec, |p| ..)?;           // EEXIST -> Error::Exists
//! // Opener: waits (≤ 1 s) while the creator initialises, then validates everything.
//! let seg = Segment::open(key, &spec.expect(), read_only)?; // or Expect { .. } by hand
//! let seg = Segment::open_or_create(key, &spec, &spec.expect(), |p| ..)?;
//! let p: *mut u8 = seg.payload_ptr();   // never turn it into &T / &mut T: other processes write
//! let n = seg.payload_len();
//! let h = seg.header_info();            // creator pid/start time, capacity, lock path, layout...
//! ```
//!
//! `init` runs before anyone can open the segment (state INITIALISING), so it may write the
//! payload with plain stores. After `create` returns, every access must follow your lock
//! protocol. A read-only segment ([`Segment::is_read_only`]) is mapped without `PROT_WRITE`:
//! give such handles only `Segment::payload_const_ptr` (crate-private).
//!
//! Cleanup (DESIGN §3): anonymous mappings are unmapped on drop. A keyed System V segment is
//! removed by whichever handle detaches last, unless someone called [`Segment::persist`]. A POSIX
//! object is unlinked when its creating handle drops, unless persisted. [`Segment::remove`]
//! wipes the payload and removes the segment at once.
//!
//! Tools without the Rust type: [`Segment::open_any`] / [`Segment::open_sysv_id`] validate only
//! the header; [`DecodedHeader::parse`] decodes header bytes copied from anywhere and
//! [`layout_codec::decode`] gives the stored layout as an owned [`LayoutDesc`] tree.

mod anon;
pub mod header;
mod key;
pub mod layout_codec;
mod limits;
mod posix;
mod raw;
mod sysv;

pub use header::{DecodedHeader, HeaderState};
pub use key::Key;
pub use layout_codec::{FieldDesc, LayoutDesc, TypeDescOwned};
pub use limits::{Limits, limits};

/// What `Segment::header_info` returns (the same type as [`DecodedHeader`]).
pub type HeaderInfo = DecodedHeader;

use crate::error::{Error, Result, Target};
use crate::shm_safe::Layout;
use crate::sys;
use crate::sys::mman::{Mapping, Region, Sharing};
use header::{
    FLAG_REMOVE_WHEN_UNUSED, MAGIC, OFF_FLAGS, OFF_MAGIC, OFF_STATE, STATE_INITIALISING,
    STATE_POISONED, STATE_READY, STATE_UNINIT,
};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// How long an opener waits for a creator that is still initialising the segment.
const INIT_WAIT: Duration = Duration::from_secs(1);

/// What a segment holds (stored in its header).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::SegmentKind::Channel as u32, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum SegmentKind {
    /// One value with a lock (`Shared<T, L>`).
    Value = 1,
    /// A single-producer single-consumer ring of messages.
    Channel = 2,
    /// Untyped bytes accessed as atomic words and volatile copies (`Segment::create_raw`).
    Raw = 3,
    /// A multi-producer multi-consumer queue of messages (`shmchan::mpmc`).
    Mpmc = 4,
}

impl SegmentKind {
    pub(crate) fn from_raw(v: u32) -> Option<SegmentKind> {
        match v {
            1 => Some(SegmentKind::Value),
            2 => Some(SegmentKind::Channel),
            3 => Some(SegmentKind::Raw),
            4 => Some(SegmentKind::Mpmc),
            _ => None,
        }
    }
}

/// Which lock guards a segment's payload (stored in its header).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::LockKind::SeqLock as u32, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum LockKind {
    /// No lock (channels synchronise through their indices).
    None = 0,
    /// A sequence lock: lock-free readers, one writer.
    SeqLock = 1,
    /// An fcntl record lock on a lock file.
    Fcntl = 2,
}

impl LockKind {
    pub(crate) fn from_raw(v: u32) -> Option<LockKind> {
        match v {
            0 => Some(LockKind::None),
            1 => Some(LockKind::SeqLock),
            2 => Some(LockKind::Fcntl),
            _ => None,
        }
    }
}

/// What a creator puts in a new segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSpec<'a> {
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Which lock guards it.
    pub lock_kind: LockKind,
    /// The stored type (the message type for channels).
    pub layout: &'static Layout,
    /// Its `ShmSafe::FINGERPRINT`.
    pub fingerprint: u64,
    /// Bytes the caller needs after the header (lock words + data, or the ring).
    pub payload_len: usize,
    /// The fcntl lock file, recorded in the header.
    pub lock_path: Option<&'a Path>,
    /// Channel capacity (0 for values).
    pub capacity: u64,
    /// Permission bits for keyed segments (default 0o600).
    pub mode: u32,
}

impl<'a> SegmentSpec<'a> {
    /// A spec with no lock path, capacity 0 and mode 0o600.
    pub(crate) fn new(
        kind: SegmentKind,
        lock_kind: LockKind,
        layout: &'static Layout,
        fingerprint: u64,
        payload_len: usize,
    ) -> SegmentSpec<'a> {
        SegmentSpec {
            kind,
            lock_kind,
            layout,
            fingerprint,
            payload_len,
            lock_path: None,
            capacity: 0,
            mode: 0o600,
        }
    }

    /// What an opener of a segment made from this spec expects (including `payload_len`).
    // Interface for channels (merged separately).
    #[allow(dead_code)]
    pub(crate) fn expect(&self) -> Expect {
        Expect {
            kind: self.kind,
            lock_kind: self.lock_kind,
            fingerprint: self.fingerprint,
            type_name: self.layout.type_name,
            payload_len: Some(self.payload_len),
        }
    }
}

/// What an opener requires of an existing segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    /// Required kind (else `KindMismatch`).
    pub kind: SegmentKind,
    /// Required lock kind (else `KindMismatch`).
    pub lock_kind: LockKind,
    /// Required fingerprint (else `LayoutMismatch`).
    pub fingerprint: u64,
    /// The opener's type name, for the `LayoutMismatch` message.
    pub type_name: &'static str,
    /// Required payload length; `None` when the caller validates it itself (channels).
    pub payload_len: Option<usize>,
}

/// What a backing does when its handle drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// Nothing beyond unmapping/detaching.
    Never,
    /// Remove: creation did not complete.
    Always,
    /// Remove if the header's remove-when-unused flag is set (and, for System V, no one is
    /// attached any more).
    IfFlagged,
}

#[derive(Debug)]
enum Backing {
    Anon(Mapping),
    SysV(sysv::SysvBacking),
    Posix(posix::PosixBacking),
}

impl Backing {
    fn region(&self) -> Option<Region<'_>> {
        match self {
            Backing::Anon(m) => Some(m.region()),
            Backing::SysV(s) => s.region(),
            Backing::Posix(p) => Some(p.region()),
        }
    }

    fn set_cleanup(&mut self, c: Cleanup) {
        match self {
            Backing::Anon(_) => {}
            Backing::SysV(s) => s.cleanup = c,
            Backing::Posix(p) => p.cleanup = c,
        }
    }
}

/// A mapped shared memory segment: anonymous, System V or POSIX, with a validated header.
///
/// Users reach segments through `Shared` and channels; this type carries the operations on the
/// segment itself (`info`, `set_mode`, `remove`, `persist`, `lock_in_memory`...), and lets tools
/// open any shmchan segment without knowing its type ([`Segment::open_any`]).
///
/// Dropping it unmaps or detaches; see the [module docs](self) for when it also removes.
///
/// # Examples
///
/// ```
/// use shmchan::{Error, Key, Segment};
///
/// // A segment that does not exist:
/// let key = Key::name(&format!("/shmchan-doc-missing-{}", std::process::id()))?;
/// assert!(matches!(Segment::open_any(key, true), Err(Error::NotFound { .. })));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    backing: Backing,
    header: DecodedHeader,
    key: Option<Key>,
    target: Target,
    read_only: bool,
}

/// Kernel metadata of a segment (`IPC_STAT` for System V, `fstat` for POSIX).
///
/// Fields the kind of segment does not have are `None`.
///
/// # Examples
///
/// ```no_run
/// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
/// let info = seg.info()?;
/// println!("{} bytes, {:?} attached, mode {:o}", info.size, info.attach_count, info.mode.unwrap_or(0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The System V segment id (`shmid`), as shown by `ipcs -m`.
    pub shmid: Option<i32>,
    /// Size in bytes.
    pub size: u64,
    /// Processes attached (`shm_nattch`, System V only).
    pub attach_count: Option<u64>,
    /// The creating process (`shm_cpid`).
    pub creator_pid: Option<u32>,
    /// The last process to attach or detach (`shm_lpid`).
    pub last_pid: Option<u32>,
    /// Last attach (`shm_atime`; POSIX: last access).
    pub attach_time: Option<SystemTime>,
    /// Last detach (`shm_dtime`; POSIX: last modification).
    pub detach_time: Option<SystemTime>,
    /// Last change of the metadata (`shm_ctime` / `st_ctime`).
    pub change_time: Option<SystemTime>,
    /// Owner user id.
    pub uid: Option<u32>,
    /// Owner group id.
    pub gid: Option<u32>,
    /// Creator user id (System V).
    pub creator_uid: Option<u32>,
    /// Creator group id (System V).
    pub creator_gid: Option<u32>,
    /// Permission bits (`0o600`...).
    pub mode: Option<u32>,
    /// Removed (`IPC_RMID`) but still attached somewhere (`SHM_DEST`).
    pub marked_for_removal: bool,
    /// Locked in memory (`SHM_LOCKED`).
    pub locked_in_memory: bool,
}

fn time(secs: i64) -> Option<SystemTime> {
    (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Replaces the placeholder target of header-parsing errors with the real one.
fn retarget(err: Error, target: &Target) -> Error {
    match err {
        Error::NotShmchan { reason, .. } => Error::NotShmchan {
            target: target.clone(),
            reason,
        },
        Error::Corrupted { what } => Error::Corrupted {
            what: format!("{target}: {what}"),
        },
        other => other,
    }
}

/// Writes the header image, runs `init` on the payload, and publishes READY (Release).
fn publish(
    region: Region<'_>,
    image: &header::Image,
    flags: u32,
    init: impl FnOnce(*mut u8),
) -> Result<()> {
    let broken = || Error::Corrupted {
        what: "the new mapping is smaller than its header".into(),
    };
    if region.len() < image.total_len {
        return Err(broken());
    }
    region.write_from(0, &image.bytes).ok_or_else(broken)?;
    let state = region.atomic_u32(OFF_STATE).ok_or_else(broken)?;
    region
        .atomic_u32(OFF_FLAGS)
        .ok_or_else(broken)?
        .store(flags, Ordering::Relaxed);
    state.store(STATE_INITIALISING, Ordering::Relaxed);
    // Release: an opener that sees the magic (Acquire) also sees the creator pid and start time
    // it needs to tell a slow creator from a dead one.
    region
        .atomic_u64(OFF_MAGIC)
        .ok_or_else(broken)?
        .store(MAGIC, Ordering::Release);
    let payload = region.ptr_at(image.payload_off).ok_or_else(broken)?;
    init(payload);
    // Release: everything written above, header and `init`'s payload, happens-before any
    // opener's Acquire load of READY.
    state.store(STATE_READY, Ordering::Release);
    sys::futex::wake(state, u32::MAX);
    Ok(())
}

/// Waits (bounded) until the header is READY, then copies it out and validates it.
fn read_header(region: Region<'_>, target: &Target) -> Result<DecodedHeader> {
    let not_shmchan = |reason: String| Error::NotShmchan {
        target: target.clone(),
        reason,
    };
    let (Some(magic), Some(state)) = (region.atomic_u64(OFF_MAGIC), region.atomic_u32(OFF_STATE))
    else {
        return Err(not_shmchan(format!(
            "{} bytes is too small to hold a header",
            region.len()
        )));
    };
    let deadline = Instant::now() + INIT_WAIT;
    loop {
        let m = magic.load(Ordering::Acquire);
        let s = state.load(Ordering::Acquire);
        if m != MAGIC && m != 0 {
            return Err(not_shmchan("no SHMCHAN magic at offset 0".into()));
        }
        if m == MAGIC {
            match s {
                STATE_READY => break,
                STATE_POISONED => {
                    return Err(not_shmchan(
                        "it is poisoned (removed, or its creation failed half-way)".into(),
                    ));
                }
                STATE_UNINIT | STATE_INITIALISING => {}
                other => return Err(not_shmchan(format!("unknown state {other}"))),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(init_timeout(region, m == MAGIC, target));
        }
        // The creator wakes the state word when it publishes READY.
        let slice = (deadline - now).min(Duration::from_millis(20));
        sys::futex::wait(state, s, Some(slice));
    }
    let mut fixed = [0u8; header::FIXED_LEN];
    region
        .read_into(0, &mut fixed)
        .ok_or_else(|| not_shmchan("too small".into()))?;
    let len = header::header_len(&fixed).min(region.len());
    let mut bytes = vec![0u8; len];
    region
        .read_into(0, &mut bytes)
        .ok_or_else(|| not_shmchan("too small".into()))?;
    let h = DecodedHeader::parse(&bytes).map_err(|e| retarget(e, target))?;
    if h.total_len > region.len() as u64 {
        return Err(Error::Corrupted {
            what: format!(
                "{target}: the header says {} bytes but the segment has {}",
                h.total_len,
                region.len()
            ),
        });
    }
    Ok(h)
}

/// The error for a header still not READY after [`INIT_WAIT`].
fn init_timeout(region: Region<'_>, magic_seen: bool, target: &Target) -> Error {
    if !magic_seen {
        return Error::NotShmchan {
            target: target.clone(),
            reason: format!(
                "its header is still blank after {INIT_WAIT:?}: the creator died before writing it, or it was not made by shmchan; remove it"
            ),
        };
    }
    let mut fixed = [0u8; header::FIXED_LEN];
    let _ = region.read_into(0, &mut fixed);
    let pid = u32::from_ne_bytes([fixed[24], fixed[25], fixed[26], fixed[27]]);
    let mut start = [0u8; 8];
    start.copy_from_slice(&fixed[32..40]);
    let start = u64::from_ne_bytes(start);
    match sys::proc::liveness(pid, start) {
        sys::proc::Liveness::Dead => Error::NotShmchan {
            target: target.clone(),
            reason: format!(
                "its creator (pid {pid}) died while initialising it; remove it{}",
                target
                    .cli_arg()
                    .map(|a| format!(" with `shmchan rm {a}`"))
                    .unwrap_or_default()
            ),
        },
        _ => Error::Timeout {
            what: format!("{target} to be initialised by its creator"),
            holder_pid: Some(pid),
        },
    }
}

fn check_expect(h: &DecodedHeader, e: &Expect) -> Result<()> {
    if h.kind != e.kind || h.lock_kind != e.lock_kind {
        return Err(Error::KindMismatch {
            expected: format!("{:?} segment with {:?} lock", e.kind, e.lock_kind),
            found: format!("{:?} segment with {:?} lock", h.kind, h.lock_kind),
        });
    }
    if h.fingerprint != e.fingerprint {
        return Err(Error::LayoutMismatch {
            expected: e.fingerprint,
            found: h.fingerprint,
            expected_type: e.type_name.to_owned(),
            found_type: h.type_name.clone(),
        });
    }
    match e.payload_len {
        Some(n) if h.payload_len != n as u64 => Err(Error::Corrupted {
            what: format!(
                "the segment's payload is {} bytes, `{}` needs {n}",
                h.payload_len, e.type_name
            ),
        }),
        _ => Ok(()),
    }
}

fn new_image(spec: &SegmentSpec<'_>) -> Result<header::Image> {
    let pid = sys::proc::pid();
    header::build_image(&header::NewHeader {
        kind: spec.kind,
        lock_kind: spec.lock_kind,
        creator_pid: pid,
        creator_start_time: sys::proc::process_start_time(pid).unwrap_or(0),
        fingerprint: spec.fingerprint,
        layout: spec.layout,
        payload_len: spec.payload_len,
        lock_path: spec.lock_path,
        capacity: spec.capacity,
    })
}

impl Segment {
    fn region(&self) -> Option<Region<'_>> {
        self.backing.region()
    }

    /// Builds the header in a freshly created, zeroed backing and publishes it.
    fn finish_create(
        mut backing: Backing,
        image: &header::Image,
        flags: u32,
        key: Option<Key>,
        target: Target,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        let region = backing.region().ok_or_else(|| Error::Corrupted {
            what: "the new segment is not attached".into(),
        })?;
        publish(region, image, flags, init)?;
        let header = read_header(region, &target)?;
        backing.set_cleanup(Cleanup::IfFlagged);
        Ok(Segment {
            backing,
            header,
            key,
            target,
            read_only: false,
        })
    }

    fn anonymous_with(
        spec: &SegmentSpec<'_>,
        sharing: Sharing,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        let image = new_image(spec)?;
        let backing = Backing::Anon(anon::map(image.total_len, sharing)?);
        Self::finish_create(backing, &image, 0, None, Target::Anonymous, init)
    }

    /// An anonymous `MAP_SHARED` segment: shared with the children this process `fork`s
    /// afterwards (each sees the others' writes), not reachable by any other process.
    pub(crate) fn anonymous(spec: &SegmentSpec<'_>, init: impl FnOnce(*mut u8)) -> Result<Segment> {
        Self::anonymous_with(spec, Sharing::Shared, init)
    }

    /// An anonymous `MAP_PRIVATE` segment (seed 000's variant): after `fork`, parent and child
    /// each have a private copy-on-write copy; writes are never seen by the other side.
    pub(crate) fn anonymous_private(
        spec: &SegmentSpec<'_>,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        Self::anonymous_with(spec, Sharing::Private, init)
    }

    /// Creates the keyed segment exclusively (`IPC_CREAT | IPC_EXCL` / `O_CREAT | O_EXCL`),
    /// writes the header, runs `init(payload_ptr)` and publishes READY.
    pub(crate) fn create(
        key: Key,
        spec: &SegmentSpec<'_>,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        let image = new_image(spec)?;
        let target = key.target();
        let backing = Self::create_backing(&key, &image, spec.mode, &target)?;
        Self::finish_create(
            backing,
            &image,
            FLAG_REMOVE_WHEN_UNUSED,
            Some(key),
            target,
            init,
        )
    }

    fn create_backing(
        key: &Key,
        image: &header::Image,
        mode: u32,
        target: &Target,
    ) -> Result<Backing> {
        match (key.sysv_key(), key.posix_name()) {
            (Some(k), _) => Ok(Backing::SysV(sysv::SysvBacking::create(
                k,
                image.total_len,
                mode,
                target,
            )?)),
            (None, Some(name)) => Ok(Backing::Posix(posix::PosixBacking::create(
                name,
                image.total_len,
                mode,
                target,
            )?)),
            (None, None) => Err(Error::InvalidArgument {
                what: format!("{key} is neither a System V key nor a POSIX name"),
            }),
        }
    }

    fn open_backing(key: &Key, read_only: bool, target: &Target) -> Result<Backing> {
        if key.is_private() {
            return Err(Error::InvalidArgument {
                what: "an IPC_PRIVATE segment cannot be opened by key: share it by fork, or create it with a real key".into(),
            });
        }
        match (key.sysv_key(), key.posix_name()) {
            (Some(k), _) => Ok(Backing::SysV(sysv::SysvBacking::open(
                k, read_only, target,
            )?)),
            (None, Some(name)) => Ok(Backing::Posix(posix::PosixBacking::open(
                name,
                read_only,
                Instant::now() + INIT_WAIT,
                target,
            )?)),
            (None, None) => Err(Error::InvalidArgument {
                what: format!("{key} is neither a System V key nor a POSIX name"),
            }),
        }
    }

    fn validate(
        mut backing: Backing,
        key: Option<Key>,
        target: Target,
        read_only: bool,
    ) -> Result<Segment> {
        let region = backing.region().ok_or_else(|| Error::Corrupted {
            what: "the segment is not attached".into(),
        })?;
        let header = read_header(region, &target)?;
        // Only a validated shmchan header may make a drop remove the segment.
        backing.set_cleanup(match backing {
            Backing::Posix(_) => Cleanup::Never,
            _ => Cleanup::IfFlagged,
        });
        Ok(Segment {
            backing,
            header,
            key,
            target,
            read_only,
        })
    }

    /// Opens an existing keyed segment and validates its header against `expect`.
    ///
    /// `read_only` attaches with `SHM_RDONLY` / `O_RDONLY` + `PROT_READ`.
    pub(crate) fn open(key: Key, expect: &Expect, read_only: bool) -> Result<Segment> {
        let seg = Self::open_any(key, read_only)?;
        check_expect(&seg.header, expect)?;
        Ok(seg)
    }

    /// Opens the segment if it exists (validating it against `expect`), else creates it.
    pub(crate) fn open_or_create(
        key: Key,
        spec: &SegmentSpec<'_>,
        expect: &Expect,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        if key.is_private() {
            return Self::create(key, spec, init);
        }
        let image = new_image(spec)?;
        let target = key.target();
        // Creation and opening race with other processes doing the same: retry a few times when
        // the segment appears (EEXIST) or disappears (ENOENT) between our two calls.
        for _ in 0..8 {
            match Self::create_backing(&key, &image, spec.mode, &target) {
                Ok(backing) => {
                    return Self::finish_create(
                        backing,
                        &image,
                        FLAG_REMOVE_WHEN_UNUSED,
                        Some(key),
                        target,
                        init,
                    );
                }
                Err(Error::Exists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::open(key, expect, false) {
                Err(Error::NotFound { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::Timeout {
            what: format!("{target} to stop being created and removed by other processes"),
            holder_pid: None,
        })
    }

    /// Opens any shmchan segment by key, validating its header but not its type: for tools that
    /// decode the payload through [`Segment::header`]'s layout.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this key, [`Error::PermissionDenied`] if its mode
    /// forbids the access, [`Error::NotShmchan`] / [`Error::Corrupted`] if its header is not a
    /// valid shmchan header, [`Error::Timeout`] if its creator is still initialising it.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = shmchan::Key::raw(0x7fff_fff1);
    /// assert!(shmchan::Segment::open_any(key, true).is_err());
    /// ```
    pub fn open_any(key: Key, read_only: bool) -> Result<Segment> {
        let target = key.target();
        let backing = Self::open_backing(&key, read_only, &target)?;
        Self::validate(backing, Some(key), target, read_only)
    }

    /// Attaches the System V segment with id `shmid` (as listed by `ipcs -m` or
    /// `/proc/sysvipc/shm`) and validates its header.
    ///
    /// # Errors
    ///
    /// As [`Segment::open_any`]; [`Error::Removed`] if it was removed and awaits its last detach.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::Segment::open_sysv_id(i32::MAX, true).is_err());
    /// ```
    pub fn open_sysv_id(shmid: i32, read_only: bool) -> Result<Segment> {
        let target = Target::SysVId { id: shmid };
        let backing = Backing::SysV(sysv::SysvBacking::attach_id(shmid, read_only, &target)?);
        Self::validate(backing, None, target, read_only)
    }

    /// The payload's address: 128-aligned, `payload_len` bytes. Never dereference it as `&T`:
    /// other processes write this memory. On a read-only segment writing through it faults: use
    /// [`payload_const_ptr`](Self::payload_const_ptr) there.
    pub(crate) fn payload_ptr(&self) -> *mut u8 {
        // The header was validated against the mapping size, so the offset is in bounds.
        self.region()
            .and_then(|r| r.ptr_at(self.header.payload_off as usize))
            .unwrap_or(std::ptr::null_mut())
    }

    /// The payload's address for reading.
    // Interface for channels (merged separately).
    #[allow(dead_code)]
    pub(crate) fn payload_const_ptr(&self) -> *const u8 {
        self.payload_ptr()
    }

    /// The payload's address for writing, `None` on a read-only segment.
    // Interface for channels (merged separately).
    #[allow(dead_code)]
    pub(crate) fn payload_mut_ptr(&self) -> Option<*mut u8> {
        (!self.read_only).then(|| self.payload_ptr())
    }

    /// The payload's length in bytes.
    pub(crate) fn payload_len(&self) -> usize {
        self.header.payload_len as usize
    }

    /// A copy of the decoded header.
    // Interface for channels (merged separately).
    #[allow(dead_code)]
    pub(crate) fn header_info(&self) -> HeaderInfo {
        self.header.clone()
    }

    /// The decoded header, as validated when the segment was created or opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// let h = seg.header();
    /// println!("{} ({} fields), created by pid {}", h.type_name, h.layout.fields.len(), h.creator_pid);
    /// # }
    /// ```
    pub fn header(&self) -> &DecodedHeader {
        &self.header
    }

    /// Copies `out.len()` bytes of the segment starting at `offset` (from the segment start, not
    /// the payload) with volatile reads. The bytes may be mid-update: read through the
    /// segment's lock protocol when they must be consistent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the segment.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// let mut magic = [0u8; 8];
    /// seg.copy_out(0, &mut magic)?;
    /// assert_eq!(&magic, b"SHMCHAN\0");
    /// # Ok(()) }
    /// ```
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.region()
            .and_then(|r| r.read_into(offset, out))
            .ok_or_else(|| Error::InvalidArgument {
                what: format!(
                    "bytes {offset}..{} are outside {}",
                    offset.saturating_add(out.len()),
                    self.target
                ),
            })
    }

    /// The segment's total mapped length.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// assert!(seg.len() as u64 >= seg.header().total_len);
    /// # }
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.region().map_or(0, |r| r.len())
    }

    /// Whether the segment is mapped read-only (`SHM_RDONLY` / `PROT_READ`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// if seg.is_read_only() { println!("no writes through this handle"); }
    /// # }
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The key the segment was created or opened with (`None` for anonymous segments and those
    /// opened by id).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// if let Some(k) = seg.key() { println!("remove it with `shmchan rm {k}`"); }
    /// # }
    /// ```
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// Keeps a keyed segment after its handles are gone: clears the header's remove-when-unused
    /// flag, so no handle (in any process) removes it on drop. Remove it later with
    /// [`remove`](Self::remove) or `shmchan rm`. No effect on anonymous segments.
    ///
    /// A read-only handle cannot clear the shared flag; it only stops removing on its own drop.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(mut seg: shmchan::Segment) {
    /// seg.persist();
    /// drop(seg); // still listed by `ipcs -m`
    /// # }
    /// ```
    pub fn persist(&mut self) {
        let flags = self.region().and_then(|r| r.atomic_u32(OFF_FLAGS));
        if let (Some(flags), false) = (flags, self.read_only) {
            flags.fetch_and(!FLAG_REMOVE_WHEN_UNUSED, Ordering::AcqRel);
        }
        self.backing.set_cleanup(Cleanup::Never);
        self.header.remove_when_unused = false;
    }

    /// Wipes the payload with volatile writes (seed 002: confidential data must not reach the
    /// next user of the memory), marks the header poisoned, then removes the segment:
    /// `IPC_RMID` (the key is free at once; the memory goes at the last detach) or
    /// `shm_unlink`. For an anonymous segment it wipes and unmaps.
    ///
    /// A read-only handle cannot wipe; it only removes.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) if this process is neither the owner, the creator
    /// nor root; [`Error::NotFound`] if a POSIX name was already unlinked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: shmchan::Segment) -> shmchan::Result<()> {
    /// seg.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn remove(mut self) -> Result<()> {
        if let Some(r) = self.region().filter(|r| r.writable()) {
            let off = self.header.payload_off as usize;
            let _ = r.wipe(off, r.len().saturating_sub(off));
            if let Some(s) = r.atomic_u32(OFF_STATE) {
                s.store(STATE_POISONED, Ordering::Release);
            }
        }
        let result = match &self.backing {
            Backing::Anon(_) => Ok(()),
            Backing::SysV(s) => s.remove(&self.target),
            Backing::Posix(p) => p.unlink(&self.target),
        };
        self.backing.set_cleanup(Cleanup::Never);
        result
    }

    /// Kernel metadata: `IPC_STAT` (size, attach count, creator and last pid, times, owner,
    /// mode) for System V, `fstat` for POSIX, the size only for anonymous segments.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the mode forbids reading the metadata; [`Error::Os`]
    /// otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// let info = seg.info()?;
    /// assert!(info.size >= seg.header().total_len);
    /// # Ok(()) }
    /// ```
    pub fn info(&self) -> Result<SegmentInfo> {
        let empty = SegmentInfo {
            shmid: None,
            size: self.len() as u64,
            attach_count: None,
            creator_pid: None,
            last_pid: None,
            attach_time: None,
            detach_time: None,
            change_time: None,
            uid: None,
            gid: None,
            creator_uid: None,
            creator_gid: None,
            mode: None,
            marked_for_removal: false,
            locked_in_memory: false,
        };
        match &self.backing {
            Backing::Anon(_) => Ok(empty),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                Ok(SegmentInfo {
                    shmid: Some(s.shmid),
                    size: st.size as u64,
                    attach_count: Some(st.nattch),
                    creator_pid: Some(st.cpid.max(0) as u32),
                    last_pid: Some(st.lpid.max(0) as u32),
                    attach_time: time(st.atime),
                    detach_time: time(st.dtime),
                    change_time: time(st.ctime),
                    uid: Some(st.uid),
                    gid: Some(st.gid),
                    creator_uid: Some(st.cuid),
                    creator_gid: Some(st.cgid),
                    mode: Some(st.mode & 0o777),
                    marked_for_removal: st.mode & sys::sysv::SHM_DEST != 0,
                    locked_in_memory: st.mode & sys::sysv::SHM_LOCKED != 0,
                })
            }
            Backing::Posix(p) => {
                let st = posix::stat_fd(&p.fd, &self.target)?;
                Ok(SegmentInfo {
                    size: st.size,
                    attach_time: time(st.atime),
                    detach_time: time(st.mtime),
                    change_time: time(st.ctime),
                    uid: Some(st.uid),
                    gid: Some(st.gid),
                    mode: Some(st.mode & 0o777),
                    ..empty
                })
            }
        }
    }

    fn no_metadata(&self, what: &str) -> Error {
        Error::InvalidArgument {
            what: format!(
                "{what} needs a keyed segment; {} has no permissions",
                self.target
            ),
        }
    }

    /// Changes the permission bits (`IPC_SET` / `fchmod`), e.g. `0o640` to let the group read.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) unless this process owns or created the segment or
    /// is root; [`Error::InvalidArgument`] for anonymous segments.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.set_mode(0o640)?;
    /// # Ok(()) }
    /// ```
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        match &self.backing {
            Backing::Anon(_) => Err(self.no_metadata("set_mode")),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                sys::sysv::set(s.shmid, st.uid, st.gid, mode)
                    .map_err(|e| Error::from_errno("shmctl(IPC_SET)", e, self.target.clone()))
            }
            Backing::Posix(p) => sys::posix_shm::chmod(std::os::fd::AsFd::as_fd(&p.fd), mode)
                .map_err(|e| Error::from_errno("fchmod", e, self.target.clone())),
        }
    }

    /// Changes the owner (`IPC_SET` / `fchown`); the mode is kept.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) unless allowed (owner/creator or root for System V,
    /// root for POSIX); [`Error::InvalidArgument`] for anonymous segments.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.set_owner(1000, 1000)?;
    /// # Ok(()) }
    /// ```
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        match &self.backing {
            Backing::Anon(_) => Err(self.no_metadata("set_owner")),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                sys::sysv::set(s.shmid, uid, gid, st.mode)
                    .map_err(|e| Error::from_errno("shmctl(IPC_SET)", e, self.target.clone()))
            }
            Backing::Posix(p) => sys::posix_shm::chown(std::os::fd::AsFd::as_fd(&p.fd), uid, gid)
                .map_err(|e| Error::from_errno("fchown", e, self.target.clone())),
        }
    }

    fn set_locked(&self, lock: bool) -> Result<()> {
        let (shm_call, m_call) = if lock {
            ("shmctl(SHM_LOCK)", "mlock")
        } else {
            ("shmctl(SHM_UNLOCK)", "munlock")
        };
        match &self.backing {
            Backing::SysV(s) => sys::sysv::lock(s.shmid, lock)
                .map_err(|e| Error::from_errno(shm_call, e, self.target.clone())),
            Backing::Anon(m) => m
                .lock(lock)
                .map_err(|e| Error::from_errno(m_call, e, self.target.clone())),
            Backing::Posix(p) => p
                .mapping()
                .lock(lock)
                .map_err(|e| Error::from_errno(m_call, e, self.target.clone())),
        }
    }

    /// Keeps the segment in RAM, never swapped (`SHM_LOCK`; `mlock` for anonymous and POSIX
    /// segments).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) without `CAP_IPC_LOCK` or enough `RLIMIT_MEMLOCK`;
    /// the message says how to grant it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.lock_in_memory()?;
    /// # Ok(()) }
    /// ```
    pub fn lock_in_memory(&self) -> Result<()> {
        self.set_locked(true)
    }

    /// Allows the segment to be swapped again (`SHM_UNLOCK` / `munlock`).
    ///
    /// # Errors
    ///
    /// As [`lock_in_memory`](Self::lock_in_memory).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.unlock_in_memory()?;
    /// # Ok(()) }
    /// ```
    pub fn unlock_in_memory(&self) -> Result<()> {
        self.set_locked(false)
    }
}

#[cfg(test)]
mod tests;
