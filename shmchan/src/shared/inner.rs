//! The plumbing both handle types share: a segment, its lock and the payload address.

use crate::segment::{Expect, Key, Segment, SegmentKind, SegmentSpec};
use crate::sync::fcntl_guard::FcntlReadGuard;
use crate::sync::record_lock::Wait;
use crate::{Error, FcntlLock, Lock, Result, ShmSafe};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use std::time::Duration;

/// The segment, the lock and the payload address: what both handle types hold.
pub(super) struct Inner<T: ShmSafe, L: Lock> {
    pub(super) seg: ManuallyDrop<Segment>,
    pub(super) lock: L,
    pub(super) payload: NonNull<u8>,
    /// The segment's key, kept for after the segment is gone.
    seg_key: Option<Key>,
    /// `seg` was taken out and removed.
    pub(super) removed: bool,
    _t: PhantomData<T>,
}

// SAFETY: `payload` points into the mapping owned by `seg`, which lives as long as `Inner`; every
// access through it follows the lock protocol (atomics for the seqlock, the record lock for
// fcntl), which is what makes concurrent access from threads and processes sound. `Segment` and
// the locks are themselves Send + Sync.
unsafe impl<T: ShmSafe, L: Lock> Send for Inner<T, L> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe, L: Lock> Sync for Inner<T, L> {}

fn spec<T: ShmSafe, L: Lock>(lock: &L, mode: u32) -> SegmentSpec<'_> {
    let mut spec = SegmentSpec::new(
        SegmentKind::Value,
        L::KIND,
        &T::LAYOUT,
        T::FINGERPRINT,
        L::payload_len::<T>(),
    );
    spec.lock_path = lock.lock_path();
    spec.mode = mode;
    spec
}

fn expect<T: ShmSafe, L: Lock>() -> Expect {
    Expect {
        kind: SegmentKind::Value,
        lock_kind: L::KIND,
        fingerprint: T::FINGERPRINT,
        type_name: T::LAYOUT.type_name,
        payload_len: Some(L::payload_len::<T>()),
    }
}

fn check_type<T: ShmSafe>() -> Result<()> {
    if align_of::<T>() > 128 {
        return Err(Error::InvalidArgument {
            what: format!(
                "`{}` needs {}-byte alignment; shared values support at most 128",
                T::LAYOUT.type_name,
                align_of::<T>()
            ),
        });
    }
    Ok(())
}

impl<T: ShmSafe, L: Lock> Inner<T, L> {
    fn new(seg: Segment, lock: L) -> Result<Self> {
        let payload = NonNull::new(seg.payload_ptr()).ok_or_else(|| Error::Corrupted {
            what: "the segment has no payload mapping".into(),
        })?;
        // Both locks rely on a 128-aligned payload (atomic words, and `T` itself for fcntl); the
        // segment guarantees it, and a header that says otherwise must not reach them.
        if payload.as_ptr() as usize % 128 != 0 {
            return Err(Error::Corrupted {
                what: format!(
                    "the payload of the segment starts at {:p}, not 128-aligned",
                    payload.as_ptr()
                ),
            });
        }
        if seg.payload_len() < L::payload_len::<T>() {
            return Err(Error::Corrupted {
                what: format!(
                    "the payload is {} bytes, a `{}` needs {}",
                    seg.payload_len(),
                    T::LAYOUT.type_name,
                    L::payload_len::<T>()
                ),
            });
        }
        Ok(Inner {
            seg_key: seg.key(),
            seg: ManuallyDrop::new(seg),
            lock,
            payload,
            removed: false,
            _t: PhantomData,
        })
    }

