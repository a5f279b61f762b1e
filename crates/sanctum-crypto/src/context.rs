//! The derivation context: where a message belongs.

use crate::CryptoError;

/// The label that opens every context (domain separation from any other use
/// of the same data keys).
pub const CONTEXT_LABEL: &str = "sanctum-storage/v1";

/// Well-known values for [`Context::kind`].
pub mod kind {
    /// The body of a blob version.
    pub const BLOB_BODY: &str = "blob-body";
    /// The metadata of a blob version.
    pub const BLOB_META: &str = "blob-meta";
    /// A small blob version's metadata and body, sealed as one message.
    pub const BLOB_SMALL: &str = "blob-small";
    /// A record value.
    pub const RECORD: &str = "record";
    /// A stream entry payload.
    pub const STREAM: &str = "stream";
}

/// Where a message belongs. It is never stored: the caller rebuilds it from
/// trusted state (its own index, not the stored bytes) for every encryption
/// and decryption, so a ciphertext moved to another tenant, namespace, key,
/// body or kind fails the commitment check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// Namespace within the tenant.
    pub namespace: &'a str,
    /// Object key (blob key, record key, stream name).
    pub object_key: &'a str,
    /// Body id (not version id: a restore reuses a body under a new version).
    pub body_id: &'a str,
    /// What the message is, e.g. one of the [`kind`] constants.
    pub kind: &'a str,
}

impl Context<'_> {
    /// Encodes the context as the Cobblestone `context` input: each of the
    /// label [`CONTEXT_LABEL`], tenant, namespace, object key, body id, kind
    /// and `header_prefix` (the header bytes magic..epoch), in that order, as
    /// a u32 big-endian length followed by the bytes.
    ///
    /// A field longer than `u32::MAX` bytes cannot be encoded; it is written
    /// with length `u32::MAX` here and refused by [`Context::check`], which
    /// the encryptor and decryptor call first.
    pub fn encode(&self, header_prefix: &[u8]) -> Vec<u8> {
        let fields = self.fields(header_prefix);
        let mut v = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
        for f in fields {
            v.extend_from_slice(&length_prefix(f.len()));
            v.extend_from_slice(f);
        }
        v
    }

    /// The six fields before the header prefix (label through kind), for
    /// encoding the context piecewise without allocating (see
    /// [`Context::encode`] for the layout).
    pub(crate) fn fields_before_prefix(&self) -> [&[u8]; 6] {
        let [label, tenant, namespace, object_key, body_id, kind, _] = self.fields(&[]);
        [label, tenant, namespace, object_key, body_id, kind]
    }

    /// Checks that every field fits a u32 length prefix.
    pub fn check(&self) -> Result<(), CryptoError> {
        if self
            .fields(&[])
            .iter()
            .all(|f| u32::try_from(f.len()).is_ok())
        {
            Ok(())
        } else {
            Err(CryptoError::Header("context field too long"))
        }
    }

    fn fields<'b>(&'b self, header_prefix: &'b [u8]) -> [&'b [u8]; 7] {
        [
            CONTEXT_LABEL.as_bytes(),
            self.tenant.as_bytes(),
            self.namespace.as_bytes(),
            self.object_key.as_bytes(),
            self.body_id.as_bytes(),
            self.kind.as_bytes(),
            header_prefix,
        ]
    }
}

/// The u32 big-endian length prefix of a context field (saturating; see
/// [`Context::encode`]).
pub(crate) fn length_prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_length_prefixed() {
        let c = Context {
            tenant: "t",
            namespace: "",
            object_key: "k",
            body_id: "b",
            kind: kind::RECORD,
        };
        let e = c.encode(b"HP");
        let mut want = Vec::new();
        for f in [
            &b"sanctum-storage/v1"[..],
            b"t",
            b"",
            b"k",
            b"b",
            b"record",
            b"HP",
        ] {
            want.extend_from_slice(&(f.len() as u32).to_be_bytes());
            want.extend_from_slice(f);
        }
        assert_eq!(e, want);
        // Moving a byte between adjacent fields changes the encoding.
        let moved = Context {
            tenant: "",
            namespace: "t",
            ..c
        };
        assert_ne!(moved.encode(b"HP"), e);
        assert!(c.check().is_ok());
    }
}
