//! The administrator's endpoints: status (any user: [`Viewer`]), online activation, sync, and
//! offline request and response files (administrators: [`Admin`]), each change audited.

use axum::extract::rejection::{JsonRejection, StringRejection};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{body_problem, json_problem, Failure, Shared};
use crate::openapi::{FeatureRecords, Problem, SyncOutcome};

pub use super::access::{Admin, Viewer};

pub use tessera_wire::admin::{FeatureState, Status};

/// The server's features, use and leases.
#[utoipa::path(get, path = "/api/v1/admin/status", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Status)))]
pub(crate) async fn status(State(s): State<Shared>, _viewer: Viewer) -> Response {
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
#[utoipa::path(post, path = "/api/v1/admin/activate", tag = "admin", security(("token" = []), ("session" = [])), request_body = ActivateRequest,
    responses((status = 200, body = crate::openapi::FeatureRecords, description = "activated"),
        (status = 502, body = Problem, description = "backoffice_refused: the back office refused the keys or could not be reached")))]
pub(crate) async fn activate(
    State(s): State<Shared>,
    admin: Admin,
    req: Result<Json<ActivateRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let keys = req.activations.len();
    match s.server.activate(&req.backoffice, &req.activations).await {
        Ok(n) => {
            admin
                .audit(
                    &s,
                    "activate",
                    format!(
                        "activated {keys} key(s) at {}: {n} feature record(s) served",
                        req.backoffice
                    ),
                )
                .await;
            Json(FeatureRecords {
                feature_records: n as u64,
            })
            .into_response()
        }
        Err(e) => {
            admin
                .audit(
                    &s,
                    "activate_failed",
                    format!("activating {keys} key(s) at {} failed: {e}", req.backoffice),
                )
                .await;
            Failure::server(
                e,
                (StatusCode::BAD_GATEWAY, "backoffice_refused"),
                "the license server could not store the activation; try again",
            )
            .into_response()
        }
    }
}

pub use tessera_wire::admin::OfflineRequestBody;

/// Writes an offline activation request file (text) to take to the back office.
#[utoipa::path(post, path = "/api/v1/admin/offline-request", tag = "admin", security(("token" = []), ("session" = [])), request_body = OfflineRequestBody,
    responses((status = 200, content_type = "text/plain", body = String, description = "the request file"),
        (status = 500, body = Problem, description = "internal: the request could not be signed; the detail names the id under which it is logged")))]
pub(crate) async fn offline_request(
    State(s): State<Shared>,
    admin: Admin,
    req: Result<Json<OfflineRequestBody>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    match s.server.offline_request(&req.activations) {
        Ok(text) => {
            admin
                .audit(
                    &s,
                    "offline_request",
                    format!(
                        "wrote an offline request for {} key(s)",
                        req.activations.len()
                    ),
                )
                .await;
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Err(e) => Failure::Internal(e.to_string()).into_response(),
    }
}

/// Applies the back office's offline response file (the body, as text).
#[utoipa::path(post, path = "/api/v1/admin/offline-apply", tag = "admin", security(("token" = []), ("session" = [])),
    request_body(content = String, content_type = "text/plain", description = "the back office's response file"),
    responses((status = 200, body = crate::openapi::FeatureRecords, description = "applied"),
        (status = 400, body = Problem, description = "unreadable_body (not UTF-8)"),
        (status = 413, body = Problem, description = "body_too_large"),
        (status = 422, body = Problem, description = "invalid_document"),
        (status = 503, body = Problem, description = "storage_unavailable")))]
pub(crate) async fn offline_apply(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<String, StringRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    match s.server.offline_apply(&body).await {
        Ok(n) => {
            admin
                .audit(
                    &s,
                    "offline_apply",
                    format!("applied an offline response: {n} feature record(s) served"),
                )
                .await;
            Json(FeatureRecords {
                feature_records: n as u64,
            })
            .into_response()
        }
        Err(e) => {
            admin
                .audit(
                    &s,
                    "offline_apply_failed",
                    format!("an offline response was refused; nothing changed: {e}"),
                )
                .await;
            Failure::server(
                e,
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
                "the license server could not store the response; nothing changed; try again",
            )
            .into_response()
        }
    }
}

/// Syncs with the back office now: usage report out, renewed bundle in.
#[utoipa::path(post, path = "/api/v1/admin/sync", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = crate::openapi::SyncOutcome, description = "synced; lists features used over the entitlement"),
        (status = 502, body = Problem, description = "backoffice_refused: the back office refused the report or could not be reached")))]
pub(crate) async fn sync_now(State(s): State<Shared>, admin: Admin) -> Response {
    match s.server.sync().await {
        Ok(over) => {
            admin
                .audit(
                    &s,
                    "sync",
                    format!(
                        "synced with the back office; over use: {}",
                        if over.is_empty() {
                            "none".to_string()
                        } else {
                            over.join(", ")
                        }
                    ),
                )
                .await;
            Json(SyncOutcome { over_use: over }).into_response()
        }
        Err(e) => {
            admin
                .audit(&s, "sync_failed", format!("the sync failed: {e}"))
                .await;
            Failure::server(
                e,
                (StatusCode::BAD_GATEWAY, "backoffice_refused"),
                "the license server could not use its store to sync; try again",
            )
            .into_response()
        }
    }
}
