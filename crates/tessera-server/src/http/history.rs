//! The usage history (`GET /api/v1/admin/usage-history`: a feature's seats used and count over
//! time, from the samples the server keeps per minute, hour and day) and the denial report as CSV
//! (`GET /api/v1/admin/denials.csv`), for any user ([`Viewer`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_core::time::format_description::well_known::Rfc3339;
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::Clock as _;
use tessera_store::Resolution;
use tessera_wire::admin::{
    UsageEvent, UsageEventKind, UsageEventQuery, UsageHistory, UsageHistoryQuery, UsagePoint,
    UsageSeries,
};

use super::admin::{event_query, event_view, parse_since};
use super::{problem, Failure, Shared, Viewer};
use crate::openapi::Problem;

/// The most periods one answer may span (a finer resolution over a long range is refused).
const MAX_PERIODS: i64 = 20_000;

/// A feature's usage history: per version, the most seats used in each period and the count,
/// oldest first. The server samples every minute and keeps minutes for 2 days, hours for 90
/// days, days beyond; a range is read at the resolution asked for (or the one that fits it), with
/// finer periods folded in.
#[utoipa::path(get, path = "/api/v1/admin/usage-history", tag = "admin", security(("token" = []), ("session" = [])),
    params(UsageHistoryQuery),
    responses((status = 200, body = UsageHistory, description = "the periods recorded, per version"),
        (status = 422, body = Problem, description = "invalid_request: a feature, range or resolution that does not fit (the detail names it)"),
        (status = 503, body = Problem, description = "storage_unavailable: the history could not be read")))]
pub(crate) async fn usage_history(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<UsageHistoryQuery>, QueryRejection>,
) -> Response {
    let q = match super::query_of(
        query,
        "feature is needed; from, to, resolution=minute|hour|day are optional",
    ) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let (from, to, resolution) = match range(&q, s.server.clock.now()) {
        Ok(r) => r,
        Err(detail) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail),
    };
    match s
        .server
        .usage_history(q.feature.trim(), from, to, resolution)
        .await
    {
        Ok(samples) => {
            let mut series: Vec<UsageSeries> = Vec::new();
            for p in samples {
                let point = UsagePoint {
                    at: rfc(p.at),
                    used: u64::try_from(p.used).unwrap_or(0),
                    count: p.count.and_then(|c| u64::try_from(c).ok()),
                };
                match series.last_mut() {
                    Some(last) if last.version == p.version => last.points.push(point),
                    _ => series.push(UsageSeries {
                        version: p.version,
                        points: vec![point],
                    }),
                }
            }
            Json(UsageHistory {
                feature: q.feature.trim().to_string(),
                from: rfc(from),
                to: rfc(to),
                resolution: resolution.as_str().to_string(),
                series,
            })
            .into_response()
        }
        Err(e) => Failure::server(
            e,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            "the license server could not read the usage history; try again",
        )
        .into_response(),
    }
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The range and resolution a query asks for (at `now`), or what is wrong with it.
pub(crate) fn range(
    q: &UsageHistoryQuery,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime, Resolution), String> {
    if q.feature.trim().is_empty() {
        return Err("feature: the name of a feature (see tessera server features)".into());
    }
    let field = |name: &str, v: &Option<String>| -> Result<Option<OffsetDateTime>, String> {
        v.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| parse_since(t).map_err(|e| e.replacen("since", name, 1)))
            .transpose()
    };
    // by default up to the end of this minute: the minute sampled last is in
    let to =
        field("to", &q.to)?.unwrap_or_else(|| Resolution::Minute.start(now) + Duration::minutes(1));
    let from = field("from", &q.from)?.unwrap_or(to - Duration::days(1));
    if from >= to {
        return Err(format!(
            "from ({}) must be before to ({})",
            rfc(from),
            rfc(to)
        ));
    }
    let span = to - from;
    let resolution = match q
        .resolution
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(r) => Resolution::parse(r)
            .ok_or_else(|| format!("resolution: minute, hour or day (got {r:?})"))?,
        None if span <= Duration::days(2) => Resolution::Minute,
        None if span <= Duration::days(90) => Resolution::Hour,
        None => Resolution::Day,
    };
    let periods = span.whole_seconds() / resolution.seconds();
    if periods > MAX_PERIODS {
        return Err(format!(
            "{periods} periods of a {resolution} are more than {MAX_PERIODS}: choose a coarser resolution or a shorter range"
        ));
    }
    Ok((from, to, resolution))
}

