//! A segment's life: the creator writes the header, initialises the payload and publishes
//! READY; an opener waits (bounded) for READY, then copies the header out and validates it.

use super::DecodedHeader;
use super::backing::{Backing, Cleanup};
use super::header::{
    self, FLAG_REMOVE_WHEN_UNUSED, MAGIC, OFF_FLAGS, OFF_MAGIC, OFF_STATE, STATE_INITIALISING,
    STATE_POISONED, STATE_READY, STATE_UNINIT,
};
use super::spec::{Expect, SegmentSpec, check_expect, new_image};
use super::{Key, Segment, anon, sysv};
use crate::error::{Errno, Error, Result, Target};
use crate::sys;
use crate::sys::mman::{Region, Sharing, Width};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long an opener waits for a creator that is still initialising the segment.
pub(super) const INIT_WAIT: Duration = Duration::from_secs(1);

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
    // Not the magic word (bytes 0..8): a new segment is zeroed, and the magic is stored last,
    // as one `AtomicU64`, to match the openers' loads of it.
    let rest = image.bytes.get(8..).ok_or_else(broken)?;
    region.write_from(8, rest, Width::W4).ok_or_else(broken)?;
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
        .read_into(0, &mut fixed, Width::W4)
        .ok_or_else(|| not_shmchan("too small".into()))?;
    let len = header::header_len(&fixed).min(region.len());
    let mut bytes = vec![0u8; len];
    region
        .read_into(0, &mut bytes, Width::W4)
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
    let _ = region.read_into(0, &mut fixed, Width::W4);
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

/// What became of an existing segment a creator ran into.
enum Stale {
    /// It was abandoned and is removed now (or vanished meanwhile): create again.
    Reclaimed,
    /// It stays; why, when a reason was found (`None` for POSIX objects, never reclaimed).
    Kept(Option<String>),
}

/// Removes the System V segment with `key` if it was abandoned: nobody is attached, it was not
/// persisted, and its creator (pid and start time in the header) is dead. That is what the
/// creator's last handle would have done on drop; a process that ends with `_exit`, `exec` or
/// a signal runs no drop, and System V segments outlive processes.
///
/// Racing with an opener that attaches right after our last check, that opener keeps a handle
/// to the removed segment (its `info()` says `marked_for_removal`), as after any `remove()`.
fn reclaim_abandoned(key: &Key) -> Stale {
    let Some(k) = key.sysv_key().filter(|_| !key.is_private()) else {
        return Stale::Kept(None);
    };
    let kept = |why: String| Stale::Kept(Some(why));
    let attached = |n: u64| {
        kept(match n {
            1 => "1 process is still attached to it".to_owned(),
            n => format!("{n} processes are still attached to it"),
        })
    };
    let shmid = match sys::sysv::get(k, 0, sys::sysv::Create::No, 0) {
        Ok(id) => id,
        Err(Errno::ENOENT) => return Stale::Reclaimed,
        Err(e) => return kept(format!("shmget failed with {e:?}")),
    };
    match sys::sysv::stat(shmid) {
        Ok(st) if st.nattch > 0 => return attached(st.nattch),
        Ok(_) => {}
        Err(e) => return kept(format!("shmctl(IPC_STAT) failed with {e:?}")),
    }
    let mut seg = match Segment::open_sysv_id(shmid, true) {
        Ok(seg) => seg,
        Err(e) => return kept(format!("it could not be checked ({e})")),
    };
    // This checking handle decides nothing on its drop: what to remove is decided below.
    seg.backing.set_cleanup(Cleanup::Never);
    let h = seg.header();
    if !h.remove_when_unused {
        return kept("it was persisted (`persist()`); remove it with `shmchan rm`".into());
    }
    let pid = h.creator_pid;
    if sys::proc::liveness(pid, h.creator_start_time) != sys::proc::Liveness::Dead {
        return kept(format!("its creator (pid {pid}) still runs"));
    }
    // Still no one but our own read-only attachment.
    match sys::sysv::stat(shmid) {
        Ok(st) if st.nattch > 1 => return attached(st.nattch - 1),
        Ok(_) => {}
        Err(e) => return kept(format!("shmctl(IPC_STAT) failed with {e:?}")),
    }
    match sys::sysv::remove(shmid) {
        Ok(()) | Err(Errno::EINVAL | Errno::EIDRM) => Stale::Reclaimed,
        Err(e) => kept(format!(
            "its creator (pid {pid}) died without removing it, but shmctl(IPC_RMID) failed with {e:?}: run `shmchan rm --stale` as its owner"
        )),
    }
}

impl Segment {
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

    /// An anonymous `MAP_PRIVATE` segment: after `fork`, parent and child
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
        let backing = match Backing::create(&key, &image, spec.mode, &target) {
            Err(Error::Exists { call, target, .. }) => match reclaim_abandoned(&key) {
                Stale::Reclaimed => Backing::create(&key, &image, spec.mode, &target)?,
                Stale::Kept(why) => {
                    return Err(Error::Exists {
                        call,
                        target,
                        kept_because: why,
                    });
                }
            },
            other => other?,
        };
        Self::finish_create(
            backing,
            &image,
            FLAG_REMOVE_WHEN_UNUSED,
            Some(key),
            target,
            init,
        )
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
            match Backing::create(&key, &image, spec.mode, &target) {
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
                Err(Error::Exists { .. }) => {
                    if let Stale::Reclaimed = reclaim_abandoned(&key) {
                        continue;
                    }
                }
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
        let backing = Backing::open(&key, read_only, &target)?;
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
}
