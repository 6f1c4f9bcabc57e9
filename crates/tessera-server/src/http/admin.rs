//! The administrator's endpoints: status and the denial report (any user: [`Viewer`]), online
//! activation, sync, and offline request and response files (administrators: [`Admin`]), each
//! change audited.

use axum::extract::rejection::{JsonRejection, QueryRejection, StringRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use tessera_core::Clock as _;
use tessera_store::ServerStateStore as _;

use super::{body_problem, json_problem, problem, Failure, Shared};
use crate::openapi::{FeatureRecords, Problem, SyncOutcome};

pub use super::access::{Admin, Viewer};

pub use tessera_wire::admin::{FeatureState, Status};

/// The server's features, use and leases, and the back office it syncs with.
#[utoipa::path(get, path = "/api/v1/admin/status", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Status)))]
pub(crate) async fn status(State(s): State<Shared>, _viewer: Viewer) -> Response {
    let usage = s.server.engine.usage().await;
    let leases = s.server.engine.lease_count();
    let rfc = |t: tessera_core::time::OffsetDateTime| {
        t.format(&tessera_core::time::format_description::well_known::Rfc3339)
            .ok()
    };
    let bundle = s.server.bundle_dates().await;
    // where a sync goes (none before an online activation); the status is still answered when
    // the store cannot say
    let backoffice_url = match s
        .server
        .store
        .server_state(&tessera_store::InstanceId::on_site())
        .await
    {
        Ok(state) => state.backoffice_url,
        Err(e) => {
            tracing::warn!(error = %e, "status: could not read whether the server was activated online");
            None
        }
    };
    let online = backoffice_url.is_some();
    let last_sync = match s.server.last_sync().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "status: could not read the time of the last sync");
            None
        }
    };
    Json(Status {
        server_time: rfc(s.server.clock.now()),
        bundle_issued: bundle.and_then(|(iat, _)| rfc(iat)),
        bundle_expires: bundle.and_then(|(_, exp)| rfc(exp)),
        online,
        last_sync: last_sync.and_then(rfc),
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
        backoffice_url,
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

/// Writes an offline update request file (text): the renewal of this server's bundle with its
/// usage report, for a server that never goes online. Apply the back office's response with
/// `offline-apply`.
#[utoipa::path(post, path = "/api/v1/admin/offline-update-request", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, content_type = "text/plain", body = String, description = "the request file"),
        (status = 409, body = Problem, description = "not_activated: activate the server first (online or with offline files)"),
        (status = 500, body = Problem, description = "internal: the request could not be signed; the detail names the id under which it is logged")))]
pub(crate) async fn offline_update_request(State(s): State<Shared>, admin: Admin) -> Response {
    let made = s.server.offline_update_request().await;
    offline_file(
        &s,
        &admin,
        made,
        "offline_update_request",
        "wrote an offline update request (renewal with usage report)",
    )
    .await
}

/// Writes an offline confirmation request file (text): tells the back office which license this
/// server serves (after an offline response was applied). The back office records it.
#[utoipa::path(post, path = "/api/v1/admin/offline-confirmation", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, content_type = "text/plain", body = String, description = "the confirmation file"),
        (status = 409, body = Problem, description = "not_activated: nothing served to confirm"),
        (status = 500, body = Problem, description = "internal: the request could not be signed; the detail names the id under which it is logged")))]
pub(crate) async fn offline_confirmation(State(s): State<Shared>, admin: Admin) -> Response {
    let made = s.server.offline_confirmation().await;
    offline_file(
        &s,
        &admin,
        made,
        "offline_confirmation",
        "wrote an offline confirmation request",
    )
    .await
}

/// A request file made, audited and answered as text; or why not.
async fn offline_file(
    s: &Shared,
    admin: &Admin,
    made: Result<String, crate::error::ServerError>,
    action: &str,
    detail: &str,
) -> Response {
    match made {
        Ok(text) => {
            admin.audit(s, action, detail).await;
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Err(crate::error::ServerError::BackOffice(crate::LinkError::NotActivated)) => problem(
            StatusCode::CONFLICT,
            "not_activated",
            "this server is not activated: activate it first (tessera server activate, or offline request and apply)",
        ),
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

pub use tessera_wire::admin::{UsageEvent, UsageEventKind, UsageEventQuery, UsageEvents};

/// The most events one answer lists, and how many when the query does not say.
const MAX_EVENTS: u32 = 1000;
const DEFAULT_EVENTS: u32 = 100;

/// The denial report: the features this server refused (a `request` or `borrow`; a `preview` takes
/// nothing and is not recorded), or with `kind=overdraft` the grants that took seats beyond the
/// count; who, what, when and why, newest first, kept `usage_event_retention_days`.
#[utoipa::path(get, path = "/api/v1/admin/denials", tag = "admin", security(("token" = []), ("session" = [])),
    params(UsageEventQuery),
    responses((status = 200, body = UsageEvents, description = "the events, newest first"),
        (status = 422, body = Problem, description = "invalid_request: a filter that does not fit (the detail names it)"),
        (status = 503, body = Problem, description = "storage_unavailable: the events could not be read")))]
pub(crate) async fn denials(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<UsageEventQuery>, QueryRejection>,
) -> Response {
    let (q, filter) = match event_query(query) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.server.usage_events(&filter).await {
        Ok(events) => Json(UsageEvents {
            kind: q.kind.unwrap_or_default(),
            retention_days: s.server.config.usage_event_retention_days,
            events: events.into_iter().map(event_view).collect(),
        })
        .into_response(),
        Err(e) => Failure::server(
            e,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            "the license server could not read the events recorded; try again",
        )
        .into_response(),
    }
}

/// A denial-report query and the store's filter for it; when either does not fit, the 422 that
/// says why.
pub(crate) fn event_query(
    query: Result<Query<UsageEventQuery>, QueryRejection>,
) -> Result<(UsageEventQuery, tessera_store::UsageEventFilter), Box<Response>> {
    let q = super::query_of(
        query,
        "filters: kind=denial|overdraft, since, feature, limit",
    )?;
    match event_filter(&q) {
        Ok(f) => Ok((q, f)),
        Err(detail) => Err(Box::new(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            detail,
        ))),
    }
}

