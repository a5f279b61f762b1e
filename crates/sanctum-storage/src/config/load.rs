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
        let mut config = Self::parse(&text, env, &path.display().to_string())?;
        config.resolve_schema_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// The embedded default for `home` ([`StorageConfig::embedded`]), with `<home>/sanctum.toml`
    /// merged over it when that file exists (its tables merge key by key; other values
    /// replace), then overrides from `env`. A CLI user can so declare collections, or change
    /// any setting, and keep the embedded home.
    pub fn embedded_with_file<I, K, V>(home: &Path, env: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut table = toml::Table::try_from(Self::embedded(home)).map_err(|e| {
            Error::config("cannot represent the configuration as TOML").with_source(e)
        })?;
        let file = home.join(HOME_CONFIG_FILE);
        let origin = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let overlay: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    ConfigReport {
                        problems: vec![ConfigProblem {
                            path: "(syntax)".into(),
                            message: e.message().replace('\n', " "),
                        }],
                    }
                    .into_error(&origin)
                })?;
                merge_tables(&mut table, overlay);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::config(format!(
                    "cannot read configuration file {origin}: {}",
                    e.kind()
                ))
                .with_source(e));
            }
        }
        let mut config = Self::parse_table(table, env, &origin)?;
        config.resolve_schema_paths(home);
        Ok(config)
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
        // Deserialize; on a type error, note it, drop the offending key (every key has a
        // default) and try again, so one pass reports every bad value, not just the first.
        let mut unknown = Vec::new();
        let mut value = toml::Value::Table(table);
        let mut parsed: Option<StorageConfig> = None;
        for _ in 0..MAX_TYPE_PROBLEMS {
            unknown.clear();
            let mut note_unknown = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
            let deserializer = serde_ignored::Deserializer::new(value.clone(), &mut note_unknown);
            match serde_path_to_error::deserialize::<_, StorageConfig>(deserializer) {
                Ok(c) => {
                    parsed = Some(c);
                    break;
                }
                Err(e) => {
                    let path = e.path().to_string();
                    let found = lookup(&value, &path).cloned();
                    let mut message = e.into_inner().to_string();
                    if message.contains("expected string only") {
                        // An enum: ask serde for its variants by offering a string it lacks.
                        if let Some(choices) = enum_choices(&value, &path) {
                            message = format!("invalid type: expected {choices}");
                        }
                    }
                    let message = plain_type_error(&message, found.as_ref());
                    problems.push(ConfigProblem {
                        path: path.clone(),
                        message,
                    });
                    if !remove_path(&mut value, &path) {
                        break; // nothing left to drop: stop with what we have
                    }
                }
            }
        }
        problems.extend(unknown.into_iter().map(|path| ConfigProblem {
            path,
            message: "unknown key".into(),
        }));
        if let Some(config) = &parsed {
            // A dropped bad value reads as unset; don't also report what its absence implies.
            let dropped: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
            problems.extend(config.problems().into_iter().filter(|p| {
                !dropped
                    .iter()
                    .any(|d| p.path == *d || p.message.contains(d.as_str()))
            }));
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

/// The file in the embedded home that [`StorageConfig::embedded_with_file`] merges.
pub const HOME_CONFIG_FILE: &str = "sanctum.toml";

/// Merges `overlay` into `base`: tables key by key, anything else replaced.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => {
                merge_tables(inner, over)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The most type errors one load reports (each costs a deserialization pass).
const MAX_TYPE_PROBLEMS: usize = 64;

/// The variants of the enum at `path`, as serde lists them (`one of `fsync`, `os``).
fn enum_choices(value: &toml::Value, path: &str) -> Option<String> {
    let mut probe = value.clone();
    let keys = path_keys(path);
    let (last, parents) = keys.split_last()?;
    let mut table = probe.as_table_mut()?;
    for k in parents {
        table = table.get_mut(*k)?.as_table_mut()?;
    }
    table.insert(
        (*last).to_string(),
        toml::Value::String("\u{1}".to_string()),
    );
    let err = serde_path_to_error::deserialize::<_, StorageConfig>(probe).err()?;
    let message = err.into_inner().to_string();
    let choices = message.split_once("expected ")?.1;
    let choices = choices.replace('`', "\"").replace('\n', " ");
    let choices = match choices.rfind(" in \"") {
        Some(at) => &choices[..at],
        None => &choices,
    };
    Some(choices.trim().trim_end_matches('.').to_string())
}

/// The top-level key of a serde path such as `policy.superusers[0]`: `["policy", "superusers"]`.
fn path_keys(path: &str) -> Vec<&str> {
    let path = path.split('[').next().unwrap_or(path);
    path.split('.')
        .filter(|k| !k.is_empty() && *k != "?")
        .collect()
}

fn lookup<'a>(value: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    path_keys(path)
        .into_iter()
        .try_fold(value, |v, k| v.as_table()?.get(k))
}

/// Removes the value at `path` (a whole array for a bad element); false if there was none.
fn remove_path(value: &mut toml::Value, path: &str) -> bool {
    let keys = path_keys(path);
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut table = match value.as_table_mut() {
        Some(t) => t,
        None => return false,
    };
    for k in parents {
        table = match table.get_mut(*k).and_then(toml::Value::as_table_mut) {
            Some(t) => t,
            None => return false,
        };
    }
    table.remove(*last).is_some()
}

