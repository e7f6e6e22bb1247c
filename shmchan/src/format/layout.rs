//! The serialised layout descriptor stored in every segment header, and its owned decoded form
//! ([`LayoutDesc`]), so that tools (the `shmchan` CLI) can decode a value without its Rust type.
//!
//! Encoding (native byte order, like the rest of the header):
//!
//! ```text
//! layout := name:str size:u64 align:u64 nfields:u32 field*
//! field  := name:str offset:u64 size:u64 ty
//! ty     := 'P' prim_code:u8 | 'A' len:u64 ty | 'S' layout
//! str    := len:u16 utf8-bytes
//! ```

use crate::error::{Error, Result};
use crate::shm_safe::{Layout, PrimKind, TypeDesc};

/// Nesting deeper than this is refused when decoding (a hostile descriptor could otherwise
/// recurse without bound).
pub const MAX_DEPTH: usize = 32;

/// A decoded layout: the owned counterpart of [`Layout`].
///
/// # Examples
///
/// ```
/// use shmchan::{Field, Layout, PrimKind, TypeDesc};
/// use shmchan::format::layout::{encode, decode, TypeDescOwned};
///
/// // What `#[derive(ShmSafe)]` generates for `struct Tick { seq: u64, levels: [u32; 2] }`:
/// const TICK: Layout = Layout {
///     type_name: "Tick",
///     size: 16,
///     align: 8,
///     fields: &[
///         Field { name: "seq", offset: 0, size: 8, ty: TypeDesc::Prim(PrimKind::U64) },
///         Field {
///             name: "levels",
///             offset: 8,
///             size: 8,
///             ty: TypeDesc::Array { elem: &TypeDesc::Prim(PrimKind::U32), len: 2 },
///         },
///     ],
/// };
///
/// let desc = decode(&encode(&TICK))?;
/// assert_eq!(desc.type_name, "Tick");
/// assert_eq!(desc.fields[1].name, "levels");
/// assert!(matches!(desc.fields[1].ty, TypeDescOwned::Array { len: 2, .. }));
/// assert_eq!(desc.fingerprint(), shmchan::fingerprint(&TICK));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutDesc {
    /// The type's name.
    pub type_name: String,
    /// `size_of` the type.
    pub size: u64,
    /// `align_of` the type.
    pub align: u64,
    /// The fields in declaration order.
    pub fields: Vec<FieldDesc>,
}

/// One decoded field.
///
/// # Examples
///
/// ```
/// use shmchan::format::layout::{decode, encode};
///
/// let desc = decode(&encode(&<[u16; 3] as shmchan::ShmSafe>::LAYOUT))?;
/// // A top-level array has one pseudo-field covering it, which carries the element type.
/// assert_eq!(desc.fields[0].name, shmchan::ARRAY_FIELD);
/// assert_eq!(desc.fields[0].ty.to_string(), "[u16; 3]");
/// assert!(decode(&encode(&<u64 as shmchan::ShmSafe>::LAYOUT))?.fields.is_empty());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDesc {
    /// The field's name.
    pub name: String,
    /// Byte offset inside the containing struct.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// What it holds.
    pub ty: TypeDescOwned,
}

/// A decoded field type: the owned counterpart of [`TypeDesc`].
///
/// # Examples
///
/// ```
/// use shmchan::PrimKind;
/// use shmchan::format::layout::TypeDescOwned;
///
/// let t = TypeDescOwned::Array { elem: Box::new(TypeDescOwned::Prim(PrimKind::U32)), len: 4 };
/// assert_eq!(t.to_string(), "[u32; 4]");
/// assert_eq!(t.size(), 16);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeDescOwned {
    /// A primitive number.
    Prim(PrimKind),
    /// `[elem; len]`.
    Array {
        /// The element type.
        elem: Box<TypeDescOwned>,
        /// The number of elements.
        len: u64,
    },
    /// A nested struct.
    Struct(LayoutDesc),
}

impl TypeDescOwned {
    /// The size in bytes of a value of this type.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::PrimKind;
    /// use shmchan::format::layout::TypeDescOwned;
    ///
    /// assert_eq!(TypeDescOwned::Prim(PrimKind::F64).size(), 8);
    /// ```
    pub fn size(&self) -> u64 {
        match self {
            TypeDescOwned::Prim(p) => p.size() as u64,
            TypeDescOwned::Array { elem, len } => elem.size().saturating_mul(*len),
            TypeDescOwned::Struct(l) => l.size,
        }
    }
}

