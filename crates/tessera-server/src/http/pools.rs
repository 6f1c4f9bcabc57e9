//! The named license pools' endpoints: the pools view and the model kept (its text), read by any
//! user; upload a model and delete it, by an administrator (audited).

use axum::extract::rejection::StringRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::access::{Admin, Viewer};
use super::{body_problem, Failure, Shared};
use crate::openapi::Problem;
use crate::seat_policy::PolicyError;
use tessera_wire::admin::{PoolModelText, PoolsView};

fn failed(e: PolicyError) -> Response {
    Failure::policy(
        e,
        "the license server could not store the pool model; nothing changed; try again",
    )
    .into_response()
}

/// The named pools: the model kept, whether it is in force (and why not), its warnings, and per
/// pool and feature record the version, expiry, seats allocated, seats used and status (the
/// default pool last).
#[utoipa::path(get, path = "/api/v1/admin/pools", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = PoolsView)))]
pub(crate) async fn view(State(s): State<Shared>, _viewer: Viewer) -> Response {
    Json(s.server.pools_view().await).into_response()
}

/// The pool model kept, as uploaded.
#[utoipa::path(get, path = "/api/v1/admin/pools/model", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = PoolModelText),
        (status = 404, body = Problem, description = "no_pool_model: none is stored")))]
pub(crate) async fn model(State(s): State<Shared>, _viewer: Viewer) -> Response {
    match s.server.pool_model_text().await {
        Ok(m) => Json(m).into_response(),
        Err(e) => failed(e),
    }
}

/// Uploads a model definition (the text, docs/model-language.md; at most 64 KiB), replacing the
/// one kept: checked against the licenses served, stored, and in force from the next request on.
#[utoipa::path(post, path = "/api/v1/admin/pools/model", tag = "admin", security(("token" = []), ("session" = [])),
    request_body(content = String, content_type = "text/plain", description = "the model definition"),
    responses((status = 200, body = PoolsView, description = "in force from the next request; `warnings` lists what is legal but probably not meant"),
        (status = 409, body = Problem, description = "reservations_active: reservation groups are stored; delete them first (`tessera server reservations clear`)"),
        (status = 413, body = Problem, description = "payload_too_large: over 64 KiB"),
        (status = 422, body = Problem, description = "invalid_model: the detail names the line and column and what is wrong (syntax, unknown feature, uncounted feature, over-allocation); nothing changed"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn upload(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<String, StringRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    match s.server.upload_pool_model(&body).await {
        Ok(view) => {
            let name = view.model.clone().unwrap_or_default();
            admin
                .audit(
                    &s,
                    "pools_upload",
                    format!("uploaded the pool model {name:?}"),
                )
                .await;
            Json(view).into_response()
        }
        Err(e) => {
            admin
                .audit(
                    &s,
                    "pools_upload_failed",
                    format!("a pool model was refused; nothing changed: {e}"),
                )
                .await;
            failed(e)
        }
    }
}

/// Deletes the pool model: one default pool again from the next request on.
#[utoipa::path(delete, path = "/api/v1/admin/pools/model", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = PoolsView, description = "deleted (or none was kept)"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn delete(State(s): State<Shared>, admin: Admin) -> Response {
    match s.server.delete_pool_model().await {
        Ok(view) => {
            admin
                .audit(&s, "pools_delete", "deleted the pool model")
                .await;
            Json(view).into_response()
        }
        Err(e) => failed(e),
    }
}
