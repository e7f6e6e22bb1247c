//! The [`ShmSafe`] marker trait, its primitive impls, and the compile-time layout description
//! ([`Layout`], [`Field`], [`TypeDesc`]) with its [`fingerprint`].

/// A type that may live in memory shared between processes.
///
/// Implementing it promises, for every process built from the same definition on the same target:
///
/// - the type has a fixed size and alignment and the same layout everywhere (`#[repr(C)]` or
///   `#[repr(transparent)]`, or a primitive);
/// - it has **no padding** bytes, so every byte of a value is initialised and copying it as words
///   is defined;
/// - it holds **no pointers or references**: an address means nothing in another process;
/// - **every bit pattern is a valid value**, so a torn read or a hostile process can only ever
///   produce a *wrong* value, never an invalid one (this is why `bool`, `char` and enums are
///   refused);
/// - [`LAYOUT`](ShmSafe::LAYOUT) describes it truthfully.
///
/// Do not implement it by hand: use `#[derive(ShmSafe)]`, which checks all of the above at compile
/// time and generates the typed [views](crate::view).
///
/// # Safety
///
/// An implementation must uphold every point above. [`LAYOUT`](ShmSafe::LAYOUT) must give the real
/// size, alignment and field offsets; [`view`](ShmSafe::view) and [`view_mut`](ShmSafe::view_mut)
/// must only access the bytes of the value they are given, only through raw pointers (atomic
/// reads and writes: `Relaxed` loads and stores, since the bytes may be shared), never by forming a `&Self`/`&mut Self` or a reference to a part of it, and
/// the views they return must be neither `Send` nor `Sync`: a generated `ViewMut` hands out
/// nested mutable views from `&self`, so several views of the same bytes may coexist within one
/// thread (they behave like `Cell`s).
///
/// # Examples
///
/// ```
/// use shmchan::ShmSafe;
///
/// #[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// assert_eq!(<Point as ShmSafe>::LAYOUT.size, 16);
/// assert_eq!(<Point as ShmSafe>::LAYOUT.fields[1].name, "y");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be placed in shared memory: it does not implement `ShmSafe`",
    label = "`{Self}` is not `ShmSafe`",
    note = "shared memory may hold only plain data: integers, `f32`/`f64`, arrays of them, and `#[derive(ShmSafe)]` `#[repr(C)]` structs",
    note = "`bool`, `char` and enums have invalid bit patterns that another process could write: store a `u8`/`u32` and convert when reading",
    note = "pointers, references, `Box`, `Vec`, `String` and `Option<_>` hold addresses that mean nothing in another process: store an index, an offset, or a fixed-size array such as `[u8; 32]`"
)]
pub unsafe trait ShmSafe: Copy + Sized + 'static {
    /// The type's layout: name, size, alignment and every field.
    const LAYOUT: Layout;

    /// How a field of this type is described inside a containing [`Layout`].
    const DESC: TypeDesc;

    /// A 64-bit hash of [`LAYOUT`](ShmSafe::LAYOUT), the target's endianness and pointer width.
    ///
    /// Equal in every process built from the same definition; different when any field's name,
    /// type, offset or order changes. Segments store it and [`open`](crate) checks it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct V1 {
    ///     seq: u64,
    /// }
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct V2 {
    ///     seq: i64, // same size; the type (and the struct name) differ
    /// }
    ///
    /// assert_eq!(V1::FINGERPRINT, shmchan::fingerprint(&V1::LAYOUT));
    /// assert_ne!(V1::FINGERPRINT, V2::FINGERPRINT);
    /// ```
    const FINGERPRINT: u64 = fingerprint(&Self::LAYOUT);

    /// Read access to a value in (possibly shared) memory: for a struct its generated
    /// `<Name>View`, for an array an [`ArrayView`](crate::view::ArrayView), for a primitive the
    /// value itself.
    type View<'a>;

    /// Read-write access to a value in (possibly shared) memory: for a struct its generated
    /// `<Name>ViewMut`, for an array an [`ArrayViewMut`](crate::view::ArrayViewMut), for a
    /// primitive the value itself.
    type ViewMut<'a>;

    /// Builds a read view over the value at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be non-null, aligned for `Self`, and valid for reads of `size_of::<Self>()`
    /// bytes for `'a`, and no one may write those bytes during `'a` except through the same
    /// protocol the caller follows (a lock that excludes writers, or a private copy).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct Point {
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// let p = Point { x: 1.0, y: 2.0 };
    /// // SAFETY: a reference is aligned and valid, and `p` is not written while viewed.
    /// let v = unsafe { Point::view(&p) };
    /// assert_eq!(v.y(), 2.0);
    /// ```
    unsafe fn view<'a>(ptr: *const Self) -> Self::View<'a>;

    /// Builds a read view over the value at `ptr` in memory that another process may write
    /// at the same time (a slot of a channel, read in place): every read through it is a
    /// `Relaxed` atomic access, so such a write gives a wrong but valid value, never undefined
    /// behaviour. [`view`](ShmSafe::view) reads with volatile accesses instead, which is right
    /// for memory nobody writes meanwhile (a reference, a private copy) and wrong for memory
    /// someone may: a volatile read racing a write is a data race.
    ///
    /// The default, for hand-written impls, is [`view`](ShmSafe::view); the derive and the
    /// impls of this crate implement it.
    ///
    /// # Safety
    ///
    /// `ptr` must be non-null, aligned for `Self`, and valid for reads and writes of
    /// `size_of::<Self>()` bytes for `'a` (atomic accesses need memory that may be written:
    /// a mapping, or an `UnsafeCell`, not a shared reference's target); anyone writing those
    /// bytes meanwhile must use atomic accesses or be another process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    /// use std::cell::UnsafeCell;
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct Point {
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// let cell = UnsafeCell::new(Point { x: 1.0, y: 2.0 });
    /// // SAFETY: `cell.get()` is aligned, valid for reads and writes, and written by nobody.
    /// let v = unsafe { Point::view_shared(cell.get()) };
    /// assert_eq!(v.y(), 2.0);
    /// ```
    #[inline]
    unsafe fn view_shared<'a>(ptr: *const Self) -> Self::View<'a> {
        // SAFETY: forwarded from the caller's contract, which is stronger than `view`'s.
        unsafe { Self::view(ptr) }
    }

    /// Builds a read-write view over the value at `ptr`.
    ///
    /// # Safety
    ///
    /// As for [`view`](ShmSafe::view), plus: valid for writes, and no one else may read or write
    /// those bytes during `'a` (the caller holds an exclusive lock or owns the memory).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct Point {
    ///     x: f32,
    ///     y: f32,
    /// }
    ///
    /// let mut p = Point { x: 1.0, y: 2.0 };
    /// // SAFETY: a unique reference is aligned, valid and exclusive while the view is used.
    /// let mut v = unsafe { Point::view_mut(&mut p) };
    /// v.set_x(v.x() + v.y());
    /// assert_eq!(p.x, 3.0);
    /// ```
    unsafe fn view_mut<'a>(ptr: *mut Self) -> Self::ViewMut<'a>;

    /// Writes what a closure did to a mutable view back to the value, for types whose
    /// [`ViewMut`](ShmSafe::ViewMut) is a copy rather than a view (the primitives: their
    /// "view" is the value itself). Struct and array views write through at once, so the
    /// default does nothing. Called by [`Shared::update`](crate::Shared::update).
    ///
    /// # Safety
    ///
    /// As for [`view_mut`](ShmSafe::view_mut): `ptr` aligned, valid for writes, and exclusively
    /// the caller's during the call.
    #[doc(hidden)]
    #[inline]
    unsafe fn commit_view_mut(view: &Self::ViewMut<'_>, ptr: *mut Self) {
        let _ = (view, ptr);
    }
}

/// The layout of a [`ShmSafe`] type, computed at compile time.
///
/// Stored (serialised) in every segment so that tools can decode a value without its Rust type.
///
/// # Examples
///
/// ```
/// use shmchan::{ShmSafe, TypeDesc, PrimKind};
///
/// #[derive(ShmSafe, Clone, Copy)]
/// #[repr(C)]
/// struct Tick {
///     seq: u64,
///     levels: [u32; 4],
/// }
///
/// let layout = <Tick as ShmSafe>::LAYOUT;
/// assert_eq!((layout.size, layout.align), (24, 8));
/// assert_eq!(layout.fields[1].offset, 8);
/// assert!(matches!(layout.fields[1].ty, TypeDesc::Array { len: 4, .. }));
/// assert_eq!(layout.fields[0].ty, TypeDesc::Prim(PrimKind::U64));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The type's name as written in its definition (generic arguments are not expanded).
    pub type_name: &'static str,
    /// `size_of` the type.
    pub size: usize,
    /// `align_of` the type.
    pub align: usize,
    /// The fields in declaration order: empty for primitives; for an array `[T; N]` one
    /// pseudo-field named [`ARRAY_FIELD`] at offset 0 whose type is the array itself.
    pub fields: &'static [Field],
}

