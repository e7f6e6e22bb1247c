//! Items the derive macro expands to. Not public API: names and signatures may change in any
//! release.

pub use crate::shm_safe::{Field, Layout, PrimKind, ShmSafe, TypeDesc};
pub use crate::sync::atomic_value::load_value;
pub use crate::view::{ArrayView, ArrayViewMut};
pub use core::marker::PhantomData;
pub use core::mem::{align_of, offset_of, size_of};
pub use core::option::Option;
pub use core::ptr;
// Through these, not `::core::...`: a 2015-edition crate has no `::core` unless it declares
// `extern crate core`.
pub use core::clone::Clone;
pub use core::fmt;
pub use core::marker::Copy;
pub use core::panic;

/// A message built at compile time, for `const` layout checks whose panic text must name a
/// number of bytes (`panic!` in a constant can only format `&str`s).
pub struct ConstMessage {
    buf: [u8; Self::CAPACITY],
    len: usize,
}

impl ConstMessage {
    const CAPACITY: usize = 512;

    /// An empty message.
    pub const fn new() -> Self {
        ConstMessage {
            buf: [0; Self::CAPACITY],
            len: 0,
        }
    }

    /// Appends `s` whole, or nothing if it does not fit (never cuts a UTF-8 sequence).
    pub const fn str(mut self, s: &str) -> Self {
        let bytes = s.as_bytes();
        if self.len + bytes.len() > Self::CAPACITY {
            return self;
        }
        let mut i = 0;
        while i < bytes.len() {
            self.buf[self.len + i] = bytes[i];
            i += 1;
        }
        self.len += bytes.len();
        self
    }

    /// Appends `n` in decimal.
    pub const fn num(self, mut n: usize) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        match core::str::from_utf8(digits.split_at(start).1) {
            Ok(s) => self.str(s),
            Err(_) => self,
        }
    }

    /// The text so far.
    pub const fn as_str(&self) -> &str {
        match core::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "layout error",
        }
    }
}

impl Default for ConstMessage {
    fn default() -> Self {
        Self::new()
    }
}

const fn bytes_of(m: ConstMessage, n: usize) -> ConstMessage {
    m.num(n).str(if n == 1 { " byte" } else { " bytes" })
}

/// "3 bytes of padding after field `flag`; add `_pad: [u8; 3]` after it".
pub const fn padding_after(
    type_name: &str,
    field: &str,
    bytes: usize,
    trailing: bool,
) -> ConstMessage {
    let m = bytes_of(ConstMessage::new(), bytes);
    let m = if trailing {
        m.str(" of trailing padding after the last field `")
            .str(field)
            .str("` of `")
            .str(type_name)
            .str("`; add `_pad: [u8; ")
            .num(bytes)
            .str("]` at the end of the struct")
    } else {
        m.str(" of padding after field `")
            .str(field)
            .str("` of `")
            .str(type_name)
            .str("`; add `_pad: [u8; ")
            .num(bytes)
            .str("]` after it, or order the fields from largest to smallest alignment")
    };
    m.str(" (padding bytes are uninitialised and differ between processes)")
}

/// "N bytes of padding before field `x`".
pub const fn padding_before(field: &str, bytes: usize) -> ConstMessage {
    bytes_of(ConstMessage::new(), bytes)
        .str(" of padding before the first field `")
        .str(field)
        .str("`; add `_pad: [u8; ")
        .num(bytes)
        .str("]` before it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_in_decimal() {
        let m = ConstMessage::new()
            .num(0)
            .str(" ")
            .num(7)
            .str(" ")
            .num(usize::MAX);
        assert_eq!(m.as_str(), format!("0 7 {}", usize::MAX));
    }

    #[test]
    fn padding_messages_name_bytes_field_and_fix() {
        assert_eq!(
            padding_after("Order", "flag", 3, false).as_str(),
            "3 bytes of padding after field `flag` of `Order`; add `_pad: [u8; 3]` after it, \
             or order the fields from largest to smallest alignment (padding bytes are \
             uninitialised and differ between processes)"
        );
        assert!(
            padding_after("Order", "side", 1, true)
                .as_str()
                .starts_with("1 byte of trailing padding after the last field `side`")
        );
        assert_eq!(
            padding_before("x", 4).as_str(),
            "4 bytes of padding before the first field `x`; add `_pad: [u8; 4]` before it"
        );
    }

    #[test]
    fn overlong_text_is_dropped_whole_not_cut() {
        let long = "é".repeat(ConstMessage::CAPACITY);
        let m = ConstMessage::new().str("a").str(&long).str("b");
        assert_eq!(m.as_str(), "ab");
    }
}
