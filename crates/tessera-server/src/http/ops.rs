//! Operations: liveness (`/healthz`), readiness (`/readyz`), Prometheus metrics and the OpenAPI
//! document.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_service::metrics::{write_counter, write_gauge};
use tessera_service::RateLimiter;
use tessera_store::ClaimStatus;

use super::{openapi, problem, Shared};
use crate::openapi::Problem;

/// Liveness: 200 while the process runs. The body is `ok`, or says what is degraded (`degraded:
/// database lock lost: …`); readiness to grant is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String,
        description = "`ok`, or `degraded: …` saying what is wrong (the process runs either way)")))]
pub(crate) async fn healthz(State(s): State<Shared>) -> String {
    match s.server.store.claim_status() {
        ClaimStatus::Lost { reason } => format!("degraded: database lock lost: {reason}"),
        _ => "ok".into(),
    }
}

/// How long `/readyz` waits for the database to answer.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness, for a load balancer: 200 `ready` when this process can grant seats (its database
/// answers and, on PostgreSQL, it holds the database lock), else 503 problem+json saying what is
/// missing. Activation is not required: a server that is not activated answers every request (it
/// refuses the features), and is activated through this same address.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "`ready`"),
        (status = 503, content_type = "application/problem+json", body = Problem,
            description = "`lock_lost` (this process does not hold the database lock) or `storage_unavailable` (the database does not answer)")))]
pub(crate) async fn readyz(State(s): State<Shared>) -> Response {
    if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "lock_lost",
            format!("not ready: this license server process does not hold the database lock, so it grants nothing: {reason}"),
        );
    }
    match tokio::time::timeout(READY_TIMEOUT, s.server.store.ping()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("not ready: the database does not answer: {e}"),
        ),
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!(
                "not ready: the database did not answer within {} seconds",
                READY_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(s): State<Shared>) -> Response {
    let st = s.server.engine.stats();
    let mut out = String::new();
    write_counter(
        &mut out,
        "tessera_capability_requests_total",
        s.requests.get(),
    );
    write_counter(&mut out, "tessera_capability_denied_total", s.denied.get());
    write_counter(
        &mut out,
        "tessera_capability_rate_limited_total",
        s.limiter.as_ref().map_or(0, RateLimiter::refused),
    );
    write_counter(&mut out, "tessera_engine_commits_total", st.commits);
    write_counter(&mut out, "tessera_engine_decisions_total", st.decisions);
    write_counter(
        &mut out,
        "tessera_engine_commit_seconds_total",
        format!("{:.6}", st.commit_micros as f64 / 1e6),
    );
    write_counter(
        &mut out,
        "tessera_engine_decide_seconds_total",
        format!("{:.6}", st.decide_micros as f64 / 1e6),
    );
    write_gauge(
        &mut out,
        "tessera_leases_held",
        s.server.engine.lease_count(),
    );
    out.push_str("# TYPE tessera_seats_in_use gauge\n");
    for (f, used, _) in s.server.engine.usage().await {
        out.push_str(&format!(
            "tessera_seats_in_use{{feature=\"{}\",version=\"{}\"}} {used}\n",
            f.name, f.version
        ));
    }
    out.push_str(&s.http.render());
    tessera_service::metrics::answer(out)
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, body = crate::openapi::OpenApiDocument, description = "the OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
