//! The command line, as clap types.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use sanctum_storage::policy::Permission;

/// `sanctum`: versioned blobs in a local folder (or any configured backend), from the shell.
#[derive(Debug, Parser)]
#[command(name = "sanctum", version, about, after_long_help = crate::exit::help_text())]
pub struct Cli {
    /// Global flags.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that apply to every command; they may come before or after it. Their ids are
/// prefixed so that no command's own argument (such as `policy grant ACTOR`) can shadow them.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Read the configuration from this TOML file (SANCTUM_<SECTION>__<KEY> variables still
    /// override it). Without it, the embedded default stores blobs under the home folder.
    #[arg(
        id = "global_config",
        long = "config",
        value_name = "FILE",
        global = true
    )]
    pub config: Option<PathBuf>,
    /// Home folder of the embedded default [env: SANCTUM_HOME; default: ./.sanctum].
    #[arg(
        id = "global_home",
        long = "home",
        value_name = "DIR",
        conflicts_with = "global_config",
        global = true
    )]
    pub home: Option<PathBuf>,
    /// The tenant to act within.
    #[arg(
        id = "global_tenant",
        long = "tenant",
        value_name = "ID",
        default_value = "default",
        global = true
    )]
    pub tenant: String,
    /// Who is acting: checked against the tenant's grants and recorded in audit events (on the
    /// embedded default, `local` may do everything; other actors need `policy grant`).
    #[arg(
        id = "global_actor",
        long = "actor",
        value_name = "ID",
        default_value = "local",
        global = true
    )]
    pub actor: String,
    /// Print results, and errors on stderr, as JSON.
    #[arg(id = "global_json", long = "json", global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Versioned blobs.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Encryption keys: rotation, re-encryption, crypto-shredding.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Access grants of the tenant: who may read, write or administer which namespaces.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Namespace quotas: limits on stored bytes and live objects.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Records: JSON documents by collection and id, with versions (optimistic locking).
    #[command(subcommand)]
    Record(RecordCommand),
    /// Record schemas: the declared collections, and drift against the record database.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Create or migrate the record database's tables (also where record.auto_migrate = false).
    Migrate,
    /// Check the configured backend and key provider; exits 9 when one is unhealthy.
    Health,
    /// Create the store (if needed) and make a first admin of the tenant, which must have no
    /// grants yet: the way in for a store configured with `--config` and no superusers.
    Init(InitArgs),
    /// Print a shell completion script to stdout (e.g. `sanctum completions bash >
    /// ~/.local/share/bash-completion/completions/sanctum`).
    Completions(CompletionsArgs),
}

/// `sanctum init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The actor who becomes admin of the whole tenant (default: `--actor`).
    #[arg(long, value_name = "ACTOR")]
    pub admin: Option<String>,
}

/// `sanctum completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `sanctum blob ...`.
#[derive(Debug, Subcommand)]
pub enum BlobCommand {
    /// Store a new version of a key from a file or stdin (streamed).
    Put(PutArgs),
    /// Read a key (current or given version, optionally a byte range) to stdout or a file.
    Get(GetArgs),
    /// Show the current version of a key.
    Head(KeyArgs),
    /// List live keys of a namespace.
    Ls(LsArgs),
    /// Delete a key (a tombstone version; `restore` can undo it).
    Rm(KeyArgs),
    /// List every version of a key, newest first.
    Versions(KeyArgs),
    /// Make an old version current again.
    Restore(RestoreArgs),
    /// Remove a key with all its versions and history, for good.
    Purge(KeyArgs),
    /// Remove what crashed or interrupted writers left: unreferenced bodies and pages, temp files.
    Sweep(SweepArgs),
}

/// `sanctum keys ...` (all act on the `--tenant`).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the tenant's root key (KEK): re-wraps the tenant key; rewrites no data.
    RotateKek,
    /// Start a new data-key epoch for a namespace: new writes use it, old data stays readable.
    Rotate(NsArgs),
    /// Re-encrypt a namespace's data under its newest data key (resumable with --cursor).
    Reencrypt(ReencryptArgs),
    /// Destroy the tenant's keys (crypto-shredding): all of its data becomes unreadable.
    Shred(ShredArgs),
    /// Rotate the tenant key: a new one wraps new data keys (each namespace gets a new epoch);
    /// the old one stays decrypt-only until `keys retire-tenant-keys`.
    RotateTenantKey,
    /// Drop the older tenant keys for good (after `keys reencrypt` and `keys retire` of every
    /// namespace since the rotation).
    RetireTenantKeys,
    /// Authenticate key records written before key records were authenticated (run once,
    /// on a store you trust as it is; then run `keys reencrypt` on each namespace).
    Upgrade,
    /// Show a namespace's data-key epochs and their states (active, decrypt-only, retired).
    Epochs(NsArgs),
    /// Retire old data-key epochs of a namespace: data under them is refused from then on.
    /// Refused while data under them remains (run `keys reencrypt` first).
    Retire(RetireArgs),
}

