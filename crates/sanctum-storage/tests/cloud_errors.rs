//! How backend failures map onto error codes, and that object_store's retries stay bounded by
//! the config. The emulators cannot be made to answer 503 or 429 on demand, so these tests run
//! the real S3 client against a small loopback HTTP server that answers every request with a
//! chosen status (or never answers), and count the requests it received.

#![cfg(feature = "s3")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sanctum_storage::adapters::cloud;
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::adapters::{BlobAdapter, BlobPath, PutMode, once_stream};
use sanctum_storage::config::{BlobBackend, BlobConfig};
use sanctum_storage::{Error, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// 200 with an etag to everything, as a server that ignores preconditions would.
    AlwaysOk,
    Never,
}

/// Starts the server; returns its address and the count of requests it has read.
async fn serve(answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(connection(socket, answer, counter.clone()));
        }
    });
    (addr, count)
}

async fn connection(mut socket: TcpStream, answer: Answer, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        // Read one request head, then its body (by content-length).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        count.fetch_add(1, Ordering::SeqCst);
        match answer {
            Answer::Never => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return;
            }
            Answer::AlwaysOk => {
                let response = "HTTP/1.1 200 OK\r\netag: \"same\"\r\ncontent-length: 0\r\n\r\n";
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::Status(status) => {
                let body = "<Error><Code>Injected</Code><Message>injected</Message></Error>";
                let response = format!(
                    "HTTP/1.1 {status} Injected\r\ncontent-type: application/xml\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// An S3 adapter for `addr`, unsigned (so no credential lookup ever leaves loopback).
fn adapter(addr: SocketAddr, max_retries: usize) -> ObjectStoreAdapter {
    cloud::adapter_from_config(&config(addr, max_retries)).unwrap()
}

fn config(addr: SocketAddr, max_retries: usize) -> BlobConfig {
    BlobConfig {
        backend: BlobBackend::S3,
        bucket: Some("faults".into()),
        endpoint: Some(format!("http://{addr}")),
        region: Some("us-east-1".into()),
        allow_http: Some(true),
        path_style: Some(true),
        anonymous: true,
        max_retries,
        retry_timeout_ms: 10_000,
        request_timeout_ms: 500,
        connect_timeout_ms: 500,
        ..BlobConfig::default()
    }
}

fn path() -> BlobPath {
    BlobPath::new("some/object").unwrap()
}

async fn get_error(answer: Answer, max_retries: usize) -> (Error, usize) {
    let (addr, count) = serve(answer).await;
    let err = adapter(addr, max_retries)
        .get(&path(), None)
        .await
        .expect_err("the server only fails");
    (err, count.load(Ordering::SeqCst))
}

#[tokio::test]
async fn server_errors_and_throttling_are_retryable_and_retried_a_bounded_number_of_times() {
    for status in [500, 503, 429] {
        let (err, requests) = get_error(Answer::Status(status), 2).await;
        assert_eq!(err.code(), ErrorCode::TransientAdapter, "{status}: {err}");
        assert!(err.is_retryable(), "{status}");
        assert_eq!(
            requests, 3,
            "{status}: one try and blob.max_retries = 2 retries"
        );
    }
    let (err, requests) = get_error(Answer::Status(503), 0).await;
    assert_eq!(err.code(), ErrorCode::TransientAdapter);
    assert_eq!(requests, 1, "blob.max_retries = 0 turns retries off");
}

#[tokio::test]
async fn client_errors_are_permanent_and_not_retried() {
    for (status, code) in [
        (400, ErrorCode::PermanentAdapter),
        (403, ErrorCode::PermanentAdapter),
        (401, ErrorCode::PermanentAdapter),
        (404, ErrorCode::NotFound),
        (416, ErrorCode::InvalidInput),
    ] {
        let (err, requests) = get_error(Answer::Status(status), 3).await;
        assert_eq!(err.code(), code, "{status}: {err}");
        assert!(!err.is_retryable(), "{status}");
        assert_eq!(requests, 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn failed_preconditions_on_a_compare_and_swap_are_conflicts() {
    for status in [412, 409] {
        let (addr, _) = serve(Answer::Status(status)).await;
        let err = adapter(addr, 1)
            .put(
                &path(),
                once_stream("head".into()),
                PutMode::Update("\"etag\"".into()),
            )
            .await
            .expect_err("the precondition fails");
        assert_eq!(err.code(), ErrorCode::Conflict, "{status}: {err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let (err, requests) = get_error(Answer::Never, 1).await;
    assert_eq!(err.code(), ErrorCode::TransientAdapter, "{err}");
    assert!(err.is_retryable());
    assert_eq!(requests, 2, "a timed-out GET is retried (it is idempotent)");

    // A port nobody listens on: bind, learn the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = adapter(addr, 0).get(&path(), None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransientAdapter, "{err}");
}

#[tokio::test]
async fn a_missing_bucket_fails_the_health_check_as_a_config_error() {
    let (addr, _) = serve(Answer::Status(404)).await;
    let err = adapter(addr, 0).health_check().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config, "{err}");
    assert!(err.to_string().contains("bucket"), "{err}");
}

#[tokio::test]
async fn a_store_that_ignores_conditional_writes_is_refused_at_admission() {
    let (addr, count) = serve(Answer::AlwaysOk).await;
    let err = adapter(addr, 0).init().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config, "{err}");
    assert!(
        err.to_string().contains("ignores conditional writes"),
        "{err}"
    );
    // Two creates of the probe, then its delete.
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Turning the check off is the operator's choice: nothing is sent, and init succeeds.
    let (addr, count) = serve(Answer::AlwaysOk).await;
    let unchecked = BlobConfig {
        check_conditional_writes: false,
        ..config(addr, 0)
    };
    cloud::adapter_from_config(&unchecked)
        .unwrap()
        .init()
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 0);
}
