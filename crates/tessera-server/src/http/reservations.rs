//! The reservations view's endpoints, behind the admin token: list with status, add groups (one
//! from the add form, or many from an imported document), delete a group or all, export.

use axum::extract::rejection::StringRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_core::reservations::{Reservation, ReservationError, Reservations};

use super::access::{Admin, Viewer};
use super::{body_problem, Failure, Shared};
use crate::openapi::Problem;
use crate::seat_policy::PolicyError;
use tessera_wire::admin::ReservationsView;

fn failed(e: PolicyError) -> Response {
    Failure::policy(
        e,
        "the license server could not store the reservations; nothing changed; try again",
    )
    .into_response()
}

/// The reservation groups in force, and every entry with whether the server holds its seats.
#[utoipa::path(get, path = "/api/v1/admin/reservations", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = ReservationsView)))]
pub(crate) async fn list(State(s): State<Shared>, _viewer: Viewer) -> Response {
    Json(s.server.reservations_view().await).into_response()
}

/// Adds reservation groups: the body is a reservations document (`{"groups": [...]}`: one group
/// from the add form, or an exported file imported). Refused whole, naming the entry that is
/// wrong, if any entry is; a group name already in force is refused (delete that group first).
#[utoipa::path(post, path = "/api/v1/admin/reservations", tag = "admin", security(("token" = []), ("session" = [])),
    request_body(content = tessera_wire::admin::ReservationsDoc, description = "the groups to add"),
    responses((status = 200, body = ReservationsView, description = "added; in force from the next request"),
        (status = 409, body = Problem, description = "reservation_group_exists (a group of that name is in force), pools_active (a named-pool model is in force)"),
        (status = 422, body = Problem, description = "invalid_reservations: the detail names the place (groups[0].reservations[1].entries[0].version) and what is wrong"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn add(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<String, StringRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    let doc = match Reservations::parse(&body) {
        Ok(d) => d,
        Err(e) => {
            admin
                .audit(
                    &s,
                    "reservations_add_failed",
                    format!("a reservations document was refused; nothing changed: {e}"),
                )
                .await;
            return failed(e.into());
        }
    };
    let names: Vec<String> = doc.groups.iter().map(|g| g.name.clone()).collect();
    match s.server.add_reservations(doc).await {
        Ok(view) => {
            admin
                .audit(
                    &s,
                    "reservations_add",
                    format!("added reservation group(s) {}", names.join(", ")),
                )
                .await;
            Json(view).into_response()
        }
        Err(e) => {
            admin
                .audit(
                    &s,
                    "reservations_add_failed",
                    format!(
                        "adding reservation group(s) {} was refused; nothing changed: {e}",
                        names.join(", ")
                    ),
                )
                .await;
            failed(e)
        }
    }
}

/// Adds a reservation to an existing group: the body is one reservation (`{"holder": …,
/// "entries": [...]}`); its entries join the holder's reservation in the group, or it becomes a
/// new reservation of the group. Refused whole, naming the entry that is wrong
/// (`reservation.entries[0].version`), if anything is.
#[utoipa::path(post, path = "/api/v1/admin/reservations/{group}/entries", tag = "admin", security(("token" = []), ("session" = [])),
    params(("group" = String, Path, description = "the existing group's name")),
    request_body(content = tessera_wire::admin::ReservationDoc, description = "the reservation to add to the group"),
    responses((status = 200, body = ReservationsView, description = "added; in force from the next request"),
        (status = 404, body = Problem, description = "no_such_group: add a new group with POST /api/v1/admin/reservations"),
        (status = 409, body = Problem, description = "pools_active (a named-pool model is in force)"),
        (status = 422, body = Problem, description = "invalid_reservations: the detail names the place (reservation.entries[0].version) and what is wrong"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn add_to_group(
    State(s): State<Shared>,
    admin: Admin,
    Path(group): Path<String>,
    body: Result<String, StringRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    let outcome = match serde_json::from_str::<Reservation>(&body) {
        Ok(r) => s.server.add_to_reservation_group(&group, r).await,
        Err(e) => Err(ReservationError::Malformed {
            detail: format!("{e}; the body is one reservation: {{\"holder\": \"user=NAME\", \"entries\": [{{\"feature\": …, \"version\": \"a.b\", \"count\": 1}}]}}"),
        }
        .into()),
    };
    match outcome {
        Ok(view) => {
            admin
                .audit(
                    &s,
                    "reservations_add",
                    format!("added a reservation to the group {group}"),
                )
                .await;
            Json(view).into_response()
        }
        Err(e) => {
            admin
                .audit(
                    &s,
                    "reservations_add_failed",
                    format!(
                        "adding a reservation to the group {group} was refused; nothing changed: {e}"
                    ),
                )
                .await;
            failed(e)
        }
    }
}

/// Deletes one reservation group, whole.
#[utoipa::path(delete, path = "/api/v1/admin/reservations/{group}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("group" = String, Path, description = "the group's name")),
    responses((status = 200, body = ReservationsView, description = "deleted"),
        (status = 404, body = Problem, description = "no_such_group"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn delete_group(
    State(s): State<Shared>,
    admin: Admin,
    Path(group): Path<String>,
) -> Response {
    match s.server.delete_reservation_group(&group).await {
        Ok(view) => {
            admin
                .audit(
                    &s,
                    "reservations_delete",
                    format!("deleted reservation group {group}"),
                )
                .await;
            Json(view).into_response()
        }
        Err(e) => failed(e),
    }
}

/// Deletes every reservation group (before switching to named pools, for one).
#[utoipa::path(delete, path = "/api/v1/admin/reservations", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = ReservationsView, description = "deleted"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn clear(State(s): State<Shared>, admin: Admin) -> Response {
    match s.server.clear_reservations().await {
        Ok(view) => {
            admin
                .audit(&s, "reservations_clear", "deleted every reservation group")
                .await;
            Json(view).into_response()
        }
        Err(e) => failed(e),
    }
}

/// The reservations in force as a document to import elsewhere (`reservations.json`).
#[utoipa::path(get, path = "/api/v1/admin/reservations/export", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = tessera_wire::admin::ReservationsDoc, description = "the document (an attachment, reservations.json)")))]
pub(crate) async fn export(State(s): State<Shared>, _viewer: Viewer) -> Response {
    let doc = s.server.engine.reservations();
    (
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"reservations.json\"",
        )],
        Json(doc),
    )
        .into_response()
}