/// The name of the single pseudo-field of an array's [`Layout`].
///
/// # Examples
///
/// ```
/// use shmchan::{ShmSafe, TypeDesc, ARRAY_FIELD};
///
/// let layout = <[u32; 4] as ShmSafe>::LAYOUT;
/// assert_eq!(layout.fields.len(), 1);
/// assert_eq!(layout.fields[0].name, ARRAY_FIELD);
/// assert_eq!(layout.fields[0].ty, <[u32; 4] as ShmSafe>::DESC);
/// assert_ne!(<[u32; 4] as ShmSafe>::FINGERPRINT, <[f32; 4] as ShmSafe>::FINGERPRINT);
/// ```
pub const ARRAY_FIELD: &str = "[]";

/// One field of a [`Layout`].
///
/// # Examples
///
/// ```
/// use shmchan::{Field, TypeDesc, PrimKind};
///
/// let f = Field { name: "seq", offset: 0, size: 8, ty: TypeDesc::Prim(PrimKind::U64) };
/// assert_eq!(f.ty.to_string(), "u64");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name; tuple fields are named `"0"`, `"1"`...
    pub name: &'static str,
    /// Byte offset from the start of the containing struct.
    pub offset: usize,
    /// `size_of` the field's type.
    pub size: usize,
    /// What the field holds.
    pub ty: TypeDesc,
}