/// `sanctum keys retire NS [--epochs N,..]`.
#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The namespace.
    pub ns: String,
    /// The epochs to retire (comma-separated); default: every decrypt-only epoch.
    #[arg(long, value_delimiter = ',')]
    pub epochs: Option<Vec<u32>>,
}

/// `sanctum policy ...` (all act on the `--tenant`).
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Give an actor a permission on a namespace (or `*`, the whole tenant), optionally only
    /// for keys under a prefix; replaces the actor's grant for the same namespace and prefix.
    Grant(GrantArgs),
    /// Remove an actor's grant on a namespace with exactly this prefix (or none).
    Revoke(RevokeArgs),
    /// List the tenant's grants.
    Show,
}

/// A permission level; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionArg {
    /// Get, head, list, versions; show quotas.
    Read,
    /// Read, plus put and rm.
    Write,
    /// Write, plus restore, purge, sweep, keys, quota and policy changes.
    Admin,
}

impl From<PermissionArg> for Permission {
    fn from(p: PermissionArg) -> Self {
        match p {
            PermissionArg::Read => Permission::Read,
            PermissionArg::Write => Permission::Write,
            PermissionArg::Admin => Permission::Admin,
        }
    }
}

/// `policy grant`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The actor the grant is for.
    #[arg(value_name = "ACTOR")]
    pub actor: String,
    /// The level granted.
    #[arg(value_name = "PERMISSION")]
    pub permission: PermissionArg,
    /// The namespace, or `*` for every namespace of the tenant.
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// Only keys starting with this prefix.
    #[arg(long, value_name = "KEY_PREFIX")]
    pub prefix: Option<String>,
}

/// `policy revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The actor whose grant goes.
    #[arg(value_name = "ACTOR")]
    pub actor: String,
    /// The namespace of the grant, or `*`.
    #[arg(long, value_name = "NS")]
    pub namespace: String,
    /// The grant's key prefix (it must match exactly; without it, the grant without a prefix).
    #[arg(long, value_name = "KEY_PREFIX")]
    pub prefix: Option<String>,
}

/// `sanctum quota ...` (namespaces of the `--tenant`).
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a namespace's limits (replacing its old ones; a limit left out is unlimited).
    Set(QuotaSetArgs),
    /// Show a namespace's limits and usage.
    Show(NsArgs),
    /// Remove a namespace's quota.
    Rm(NsArgs),
}

/// `sanctum schema ...`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print the declared collections: versions and schema fingerprints.
    Show,
    /// Compare the declarations with the record database and print the drift (exits 0 with
    /// drift too: the report is the answer).
    Check,
}

/// `sanctum record ...`.
#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Write a JSON object as the next version of a record; prints the new version.
    Put(RecordPutArgs),
    /// Print a record's document (with --json: the document and its version).
    Get(RecordArgs),
    /// Delete a record.
    Rm(RecordRmArgs),
    /// List a collection's records, in id order.
    Ls(RecordLsArgs),
}

/// A namespace, a collection and a record id.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// The collection (1-63 of [a-z0-9-]).
    #[arg(value_name = "COLLECTION")]
    pub collection: String,
    /// The record id.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `record put`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("condition").multiple(false)))]
pub struct RecordPutArgs {
    /// Where.
    #[command(flatten)]
    pub at: RecordArgs,
    /// The file holding the JSON object, or `-` (the default) for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,
    /// Replace only this version; another one is a conflict (exit status 4).
    #[arg(long, value_name = "V", group = "condition")]
    pub if_version: Option<u64>,
    /// Create only; an existing record is a conflict (exit status 4).
    #[arg(long, group = "condition")]
    pub if_absent: bool,
}

/// `record rm`.
#[derive(Debug, Args)]
pub struct RecordRmArgs {
    /// Where.
    #[command(flatten)]
    pub at: RecordArgs,
    /// Delete only this version.
    #[arg(long, value_name = "V")]
    pub if_version: Option<u64>,
}

