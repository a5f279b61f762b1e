//! `Header::parse` on arbitrary bytes: never panics, and whatever it accepts re-encodes to
//! exactly the bytes it consumed and names an implemented suite.
//!
//! Inputs that start with an odd byte also build a header from the rest, in the suite that bit
//! 1 of that byte names (0x0003 or 0x0001), so both suites' headers are encoded and parsed
//! back on every run, whatever the fuzzer has found so far.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanctum_crypto::{COMMITMENT_LEN, Header, KeyRef, MAX_HEADER_LEN, SALT_LEN, Suite};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::parse(data) {
        assert!(len <= MAX_HEADER_LEN && len <= data.len());
        assert_eq!(header.len(), len);
        assert_eq!(header.suite.id().to_be_bytes(), data[5..7]);
        assert_eq!(Suite::from_id(header.suite.id()), Some(header.suite));
        let encoded = header.encode();
        assert_eq!(&encoded[..], &data[..len]);
        assert_eq!(&header.prefix()[..], &data[..len - 56]);
    }
    if let Some((&first, rest)) = data.split_first()
        && first & 1 == 1
    {
        round_trip(first, rest);
    }
});

/// Builds a header of the suite named by bit 1 of `first` from `rest` (epoch, salt,
/// commitment, then the key id), encodes it and parses it back.
fn round_trip(first: u8, rest: &[u8]) {
    let suite = if first & 2 == 0 {
        Suite::Blake3Aes256Gcm
    } else {
        Suite::Cobblestone256
    };
    let Some((epoch, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let Some((salt, rest)) = rest.split_first_chunk::<SALT_LEN>() else {
        return;
    };
    let Some((commitment, key_id)) = rest.split_first_chunk::<COMMITMENT_LEN>() else {
        return;
    };
    let Ok(key_id) = std::str::from_utf8(key_id) else {
        return;
    };
    let Ok(key_ref) = KeyRef::new(key_id, u32::from_be_bytes(*epoch)) else {
        return;
    };
    let header = Header {
        suite,
        key_ref,
        salt: *salt,
        commitment: *commitment,
    };
    let encoded = header.encode();
    assert_eq!(encoded.len(), header.len());
    assert_eq!(encoded[5..7], suite.id().to_be_bytes());
    let (parsed, len) = Header::parse(&encoded).unwrap();
    assert_eq!(len, encoded.len());
    assert_eq!(parsed, header);
}
