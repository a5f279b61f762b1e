//! OpenBao / Vault Transit as a KEK provider.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    KEY_LEN, KeyError, KeyErrorKind, KeyProvider, WrappedKey, bound_context, check_aad,
    check_provider, validate_tenant,
};

const KIND: &str = "openbao-transit";
const KEY_TYPE: &str = "aes256-gcm96";
/// Suffix of a tenant's tombstone key name. Tenant ids and prefixes never contain `.`, so a tombstone
/// name cannot be a tenant's key name.
const TOMBSTONE_SUFFIX: &str = ".destroyed";
const TOKEN_HEADER: &str = "X-Vault-Token";
/// Longest server error text copied into an error message.
const MAX_ERROR_TEXT: usize = 300;

/// Default connect timeout of [`OpenBaoTransit::new`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default whole-request timeout of [`OpenBaoTransit::new`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// KEKs in the Transit secrets engine of OpenBao (or HashiCorp Vault), over its HTTP API.
///
/// # Keys
///
/// One Transit key per tenant, named `<key_prefix><tenant>`, of type `aes256-gcm96` with
/// `derived=true`, created on the first `wrap` (`POST /v1/<mount>/keys/<name>`) and configured with
/// `deletion_allowed=true` (`POST .../keys/<name>/config`). KEK versions are Transit key versions;
/// [`WrappedKey::kek_version`] is the `N` of the `vault:vN:` ciphertext prefix.
///
/// # Binding `aad`: a derived key with `context`, not `associated_data`
///
/// Transit's `encrypt` and `decrypt` accept `associated_data` for AEAD keys, but its `rewrap`
/// endpoint does not: it decrypts with no associated data (OpenBao `path_rewrap.go`), so a wrap bound
/// with `associated_data` could never be re-wrapped on the server. So the keys are `derived=true`
/// and every call passes `context = base64(`[`bound_context`]`(tenant, aad))`: Transit derives a
/// per-context key (HKDF-SHA256) from the key version, and `encrypt`, `decrypt` and `rewrap` all
/// take the context. A wrong `aad` derives another key and fails authentication
/// ([`KeyErrorKind::Invalid`]); `rewrap` keeps the same context under the newest version without the
/// key ever reaching this process.
///
/// # Destroyed versus not found: tombstones
///
/// Transit itself cannot tell a key that never existed from a deleted one. So `destroy` first
/// creates a *tombstone* key `<key_prefix><tenant>.destroyed` (never used for anything, never
/// deleted by this crate), then deletes the tenant's key (all versions, irreversibly). When an
/// operation finds the tenant's key missing, it checks for the tombstone: present gives
/// [`KeyErrorKind::Destroyed`], absent gives [`KeyErrorKind::NotFound`]. A key deleted by someone
/// else (no tombstone) therefore reports `NotFound`. `wrap` refuses a tombstoned tenant, and checks
/// the tombstone again after encrypting, so a `wrap` racing a `destroy` in another process cannot
/// leave a live key behind: whatever Transit's encrypt may have re-created (its "upsert") is deleted
/// and `Destroyed` returned. Setting `disable_upsert=true` on the mount (`POST
/// /v1/<mount>/config/keys`) is recommended as well; `.ci/openbao.sh` does.
///
/// The token needs: `read`, `create`, `update` and `delete` on `<mount>/keys/<prefix>*`, `update` on
/// `<mount>/keys/<prefix>*/config`, `<mount>/keys/<prefix>*/rotate`, `<mount>/encrypt/<prefix>*`,
/// `<mount>/decrypt/<prefix>*` and `<mount>/rewrap/<prefix>*`; `health_check` also calls
/// `auth/token/lookup-self` (in the default policy). Deleted keys may survive in OpenBao storage
/// snapshots and backups: operators must age those out for shredding to be complete.
///
/// # Errors
///
/// HTTP 400 decryption failures (`message authentication failed`, `invalid ciphertext`, ...) are
/// [`KeyErrorKind::Invalid`]; a missing key is `Destroyed` or `NotFound` as above; 401/403 are
/// `Denied`; 429, 5xx (except 501), timeouts and connection errors are `Transient`; anything else
/// is `Permanent`. Messages carry the server's error text but never the token, a key or plaintext.
///
/// # Secrets in memory
///
/// The token is kept in [`Zeroizing`] and sent as a sensitive header; request bodies holding a
/// plaintext key and response bodies are in zeroizing buffers where this crate owns them. Copies
/// inside the HTTP stack (hyper, rustls) are not zeroized.
pub struct OpenBaoTransit {
    client: reqwest::Client,
    /// `<addr>/v1/<mount>`, without a trailing slash.
    mount_url: String,
    /// `<addr>/v1`, without a trailing slash.
    api_url: String,
    key_prefix: String,
    token: Zeroizing<String>,
    /// `<addr>/v1/<kv mount>` of a KV version 2 engine holding the counters, when enabled
    /// ([`OpenBaoTransit::with_counters`]).
    counters_url: Option<String>,
}

