//! `Header::parse` on arbitrary bytes: never panics, and whatever it accepts
//! re-encodes to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanctum_crypto::{Header, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::parse(data) {
        assert!(len <= MAX_HEADER_LEN && len <= data.len());
        assert_eq!(header.len(), len);
        let encoded = header.encode();
        assert_eq!(&encoded[..], &data[..len]);
        assert_eq!(&header.prefix()[..], &data[..len - 56]);
    }
});
