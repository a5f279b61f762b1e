//! Exit statuses of `sanctum`, one per library [`ErrorCode`].
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | unexpected internal failure (not a storage error, e.g. writing stdout or the output file failed) |
//! | 2 | usage error (bad flags or arguments; `--help` and `--version` exit 0) |
//! | 3 | `not_found` |
//! | 4 | `conflict` (`--if-match` / `--if-none-match` failed, or a lost race) |
//! | 5 | `unauthorized` |
//! | 6 | `quota_exceeded` |
//! | 7 | `consistency` (e.g. checksum mismatch while reading) |
//! | 8 | `encryption` |
//! | 9 | `transient_adapter` (also: `health` found an unhealthy adapter) |
//! | 10 | `permanent_adapter` |
//! | 11 | `invalid_input` (bad name, key, range, missing input file, ...) |
//! | 12 | `config` |
//! | 13 | `not_supported` |
//!
//! A reader closing stdout early (broken pipe) is not an error: `sanctum` stops quietly with 0.
//! The statuses are stable; [`TABLE`] lists them for documentation and `--help`.

use sanctum_storage::ErrorCode;

/// Success.
pub const SUCCESS: u8 = 0;
/// An unexpected failure outside the storage library (I/O on stdout or a local output file).
pub const INTERNAL: u8 = 1;
/// A usage error: bad flags or arguments (clap's own status for usage errors).
pub const USAGE: u8 = 2;
/// [`ErrorCode::NotFound`].
pub const NOT_FOUND: u8 = 3;
/// [`ErrorCode::Conflict`].
pub const CONFLICT: u8 = 4;
/// [`ErrorCode::Unauthorized`].
pub const UNAUTHORIZED: u8 = 5;
/// [`ErrorCode::QuotaExceeded`].
pub const QUOTA_EXCEEDED: u8 = 6;
/// [`ErrorCode::Consistency`].
pub const CONSISTENCY: u8 = 7;
/// [`ErrorCode::Encryption`].
pub const ENCRYPTION: u8 = 8;
/// [`ErrorCode::TransientAdapter`].
pub const TRANSIENT_ADAPTER: u8 = 9;
/// [`ErrorCode::PermanentAdapter`].
pub const PERMANENT_ADAPTER: u8 = 10;
/// [`ErrorCode::InvalidInput`].
pub const INVALID_INPUT: u8 = 11;
/// [`ErrorCode::Config`].
pub const CONFIG: u8 = 12;
/// [`ErrorCode::NotSupported`].
pub const NOT_SUPPORTED: u8 = 13;

/// Every exit status with its name, in order: what README and `--help` list.
pub const TABLE: [(u8, &str); 14] = [
    (SUCCESS, "success"),
    (
        INTERNAL,
        "internal (unexpected failure outside the storage library)",
    ),
    (USAGE, "usage"),
    (NOT_FOUND, "not_found"),
    (CONFLICT, "conflict"),
    (UNAUTHORIZED, "unauthorized"),
    (QUOTA_EXCEEDED, "quota_exceeded"),
    (CONSISTENCY, "consistency"),
    (ENCRYPTION, "encryption"),
    (TRANSIENT_ADAPTER, "transient_adapter"),
    (PERMANENT_ADAPTER, "permanent_adapter"),
    (INVALID_INPUT, "invalid_input"),
    (CONFIG, "config"),
    (NOT_SUPPORTED, "not_supported"),
];

/// The exit status for a library error code. A code added to the library later and not yet
/// mapped here exits [`INTERNAL`] (a unit test catches the omission).
pub fn for_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::NotFound => NOT_FOUND,
        ErrorCode::Conflict => CONFLICT,
        ErrorCode::Unauthorized => UNAUTHORIZED,
        ErrorCode::QuotaExceeded => QUOTA_EXCEEDED,
        ErrorCode::Consistency => CONSISTENCY,
        ErrorCode::Encryption => ENCRYPTION,
        ErrorCode::TransientAdapter => TRANSIENT_ADAPTER,
        ErrorCode::PermanentAdapter => PERMANENT_ADAPTER,
        ErrorCode::InvalidInput => INVALID_INPUT,
        ErrorCode::Config => CONFIG,
        ErrorCode::NotSupported => NOT_SUPPORTED,
        _ => INTERNAL,
    }
}

/// The exit-status table as text, for the end of `sanctum --help`.
pub fn help_text() -> String {
    let mut text = String::from("Exit status:\n");
    for (status, name) in TABLE {
        text.push_str(&format!("  {status:>2}  {name}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_code_has_its_own_status_named_like_it() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let status = for_code(code);
            assert!(status > USAGE, "{code} is unmapped");
            assert!(seen.insert(status), "{code} shares status {status}");
            assert_eq!(TABLE[status as usize], (status, code.as_str()));
        }
        for (i, (status, _)) in TABLE.iter().enumerate() {
            assert_eq!(*status as usize, i);
        }
    }
}