impl fmt::Debug for OpenBaoTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoTransit")
            .field("mount_url", &self.mount_url)
            .field("key_prefix", &self.key_prefix)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl OpenBaoTransit {
    /// A client for the Transit engine mounted at `mount` (e.g. `"transit"`) on the server at
    /// `addr` (e.g. `"https://bao.example:8200"`), authenticating with `token`; tenant keys are
    /// named `<key_prefix><tenant>` (e.g. prefix `"sanctum-"`).
    ///
    /// Timeouts: [`DEFAULT_CONNECT_TIMEOUT`] to connect, [`DEFAULT_REQUEST_TIMEOUT`] per request
    /// (see [`OpenBaoTransit::with_timeouts`]). Redirects are not followed. Checks its arguments
    /// only; [`KeyProvider::health_check`] talks to the server.
    ///
    /// Errors with [`KeyErrorKind::Invalid`] for an `addr` that is not an `http`/`https` URL (or
    /// holds credentials, a query or a fragment), an empty token or one that cannot be a header, a
    /// `mount` that is not `/`-separated segments of `[A-Za-z0-9_-]`, or a `key_prefix` that is not
    /// up to 64 characters of `[A-Za-z0-9_-]` starting with a letter, digit or `_`.
    pub fn new(addr: &str, token: String, mount: &str, key_prefix: &str) -> Result<Self, KeyError> {
        let token = Zeroizing::new(token);
        let addr = check_addr(addr)?;
        if token.is_empty() || HeaderValue::from_str(&token).is_err() {
            return Err(KeyError::invalid(
                "OpenBao token is empty or not a valid header value",
            ));
        }
        let mount = check_mount(mount)?;
        check_prefix(key_prefix)?;
        let api_url = format!("{addr}/v1");
        Ok(OpenBaoTransit {
            client: build_client(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)?,
            mount_url: format!("{api_url}/{mount}"),
            api_url,
            key_prefix: key_prefix.to_string(),
            token,
            counters_url: None,
        })
    }

    /// Keeps monotonic counters ([`KeyProvider::raise_counter`]) in the KV version 2 engine
    /// mounted at `kv_mount` (a dev server has one at `secret`), under
    /// `<kv_mount>/data/<key_prefix><tenant>/<name>`, updated with check-and-set. The token then
    /// also needs `read`, `create` and `update` on `<kv_mount>/data/<key_prefix>*`.
    pub fn with_counters(mut self, kv_mount: &str) -> Result<Self, KeyError> {
        let mount = check_mount(kv_mount)?;
        self.counters_url = Some(format!("{}/{mount}", self.api_url));
        Ok(self)
    }

    fn counter_url(&self, tenant: &str, name: &str) -> Option<String> {
        self.counters_url
            .as_ref()
            .map(|url| format!("{url}/data/{}/{name}", self.key_name(tenant)))
    }

    /// The counter's value and KV version (0, 0 when it does not exist).
    async fn read_counter(&self, tenant: &str, url: &str) -> Result<(u64, u64), KeyError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            data: CounterValue,
            metadata: CounterMeta,
        }
        #[derive(serde::Deserialize)]
        struct CounterValue {
            value: String,
        }
        #[derive(serde::Deserialize)]
        struct CounterMeta {
            version: u64,
        }
        match self.call(Method::GET, url, None).await {
            Ok(body) => {
                let entry = parse_data::<Entry>(&body, "read counter")?;
                let value = entry.data.value.parse().map_err(|_| {
                    KeyError::new(
                        KeyErrorKind::Permanent,
                        format!("OpenBao counter for tenant {tenant:?} is not a number"),
                    )
                })?;
                Ok((value, entry.metadata.version))
            }
            Err(Failure::Status { status, errors })
                if status.as_u16() == 404 && errors.is_empty() =>
            {
                Ok((0, 0))
            }
            Err(f) => Err(f.into_error("read counter", tenant)),
        }
    }

    /// Replaces the connect and whole-request timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Result<Self, KeyError> {
        self.client = build_client(connect, request)?;
        Ok(self)
    }

    /// The Transit key name of `tenant` (`<key_prefix><tenant>`). Does not validate `tenant`.
    pub fn key_name(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.key_prefix)
    }

    fn tombstone_name(&self, tenant: &str) -> String {
        format!("{}{tenant}{TOMBSTONE_SUFFIX}", self.key_prefix)
    }

    fn keys_url(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.mount_url)
    }

    /// One HTTP call. Returns the body of a 2xx answer (possibly empty), else a [`Failure`].
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let mut token = HeaderValue::from_str(&self.token).map_err(|_| Failure::Encode)?;
        token.set_sensitive(true);
        let mut req = self.client.request(method, url).header(TOKEN_HEADER, token);
        if let Some(mut body) = body {
            // The HTTP stack takes ownership of the bytes; the zeroizing wrapper keeps an empty Vec.
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(std::mem::take(&mut *body));
        }
        let resp = req.send().await.map_err(Failure::Transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(Failure::Transport)?;
        let bytes = Zeroizing::new(bytes.to_vec());
        if status.is_success() {
            Ok(bytes)
        } else {
            let errors = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.errors)
                .unwrap_or_default();
            Err(Failure::Status { status, errors })
        }
    }

    /// `GET keys/<name>`: `None` if the key does not exist.
    async fn read_key(&self, tenant: &str, name: &str) -> Result<Option<KeyInfo>, KeyError> {
        match self.call(Method::GET, &self.keys_url(name), None).await {
            Ok(body) => parse_data::<KeyInfo>(&body, "read key").map(Some),
            Err(f) if f.key_missing() => Ok(None),
            Err(f) => Err(f.into_error("read key", tenant)),
        }
    }

    async fn tombstoned(&self, tenant: &str) -> Result<bool, KeyError> {
        Ok(self
            .read_key(tenant, &self.tombstone_name(tenant))
            .await?
            .is_some())
    }

    /// The error for an operation that found the tenant's key missing.
    async fn missing(&self, tenant: &str) -> KeyError {
        match self.tombstoned(tenant).await {
            Ok(true) => KeyError::destroyed(tenant),
            Ok(false) => KeyError::not_found(tenant),
            Err(e) => e,
        }
    }

    async fn allow_deletion(&self, name: &str) -> Result<(), Failure> {
        let body = json(&ConfigRequest {
            deletion_allowed: true,
        })
        .map_err(|_| Failure::Encode)?;
        self.call(
            Method::POST,
            &format!("{}/config", self.keys_url(name)),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Makes sure the tenant's key exists, is a derived aes256-gcm96 key and may be deleted.
    async fn ensure_key(&self, tenant: &str) -> Result<(), KeyError> {
        let name = self.key_name(tenant);
        if let Some(info) = self.read_key(tenant, &name).await? {
            check_key_info(tenant, &info)?;
            if !info.deletion_allowed {
                self.allow_deletion(&name)
                    .await
                    .map_err(|f| f.into_error("configure key", tenant))?;
            }
            return Ok(());
        }
        if self.tombstoned(tenant).await? {
            return Err(KeyError::destroyed(tenant));
        }
        let body = json(&CreateKeyRequest {
            key_type: KEY_TYPE,
            derived: true,
        })?;
        let created = self
            .call(Method::POST, &self.keys_url(&name), Some(body))
            .await
            .map_err(|f| f.into_error("create key", tenant))?;
        // OpenBao answers with the key; older Vault versions answer 204 with no body.
        if !created.is_empty() {
            let info = parse_data::<KeyInfo>(&created, "create key")?;
            check_key_info(tenant, &info)?;
        }
        self.allow_deletion(&name)
            .await
            .map_err(|f| f.into_error("configure key", tenant))?;
        tracing::info!(tenant, key = %name, "created the tenant's Transit key");
        Ok(())
    }

    /// Deletes the tenant's key if present (after allowing deletion). Missing is fine.
    async fn delete_key(&self, tenant: &str) -> Result<(), KeyError> {
        let name = self.key_name(tenant);
        match self.allow_deletion(&name).await {
            Ok(()) => {}
            Err(f) if f.key_missing() => return Ok(()),
            Err(f) => return Err(f.into_error("configure key", tenant)),
        }
        match self.call(Method::DELETE, &self.keys_url(&name), None).await {
            Ok(_) => Ok(()),
            Err(f) if f.key_missing() => Ok(()),
            Err(f) => Err(f.into_error("delete key", tenant)),
        }
    }

    /// `POST <op>/<name>` with a ciphertext and context (decrypt, rewrap).
    async fn with_ciphertext(
        &self,
        op: &str,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        validate_tenant(tenant)?;
        check_aad(aad)?;
        check_provider(wrapped, KIND)?;
        match parse_version(&wrapped.ciphertext) {
            Some(v) if v == wrapped.kek_version => {}
            _ => {
                return Err(KeyError::invalid(format!(
                    "wrapped key for tenant {tenant:?}: kek_version {} does not match its Transit \
                     ciphertext",
                    wrapped.kek_version
                )));
            }
        }
        let context = B64.encode(bound_context(tenant, aad));
        let body = json(&CiphertextRequest {
            ciphertext: &wrapped.ciphertext,
            context: &context,
        })?;
        let url = format!("{}/{op}/{}", self.mount_url, self.key_name(tenant));
        match self.call(Method::POST, &url, Some(body)).await {
            Ok(body) => Ok(body),
            Err(f) if f.key_missing() => Err(self.missing(tenant).await),
            Err(f) => Err(f.into_error(op, tenant)),
        }
    }
}

#[async_trait::async_trait]
impl KeyProvider for OpenBaoTransit {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn is_development(&self) -> bool {
        false
    }

    async fn wrap(&self, tenant: &str, key: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError> {
        validate_tenant(tenant)?;
        check_aad(aad)?;
        self.ensure_key(tenant).await?;
        let plaintext = Zeroizing::new(B64.encode(key));
        let context = B64.encode(bound_context(tenant, aad));
        let body = json(&EncryptRequest {
            plaintext: &plaintext,
            context: &context,
        })?;
        let url = format!("{}/encrypt/{}", self.mount_url, self.key_name(tenant));
        let reply = match self.call(Method::POST, &url, Some(body)).await {
            Ok(reply) => reply,
            Err(f) if f.key_missing() => return Err(self.missing(tenant).await),
            Err(f) => return Err(f.into_error("encrypt", tenant)),
        };
        // A destroy may have run between ensure_key and encrypt, and encrypt may have re-created
        // the key: never hand out a wrap for a destroyed tenant, nor leave such a key behind.
        if self.tombstoned(tenant).await? {
            self.delete_key(tenant).await?;
            return Err(KeyError::destroyed(tenant));
        }
        wrapped_from(&reply, "encrypt")
    }

    async fn unwrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let reply = self
            .with_ciphertext("decrypt", tenant, wrapped, aad)
            .await?;
        let data = parse_data::<PlaintextData>(&reply, "decrypt")?;
        let bytes =
            Zeroizing::new(B64.decode(&data.plaintext).map_err(|_| {
                KeyError::invalid("Transit decrypt returned a non-base64 plaintext")
            })?);
        if bytes.len() != KEY_LEN {
            return Err(KeyError::invalid(format!(
                "wrapped key for tenant {tenant:?} does not hold a 32-byte key"
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(key)
    }

    async fn rewrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<WrappedKey, KeyError> {
        let reply = self.with_ciphertext("rewrap", tenant, wrapped, aad).await?;
        wrapped_from(&reply, "rewrap")
    }

    async fn rotate(&self, tenant: &str) -> Result<u32, KeyError> {
        validate_tenant(tenant)?;
        let name = self.key_name(tenant);
        let url = format!("{}/rotate", self.keys_url(&name));
        let reply = match self.call(Method::POST, &url, None).await {
            Ok(reply) => reply,
            Err(f) if f.key_missing() => return Err(self.missing(tenant).await),
            Err(f) => return Err(f.into_error("rotate", tenant)),
        };
        if !reply.is_empty() {
            return Ok(parse_data::<KeyInfo>(&reply, "rotate")?.latest_version);
        }
        // Older Vault versions answer 204: read the new version.
        match self.read_key(tenant, &name).await? {
            Some(info) => Ok(info.latest_version),
            None => Err(self.missing(tenant).await),
        }
    }

    async fn destroy(&self, tenant: &str) -> Result<(), KeyError> {
        validate_tenant(tenant)?;
        // Tombstone first, so that from now on every operation reports Destroyed.
        let body = json(&CreateKeyRequest {
            key_type: KEY_TYPE,
            derived: false,
        })?;
        self.call(
            Method::POST,
            &self.keys_url(&self.tombstone_name(tenant)),
            Some(body),
        )
        .await
        .map_err(|f| f.into_error("create tombstone", tenant))?;
        self.delete_key(tenant).await?;
        tracing::info!(tenant, "destroyed the tenant's Transit key");
        Ok(())
    }

    fn keeps_counters(&self) -> bool {
        self.counters_url.is_some()
    }

    async fn counter(&self, tenant: &str, name: &str) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        crate::validate_counter_name(name)?;
        match self.counter_url(tenant, name) {
            Some(url) => Ok(self.read_counter(tenant, &url).await?.0),
            None => Ok(0),
        }
    }

    async fn raise_counter(&self, tenant: &str, name: &str, value: u64) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        crate::validate_counter_name(name)?;
        let Some(url) = self.counter_url(tenant, name) else {
            return Ok(value);
        };
        for _ in 0..10 {
            let (stored, version) = self.read_counter(tenant, &url).await?;
            if stored >= value {
                return Ok(stored);
            }
            // Check-and-set on the version read: a concurrent raise makes this one retry.
            let body = serde_json::json!({
                "options": { "cas": version },
                "data": { "value": value.to_string() },
            });
            let body = Zeroizing::new(serde_json::to_vec(&body).expect("JSON"));
            match self.call(Method::POST, &url, Some(body)).await {
                Ok(_) => return Ok(value),
                Err(Failure::Status { status, errors })
                    if status.as_u16() == 400
                        && errors.iter().any(|e| e.contains("check-and-set")) =>
                {
                    continue;
                }
                Err(f) => return Err(f.into_error("raise counter", tenant)),
            }
        }
        Err(KeyError::new(
            KeyErrorKind::Transient,
            format!("OpenBao counter for tenant {tenant:?}: too many concurrent raises"),
        ))
    }

    async fn health_check(&self) -> Result<(), KeyError> {
        let url = format!("{}/sys/health", self.api_url);
        match self.call(Method::GET, &url, None).await {
            Ok(_) => {}
            // 429: unsealed standby; 472/473: DR / performance standby. They still serve.
            Err(Failure::Status { status, .. }) if matches!(status.as_u16(), 429 | 472 | 473) => {}
            Err(Failure::Status { status, .. }) if status.as_u16() == 503 => {
                return Err(KeyError::new(
                    KeyErrorKind::Transient,
                    "OpenBao health check: the server is sealed (HTTP 503)",
                ));
            }
            Err(f) => return Err(f.into_error("health check", "")),
        }
        let url = format!("{}/auth/token/lookup-self", self.api_url);
        self.call(Method::GET, &url, None)
            .await
            .map(|_| ())
            .map_err(|f| f.into_error("token check", ""))
    }
}

/// Why an HTTP call failed.
enum Failure {
    /// No answer: connection, timeout, interrupted body.
    Transport(reqwest::Error),
    /// A non-2xx answer with the server's `errors`.
    Status {
        status: StatusCode,
        errors: Vec<String>,
    },
    /// The request could not be encoded (the token is checked in `new`, so not expected).
    Encode,
}

impl Failure {
    /// Whether the answer says the named Transit key does not exist.
    fn key_missing(&self) -> bool {
        let Failure::Status { status, errors } = self else {
            return false;
        };
        if errors.iter().any(|e| e.contains("no handler for route")) {
            return false; // the mount is missing, not the key
        }
        match status.as_u16() {
            // GET keys/<name> on a missing key: 404 with no errors.
            404 => errors.is_empty() || errors.iter().any(|e| mentions_missing_key(e)),
            // "encryption key not found", "key not found", "no existing key named ... could be
            // found", "could not delete key; not found".
            400 => errors.iter().any(|e| mentions_missing_key(e)),
            _ => false,
        }
    }

    fn into_error(self, op: &str, tenant: &str) -> KeyError {
        let who = if tenant.is_empty() {
            String::new()
        } else {
            format!(" for tenant {tenant:?}")
        };
        match self {
            Failure::Transport(e) => {
                let kind = if e.is_builder() || e.is_redirect() {
                    KeyErrorKind::Permanent
                } else {
                    KeyErrorKind::Transient
                };
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                KeyError::with_source(
                    kind,
                    format!("OpenBao Transit {op}{who}: {what}"),
                    e.without_url(),
                )
            }
            Failure::Status { status, errors } => {
                let code = status.as_u16();
                let kind = match code {
                    401 | 403 => KeyErrorKind::Denied,
                    429 => KeyErrorKind::Transient,
                    501 => KeyErrorKind::Permanent,
                    500..=599 => KeyErrorKind::Transient,
                    400 if errors.iter().any(|e| is_decrypt_failure(e)) => KeyErrorKind::Invalid,
                    _ => KeyErrorKind::Permanent,
                };
                let text = error_text(&errors);
                let detail = if kind == KeyErrorKind::Invalid {
                    " (wrong aad, another tenant's wrap, or tampered ciphertext)"
                } else {
                    ""
                };
                KeyError::new(
                    kind,
                    format!("OpenBao Transit {op}{who} failed: HTTP {code}: {text}{detail}"),
                )
            }
            Failure::Encode => KeyError::new(
                KeyErrorKind::Permanent,
                format!("OpenBao Transit {op}{who}: cannot encode the request"),
            ),
        }
    }
}

fn mentions_missing_key(e: &str) -> bool {
    e.contains("key not found") || e.contains("could be found") || e.contains("; not found")
}

fn is_decrypt_failure(e: &str) -> bool {
    e.contains("message authentication failed")
        || e.contains("unable to decrypt")
        || e.contains("decryption failed")
        || e.contains("invalid ciphertext")
        || e.contains("too old")
}

/// The server's error strings, joined, stripped of control characters and truncated.
fn error_text(errors: &[String]) -> String {
    if errors.is_empty() {
        return "(no error text)".to_string();
    }
    let joined = errors.join("; ");
    let mut out: String = joined
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect();
    if joined.chars().count() > MAX_ERROR_TEXT {
        out.push('…');
    }
    out
}

/// `N` of a `vault:vN:...` ciphertext.
fn parse_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (digits, _) = rest.split_once(':')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&v| v > 0)
}

fn wrapped_from(reply: &[u8], op: &str) -> Result<WrappedKey, KeyError> {
    let data = parse_data::<CiphertextData>(reply, op)?;
    let version = parse_version(&data.ciphertext).ok_or_else(|| {
        KeyError::new(
            KeyErrorKind::Permanent,
            format!("OpenBao Transit {op} returned a ciphertext without a vault:vN: prefix"),
        )
    })?;
    if data.key_version.is_some_and(|v| v != version) {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!("OpenBao Transit {op} returned inconsistent key versions"),
        ));
    }
    Ok(WrappedKey {
        provider: KIND.to_string(),
        kek_version: version,
        ciphertext: data.ciphertext,
    })
}

