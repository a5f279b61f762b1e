//! Domain types: who asks ([`StorageContext`]), where ([`Namespace`]), what ([`StorageObject`],
//! [`ObjectVersion`]), what they may do ([`AccessPolicy`]), and the limits every name obeys.

pub mod context;
pub mod limits;
pub mod namespace;
pub mod object;
pub mod policy;

pub use context::{CachePolicy, Consistency, StorageContext, TenantId};
pub use namespace::Namespace;
pub use object::{ObjectVersion, StorageObject};
pub use policy::{AccessPolicy, Grant, Permission};
