//! The license server over HTTP: capability requests for clients, status and activation for the
//! administrator (with the admin token printed at `init`), health, metrics, OpenAPI.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, StringRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tessera_core::capability::CapabilityRequest;
use tessera_store::ClaimStatus;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::daemon::Server;
use crate::engine::{Answer, EngineError};
use crate::openapi::{Answers, FeatureRecords, Problem, SyncOutcome};

/// Shared state.
#[derive(Debug)]
pub struct AppState {
    /// The server.
    pub server: Server,
    requests: AtomicU64,
    denied: AtomicU64,
    /// Capability requests per client address (none when the limit is off).
    limiter: Option<tessera_host::serve::TokenBuckets>,
    rate_limited: AtomicU64,
}

/// Shared.
pub type Shared = Arc<AppState>;

/// Wraps an opened server for serving.
pub fn state(server: Server) -> Shared {
    let rate = server.config.capability_requests_per_minute;
    Arc::new(AppState {
        server,
        requests: AtomicU64::new(0),
        denied: AtomicU64::new(0),
        limiter: (rate > 0).then(|| tessera_host::serve::TokenBuckets::new(rate)),
        rate_limited: AtomicU64::new(0),
    })
}

/// The caller's address (none when the router is called without connection info).
#[derive(Debug, Clone, Copy)]
struct ClientIp(Option<std::net::IpAddr>);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Takes a capability request from `ip`'s allowance; the 429 answer when it is used up.
fn check_rate(s: &AppState, ip: ClientIp) -> Result<(), Box<Response>> {
    let (Some(limiter), Some(ip)) = (&s.limiter, ip.0) else {
        return Ok(());
    };
    let loopback = match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback && !s.server.config.rate_limit_loopback {
        return Ok(());
    }
    limiter.take(ip).map_err(|wait| {
        s.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} capability requests a minute from your address; try again in {wait} s (the administrator sets capability_requests_per_minute in server.toml)",
                s.server.config.capability_requests_per_minute
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        Box::new(r)
    })
}

fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:tessera:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
        "code": code,
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    r
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tessera license server",
        description = "Capability requests (seats as leases) and administration. Errors are application/problem+json with a stable `code`."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

fn documented() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(capability))
        .routes(routes!(status))
        .routes(routes!(activate))
        .routes(routes!(offline_request))
        .routes(routes!(sync_now))
        .routes(routes!(offline_apply))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = documented().split_for_parts().1;
        // after the routes are in: it documents what their extractors answer
        utoipa::Modify::modify(&Answers, &mut doc);
        doc
    })
    .clone()
}

/// The router.
pub fn router(state: Shared) -> Router {
    documented()
        .split_for_parts()
        .0
        .fallback(tessera_host::serve::not_found)
        .method_not_allowed_fallback(tessera_host::serve::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Serves on a bound listener until `shutdown`, within the limits of the configuration
/// (`request_timeout_seconds`, `max_connections`); sweeps expired leases every few seconds.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.server.config.limits();
    let (sweep, sync) = background(&state);
    let r = tessera_host::serve::serve(listener, router(state), None, limits, shutdown).await;
    stop_background(sweep, sync).await;
    r
}

/// Serves HTTPS on a bound listener with the certificate chain and key in PEM files until
/// `shutdown`; otherwise as [`serve_on`].
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    cert: &std::path::Path,
    key: &std::path::Path,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.server.config.limits();
    let (sweep, sync) = background(&state);
    let tls = tessera_host::serve::TlsFiles { cert, key };
    let r = tessera_host::serve::serve(listener, router(state), Some(tls), limits, shutdown).await;
    stop_background(sweep, sync).await;
    r
}

/// Stops the background tasks and waits until they are gone, so the server they hold (its locks on
/// the data directory and database) is released when serving returns.
async fn stop_background(sweep: tokio::task::JoinHandle<()>, sync: tokio::task::JoinHandle<()>) {
    sweep.abort();
    sync.abort();
    let _ = sweep.await;
    let _ = sync.await;
}

/// The sweeper (expired leases, and in a cluster a newer bundle) and the daily sync.
fn background(state: &Shared) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let sweeper = state.clone();
    let sweep = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            if let Err(e) = sweeper.server.engine.sweep().await {
                tracing::warn!(error = %e, "lease sweep failed; will try again");
            }
            if sweeper.server.engine.clustered() {
                match sweeper.server.refresh_from_store().await {
                    Ok(true) => tracing::info!(
                        "serving the license bundle another cluster member installed"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not check for a newer license bundle")
                    }
                }
            }
        }
    });
    let syncer = state.clone();
    let sync = tokio::spawn(async move { periodic_sync(syncer).await });
    (sweep, sync)
}