/// What a TOML value is, in words: "a string (\"fast\")", "an integer (1)", ...
fn describe_value(v: &toml::Value) -> String {
    let shown = |s: String| -> String {
        if s.len() > 40 {
            format!("{}...", s.chars().take(40).collect::<String>())
        } else {
            s
        }
    };
    match v {
        toml::Value::String(s) => format!("a string ({})", shown(format!("{s:?}"))),
        toml::Value::Integer(i) => format!("an integer ({i})"),
        toml::Value::Float(f) => format!("a number ({f})"),
        toml::Value::Boolean(b) => format!("a boolean ({b})"),
        toml::Value::Datetime(d) => format!("a date ({d})"),
        toml::Value::Array(_) => "a list".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// Rewrites serde's type errors ("invalid type: unit variant, expected string only") in plain
/// words: what was expected, and what the file holds.
fn plain_type_error(serde_message: &str, found: Option<&toml::Value>) -> String {
    let message = serde_message.replace('\n', " ");
    // toml appends " in `path`"; the report names the path already.
    let message = match message.find(" in `") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    let expected = message
        .split_once("expected ")
        .map(|(_, e)| e.trim_end_matches('.').trim())
        .map(|e| match e {
            "a boolean" | "bool" => "true or false".to_string(),
            "u64" | "u32" | "u16" | "usize" | "u8" => "a whole number of 0 or more".to_string(),
            "i64" | "i32" => "a whole number".to_string(),
            "a string" | "string only" | "a borrowed string" | "a string or a table" => {
                "a string".to_string()
            }
            "path string" => "a path (a string)".to_string(),
            e if e.starts_with("a sequence") => "a list".to_string(),
            e => e.to_string(),
        });
    let found = found.map(describe_value);
    match (message.starts_with("unknown variant"), expected, found) {
        (true, Some(expected), Some(found)) => format!("expected {expected}, found {found}"),
        (false, Some(expected), Some(found)) if message.starts_with("invalid") => {
            format!("expected {expected}, found {found}")
        }
        _ => message,
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
    fn every_type_error_is_reported_in_plain_words() {
        let err = StorageConfig::from_toml_str(
            "[blob]\ndurability = 1\ninline_threshold = \"big\"\nroot = true\n\
             [policy]\nsuperusers = \"root\"\ncache_ttl_ms = -5\n",
            NO_ENV,
        )
        .unwrap_err();
        let problems = &report(&err).problems;
        let find = |path: &str| {
            problems
                .iter()
                .find(|p| p.path == path)
                .unwrap_or_else(|| panic!("{path} missing from {problems:?}"))
                .message
                .clone()
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert_eq!(
            find("blob.durability"),
            "expected \"fsync\" or \"os\", found an integer (1)"
        );
        let threshold = find("blob.inline_threshold");
        assert!(
            threshold.contains("whole number") && threshold.contains("found a string (\"big\")"),
            "{threshold}"
        );
        assert!(find("blob.root").contains("found a boolean (true)"));
        assert!(find("policy.superusers").contains("list"));
        assert!(find("policy.cache_ttl_ms").contains("found an integer (-5)"));
        assert!(!err.to_string().contains("unit variant"), "{err}");
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
    fn the_home_file_merges_over_the_embedded_default() {
        let home = tempfile::tempdir().unwrap();
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            StorageConfig::embedded_with_file(home.path(), none).unwrap(),
            StorageConfig::embedded(home.path())
        );
        std::fs::write(
            home.path().join(HOME_CONFIG_FILE),
            "[blob]\ninline_threshold = 100\n[[record.collections]]\nname = \"users\"\n\
             [[record.collections.versions]]\nversion = 1\nschema = \"users.v1.json\"\n",
        )
        .unwrap();
        let merged =
            StorageConfig::embedded_with_file(home.path(), [("SANCTUM_RECORD__POOL_SIZE", "3")])
                .unwrap();
        assert_eq!(merged.blob.inline_threshold, 100);
        // Keys the file does not set keep the embedded default.
        assert_eq!(merged.blob.root, Some(home.path().join("blobs")));
        assert_eq!(merged.record.path, Some(home.path().join("records.db")));
        assert_eq!(merged.record.pool_size, 3);
        assert_eq!(
            merged.record.collections[0].versions[0].schema,
            home.path().join("users.v1.json")
        );
        // The schema file is read when the schemas are asked for.
        assert_eq!(
            merged.record_schemas().unwrap_err().code(),
            ErrorCode::Config
        );
        std::fs::write(home.path().join("users.v1.json"), r#"{"type": "object"}"#).unwrap();
        assert_eq!(merged.record_schemas().unwrap()[0].newest(), 1);
        std::fs::write(home.path().join(HOME_CONFIG_FILE), "[blob]\nbogus = 1\n").unwrap();
        let err = StorageConfig::embedded_with_file(home.path(), none).unwrap_err();
        assert!(err.to_string().contains("blob.bogus"), "{err}");
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