impl std::fmt::Display for TypeDescOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeDescOwned::Prim(p) => f.write_str(p.name()),
            TypeDescOwned::Array { elem, len } => write!(f, "[{elem}; {len}]"),
            TypeDescOwned::Struct(l) => f.write_str(&l.type_name),
        }
    }
}

/// Serialises `layout` (see the module docs for the format).
///
/// # Examples
///
/// ```
/// let bytes = shmchan::format::layout::encode(&<u64 as shmchan::ShmSafe>::LAYOUT);
/// assert!(!bytes.is_empty());
/// ```
pub fn encode(layout: &Layout) -> Vec<u8> {
    let mut out = Vec::new();
    encode_layout(&mut out, layout);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names longer than u16::MAX are truncated; Rust identifiers never get close.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_ne_bytes());
    out.extend_from_slice(b);
}

fn encode_layout(out: &mut Vec<u8>, l: &Layout) {
    put_str(out, l.type_name);
    out.extend_from_slice(&(l.size as u64).to_ne_bytes());
    out.extend_from_slice(&(l.align as u64).to_ne_bytes());
    out.extend_from_slice(&(l.fields.len() as u32).to_ne_bytes());
    for f in l.fields {
        put_str(out, f.name);
        out.extend_from_slice(&(f.offset as u64).to_ne_bytes());
        out.extend_from_slice(&(f.size as u64).to_ne_bytes());
        encode_ty(out, &f.ty);
    }
}

fn encode_ty(out: &mut Vec<u8>, ty: &TypeDesc) {
    match ty {
        TypeDesc::Prim(p) => out.extend_from_slice(&[b'P', p.code()]),
        TypeDesc::Array { elem, len } => {
            out.push(b'A');
            out.extend_from_slice(&(*len as u64).to_ne_bytes());
            encode_ty(out, elem);
        }
        TypeDesc::Struct(l) => {
            out.push(b'S');
            encode_layout(out, l);
        }
    }
}

/// Decodes a serialised layout descriptor. Any malformed input (truncated, trailing bytes,
/// unknown tags, invalid UTF-8, nesting deeper than [`MAX_DEPTH`]) is an
/// [`Error::Corrupted`], never a panic.
///
/// # Errors
///
/// [`Error::Corrupted`] describing the first problem found.
///
/// # Examples
///
/// ```
/// use shmchan::format::layout::decode;
///
/// assert!(decode(&[1, 2, 3]).is_err());
/// ```
pub fn decode(bytes: &[u8]) -> Result<LayoutDesc> {
    let mut r = Reader { bytes, pos: 0 };
    let l = r.layout(0)?;
    if r.pos != bytes.len() {
        return Err(corrupted("trailing bytes after the layout descriptor"));
    }
    Ok(l)
}

