//! Public pages: `/activate` (unlock codes), `/offline` (request file in, response file out) and
//! `/demo` (a demo key by e-mail).
//! No login; rate-limited per address like the public API.

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_rate, ApiError, ApiForm, ClientIp, Shared};
use crate::service::UnlockResult;

/// The page routes with their documentation.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(activate_page, activate_submit))
        .routes(routes!(offline_page, offline_submit))
        .routes(routes!(demo_page, demo_submit))
}

#[derive(Template)]
#[template(path = "demo.html")]
struct DemoPage {
    issuer: String,
    error: Option<(String, String)>,
    sent: bool,
    name: String,
    company: String,
    email: String,
    products: Vec<(String, String)>,
}

async fn product_choices(state: &Shared) -> Vec<(String, String)> {
    state
        .bo
        .list_products()
        .await
        .map(|ps| ps.into_iter().map(|p| (p.id, p.name)).collect())
        .unwrap_or_default()
}

/// The demo request page.
#[utoipa::path(get, path = "/demo", tag = "pages",
    responses((status = 200, content_type = "text/html", body = String, description = "the form")))]
async fn demo_page(State(state): State<Shared>) -> Response {
    html(
        StatusCode::OK,
        DemoPage {
            issuer: state.bo.issuer().to_string(),
            error: None,
            sent: false,
            name: String::new(),
            company: String::new(),
            email: String::new(),
            products: product_choices(&state).await,
        },
    )
}

/// The demo form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DemoForm {
    /// The name of the person asking for a demo.
    pub name: String,
    /// The company they ask for (may be empty).
    #[serde(default)]
    pub company: String,
    /// E-mail.
    pub email: String,
    /// Product id.
    pub product: String,
}

/// Issues a demo key and e-mails it.
#[utoipa::path(post, path = "/demo", tag = "pages",
    request_body(content = DemoForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", body = String, description = "sent"),
        (status = 403, content_type = "text/html", body = String, description = "refused (revoked, entitlement_expired), with the reason"),
        (status = 404, content_type = "text/html", body = String, description = "refused (unknown_key, not_found), with the reason"),
        (status = 409, content_type = "text/html", body = String, description = "refused, with the reason"),
        (status = 422, content_type = "text/html", body = String, description = "refused (invalid_key, invalid_request, invalid_email, invalid_document), with the reason"),
        (status = 429, content_type = "text/html", body = String, description = "rate_limited, with Retry-After"),
        (status = 503, content_type = "text/html", body = String, description = "mail_not_configured")))]
async fn demo_submit(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiForm(form): ApiForm<DemoForm>,
) -> Response {
    let products = product_choices(&state).await;
    let page = |status, error, sent| {
        html(
            status,
            DemoPage {
                issuer: state.bo.issuer().to_string(),
                error,
                sent,
                name: form.name.clone(),
                company: form.company.clone(),
                email: form.email.clone(),
                products: products.clone(),
            },
        )
    };
    if let Err(e) = check_rate(&state, ip) {
        return with_retry_after(
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                false,
            ),
            &e,
        );
    }
    match state
        .bo
        .demo_request(&form.name, &form.company, &form.email, &form.product)
        .await
    {
        Ok(_) => page(StatusCode::OK, None, true),
        Err(e) => {
            let e = ApiError::from(e);
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                false,
            )
        }
    }
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage {
    issuer: String,
    error: Option<(String, String)>,
    result: Option<UnlockResult>,
    pc_id: String,
    email: String,
    mailed: bool,
}

#[derive(Template)]
#[template(path = "offline.html")]
struct OfflinePage {
    issuer: String,
    error: Option<(String, String)>,
    response: Option<String>,
}

/// A page refused for its rate: with the `Retry-After` of the refusal.
fn with_retry_after(mut resp: Response, e: &ApiError) -> Response {
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    resp
}

/// The pages' Content-Security-Policy: their own inline style sheet, forms posted to this site,
/// nothing else (no scripts, no frames, no framing).
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html<T: Template>(status: StatusCode, page: T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // the pages load nothing, post forms to themselves and are never framed
                (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the page could not be shown",
            )
            .into_response()
        }
    }
}

/// The unlock-code page.
#[utoipa::path(get, path = "/activate", tag = "pages",
    responses((status = 200, content_type = "text/html", body = String, description = "the form")))]
async fn activate_page(State(state): State<Shared>) -> Response {
    html(
        StatusCode::OK,
        ActivatePage {
            issuer: state.bo.issuer().to_string(),
            error: None,
            result: None,
            pc_id: String::new(),
            email: String::new(),
            mailed: false,
        },
    )
}

