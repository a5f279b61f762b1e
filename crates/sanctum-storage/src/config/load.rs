//! Loading: TOML text, environment overrides, unknown-key detection, validation.

use std::fmt;
use std::path::Path;

use super::StorageConfig;
use crate::error::{Error, Result};

/// One configuration problem, with the path of the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path, e.g. `blob.root`, or the environment variable's name.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration (the source of a `Config` error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// The problems, in the order found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigReport {}

impl ConfigReport {
    fn into_error(self, origin: &str) -> Error {
        Error::config(format!("invalid configuration ({origin}): {self}")).with_source(self)
    }
}

const ENV_PREFIX: &str = "SANCTUM_";

/// Turns `SANCTUM_BLOB__INLINE_THRESHOLD=1` into (`blob.inline_threshold`, value). Only names
/// with a `__` section separator, and `SANCTUM_ENVIRONMENT`, are configuration; other
/// `SANCTUM_*` names (such as `SANCTUM_HOME`) belong to the CLI.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest == "ENVIRONMENT" {
        return Some(vec!["environment".into()]);
    }
    let (section, key) = rest.split_once("__")?;
    Some(vec![section.to_ascii_lowercase(), key.to_ascii_lowercase()])
}

/// Parses an override value as a TOML value when it is one (`42`, `true`), else as a string.
fn env_value(raw: &str) -> toml::Value {
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
        _ => toml::Value::String(raw.to_string()),
    }
}

impl StorageConfig {
    /// Parses TOML `text`, applies overrides from `env` (name, value pairs), and validates.
    pub fn from_toml_str<I, K, V>(text: &str, env: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::parse(text, env, "text")
    }

