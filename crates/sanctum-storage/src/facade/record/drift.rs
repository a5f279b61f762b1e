//! Drift detection: the declared schemas against what the record database has seen.
//!
//! The database keeps each collection's schema versions with their fingerprints
//! (`sanctum_record_schemas`): a client registers the versions it declares, and a write to a
//! collection without a declaration registers version 0. At the record store's first use the
//! client compares, and refuses to start (a `Config` error that says what to do) when:
//! - the database has a version of a collection newer than the newest this code declares;
//! - a declared version's schema differs from the one registered under that number;
//! - in `production`, the database has a collection this code does not declare.
//!
//! In `development` the last is a warning. Registration is insert-if-absent, so two clients
//! that start at once with different schemas for one version cannot both win: the loser sees
//! the winner's fingerprint when it reads back, and refuses.

use std::collections::BTreeMap;

use serde::Serialize;

use super::schema::SchemaRegistry;
use crate::adapters::record::StoredSchema;
use crate::config::Environment;

/// What [`RecordStore::schema_report`](super::RecordStore::schema_report) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaReport {
    /// Declared versions: collection, version, fingerprint.
    pub declared: Vec<StoredSchema>,
    /// Versions the database keeps.
    pub stored: Vec<StoredSchema>,
    /// Drift that stops the record store from starting.
    pub problems: Vec<String>,
    /// Drift that only warns (development).
    pub warnings: Vec<String>,
}

impl SchemaReport {
    /// Whether the record store may start.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The declared versions of `schemas`, as the database would keep them.
pub(super) fn declared(schemas: &SchemaRegistry) -> Vec<StoredSchema> {
    schemas
        .iter()
        .flat_map(|c| {
            c.fingerprints()
                .into_iter()
                .map(|(version, fingerprint)| StoredSchema {
                    collection: c.name().to_string(),
                    version,
                    fingerprint,
                })
        })
        .collect()
}

/// Compares the declarations with what the database keeps.
pub(super) fn compare(
    schemas: &SchemaRegistry,
    stored: Vec<StoredSchema>,
    environment: Environment,
) -> SchemaReport {
    let mut report = SchemaReport {
        declared: declared(schemas),
        ..SchemaReport::default()
    };
    let mut by_collection: BTreeMap<&str, Vec<&StoredSchema>> = BTreeMap::new();
    for row in &stored {
        by_collection.entry(&row.collection).or_default().push(row);
    }
    for (collection, rows) in by_collection {
        let Some(declaration) = schemas.get(collection) else {
            // Version 0 alone means written without a declaration; anything else was declared
            // by some other deployment of the code.
            let message = format!(
                "collection '{collection}' is in the record database but not declared here: \
                 declare it ([[record.collections]] or StorageDependencies.record_schemas)"
            );
            match environment {
                Environment::Production => report.problems.push(message),
                Environment::Development => report.warnings.push(message),
            }
            continue;
        };
        let newest_stored = rows.iter().map(|r| r.version).max().unwrap_or(0);
        if newest_stored > declaration.newest() {
            report.problems.push(format!(
                "collection '{collection}': the record database has schema version \
                 {newest_stored}, newer than the newest this code declares ({}); deploy the \
                 code that declares it",
                declaration.newest()
            ));
        }
        let fingerprints: BTreeMap<u32, String> = declaration.fingerprints().into_iter().collect();
        for row in rows.iter().filter(|r| r.version > 0) {
            if let Some(declared) = fingerprints.get(&row.version)
                && declared != &row.fingerprint
            {
                report.problems.push(format!(
                    "collection '{collection}': schema version {} changed without a new version \
                     number (registered fingerprint {}, declared {declared}); declare the change \
                     as version {} with an upcaster, or restore the registered schema",
                    row.version,
                    row.fingerprint,
                    declaration.newest() + 1
                ));
            }
        }
    }
    report.stored = stored;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facade::record::schema::CollectionSchema;
    use serde_json::json;

    fn row(collection: &str, version: u32, fingerprint: &str) -> StoredSchema {
        StoredSchema {
            collection: collection.into(),
            version,
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn each_kind_of_drift_is_found() {
        let users = CollectionSchema::new("users")
            .version(1, json!({"type": "object"}))
            .unwrap();
        let fp = users.fingerprints()[0].1.clone();
        let schemas = SchemaRegistry::new([users]).unwrap();
        let clean = compare(
            &schemas,
            vec![row("users", 0, ""), row("users", 1, &fp)],
            Environment::Production,
        );
        assert!(clean.ok() && clean.warnings.is_empty(), "{clean:?}");
        let newer = compare(
            &schemas,
            vec![row("users", 2, "x")],
            Environment::Development,
        );
        assert!(newer.problems[0].contains("newer"), "{newer:?}");
        let changed = compare(
            &schemas,
            vec![row("users", 1, "x")],
            Environment::Development,
        );
        assert!(changed.problems[0].contains("changed"), "{changed:?}");
        let stray = vec![row("orders", 0, "")];
        let dev = compare(&schemas, stray.clone(), Environment::Development);
        assert!(dev.ok() && dev.warnings[0].contains("orders"), "{dev:?}");
        let prod = compare(&schemas, stray, Environment::Production);
        assert!(
            !prod.ok() && prod.problems[0].contains("orders"),
            "{prod:?}"
        );
    }
}
