//! Layout descriptor decoding (the serialised `LAYOUT` a segment stores so that tools can decode
//! fields without the Rust type): any bytes give `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmchan::format::layout as layout_codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(desc) = layout_codec::decode(data) {
        // Everything a reader of a decoded descriptor does: hash it, print it, walk its fields.
        let _ = desc.fingerprint();
        let _ = format!("{desc:?}");
        for field in &desc.fields {
            let _ = (
                field.ty.to_string(),
                field.ty.size(),
                field.offset,
                field.size,
            );
        }
    }
});
