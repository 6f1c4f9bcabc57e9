//! Errors as `application/problem+json` (RFC 9457) with a stable `code`: [`ApiError`] (status,
//! code, detail, and a `Retry-After` for 429 and 503), [`problem`] for a handler that answers a
//! [`Response`], and extractors ([`ApiJson`], [`ApiQuery`], [`ApiForm`], [`TextBody`]) whose
//! rejections are problems. A 401 carries `WWW-Authenticate: Bearer`. The body is
//! [`Problem`], `tessera-wire`'s, re-exported here.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error answer: one type for the whole workspace, `tessera-wire`'s (with its
/// OpenAPI schema), which [`ApiError`] writes and a caller reads.
pub use tessera_wire::problem::Problem;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` of `seconds` (every 429 and 503 carries one).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 429: the address used up its budget of public requests; one is back in `retry_after`
    /// seconds.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from your address; try again in {retry_after} s"),
        )
        .with_retry_after(retry_after)
    }

    /// 429: too many failed logins for this account or from this address; `account_hint` ends
    /// the detail when it is the account (how to get in without a login, say).
    pub fn login_throttled(t: crate::auth::Throttled, account_hint: &str) -> Self {
        let (detail, secs) = match t {
            crate::auth::Throttled::Account { retry_after } => (
                format!("too many failed logins for this user lately; try again in {retry_after} s{account_hint}"),
                retry_after,
            ),
            crate::auth::Throttled::Address { retry_after } => (
                format!("too many logins from your address lately; try again in {retry_after} s"),
                retry_after,
            ),
        };
        Self::new(StatusCode::TOO_MANY_REQUESTS, "login_throttled", detail).with_retry_after(secs)
    }

    /// 503: the password checks are all busy and their queue is full; `service` names who is
    /// checking (`the back office`).
    pub fn busy(service: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{service} is checking too many passwords at once; try again in a second"),
        )
        .with_retry_after(1)
    }

    /// 500 `internal`: what went wrong is logged, never sent (`detail` says what the caller may
    /// do).
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // one writer of problem bodies for the whole workspace (the host's serving answers with it
        // too: 404, 405, 408)
        let mut resp = tessera_host::serve::problem(self.status, &self.code, &self.detail);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// JSON body extractor whose rejections are problems: malformed JSON, unknown fields, a body too
/// large, a wrong content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the request body does not fit: {}", e.body_text()),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "body_too_large",
                    "the request body is too large (at most 64 KiB)",
                )
            } else {
                ApiError::new(status, "unreadable_body", e.body_text())
            }
        }
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            other.body_text(),
        ),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A text body (request and report files) whose rejections are problems.
#[derive(Debug, Clone, Default)]
pub struct TextBody(pub String);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match String::from_request(req, state).await {
            Ok(s) => Ok(TextBody(s)),
            Err(e) => {
                let status = e.status();
                Err(if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        "body_too_large",
                        "the request body is too large (at most 64 KiB)",
                    )
                } else {
                    ApiError::new(
                        status,
                        "unreadable_body",
                        "the request body must be UTF-8 text",
                    )
                })
            }
        }
    }
}

/// Query-string extractor whose rejections are problems.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("the query string does not fit: {}", e.body_text()),
            )),
        }
    }
}

/// Form body extractor (the public pages) whose rejections are problems: a wrong content type, a
/// body too large, fields that do not fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiForm<T>(pub T);

impl<S, T> FromRequest<S> for ApiForm<T>
where
    axum::Form<T>: FromRequest<S, Rejection = axum::extract::rejection::FormRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::FormRejection;
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(ApiForm(v)),
            Err(FormRejection::InvalidFormContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the form as application/x-www-form-urlencoded",
            )),
            Err(FormRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is too large (at most 64 KiB)",
                ))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("the form does not fit: {}", e.body_text()),
            )),
        }
    }
}

/// A problem answer as a [`Response`] (for handlers that answer `Response`).
pub fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    ApiError::new(status, code, detail).into_response()
}

/// The problem for a body that could not be read: 413 `body_too_large` (at most `limit_kib` KiB)
/// or 400 `unreadable_body`.
pub fn body_problem(status: StatusCode, limit_kib: usize) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "body_too_large",
            format!("the request body is too large (at most {limit_kib} KiB)"),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read as UTF-8 text",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn the_body_is_the_five_fields_of_the_wire_problem_and_nothing_else() {
        let r = ApiError::new(
            StatusCode::CONFLICT,
            "count_exhausted",
            "all 5 seats are taken",
        )
        .into_response();
        let v = body(r).await;
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:tessera:problem:count_exhausted",
                "title": "Conflict",
                "status": 409,
                "detail": "all 5 seats are taken",
                "code": "count_exhausted",
            })
        );
        // the toolkit's Problem is the wire crate's: what one writes the other reads
        let p: tessera_wire::Problem = serde_json::from_value(v).unwrap();
        let same: Problem = p.clone();
        assert_eq!(
            same,
            tessera_wire::Problem::new(409, "Conflict", "count_exhausted", "all 5 seats are taken")
        );
    }

    #[tokio::test]
    async fn problems_carry_code_type_and_the_headers_their_status_needs() {
        let r = ApiError::rate_limited(7).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let p: Problem = serde_json::from_value(body(r).await).unwrap();
        assert_eq!(
            (p.code.as_str(), p.kind.as_str(), p.status),
            ("rate_limited", "urn:tessera:problem:rate_limited", 429)
        );
        assert_eq!(p.title, "Too Many Requests");
        let r = ApiError::unauthorized("no").into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let r = ApiError::busy("the back office").into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert!(body(r).await["detail"]
            .as_str()
            .unwrap()
            .starts_with("the back office is checking"));
        let r = ApiError::login_throttled(
            crate::auth::Throttled::Account { retry_after: 3 },
            " (or ask an administrator)",
        );
        assert_eq!(r.retry_after(), Some(3));
        assert!(r.detail().ends_with("3 s (or ask an administrator)"));
        assert_eq!(
            body_problem(StatusCode::PAYLOAD_TOO_LARGE, 64).code(),
            "body_too_large"
        );
        assert_eq!(
            body_problem(StatusCode::BAD_REQUEST, 64).code(),
            "unreadable_body"
        );
    }
}