/// `record ls`.
#[derive(Debug, Args)]
pub struct RecordLsArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// The collection.
    #[arg(value_name = "COLLECTION")]
    pub collection: String,
    /// At most this many records.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// Continue after the page that printed this cursor.
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
}

/// `quota set`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limits").required(true).multiple(true)))]
pub struct QuotaSetArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// The most plaintext bytes the namespace may keep, old versions included: N, or N with
    /// B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, group = "limits")]
    pub max_bytes: Option<u64>,
    /// The most live objects the namespace may hold.
    #[arg(long, value_name = "N", group = "limits")]
    pub max_objects: Option<u64>,
    /// The most live records the namespace may hold.
    #[arg(long, value_name = "N", group = "limits")]
    pub max_records: Option<u64>,
    /// The most bytes of sealed record documents the namespace may keep (SIZE as for
    /// --max-bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, group = "limits")]
    pub max_record_bytes: Option<u64>,
}

/// A namespace.
#[derive(Debug, Args)]
pub struct NsArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
}

/// `keys reencrypt`.
#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// Continue after this cursor (printed by an earlier run).
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// Keys per batch; the command runs batches until the namespace is done unless --once.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// Run one batch and print the cursor to continue from.
    #[arg(long)]
    pub once: bool,
}

/// `keys shred`.
#[derive(Debug, Args)]
pub struct ShredArgs {
    /// Confirm: the tenant's data becomes unreadable for good.
    #[arg(long)]
    pub yes: bool,
}

/// A namespace and a key.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The namespace (1-63 of [a-z0-9-]).
    #[arg(value_name = "NS")]
    pub ns: String,
    /// The object key.
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// `blob put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Namespace and key.
    #[command(flatten)]
    pub target: KeyArgs,
    /// The file to store, or `-` to read stdin.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Write only if the current version is this one (else exit 4, conflict).
    #[arg(long, value_name = "VERSION", conflicts_with = "if_none_match")]
    pub if_match: Option<String>,
    /// Write only if the key does not exist (else exit 4, conflict).
    #[arg(long)]
    pub if_none_match: bool,
    /// The content type to store with the version.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// User metadata, repeatable.
    #[arg(long = "meta", value_name = "K=V", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
}

/// `blob get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Namespace and key.
    #[command(flatten)]
    pub target: KeyArgs,
    /// Read this version instead of the current one.
    #[arg(long = "version", value_name = "VERSION")]
    pub version_id: Option<String>,
    /// Read only these bytes: START-END (inclusive), START- or -SUFFIX.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// Write the body to this file (atomically: replaced only after a complete, verified read).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `blob ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// Only keys starting with this.
    #[arg(value_name = "PREFIX", default_value = "")]
    pub prefix: String,
    /// At most this many objects (1-1000).
    #[arg(long, value_name = "N", default_value_t = sanctum_storage::facade::MAX_LIST_LIMIT)]
    pub limit: usize,
    /// Continue after the page that printed this cursor.
    #[arg(long, value_name = "C")]
    pub cursor: Option<String>,
    /// List past keys whose head manifest is damaged (each is reported on stderr) instead of
    /// failing on the first one.
    #[arg(long)]
    pub skip_damaged: bool,
}

/// `blob restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Namespace and key.
    #[command(flatten)]
    pub target: KeyArgs,
    /// The version to make current again.
    #[arg(value_name = "VERSION")]
    pub version_id: String,
}

/// `blob sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The namespace.
    #[arg(value_name = "NS")]
    pub ns: String,
    /// Only remove leftovers older than this many seconds.
    #[arg(long, value_name = "N", default_value_t = 3600)]
    pub grace_secs: u64,
}

/// Parses `K=V` (the value may contain `=`).
fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// Parses a byte count: digits, optionally followed by a unit (case-insensitive): `B`, `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a byte count such as 1000000, 500KiB, 10MiB or 1GB, got {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is more than {} bytes", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn meta_needs_an_equals_sign() {
        assert_eq!(parse_meta("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_meta("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_meta("ab").is_err());
        assert!(parse_meta("=b").is_err());
    }

    #[test]
    fn byte_counts_take_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1000B"), Ok(1000));
        assert_eq!(parse_bytes("500KiB"), Ok(500 * 1024));
        assert_eq!(parse_bytes("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_bytes("10mib"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2TiB"), Ok(2 << 40));
        assert_eq!(parse_bytes("3kB"), Ok(3000));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4 MB"), Ok(4_000_000));
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5GiB",
            "10XB",
            "10 M",
            "+5",
            " 5",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
