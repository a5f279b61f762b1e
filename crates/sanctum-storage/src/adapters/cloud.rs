//! The S3, GCS and Azure adapters: object_store's HTTP stores, built from the `[blob]` config,
//! behind the same [`ObjectStoreAdapter`] as the in-memory one.
//!
//! Settings come from the backend's usual environment variables first (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`, as object_store reads them), then from the config, which wins. Secrets are only
//! ever read from the environment (`blob.secret_env` names the variable).
//!
//! Retries: object_store retries a failed request itself (5xx, 429, connection errors and
//! timeouts of idempotent requests) with exponential backoff. That is the only retry layer for
//! these backends; it is bounded by `blob.max_retries` and `blob.retry_timeout_ms`, so a later
//! retry layer in the facade must not retry `TransientAdapter` errors from them again.

use std::sync::Arc;

use ::object_store::ObjectStore;
use ::object_store::prefix::PrefixStore;

use super::BlobCapabilities;
use super::object_store::ObjectStoreAdapter;
use crate::config::{BlobBackend, BlobConfig};
use crate::error::{Error, Result};

/// What every cloud backend declares: object_store sends `If-None-Match: *` and `If-Match` (S3,
/// Azure) or generation preconditions (GCS), and the stores keep data durably.
pub const CLOUD_CAPABILITIES: BlobCapabilities = BlobCapabilities {
    conditional_create: true,
    conditional_update: true,
    atomic_conditional_delete: false,
    durable: true,
    persistent: true,
    // Every ranged read is a request, billed and a round trip away.
    parallel_ranged_reads: false,
    blocking_reads: false,
};

/// Builds the adapter for a cloud `config.backend` (`s3`, `gcs` or `azure`).
pub fn adapter_from_config(config: &BlobConfig) -> Result<ObjectStoreAdapter> {
    let (kind, store) = store_from_config(config)?;
    let store: Arc<dyn ObjectStore> = match &config.prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix.as_str())),
        None => store,
    };
    let adapter =
        ObjectStoreAdapter::new(kind, config.adapter_name.clone(), store, CLOUD_CAPABILITIES)
            .with_multipart(
                usize::try_from(config.part_size).unwrap_or(usize::MAX),
                config.part_concurrency,
            );
    let adapter = match config.check_conditional_writes {
        true => adapter.with_conditional_write_check(),
        false => adapter,
    };
    // GCS updates compare generations, so its tokens carry them.
    Ok(match config.backend {
        BlobBackend::Gcs => adapter.with_version_tokens(),
        _ => adapter,
    })
}

/// The backend's object_store store (without the prefix).
fn store_from_config(config: &BlobConfig) -> Result<(&'static str, Arc<dyn ObjectStore>)> {
    match config.backend {
        #[cfg(feature = "s3")]
        BlobBackend::S3 => Ok(("s3", s3_store(config)?)),
        #[cfg(feature = "gcs")]
        BlobBackend::Gcs => Ok(("gcs", gcs_store(config)?)),
        #[cfg(feature = "azure")]
        BlobBackend::Azure => Ok(("azure", azure_store(config)?)),
        other => Err(Error::config(format!(
            "blob.backend = \"{}\" is not a cloud backend built into this binary",
            other.as_str()
        ))),
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry(config: &BlobConfig) -> ::object_store::RetryConfig {
    ::object_store::RetryConfig {
        backoff: ::object_store::BackoffConfig::default(),
        max_retries: config.max_retries,
        retry_timeout: std::time::Duration::from_millis(config.retry_timeout_ms),
    }
}

/// The client settings as object_store config pairs (applied on top of the environment).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn client_settings(config: &BlobConfig) -> Vec<(::object_store::ClientConfigKey, String)> {
    use ::object_store::ClientConfigKey as K;
    let mut out = vec![
        (K::Timeout, format!("{}ms", config.request_timeout_ms)),
        (
            K::ConnectTimeout,
            format!("{}ms", config.connect_timeout_ms),
        ),
    ];
    if let Some(allow) = config.allow_http {
        out.push((K::AllowHttp, allow.to_string()));
    }
    out
}

/// Reads the secret named by `blob.secret_env`, if one is named.
#[cfg(any(feature = "s3", feature = "azure"))]
fn secret(config: &BlobConfig) -> Result<Option<String>> {
    let Some(name) = &config.secret_env else {
        return Ok(None);
    };
    std::env::var(name).map(Some).map_err(|_| {
        Error::config(format!(
            "blob.secret_env: environment variable {name} is not set"
        ))
    })
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn config_err(backend: &str, err: ::object_store::Error) -> Error {
    Error::config(format!("blob.backend = \"{backend}\": {err}")).with_source(err)
}

#[cfg(feature = "s3")]
fn s3_store(config: &BlobConfig) -> Result<Arc<dyn ObjectStore>> {
    use ::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut builder = AmazonS3Builder::from_env().with_retry(retry(config));
    for (key, value) in client_settings(config) {
        builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
    }
    if let Some(bucket) = &config.bucket {
        builder = builder.with_bucket_name(bucket);
    }
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(path_style) = config.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    if let Some(id) = &config.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = secret(config)? {
        builder = builder.with_secret_access_key(secret);
    }
    if config.anonymous {
        builder = builder.with_skip_signature(true);
    }
    Ok(Arc::new(builder.build().map_err(|e| config_err("s3", e))?))
}

#[cfg(feature = "gcs")]
fn gcs_store(config: &BlobConfig) -> Result<Arc<dyn ObjectStore>> {
    use ::object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut builder = GoogleCloudStorageBuilder::from_env().with_retry(retry(config));
    for (key, value) in client_settings(config) {
        builder = builder.with_config(GoogleConfigKey::Client(key), value);
    }
    if let Some(bucket) = &config.bucket {
        builder = builder.with_bucket_name(bucket);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_base_url(endpoint);
    }
    if let Some(path) = &config.service_account_path {
        builder = builder.with_service_account_path(path.to_string_lossy());
    }
    if config.anonymous {
        builder = builder.with_skip_signature(true);
    }
    Ok(Arc::new(builder.build().map_err(|e| config_err("gcs", e))?))
}

#[cfg(feature = "azure")]
fn azure_store(config: &BlobConfig) -> Result<Arc<dyn ObjectStore>> {
    use ::object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut builder = MicrosoftAzureBuilder::from_env().with_retry(retry(config));
    for (key, value) in client_settings(config) {
        builder = builder.with_config(AzureConfigKey::Client(key), value);
    }
    if config.use_emulator {
        builder = builder.with_use_emulator(true);
    }
    if let Some(container) = &config.bucket {
        builder = builder.with_container_name(container);
    }
    if let Some(account) = &config.account {
        builder = builder.with_account(account);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(key) = secret(config)? {
        builder = builder.with_access_key(key);
    }
    if config.anonymous {
        builder = builder.with_skip_signature(true);
    }
    Ok(Arc::new(
        builder.build().map_err(|e| config_err("azure", e))?,
    ))
}
