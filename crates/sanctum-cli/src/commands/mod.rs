//! Running a parsed command: configuration, context, the storage client, and the commands that
//! are not about blobs.

mod blob;
mod keys;
mod policy;
mod quota;
mod record;
mod schema;

use std::path::{Path, PathBuf};

use sanctum_storage::config::Environment;
use sanctum_storage::{
    Error, ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies,
    create_storage_client,
};

use crate::cli::{
    BlobCommand, Cli, Command, GlobalArgs, InitArgs, PolicyCommand, QuotaCommand, RecordCommand,
};
use crate::output;

/// Environment variable naming the home folder of the embedded default.
const HOME_ENV: &str = "SANCTUM_HOME";
/// Home folder of the embedded default when neither `--home` nor `SANCTUM_HOME` is given.
const DEFAULT_HOME: &str = ".sanctum";

/// Everything a command needs besides its own arguments.
#[derive(Debug)]
pub struct Session {
    /// The validated configuration.
    config: StorageConfig,
    /// The embedded default's home folder, created on first use (`None` with `--config`).
    home: Option<PathBuf>,
    /// Whether the command may create a missing home (a write); a read refuses one instead,
    /// so data stored elsewhere never seems to vanish into a fresh, empty home.
    may_create_home: bool,
    /// Tenant and actor of every call.
    pub ctx: StorageContext,
    /// `--json`.
    pub json: bool,
}

impl Session {
    /// Loads the configuration and builds the context; touches no storage yet.
    fn new(global: &GlobalArgs, may_create_home: bool) -> anyhow::Result<Self> {
        let env = config_env()?;
        let (config, home) = match &global.config {
            Some(path) => (StorageConfig::from_file(path, env)?, None),
            None => {
                let home = global
                    .home
                    .clone()
                    .or_else(|| {
                        std::env::var_os(HOME_ENV)
                            .filter(|v| !v.is_empty())
                            .map(PathBuf::from)
                    })
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
                (embedded_config(&home, env)?, Some(home))
            }
        };
        let ctx = StorageContext::new(&global.tenant, &global.actor)?;
        Ok(Self {
            config,
            home,
            may_create_home,
            ctx,
            json: global.json,
        })
    }

    /// The home folder in use, as given (`None` with `--config`).
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// Checks the home folder, creating it (mode 0700) when the command writes and it is
    /// missing, and saying so on stderr. A read of a missing home is refused.
    fn prepare_home(&self) -> anyhow::Result<()> {
        let Some(home) = &self.home else {
            return Ok(());
        };
        match std::fs::metadata(home) {
            Ok(meta) if meta.is_dir() => return check_home_mode(home, &meta),
            Ok(_) => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("the home {} is not a folder", home.display()),
                )
                .into());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("cannot read the home folder {}: {e}", home.display()),
                )
                .with_source(e)
                .into());
            }
        }
        if !self.may_create_home {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!(
                    "no sanctum home at {}: nothing has been stored there. Pass the home that \
                     holds your data with --home DIR or SANCTUM_HOME (default ./.sanctum), or \
                     create this one with a write or `sanctum init`",
                    home.display()
                ),
            )
            .into());
        }
        create_private_dir(home).map_err(|e| {
            Error::new(
                ErrorCode::Config,
                format!("cannot create the home folder {}: {e}", home.display()),
            )
            .with_source(e)
        })?;
        let shown = std::fs::canonicalize(home).unwrap_or_else(|_| home.clone());
        output::note(format_args!(
            "note: created a new sanctum home at {}",
            shown.display()
        ));
        Ok(())
    }

    /// Connects to storage, runs `f`, then closes the client. Warns once on stderr if audit
    /// events could not be recorded (a read-only home, say): `warning: …`, or with `--json`
    /// `{"warning": {"message": …}}`.
    pub async fn with_storage<T>(
        &self,
        f: impl AsyncFnOnce(&Storage) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.prepare_home()?;
        let storage =
            create_storage_client(self.config.clone(), StorageDependencies::default()).await?;
        let result = f(&storage).await;
        let closed = storage.close().await;
        if let Some(d) = storage.audit_dropped() {
            let message = format!(
                "audit events were not recorded ({}): {}",
                d.events, d.reason
            );
            if self.json {
                output::note(serde_json::json!({ "warning": { "message": message } }));
            } else {
                output::note(format_args!("warning: {message}"));
            }
        }
        let value = result?;
        closed?;
        Ok(value)
    }
}

/// Creates `dir` and its missing parents; the folder itself is 0700 whatever the umask.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a home that others may write to: they could plant grants, keys or bodies.
#[cfg(unix)]
fn check_home_mode(home: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::new(
            ErrorCode::Config,
            format!(
                "the home {} may be written by other users (mode {mode:o}); a home must be \
                 private: run `chmod 700 {}`",
                home.display(),
                home.display()
            ),
        )
        .into());
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_home_mode(_home: &Path, _meta: &std::fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

/// The process environment as UTF-8 pairs for configuration overrides. A `SANCTUM_*` variable
/// that is not UTF-8 is a configuration error rather than silently ignored.
fn config_env() -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) if name.starts_with("SANCTUM_") && name != HOME_ENV => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("environment variable {name} is not valid UTF-8"),
                )
                .into());
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// The embedded default (blobs in `<home>/blobs`), with `<home>/sanctum.toml` merged over it
/// when it exists, and environment overrides applied.
fn embedded_config(
    home: &std::path::Path,
    env: Vec<(String, String)>,
) -> anyhow::Result<StorageConfig> {
    Ok(StorageConfig::embedded_with_file(home, env)?)
}