/// Liveness: 200 while the process runs. The body is `ok`, or says what is degraded (`degraded:
/// database lock lost: …`); readiness to grant is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String,
        description = "`ok`, or `degraded: …` saying what is wrong (the process runs either way)")))]
async fn healthz(State(s): State<Shared>) -> String {
    match s.server.store.claim_status() {
        ClaimStatus::Lost { reason } => format!("degraded: database lock lost: {reason}"),
        _ => "ok".into(),
    }
}

/// How long `/readyz` waits for the database to answer.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness, for a load balancer: 200 `ready` when this process can grant seats (its database
/// answers and, on PostgreSQL, it holds the database lock), else 503 problem+json saying what is
/// missing. Activation is not required: a server that is not activated answers every request (it
/// refuses the features), and is activated through this same address.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "`ready`"),
        (status = 503, content_type = "application/problem+json", body = Problem,
            description = "`lock_lost` (this process does not hold the database lock) or `storage_unavailable` (the database does not answer)")))]
async fn readyz(State(s): State<Shared>) -> Response {
    if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "lock_lost",
            format!("not ready: this license server process does not hold the database lock, so it grants nothing: {reason}"),
        );
    }
    match tokio::time::timeout(READY_TIMEOUT, s.server.store.ping()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("not ready: the database does not answer: {e}"),
        ),
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!(
                "not ready: the database did not answer within {} seconds",
                READY_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// The answer to a capability request while this process does not hold the database lock.
fn lock_lost(reason: &str) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "lock_lost",
        format!("this license server process does not hold the database lock ({reason}); nothing was granted, renewed or returned: retry with the same request id shortly, or through another server"),
    )
}

pub use tessera_wire::capability::CapabilityAnswer;

/// The request in a body: JSON (by its content type) that parses as a [`CapabilityRequest`].
/// Parsed straight from the bytes; only a body that fails is parsed again by axum's extractor,
/// which tracks the path inside the document for its message (`features[0].count: ...`).
fn capability_request(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CapabilityRequest, (StatusCode, &'static str, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            JsonRejection::from(axum::extract::rejection::MissingJsonContentType::default())
                .body_text(),
        ));
    }
    match serde_json::from_slice(body) {
        Ok(r) => Ok(r),
        Err(_) => match Json::<CapabilityRequest>::from_bytes(body) {
            Ok(Json(r)) => Ok(r),
            Err(e) => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.body_text(),
            )),
        },
    }
}

/// A [`CapabilityAnswer`] as JSON, written directly: the token (JWS compact, base64url and dots)
/// needs no escaping and the certificate is escaped once when installed, where the serializer would
/// scan both, about two kilobytes, byte by byte for every answer.
fn answer_body(token: &str, certificate_json: Option<&str>) -> Response {
    // no quote, backslash or control character (checked without an early exit, which lets the
    // compiler check many bytes at a time)
    let plain = token
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    let body = if plain {
        let certificate = certificate_json.unwrap_or("null");
        let mut b = String::with_capacity(token.len() + certificate.len() + 32);
        b.push_str("{\"response\":\"");
        b.push_str(token);
        b.push_str("\",\"certificate\":");
        b.push_str(certificate);
        b.push('}');
        b
    } else {
        // not a token this server makes; escaped the slow way all the same
        let answer = CapabilityAnswer {
            response: token.to_string(),
            certificate: certificate_json.and_then(|c| serde_json::from_str(c).ok()),
        };
        serde_json::to_string(&answer).unwrap_or_default()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Takes, previews, renews, returns or borrows seats. See docs/protocol.md.
#[utoipa::path(post, path = "/api/v1/capability", tag = "capability",
    request_body(content = crate::openapi::CapabilityRequestDoc, description = "a capability request (docs/protocol.md)"),
    responses((status = 200, body = CapabilityAnswer, description = "the signed (or sealed) answer; refused features are listed in it, not as an error"),
        (status = 403, body = Problem, description = "not_lease_holder: a renew or return whose session proof does not prove the lease"),
        (status = 413, body = Problem, description = "body_too_large: the body is over 64 KiB"),
        (status = 415, body = Problem, description = "unsupported_media_type: the body is not sent as application/json"),
        (status = 422, body = Problem, description = "invalid_request: not JSON, or not a capability request (an unknown field, a missing one, a feature named twice, a renew without its proof)"),
        (status = 429, body = Problem, description = "rate_limited: too many requests from this client; with Retry-After"),
        (status = 503, body = Problem, description = "storage_unavailable (nothing was stored), lock_lost (this process does not hold the database lock)")))]
