//! `sanctum quota ...`: namespace quotas of the `--tenant`.

use sanctum_storage::adapters::record::RecordUsage;
use sanctum_storage::quota::{QuotaLimits, QuotaStatus};
use serde_json::json;

use super::Session;
use crate::cli::{NsArgs, QuotaCommand, QuotaSetArgs};
use crate::output;

/// Runs a `quota` subcommand.
pub async fn run(session: &Session, cmd: QuotaCommand) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Set(args) => set(session, args).await,
        QuotaCommand::Show(args) => show(session, args).await,
        QuotaCommand::Rm(args) => rm(session, args).await,
    }
}

/// `N` or `unlimited`.
fn limit(value: Option<u64>) -> String {
    value.map_or_else(|| "unlimited".to_string(), |v| v.to_string())
}

/// `namespace NS: bytes USED of LIMIT, objects USED of LIMIT`, then, when the namespace has
/// record limits, `, records USED of LIMIT, record bytes USED of LIMIT` (counted in the record
/// database).
fn status_line(ns: &str, status: &QuotaStatus, records: Option<RecordUsage>) -> String {
    let mut line = format!(
        "namespace {ns}: bytes {} of {}, objects {} of {}",
        status.usage.bytes,
        limit(status.limits.max_bytes),
        status.usage.objects,
        limit(status.limits.max_objects)
    );
    if let Some(usage) = records {
        line.push_str(&format!(
            ", records {} of {}, record bytes {} of {}",
            usage.records,
            limit(status.limits.max_records),
            usage.bytes,
            limit(status.limits.max_record_bytes)
        ));
    }
    line
}

/// The record usage of `ns`, when its quota limits records (else the record database is not
/// opened).
async fn record_usage(
    storage: &sanctum_storage::Storage,
    session: &Session,
    ns: &str,
    status: Option<&QuotaStatus>,
) -> anyhow::Result<Option<RecordUsage>> {
    match status {
        Some(s) if s.limits.max_records.is_some() || s.limits.max_record_bytes.is_some() => {
            Ok(Some(storage.records().usage(&session.ctx, ns).await?))
        }
        _ => Ok(None),
    }
}

/// `quota set NS [--max-bytes SIZE] [--max-objects N]`: prints the new limits and the usage.
async fn set(session: &Session, args: QuotaSetArgs) -> anyhow::Result<()> {
    let limits = QuotaLimits {
        max_bytes: args.max_bytes,
        max_objects: args.max_objects,
        max_records: args.max_records,
        max_record_bytes: args.max_record_bytes,
    };
    let (status, records) = session
        .with_storage(async |s| {
            let status = s.quotas().set(&session.ctx, &args.ns, limits).await?;
            let records = record_usage(s, session, &args.ns, Some(&status)).await?;
            Ok((status, records))
        })
        .await?;
    let warnings = over_limit(&args.ns, &status);
    for warning in &warnings {
        output::note(format_args!("warning: {warning}"));
    }
    if session.json {
        let mut doc = serde_json::to_value(status)?;
        if let Some(records) = records {
            doc["record_usage"] = serde_json::to_value(records)?;
        }
        if !warnings.is_empty() {
            doc["warnings"] = json!(warnings);
        }
        output::json(&doc)
    } else {
        output::line(status_line(&args.ns, &status, records))
    }
}

/// Warnings for limits set below what the namespace already uses: accepted (usage can drop),
/// but every write that adds to it fails until then.
fn over_limit(ns: &str, status: &QuotaStatus) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(max) = status.limits.max_bytes
        && status.usage.bytes > max
    {
        warnings.push(format!(
            "namespace {ns} already keeps {} bytes, more than the new limit of {max}: writes \
             fail with quota_exceeded until old versions are purged",
            status.usage.bytes
        ));
    }
    if let Some(max) = status.limits.max_objects
        && status.usage.objects > max
    {
        warnings.push(format!(
            "namespace {ns} already holds {} objects, more than the new limit of {max}: new \
             keys fail with quota_exceeded until objects are deleted",
            status.usage.objects
        ));
    }
    warnings
}

/// `quota show NS`: the limits and usage, or `no quota` (`null` with `--json`).
async fn show(session: &Session, args: NsArgs) -> anyhow::Result<()> {
    let (status, records) = session
        .with_storage(async |s| {
            let status = s.quotas().show(&session.ctx, &args.ns).await?;
            let records = record_usage(s, session, &args.ns, status.as_ref()).await?;
            Ok((status, records))
        })
        .await?;
    match (session.json, status) {
        (true, Some(status)) => {
            let mut doc = serde_json::to_value(status)?;
            if let Some(records) = records {
                doc["record_usage"] = serde_json::to_value(records)?;
            }
            output::json(&doc)
        }
        (true, None) => output::json(&Option::<QuotaStatus>::None),
        (false, Some(status)) => output::line(status_line(&args.ns, &status, records)),
        (false, None) => output::line(format_args!("namespace {}: no quota", args.ns)),
    }
}

/// `quota rm NS`: removes the quota; a namespace without one is not an error.
async fn rm(session: &Session, args: NsArgs) -> anyhow::Result<()> {
    let removed = session
        .with_storage(async |s| Ok(s.quotas().remove(&session.ctx, &args.ns).await?))
        .await?;
    if session.json {
        output::json(&json!({ "namespace": args.ns, "removed": removed }))
    } else if removed {
        output::line(format_args!("namespace {}: quota removed", args.ns))
    } else {
        output::line(format_args!(
            "namespace {}: had no quota; nothing changed",
            args.ns
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanctum_storage::quota::QuotaUsage;

    #[test]
    fn status_reads_as_usage_of_limit() {
        let status = QuotaStatus {
            limits: QuotaLimits {
                max_bytes: Some(10),
                ..QuotaLimits::default()
            },
            usage: QuotaUsage {
                bytes: 3,
                objects: 1,
            },
        };
        assert_eq!(
            status_line("docs", &status, None),
            "namespace docs: bytes 3 of 10, objects 1 of unlimited"
        );
        let records = RecordUsage {
            records: 2,
            bytes: 99,
        };
        assert_eq!(
            status_line("docs", &status, Some(records)),
            "namespace docs: bytes 3 of 10, objects 1 of unlimited, records 2 of unlimited, \
             record bytes 99 of unlimited"
        );
    }
}
