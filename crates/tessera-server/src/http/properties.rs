//! The properties view's endpoints: every setting of `server.toml`, grouped, with what is in force
//! and what the producer locked (any user); a change of several at once (administrators), checked
//! whole, written atomically and applied at once where it can be.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::access::{Admin, Viewer};
use super::{json_problem, problem, Shared};
use crate::openapi::Problem;
use crate::properties::{PropertiesChanged, PropertiesView, PropertyError, SetProperties};

fn refused(e: &PropertyError) -> Response {
    let (status, code) = match e {
        PropertyError::Unknown { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_property"),
        PropertyError::BadValue { .. } | PropertyError::Empty => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_property")
        }
        PropertyError::ReadOnly { .. } => (StatusCode::CONFLICT, "property_read_only"),
        PropertyError::Locked { .. } => (StatusCode::CONFLICT, "property_locked"),
        PropertyError::File(_) => (StatusCode::SERVICE_UNAVAILABLE, "config_unavailable"),
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!("properties: {e}");
    }
    problem(status, code, e.to_string())
}

/// Every property of the license server, by group: what `server.toml` says, the default, what
/// the running server uses, whether a change applies at once or at the next start, and the
/// settings the producer locked in the license bundle (shown, not editable, with the reason).
#[utoipa::path(get, path = "/api/v1/admin/properties", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = PropertiesView),
        (status = 503, body = Problem, description = "config_unavailable: server.toml could not be read")))]
pub(crate) async fn view(State(s): State<Shared>, _viewer: Viewer) -> Response {
    let server = s.server.clone();
    match tokio::task::spawn_blocking(move || server.properties()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => refused(&e),
        Err(e) => super::Failure::Internal(e.to_string()).into_response(),
    }
}

/// Changes properties: `{"values": {"lease_seconds": 600, "log": "debug", "max_borrow_days":
/// null}}` (`null` unsets an optional one). Checked whole: one unknown, read-only, locked or
/// ill-fitting value refuses them all and nothing changes. Written to `server.toml` in one atomic
/// replace (its comments kept); the answer says which keys apply now and which at the next start.
#[utoipa::path(put, path = "/api/v1/admin/properties", tag = "admin", security(("token" = []), ("session" = [])),
    request_body = SetProperties,
    responses((status = 200, body = PropertiesChanged),
        (status = 409, body = Problem, description = "property_locked (the producer fixed it in the license bundle), property_read_only (the detail says how to change it instead)"),
        (status = 422, body = Problem, description = "unknown_property, invalid_property: the detail names the key and what is wrong"),
        (status = 503, body = Problem, description = "config_unavailable: server.toml could not be read or written; nothing changed")))]
pub(crate) async fn set(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<Json<SetProperties>, JsonRejection>,
) -> Response {
    let change = match body {
        Ok(Json(c)) => c,
        Err(e) => return json_problem(e),
    };
    let server = s.server.clone();
    let keys: Vec<String> = change.values.keys().cloned().collect();
    match tokio::task::spawn_blocking(move || server.set_properties(&change)).await {
        Ok(Ok((changed, audit))) => {
            if !audit.is_empty() {
                admin.audit(&s, "properties_set", audit.join("; ")).await;
            }
            Json(changed).into_response()
        }
        Ok(Err(e)) => {
            admin
                .audit(
                    &s,
                    "properties_set_failed",
                    format!("{} refused; nothing changed: {e}", keys.join(", ")),
                )
                .await;
            refused(&e)
        }
        Err(e) => super::Failure::Internal(e.to_string()).into_response(),
    }
}
