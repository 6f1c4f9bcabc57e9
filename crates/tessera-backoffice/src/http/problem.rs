//! Errors as `application/problem+json` (RFC 9457) with a stable `code`: the toolkit's
//! ([`tessera_service::problem`]), and how the back office's errors map to them.

use axum::http::StatusCode;

use crate::service::ServiceError;
pub use tessera_service::problem::{ApiError, ApiForm, ApiJson, ApiQuery, Problem, TextBody};

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
