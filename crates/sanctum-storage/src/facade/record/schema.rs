//! Declared schemas of record collections: versioned JSON Schemas, the upcasters that bring an
//! older document to the newest version, and the fingerprints that drift detection compares.
//!
//! A collection's versions are numbered 1, 2, 3, … with no gap. Writes validate against the
//! newest; a read of a document written under version `v` runs the upcasters `v→v+1`, …, up to
//! the newest. An upcaster is a Rust function ([`CollectionSchema::upcast_with`]) or a list of
//! declarative [`UpcastStep`]s, usable from TOML. A document written before the collection had a
//! declaration (schema version 0) is upcast like one of version 1.
//!
//! Schemas are compiled by `jsonschema` without remote or file `$ref` resolution (no
//! `resolve-*` features): a schema that refers outside itself fails to compile.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A Rust upcaster: takes a document of version `v`, returns it as version `v + 1`.
pub type UpcastFn = Arc<dyn Fn(Value) -> Result<Value> + Send + Sync>;

/// One declarative change of a document, from the previous schema version to the next. Fields
/// are JSON pointers (`/name`, `/address/city`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UpcastStep {
    /// Sets the field to `default` where it is missing (its parent object must exist).
    Add {
        /// The field.
        add: String,
        /// Its value where it is missing.
        default: Value,
    },
    /// Moves the field's value to `to` (nothing happens where it is missing).
    Rename {
        /// The field.
        rename: String,
        /// Its new place.
        to: String,
    },
    /// Removes the field (nothing happens where it is missing).
    Remove {
        /// The field.
        remove: String,
    },
}

impl UpcastStep {
    fn check(&self) -> Result<()> {
        let pointers: Vec<&str> = match self {
            UpcastStep::Add { add, .. } => vec![add],
            UpcastStep::Rename { rename, to } => vec![rename, to],
            UpcastStep::Remove { remove } => vec![remove],
        };
        for pointer in pointers {
            split_pointer(pointer)?;
        }
        Ok(())
    }

    fn apply(&self, mut doc: Value) -> Result<Value> {
        match self {
            UpcastStep::Add { add, default } => {
                let (parent, field) = split_pointer(add)?;
                if let Some(object) = doc.pointer_mut(parent).and_then(Value::as_object_mut) {
                    object.entry(field).or_insert_with(|| default.clone());
                }
            }
            UpcastStep::Rename { rename, to } => {
                if let Some(value) = take(&mut doc, rename)? {
                    let (parent, field) = split_pointer(to)?;
                    match doc.pointer_mut(parent).and_then(Value::as_object_mut) {
                        Some(object) => {
                            object.insert(field, value);
                        }
                        None => {
                            return Err(Error::consistency(format!(
                                "upcaster: cannot rename to {to}: its parent is not an object"
                            )));
                        }
                    }
                }
            }
            UpcastStep::Remove { remove } => {
                take(&mut doc, remove)?;
            }
        }
        Ok(doc)
    }
}

/// Splits a JSON pointer into its parent's pointer and the last field (unescaped).
fn split_pointer(pointer: &str) -> Result<(&str, String)> {
    let bad = || {
        Error::config(format!(
            "upcaster field '{pointer}' is not a JSON pointer to a field (like /name or /a/b)"
        ))
    };
    if !pointer.starts_with('/') {
        return Err(bad());
    }
    let cut = pointer.rfind('/').ok_or_else(bad)?;
    let field = pointer[cut + 1..].replace("~1", "/").replace("~0", "~");
    if field.is_empty() {
        return Err(bad());
    }
    Ok((&pointer[..cut], field))
}

fn take(doc: &mut Value, pointer: &str) -> Result<Option<Value>> {
    let (parent, field) = split_pointer(pointer)?;
    Ok(doc
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(&field)))
}

/// How a document of the previous version becomes one of this version.
#[derive(Clone)]
enum Upcaster {
    Steps(Vec<UpcastStep>),
    Function(UpcastFn),
}

impl fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upcaster::Steps(steps) => f.debug_tuple("Steps").field(steps).finish(),
            Upcaster::Function(_) => f.write_str("Function"),
        }
    }
}