fn check_key_info(tenant: &str, info: &KeyInfo) -> Result<(), KeyError> {
    if info.key_type != KEY_TYPE || !info.derived {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "the Transit key of tenant {tenant:?} is a {}{} key; expected a derived {KEY_TYPE} \
                 key",
                if info.derived { "derived " } else { "" },
                info.key_type
            ),
        ));
    }
    Ok(())
}

fn parse_data<T: serde::de::DeserializeOwned>(body: &[u8], op: &str) -> Result<T, KeyError> {
    let resp: Response<T> = serde_json::from_slice(body).map_err(|e| {
        KeyError::with_source(
            KeyErrorKind::Permanent,
            format!("OpenBao Transit {op}: unexpected answer"),
            e,
        )
    })?;
    resp.data.ok_or_else(|| {
        KeyError::new(
            KeyErrorKind::Permanent,
            format!("OpenBao Transit {op}: answer without data"),
        )
    })
}

fn json<T: Serialize>(body: &T) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    serde_json::to_vec(body)
        .map(Zeroizing::new)
        .map_err(|e| KeyError::with_source(KeyErrorKind::Permanent, "cannot encode a request", e))
}

fn build_client(connect: Duration, request: Duration) -> Result<reqwest::Client, KeyError> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sanctum-keys/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            KeyError::with_source(KeyErrorKind::Permanent, "cannot build the HTTP client", e)
        })
}

