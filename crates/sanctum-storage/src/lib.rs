//! # sanctum-storage
//!
//! One safe API over blobs and records (and, as they land, streams), from a local folder and a
//! SQLite file to the cloud and PostgreSQL. Start with [`create_storage_client`] and a [`StorageConfig`]; every call takes a
//! [`StorageContext`] naming the tenant and actor.
//!
//! ```no_run
//! # async fn demo() -> sanctum_storage::Result<()> {
//! use sanctum_storage::{StorageConfig, StorageContext, StorageDependencies, create_storage_client};
//! use sanctum_storage::facade::{GetOptions, PutOptions};
//!
//! let storage = create_storage_client(StorageConfig::embedded("./.sanctum"), StorageDependencies::default()).await?;
//! let ctx = StorageContext::new("default", "local")?;
//! let v = storage.blobs().put_bytes(&ctx, "docs", "hello.txt", "hi", PutOptions::default()).await?;
//! let (_, body) = storage.blobs().get_bytes(&ctx, "docs", "hello.txt", GetOptions::default()).await?;
//! assert_eq!(&body[..], b"hi");
//! # Ok(()) }
//! ```
//!
//! ## Layer order
//! Write: `facade` (validation) → [`policy`] (access check, audited) → [`quota`] (charged
//! before the write is visible) → encryption → resilience (coming) → `adapters` → cache
//! invalidation (coming). Read: validation → policy → cache lookup (coming) → `adapters` →
//! decryption. `observability` wraps every facade operation.
//! Every body, every caller-given metadata value and every record document is encrypted before
//! it reaches an adapter ([`crypto`]). Records (`Storage::records()`, in `facade::record`) take
//! the same path over a `adapters::record::RecordAdapter`, plus schema validation against the
//! collection's declared JSON Schema before sealing, upcasting after opening, and record quotas
//! counted in the record database in the write's own transaction.
//!
//! ## Features
//! | feature | what it adds |
//! | --- | --- |
//! | `conformance` | the golden contract suite, `sanctum_storage::conformance`, for custom adapters |
//! | `cedar` | `policy::cedar::CedarEngine`, a policy engine on AWS Cedar |

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod adapters;
pub mod config;
pub mod crypto;
pub mod error;
pub mod facade;
mod hex;
pub mod observability;
pub mod policy;
pub mod quota;
pub mod types;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

/// Every Rust block of the README runs as a doctest, so the README's examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub use config::{StorageConfig, StorageDependencies, create_storage_client};
pub use error::{Error, ErrorCode, Result};
pub use facade::{BlobStore, Storage};
pub use types::{ObjectVersion, StorageContext, StorageObject};
