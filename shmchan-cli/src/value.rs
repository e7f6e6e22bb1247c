//! Decoding a value from a copy of its bytes, driven by a layout read from the segment (not by a
//! Rust type). Every offset and size is checked against the copy: a hostile layout yields an
//! error, never a panic or an out-of-bounds read.

use serde_json::{Value as Json, json};
use shmchan::PrimKind;

use crate::ty::Ty;

/// The most nested structs/arrays followed; deeper layouts are reported as corrupted.
const MAX_DEPTH: usize = 32;
/// The most leaf values decoded for one value (guards against `[[u8; 0]; huge]`-style layouts).
const MAX_LEAVES: usize = 1 << 20;

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, already formatted (integers exactly, floats with Rust's shortest round-trip).
    Prim(PrimKind, Prim),
    /// Array elements.
    Array(Vec<Value>),
    /// Struct fields in order, with their type names.
    Struct(Vec<(String, String, Value)>),
}

/// A primitive value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prim {
    /// Any unsigned integer.
    U(u128),
    /// Any signed integer.
    I(i128),
    /// `f32` or `f64`.
    F(f64),
}

impl std::fmt::Display for Prim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prim::U(v) => write!(f, "{v}"),
            Prim::I(v) => write!(f, "{v}"),
            Prim::F(v) => write!(f, "{v:?}"),
        }
    }
}

/// Decodes `ty` from `bytes[at..]`.
pub fn decode(ty: &Ty, bytes: &[u8], at: u64) -> Result<Value, String> {
    let mut leaves = 0;
    decode_at(ty, bytes, at, 0, &mut leaves)
}

fn decode_at(
    ty: &Ty,
    bytes: &[u8],
    at: u64,
    depth: usize,
    leaves: &mut usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("layout nests deeper than {MAX_DEPTH} levels"));
    }
    let size = ty
        .size()
        .ok_or_else(|| format!("size of {} overflows", ty.name()))?;
    let end = at
        .checked_add(size)
        .filter(|&e| e <= bytes.len() as u64)
        .ok_or_else(|| {
            format!(
                "{} at offset {at} ({size} bytes) ends past the value ({} bytes)",
                ty.name(),
                bytes.len()
            )
        })?;
    match ty {
        Ty::Prim(p) => {
            *leaves += 1;
            if *leaves > MAX_LEAVES {
                return Err(format!("more than {MAX_LEAVES} values"));
            }
            Ok(Value::Prim(
                *p,
                read_prim(*p, &bytes[at as usize..end as usize]),
            ))
        }
        Ty::Array { elem, len } => {
            let elem_size = elem.size().unwrap_or(0);
            let mut out = Vec::new();
            for i in 0..*len {
                if elem_size == 0 {
                    *leaves += 1;
                    if *leaves > MAX_LEAVES {
                        return Err(format!("more than {MAX_LEAVES} values"));
                    }
                }
                out.push(decode_at(
                    elem,
                    bytes,
                    at + i * elem_size,
                    depth + 1,
                    leaves,
                )?);
            }
            Ok(Value::Array(out))
        }
        Ty::Struct(s) => {
            let mut out = Vec::with_capacity(s.fields.len());
            for f in &s.fields {
                let fsize = f.ty.size().unwrap_or(u64::MAX);
                if f.offset.checked_add(fsize).is_none_or(|e| e > s.size) {
                    return Err(format!(
                        "field {}.{} (offset {}, {} bytes) lies outside the {}-byte struct",
                        s.name, f.name, f.offset, fsize, s.size
                    ));
                }
                let v = decode_at(&f.ty, bytes, at + f.offset, depth + 1, leaves)?;
                out.push((f.name.clone(), f.ty.name(), v));
            }
            Ok(Value::Struct(out))
        }
    }
}

fn read_prim(p: PrimKind, b: &[u8]) -> Prim {
    // `b` has exactly `p.size()` bytes (checked by the caller); values are in native byte order,
    // as the fingerprint records the writer's endianness.
    let mut buf = [0u8; 16];
    buf[..b.len()].copy_from_slice(b);
    let u = |n: usize| -> u128 {
        let mut x = [0u8; 16];
        x[..n].copy_from_slice(&buf[..n]);
        if cfg!(target_endian = "big") {
            u128::from_be_bytes(x) >> (8 * (16 - n))
        } else {
            u128::from_le_bytes(x)
        }
    };
    let i = |n: usize| -> i128 {
        let shift = 128 - 8 * n as u32;
        ((u(n) << shift) as i128) >> shift
    };
    match p {
        PrimKind::U8
        | PrimKind::U16
        | PrimKind::U32
        | PrimKind::U64
        | PrimKind::U128
        | PrimKind::Usize => Prim::U(u(p.size())),
        PrimKind::F32 => Prim::F(f64::from(f32::from_bits(u(4) as u32))),
        PrimKind::F64 => Prim::F(f64::from_bits(u(8) as u64)),
        _ => Prim::I(i(p.size())),
    }
}