/// What a field holds: a primitive, an array, or a nested struct.
///
/// # Examples
///
/// ```
/// use shmchan::{ShmSafe, TypeDesc, PrimKind};
///
/// assert_eq!(<[u16; 3] as ShmSafe>::DESC.to_string(), "[u16; 3]");
/// assert_eq!(<f32 as ShmSafe>::DESC, TypeDesc::Prim(PrimKind::F32));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeDesc {
    /// A primitive number.
    Prim(PrimKind),
    /// `[elem; len]`.
    Array {
        /// The element type.
        elem: &'static TypeDesc,
        /// The number of elements.
        len: usize,
    },
    /// A nested `#[derive(ShmSafe)]` struct.
    Struct(&'static Layout),
}

/// The primitive types that are [`ShmSafe`].
///
/// # Examples
///
/// ```
/// use shmchan::PrimKind;
///
/// assert_eq!(PrimKind::I32.size(), 4);
/// assert_eq!(PrimKind::from_code(PrimKind::F64.code()), Some(PrimKind::F64));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrimKind {
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `u128`
    U128,
    /// `usize`
    Usize,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `i128`
    I128,
    /// `isize`
    Isize,
    /// `f32`
    F32,
    /// `f64`
    F64,
}

const ALL_PRIMS: [PrimKind; 14] = [
    PrimKind::U8,
    PrimKind::U16,
    PrimKind::U32,
    PrimKind::U64,
    PrimKind::U128,
    PrimKind::Usize,
    PrimKind::I8,
    PrimKind::I16,
    PrimKind::I32,
    PrimKind::I64,
    PrimKind::I128,
    PrimKind::Isize,
    PrimKind::F32,
    PrimKind::F64,
];

impl PrimKind {
    /// The stable one-byte code used in fingerprints and in the serialised layout of a segment.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::PrimKind::U8.code(), 1);
    /// ```
    pub const fn code(self) -> u8 {
        match self {
            PrimKind::U8 => 1,
            PrimKind::U16 => 2,
            PrimKind::U32 => 3,
            PrimKind::U64 => 4,
            PrimKind::U128 => 5,
            PrimKind::Usize => 6,
            PrimKind::I8 => 7,
            PrimKind::I16 => 8,
            PrimKind::I32 => 9,
            PrimKind::I64 => 10,
            PrimKind::I128 => 11,
            PrimKind::Isize => 12,
            PrimKind::F32 => 13,
            PrimKind::F64 => 14,
        }
    }

    /// The kind whose [`code`](PrimKind::code) is `code`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::PrimKind;
    ///
    /// assert_eq!(PrimKind::from_code(14), Some(PrimKind::F64));
    /// assert_eq!(PrimKind::from_code(0), None);
    /// ```
    pub const fn from_code(code: u8) -> Option<PrimKind> {
        if code >= 1 && code as usize <= ALL_PRIMS.len() {
            Some(ALL_PRIMS[code as usize - 1])
        } else {
            None
        }
    }

