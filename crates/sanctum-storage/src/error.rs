//! The one error type of the library, with stable codes.
//!
//! Every failure a caller can see is an [`Error`] carrying an [`ErrorCode`]. The code is the
//! contract: its string form ([`ErrorCode::as_str`]) never changes, retry layers read only the code
//! ([`ErrorCode::is_retryable`]), and the CLI maps each code to its own exit status. The message is
//! for people and never contains payload bytes or user metadata values.

use std::fmt;

/// Boxed source error, as carried by [`Error::source`](std::error::Error::source).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is. The string codes are stable; see `docs/error-model.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The object, version or namespace does not exist (or belongs to another tenant).
    NotFound,
    /// A condition failed: `if_match` / `if_none_match`, or a lost compare-and-swap.
    Conflict,
    /// The caller is not allowed to do this.
    Unauthorized,
    /// The write would exceed a quota; nothing was stored.
    QuotaExceeded,
    /// Stored data disagrees with itself (checksum mismatch, corrupt manifest, missing body).
    Consistency,
    /// Encryption or decryption failed, or a key is unavailable.
    Encryption,
    /// The backend failed in a way that may succeed if retried.
    TransientAdapter,
    /// The backend failed in a way that retrying will not fix.
    PermanentAdapter,
    /// The caller passed something invalid: a name, a key, an option, a range, a cursor.
    InvalidInput,
    /// The configuration is invalid or incomplete.
    Config,
    /// The adapter lacks a capability the operation needs.
    NotSupported,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Unauthorized,
        ErrorCode::QuotaExceeded,
        ErrorCode::Consistency,
        ErrorCode::Encryption,
        ErrorCode::TransientAdapter,
        ErrorCode::PermanentAdapter,
        ErrorCode::InvalidInput,
        ErrorCode::Config,
        ErrorCode::NotSupported,
    ];

    /// The stable string code, e.g. `"not_found"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Consistency => "consistency",
            ErrorCode::Encryption => "encryption",
            ErrorCode::TransientAdapter => "transient_adapter",
            ErrorCode::PermanentAdapter => "permanent_adapter",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Config => "config",
            ErrorCode::NotSupported => "not_supported",
        }
    }

    /// Whether retrying the same request may succeed. Only transient adapter failures are
    /// retryable; a `Conflict` needs a fresh read first, so it is not.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::TransientAdapter)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure, with a stable [`ErrorCode`], the operation it happened in and an optional source.
pub struct Error {
    code: ErrorCode,
    operation: Option<&'static str>,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// A new error with `code` and a human message (no payload or metadata values in it).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            operation: None,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Records the operation (e.g. `"blob.put"`), unless one is already recorded.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Whether retrying may succeed (see [`ErrorCode::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.code.is_retryable()
    }

    /// The operation the error happened in, when known.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// The human message, without the operation prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
    pub(crate) fn consistency(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Consistency, message)
    }
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Config, message)
    }

    /// A `NotFound` turned into `code` with `message` (the original kept as the source), for
    /// a missing object that the caller's state says must exist; other errors pass unchanged.
    pub(crate) fn missing_means(self, code: ErrorCode, message: &str) -> Self {
        if self.code == ErrorCode::NotFound {
            Self::new(code, message).with_source(self)
        } else {
            self
        }
    }

    /// Classifies an I/O error from a backend: "not found" maps to `NotFound`, interruptions and
    /// timeouts to `TransientAdapter`, everything else to `PermanentAdapter`.
    pub fn from_backend_io(err: std::io::Error, what: &str) -> Self {
        use std::io::ErrorKind as K;
        let code = match err.kind() {
            K::NotFound => ErrorCode::NotFound,
            K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy => {
                ErrorCode::TransientAdapter
            }
            _ => ErrorCode::PermanentAdapter,
        };
        Self::new(code, format!("{what}: {}", err.kind())).with_source(err)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code)
            .field("operation", &self.operation)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Some(op) => write!(f, "{op}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_only_transient_is_retryable() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert_eq!(code.is_retryable(), code == ErrorCode::TransientAdapter);
        }
    }

    #[test]
    fn display_prefixes_operation_once() {
        let e = Error::not_found("no such key")
            .with_operation("blob.get")
            .with_operation("x");
        assert_eq!(e.to_string(), "blob.get: no such key");
        assert_eq!(e.code().as_str(), "not_found");
    }

    #[test]
    fn io_errors_are_classified() {
        let nf = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            Error::from_backend_io(nf, "read").code(),
            ErrorCode::NotFound
        );
        let to = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(Error::from_backend_io(to, "read").is_retryable());
        let pd = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            Error::from_backend_io(pd, "read").code(),
            ErrorCode::PermanentAdapter
        );
    }
}
