//! Key-encryption-key (KEK) providers for the sanctum-storage key hierarchy.
//!
//! Each tenant has one KEK, held by a [`KeyProvider`]. The KEK wraps that tenant's 32-byte keys (the
//! library stores the [`WrappedKey`]s); destroying the tenant's KEK crypto-shreds the tenant, since
//! nothing it wrapped can be unwrapped afterwards. This crate only wraps and unwraps 32-byte keys.
//!
//! Two providers:
//!
//! - [`LocalKeyring`] (`"local-keyring"`): a JSON file of random AES-256-GCM KEKs. **Development
//!   only** ([`KeyProvider::is_development`] is `true`): the KEKs sit in plaintext next to the data.
//! - [`OpenBaoTransit`] (`"openbao-transit"`): the OpenBao / HashiCorp Vault Transit engine, one
//!   Transit key per tenant; key material never leaves the server.
//!
//! # Common rules
//!
//! - Tenant ids are 1-63 characters of `[a-z0-9-]`, not starting or ending with `-` (the rule of
//!   sanctum-storage's tenant ids). Anything else is rejected with [`KeyErrorKind::Invalid`] before any
//!   file or network access, so a tenant id can never escape into a path or a URL.
//! - `aad` is bound to the wrapped key: unwrapping or re-wrapping with different `aad` fails with
//!   [`KeyErrorKind::Invalid`]. The providers bind it together with a fixed domain label and the tenant
//!   id (see [`bound_context`]), so a wrap from one tenant never opens under another.
//! - After [`KeyProvider::destroy`], every `unwrap`, `rewrap`, `rotate` and `wrap` for that tenant fails
//!   with [`KeyErrorKind::Destroyed`]. A shredded tenant stays shredded: the id cannot be reused, and a
//!   tenant that is re-created needs a new tenant id.
//! - Error messages never contain key material, plaintext keys or tokens.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

mod local;
mod openbao;

pub use local::LocalKeyring;
pub use openbao::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, OpenBaoTransit};

/// Length in bytes of the keys a [`KeyProvider`] wraps.
pub const KEY_LEN: usize = 32;

/// Longest tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 63;

/// A 32-byte key wrapped by a tenant's KEK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    /// The provider kind that wrapped it ([`KeyProvider::kind`]): `"local-keyring"` or
    /// `"openbao-transit"`. A provider refuses wraps of another kind with [`KeyErrorKind::Invalid`].
    pub provider: String,
    /// The version of the tenant's KEK that wrapped it (1 for the first version).
    pub kek_version: u32,
    /// Provider-specific ciphertext: base64 of `nonce || sealed key` for the local keyring, the
    /// Transit ciphertext (`"vault:vN:..."`) for OpenBao.
    pub ciphertext: String,
}

/// What went wrong, for callers that decide by kind (retry, report, give up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The tenant's KEK was destroyed: the tenant is crypto-shredded and nothing it wrapped can be
    /// unwrapped again.
    Destroyed,
    /// The tenant has no KEK (never used), or the KEK is gone without a record of its destruction.
    NotFound,
    /// The provider refused the caller (permissions, token).
    Denied,
    /// A temporary failure (timeout, connection, rate limit, server error): retrying may succeed.
    Transient,
    /// A failure that retrying will not fix (configuration, unexpected answer, I/O).
    Permanent,
    /// The input is invalid: a bad tenant id, a tampered or foreign wrapped key, or the wrong `aad`.
    Invalid,
}

impl KeyErrorKind {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, KeyErrorKind::Transient)
    }
}

impl fmt::Display for KeyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            KeyErrorKind::Destroyed => "destroyed",
            KeyErrorKind::NotFound => "not found",
            KeyErrorKind::Denied => "denied",
            KeyErrorKind::Transient => "transient",
            KeyErrorKind::Permanent => "permanent",
            KeyErrorKind::Invalid => "invalid",
        };
        f.write_str(s)
    }
}

/// An error from a [`KeyProvider`]. The message never contains keys, plaintext or tokens.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    /// What kind of failure this is.
    pub kind: KeyErrorKind,
    /// A human-readable description.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl KeyError {
    /// An error of `kind` with `message` and no source.
    pub fn new(kind: KeyErrorKind, message: impl Into<String>) -> Self {
        KeyError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with `message`, caused by `source`.
    pub fn with_source(
        kind: KeyErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        KeyError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        KeyError::new(KeyErrorKind::Invalid, message)
    }

    pub(crate) fn destroyed(tenant: &str) -> Self {
        KeyError::new(
            KeyErrorKind::Destroyed,
            format!("the KEK of tenant {tenant:?} was destroyed (the tenant is crypto-shredded)"),
        )
    }

    pub(crate) fn not_found(tenant: &str) -> Self {
        KeyError::new(
            KeyErrorKind::NotFound,
            format!("tenant {tenant:?} has no KEK"),
        )
    }
}