/// One declared schema version.
#[derive(Clone)]
struct Version {
    schema: Value,
    validator: Arc<jsonschema::Validator>,
    fingerprint: String,
    /// From the previous version to this one (`None` for version 1, or not yet given).
    upcaster: Option<Upcaster>,
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("fingerprint", &self.fingerprint)
            .field("upcaster", &self.upcaster)
            .finish_non_exhaustive()
    }
}

/// The declared schema versions of one collection. Build it version by version:
///
/// ```
/// use sanctum_storage::facade::record::{CollectionSchema, UpcastStep};
/// use serde_json::json;
///
/// let users = CollectionSchema::new("users")
///     .version(1, json!({"type": "object", "required": ["name"]}))?
///     .version(2, json!({"type": "object", "required": ["full_name", "plan"]}))?
///     .upcast_steps(2, vec![
///         UpcastStep::Rename { rename: "/name".into(), to: "/full_name".into() },
///         UpcastStep::Add { add: "/plan".into(), default: json!("free") },
///     ])?;
/// assert_eq!(users.newest(), 2);
/// # Ok::<(), sanctum_storage::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CollectionSchema {
    name: String,
    versions: Vec<Version>,
}

impl CollectionSchema {
    /// A collection with no version yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            versions: Vec::new(),
        }
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The newest declared version (0 with none).
    pub fn newest(&self) -> u32 {
        self.versions.len() as u32
    }

    /// Declares the next version, `version` (1 for the first), with its JSON Schema. A schema
    /// that does not compile is a `Config` error.
    pub fn version(mut self, version: u32, schema: Value) -> Result<Self> {
        if version != self.newest() + 1 {
            return Err(Error::config(format!(
                "collection '{}': schema versions must be declared in order from 1; expected \
                 version {}, got {version}",
                self.name,
                self.newest() + 1
            )));
        }
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            Error::config(format!(
                "collection '{}': schema version {version} does not compile: {e}",
                self.name
            ))
        })?;
        self.versions.push(Version {
            fingerprint: fingerprint(&schema),
            schema,
            validator: Arc::new(validator),
            upcaster: None,
        });
        Ok(self)
    }

    fn upcaster_slot(&mut self, version: u32) -> Result<&mut Option<Upcaster>> {
        let name = self.name.clone();
        match version
            .checked_sub(1)
            .and_then(|i| self.versions.get_mut(i as usize))
        {
            Some(v) if version >= 2 => Ok(&mut v.upcaster),
            _ => Err(Error::config(format!(
                "collection '{name}': an upcaster leads to a declared version of 2 or more, \
                 not {version}"
            ))),
        }
    }

    /// Declares how a document of `version - 1` becomes one of `version`, as declarative steps
    /// (an empty list: the document is unchanged).
    pub fn upcast_steps(mut self, version: u32, steps: Vec<UpcastStep>) -> Result<Self> {
        for step in &steps {
            step.check()?;
        }
        *self.upcaster_slot(version)? = Some(Upcaster::Steps(steps));
        Ok(self)
    }

    /// Declares how a document of `version - 1` becomes one of `version`, as a Rust function.
    pub fn upcast_with(
        mut self,
        version: u32,
        upcaster: impl Fn(Value) -> Result<Value> + Send + Sync + 'static,
    ) -> Result<Self> {
        *self.upcaster_slot(version)? = Some(Upcaster::Function(Arc::new(upcaster)));
        Ok(self)
    }

    /// The fingerprint of each declared version's schema, oldest first.
    pub fn fingerprints(&self) -> Vec<(u32, String)> {
        self.versions
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u32 + 1, v.fingerprint.clone()))
            .collect()
    }

    /// The JSON Schema of `version`.
    pub fn schema(&self, version: u32) -> Option<&Value> {
        let i = version.checked_sub(1)? as usize;
        self.versions.get(i).map(|v| &v.schema)
    }

    fn check_complete(&self) -> Result<()> {
        if self.versions.is_empty() {
            return Err(Error::config(format!(
                "collection '{}' declares no schema version",
                self.name
            )));
        }
        for (i, v) in self.versions.iter().enumerate().skip(1) {
            if v.upcaster.is_none() {
                return Err(Error::config(format!(
                    "collection '{}': schema version {} has no upcaster from version {} \
                     (declare one; an empty list of steps keeps documents as they are)",
                    self.name,
                    i + 1,
                    i
                )));
            }
        }
        Ok(())
    }

    /// Checks `document` against the newest version; `InvalidInput` naming the JSON pointer and
    /// keyword of every failing field (never a value).
    pub fn validate(&self, document: &Value) -> Result<()> {
        let Some(newest) = self.versions.last() else {
            return Ok(());
        };
        let mut failures: Vec<String> = newest
            .validator
            .iter_errors(document)
            .map(|e| {
                let mut pointer = e.instance_path().as_str().to_string();
                if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind()
                    && let Some(name) = property.as_str()
                {
                    pointer.push('/');
                    pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                }
                if pointer.is_empty() {
                    pointer.push('/');
                }
                format!("{pointer} ({})", e.kind().keyword())
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort();
        failures.dedup();
        Err(Error::invalid(format!(
            "the document does not match schema version {} of collection '{}': {}",
            self.newest(),
            self.name,
            failures.join(", ")
        )))
    }

    /// Brings a document written under `version` to the newest version.
    pub fn upcast(&self, version: u32, mut document: Value) -> Result<Value> {
        if version > self.newest() {
            return Err(Error::config(format!(
                "a record of collection '{}' has schema version {version}, newer than the \
                 newest this code declares ({}): deploy the code that declares it",
                self.name,
                self.newest()
            )));
        }
        // Version 0 (written before the declaration) reads as version 1.
        for next in version.max(1) + 1..=self.newest() {
            let upcaster = self.versions[next as usize - 1].upcaster.as_ref();
            document = match upcaster {
                Some(Upcaster::Steps(steps)) => steps
                    .iter()
                    .try_fold(document, |doc, step| step.apply(doc))?,
                Some(Upcaster::Function(f)) => f(document).map_err(|e| {
                    Error::consistency(format!(
                        "collection '{}': the upcaster to version {next} failed: {}",
                        self.name,
                        e.message()
                    ))
                })?,
                None => document,
            };
        }
        Ok(document)
    }
}

/// The fingerprint of a schema: BLAKE3 of its canonical JSON (keys sorted at every level), so
/// reformatting a schema file or reordering its keys is not a change.
pub fn fingerprint(schema: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(schema, &mut canonical);
    blake3::hash(canonical.as_bytes()).to_hex()[..32].to_string()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The declared collections of a client.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    collections: BTreeMap<String, CollectionSchema>,
}

impl SchemaRegistry {
    /// A registry of `collections`; each must be complete (an upcaster for every version after
    /// the first), and no name may repeat.
    pub fn new(collections: impl IntoIterator<Item = CollectionSchema>) -> Result<Self> {
        let mut registry = BTreeMap::new();
        for collection in collections {
            crate::types::limits::validate_id("collection", collection.name())?;
            collection.check_complete()?;
            let name = collection.name.clone();
            if registry.insert(name.clone(), collection).is_some() {
                return Err(Error::config(format!(
                    "collection '{name}' is declared twice"
                )));
            }
        }
        Ok(Self {
            collections: registry,
        })
    }

    /// The declaration of `collection`.
    pub fn get(&self, collection: &str) -> Option<&CollectionSchema> {
        self.collections.get(collection)
    }

    /// Every declaration, by name.
    pub fn iter(&self) -> impl Iterator<Item = &CollectionSchema> {
        self.collections.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn users() -> CollectionSchema {
        CollectionSchema::new("users")
            .version(
                1,
                json!({"type": "object", "required": ["name"],
                       "properties": {"name": {"type": "string"}}}),
            )
            .unwrap()
            .version(
                2,
                json!({"type": "object", "required": ["full_name"],
                       "properties": {"full_name": {"type": "string"}}}),
            )
            .unwrap()
            .upcast_steps(
                2,
                vec![UpcastStep::Rename {
                    rename: "/name".into(),
                    to: "/full_name".into(),
                }],
            )
            .unwrap()
            .version(
                3,
                json!({"type": "object", "required": ["full_name", "plan"],
                       "properties": {"plan": {"enum": ["free", "pro"]},
                                      "age": {"type": "integer", "minimum": 0}}}),
            )
            .unwrap()
            .upcast_steps(
                3,
                vec![
                    UpcastStep::Add {
                        add: "/plan".into(),
                        default: json!("free"),
                    },
                    UpcastStep::Remove {
                        remove: "/legacy".into(),
                    },
                ],
            )
            .unwrap()
    }

    #[test]
    fn upcasts_across_versions() {
        let users = users();
        let v1 = json!({"name": "Ada", "legacy": 1});
        assert_eq!(
            users.upcast(1, v1.clone()).unwrap(),
            json!({"full_name": "Ada", "plan": "free"})
        );
        assert_eq!(
            users.upcast(0, v1).unwrap(),
            json!({"full_name": "Ada", "plan": "free"})
        );
        let v3 = json!({"full_name": "Ada", "plan": "pro"});
        assert_eq!(users.upcast(3, v3.clone()).unwrap(), v3);
        assert_eq!(
            users.upcast(4, v3).unwrap_err().code(),
            crate::ErrorCode::Config
        );
    }

    #[test]
    fn validation_names_every_failing_pointer_and_no_value() {
        let err = users()
            .validate(&json!({"full_name": "canary-7f3", "plan": "gold", "age": -4}))
            .unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidInput);
        let message = err.message();
        assert!(message.contains("/plan (enum)"), "{message}");
        assert!(message.contains("/age (minimum)"), "{message}");
        assert!(
            !message.contains("canary") && !message.contains("gold"),
            "{message}"
        );
        let missing = users().validate(&json!({"plan": "free"})).unwrap_err();
        assert!(
            missing.message().contains("/full_name (required)"),
            "{missing}"
        );
        users()
            .validate(&json!({"full_name": "Ada", "plan": "pro"}))
            .unwrap();
    }

    #[test]
    fn declarations_must_be_complete_and_in_order() {
        let gap = CollectionSchema::new("c").version(2, json!({}));
        assert_eq!(gap.unwrap_err().code(), crate::ErrorCode::Config);
        let no_upcaster = CollectionSchema::new("c")
            .version(1, json!({}))
            .unwrap()
            .version(2, json!({}))
            .unwrap();
        let err = SchemaRegistry::new([no_upcaster]).unwrap_err();
        assert!(err.message().contains("no upcaster"), "{err}");
        let bad_schema = CollectionSchema::new("c").version(1, json!({"type": 12}));
        assert_eq!(bad_schema.unwrap_err().code(), crate::ErrorCode::Config);
        let bad_pointer = CollectionSchema::new("c")
            .version(1, json!({}))
            .unwrap()
            .version(2, json!({}))
            .unwrap()
            .upcast_steps(
                2,
                vec![UpcastStep::Remove {
                    remove: "name".into(),
                }],
            );
        assert_eq!(bad_pointer.unwrap_err().code(), crate::ErrorCode::Config);
        let twice = SchemaRegistry::new([users(), users()]).unwrap_err();
        assert!(twice.message().contains("twice"), "{twice}");
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_content() {
        let a: Value = serde_json::from_str(r#"{"type":"object","required":["a"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "required": ["a"], "type": "object" }"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"type":"object","required":["b"]}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 32);
    }

    #[test]
    fn toml_steps_parse() {
        let steps: Vec<UpcastStep> = serde_json::from_value(json!([
            {"add": "/plan", "default": "free"},
            {"rename": "/name", "to": "/full_name"},
            {"remove": "/legacy"}
        ]))
        .unwrap();
        assert!(matches!(steps[0], UpcastStep::Add { .. }));
        assert!(matches!(steps[1], UpcastStep::Rename { .. }));
        assert!(matches!(steps[2], UpcastStep::Remove { .. }));
    }
}
