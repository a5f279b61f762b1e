//! `sanctum record ...`: JSON records of the `--tenant`.

use std::io::{IsTerminal, Read};
use std::path::Path;

use sanctum_storage::facade::record::{ListRecordsOptions, UpsertOptions};
use sanctum_storage::{Error, ErrorCode};
use serde_json::{Value, json};

use super::Session;
use crate::cli::{RecordArgs, RecordCommand, RecordLsArgs, RecordPutArgs, RecordRmArgs};
use crate::output;

/// The largest document read from a file or stdin (the library refuses larger ones too).
const MAX_INPUT: u64 = sanctum_storage::facade::record::MAX_DOCUMENT_BYTES as u64 + 1;

/// Runs a `record` subcommand.
pub async fn run(session: &Session, cmd: RecordCommand) -> anyhow::Result<()> {
    match cmd {
        RecordCommand::Put(args) => put(session, args).await,
        RecordCommand::Get(args) => get(session, args).await,
        RecordCommand::Rm(args) => rm(session, args).await,
        RecordCommand::Ls(args) => ls(session, args).await,
    }
}

/// Reads the JSON document from `file` (`-`: stdin, which must not be a terminal).
fn read_document(file: &Path) -> anyhow::Result<Value> {
    let mut text = Vec::new();
    if file == Path::new("-") {
        if std::io::stdin().is_terminal() {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "stdin is a terminal: name a JSON file, or pipe the document in",
            )
            .into());
        }
        std::io::stdin().take(MAX_INPUT).read_to_end(&mut text)?;
    } else {
        std::fs::File::open(file)
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidInput,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?
            .take(MAX_INPUT)
            .read_to_end(&mut text)?;
    }
    serde_json::from_slice(&text).map_err(|e| {
        // The position, not the text: a document may hold secrets.
        Error::new(
            ErrorCode::InvalidInput,
            format!(
                "the document is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
        .into()
    })
}

/// `record put NS COLLECTION ID [FILE|-] [--if-version V | --if-absent]`: prints the version.
async fn put(session: &Session, args: RecordPutArgs) -> anyhow::Result<()> {
    let document = read_document(&args.file)?;
    let opts = UpsertOptions {
        expected_version: args.if_version,
        if_absent: args.if_absent,
    };
    let at = &args.at;
    let version = session
        .with_storage(async |s| {
            Ok(s.records()
                .upsert(&session.ctx, &at.ns, &at.collection, &at.id, document, opts)
                .await?)
        })
        .await?;
    if session.json {
        output::json(&version)
    } else {
        output::line(format_args!(
            "{}/{}/{} version {}",
            at.ns, at.collection, at.id, version.version
        ))
    }
}

/// `record get NS COLLECTION ID`: the document (with `--json`: the document and its version).
async fn get(session: &Session, at: RecordArgs) -> anyhow::Result<()> {
    let record = session
        .with_storage(async |s| {
            Ok(s.records()
                .get(&session.ctx, &at.ns, &at.collection, &at.id)
                .await?)
        })
        .await?;
    if session.json {
        output::json(&record)
    } else {
        output::line(serde_json::to_string_pretty(&record.document)?)
    }
}

/// `record rm NS COLLECTION ID [--if-version V]`.
async fn rm(session: &Session, args: RecordRmArgs) -> anyhow::Result<()> {
    let at = &args.at;
    session
        .with_storage(async |s| {
            Ok(s.records()
                .delete(
                    &session.ctx,
                    &at.ns,
                    &at.collection,
                    &at.id,
                    args.if_version,
                )
                .await?)
        })
        .await?;
    if session.json {
        output::json(&json!({"deleted": true}))
    } else {
        output::line(format_args!(
            "deleted {}/{}/{}",
            at.ns, at.collection, at.id
        ))
    }
}

/// `record ls NS COLLECTION [--limit N] [--cursor C]`: `ID version V` lines, then the cursor of
/// the next page on stderr, if there is one.
async fn ls(session: &Session, args: RecordLsArgs) -> anyhow::Result<()> {
    let opts = ListRecordsOptions {
        limit: Some(args.limit),
        cursor: args.cursor.clone(),
    };
    let page = session
        .with_storage(async |s| {
            Ok(s.records()
                .list(&session.ctx, &args.ns, &args.collection, opts)
                .await?)
        })
        .await?;
    if session.json {
        let records: Vec<_> = page
            .records
            .iter()
            .map(|r| json!({"id": r.id, "version": r.version}))
            .collect();
        return output::json(&json!({"records": records, "next_cursor": page.next_cursor}));
    }
    for r in &page.records {
        output::line(format_args!("{} version {}", r.id, r.version.version))?;
    }
    if let Some(cursor) = page.next_cursor {
        output::note(format_args!("more: --cursor {cursor}"));
    }
    Ok(())
}