async fn capability(
    State(s): State<Shared>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(r) = check_rate(&s, ip) {
        return *r;
    }
    let req = match body {
        Ok(body) => capability_request(&headers, &body),
        Err(e) => return body_problem(e.status()),
    };
    let req = match req {
        Ok(r) => r,
        Err((status, code, detail)) => return problem(status, code, detail),
    };
    if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
        return lock_lost(&reason);
    }
    match s.server.engine.handle(req).await {
        Ok(Answer {
            token,
            sealed,
            denied,
        }) => {
            if denied {
                s.denied.fetch_add(1, Ordering::Relaxed);
            }
            // a sealed answer is checked with the session key alone: no certificate to send
            let certificate = if sealed {
                None
            } else {
                s.server
                    .certificate
                    .read()
                    .await
                    .as_ref()
                    .map(|c| c.json.clone())
            };
            answer_body(&token, certificate.as_deref())
        }
        Err(EngineError::BadRequest(d)) => {
            problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", d)
        }
        Err(EngineError::NotHolder(d)) => problem(StatusCode::FORBIDDEN, "not_lease_holder", d),
        Err(e @ EngineError::Store(_)) => {
            tracing::warn!(error = %e, "capability request not stored");
            if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
                return lock_lost(&reason);
            }
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the license server could not store the decision; nothing was granted; try again",
            )
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Whether the request carries the admin token. The token's hash is read from the store at each
/// admin request, so `tessera server token rotate` takes effect at once (on every member of a
/// cluster too).
async fn admin(s: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let stored = match tessera_store::MetaStore::get_setting(
        &s.server.store,
        crate::daemon::ADMIN_TOKEN_SETTING,
    )
    .await
    {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the admin token from the store");
            return Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the license server could not read its store to check the admin token; try again",
            ));
        }
    };
    if token.is_empty() || stored.is_empty() || crate::daemon::admin_token_hash(token) != stored {
        let mut r = problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs the admin token printed by `tessera server init` (or the last `tessera server token rotate`): Authorization: Bearer <token>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Err(r);
    }
    Ok(())
}

/// The administrator, proven by the admin token. Admin handlers take it before their body, so a
/// caller without the token gets 401 whatever the body holds: the body is not read, and nothing
/// about its fields is revealed.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl axum::extract::FromRequestParts<Shared> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Shared,
    ) -> Result<Self, Self::Rejection> {
        admin(s, &parts.headers).await.map(|()| Admin)
    }
}

/// A JSON body that could not be read, as a problem.
fn json_problem(e: JsonRejection) -> Response {
    match e {
        JsonRejection::JsonSyntaxError(e) => problem(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => body_problem(e.status()),
        e => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.body_text(),
        ),
    }
}

/// A body that could not be read (too large, not UTF-8), as a problem.
fn body_problem(status: StatusCode) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        problem(
            status,
            "body_too_large",
            "the request body is too large (at most 64 KiB)",
        )
    } else {
        problem(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read as UTF-8 text",
        )
    }
}

pub use tessera_wire::admin::{FeatureState, Status};

/// The server's features, use and leases.
#[utoipa::path(get, path = "/api/v1/admin/status", tag = "admin", security(("token" = [])),
    responses((status = 200, body = Status)))]
async fn status(State(s): State<Shared>, _admin: Admin) -> Response {
    let usage = s.server.engine.usage().await;
    let leases = s.server.engine.leases().await.len();
    Json(Status {
        hostid: s.server.hostid.to_string(),
        activated: s.server.certificate.read().await.is_some(),
        features: usage
            .into_iter()
            .map(|(f, used, consumed)| FeatureState {
                name: f.name.clone(),
                version: f.version.to_string(),
                count: f.count.get(),
                overdraft: f.overdraft,
                used,
                consumed,
                expiry: f.expiry.to_string(),
                activation_id: f.activation_id.clone(),
            })
            .collect(),
        leases,
    })
    .into_response()
}

pub use tessera_wire::admin::{ActivateRequest, KeyCount};

