//! The REST API under `/api/v1`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_store::Page;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_rate, text, ApiError, ApiJson, ApiQuery, Caller, ClientIp, Shared, TextBody};
use crate::auth;
use crate::model::{ProductFeature, ProductSpec};
use crate::service::{
    ActivationResult, CustomerView, DemoResult, EntitlementView, LineView, NewLine, ProductView,
    TrialResult, UnlockResult, UsageOutcome, UsageView,
};

/// The API routes with their documentation.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(create_token))
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_products, create_product))
        .routes(routes!(add_features))
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(extend_grace))
        .routes(routes!(create_entitlement))
        .routes(routes!(get_entitlement))
        .routes(routes!(list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(rehost_key))
        .routes(routes!(activate_server))
        .routes(routes!(activate_device))
        .routes(routes!(offline_respond))
        .routes(routes!(unlock))
        .routes(routes!(start_trial))
        .routes(routes!(post_usage, list_usage))
        .routes(routes!(demo_request))
}

/// Liveness: answers `ok` while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// A user name and password, exchanged for an API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// User name.
    pub username: String,
    /// The user's password (checked against its argon2id hash).
    pub password: String,
    /// A label for the token.
    #[serde(default)]
    pub name: Option<String>,
    /// Days until the token stops working (1 to 3650); no expiry when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_days: Option<u32>,
}

/// A new API token: shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The token, for `Authorization: Bearer <token>`.
    pub token: String,
    /// Its id in `GET /api/v1/auth/tokens` (for revoking it).
    pub id: String,
    /// When it stops working (unix seconds), if it expires.
    pub expires_at: Option<i64>,
}

/// Exchanges a user name and password for an API token. Logins are throttled per account (failed
/// ones) and per address (all), and password checks run a few at a time: a refusal is 429
/// (`login_throttled`, `rate_limited`) or 503 (`busy`) with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth", request_body = TokenRequest,
    responses((status = 201, body = TokenResponse), (status = 401, body = super::Problem),
        (status = 422, description = "invalid_request", body = super::Problem),
        (status = 429, description = "login_throttled, rate_limited; with Retry-After", body = super::Problem),
        (status = 503, description = "busy; with Retry-After", body = super::Problem)))]
async fn create_token(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    check_rate(&state, ip)?;
    state.logins.attempt(&req.username, ip.0).map_err(|t| {
        ApiError::login_throttled(
            t,
            " (the command line, `tessera backoffice token create`, needs no login)",
        )
    })?;
    let user = auth::check_password(
        state.bo.store(),
        &state.hashing,
        &req.username,
        &req.password,
    )
    .await
    .map_err(|e| match e {
        auth::LoginError::Busy(_) => ApiError::busy("the back office"),
        auth::LoginError::Service(e) => ApiError::from(e),
    })?
    .ok_or_else(|| ApiError::unauthorized("wrong user name or password"))?;
    state.logins.succeeded(&req.username);
    let now = state.bo.now();
    let token = auth::create_token(
        state.bo.store(),
        &user,
        req.name.as_deref().unwrap_or("api"),
        req.expires_days,
        now,
    )
    .await
    .map_err(ApiError::from)?;
    let id: String = super::token_hash(&token)
        .chars()
        .take(auth::TOKEN_ID_LEN)
        .collect();
    let expires_at = req
        .expires_days
        .map(|d| now.unix_timestamp() + i64::from(d) * 86_400);
    Ok((
        StatusCode::CREATED,
        ApiJson(TokenResponse {
            token,
            id,
            expires_at,
        }),
    )
        .into_response())
}

/// Which tokens to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TokenFilter {
    /// Only this user's tokens.
    #[serde(default)]
    pub user: Option<String>,
}

/// Lists API tokens (never the tokens themselves): id, label, user, creation, expiry, revocation.
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "auth", security(("token" = [])), params(TokenFilter),
    responses((status = 200, body = Vec<auth::TokenView>), (status = 401, body = super::Problem)))]
async fn list_tokens(
    State(state): State<Shared>,
    _caller: Caller,
    ApiQuery(filter): ApiQuery<TokenFilter>,
) -> Result<ApiJson<Vec<auth::TokenView>>, ApiError> {
    Ok(ApiJson(
        auth::list_tokens(state.bo.store(), filter.user.as_deref(), state.bo.now()).await?,
    ))
}