fn corrupted(what: &str) -> Error {
    Error::Corrupted {
        what: format!("layout descriptor: {what}"),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| corrupted("truncated"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_ne_bytes(b))
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_ne_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_ne_bytes(b))
    }

    fn str(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| corrupted("a name is not UTF-8"))
    }

    fn layout(&mut self, depth: usize) -> Result<LayoutDesc> {
        if depth > MAX_DEPTH {
            return Err(corrupted("nested too deeply"));
        }
        let type_name = self.str()?;
        let size = self.u64()?;
        let align = self.u64()?;
        let n = self.u32()? as usize;
        // Each field takes at least 2 + 8 + 8 + 2 bytes: refuse counts the input cannot hold
        // before reserving memory for them.
        if n > (self.bytes.len() - self.pos) / 20 {
            return Err(corrupted("field count larger than the descriptor"));
        }
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.str()?;
            let offset = self.u64()?;
            let fsize = self.u64()?;
            let ty = self.ty(depth + 1)?;
            if offset.checked_add(fsize).is_none_or(|end| end > size) {
                return Err(corrupted("a field extends past the end of its struct"));
            }
            fields.push(FieldDesc {
                name,
                offset,
                size: fsize,
                ty,
            });
        }
        Ok(LayoutDesc {
            type_name,
            size,
            align,
            fields,
        })
    }

    fn ty(&mut self, depth: usize) -> Result<TypeDescOwned> {
        if depth > MAX_DEPTH {
            return Err(corrupted("nested too deeply"));
        }
        match self.u8()? {
            b'P' => {
                let code = self.u8()?;
                PrimKind::from_code(code)
                    .map(TypeDescOwned::Prim)
                    .ok_or_else(|| corrupted("unknown primitive code"))
            }
            b'A' => {
                let len = self.u64()?;
                let elem = self.ty(depth + 1)?;
                Ok(TypeDescOwned::Array {
                    elem: Box::new(elem),
                    len,
                })
            }
            b'S' => Ok(TypeDescOwned::Struct(self.layout(depth + 1)?)),
            _ => Err(corrupted("unknown type tag")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fingerprint of a decoded layout: the same FNV-1a 64 as `shm_safe::fingerprint`, so a tool
// can tell whether a header's descriptor and fingerprint agree.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }
    fn desc(&mut self, d: &TypeDescOwned) {
        match d {
            TypeDescOwned::Prim(p) => {
                self.bytes(b"P");
                self.bytes(&[p.code()]);
            }
            TypeDescOwned::Array { elem, len } => {
                self.bytes(b"A");
                self.u64(*len);
                self.desc(elem);
            }
            TypeDescOwned::Struct(l) => {
                self.bytes(b"S");
                self.fields(l);
            }
        }
    }
    fn fields(&mut self, l: &LayoutDesc) {
        self.u64(l.size);
        self.u64(l.align);
        self.u64(l.fields.len() as u64);
        for f in &l.fields {
            self.str(&f.name);
            self.u64(f.offset);
            self.u64(f.size);
            self.desc(&f.ty);
        }
    }
}

impl LayoutDesc {
    /// The fingerprint this layout has in a process of this target (same algorithm as
    /// [`crate::fingerprint`]). Compare it with the header's stored fingerprint to check that the
    /// descriptor describes the stored type.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    /// use shmchan::format::layout::{decode, encode};
    ///
    /// let desc = decode(&encode(&<u64 as ShmSafe>::LAYOUT))?;
    /// assert_eq!(desc.fingerprint(), <u64 as ShmSafe>::FINGERPRINT);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(FNV_OFFSET);
        h.bytes(b"shmchan-layout-v1");
        h.bytes(if cfg!(target_endian = "little") {
            b"le"
        } else {
            b"be"
        });
        h.u64(std::mem::size_of::<usize>() as u64);
        h.str(&self.type_name);
        h.fields(self);
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm_safe::{Field, ShmSafe};

    const INNER: Layout = Layout {
        type_name: "Inner",
        size: 4,
        align: 4,
        fields: &[Field {
            name: "x",
            offset: 0,
            size: 4,
            ty: TypeDesc::Prim(PrimKind::F32),
        }],
    };
    const OUTER: Layout = Layout {
        type_name: "Outer",
        size: 16,
        align: 8,
        fields: &[
            Field {
                name: "seq",
                offset: 0,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::U64),
            },
            Field {
                name: "inner",
                offset: 8,
                size: 4,
                ty: TypeDesc::Struct(&INNER),
            },
            Field {
                name: "b",
                offset: 12,
                size: 4,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Prim(PrimKind::U8),
                    len: 4,
                },
            },
        ],
    };

    #[test]
    fn round_trip_keeps_every_field_and_the_fingerprint() {
        let d = decode(&encode(&OUTER)).expect("decodes");
        assert_eq!(d.type_name, "Outer");
        assert_eq!(d.fields.len(), 3);
        assert_eq!(d.fields[1].ty.to_string(), "Inner");
        assert_eq!(d.fields[2].ty.to_string(), "[u8; 4]");
        assert_eq!(d.fingerprint(), crate::fingerprint(&OUTER));
        assert_eq!(
            decode(&encode(&<[u16; 3]>::LAYOUT))
                .expect("array")
                .fingerprint(),
            <[u16; 3]>::FINGERPRINT
        );
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let good = encode(&OUTER);
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "truncated at {n} accepted");
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut b = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % b.len();
            b[i] = (seed >> 32) as u8;
            let _ = decode(&b);
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut b = Vec::new();
        put_str(&mut b, "T");
        b.extend_from_slice(&u64::MAX.to_ne_bytes());
        b.extend_from_slice(&8u64.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        put_str(&mut b, "f");
        b.extend_from_slice(&0u64.to_ne_bytes());
        b.extend_from_slice(&8u64.to_ne_bytes());
        for _ in 0..100 {
            b.push(b'A');
            b.extend_from_slice(&1u64.to_ne_bytes());
        }
        b.extend_from_slice(&[b'P', 4]);
        assert!(decode(&b).is_err());
    }
}
