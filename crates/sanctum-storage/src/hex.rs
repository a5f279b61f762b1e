//! Lower-case hex, the one text encoding for bytes in paths, cursors, etags and manifests.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes `bytes` as lower-case hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 0x0f) as usize]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// The value of each lower-case hex digit; `INVALID` for every other byte.
const VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0xff;

/// Decodes lower-case hex; `None` for odd lengths, upper case or other characters.
pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    // Table lookups into an exact-size buffer, checked once at the end: manifests carry sealed
    // metadata and headers in hex, and a branchy per-digit decode was a sixth of a small get.
    let mut out = Vec::with_capacity(s.len() / 2);
    let mut bad = 0u8;
    for pair in s.chunks_exact(2) {
        let (hi, lo) = (VALUES[pair[0] as usize], VALUES[pair[1] as usize]);
        bad |= hi | lo;
        out.push(hi << 4 | (lo & 0x0f));
    }
    // Valid digits are below 16; INVALID sets the high bit.
    (bad & 0xf0 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::decode(&super::encode(&bytes)).unwrap(), bytes);
        assert_eq!(super::encode(b"\x00\xff"), "00ff");
        for bad in ["0", "0g", "AB", "0 ", "é0", "0é"] {
            assert!(super::decode(bad).is_none(), "{bad:?}");
        }
        // Every ASCII character that is not a lower-case hex digit, in either place.
        for c in (0u8..128).map(char::from) {
            let valid = c.is_ascii_digit() || ('a'..='f').contains(&c);
            assert_eq!(super::decode(&format!("{c}0")).is_some(), valid, "{c:?}");
            assert_eq!(super::decode(&format!("0{c}")).is_some(), valid, "{c:?}");
        }
    }
}
