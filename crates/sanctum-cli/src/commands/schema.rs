//! `sanctum schema ...` and `sanctum migrate`: the record database's deployment, not a
//! tenant's data.

use serde_json::json;

use super::Session;
use crate::cli::SchemaCommand;
use crate::output;

/// Runs a `schema` subcommand.
pub async fn run(session: &Session, cmd: SchemaCommand) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Show => show(session).await,
        SchemaCommand::Check => check(session).await,
    }
}

/// `schema show`: every declared collection, its versions and their fingerprints (with
/// `--json`, the schemas too). Opens no database.
async fn show(session: &Session) -> anyhow::Result<()> {
    let collections = session
        .with_storage(async |s| {
            Ok(s.records()
                .schemas()
                .iter()
                .map(|c| {
                    let versions: Vec<_> = c
                        .fingerprints()
                        .into_iter()
                        .map(|(version, fingerprint)| {
                            json!({
                                "version": version,
                                "fingerprint": fingerprint,
                                "schema": c.schema(version),
                            })
                        })
                        .collect();
                    json!({ "collection": c.name(), "versions": versions })
                })
                .collect::<Vec<_>>())
        })
        .await?;
    if session.json {
        return output::json(&collections);
    }
    if collections.is_empty() {
        return output::line(
            "no collection is declared: every collection takes any JSON object (schema \
             version 0; development only)",
        );
    }
    for c in &collections {
        output::line(format_args!(
            "collection {}",
            c["collection"].as_str().unwrap_or("")
        ))?;
        for v in c["versions"].as_array().into_iter().flatten() {
            output::line(format_args!(
                "  version {}  fingerprint {}",
                v["version"],
                v["fingerprint"].as_str().unwrap_or("")
            ))?;
        }
    }
    Ok(())
}

/// `schema check`: the declarations against the record database: what would stop the record
/// store from starting, and what only warns. Exits 0 either way.
async fn check(session: &Session) -> anyhow::Result<()> {
    let report = session
        .with_storage(async |s| Ok(s.records().schema_report().await?))
        .await?;
    if session.json {
        return output::json(&report);
    }
    for stored in &report.stored {
        let how = match stored.version {
            0 => "written without a declaration".to_string(),
            _ => format!("fingerprint {}", stored.fingerprint),
        };
        output::line(format_args!(
            "stored: collection {} version {} ({how})",
            stored.collection, stored.version
        ))?;
    }
    for problem in &report.problems {
        output::line(format_args!("drift: {problem}"))?;
    }
    for warning in &report.warnings {
        output::line(format_args!("warning: {warning}"))?;
    }
    if report.ok() {
        output::line("no drift: the record store will start")
    } else {
        output::line(format_args!(
            "{} problem(s): the record store refuses to start until they are fixed",
            report.problems.len()
        ))
    }
}

/// `sanctum migrate`: creates or migrates the record database's tables.
pub async fn migrate(session: &Session) -> anyhow::Result<()> {
    let (kind, name) = session
        .with_storage(async |s| {
            s.records().migrate().await?;
            let adapter = s.records().adapter();
            Ok((adapter.kind(), adapter.name().to_string()))
        })
        .await?;
    if session.json {
        output::json(&json!({ "migrated": true, "kind": kind, "name": name }))
    } else {
        output::line(format_args!(
            "record database migrated ({kind} adapter '{name}')"
        ))
    }
}
