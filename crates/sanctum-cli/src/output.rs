//! Writing results to stdout and errors to stderr, without panicking on a closed pipe.

use std::fmt;
use std::io::{self, Write};

use anyhow::Context;
use serde::Serialize;

use crate::exit;

/// A usage error found after parsing (e.g. `get --json` without `-o`): exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Writes one line to stdout.
pub fn line(text: impl fmt::Display) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Writes `value` to stdout as one JSON document on one line.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value).context("encoding JSON")?;
    line(text)
}

/// Writes one line to stderr; a failure to do so is ignored (there is nowhere left to report it).
pub fn note(text: impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// What an error means for the user: exit status, code name and message.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    status: u8,
    code: &'static str,
    message: String,
}

/// Classifies `err`; `None` for a broken pipe on stdout, which is not reported.
fn classify(err: &anyhow::Error) -> Option<Failure> {
    if let Some(e) = err.downcast_ref::<sanctum_storage::Error>() {
        return Some(Failure {
            status: exit::for_code(e.code()),
            code: e.code().as_str(),
            message: e.to_string(),
        });
    }
    if let Some(e) = err.downcast_ref::<UsageError>() {
        return Some(Failure {
            status: exit::USAGE,
            code: "usage",
            message: e.0.clone(),
        });
    }
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return None;
    }
    Some(Failure {
        status: exit::INTERNAL,
        code: "internal",
        message: format!("{err:#}"),
    })
}

/// Prints `err` on stderr (plain or JSON) and returns the exit status for it.
pub fn report_error(err: &anyhow::Error, json: bool) -> u8 {
    let Some(failure) = classify(err) else {
        return exit::SUCCESS;
    };
    if json {
        let doc =
            serde_json::json!({ "error": { "code": failure.code, "message": failure.message } });
        note(doc);
    } else {
        note(format_args!("error[{}]: {}", failure.code, failure.message));
    }
    failure.status
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanctum_storage::{Error, ErrorCode};

    #[test]
    fn errors_map_to_statuses() {
        let err = anyhow::Error::from(Error::new(ErrorCode::Conflict, "lost"));
        assert_eq!(
            classify(&err).unwrap(),
            Failure {
                status: 4,
                code: "conflict",
                message: "lost".into()
            }
        );
        let err = anyhow::Error::from(UsageError("bad".into()));
        assert_eq!(classify(&err).unwrap().status, exit::USAGE);
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing to stdout");
        assert_eq!(classify(&err), None);
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied))
            .context("writing x");
        let failure = classify(&err).unwrap();
        assert_eq!((failure.status, failure.code), (exit::INTERNAL, "internal"));
        assert!(
            failure.message.starts_with("writing x: "),
            "{}",
            failure.message
        );
    }
}
