//! `sanctum keys ...`: key rotation, re-encryption, epoch retirement, the upgrade of key records
//! and crypto-shredding for the `--tenant`.

use sanctum_storage::crypto::EpochState;
use sanctum_storage::facade::ReencryptOptions;
use sanctum_storage::facade::record::RecordReencryptReport;

use super::Session;
use crate::cli::{KeysCommand, NsArgs, ReencryptArgs, RetireArgs, ShredArgs};
use crate::output::{self, UsageError};

/// Runs a `keys` subcommand.
pub async fn run(session: &Session, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::RotateKek => rotate_kek(session).await,
        KeysCommand::Rotate(args) => rotate(session, args).await,
        KeysCommand::Reencrypt(args) => reencrypt(session, args).await,
        KeysCommand::Shred(args) => shred(session, args).await,
        KeysCommand::Upgrade => upgrade(session).await,
        KeysCommand::RotateTenantKey => rotate_tenant_key(session).await,
        KeysCommand::RetireTenantKeys => retire_tenant_keys(session).await,
        KeysCommand::Epochs(args) => epochs(session, args).await,
        KeysCommand::Retire(args) => retire(session, args).await,
    }
}

async fn rotate_tenant_key(session: &Session) -> anyhow::Result<()> {
    let rotation = session
        .with_storage(async |s| Ok(s.keys().rotate_tenant_key(&session.ctx).await?))
        .await?;
    if session.json {
        return output::json(&rotation);
    }
    output::line(format_args!(
        "tenant {}: tenant key now at generation {}; new data-key epochs in {} namespaces; run \
         `sanctum keys reencrypt NS` on each, then `keys retire NS` and `keys retire-tenant-keys`",
        session.ctx.tenant(),
        rotation.generation,
        rotation.namespaces.len()
    ))
}

async fn retire_tenant_keys(session: &Session) -> anyhow::Result<()> {
    let dropped = session
        .with_storage(async |s| Ok(s.keys().retire_tenant_keys(&session.ctx).await?))
        .await?;
    if session.json {
        return output::json(&serde_json::json!({ "retired_generations": dropped }));
    }
    match dropped.is_empty() {
        true => output::line(format_args!(
            "tenant {}: no older tenant key to retire",
            session.ctx.tenant()
        )),
        false => output::line(format_args!(
            "tenant {}: retired tenant key generations {:?}",
            session.ctx.tenant(),
            dropped
        )),
    }
}

async fn upgrade(session: &Session) -> anyhow::Result<()> {
    let report = session
        .with_storage(async |s| Ok(s.keys().upgrade(&session.ctx).await?))
        .await?;
    if session.json {
        return output::json(&report);
    }
    for ns in &report.upgraded {
        output::line(format_args!(
            "namespace {ns}: key record authenticated; run `sanctum keys reencrypt {ns}` to \
             authenticate its version history"
        ))?;
    }
    output::line(format_args!(
        "tenant {}: {} key records upgraded, {} already current",
        session.ctx.tenant(),
        report.upgraded.len(),
        report.already_current
    ))
}

async fn epochs(session: &Session, args: NsArgs) -> anyhow::Result<()> {
    let epochs = session
        .with_storage(async |s| Ok(s.keys().epochs(&session.ctx, &args.ns).await?))
        .await?;
    if session.json {
        return output::json(&epochs);
    }
    for e in &epochs {
        let state = match e.state {
            EpochState::Active => "active",
            EpochState::DecryptOnly => "decrypt-only",
            EpochState::Retired => "retired",
        };
        output::line(format_args!("epoch {} {state}", e.epoch))?;
    }
    Ok(())
}