    /// The Rust name of the type (`"u64"`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::PrimKind::I16.name(), "i16");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            PrimKind::U8 => "u8",
            PrimKind::U16 => "u16",
            PrimKind::U32 => "u32",
            PrimKind::U64 => "u64",
            PrimKind::U128 => "u128",
            PrimKind::Usize => "usize",
            PrimKind::I8 => "i8",
            PrimKind::I16 => "i16",
            PrimKind::I32 => "i32",
            PrimKind::I64 => "i64",
            PrimKind::I128 => "i128",
            PrimKind::Isize => "isize",
            PrimKind::F32 => "f32",
            PrimKind::F64 => "f64",
        }
    }

    /// The size in bytes on this target.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::PrimKind::Usize.size(), size_of::<usize>());
    /// ```
    pub const fn size(self) -> usize {
        match self {
            PrimKind::U8 | PrimKind::I8 => 1,
            PrimKind::U16 | PrimKind::I16 => 2,
            PrimKind::U32 | PrimKind::I32 | PrimKind::F32 => 4,
            PrimKind::U64 | PrimKind::I64 | PrimKind::F64 => 8,
            PrimKind::U128 | PrimKind::I128 => 16,
            PrimKind::Usize | PrimKind::Isize => core::mem::size_of::<usize>(),
        }
    }
}

impl core::fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TypeDesc::Prim(p) => f.write_str(p.name()),
            TypeDesc::Array { elem, len } => write!(f, "[{elem}; {len}]"),
            TypeDesc::Struct(layout) => f.write_str(layout.type_name),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fingerprint: FNV-1a 64 over a canonical encoding of the layout, evaluated at compile time.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

const fn fnv_u64(h: u64, v: u64) -> u64 {
    fnv_bytes(h, &v.to_le_bytes())
}

/// Strings are length-prefixed so that `("ab", "c")` and `("a", "bc")` hash differently.
const fn fnv_str(h: u64, s: &str) -> u64 {
    fnv_bytes(fnv_u64(h, s.len() as u64), s.as_bytes())
}

const fn fnv_desc(mut h: u64, desc: &TypeDesc) -> u64 {
    match desc {
        TypeDesc::Prim(p) => fnv_bytes(fnv_bytes(h, b"P"), &[p.code()]),
        TypeDesc::Array { elem, len } => {
            h = fnv_u64(fnv_bytes(h, b"A"), *len as u64);
            fnv_desc(h, elem)
        }
        // Nested types are hashed by structure only: renaming a nested type keeps segments
        // compatible, changing any of its fields does not.
        TypeDesc::Struct(layout) => fnv_fields(fnv_bytes(h, b"S"), layout),
    }
}

const fn fnv_fields(mut h: u64, layout: &Layout) -> u64 {
    h = fnv_u64(h, layout.size as u64);
    h = fnv_u64(h, layout.align as u64);
    h = fnv_u64(h, layout.fields.len() as u64);
    let mut i = 0;
    while i < layout.fields.len() {
        let f = &layout.fields[i];
        h = fnv_str(h, f.name);
        h = fnv_u64(h, f.offset as u64);
        h = fnv_u64(h, f.size as u64);
        h = fnv_desc(h, &f.ty);
        i += 1;
    }
    h
}

/// The fingerprint of a layout: FNV-1a 64 over the top-level type name, the target's endianness
/// and pointer width, and, recursively, every field's name, offset, size and type.
///
/// This is what [`ShmSafe::FINGERPRINT`] is by default; it is a `const fn` so the value is known
/// at compile time.
///
/// # Examples
///
/// ```
/// use shmchan::{fingerprint, Layout, Field, TypeDesc, PrimKind};
///
/// const A: Layout = Layout {
///     type_name: "A",
///     size: 8,
///     align: 8,
///     fields: &[Field { name: "x", offset: 0, size: 8, ty: TypeDesc::Prim(PrimKind::U64) }],
/// };
/// const B: Layout = Layout {
///     fields: &[Field { name: "y", offset: 0, size: 8, ty: TypeDesc::Prim(PrimKind::U64) }],
///     ..A
/// };
/// assert_ne!(fingerprint(&A), fingerprint(&B));
/// ```
pub const fn fingerprint(layout: &Layout) -> u64 {
    let mut h = FNV_OFFSET;
    h = fnv_bytes(h, b"shmchan-layout-v1");
    h = fnv_bytes(
        h,
        if cfg!(target_endian = "little") {
            b"le"
        } else {
            b"be"
        },
    );
    h = fnv_u64(h, core::mem::size_of::<usize>() as u64);
    h = fnv_str(h, layout.type_name);
    fnv_fields(h, layout)
}

mod impls;
