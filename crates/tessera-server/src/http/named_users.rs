//! The named users' endpoints, behind the admin token: every named-user feature with its users,
//! assign a feature's users (replacing those before), remove them all.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_wire::admin::{AssignUsers, NamedUsersView};

use super::admin::{Admin, Viewer};
use super::{json_problem, Failure, Shared};
use crate::openapi::Problem;
use crate::seat_policy::PolicyError;

fn failed(e: PolicyError) -> Response {
    Failure::policy(
        e,
        "the license server could not store the named users; nothing changed; try again",
    )
    .into_response()
}

/// Every named-user feature of the licenses served, with its users (and those trimmed: assigned
/// beyond its seats).
#[utoipa::path(get, path = "/api/v1/admin/named-users", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = NamedUsersView)))]
pub(crate) async fn list(State(s): State<Shared>, _viewer: Viewer) -> Response {
    Json(s.server.named_users_view().await).into_response()
}

/// Assigns a named-user feature's users, replacing those before: only they are served (others
/// are refused `not_authorised`); users beyond the feature's seats are trimmed and listed.
#[utoipa::path(put, path = "/api/v1/admin/named-users/{feature}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("feature" = String, Path, description = "the named-user feature")),
    request_body = AssignUsers,
    responses((status = 200, body = NamedUsersView, description = "assigned; in force from the next request"),
        (status = 404, body = Problem, description = "not_named_user: no record of that feature is sold for named users"),
        (status = 422, body = Problem, description = "invalid_named_users (a user named twice, an empty or too long name), invalid_request (not the documented JSON)"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn assign(
    State(s): State<Shared>,
    admin: Admin,
    Path(feature): Path<String>,
    body: Result<Json<AssignUsers>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return json_problem(e),
    };
    let users = body.users.join(", ");
    match s.server.assign_named_users(&feature, body.users).await {
        Ok(view) => {
            admin
                .audit(&s, "named_users_set", format!("{feature}: {users}"))
                .await;
            Json(view).into_response()
        }
        Err(e) => failed(e),
    }
}

/// Removes every user of a named-user feature (it then serves nobody).
#[utoipa::path(delete, path = "/api/v1/admin/named-users/{feature}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("feature" = String, Path, description = "the named-user feature")),
    responses((status = 200, body = NamedUsersView, description = "removed"),
        (status = 404, body = Problem, description = "not_named_user"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn clear(
    State(s): State<Shared>,
    admin: Admin,
    Path(feature): Path<String>,
) -> Response {
    match s.server.assign_named_users(&feature, Vec::new()).await {
        Ok(view) => {
            admin
                .audit(&s, "named_users_clear", feature.to_string())
                .await;
            Json(view).into_response()
        }
        Err(e) => failed(e),
    }
}