    /// Creates a value through `make`; `named`: other processes will open it by key (so the
    /// fcntl lock file needs a name they can open).
    pub(super) fn create_with(
        value: Option<&T>,
        named: bool,
        mode: u32,
        make: impl FnOnce(&SegmentSpec<'_>, &mut dyn FnMut(*mut u8)) -> Result<Segment>,
    ) -> Result<Self> {
        check_type::<T>()?;
        let mut lock = L::create_lock(named, mode)?;
        let mut init = |p: *mut u8| {
            // SAFETY: the segment calls `init` once on its fresh, 128-aligned, writable payload
            // of `payload_len::<T>()` bytes before anyone else can open it.
            unsafe { L::init(p, value) }
        };
        match make(&spec::<T, L>(&lock, mode), &mut init) {
            Ok(seg) => Self::new(seg, lock),
            Err(e) => {
                // Creation failed: nobody else knows the lock file.
                lock.discard();
                Err(e)
            }
        }
    }

    pub(super) fn open(key: Key, read_only: bool) -> Result<Self> {
        check_type::<T>()?;
        let seg = Segment::open(key, &expect::<T, L>(), read_only)?;
        let lock = L::open_lock(&seg)?;
        Self::new(seg, lock)
    }

    pub(super) fn open_or_create(key: Key, value: Option<&T>, mode: u32) -> Result<Self> {
        check_type::<T>()?;
        let mut lock = L::create_lock(!key.is_private(), mode)?;
        let init = |p: *mut u8| {
            // SAFETY: called once on the fresh, aligned, writable payload before anyone else can
            // open the segment.
            unsafe { L::init(p, value) }
        };
        let seg =
            match Segment::open_or_create(key, &spec::<T, L>(&lock, mode), &expect::<T, L>(), init)
            {
                Ok(seg) => seg,
                Err(e) => {
                    lock.discard();
                    return Err(e);
                }
            };
        if seg.header().lock_path.as_deref() == lock.lock_path() {
            return Self::new(seg, lock);
        }
        // We opened a segment someone else created: use its lock file, drop ours.
        lock.discard();
        let lock = L::open_lock(&seg)?;
        Self::new(seg, lock)
    }

    /// [`read`](Self::read) without a timeout, panicking on the lock's failure (the
    /// `read() -> T` of the public API).
    #[inline]
    pub(super) fn read_or_panic(&self) -> T {
        // SAFETY: as in `read`.
        unsafe { self.lock.read_or_panic(self.payload) }
    }

    /// A snapshot into `out`, panicking on the lock's failure as [`read_or_panic`](Self::read_or_panic) does.
    pub(super) fn read_into_or_panic(&self, out: &mut core::mem::MaybeUninit<T>) {
        // SAFETY: as in `read`.
        unsafe { self.lock.read_into(self.payload, out, None) }
            .unwrap_or_else(|e| panic!("shmchan: read failed: {e}"));
    }

    /// A snapshot in a new heap allocation (a large `T` never touches the stack).
    pub(super) fn read_boxed(&self) -> Box<T> {
        let mut b = Box::<T>::new_uninit();
        self.read_into_or_panic(&mut b);
        // SAFETY: `read_into` wrote every byte, and any bit pattern is a `T` (`ShmSafe`).
        unsafe { b.assume_init() }
    }

    /// A snapshot written over `out`.
    pub(super) fn read_over(&self, out: &mut T) {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout; every byte is overwritten with a valid `T`
        // (any bit pattern is one), so `*out` stays valid.
        let out = unsafe { &mut *core::ptr::from_mut(out).cast::<core::mem::MaybeUninit<T>>() };
        self.read_into_or_panic(out);
    }

    pub(super) fn read(&self, timeout: Option<Duration>) -> Result<T> {
        // SAFETY: the payload was initialised for `T` by this lock kind (the header's kind,
        // lock kind, fingerprint and payload length were checked) and stays mapped while `self`.
        unsafe { self.lock.read(self.payload, timeout) }
    }

    #[inline]
    pub(super) fn version(&self) -> u64 {
        // SAFETY: as in `read`.
        unsafe { self.lock.version::<T>(self.payload) }
    }

    pub(super) fn wait_changed(&self, seen: u64, timeout: Option<Duration>) -> Result<u64> {
        // A read-only mapping cannot announce its waiter to writers.
        let announce = !self.seg.is_read_only();
        // SAFETY: as in `read`; the mapping is writable when `announce`.
        unsafe {
            self.lock
                .wait_changed::<T>(self.payload, seen, timeout, announce)
        }
    }

    pub(super) fn write<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        // SAFETY: as in `read`; `Shared` (the only caller) holds a writable mapping.
        unsafe { self.lock.write(self.payload, timeout, f) }
    }
}

impl<T: ShmSafe, L: Lock> Drop for Inner<T, L> {
    fn drop(&mut self) {
        let key = self.seg_key;
        if !self.removed {
            // SAFETY: `seg` was not taken (`removed` is false) and is not used after this.
            drop(unsafe { ManuallyDrop::take(&mut self.seg) });
        }
        self.lock.segment_gone(key, self.removed);
    }
}

pub(super) fn with_view<T: ShmSafe, R>(value: &T, f: impl FnOnce(T::View<'_>) -> R) -> R {
    // SAFETY: `value` is a private copy: aligned, valid, and nobody writes it during the call.
    f(unsafe { T::view(value) })
}

pub(super) fn read_guard<T: ShmSafe>(inner: &Inner<T, FcntlLock>) -> Result<FcntlReadGuard<'_, T>> {
    let guard = inner.lock.lock_read(Wait::Forever)?;
    // SAFETY: the payload holds an initialised `T` (checked at open), mapped while `inner`
    // lives, and `guard` holds the read lock.
    Ok(unsafe { FcntlReadGuard::new(inner.payload.cast(), guard) })
}