async fn retire(session: &Session, args: RetireArgs) -> anyhow::Result<()> {
    let report = session
        .with_storage(async |s| {
            Ok(s.keys()
                .retire_epochs(&session.ctx, &args.ns, args.epochs.clone())
                .await?)
        })
        .await?;
    if session.json {
        return output::json(&report);
    }
    let list = |epochs: &[u32]| {
        epochs
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match report.retired.is_empty() {
        true => output::line(format_args!("namespace {}: no epoch to retire", args.ns)),
        false => output::line(format_args!(
            "namespace {}: retired epoch {}; data claiming it is refused from now on",
            args.ns,
            list(&report.retired)
        )),
    }
}

async fn rotate_kek(session: &Session) -> anyhow::Result<()> {
    let rotation = session
        .with_storage(async |s| Ok(s.keys().rotate_kek(&session.ctx).await?))
        .await?;
    if session.json {
        output::json(&rotation)
    } else {
        output::line(format_args!(
            "tenant {}: KEK now at version {}; tenant key re-wrapped",
            session.ctx.tenant(),
            rotation.kek_version
        ))
    }
}

async fn rotate(session: &Session, args: NsArgs) -> anyhow::Result<()> {
    let epoch = session
        .with_storage(async |s| Ok(s.keys().rotate_namespace(&session.ctx, &args.ns).await?))
        .await?;
    if session.json {
        output::json(&serde_json::json!({ "namespace": args.ns, "epoch": epoch }))
    } else {
        output::line(format_args!(
            "namespace {}: data key now at epoch {epoch}",
            args.ns
        ))
    }
}

/// `keys reencrypt NS`: the blob pass, then (once it is complete) the record pass.
async fn reencrypt(session: &Session, args: ReencryptArgs) -> anyhow::Result<()> {
    let (report, records) = session
        .with_storage(async |s| {
            let mut cursor = args.cursor.clone();
            let mut total = sanctum_storage::facade::ReencryptReport::default();
            loop {
                let opts = ReencryptOptions {
                    cursor: cursor.clone(),
                    limit: args.limit,
                };
                let batch = s
                    .keys()
                    .reencrypt_namespace(&session.ctx, &args.ns, opts)
                    .await?;
                total.epoch = batch.epoch;
                total.keys_scanned += batch.keys_scanned;
                total.bodies_rewritten += batch.bodies_rewritten;
                total.versions_resealed += batch.versions_resealed;
                total.next_cursor = batch.next_cursor.clone();
                cursor = batch.next_cursor;
                if cursor.is_none() || args.once {
                    break;
                }
            }
            if total.next_cursor.is_some() {
                return Ok((total, None));
            }
            let mut records = RecordReencryptReport::default();
            let mut cursor = None;
            loop {
                let opts = ReencryptOptions {
                    cursor: cursor.clone(),
                    limit: args.limit,
                };
                let batch = s
                    .keys()
                    .reencrypt_records(&session.ctx, &args.ns, opts)
                    .await?;
                records.epoch = batch.epoch;
                records.records_scanned += batch.records_scanned;
                records.records_resealed += batch.records_resealed;
                cursor = batch.next_cursor;
                if cursor.is_none() {
                    return Ok((total, Some(records)));
                }
            }
        })
        .await?;
    if session.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["records"] = serde_json::to_value(&records)?;
        output::json(&doc)
    } else {
        output::line(format_args!(
            "namespace {}: {} keys scanned, {} bodies rewritten, {} versions resealed, epoch {}",
            args.ns,
            report.keys_scanned,
            report.bodies_rewritten,
            report.versions_resealed,
            report.epoch
        ))?;
        if let Some(records) = &records {
            output::line(format_args!(
                "namespace {}: {} records scanned, {} records resealed",
                args.ns, records.records_scanned, records.records_resealed
            ))?;
        }
        match &report.next_cursor {
            Some(c) => output::line(format_args!("not finished; continue with --cursor {c}")),
            None => Ok(()),
        }
    }
}

async fn shred(session: &Session, args: ShredArgs) -> anyhow::Result<()> {
    if !args.yes {
        return Err(UsageError(format!(
            "keys shred makes every object of tenant {} unreadable for good; add --yes to confirm",
            session.ctx.tenant()
        ))
        .into());
    }
    session
        .with_storage(async |s| Ok(s.keys().shred_tenant(&session.ctx).await?))
        .await?;
    if session.json {
        output::json(
            &serde_json::json!({ "tenant": session.ctx.tenant().as_str(), "shredded": true }),
        )
    } else {
        output::line(format_args!(
            "tenant {} shredded: its keys are destroyed",
            session.ctx.tenant()
        ))
    }
}