/// Revokes an API token by its id (as listed; at least 8 hex digits) or by the token itself. It
/// stops working at once.
#[utoipa::path(post, path = "/api/v1/auth/tokens/{id}/revoke", tag = "auth", security(("token" = [])),
    params(("id" = String, Path, description = "the token's id (16 hex digits, as listed) or the token")),
    responses((status = 200, body = auth::TokenView), (status = 401, body = super::Problem),
        (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn revoke_token(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<auth::TokenView>, ApiError> {
    Ok(ApiJson(
        auth::revoke_token(state.bo.store(), &id, state.bo.now()).await?,
    ))
}

/// Lists products.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", security(("token" = [])),
    responses((status = 200, body = Vec<ProductView>), (status = 401, body = super::Problem)))]
async fn list_products(
    State(state): State<Shared>,
    _caller: Caller,
) -> Result<ApiJson<Vec<ProductView>>, ApiError> {
    Ok(ApiJson(state.bo.list_products().await?))
}

/// A new product.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Id: letters, digits, `-`, `_`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The product's features, trial and demo terms (flattened into the product's own fields).
    #[serde(flatten)]
    pub spec: ProductSpec,
}

// `spec` is flattened into the product's own fields: the derived schema would be `allOf` of
// ProductSpec (which refuses unknown fields, `id` among them) and `{id, name}`, which no value
// satisfies. This one is ProductSpec's own object with `id` and `name` added.
impl utoipa::PartialSchema for NewProduct {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Type;
        super::openapi::flattened(
            <ProductSpec as utoipa::PartialSchema>::schema(),
            "A new product: its id and name, and its definition.",
            &[
                ("id", Type::String, "Id: letters, digits, `-`, `_`.", true),
                ("name", Type::String, "Display name.", false),
            ],
        )
    }
}

impl ToSchema for NewProduct {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ProductSpec as ToSchema>::schemas(schemas);
    }
}

/// Defines a product with its features.
#[utoipa::path(post, path = "/api/v1/products", tag = "products", security(("token" = [])), request_body = NewProduct,
    responses((status = 201, body = ProductView), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn create_product(
    State(state): State<Shared>,
    _caller: Caller,
    ApiJson(req): ApiJson<NewProduct>,
) -> Result<Response, ApiError> {
    let p = state
        .bo
        .create_product(&req.id, &req.name, req.spec)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(p)).into_response())
}

/// Features to append to a product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFeatures {
    /// The features, appended in order.
    pub features: Vec<ProductFeature>,
}

/// Appends features to a product (features are never removed or reordered).
#[utoipa::path(post, path = "/api/v1/products/{id}/features", tag = "products", security(("token" = [])),
    params(("id" = String, Path, description = "product id")), request_body = NewFeatures,
    responses((status = 200, body = ProductView), (status = 404, body = super::Problem)))]
async fn add_features(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NewFeatures>,
) -> Result<ApiJson<ProductView>, ApiError> {
    Ok(ApiJson(state.bo.add_features(&id, req.features).await?))
}

/// Lists customers.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", security(("token" = [])),
    responses((status = 200, body = Vec<CustomerView>)))]
async fn list_customers(
    State(state): State<Shared>,
    _caller: Caller,
) -> Result<ApiJson<Vec<CustomerView>>, ApiError> {
    Ok(ApiJson(state.bo.list_customers().await?))
}

/// A new customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// The customer's name, as licenses and lists show it.
    pub name: String,
    /// Contact e-mail.
    #[serde(default)]
    pub email: Option<String>,
}

/// Adds a customer.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", security(("token" = [])), request_body = NewCustomer,
    responses((status = 201, body = CustomerView), (status = 422, body = super::Problem)))]
async fn create_customer(
    State(state): State<Shared>,
    _caller: Caller,
    ApiJson(req): ApiJson<NewCustomer>,
) -> Result<Response, ApiError> {
    let c = state
        .bo
        .create_customer(&req.name, req.email.as_deref())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(c)).into_response())
}

/// Extra grace days for one customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraceRequest {
    /// Days added to every grace period of the customer's licenses (0 resets).
    pub days: u32,
}

/// Extends one customer's grace period.
#[utoipa::path(post, path = "/api/v1/customers/{id}/grace", tag = "customers", security(("token" = [])),
    params(("id" = String, Path, description = "customer id")), request_body = GraceRequest,
    responses((status = 200, body = CustomerView), (status = 404, body = super::Problem)))]
async fn extend_grace(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<GraceRequest>,
) -> Result<ApiJson<CustomerView>, ApiError> {
    Ok(ApiJson(state.bo.extend_grace(&id, req.days).await?))
}

/// A new entitlement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntitlement {
    /// The customer.
    pub customer_id: String,
    /// Its lines.
    pub lines: Vec<NewLine>,
}

