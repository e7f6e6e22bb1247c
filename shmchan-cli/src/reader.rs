//! Reading the payload of a shmchan segment consistently: a value through its lock, a channel's
//! indices and peers. Provisional until the lock and channel layouts are in main.

use serde_json::Value as Json;

use crate::probe::Header;
use crate::sys::SegmentBytes;
use crate::value::{self, Value};

/// A value read from a segment.
pub struct ReadValue {
    /// The decoded value.
    pub value: Value,
    /// How it was read (`consistent snapshot under the seqlock`, ...).
    pub how: String,
}

/// Reads the stored value of a `value` segment.
pub fn read_value(seg: &dyn SegmentBytes, h: &Header) -> Result<ReadValue, String> {
    let ty = h.layout.as_ref().ok_or_else(|| {
        h.layout_error
            .clone()
            .unwrap_or_else(|| "no layout descriptor".to_owned())
    })?;
    let size = usize::try_from(h.type_size).map_err(|_| "type size too large".to_owned())?;
    let bytes = seg
        .read_vec(h.payload_off, size)
        .map_err(|e| format!("reading the value: {e}"))?;
    let value = value::decode(ty, &bytes, 0)?;
    Ok(ReadValue {
        value,
        how: "unlocked snapshot".to_owned(),
    })
}

/// A channel's state as JSON and text lines.
pub fn channel_state(_seg: &dyn SegmentBytes, h: &Header) -> Result<(Json, Vec<String>), String> {
    Ok((
        serde_json::json!({ "capacity": h.capacity }),
        vec![format!("capacity {}", h.capacity)],
    ))
}
