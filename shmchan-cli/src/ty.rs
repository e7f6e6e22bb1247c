//! Types as a segment describes them: the owned, checked form of the layout descriptor stored in
//! every shmchan header, which the decoder follows instead of a Rust type.

use shmchan::PrimKind;
#[cfg(test)]
use shmchan::{Layout, TypeDesc};

/// A type as described in a segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// A primitive number.
    Prim(PrimKind),
    /// `[elem; len]`.
    Array {
        /// The element type.
        elem: Box<Ty>,
        /// The element count.
        len: u64,
    },
    /// A struct.
    Struct(StructTy),
}

/// A struct as described in a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct StructTy {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its fields.
    pub fields: Vec<FieldTy>,
}

/// One field of a [`StructTy`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTy {
    /// The field's name.
    pub name: String,
    /// Its offset from the start of the struct.
    pub offset: u64,
    /// Its type.
    pub ty: Ty,
}

impl Ty {
    /// The type from a compile-time layout (the tool's tests compare it with stored layouts).
    #[cfg(test)]
    pub fn from_layout(layout: &Layout) -> Ty {
        Ty::Struct(StructTy {
            name: layout.type_name.to_owned(),
            size: layout.size as u64,
            fields: layout
                .fields
                .iter()
                .map(|f| FieldTy {
                    name: f.name.to_owned(),
                    offset: f.offset as u64,
                    ty: Ty::from_desc(&f.ty),
                })
                .collect(),
        })
    }

    #[cfg(test)]
    fn from_desc(desc: &TypeDesc) -> Ty {
        match desc {
            TypeDesc::Prim(p) => Ty::Prim(*p),
            TypeDesc::Array { elem, len } => Ty::Array {
                elem: Box::new(Ty::from_desc(elem)),
                len: *len as u64,
            },
            TypeDesc::Struct(l) => Ty::from_layout(l),
        }
    }

    /// Size in bytes, `None` on overflow.
    pub fn size(&self) -> Option<u64> {
        match self {
            Ty::Prim(p) => Some(p.size() as u64),
            Ty::Array { elem, len } => elem.size()?.checked_mul(*len),
            Ty::Struct(s) => Some(s.size),
        }
    }

    /// `u64`, `[u32; 4]`, `Inner`.
    pub fn name(&self) -> String {
        match self {
            Ty::Prim(p) => p.name().to_owned(),
            Ty::Array { elem, len } => format!("[{}; {len}]", elem.name()),
            Ty::Struct(s) => s.name.clone(),
        }
    }
}

/// The primitive kind whose Rust name is `name`.
fn prim_named(name: &str) -> Option<PrimKind> {
    (1..=u8::MAX)
        .map_while(PrimKind::from_code)
        .find(|p| p.name() == name)
}

/// The most nested structs/arrays accepted in a stored layout.
const MAX_LAYOUT_DEPTH: usize = 32;

impl Ty {
    /// The type from a layout descriptor decoded from a segment, checking what the codec does not:
    /// every field's declared size is its type's size and lies inside its struct, sizes do not
    /// overflow. An impossible descriptor is an error with the reason.
    ///
    /// A primitive stored at the top level has no fields and is recognised by its name; a
    /// top-level array has one pseudo-field covering it (`shmchan::ARRAY_FIELD`) and decodes as
    /// that field's type. A field-less layout of any other name (written before arrays carried
    /// their element type) decodes as its bytes.
    pub fn from_desc_owned(l: &shmchan::segment::LayoutDesc) -> Result<Ty, String> {
        if let [f] = l.fields.as_slice() {
            if f.name == shmchan::ARRAY_FIELD && f.offset == 0 && f.size == l.size {
                // Through `struct_from`, so the pseudo-field gets the same size and bounds checks
                // as any field; then unwrap it.
                return match Self::struct_from(l, 0)? {
                    Ty::Struct(mut s) => Ok(s.fields.swap_remove(0).ty),
                    other => Ok(other),
                };
            }
        }
        if l.fields.is_empty() && l.size > 0 {
            if let Some(p) = prim_named(&l.type_name).filter(|p| p.size() as u64 == l.size) {
                return Ok(Ty::Prim(p));
            }
            return Ok(Ty::Array {
                elem: Box::new(Ty::Prim(PrimKind::U8)),
                len: l.size,
            });
        }
        Self::struct_from(l, 0)
    }

    fn struct_from(l: &shmchan::segment::LayoutDesc, depth: usize) -> Result<Ty, String> {
        if depth > MAX_LAYOUT_DEPTH {
            return Err(format!(
                "layout nests deeper than {MAX_LAYOUT_DEPTH} levels"
            ));
        }
        let mut fields = Vec::with_capacity(l.fields.len());
        for f in &l.fields {
            let ty = Self::ty_from(&f.ty, depth + 1)?;
            let size = ty.size().ok_or_else(|| {
                format!(
                    "field {}.{}: the size of {} overflows",
                    l.type_name,
                    f.name,
                    ty.name()
                )
            })?;
            if size != f.size {
                return Err(format!(
                    "field {}.{} is declared {} bytes but its type {} has {size}",
                    l.type_name,
                    f.name,
                    f.size,
                    ty.name()
                ));
            }
            if f.offset.checked_add(size).is_none_or(|end| end > l.size) {
                return Err(format!(
                    "field {}.{} at offset {} ({size} bytes) lies outside the {}-byte struct",
                    l.type_name, f.name, f.offset, l.size
                ));
            }
            fields.push(FieldTy {
                name: f.name.clone(),
                offset: f.offset,
                ty,
            });
        }
        Ok(Ty::Struct(StructTy {
            name: l.type_name.clone(),
            size: l.size,
            fields,
        }))
    }

