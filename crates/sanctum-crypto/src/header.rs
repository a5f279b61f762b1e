//! The envelope header: what sits in front of the chunks.

use crate::{COMMITMENT_LEN, CryptoError, SALT_LEN};

/// The four magic bytes that open every envelope.
pub const MAGIC: [u8; 4] = *b"SNC1";
/// The only header version this build reads and writes.
pub const VERSION: u8 = 1;
/// Suite 0x0001: Cobblestone-256 (AES-256-GCM, HKDF-Expand-SHA-512,
/// 16 KiB chunks, 24-byte salt, 32-byte commitment).
pub const SUITE_COBBLESTONE_256: u16 = 0x0001;
/// Suite 0x0003: the chunks of Cobblestone-256 with the per-message key,
/// base nonce and commitment derived by BLAKE3 (`derive_key` mode) instead
/// of HKDF-SHA-512. (0x0002 is reserved.)
pub const SUITE_BLAKE3_AES_256_GCM: u16 = 0x0003;

/// The cipher suite of a message: how its per-message key, base nonce and
/// commitment are derived. Both suites use the same header, chunking,
/// AES-256-GCM and 32-byte commitment; they differ only in the KDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Suite {
    /// 0x0001: C2SP chunked-encryption Cobblestone-256 (HKDF-Expand-SHA-512),
    /// byte for byte after the header. Its KDF is a NIST-approved one, and any
    /// C2SP reader can open it. The default for new messages.
    #[default]
    Cobblestone256,
    /// 0x0003: BLAKE3 `derive_key` as the KDF. About four times cheaper per
    /// message than HKDF-SHA-512 on CPUs without SHA-512 instructions (about
    /// 1.5 µs here), but its security argument rests on BLAKE3's own analysis,
    /// it is not FIPS-approved, and no other C2SP reader opens it. By choice
    /// only (`[encryption] suite = "blake3-chunked"` in sanctum-storage).
    Blake3Aes256Gcm,
}

impl Suite {
    /// The suite's id in the header.
    pub const fn id(self) -> u16 {
        match self {
            Suite::Cobblestone256 => SUITE_COBBLESTONE_256,
            Suite::Blake3Aes256Gcm => SUITE_BLAKE3_AES_256_GCM,
        }
    }

    /// The suite with header id `id`, if this build implements it.
    pub const fn from_id(id: u16) -> Option<Suite> {
        match id {
            SUITE_COBBLESTONE_256 => Some(Suite::Cobblestone256),
            SUITE_BLAKE3_AES_256_GCM => Some(Suite::Blake3Aes256Gcm),
            _ => None,
        }
    }
}
/// Upper bound on the `header_len` field accepted by the parser.
pub const MAX_HEADER_LEN: usize = 512;
/// Longest key id (bytes of `[a-z0-9-]`).
pub const MAX_KEY_ID_LEN: usize = 64;
/// Bytes of the fixed fields before the key id:
/// magic 4 + version 1 + suite 2 + flags 1 + header_len 2 + key_id_len 1.
const FIXED_PREFIX_LEN: usize = 11;
/// Bytes of the fixed fields after the key id: epoch 4 + salt 24 + commitment 32.
const FIXED_SUFFIX_LEN: usize = 4 + SALT_LEN + COMMITMENT_LEN;
/// Header length for a key id of `n` bytes.
const fn header_len_for(key_id_len: usize) -> usize {
    FIXED_PREFIX_LEN + key_id_len + FIXED_SUFFIX_LEN
}
/// Shortest valid header (a one-byte key id): 72 bytes.
pub const MIN_HEADER_LEN: usize = header_len_for(1);

/// Which data key a message was encrypted under: the namespace data key id
/// and its epoch.
///
/// The header carries it in the clear. It is a *claim* by the stored bytes:
/// the caller must check it against the tenant and namespace it trusts
/// before looking a key up, and never let a header select a key on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    /// Key id: 1..=64 bytes of `[a-z0-9-]`.
    pub key_id: String,
    /// Key epoch (rotation generation).
    pub epoch: u32,
}

impl KeyRef {
    /// Builds a key reference, checking the key id rules.
    pub fn new(key_id: impl Into<String>, epoch: u32) -> Result<KeyRef, CryptoError> {
        let key_ref = KeyRef {
            key_id: key_id.into(),
            epoch,
        };
        key_ref.validate()?;
        Ok(key_ref)
    }

    /// Checks that the key id is 1..=64 bytes of `[a-z0-9-]`.
    pub fn validate(&self) -> Result<(), CryptoError> {
        validate_key_id(self.key_id.as_bytes())
    }
}