/// A top-level primitive or array has no field name: call it `value`.
fn or_value(path: String) -> String {
    if path.is_empty() {
        "value".to_owned()
    } else {
        path
    }
}

/// One line per leaf: (`path`, `type`, `value`); arrays of primitives stay on one line.
pub fn flatten(v: &Value, ty: &Ty) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    flatten_into(v, String::new(), ty.name(), &mut out);
    out
}

/// Arrays of primitives longer than this are shown abridged in tables (JSON has them all).
const INLINE_MAX: usize = 16;

fn flatten_into(v: &Value, path: String, ty: String, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Prim(_, p) => out.push((or_value(path), ty, p.to_string())),
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::Prim(..))) => {
            let shown: Vec<String> = items
                .iter()
                .take(INLINE_MAX)
                .map(|i| match i {
                    Value::Prim(_, p) => p.to_string(),
                    _ => String::new(),
                })
                .collect();
            let more = items.len().saturating_sub(INLINE_MAX);
            let tail = if more > 0 {
                format!(", … {more} more")
            } else {
                String::new()
            };
            let list = format!("[{}{tail}]", shown.join(", "));
            let shown = match as_text(items) {
                Some(text) => format!("{text:?} {list}"),
                None => list,
            };
            out.push((or_value(path), ty, shown));
        }
        Value::Array(items) => {
            let elem_ty = ty
                .strip_prefix('[')
                .and_then(|t| t.rsplit_once(';'))
                .map(|(e, _)| e.to_owned())
                .unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                flatten_into(item, format!("{path}[{i}]"), elem_ty.clone(), out);
            }
        }
        Value::Struct(fields) => {
            for (name, fty, fv) in fields {
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                flatten_into(fv, p, fty.clone(), out);
            }
        }
    }
}