/// Activates keys at the back office and serves the returned bundle.
#[utoipa::path(post, path = "/api/v1/admin/activate", tag = "admin", security(("token" = [])), request_body = ActivateRequest,
    responses((status = 200, body = crate::openapi::FeatureRecords, description = "activated"),
        (status = 502, body = Problem, description = "backoffice_refused: the back office refused the keys or could not be reached")))]
async fn activate(
    State(s): State<Shared>,
    _admin: Admin,
    req: Result<Json<ActivateRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let list: Vec<(String, u32)> = req
        .activations
        .into_iter()
        .map(|k| (k.key, k.count))
        .collect();
    match s.server.activate(&req.backoffice, &list).await {
        Ok(n) => Json(FeatureRecords {
            feature_records: n as u64,
        })
        .into_response(),
        Err(e) => problem(StatusCode::BAD_GATEWAY, "backoffice_refused", e.to_string()),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")))]
async fn metrics(State(s): State<Shared>) -> Response {
    let mut out = String::from("# TYPE tessera_capability_requests_total counter\n");
    out.push_str(&format!(
        "tessera_capability_requests_total {}\n",
        s.requests.load(Ordering::Relaxed)
    ));
    let st = s.server.engine.stats();
    out.push_str(&format!(
        "# TYPE tessera_capability_denied_total counter\ntessera_capability_denied_total {}\n",
        s.denied.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "# TYPE tessera_capability_rate_limited_total counter\ntessera_capability_rate_limited_total {}\n",
        s.rate_limited.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "# TYPE tessera_engine_commits_total counter\ntessera_engine_commits_total {}\n",
        st.commits
    ));
    out.push_str(&format!(
        "# TYPE tessera_engine_decisions_total counter\ntessera_engine_decisions_total {}\n",
        st.decisions
    ));
    out.push_str(&format!(
        "# TYPE tessera_engine_commit_seconds_total counter\ntessera_engine_commit_seconds_total {:.6}\n",
        st.commit_micros as f64 / 1e6
    ));
    out.push_str(&format!(
        "# TYPE tessera_engine_decide_seconds_total counter\ntessera_engine_decide_seconds_total {:.6}\n",
        st.decide_micros as f64 / 1e6
    ));
    out.push_str(&format!(
        "# TYPE tessera_leases_held gauge\ntessera_leases_held {}\n",
        s.server.engine.lease_count()
    ));
    out.push_str("# TYPE tessera_seats_in_use gauge\n");
    for (f, used, _) in s.server.engine.usage().await {
        out.push_str(&format!(
            "tessera_seats_in_use{{feature=\"{}\",version=\"{}\"}} {used}\n",
            f.name, f.version
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, body = crate::openapi::OpenApiDocument, description = "the OpenAPI 3.1 document")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

pub use tessera_wire::admin::OfflineRequestBody;

/// Writes an offline activation request file (text) to take to the back office.
#[utoipa::path(post, path = "/api/v1/admin/offline-request", tag = "admin", security(("token" = [])), request_body = OfflineRequestBody,
    responses((status = 200, content_type = "text/plain", body = String, description = "the request file")))]
async fn offline_request(
    State(s): State<Shared>,
    _admin: Admin,
    req: Result<Json<OfflineRequestBody>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let list: Vec<(String, u32)> = req
        .activations
        .into_iter()
        .map(|k| (k.key, k.count))
        .collect();
    match s.server.offline_request(&list) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Applies the back office's offline response file (the body, as text).
#[utoipa::path(post, path = "/api/v1/admin/offline-apply", tag = "admin", security(("token" = [])),
    request_body(content = String, content_type = "text/plain", description = "the back office's response file"),
    responses((status = 200, body = crate::openapi::FeatureRecords, description = "applied"),
        (status = 400, body = Problem, description = "unreadable_body (not UTF-8)"),
        (status = 413, body = Problem, description = "body_too_large"),
        (status = 422, body = Problem, description = "invalid_document"),
        (status = 503, body = Problem, description = "storage_unavailable")))]
async fn offline_apply(
    State(s): State<Shared>,
    _admin: Admin,
    body: Result<String, StringRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    match s.server.offline_apply(&body).await {
        Ok(n) => Json(FeatureRecords {
            feature_records: n as u64,
        })
        .into_response(),
        Err(e @ crate::daemon::ServerError::Store(_)) => {
            tracing::warn!(error = %e, "offline response not stored");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the license server could not store the response; nothing changed; try again",
            )
        }
        Err(e) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
            e.to_string(),
        ),
    }
}