    fn ty_from(t: &shmchan::segment::TypeDescOwned, depth: usize) -> Result<Ty, String> {
        use shmchan::segment::TypeDescOwned as T;
        if depth > MAX_LAYOUT_DEPTH {
            return Err(format!(
                "layout nests deeper than {MAX_LAYOUT_DEPTH} levels"
            ));
        }
        Ok(match t {
            T::Prim(p) => Ty::Prim(*p),
            T::Array { elem, len } => Ty::Array {
                elem: Box::new(Self::ty_from(elem, depth + 1)?),
                len: *len,
            },
            T::Struct(l) => Self::struct_from(l, depth + 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmchan::Field;

    const INNER: Layout = Layout {
        type_name: "Inner",
        size: 8,
        align: 4,
        fields: &[
            Field {
                name: "a",
                offset: 0,
                size: 4,
                ty: TypeDesc::Prim(PrimKind::I32),
            },
            Field {
                name: "b",
                offset: 4,
                size: 4,
                ty: TypeDesc::Prim(PrimKind::F32),
            },
        ],
    };
    const OUTER: Layout = Layout {
        type_name: "Outer",
        size: 24,
        align: 8,
        fields: &[
            Field {
                name: "seq",
                offset: 0,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::U64),
            },
            Field {
                name: "pair",
                offset: 8,
                size: 16,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Struct(&INNER),
                    len: 2,
                },
            },
        ],
    };

    #[test]
    fn stored_layouts_convert_like_compile_time_ones() {
        use shmchan::ShmSafe;
        use shmchan::format::layout::{decode as decode_desc, encode};
        let round = |l: &Layout| Ty::from_desc_owned(&decode_desc(&encode(l)).expect("decodes"));
        assert_eq!(round(&OUTER), Ok(Ty::from_layout(&OUTER)));
        assert_eq!(
            round(&<u64 as ShmSafe>::LAYOUT),
            Ok(Ty::Prim(PrimKind::U64))
        );
        assert_eq!(
            round(&<f32 as ShmSafe>::LAYOUT),
            Ok(Ty::Prim(PrimKind::F32))
        );
        // A top-level array carries its element type in its one pseudo-field.
        assert_eq!(
            round(&<[u16; 3] as ShmSafe>::LAYOUT),
            Ok(Ty::Array {
                elem: Box::new(Ty::Prim(PrimKind::U16)),
                len: 3
            })
        );
        assert_eq!(
            round(&<[[f32; 2]; 2] as ShmSafe>::LAYOUT),
            Ok(Ty::Array {
                elem: Box::new(Ty::Array {
                    elem: Box::new(Ty::Prim(PrimKind::F32)),
                    len: 2
                }),
                len: 2
            })
        );
        // A layout without the pseudo-field (no element type known): its bytes are shown.
        const OPAQUE: Layout = Layout {
            type_name: "array",
            size: 6,
            align: 2,
            fields: &[],
        };
        assert_eq!(
            round(&OPAQUE),
            Ok(Ty::Array {
                elem: Box::new(Ty::Prim(PrimKind::U8)),
                len: 6
            })
        );
    }

    #[test]
    fn stored_layouts_with_lying_field_sizes_are_refused() {
        use shmchan::format::layout::{decode as decode_desc, encode};
        const LIAR: Layout = Layout {
            type_name: "Liar",
            size: 16,
            align: 8,
            fields: &[Field {
                name: "x",
                offset: 0,
                size: 16,
                ty: TypeDesc::Prim(PrimKind::U64),
            }],
        };
        let desc = decode_desc(&encode(&LIAR)).expect("the codec accepts it");
        let err = Ty::from_desc_owned(&desc).expect_err("sizes disagree");
        assert!(err.contains("Liar.x"), "{err}");
    }

    #[test]
    fn a_top_level_array_whose_element_type_lies_about_its_size_is_refused() {
        use shmchan::format::layout::{decode as decode_desc, encode};
        // Claims 16 bytes, but `[u64; 4]` is 32.
        const LIAR: Layout = Layout {
            type_name: "array",
            size: 16,
            align: 8,
            fields: &[Field {
                name: shmchan::ARRAY_FIELD,
                offset: 0,
                size: 16,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Prim(PrimKind::U64),
                    len: 4,
                },
            }],
        };
        let desc = decode_desc(&encode(&LIAR)).expect("the codec accepts it");
        let err = Ty::from_desc_owned(&desc).expect_err("sizes disagree");
        assert!(err.contains("declared 16 bytes"), "{err}");
    }
}
