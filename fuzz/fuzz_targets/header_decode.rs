//! Segment header decoding: any bytes give `Ok` or `Err`, never a panic, an abort or an
//! allocation the input did not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmchan::format::DecodedHeader;
use shmchan::format::header::RawHeader;

fuzz_target!(|data: &[u8]| {
    if let Some(raw) = RawHeader::decode(data) {
        let _ = (
            raw.has_magic(),
            raw.claimed_header_len(),
            raw.remove_when_unused(),
        );
    }
    if let Ok(h) = DecodedHeader::parse(data) {
        // What a decoded header promises its users (the CLI sizes reads and buffers from it).
        assert_eq!(h.payload_off.checked_add(h.payload_len), Some(h.total_len));
        assert!(h.payload_off as usize <= data.len());
        assert!(h.type_align.is_power_of_two());
        assert_eq!((h.layout.size, h.layout.align), (h.type_size, h.type_align));
        let _ = h.layout.fingerprint();
        let _ = format!("{h:?}");
    }
});