/// Seconds until the next `hour`:00 in `zone` after `now`; an hour that a daylight-saving change
/// skips is taken as the instant the clocks jump.
fn until_local_hour(
    now: tessera_core::time::OffsetDateTime,
    hour: u8,
    zone: &jiff::tz::TimeZone,
) -> u64 {
    let local = |ts: jiff::Timestamp, days: i64| -> Option<jiff::Timestamp> {
        let date = ts.to_zoned(zone.clone()).date();
        let day = date.checked_add(jiff::Span::new().days(days)).ok()?;
        let at = day.at(i8::try_from(hour.min(23)).ok()?, 0, 0, 0);
        // an hour the clocks skip becomes the instant they jump
        Some(at.to_zoned(zone.clone()).ok()?.timestamp())
    };
    let Ok(ts) = jiff::Timestamp::from_second(now.unix_timestamp()) else {
        return until_hour(now, hour);
    };
    let next = [0, 1, 2]
        .into_iter()
        .filter_map(|d| local(ts, d))
        .find(|t| *t > ts);
    match next {
        Some(t) => u64::try_from(t.as_second() - ts.as_second())
            .unwrap_or(3600)
            .max(1),
        None => until_hour(now, hour),
    }
}

/// When the daily sync is next due: at `sync_hour_utc` UTC when set, else at `sync_hour` in the
/// machine's time zone (UTC when it has none that can be read).
fn until_sync(now: tessera_core::time::OffsetDateTime, config: &crate::daemon::Config) -> u64 {
    match config.sync_hour_utc {
        Some(h) => until_hour(now, h),
        None => until_local_hour(now, config.sync_hour, &jiff::tz::TimeZone::system()),
    }
}

/// Seconds until the next `hour`:00 UTC after `now`.
fn until_hour(now: tessera_core::time::OffsetDateTime, hour: u8) -> u64 {
    let today = now
        .date()
        .with_hms(hour.min(23), 0, 0)
        .map(|t| t.assume_utc())
        .unwrap_or(now);
    let next = if today > now {
        today
    } else {
        today + tessera_core::time::Duration::days(1)
    };
    u64::try_from((next - now).whole_seconds())
        .unwrap_or(3600)
        .max(1)
}

/// The daily sync (renewal and usage report), retried with back-off when the back office cannot
/// be reached: 1 minute, doubling, at most 1 hour.
async fn periodic_sync(s: Shared) {
    loop {
        let wait = until_sync(s.server.clock.now(), &s.server.config);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        let mine = match s.server.claim_scheduled_sync().await {
            Ok(mine) => mine,
            Err(e) => {
                // better a second usage report than none
                tracing::warn!(error = %e, "could not claim today's sync in the shared store; syncing anyway");
                true
            }
        };
        if !mine {
            tracing::info!(
                "another member of the cluster runs today's sync; checking in an hour that it did"
            );
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            match s.server.take_over_scheduled_sync().await {
                Ok(true) => {
                    tracing::warn!("no member of the cluster has reported today's sync done; syncing from this one");
                }
                Ok(false) => {
                    // the report covered the whole pool: the next one starts from here on every
                    // member
                    let _ = s.server.engine.report(true).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not check today's sync in the shared store");
                    continue;
                }
            }
        }
        let mut backoff = 60u64;
        loop {
            match s.server.sync().await {
                Ok(over) => {
                    tracing::info!(over_use = ?over, "synced with the back office");
                    if let Err(e) = s.server.note_scheduled_sync_done().await {
                        tracing::warn!(error = %e, "could not record today's sync in the shared store");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_secs = backoff, "sync with the back office failed");
                    tokio::time::sleep(std::time::Duration::from_secs(backoff)).await;
                    backoff = (backoff * 2).min(3600);
                }
            }
        }
    }
}

/// Syncs with the back office now: usage report out, renewed bundle in.
#[utoipa::path(post, path = "/api/v1/admin/sync", tag = "admin", security(("token" = [])),
    responses((status = 200, body = crate::openapi::SyncOutcome, description = "synced; lists features used over the entitlement"),
        (status = 502, body = Problem, description = "backoffice_refused: the back office refused the report or could not be reached")))]