/// A source of per-tenant KEKs that wraps and unwraps 32-byte keys.
///
/// See the crate docs for the rules every provider follows (tenant ids, `aad`, destruction).
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The provider kind, also stored in [`WrappedKey::provider`]: `"local-keyring"` or
    /// `"openbao-transit"`.
    fn kind(&self) -> &'static str;

    /// Whether this provider is for development only (`true` for the local keyring); production
    /// configurations refuse such providers.
    fn is_development(&self) -> bool;

    /// Wraps `key` under the tenant's current KEK version, binding `aad` (the caller passes a
    /// canonical, length-prefixed description: tenant, namespace, purpose). Creates the tenant's KEK
    /// on first use. Fails with [`KeyErrorKind::Destroyed`] for a destroyed tenant.
    async fn wrap(&self, tenant: &str, key: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError>;

    /// Unwraps `wrapped` with the tenant's KEK version it names, checking `aad`.
    ///
    /// Fails with [`KeyErrorKind::Invalid`] for the wrong `aad`, a tampered or foreign wrap, or
    /// another tenant's wrap; [`KeyErrorKind::Destroyed`] after [`KeyProvider::destroy`];
    /// [`KeyErrorKind::NotFound`] for a tenant without a KEK.
    async fn unwrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyError>;

    /// Re-wraps under the newest KEK version without exposing the key to the caller where the backend
    /// allows (Transit `rewrap`). `aad` must be the one the key was wrapped with; it stays bound.
    async fn rewrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<WrappedKey, KeyError>;

    /// Adds a new KEK version for the tenant (old versions still unwrap); returns the new version.
    /// Fails with [`KeyErrorKind::NotFound`] for a tenant without a KEK (this does not create one).
    async fn rotate(&self, tenant: &str) -> Result<u32, KeyError>;

    /// Destroys every version of the tenant's KEK and records the tenant as destroyed, so that every
    /// later `unwrap`, `rewrap`, `rotate` and `wrap` fails with [`KeyErrorKind::Destroyed`] (not
    /// `NotFound`). Idempotent; destroying a tenant that never had a KEK also marks it destroyed.
    async fn destroy(&self, tenant: &str) -> Result<(), KeyError>;

    /// Checks that the provider answers (and, where it can, that it accepts the credentials).
    async fn health_check(&self) -> Result<(), KeyError>;

    /// Whether this provider keeps monotonic counters: state outside the storage backend that the
    /// backend cannot roll back. sanctum-storage stores each namespace key record's version in
    /// one, so a rolled-back record is refused by every process. Default: `false`.
    fn keeps_counters(&self) -> bool {
        false
    }

    /// The counter `name` of `tenant`: 0 when never raised, and always 0 from a provider that
    /// keeps no counters. `name` is 1-128 characters of `[a-z0-9/_.-]` ([`validate_counter_name`]).
    async fn counter(&self, tenant: &str, name: &str) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        validate_counter_name(name)?;
        Ok(0)
    }

    /// Raises the counter `name` of `tenant` to `value` unless it is higher already (it never goes
    /// down), and returns the value it holds now. A provider that keeps no counters returns
    /// `value` and stores nothing.
    async fn raise_counter(&self, tenant: &str, name: &str, value: u64) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        validate_counter_name(name)?;
        Ok(value)
    }
}

/// Checks a counter name: 1-128 characters of `[a-z0-9/_.-]`.
pub fn validate_counter_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyError::invalid(
            "invalid counter name: must be 1-128 characters of [a-z0-9/_.-]",
        ))
    }
}

/// Checks a tenant id: 1-63 characters of `[a-z0-9-]`, not starting or ending with `-`.
///
/// Errors with [`KeyErrorKind::Invalid`]; the message does not echo the id (it may be hostile).
pub fn validate_tenant(tenant: &str) -> Result<(), KeyError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !tenant.starts_with('-')
        && !tenant.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::invalid(format!(
            "invalid tenant id: must be 1-{MAX_TENANT_LEN} characters of [a-z0-9-], not starting or \
             ending with '-' (got {} bytes)",
            tenant.len()
        )))
    }
}

/// Domain label at the start of every [`bound_context`].
pub const CONTEXT_LABEL: &[u8] = b"sanctum-keys/kek-wrap/v1";

/// The bytes a provider binds to a wrapped key: `len(label) || label || len(tenant) || tenant ||
/// len(aad) || aad`, each length a big-endian `u32`.
///
/// The local keyring uses it as the AES-GCM associated data; OpenBao Transit uses it as the key
/// derivation `context`. It is never empty (Transit requires a context for derived keys) and is
/// unambiguous, since every field is length-prefixed.
pub fn bound_context(tenant: &str, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + CONTEXT_LABEL.len() + tenant.len() + aad.len());
    for field in [CONTEXT_LABEL, tenant.as_bytes(), aad] {
        // Lengths above u32::MAX cannot occur for tenants, and aad that long is refused earlier.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Longest `aad` accepted, in bytes (a canonical description is far shorter).
pub const MAX_AAD_LEN: usize = 64 * 1024;

pub(crate) fn check_aad(aad: &[u8]) -> Result<(), KeyError> {
    if aad.len() > MAX_AAD_LEN {
        return Err(KeyError::invalid(format!(
            "aad is {} bytes; at most {MAX_AAD_LEN} are accepted",
            aad.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_provider(wrapped: &WrappedKey, kind: &str) -> Result<(), KeyError> {
    if wrapped.provider != kind {
        return Err(KeyError::invalid(format!(
            "wrapped key is from provider {:?}, not {kind:?}",
            wrapped.provider
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "t1", "tenant-1", &"a".repeat(63)] {
            assert!(validate_tenant(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "../x",
            "a/b",
            "a.b",
            "-a",
            "a-",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate_tenant(bad).unwrap_err();
            assert_eq!(err.kind, KeyErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn context_is_length_prefixed() {
        assert_ne!(bound_context("ab", b"c"), bound_context("a", b"bc"));
        assert_ne!(bound_context("a", b""), bound_context("a", b"\0"));
        let c = bound_context("t", b"x");
        assert!(c.starts_with(&(CONTEXT_LABEL.len() as u32).to_be_bytes()));
        assert!(c.ends_with(&[0, 0, 0, 1, b'x']));
    }
}
