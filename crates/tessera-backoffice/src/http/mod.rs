//! The back office over HTTP: the REST API, the public pages, health, metrics and the OpenAPI
//! document. Handlers parse and authorise, call [`crate::service::BackOffice`], and map the result.

pub mod api;
pub mod openapi;
pub mod pages;
pub mod problem;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use tessera_store::{AnyStore, BackOfficeStore};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::BackOffice;
pub use problem::{ApiError, ApiForm, ApiJson, ApiQuery, Problem, TextBody};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Per-address token buckets for the public endpoints.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// Allows `per_minute` requests a minute per address, in bursts of up to that many.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`; when none is left, the whole seconds until one is back.
    pub fn allow(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        // an IPv6 client usually holds a whole /64: count it as one address
        let ip = match ip {
            IpAddr::V6(v6) => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
            v4 => v4,
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // bounded memory: forget idle buckets, and everything if that is not enough
            buckets.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(120));
            if buckets.len() > 100_000 {
                buckets.clear();
            }
        }
        let cap = f64::from(self.per_minute);
        let (tokens, last) = buckets.entry(ip).or_insert((cap, now));
        let refill = now.duration_since(*last).as_secs_f64() * cap / 60.0;
        *tokens = (*tokens + refill).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) * 60.0 / cap).ceil().max(1.0) as u64)
        }
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Adds one to a counter line (`name{labels}`).
    pub fn incr(&self, line: String) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(line)
            .or_insert(0) += 1;
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# HELP tessera_http_requests_total HTTP requests by route and status.\n# TYPE tessera_http_requests_total counter\n",
        );
        for (line, v) in self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!("{line} {v}\n"));
        }
        out
    }
}

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The service.
    pub bo: BackOffice<AnyStore>,
    /// Public-endpoint rate limiting.
    pub limiter: RateLimiter,
    /// The counters `/metrics` shows.
    pub metrics: Metrics,
    /// Password hashing, a few at a time.
    pub hashing: crate::auth::HashGate,
    /// Login throttling per account and per address.
    pub logins: crate::auth::LoginThrottle,
}

impl AppState {
    /// Queues an e-mail with an unlock code.
    pub async fn mail_unlock_code(
        &self,
        to: &str,
        result: &crate::service::UnlockResult,
    ) -> Result<(), crate::service::ServiceError> {
        self.bo.mail_unlock_code(to, result).await
    }
}

/// Shared state.
pub type Shared = Arc<AppState>;

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tessera back office",
        description = "The producer's service: products, customers, entitlements, activation online and offline, unlock codes, trials. Errors are application/problem+json with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and its OpenAPI document, built together so no route goes undocumented.
pub fn router(state: Shared) -> Router {
    let (router, _) = documented().split_for_parts();
    router
        .fallback(tessera_host::serve::not_found)
        .method_not_allowed_fallback(tessera_host::serve::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn documented() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::routes())
        .merge(pages::routes())
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = documented().split_for_parts().1;
        // after the routes are in: it documents what their extractors answer
        utoipa::Modify::modify(&openapi::Answers, &mut doc);
        doc
    })
    .clone()
}

/// This document: every endpoint of the back office.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = openapi::OpenApiDocument, description = "the OpenAPI 3.1 document")))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

/// Prometheus metrics: HTTP requests by route and status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")))]
async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn count(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let resp = next.run(req).await;
    if route != "/healthz" && route != "/metrics" {
        state.metrics.incr(format!(
            "tessera_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{}\"}}",
            resp.status().as_u16()
        ));
    }
    resp
}

/// The caller's address (loopback when the server was not started with connection info).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        ))
    }
}

/// Refuses the request when the caller has used up its public-endpoint budget.
pub fn check_rate(state: &AppState, ip: ClientIp) -> Result<(), ApiError> {
    state.limiter.allow(ip.0).map_err(ApiError::rate_limited)
}

/// SHA-256 hex of an API token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The user an `Authorization: Bearer` token acts as.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("this needs an API token: send Authorization: Bearer <token> (create one with POST /api/v1/auth/token or `tessera backoffice token create`)")
        })?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
        })?;
    let record = state
        .bo
        .store()
        .find_token(&token_hash(token))
        .await
        .map_err(|e| ApiError::from(crate::service::ServiceError::Store(e)))?
        .ok_or_else(|| ApiError::unauthorized("the API token is unknown or revoked"))?;
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthorized(
            "the API token is unknown or revoked: create a new one",
        ));
    }
    if let Some(expired) = record.expires_at.filter(|e| *e <= state.bo.now()) {
        return Err(ApiError::unauthorized(format!(
            "the API token expired at {}: create a new one (POST /api/v1/auth/token or `tessera backoffice token create`)",
            tessera_core::time_fmt::display_time(expired)
        )));
    }
    Ok(record.user_name)
}

/// The user an API token acts as, as an extractor. Handlers take it before their body, so a
/// caller without a valid token gets 401 whatever the body holds: the body is not even read, and
/// nothing about its fields is revealed.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

impl axum::extract::FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers).await.map(Caller)
    }
}

/// A 200 with a plain text body.
pub fn text(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
