//! The golden contract suite: every blob adapter runs all of it.
//!
//! Each check is a `pub async fn` taking the adapter and [`SuiteOptions`] (which carry the
//! capabilities the adapter declares), in the style of object_store's `integration` module.
//! [`raw`] checks talk to the adapter directly; [`facade`] checks build a [`BlobStore`] over it
//! and check the versioning model. Checks panic on failure (they are test code) and use a fresh
//! tenant per call, so they can run in parallel against one backend. Never point the suite at
//! production data.
//!
//! [`BlobStore`]: crate::BlobStore

pub mod counting;
pub mod emulators;
pub mod facade;
pub mod raw;
pub mod record;
pub mod recording;
pub mod tamper;

use std::sync::Arc;

use bytes::Bytes;

use crate::adapters::{BlobAdapter, BlobCapabilities};

/// What the suite needs to know about the adapter under test.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The capabilities the adapter is expected to declare.
    pub capabilities: BlobCapabilities,
    /// Inline threshold of the facade the suite builds.
    pub inline_threshold: u64,
    /// Size of the large streaming check (256 MiB by default).
    pub large_object_bytes: u64,
    /// Writers in each race round.
    pub race_writers: usize,
    /// Race rounds.
    pub race_rounds: usize,
}

impl SuiteOptions {
    /// Defaults for an adapter declaring `capabilities`.
    pub fn new(capabilities: BlobCapabilities) -> Self {
        Self {
            capabilities,
            inline_threshold: 64 * 1024,
            large_object_bytes: 256 * 1024 * 1024,
            race_writers: 16,
            race_rounds: 5,
        }
    }
}

/// Runs every raw and facade check, one after another.
pub async fn run_all(adapter: Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    raw::run_all(&adapter, opts).await;
    facade::run_all(&adapter, opts).await;
}

/// Generates one test per contract check for a backend, so checks run in parallel and fail by
/// name: `contract_tests!(memory);` expects an `async fn memory() -> Option<B>` in the module
/// that invokes it, where `B` has fields `adapter: Arc<dyn BlobAdapter>` and `opts: SuiteOptions` (`None`
/// skips the backend). The tests use `#[tokio::test]`, so the crate needs tokio's `macros` and
/// `rt-multi-thread` features. This is the one list of checks every backend runs.
#[macro_export]
macro_rules! contract_tests {
    ($backend:ident) => {
        mod $backend {
            $crate::contract_tests!(@checks $backend, raw:
                lifecycle_and_capabilities, put_get_head_delete, conditional_writes, ranged_reads,
                list_pages, failed_body_stores_nothing, cas_race, put_after_waits_for_ready,
            );
            $crate::contract_tests!(@checks $backend, facade:
                write_read_checksum, delete_then_not_found, update_then_read, conditional_writes,
                racing_writers, unconditional_writers_lose_nothing, ranged_reads,
                ranged_reads_fetch_only_covering_chunks, list_pagination, versions_restore_purge,
                history_spills_into_pages, names_at_limits, bad_input_changes_nothing,
                dropped_writer_leaves_previous_version, sweeper_removes_only_orphans,
                tenants_are_isolated, large_object_streams, backend_calls_per_operation,
            );
        }
    };
    (@checks $backend:ident, $module:ident: $($check:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let Some(b) = super::super::$backend().await else { return };
                    $crate::conformance::$module::$check(&b.adapter, &b.opts).await;
                }
            )*
        }
    };
}

/// A unique lower-case id for tenants and prefixes of one check.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