/// Whether `command` writes, so that it may create a missing home.
fn writes(command: &Command) -> bool {
    match command {
        Command::Blob(cmd) => !matches!(
            cmd,
            BlobCommand::Get(_)
                | BlobCommand::Head(_)
                | BlobCommand::Ls(_)
                | BlobCommand::Versions(_)
        ),
        Command::Policy(cmd) => !matches!(cmd, PolicyCommand::Show),
        Command::Quota(cmd) => !matches!(cmd, QuotaCommand::Show(_)),
        Command::Record(cmd) => matches!(cmd, RecordCommand::Put(_) | RecordCommand::Rm(_)),
        Command::Keys(_) | Command::Init(_) | Command::Migrate => true,
        Command::Schema(_) => false,
        Command::Health | Command::Completions(_) => false,
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completions(args) = &cli.command {
        // Needs no configuration and touches no storage.
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(args.shell, &mut command, "sanctum", &mut std::io::stdout());
        return Ok(());
    }
    let session = Session::new(&cli.global, writes(&cli.command))?;
    match cli.command {
        Command::Blob(cmd) => blob::run(&session, cmd).await,
        Command::Keys(cmd) => keys::run(&session, cmd).await,
        Command::Policy(cmd) => policy::run(&session, cmd).await,
        Command::Quota(cmd) => quota::run(&session, cmd).await,
        Command::Record(cmd) => record::run(&session, cmd).await,
        Command::Schema(cmd) => schema::run(&session, cmd).await,
        Command::Migrate => schema::migrate(&session).await,
        Command::Health => health(&session).await,
        Command::Init(args) => init(&session, args).await,
        Command::Completions(_) => unreachable!("handled above"),
    }
}

/// `sanctum init [--admin ACTOR]`: creates the store and makes ACTOR (default `--actor`) admin
/// of the tenant, which must have no grants yet (or already have ACTOR as its admin).
async fn init(session: &Session, args: InitArgs) -> anyhow::Result<()> {
    let admin = args
        .admin
        .unwrap_or_else(|| session.ctx.actor().to_string());
    let policy = session
        .with_storage(async |s| Ok(s.policy().bootstrap_admin(&session.ctx, &admin).await?))
        .await?;
    if session.json {
        return output::json(&serde_json::json!({
            "tenant": session.ctx.tenant().as_str(),
            "admin": admin,
            "home": session.home(),
            "grants": policy.grants,
        }));
    }
    if let Some(home) = session.home() {
        output::line(format_args!("home: {}", home.display()))?;
    }
    output::line(format_args!(
        "{admin} is admin of tenant {} (all namespaces)",
        session.ctx.tenant()
    ))
}

/// `sanctum health`: prints the health report; an unhealthy adapter or key provider exits
/// `transient_adapter`.
async fn health(session: &Session) -> anyhow::Result<()> {
    let report = session
        .with_storage(async |storage| Ok(storage.health().await))
        .await?;
    if session.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["home"] = serde_json::json!(session.home());
        output::json(&doc)?;
    } else {
        if let Some(home) = session.home() {
            let shown = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
            output::line(format_args!("home: {}", shown.display()))?;
        }
        let environment = match report.environment {
            Environment::Development => "development",
            Environment::Production => "production",
        };
        output::line(format_args!("environment: {environment}"))?;
        output::line(format_args!(
            "blob adapter: {} ({})",
            report.blob_adapter_name, report.blob_adapter_kind
        ))?;
        match &report.blob_error {
            None if report.blob_ok => output::line("blob: ok")?,
            error => output::line(format_args!(
                "blob: failed: {}",
                error.as_deref().unwrap_or("unknown error")
            ))?,
        }
        match &report.keys_error {
            None if report.keys_ok => {
                output::line(format_args!("keys ({}): ok", report.key_provider_kind))?
            }
            error => output::line(format_args!(
                "keys ({}): failed: {}",
                report.key_provider_kind,
                error.as_deref().unwrap_or("unknown error")
            ))?,
        }
    }
    if report.ok() {
        Ok(())
    } else {
        let why = report
            .blob_error
            .as_deref()
            .or(report.keys_error.as_deref())
            .unwrap_or("unknown error");
        Err(Error::new(
            ErrorCode::TransientAdapter,
            format!("storage is unhealthy: {why}"),
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_quotes_awkward_paths() {
        let home = std::path::Path::new("/tmp/a \"b\" \\c\td");
        let config = embedded_config(home, Vec::new()).unwrap();
        assert_eq!(config, StorageConfig::embedded(home));
    }

    #[test]
    fn embedded_config_applies_env_overrides() {
        let env = vec![(
            "SANCTUM_BLOB__INLINE_THRESHOLD".to_string(),
            "7".to_string(),
        )];
        let config = embedded_config(std::path::Path::new("/h"), env).unwrap();
        assert_eq!(config.blob.inline_threshold, 7);
        let env = vec![(
            "SANCTUM_BLOB__INLINE_THRESHOLD".to_string(),
            "abc".to_string(),
        )];
        let err = embedded_config(std::path::Path::new("/h"), env).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Error>().unwrap().code(),
            ErrorCode::Config
        );
    }
}