fn validate_key_id(id: &[u8]) -> Result<(), CryptoError> {
    if id.is_empty() {
        return Err(CryptoError::Header("empty key id"));
    }
    if id.len() > MAX_KEY_ID_LEN {
        return Err(CryptoError::Header("key id too long"));
    }
    if !id
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(CryptoError::Header(
            "key id has a character outside [a-z0-9-]",
        ));
    }
    Ok(())
}

/// A parsed envelope header (flags 0).
///
/// Layout, all integers big-endian:
///
/// ```text
/// magic "SNC1" (4) | version = 1 (1) | suite (2) | flags = 0 (1)
/// | header_len (2) | key_id_len (1) | key_id (1..=64) | epoch (4)
/// | salt (24) | commitment (32)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The cipher suite (which KDF derived the message key).
    pub suite: Suite,
    /// The data key the message claims to be encrypted under.
    pub key_ref: KeyRef,
    /// The per-message random salt.
    pub salt: [u8; SALT_LEN],
    /// The key commitment (also authenticates the header prefix).
    pub commitment: [u8; COMMITMENT_LEN],
}

/// A small big-endian reader that never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        let end = self.pos.checked_add(n).ok_or(CryptoError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(CryptoError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, CryptoError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, CryptoError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

#[allow(clippy::len_without_is_empty)] // a header is never empty
impl Header {
    /// Parses a header from the front of `buf` (which may hold more bytes,
    /// e.g. the chunks). Returns the header and its length in bytes, which is
    /// where chunk 0 starts.
    ///
    /// Parsing is strict and bounded: it reads at most [`MAX_HEADER_LEN`]
    /// bytes, checks every field in order, and returns
    /// [`CryptoError::Truncated`] when `buf` ends before the header does.
    /// It never panics.
    pub fn parse(buf: &[u8]) -> Result<(Header, usize), CryptoError> {
        let mut r = Reader { buf, pos: 0 };
        if r.array::<4>()? != MAGIC {
            return Err(CryptoError::Header("bad magic"));
        }
        if r.u8()? != VERSION {
            return Err(CryptoError::Header("unsupported version"));
        }
        let id = r.u16()?;
        let suite = Suite::from_id(id).ok_or(CryptoError::UnsupportedSuite(id))?;
        let flags = r.u8()?;
        if flags != 0 {
            return Err(CryptoError::UnknownFlags(flags));
        }
        let header_len = usize::from(r.u16()?);
        if header_len > MAX_HEADER_LEN {
            return Err(CryptoError::Header("header_len exceeds the maximum"));
        }
        if header_len < MIN_HEADER_LEN {
            return Err(CryptoError::Header("header_len below the minimum"));
        }
        let key_id_len = usize::from(r.u8()?);
        if key_id_len == 0 {
            return Err(CryptoError::Header("empty key id"));
        }
        if key_id_len > MAX_KEY_ID_LEN {
            return Err(CryptoError::Header("key id too long"));
        }
        if header_len != header_len_for(key_id_len) {
            return Err(CryptoError::Header("header_len disagrees with the fields"));
        }
        let key_id = r.take(key_id_len)?;
        validate_key_id(key_id)?;
        let epoch = r.u32()?;
        let salt = r.array::<SALT_LEN>()?;
        let commitment = r.array::<COMMITMENT_LEN>()?;
        debug_assert_eq!(r.pos, header_len);
        // validate_key_id admits ASCII only, so this cannot fail; map rather
        // than unwrap to keep the parser panic-free by construction.
        let key_id = String::from_utf8(key_id.to_vec())
            .map_err(|_| CryptoError::Header("key id is not ASCII"))?;
        Ok((
            Header {
                suite,
                key_ref: KeyRef { key_id, epoch },
                salt,
                commitment,
            },
            header_len,
        ))
    }

    /// Total encoded length in bytes (71 + key id length).
    pub fn len(&self) -> usize {
        header_len_for(self.key_ref.key_id.len())
    }

