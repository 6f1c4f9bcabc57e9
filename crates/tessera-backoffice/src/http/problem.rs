//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;

/// The body of every error answer: the wire type, shared with every caller.
pub use tessera_wire::Problem;

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

    /// 401 `unauthorized`: no valid credentials; `detail` says which are wanted.
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

    /// 429: too many failed logins for this account or from this address.
    pub fn login_throttled(t: crate::auth::Throttled) -> Self {
        let (detail, secs) = match t {
            crate::auth::Throttled::Account { retry_after } => (
                format!("too many failed logins for this user lately; try again in {retry_after} s (the command line, `tessera backoffice token create`, needs no login)"),
                retry_after,
            ),
            crate::auth::Throttled::Address { retry_after } => (
                format!("too many logins from your address lately; try again in {retry_after} s"),
                retry_after,
            ),
        };
        Self::new(StatusCode::TOO_MANY_REQUESTS, "login_throttled", detail).with_retry_after(secs)
    }

    /// 503: the password checks are all busy and their queue is full.
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the back office is checking too many passwords at once; try again in a second",
        )
        .with_retry_after(1)
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

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let detail = e.to_string();
        match &e {
            ServiceError::Refused(r) => {
                let status = match r.code() {
                    "invalid_key" => StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_key" => StatusCode::NOT_FOUND,
                    "revoked" | "entitlement_expired" | "entitlement_not_yet_valid" => {
                        StatusCode::FORBIDDEN
                    }
                    _ => StatusCode::CONFLICT,
                };
                ApiError::new(status, r.code(), detail)
            }
            ServiceError::Invalid { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
            }
            ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
            }
            ServiceError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", detail)
            }
            ServiceError::BadDocument(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", detail)
            }
            ServiceError::WrongProducer { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_producer", detail)
            }
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the back office could not complete the request; it is logged, try again later",
                )
            }
            ServiceError::Mail(crate::outbox::OutboxError::Store(err)) => {
                tracing::error!(error = %err, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the back office could not complete the request; it is logged, try again later",
                )
            }
            ServiceError::Mail(crate::outbox::OutboxError::MailNotConfigured) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "mail_not_configured",
                detail,
            ),
            ServiceError::Mail(crate::outbox::OutboxError::InvalidAddress { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email", detail)
            }
            ServiceError::Mail(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "mail_error", detail)
            }
            ServiceError::Sign(err) => {
                tracing::error!(error = %err, "signing error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the back office could not sign the answer; it is logged, try again later",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem::new(
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error"),
            &self.code,
            self.detail,
        );
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, json).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
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