fn check_addr(addr: &str) -> Result<String, KeyError> {
    let url =
        reqwest::Url::parse(addr).map_err(|_| KeyError::invalid("OpenBao address is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(KeyError::invalid(
            "OpenBao address must be an http(s) URL without credentials, query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn check_mount(mount: &str) -> Result<String, KeyError> {
    let mount = mount.trim_matches('/');
    let ok = !mount.is_empty()
        && mount.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !ok {
        return Err(KeyError::invalid(
            "Transit mount must be /-separated segments of [A-Za-z0-9_-]",
        ));
    }
    Ok(mount.to_string())
}

fn check_prefix(prefix: &str) -> Result<(), KeyError> {
    let ok = prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !prefix.starts_with('-');
    if !ok {
        return Err(KeyError::invalid(
            "Transit key prefix must be at most 64 characters of [A-Za-z0-9_-], not starting with '-'",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Response<T> {
    data: Option<T>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct KeyInfo {
    #[serde(rename = "type")]
    key_type: String,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    deletion_allowed: bool,
    latest_version: u32,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
    #[serde(default)]
    key_version: Option<u32>,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct PlaintextData {
    plaintext: String,
}

#[derive(Serialize)]
struct CreateKeyRequest<'a> {
    #[serde(rename = "type")]
    key_type: &'a str,
    derived: bool,
}

#[derive(Serialize)]
struct ConfigRequest {
    deletion_allowed: bool,
}

#[derive(Serialize)]
struct EncryptRequest<'a> {
    plaintext: &'a str,
    context: &'a str,
}

#[derive(Serialize)]
struct CiphertextRequest<'a> {
    ciphertext: &'a str,
    context: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("vault:v1:abc"), Some(1));
        assert_eq!(parse_version("vault:v12:abc"), Some(12));
        for bad in [
            "vault:v0:x",
            "vault:v:x",
            "vault:vx:x",
            "v1:x",
            "vault:v1",
            "vault:v+1:x",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn arguments() {
        let ok = OpenBaoTransit::new(
            "http://127.0.0.1:8200/",
            "t".into(),
            "/transit/",
            "sanctum-",
        )
        .unwrap();
        assert_eq!(ok.mount_url, "http://127.0.0.1:8200/v1/transit");
        assert_eq!(ok.key_name("t1"), "sanctum-t1");
        assert_eq!(ok.tombstone_name("t1"), "sanctum-t1.destroyed");
        assert!(!format!("{ok:?}").contains("\"t\""));
        let bad = |addr: &str, token: &str, mount: &str, prefix: &str| {
            OpenBaoTransit::new(addr, token.into(), mount, prefix)
                .unwrap_err()
                .kind
        };
        assert_eq!(bad("ftp://x", "t", "transit", ""), KeyErrorKind::Invalid);
        assert_eq!(
            bad("http://u:p@x", "t", "transit", ""),
            KeyErrorKind::Invalid
        );
        assert_eq!(bad("http://x", "", "transit", ""), KeyErrorKind::Invalid);
        assert_eq!(
            bad("http://x", "a\nb", "transit", ""),
            KeyErrorKind::Invalid
        );
        assert_eq!(bad("http://x", "t", "../sys", ""), KeyErrorKind::Invalid);
        assert_eq!(bad("http://x", "t", "", ""), KeyErrorKind::Invalid);
        assert_eq!(
            bad("http://x", "t", "transit", "a.b"),
            KeyErrorKind::Invalid
        );
        assert_eq!(
            bad("http://x", "t", "transit", "a/b"),
            KeyErrorKind::Invalid
        );
    }

    #[test]
    fn missing_key_detection() {
        let status = |code: u16, errors: &[&str]| Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            errors: errors.iter().map(|s| s.to_string()).collect(),
        };
        assert!(status(404, &[]).key_missing());
        assert!(status(400, &["encryption key not found"]).key_missing());
        assert!(status(400, &["key not found"]).key_missing());
        assert!(status(400, &["no existing key named x could be found"]).key_missing());
        assert!(
            !status(404, &["no handler for route \"x\". route entry not found."]).key_missing()
        );
        assert!(!status(400, &["cipher: message authentication failed"]).key_missing());
        assert_eq!(
            status(400, &["cipher: message authentication failed"])
                .into_error("decrypt", "t")
                .kind,
            KeyErrorKind::Invalid
        );
        assert_eq!(
            status(403, &["permission denied"])
                .into_error("x", "t")
                .kind,
            KeyErrorKind::Denied
        );
        assert_eq!(
            status(503, &[]).into_error("x", "t").kind,
            KeyErrorKind::Transient
        );
        assert_eq!(
            status(429, &[]).into_error("x", "t").kind,
            KeyErrorKind::Transient
        );
        assert_eq!(
            status(400, &["other"]).into_error("x", "t").kind,
            KeyErrorKind::Permanent
        );
    }
}