    /// The header bytes from magic through epoch (everything but salt and
    /// commitment). This is the part bound into the derivation context.
    ///
    /// The key reference should be valid ([`KeyRef::validate`]);
    /// [`crate::Encryptor`] checks it. An invalid one still encodes without
    /// panicking, into bytes that [`Header::parse`] rejects.
    pub fn prefix(&self) -> Vec<u8> {
        let (fixed, id, epoch) = self.prefix_parts();
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&fixed);
        v.extend_from_slice(id);
        v.extend_from_slice(&epoch);
        v
    }

    /// [`Header::prefix`] in three parts, without allocating: the fixed
    /// fields magic..key_id_len, the key id, and the epoch.
    pub(crate) fn prefix_parts(&self) -> ([u8; FIXED_PREFIX_LEN], &[u8], [u8; 4]) {
        let id = self.key_ref.key_id.as_bytes();
        let [m0, m1, m2, m3] = MAGIC;
        let [s0, s1] = self.suite.id().to_be_bytes();
        let [l0, l1] = u16::try_from(self.len()).unwrap_or(u16::MAX).to_be_bytes();
        let id_len = u8::try_from(id.len()).unwrap_or(u8::MAX);
        // flags = 0
        let fixed = [m0, m1, m2, m3, VERSION, s0, s1, 0, l0, l1, id_len];
        (fixed, id, self.key_ref.epoch.to_be_bytes())
    }

    /// The full encoded header.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.prefix();
        v.extend_from_slice(&self.salt);
        v.extend_from_slice(&self.commitment);
        v
    }

    /// Whether `bytes` is exactly [`Header::encode`], without allocating.
    pub(crate) fn encodes_to(&self, bytes: &[u8]) -> bool {
        let (fixed, id, epoch) = self.prefix_parts();
        let parts: [&[u8]; 5] = [&fixed, id, &epoch, &self.salt, &self.commitment];
        let mut rest = bytes;
        for part in parts {
            match rest.split_at_checked(part.len()) {
                Some((head, tail)) if head == part => rest = tail,
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            suite: Suite::Cobblestone256,
            key_ref: KeyRef::new("ns-docs", 7).unwrap(),
            salt: [1; SALT_LEN],
            commitment: [2; COMMITMENT_LEN],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(bytes.len(), h.len());
        assert_eq!(h.len(), 78);
        let (parsed, n) = Header::parse(&bytes).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(n, bytes.len());
        // Extra bytes after the header are not the parser's business.
        let mut more = bytes.clone();
        more.extend_from_slice(&[9; 100]);
        assert_eq!(Header::parse(&more).unwrap(), (h, 78));
    }

    #[test]
    fn prefix_parts_and_encodes_to_agree_with_encode() {
        let long = KeyRef {
            key_id: "x".repeat(300),
            epoch: 9,
        };
        for key_ref in [sample().key_ref, long] {
            let h = Header {
                key_ref,
                ..sample()
            };
            let (fixed, id, epoch) = h.prefix_parts();
            assert_eq!([&fixed[..], id, &epoch].concat(), h.prefix());
            let bytes = h.encode();
            assert!(h.encodes_to(&bytes));
            assert!(!h.encodes_to(&bytes[..bytes.len() - 1]));
            let mut more = bytes.clone();
            more.push(0);
            assert!(!h.encodes_to(&more));
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1;
                assert!(!h.encodes_to(&flipped), "{i}");
            }
        }
    }

    #[test]
    fn both_suites_round_trip_and_others_are_refused() {
        for suite in [Suite::Cobblestone256, Suite::Blake3Aes256Gcm] {
            let h = Header { suite, ..sample() };
            let bytes = h.encode();
            assert_eq!(bytes[5..7], suite.id().to_be_bytes());
            assert_eq!(Header::parse(&bytes).unwrap().0, h);
        }
        for id in [0x0000, 0x0002, 0x0004, 0x0100, 0xffff] {
            let mut bytes = sample().encode();
            bytes[5..7].copy_from_slice(&u16::to_be_bytes(id));
            assert_eq!(
                Header::parse(&bytes),
                Err(CryptoError::UnsupportedSuite(id))
            );
        }
    }

    #[test]
    fn every_prefix_is_truncated() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert_eq!(
                Header::parse(&bytes[..n]),
                Err(CryptoError::Truncated),
                "{n}"
            );
        }
    }

    #[test]
    fn key_id_bounds() {
        assert!(KeyRef::new("", 0).is_err());
        assert!(KeyRef::new("A", 0).is_err());
        assert!(KeyRef::new("a_b", 0).is_err());
        assert!(KeyRef::new("a".repeat(65), 0).is_err());
        let max = KeyRef::new("a".repeat(64), 0).unwrap();
        let h = Header {
            suite: Suite::default(),
            key_ref: max,
            salt: [0; SALT_LEN],
            commitment: [0; COMMITMENT_LEN],
        };
        assert_eq!(h.len(), 135);
        assert_eq!(Header::parse(&h.encode()).unwrap().1, 135);
    }

    #[test]
    fn invalid_key_ref_encodes_to_rejected_bytes() {
        for id in ["", "UPPER", &"a".repeat(65), &"a".repeat(300)] {
            let h = Header {
                suite: Suite::default(),
                key_ref: KeyRef {
                    key_id: id.to_string(),
                    epoch: 0,
                },
                salt: [0; SALT_LEN],
                commitment: [0; COMMITMENT_LEN],
            };
            assert!(Header::parse(&h.encode()).is_err(), "{id}");
        }
    }
}