/// The text a `[u8; N]` holds, if it holds text: printable UTF-8 up to the first NUL (at least
/// one character), and only NULs after it (a C-style string buffer).
fn as_text(items: &[Value]) -> Option<String> {
    let bytes: Vec<u8> = items
        .iter()
        .map(|i| match i {
            Value::Prim(PrimKind::U8, Prim::U(b)) => u8::try_from(*b).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (text, rest) = bytes.split_at(end);
    let text = std::str::from_utf8(text).ok()?;
    let printable = !text.is_empty() && text.chars().all(|c| !c.is_control() || c == '\t');
    (printable && rest.iter().all(|&b| b == 0)).then(|| text.to_owned())
}

/// The value as JSON: structs as objects (field order kept), arrays as arrays, 128-bit integers
/// and non-finite floats as strings (JSON numbers cannot hold them exactly).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Prim(_, Prim::U(x)) => {
            u64::try_from(*x).map_or_else(|_| json!(x.to_string()), |x| json!(x))
        }
        Value::Prim(_, Prim::I(x)) => {
            i64::try_from(*x).map_or_else(|_| json!(x.to_string()), |x| json!(x))
        }
        Value::Prim(PrimKind::F32, Prim::F(x)) if x.is_finite() => json!(*x as f32),
        Value::Prim(_, Prim::F(x)) if x.is_finite() => json!(x),
        Value::Prim(_, Prim::F(x)) => json!(format!("{x:?}")),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Struct(fields) => Json::Object(
            fields
                .iter()
                .map(|(n, _, v)| (n.clone(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ty::{FieldTy, StructTy};
    use shmchan::{Field, Layout, TypeDesc};

    // Written out by hand (rather than derived) so the decoder is tested on its own:
    // struct Inner { a: i16, b: [u8; 2], c: f32 }
    // struct Outer { seq: u64, price: f64, levels: [u32; 4], inner: Inner, pair: [Inner; 2], big: i128 }
    const INNER: Layout = Layout {
        type_name: "Inner",
        size: 8,
        align: 4,
        fields: &[
            Field {
                name: "a",
                offset: 0,
                size: 2,
                ty: TypeDesc::Prim(PrimKind::I16),
            },
            Field {
                name: "b",
                offset: 2,
                size: 2,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Prim(PrimKind::U8),
                    len: 2,
                },
            },
            Field {
                name: "c",
                offset: 4,
                size: 4,
                ty: TypeDesc::Prim(PrimKind::F32),
            },
        ],
    };
    const OUTER: Layout = Layout {
        type_name: "Outer",
        size: 80,
        align: 16,
        fields: &[
            Field {
                name: "seq",
                offset: 0,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::U64),
            },
            Field {
                name: "price",
                offset: 8,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::F64),
            },
            Field {
                name: "levels",
                offset: 16,
                size: 16,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Prim(PrimKind::U32),
                    len: 4,
                },
            },
            Field {
                name: "inner",
                offset: 32,
                size: 8,
                ty: TypeDesc::Struct(&INNER),
            },
            Field {
                name: "pair",
                offset: 40,
                size: 16,
                ty: TypeDesc::Array {
                    elem: &TypeDesc::Struct(&INNER),
                    len: 2,
                },
            },
            Field {
                name: "_pad",
                offset: 56,
                size: 8,
                ty: TypeDesc::Prim(PrimKind::U64),
            },
            Field {
                name: "big",
                offset: 64,
                size: 16,
                ty: TypeDesc::Prim(PrimKind::I128),
            },
        ],
    };

    fn outer_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(7u64.to_ne_bytes());
        b.extend(1.5f64.to_ne_bytes());
        for l in [1u32, 2, 3, 4] {
            b.extend(l.to_ne_bytes());
        }
        for (a, bb, c) in [
            (-3i16, [9u8, 8], 0.25f32),
            (1, [0, 0], 0.0),
            (2, [0, 0], 0.0),
        ] {
            b.extend(a.to_ne_bytes());
            b.extend(bb);
            b.extend(c.to_ne_bytes());
        }
        b.extend(0u64.to_ne_bytes());
        b.extend((-(1i128 << 100)).to_ne_bytes());
        assert_eq!(b.len(), 80);
        b
    }

    #[test]
    fn decodes_nested_structs_and_arrays_by_layout() {
        let ty = Ty::from_layout(&OUTER);
        let decoded = decode(&ty, &outer_bytes(), 0).expect("decode");
        let lines = flatten(&decoded, &ty);
        let find = |p: &str| {
            lines
                .iter()
                .find(|l| l.0 == p)
                .map(|l| (l.1.as_str(), l.2.as_str()))
        };
        assert_eq!(find("seq"), Some(("u64", "7")));
        assert_eq!(find("price"), Some(("f64", "1.5")));
        assert_eq!(find("levels"), Some(("[u32; 4]", "[1, 2, 3, 4]")));
        assert_eq!(find("inner.a"), Some(("i16", "-3")));
        assert_eq!(find("inner.b"), Some(("[u8; 2]", "[9, 8]")));
        assert_eq!(find("inner.c"), Some(("f32", "0.25")));
        assert_eq!(find("pair[1].a"), Some(("i16", "2")));
        let j = to_json(&decoded);
        assert_eq!(j["inner"]["a"], json!(-3));
        assert_eq!(j["levels"][3], json!(4));
        assert_eq!(j["big"], json!((-(1i128 << 100)).to_string()));
    }

    #[test]
    fn impossible_offsets_are_errors_not_panics() {
        let bad = Ty::Struct(StructTy {
            name: "Bad".into(),
            size: 8,
            fields: vec![FieldTy {
                name: "x".into(),
                offset: u64::MAX - 2,
                ty: Ty::Prim(PrimKind::U64),
            }],
        });
        assert!(decode(&bad, &[0; 8], 0).is_err());
        let short = Ty::Prim(PrimKind::U64);
        assert!(decode(&short, &[0; 4], 0).is_err());
        let huge = Ty::Array {
            elem: Box::new(Ty::Prim(PrimKind::U64)),
            len: u64::MAX,
        };
        assert!(decode(&huge, &[0; 64], 0).is_err());
        let zero_sized = Ty::Array {
            elem: Box::new(Ty::Array {
                elem: Box::new(Ty::Prim(PrimKind::U8)),
                len: 0,
            }),
            len: u64::MAX,
        };
        assert!(decode(&zero_sized, &[0; 8], 0).is_err());
        let mut deep = Ty::Prim(PrimKind::U8);
        for _ in 0..100 {
            deep = Ty::Array {
                elem: Box::new(deep),
                len: 1,
            };
        }
        assert!(decode(&deep, &[0; 8], 0).is_err());
    }

    #[test]
    fn byte_arrays_holding_text_show_the_text_too() {
        let bytes = |b: &[u8]| -> Vec<Value> {
            b.iter()
                .map(|&x| Value::Prim(PrimKind::U8, Prim::U(u128::from(x))))
                .collect()
        };
        let ty = Ty::Array {
            elem: Box::new(Ty::Prim(PrimKind::U8)),
            len: 8,
        };
        let line = |b: &[u8]| flatten(&Value::Array(bytes(b)), &ty)[0].2.clone();
        assert_eq!(
            line(b"EURUSD\0\0"),
            "\"EURUSD\" [69, 85, 82, 85, 83, 68, 0, 0]"
        );
        // Not text: binary bytes, nothing before the NUL, or garbage after it.
        assert_eq!(line(&[1, 2, 0, 0, 0, 0, 0, 0]), "[1, 2, 0, 0, 0, 0, 0, 0]");
        assert_eq!(line(&[0; 8]), "[0, 0, 0, 0, 0, 0, 0, 0]");
        assert!(!line(b"ab\0c\0\0\0\0").starts_with('"'));
        assert!(!line(&[0xff, 0xfe, 0, 0, 0, 0, 0, 0]).starts_with('"'));
    }

    #[test]
    fn a_top_level_primitive_is_one_line_named_value() {
        let v = decode(&Ty::Prim(PrimKind::U64), &7u64.to_ne_bytes(), 0).expect("decode");
        assert_eq!(
            flatten(&v, &Ty::Prim(PrimKind::U64)),
            vec![("value".into(), "u64".into(), "7".into())]
        );
    }
}