    /// Reads the TOML file at `path`, applies overrides from `env`, and validates.
    pub fn from_file<I, K, V>(path: &Path, env: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read configuration file {}: {}",
                path.display(),
                e.kind()
            ))
            .with_source(e)
        })?;
        Self::parse(&text, env, &path.display().to_string())
    }

    /// Validates a configuration built in code (the same checks as loading).
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigReport { problems }.into_error("in code"))
        }
    }

    /// Applies environment overrides to a configuration built in code (such as
    /// [`StorageConfig::embedded`]) and validates the result.
    pub fn with_env_overrides<I, K, V>(self, env: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let table = toml::Table::try_from(&self).map_err(|e| {
            Error::config("cannot represent the configuration as TOML").with_source(e)
        })?;
        Self::parse_table(table, env, "defaults")
    }

    fn parse<I, K, V>(text: &str, env: I, origin: &str) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = e.message().replace('\n', " ");
            ConfigReport {
                problems: vec![ConfigProblem {
                    path: "(syntax)".into(),
                    message,
                }],
            }
            .into_error(origin)
        })?;
        Self::parse_table(table, env, origin)
    }

    fn parse_table<I, K, V>(mut table: toml::Table, env: I, origin: &str) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut problems = Vec::new();
        // Which dotted paths came from which environment variable, to name them in problems.
        let mut from_env: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Some(path) = env_path(name) else { continue };
            from_env.push((path.join("."), name.to_string()));
            let value = env_value(value);
            match path.as_slice() {
                [key] => {
                    table.insert(key.clone(), value);
                }
                [section, key] => {
                    let entry = table
                        .entry(section.clone())
                        .or_insert_with(|| toml::Value::Table(Default::default()));
                    match entry {
                        toml::Value::Table(t) => {
                            t.insert(key.clone(), value);
                        }
                        _ => problems.push(ConfigProblem {
                            path: name.into(),
                            message: format!("{section} is not a section"),
                        }),
                    }
                }
                _ => unreachable!("env_path yields one or two parts"),
            }
        }
        let mut unknown = Vec::new();
        let value = toml::Value::Table(table);
        let mut note_unknown = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let deserializer = serde_ignored::Deserializer::new(value, &mut note_unknown);
        let parsed: Option<StorageConfig> = match serde_path_to_error::deserialize(deserializer) {
            Ok(c) => Some(c),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().to_string().replace('\n', " ");
                problems.push(ConfigProblem { path, message });
                None
            }
        };
        problems.extend(unknown.into_iter().map(|path| ConfigProblem {
            path,
            message: "unknown key".into(),
        }));
        if let Some(config) = &parsed {
            problems.extend(config.problems());
        }
        for problem in &mut problems {
            if let Some((_, var)) = from_env.iter().find(|(path, _)| *path == problem.path) {
                problem.message = format!("{} (set by {var})", problem.message);
            }
        }
        match parsed {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigReport { problems }.into_error(origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::config::{BlobBackend, Environment};

    const NO_ENV: [(&str, &str); 0] = [];

    fn report(err: &Error) -> &ConfigReport {
        std::error::Error::source(err)
            .unwrap()
            .downcast_ref::<ConfigReport>()
            .unwrap()
    }

    #[test]
    fn parses_and_applies_env_overrides() {
        let c = StorageConfig::from_toml_str(
            "[blob]\nroot = \"/data\"\ninline_threshold = 10\n",
            [
                ("SANCTUM_BLOB__INLINE_THRESHOLD", "20"),
                ("SANCTUM_HOME", "/ignored"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.blob.inline_threshold, 20);
        assert_eq!(c.blob.root.as_deref(), Some(Path::new("/data")));
        assert_eq!(c.environment, Environment::Development);
        let c = StorageConfig::from_toml_str("", [("SANCTUM_BLOB__BACKEND", "memory")]).unwrap();
        assert_eq!(c.blob.backend, BlobBackend::Memory);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let err = StorageConfig::from_toml_str(
            "environment = \"production\"\nbogus = 1\n[blob]\nbackend = \"memory\"\nrot = \"/x\"\ninline_threshold = 99999999\ndurability = \"os\"\n",
            [("SANCTUM_BLOB__TYPO", "1")],
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
        let paths: Vec<&str> = report(&err)
            .problems
            .iter()
            .map(|p| p.path.as_str())
            .collect();
        for expected in [
            "bogus",
            "blob.rot",
            "blob.typo",
            "blob.inline_threshold",
            "blob.backend",
            "blob.durability",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn type_errors_and_syntax_errors_are_config_errors() {
        let err = StorageConfig::from_toml_str(
            "[blob]\ninline_threshold = \"big\"\nroot = \"/x\"",
            NO_ENV,
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
        let err = StorageConfig::from_toml_str("[blob", NO_ENV).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
        let err = StorageConfig::from_toml_str("", NO_ENV).unwrap_err();
        assert!(err.to_string().contains("blob.root"), "{err}");
    }

    #[test]
    fn env_type_errors_name_the_key_and_the_variable() {
        let err = StorageConfig::embedded("/home")
            .with_env_overrides([("SANCTUM_BLOB__INLINE_THRESHOLD", "abc")])
            .unwrap_err();
        let problems = &report(&err).problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "blob.inline_threshold");
        assert!(
            problems[0]
                .message
                .contains("SANCTUM_BLOB__INLINE_THRESHOLD"),
            "{problems:?}"
        );
        assert!(!err.to_string().contains('\n'));
        let ok = StorageConfig::embedded("/home")
            .with_env_overrides([("SANCTUM_BLOB__DURABILITY", "os")])
            .unwrap();
        assert_eq!(ok.blob.durability, crate::adapters::local::Durability::Os);
        assert_eq!(ok.blob.root.as_deref(), Some(Path::new("/home/blobs")));
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err =
            StorageConfig::from_file(Path::new("/nonexistent/sanctum.toml"), NO_ENV).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
    }

    fn problem_paths(err: &Error) -> Vec<String> {
        report(err)
            .problems
            .iter()
            .map(|p| p.path.clone())
            .collect()
    }

    #[test]
    fn cloud_settings_are_validated_together() {
        let err = StorageConfig::from_toml_str(
            "environment = \"production\"\n[keys]\nprovider = \"openbao\"\nopenbao_addr = \"https://bao\"\n\
             [audit]\nsink = \"jsonl\"\npath = \"/a\"\n\
             [blob]\nbackend = \"s3\"\nprefix = \"../Up\"\npart_size = 1024\npart_concurrency = 0\n\
             max_retries = 99\nallow_http = true\nuse_emulator = true\n",
            NO_ENV,
        )
        .unwrap_err();
        let paths = problem_paths(&err);
        for expected in [
            "blob.prefix",
            "blob.part_size",
            "blob.part_concurrency",
            "blob.max_retries",
            "blob.use_emulator",
            "blob.allow_http",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn cloud_config_from_text_and_environment() {
        let c = StorageConfig::from_toml_str(
            "[blob]\nbackend = \"s3\"\nbucket = \"data\"\nprefix = \"prod/app\"\n\
             endpoint = \"http://127.0.0.1:9000\"\npath_style = true\n[keys]\nkeyring = \"/k.json\"\n",
            [
                ("SANCTUM_BLOB__MAX_RETRIES", "5"),
                ("SANCTUM_BLOB__ALLOW_HTTP", "true"),
            ],
        );
        if cfg!(feature = "s3") {
            let c = c.unwrap();
            assert_eq!(c.blob.backend, BlobBackend::S3);
            assert_eq!(c.blob.max_retries, 5);
            assert_eq!(c.blob.allow_http, Some(true));
            assert_eq!(c.blob.prefix.as_deref(), Some("prod/app"));
            assert_eq!(c.key_provider(), crate::config::KeyProviderKind::Local);
        } else {
            let err = c.unwrap_err();
            assert_eq!(problem_paths(&err), ["blob.backend"]);
            assert!(err.to_string().contains("`s3` feature"), "{err}");
        }
    }
}