/// The store's filter for a query, or what is wrong with it.
pub(crate) fn event_filter(q: &UsageEventQuery) -> Result<tessera_store::UsageEventFilter, String> {
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS);
    if limit == 0 || limit > MAX_EVENTS {
        return Err(format!("limit: 1 to {MAX_EVENTS} (got {limit})"));
    }
    let since = q.since.as_deref().map(parse_since).transpose()?;
    if q.feature.as_deref().is_some_and(str::is_empty) {
        return Err("feature: a feature's name (leave it out for every feature)".into());
    }
    Ok(tessera_store::UsageEventFilter {
        kind: Some(match q.kind.unwrap_or_default() {
            UsageEventKind::Denial => tessera_store::UsageEventKind::Denial,
            UsageEventKind::Overdraft => tessera_store::UsageEventKind::Overdraft,
        }),
        since,
        feature: q.feature.clone(),
        limit,
    })
}

/// `since`: RFC 3339, or a date (from its start, UTC).
pub(crate) fn parse_since(text: &str) -> Result<tessera_core::time::OffsetDateTime, String> {
    use tessera_core::time::format_description::well_known::Rfc3339;
    use tessera_core::time::{macros::format_description, Date, OffsetDateTime};
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("since: {text:?} is neither an RFC 3339 time (2026-06-01T08:00:00Z) nor a date (2026-06-01)")
        })
}

/// A stored event as the admin API shows it.
pub(crate) fn event_view(e: tessera_store::StoredUsageEvent) -> UsageEvent {
    use tessera_core::time::format_description::well_known::Rfc3339;
    let ev = e.event;
    let at = ev
        .at
        .format(&Rfc3339)
        .unwrap_or_else(|_| ev.at.unix_timestamp().to_string());
    UsageEvent {
        id: e.id,
        kind: match ev.kind {
            tessera_store::UsageEventKind::Denial => UsageEventKind::Denial,
            tessera_store::UsageEventKind::Overdraft => UsageEventKind::Overdraft,
        },
        at,
        device_id_type: ev
            .device
            .split_once('=')
            .map(|(kind, _)| kind.to_string())
            .unwrap_or_default(),
        device_id: ev.device,
        device_type: ev.device_type,
        user: ev.user,
        alias: ev.alias,
        feature: ev.feature,
        version: ev.version,
        count: u64::try_from(ev.count).unwrap_or(0),
        code: ev.code,
        message: ev.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::time::macros::datetime;

    #[test]
    fn since_is_a_time_or_a_date() {
        assert_eq!(
            parse_since("2026-06-01T08:30:00Z").unwrap(),
            datetime!(2026-06-01 08:30 UTC)
        );
        assert_eq!(
            parse_since("2026-06-01").unwrap(),
            datetime!(2026-06-01 00:00 UTC)
        );
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("since") && err.contains("yesterday"), "{err}");
    }

    #[test]
    fn filters_are_checked() {
        let q = |limit: Option<u32>| UsageEventQuery {
            limit,
            ..UsageEventQuery::default()
        };
        assert_eq!(event_filter(&q(None)).unwrap().limit, DEFAULT_EVENTS);
        assert_eq!(
            event_filter(&q(None)).unwrap().kind,
            Some(tessera_store::UsageEventKind::Denial)
        );
        assert!(event_filter(&q(Some(0))).unwrap_err().contains("limit"));
        assert!(event_filter(&q(Some(1001))).unwrap_err().contains("limit"));
        assert_eq!(event_filter(&q(Some(1000))).unwrap().limit, 1000);
        let empty = UsageEventQuery {
            feature: Some(String::new()),
            ..UsageEventQuery::default()
        };
        assert!(event_filter(&empty).unwrap_err().contains("feature"));
    }
}