async fn sync_now(State(s): State<Shared>, _admin: Admin) -> Response {
    match s.server.sync().await {
        Ok(over) => Json(SyncOutcome { over_use: over }).into_response(),
        Err(e) => problem(StatusCode::BAD_GATEWAY, "backoffice_refused", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::time::macros::datetime;

    #[test]
    fn next_sync_time() {
        assert_eq!(until_hour(datetime!(2026-06-01 23:00 UTC), 0), 3600);
        assert_eq!(until_hour(datetime!(2026-06-01 00:00 UTC), 0), 86_400);
        assert_eq!(until_hour(datetime!(2026-06-01 01:30 UTC), 2), 1800);
    }

    #[test]
    fn next_sync_time_in_local_time() {
        // zones from their POSIX rules: the test needs no time-zone database on the machine
        let zone = |rule: &str| jiff::tz::TimeZone::posix(rule).unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let berlin = zone("CET-1CEST,M3.5.0,M10.5.0/3");
        let ny = zone("EST5EDT,M3.2.0,M11.1.0");
        let cases = [
            (datetime!(2026-06-01 23:00 UTC), 0, &utc, 3600, "UTC"),
            // Berlin is UTC+2 in June: local midnight is 22:00 UTC
            (
                datetime!(2026-06-01 21:00 UTC),
                0,
                &berlin,
                3600,
                "Berlin, summer",
            ),
            (
                datetime!(2026-06-01 22:00 UTC),
                0,
                &berlin,
                86_400,
                "Berlin, at midnight",
            ),
            // and UTC+1 in January
            (
                datetime!(2026-01-15 22:30 UTC),
                0,
                &berlin,
                1800,
                "Berlin, winter",
            ),
            // New York (UTC-4 in June): 02:00 local is 06:00 UTC
            (
                datetime!(2026-06-01 05:00 UTC),
                2,
                &ny,
                3600,
                "New York, summer",
            ),
            // the night clocks go forward (2026-03-08) there is no 02:00: the sync runs at the
            // jump (07:00 UTC, 03:00 local), 24 hours after 02:00 the day before
            (
                datetime!(2026-03-07 07:00 UTC),
                2,
                &ny,
                86_400,
                "a skipped hour",
            ),
            // 03:00 local comes one hour after 01:00 local that night
            (
                datetime!(2026-03-08 06:00 UTC),
                3,
                &ny,
                3600,
                "the hour after the jump",
            ),
            // the night clocks go back (2026-11-01) the day has 25 hours
            (
                datetime!(2026-10-31 06:00 UTC),
                2,
                &ny,
                86_400 + 3600,
                "a 25-hour day",
            ),
        ];
        for (now, hour, tz, want, what) in cases {
            assert_eq!(until_local_hour(now, hour, tz), want, "{what}");
        }
    }

    #[test]
    fn capability_requests_parse_fast_and_fail_with_axums_messages() {
        let mut h = HeaderMap::new();
        let body = br#"{"operation":"request","device_id":"string=a","request_id":"r","nonce":"0123456789abcdef","features":[{"name":"modeler"}]}"#;
        let (status, code, err) = capability_request(&h, body).unwrap_err();
        assert_eq!(
            (status, code),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        assert!(err.contains("Content-Type: application/json"), "{err}");
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        let r = capability_request(&h, body).unwrap();
        assert_eq!(r.features[0].name, "modeler");
        h.insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().unwrap(),
        );
        assert!(capability_request(&h, body).is_ok());
        let bad = br#"{"operation":"request","device_id":"string=a","request_id":"r","nonce":"0123456789abcdef","features":[{"name":"modeler","count":-1}]}"#;
        let (status, _, err) = capability_request(&h, bad).unwrap_err();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.contains("features[0].count"), "{err}");
        let (_, _, err) = capability_request(&h, b"{not json").unwrap_err();
        assert!(err.contains("parse"), "{err}");
    }

    async fn parsed(r: Response) -> CapabilityAnswer {
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn answers_written_by_hand_are_the_json_of_the_answer() {
        let cert = "-----BEGIN TESSERA SERVER CERTIFICATE-----\nab\"c\\d\u{1}é\n-----END-----\n";
        let served = crate::daemon::ServedCertificate::new(cert.to_string());
        let a = parsed(answer_body("eyJh.eyJi-_0.c2ln", Some(&served.json))).await;
        assert_eq!(a.response, "eyJh.eyJi-_0.c2ln");
        assert_eq!(a.certificate.as_deref(), Some(cert));
        let a = parsed(answer_body("eyJh.eyJi.c2ln", None)).await;
        assert_eq!(a.certificate, None);
        // anything else is escaped by the serializer
        let odd = "a\"b\\c\nd";
        let a = parsed(answer_body(odd, Some(&served.json))).await;
        assert_eq!(a.response, odd);
        assert_eq!(a.certificate.as_deref(), Some(cert));
    }
}