/// The denial report as CSV: the same query and events as `GET /api/v1/admin/denials`, one a
/// row with a heading row, for a spreadsheet. A cell that begins with `=`, `+`, `-`, `@` (or a tab
/// or carriage return) is prefixed with `'`, so a spreadsheet does not run it as a formula.
#[utoipa::path(get, path = "/api/v1/admin/denials.csv", tag = "admin", security(("token" = []), ("session" = [])),
    params(UsageEventQuery),
    responses((status = 200, content_type = "text/csv", body = String, description = "the events, newest first, as CSV (RFC 4180) with a heading row"),
        (status = 422, body = Problem, description = "invalid_request: a filter that does not fit (the detail names it)"),
        (status = 503, body = Problem, description = "storage_unavailable: the events could not be read")))]
pub(crate) async fn denials_csv(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<UsageEventQuery>, QueryRejection>,
) -> Response {
    let (q, filter) = match event_query(query) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.server.usage_events(&filter).await {
        Ok(events) => {
            let events: Vec<UsageEvent> = events.into_iter().map(event_view).collect();
            let kind = q.kind.unwrap_or_default();
            let name = match kind {
                UsageEventKind::Denial => "denials.csv",
                UsageEventKind::Overdraft => "overdraft.csv",
            };
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                events_csv(&events),
            )
                .into_response()
        }
        Err(e) => Failure::server(
            e,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            "the license server could not read the events recorded; try again",
        )
        .into_response(),
    }
}

/// The heading row of the CSV.
pub const CSV_HEADING: [&str; 12] = [
    "at",
    "kind",
    "device_id",
    "device_id_type",
    "device_type",
    "user",
    "alias",
    "feature",
    "version",
    "count",
    "code",
    "message",
];

/// Events as CSV (CRLF line ends, every cell quoted, formula cells defused).
pub fn events_csv(events: &[UsageEvent]) -> String {
    let mut out = String::new();
    let row = |out: &mut String, cells: &[&str]| {
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    row(&mut out, &CSV_HEADING);
    for e in events {
        let count = e.count.to_string();
        row(
            &mut out,
            &[
                &e.at,
                e.kind.as_str(),
                &e.device_id,
                &e.device_id_type,
                &e.device_type,
                e.user.as_deref().unwrap_or(""),
                e.alias.as_deref().unwrap_or(""),
                &e.feature,
                e.version.as_deref().unwrap_or(""),
                &count,
                &e.code,
                &e.message,
            ],
        );
    }
    out
}

/// One CSV cell: quoted, quotes doubled, and a cell a spreadsheet would read as a formula (it
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return) prefixed with `'`.
pub fn csv_cell(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::time::macros::datetime;

    #[test]
    fn formula_cells_are_defused_and_quotes_doubled() {
        assert_eq!(csv_cell("modeler"), "\"modeler\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for bad in ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(bad).starts_with("\"'"), "{bad}");
        }
        assert_eq!(csv_cell("a,b\nc"), "\"a,b\nc\"");
    }

    #[test]
    fn a_range_takes_its_resolution_from_its_length() {
        let now = datetime!(2026-06-10 12:00 UTC);
        let q = |from: Option<&str>, resolution: Option<&str>| UsageHistoryQuery {
            feature: "modeler".into(),
            from: from.map(str::to_string),
            to: None,
            resolution: resolution.map(str::to_string),
        };
        let (from, to, r) = range(&q(None, None), now).unwrap();
        assert_eq!((to - from, r), (Duration::days(1), Resolution::Minute));
        let (_, _, r) = range(&q(Some("2026-06-01"), None), now).unwrap();
        assert_eq!(r, Resolution::Hour);
        let (_, _, r) = range(&q(Some("2025-06-01"), None), now).unwrap();
        assert_eq!(r, Resolution::Day);
        let (_, _, r) = range(&q(Some("2026-06-01"), Some("day")), now).unwrap();
        assert_eq!(r, Resolution::Day);
        // what is wrong is named
        assert!(range(&q(Some("2025-06-01"), Some("minute")), now)
            .unwrap_err()
            .contains("coarser"));
        assert!(range(&q(Some("2026-07-01"), None), now)
            .unwrap_err()
            .contains("before"));
        assert!(range(&q(None, Some("week")), now)
            .unwrap_err()
            .contains("resolution"));
        assert!(range(&q(Some("soon"), None), now)
            .unwrap_err()
            .starts_with("from:"));
        let empty = UsageHistoryQuery::default();
        assert!(range(&empty, now).unwrap_err().contains("feature"));
    }
}
