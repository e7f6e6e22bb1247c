//! The serialised layout descriptor stored in every segment header, so that a reader without
//! the Rust type can decode a value field by field.
//!
//! ```text
//! layout := name:str size:u64 align:u64 nfields:u32 field*
//! field  := name:str offset:u64 size:u64 ty
//! ty     := 'P' prim_code:u8 | 'A' len:u64 ty | 'S' layout
//! str    := len:u16 utf8-bytes
//! ```
//!
//! [`decode`] turns the bytes into an owned [`LayoutDesc`] tree, refusing nesting deeper than
//! [`MAX_DEPTH`], counts that exceed the bytes, and offsets outside the type.

pub use crate::segment::layout_codec::{
    FieldDesc, LayoutDesc, MAX_DEPTH, TypeDescOwned, decode, encode,
};