/// Creates an entitlement; the answer shows each line's activation key, this once.
#[utoipa::path(post, path = "/api/v1/entitlements", tag = "entitlements", security(("token" = [])), request_body = NewEntitlement,
    responses((status = 201, body = EntitlementView), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn create_entitlement(
    State(state): State<Shared>,
    _caller: Caller,
    ApiJson(req): ApiJson<NewEntitlement>,
) -> Result<Response, ApiError> {
    let e = state
        .bo
        .create_entitlement(&req.customer_id, req.lines)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(e)).into_response())
}

/// Shows an entitlement with its lines and who activated them (keys are not shown again).
#[utoipa::path(get, path = "/api/v1/entitlements/{id}", tag = "entitlements", security(("token" = [])),
    params(("id" = String, Path, description = "entitlement id")),
    responses((status = 200, body = EntitlementView), (status = 404, body = super::Problem)))]
async fn get_entitlement(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<EntitlementView>, ApiError> {
    Ok(ApiJson(state.bo.get_entitlement(&id).await?))
}

/// Which page of a list to return: rows to skip and rows to return.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Paging {
    /// Rows to skip.
    #[serde(default)]
    pub offset: Option<i64>,
    /// Rows to return (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<i64>,
}

impl Paging {
    fn page(&self) -> Page {
        Page {
            offset: self.offset.unwrap_or(0).max(0),
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        }
    }
}

/// Lists activation keys (as hints) with their use, newest first.
#[utoipa::path(get, path = "/api/v1/keys", tag = "entitlements", security(("token" = [])), params(Paging),
    responses((status = 200, body = Vec<LineView>)))]
async fn list_keys(
    State(state): State<Shared>,
    _caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<ApiJson<Vec<LineView>>, ApiError> {
    Ok(ApiJson(state.bo.list_keys(paging.page()).await?))
}

/// Revokes a key (by line id or by the key itself).
#[utoipa::path(post, path = "/api/v1/keys/{key}/revoke", tag = "entitlements", security(("token" = [])),
    params(("key" = String, Path, description = "line id (LIN-…) or activation key")),
    responses((status = 200, body = LineView), (status = 404, body = super::Problem),
        (status = 422, description = "invalid_key: not a line id or a well-formed key", body = super::Problem)))]
async fn revoke_key(
    State(state): State<Shared>,
    _caller: Caller,
    Path(key): Path<String>,
) -> Result<ApiJson<LineView>, ApiError> {
    Ok(ApiJson(state.bo.revoke(&key).await?))
}

/// Which activation to release.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RehostRequest {
    /// The holder to release (e.g. `device:pc_id=…`); all holders when absent.
    #[serde(default)]
    pub holder: Option<String>,
}

/// What re-hosting did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RehostResponse {
    /// Activations released.
    pub released: u64,
    /// The line now.
    pub line: LineView,
}

/// Re-hosts a key: releases its activations so it can be activated on a new machine.
#[utoipa::path(post, path = "/api/v1/keys/{key}/rehost", tag = "entitlements", security(("token" = [])),
    params(("key" = String, Path, description = "line id (LIN-…) or activation key")), request_body = RehostRequest,
    responses((status = 200, body = RehostResponse), (status = 404, body = super::Problem),
        (status = 422, description = "invalid_key: not a line id or a well-formed key", body = super::Problem)))]
async fn rehost_key(
    State(state): State<Shared>,
    _caller: Caller,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<RehostRequest>,
) -> Result<ApiJson<RehostResponse>, ApiError> {
    let (line, released) = state.bo.rehost(&key, req.holder.as_deref()).await?;
    Ok(ApiJson(RehostResponse { released, line }))
}

pub use tessera_wire::activation::{
    DeviceActivationRequest, KeyCountDoc, ServerActivationRequest, TrialRequest,
};

