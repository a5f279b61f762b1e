//! Running a parsed command: configuration, context, the storage client, and the commands that
//! are not about blobs.

mod blob;
mod keys;
mod policy;
mod quota;

use std::path::PathBuf;

use sanctum_storage::config::Environment;
use sanctum_storage::{
    Error, ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies,
    create_storage_client,
};

use crate::cli::{Cli, Command, GlobalArgs};
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
    /// Tenant and actor of every call.
    pub ctx: StorageContext,
    /// `--json`.
    pub json: bool,
}

impl Session {
    /// Loads the configuration and builds the context; touches no storage yet.
    fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
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
            ctx,
            json: global.json,
        })
    }

    /// Connects to storage, runs `f`, then closes the client. Warns once on stderr if audit
    /// events could not be recorded (a read-only home, say): `warning: …`, or with `--json`
    /// `{"warning": {"message": …}}`.
    pub async fn with_storage<T>(
        &self,
        f: impl AsyncFnOnce(&Storage) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if let Some(home) = &self.home {
            std::fs::create_dir_all(home).map_err(|e| {
                Error::new(
                    ErrorCode::Config,
                    format!("cannot create the home folder {}: {e}", home.display()),
                )
                .with_source(e)
            })?;
        }
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

/// The embedded default (blobs in `<home>/blobs`), with environment overrides applied.
fn embedded_config(
    home: &std::path::Path,
    env: Vec<(String, String)>,
) -> anyhow::Result<StorageConfig> {
    Ok(StorageConfig::embedded(home).with_env_overrides(env)?)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let session = Session::new(&cli.global)?;
    match cli.command {
        Command::Blob(cmd) => blob::run(&session, cmd).await,
        Command::Keys(cmd) => keys::run(&session, cmd).await,
        Command::Policy(cmd) => policy::run(&session, cmd).await,
        Command::Quota(cmd) => quota::run(&session, cmd).await,
        Command::Health => health(&session).await,
    }
}

/// `sanctum health`: prints the health report; an unhealthy adapter or key provider exits
/// `transient_adapter`.
async fn health(session: &Session) -> anyhow::Result<()> {
    let report = session
        .with_storage(async |storage| Ok(storage.health().await))
        .await?;
    if session.json {
        output::json(&report)?;
    } else {
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
