//! The back office over HTTP: the REST API, the public pages, health, metrics and the OpenAPI
//! document. Handlers parse and authorise, call [`crate::service::BackOffice`], and map the result.

pub mod api;
pub mod openapi;
pub mod pages;
pub mod problem;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tessera_service::auth::{Principal, Refused};
use tessera_service::metrics::HttpMetrics;
use tessera_store::AnyStore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::BackOffice;
pub use problem::{ApiError, ApiForm, ApiJson, ApiQuery, Problem, TextBody};
pub use tessera_service::auth::secret_hash as token_hash;
pub use tessera_service::{ClientIp, RateLimiter};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The service.
    pub bo: BackOffice<AnyStore>,
    /// Public-endpoint rate limiting.
    pub limiter: RateLimiter,
    /// Requests by route and status.
    pub metrics: Arc<HttpMetrics>,
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
    let router = router
        .fallback(tessera_service::serve::not_found)
        .method_not_allowed_fallback(tessera_service::serve::method_not_allowed);
    let router = tessera_service::trace::traced(state.metrics.counted(router));
    router
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
    tessera_service::metrics::answer(state.metrics.render())
}

/// Refuses the request when the caller has used up its public-endpoint budget.
pub fn check_rate(state: &AppState, ip: ClientIp) -> Result<(), ApiError> {
    state.limiter.allow(ip.0).map_err(ApiError::rate_limited)
}

/// The user an `Authorization: Bearer` token acts as, allowed to make a request of `method`
/// (reading needs any role, changing anything the administrator role).
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let principal = tessera_service::auth::authenticate(
        state.bo.store(),
        None,
        method,
        headers,
        state.bo.now(),
    )
    .await
    .map_err(|e| match e {
        tessera_service::auth::AuthError::Refused(r) => refused(r),
        other => ApiError::from(crate::service::ServiceError::from(other)),
    })?;
    principal
        .require(Principal::needed_for(method))
        .map_err(refused)?;
    Ok(principal.user)
}

/// A refused credential, in the back office's words.
fn refused(r: Refused) -> ApiError {
    match r {
        Refused::MalformedAuthorization => {
            ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
        }
        Refused::UnknownToken => ApiError::unauthorized("the API token is unknown or revoked"),
        Refused::RevokedToken => {
            ApiError::unauthorized("the API token is unknown or revoked: create a new one")
        }
        Refused::ExpiredToken { at } => ApiError::unauthorized(format!(
            "the API token expired at {}: create a new one (POST /api/v1/auth/token or `tessera backoffice token create`)",
            tessera_core::time_fmt::display_time(at)
        )),
        Refused::NoSuchUser => ApiError::unauthorized(
            "the API token's user no longer exists: ask an administrator for an account",
        ),
        Refused::Forbidden { needed, have } => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {needed} role; your user has {have}"),
        ),
        // no credentials (the back office takes no session cookie)
        _ => ApiError::unauthorized("this needs an API token: send Authorization: Bearer <token> (create one with POST /api/v1/auth/token or `tessera backoffice token create`)"),
    }
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
        authenticate(state, &parts.method, &parts.headers)
            .await
            .map(Caller)
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
