//! Configs for the cloud backends under test, from the environment `.ci/emulators.sh` exports:
//! moto's S3 server (`SANCTUM_TEST_S3=1` plus `AWS_*`), Azurite (`SANCTUM_TEST_AZURE=1`) and a
//! real GCS bucket (`SANCTUM_TEST_GCS_BUCKET` plus `GOOGLE_SERVICE_ACCOUNT`; no emulator speaks
//! the XML API object_store uses). Each returns `None` with a printed reason when its backend is
//! absent, unless `SANCTUM_REQUIRE_EMULATORS=1` (set by `.ci/run`), which turns absence into a
//! panic so CI cannot skip them silently. Every config gets a unique prefix.

use crate::config::{BlobBackend, BlobConfig};

/// The Azurite container the tests share (each test under its own prefix).
pub const AZURITE_CONTAINER: &str = "sanctum-test";

/// Azurite's published development account key (not a secret).
#[cfg(feature = "azure")]
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn absent(backend: &str, why: &str) -> Option<BlobConfig> {
    if std::env::var("SANCTUM_REQUIRE_EMULATORS").as_deref() == Ok("1") {
        panic!("{backend} is required (SANCTUM_REQUIRE_EMULATORS=1) but {why}");
    }
    eprintln!("skipped: {backend} is not configured ({why}); `source .ci/emulators.sh` starts it");
    None
}

fn cloud(backend: BlobBackend, tag: &str) -> BlobConfig {
    BlobConfig {
        backend,
        prefix: Some(format!("tests/{}", super::unique(tag))),
        adapter_name: format!("{}-test", backend.as_str()),
        max_retries: 2,
        ..BlobConfig::default()
    }
}

/// The S3 emulator's config (bucket and endpoint from `AWS_*`), or `None` when it is absent.
pub fn s3(tag: &str) -> Option<BlobConfig> {
    if !BlobBackend::S3.is_compiled() {
        eprintln!("skipped: built without the `s3` feature");
        return None;
    }
    if std::env::var("SANCTUM_TEST_S3").as_deref() != Ok("1") {
        return absent("the S3 emulator", "SANCTUM_TEST_S3 is not 1");
    }
    Some(cloud(BlobBackend::S3, tag))
}

/// Azurite's config, or `None` when it is absent. Creates the shared container first.
pub async fn azure(tag: &str) -> Option<BlobConfig> {
    if !BlobBackend::Azure.is_compiled() {
        eprintln!("skipped: built without the `azure` feature");
        return None;
    }
    if std::env::var("SANCTUM_TEST_AZURE").as_deref() != Ok("1") {
        return absent("Azurite", "SANCTUM_TEST_AZURE is not 1");
    }
    if std::env::var("AZURITE_BLOB_STORAGE_URL").is_err() {
        // object_store would fall back to 127.0.0.1:10000, which may be anyone's server.
        return absent("Azurite", "AZURITE_BLOB_STORAGE_URL is not set");
    }
    #[cfg(feature = "azure")]
    create_azurite_container(AZURITE_CONTAINER)
        .await
        .expect("create the Azurite container");
    Some(BlobConfig {
        use_emulator: true,
        bucket: Some(AZURITE_CONTAINER.to_string()),
        ..cloud(BlobBackend::Azure, tag)
    })
}

/// A real GCS bucket's config, or `None` (with a printed reason) when none is configured.
/// Never required by `SANCTUM_REQUIRE_EMULATORS`: CI has no GCS.
pub fn gcs(tag: &str) -> Option<BlobConfig> {
    if !BlobBackend::Gcs.is_compiled() {
        eprintln!("skipped: built without the `gcs` feature");
        return None;
    }
    let (Ok(bucket), Ok(_)) = (
        std::env::var("SANCTUM_TEST_GCS_BUCKET"),
        std::env::var("GOOGLE_SERVICE_ACCOUNT"),
    ) else {
        eprintln!(
            "skipped: GCS needs SANCTUM_TEST_GCS_BUCKET and GOOGLE_SERVICE_ACCOUNT (a key file) \
             pointing at a real bucket; no emulator speaks object_store's XML API"
        );
        return None;
    };
    Some(BlobConfig {
        bucket: Some(bucket),
        ..cloud(BlobBackend::Gcs, tag)
    })
}

/// Creates a container on Azurite (object_store has no call for it): a SharedKey-signed
/// `PUT ?restype=container`. An existing container is fine.
#[cfg(feature = "azure")]
pub async fn create_azurite_container(name: &str) -> crate::error::Result<()> {
    use ::object_store::ClientOptions;
    use ::object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
    use ::object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};

    use crate::error::{Error, ErrorCode};

    let fail = |what: &str| Error::new(ErrorCode::TransientAdapter, format!("Azurite: {what}"));
    // No default port: a server on a well-known port may be a stranger's (.ci/emulators.sh
    // starts Azurite on a free port and exports this).
    let base = std::env::var("AZURITE_BLOB_STORAGE_URL")
        .map_err(|_| fail("AZURITE_BLOB_STORAGE_URL is not set (source .ci/emulators.sh)"))?;
    let key = AzureAccessKey::try_new(AZURITE_KEY).map_err(|e| fail("bad key").with_source(e))?;
    let credential = AzureCredential::AccessKey(key);
    let mut request = http::Request::builder()
        .method("PUT")
        .uri(format!("{base}/devstoreaccount1/{name}?restype=container"))
        .header("content-length", "0")
        .body(HttpRequestBody::empty())
        .map_err(|e| fail("bad request").with_source(e))?;
    AzureAuthorizer::new(&credential, "devstoreaccount1")
        .try_authorize(&mut request)
        .map_err(|e| fail("cannot sign").with_source(e))?;
    let client = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .map_err(|e| fail("no client").with_source(e))?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| fail("unreachable").with_source(e))?;
    match response.status().as_u16() {
        201 | 409 => Ok(()),
        other => Err(fail(&format!("container creation answered {other}"))),
    }
}