/// Activates one or more activation keys with counts into a license server; answers with the
/// server's license bundle and certificate.
#[utoipa::path(post, path = "/api/v1/activate/server", tag = "activation", request_body = ServerActivationRequest,
    responses((status = 200, body = ActivationResult),
        (status = 404, description = "unknown_key", body = super::Problem),
        (status = 409, description = "count_exhausted, wrong_product", body = super::Problem),
        (status = 403, description = "revoked, entitlement_expired", body = super::Problem),
        (status = 422, description = "invalid_key, invalid_request", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn activate_server(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ServerActivationRequest>,
) -> Result<ApiJson<ActivationResult>, ApiError> {
    check_rate(&state, ip)?;
    Ok(ApiJson(
        state
            .bo
            .activate_server(&req.server_hostid, &req.server_key, &req.activations)
            .await?,
    ))
}

/// Activates a node-locked key on a device (idempotent for the same device; another device is
/// refused with `bound_to_another_machine`).
#[utoipa::path(post, path = "/api/v1/activate/device", tag = "activation", request_body = DeviceActivationRequest,
    responses((status = 200, body = ActivationResult),
        (status = 404, description = "unknown_key", body = super::Problem),
        (status = 409, description = "bound_to_another_machine, count_exhausted, wrong_product", body = super::Problem),
        (status = 403, description = "revoked, entitlement_expired", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn activate_device(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<DeviceActivationRequest>,
) -> Result<ApiJson<ActivationResult>, ApiError> {
    check_rate(&state, ip)?;
    Ok(ApiJson(
        state
            .bo
            .activate_device_with_key(
                &req.key,
                &req.pc_id,
                req.product.as_deref(),
                req.device_key.as_deref(),
            )
            .await?,
    ))
}

/// Answers an offline request file (the body, as text) with a response file (as text). The same
/// request answered twice gets the same response.
#[utoipa::path(post, path = "/api/v1/offline", tag = "activation",
    request_body(content = String, content_type = "text/plain", description = "the request file"),
    responses((status = 200, content_type = "text/plain", body = String, description = "the response file"),
        (status = 422, description = "invalid_document, wrong_producer", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn offline_respond(
    State(state): State<Shared>,
    ip: ClientIp,
    TextBody(body): TextBody,
) -> Result<Response, ApiError> {
    check_rate(&state, ip)?;
    Ok(text(state.bo.offline_respond(&body).await?))
}

/// An unlock-code request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The node-locked activation key.
    pub key: String,
    /// The PC identifier shown by the application.
    pub pc_id: String,
}

/// Makes the unlock code for a key on a PC identifier (for machines that never go online).
#[utoipa::path(post, path = "/api/v1/unlock", tag = "activation", request_body = UnlockRequest,
    responses((status = 200, body = UnlockResult),
        (status = 409, description = "bound_to_another_machine, already_activated, wrong_product", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn unlock(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<UnlockRequest>,
) -> Result<ApiJson<UnlockResult>, ApiError> {
    check_rate(&state, ip)?;
    Ok(ApiJson(state.bo.unlock(&req.key, &req.pc_id).await?))
}

/// Registers a trial (or returns the one already registered: a reinstall does not restart it).
#[utoipa::path(post, path = "/api/v1/trials", tag = "trials", request_body = TrialRequest,
    responses((status = 200, body = TrialResult), (status = 404, body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn start_trial(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<TrialRequest>,
) -> Result<ApiJson<TrialResult>, ApiError> {
    check_rate(&state, ip)?;
    Ok(ApiJson(
        state.bo.start_trial(&req.product, &req.pc_id).await?,
    ))
}

/// Takes a license server's signed usage report (the armoured document as the body): records it,
/// flags over-use (and notifies the producer), and answers with the renewed license bundle.
#[utoipa::path(post, path = "/api/v1/usage", tag = "usage",
    request_body(content = String, content_type = "text/plain", description = "the usage report document"),
    responses((status = 200, body = UsageOutcome),
        (status = 422, description = "invalid_document", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn post_usage(
    State(state): State<Shared>,
    ip: ClientIp,
    TextBody(body): TextBody,
) -> Result<ApiJson<UsageOutcome>, ApiError> {
    check_rate(&state, ip)?;
    Ok(ApiJson(state.bo.usage_report(&body).await?))
}

/// Lists usage reports, newest first.
#[utoipa::path(get, path = "/api/v1/usage", tag = "usage", security(("token" = [])), params(Paging),
    responses((status = 200, body = Vec<UsageView>)))]
async fn list_usage(
    State(state): State<Shared>,
    _caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<ApiJson<Vec<UsageView>>, ApiError> {
    Ok(ApiJson(state.bo.list_usage(paging.page()).await?))
}

/// A demo request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoRequest {
    /// Your name.
    pub name: String,
    /// Your company.
    #[serde(default)]
    pub company: String,
    /// Where the demo key is sent.
    pub email: String,
    /// The product.
    pub product: String,
}

/// Requests a time-limited full-feature demo key; it is e-mailed, not shown.
#[utoipa::path(post, path = "/api/v1/demo", tag = "trials", request_body = DemoRequest,
    responses((status = 202, body = DemoResult),
        (status = 422, description = "invalid_email, invalid_request", body = super::Problem),
        (status = 503, description = "mail_not_configured", body = super::Problem),
        (status = 429, description = "rate_limited: too many requests from this address; with Retry-After", body = super::Problem)))]
async fn demo_request(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiJson(req): ApiJson<DemoRequest>,
) -> Result<Response, ApiError> {
    check_rate(&state, ip)?;
    let r = state
        .bo
        .demo_request(&req.name, &req.company, &req.email, &req.product)
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(r)).into_response())
}
