//! Mapping object_store errors onto the project's [`ErrorCode`]s.
//!
//! | backend answer | code |
//! |---|---|
//! | 404 | `NotFound` |
//! | 412, 409 (object_store: `Precondition`, `AlreadyExists`) | `Conflict` |
//! | 401, 403 (credentials) | `PermanentAdapter` |
//! | 429 (throttling), 5xx, timeouts, connection failures | `TransientAdapter` (retryable) |
//! | 416 (range not satisfiable) | `InvalidInput` |
//! | other 4xx | `PermanentAdapter` |
//! | bad builder settings | `Config` |
//!
//! object_store keeps the HTTP status inside a private error type, so the status is read from
//! its message ("... status code: 503 ..."); `tests/cloud_errors.rs` pins every row of the
//! table against a real HTTP server, so a change of that text fails a test, not a user.

use std::error::Error as StdError;

use crate::error::{Error, ErrorCode};

/// Maps an object_store error onto the project's codes, keeping it as the source.
pub(crate) fn map_err(err: ::object_store::Error) -> Error {
    use ::object_store::Error as E;
    let (code, msg) = match &err {
        E::NotFound { .. } => (ErrorCode::NotFound, "no such object"),
        E::AlreadyExists { .. } => (ErrorCode::Conflict, "object already exists"),
        E::Precondition { .. } => (ErrorCode::Conflict, "object changed since it was read"),
        E::NotModified { .. } => (ErrorCode::Conflict, "object not modified"),
        E::NotSupported { .. } | E::NotImplemented { .. } => (
            ErrorCode::NotSupported,
            "operation not supported by the backend",
        ),
        E::InvalidPath { .. } => (ErrorCode::InvalidInput, "invalid backend path"),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            ErrorCode::PermanentAdapter,
            "backend refused the credentials",
        ),
        E::UnknownConfigurationKey { .. } => {
            (ErrorCode::Config, "unknown backend configuration key")
        }
        _ => classify(&err),
    };
    Error::new(code, msg).with_source(err)
}

/// Classifies a generic failure by the transport error or HTTP status in its source chain.
fn classify(err: &(dyn StdError + 'static)) -> (ErrorCode, &'static str) {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = transport_failure(e) {
            return found;
        }
        if let Some(status) = status_in(&e.to_string()) {
            return match status {
                429 => (ErrorCode::TransientAdapter, "backend throttled the request"),
                500..=599 => (ErrorCode::TransientAdapter, "backend failed (5xx)"),
                401 | 403 => (
                    ErrorCode::PermanentAdapter,
                    "backend refused the credentials",
                ),
                404 => (ErrorCode::NotFound, "no such object"),
                409 | 412 => (ErrorCode::Conflict, "object changed since it was read"),
                416 => (ErrorCode::InvalidInput, "range outside the object"),
                400..=499 => (ErrorCode::PermanentAdapter, "backend rejected the request"),
                _ => (ErrorCode::TransientAdapter, "backend request failed"),
            };
        }
        current = e.source();
    }
    (ErrorCode::TransientAdapter, "backend request failed")
}

/// A failure before any HTTP answer (only the HTTP backends have them).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn transport_failure(e: &(dyn StdError + 'static)) -> Option<(ErrorCode, &'static str)> {
    use ::object_store::client::{HttpError, HttpErrorKind};
    let http = e.downcast_ref::<HttpError>()?;
    Some(match http.kind() {
        HttpErrorKind::Timeout => (ErrorCode::TransientAdapter, "backend request timed out"),
        HttpErrorKind::Connect => (ErrorCode::TransientAdapter, "cannot connect to the backend"),
        HttpErrorKind::Decode => (
            ErrorCode::TransientAdapter,
            "backend response could not be read",
        ),
        _ => (ErrorCode::TransientAdapter, "backend request failed"),
    })
}

#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn transport_failure(_: &(dyn StdError + 'static)) -> Option<(ErrorCode, &'static str)> {
    None
}

/// The HTTP status in object_store's "status code: NNN" message, if any.
fn status_in(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_from_object_store_messages() {
        assert_eq!(
            status_in("Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(503)
        );
        assert_eq!(status_in("status code: 42"), None);
        assert_eq!(status_in("no status here"), None);
    }
}