/// The unlock-code form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ActivateForm {
    /// License key.
    pub key: String,
    /// PC identifier.
    pub pc_id: String,
    /// Optional e-mail address for a copy.
    #[serde(default)]
    pub email: String,
}

/// Shows the unlock code for a key and PC identifier (and e-mails it when an address is given),
/// or the reason there is none.
#[utoipa::path(post, path = "/activate", tag = "pages",
    request_body(content = ActivateForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", body = String, description = "the code"),
        (status = 403, content_type = "text/html", body = String, description = "refused (revoked, entitlement_expired), with the reason"),
        (status = 404, content_type = "text/html", body = String, description = "refused (unknown_key, not_found), with the reason"),
        (status = 409, content_type = "text/html", body = String, description = "refused, with the reason"),
        (status = 422, content_type = "text/html", body = String, description = "refused (invalid_key, invalid_request, invalid_email, invalid_document), with the reason"),
        (status = 429, content_type = "text/html", body = String, description = "rate_limited, with Retry-After"),
        (status = 503, content_type = "text/html", body = String, description = "mail_not_configured")))]
async fn activate_submit(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiForm(form): ApiForm<ActivateForm>,
) -> Response {
    let issuer = state.bo.issuer().to_string();
    let email = form.email.trim().to_string();
    let page = |status, error, result, mailed| {
        html(
            status,
            ActivatePage {
                issuer: issuer.clone(),
                error,
                result,
                pc_id: form.pc_id.trim().to_string(),
                email: email.clone(),
                mailed,
            },
        )
    };
    if let Err(e) = check_rate(&state, ip) {
        return with_retry_after(
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                None,
                false,
            ),
            &e,
        );
    }
    match state.bo.unlock(&form.key, &form.pc_id).await {
        Ok(result) => {
            let mailed = if email.is_empty() {
                false
            } else {
                match state.mail_unlock_code(&email, &result).await {
                    Ok(()) => true,
                    Err(e) => {
                        let e = ApiError::from(e);
                        return page(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            Some((
                                e.code().to_string(),
                                format!(
                                    "the code below was made, but it could not be e-mailed: {}",
                                    e.detail()
                                ),
                            )),
                            Some(result),
                            false,
                        );
                    }
                }
            };
            page(StatusCode::OK, None, Some(result), mailed)
        }
        Err(e) => {
            let e = ApiError::from(e);
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                None,
                false,
            )
        }
    }
}

/// The offline activation page.
#[utoipa::path(get, path = "/offline", tag = "pages",
    responses((status = 200, content_type = "text/html", body = String, description = "the form")))]
async fn offline_page(State(state): State<Shared>) -> Response {
    html(
        StatusCode::OK,
        OfflinePage {
            issuer: state.bo.issuer().to_string(),
            error: None,
            response: None,
        },
    )
}

/// The offline form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OfflineForm {
    /// The request file's text.
    pub request: String,
}

/// Answers a pasted request file with a response file.
#[utoipa::path(post, path = "/offline", tag = "pages",
    request_body(content = OfflineForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", body = String, description = "the response file"),
        (status = 403, content_type = "text/html", body = String, description = "refused (revoked, entitlement_expired), with the reason"),
        (status = 404, content_type = "text/html", body = String, description = "refused (unknown_key, not_found), with the reason"),
        (status = 409, content_type = "text/html", body = String, description = "refused, with the reason"),
        (status = 422, content_type = "text/html", body = String, description = "refused (invalid_key, invalid_request, invalid_email, invalid_document), with the reason"),
        (status = 429, content_type = "text/html", body = String, description = "rate_limited, with Retry-After"),
        (status = 503, content_type = "text/html", body = String, description = "mail_not_configured")))]
async fn offline_submit(
    State(state): State<Shared>,
    ip: ClientIp,
    ApiForm(form): ApiForm<OfflineForm>,
) -> Response {
    let issuer = state.bo.issuer().to_string();
    let page = |status, error, response| {
        html(
            status,
            OfflinePage {
                issuer: issuer.clone(),
                error,
                response,
            },
        )
    };
    if let Err(e) = check_rate(&state, ip) {
        return with_retry_after(
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                None,
            ),
            &e,
        );
    }
    match state.bo.offline_respond(&form.request).await {
        Ok(r) => page(StatusCode::OK, None, Some(r)),
        Err(e) => {
            let e = ApiError::from(e);
            page(
                e.status(),
                Some((e.code().to_string(), e.detail().to_string())),
                None,
            )
        }
    }
}
