//! Request tracing: a span per request named by its matched route (`/api/v1/products/{id}`, not
//! the path with its ids: low cardinality), with the method; the answer's status and duration
//! are logged at DEBUG when the request ends, health checks and metrics scrapes at TRACE. Nothing
//! of the request's headers or body is recorded (no tokens, no passwords in logs).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tracing::Instrument;

/// Routes polled by machines, logged at TRACE only.
const QUIET: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// `router` with a span around each request (see the module documentation).
pub fn traced<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(trace_request))
}

async fn trace_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.as_deref().unwrap_or("unmatched").to_owned();
    let method = req.method().clone();
    let span = tracing::debug_span!("request", %method, route = %route);
    let start = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if QUIET.contains(&route.as_str()) {
            tracing::trace!(status, micros, "answered");
        } else if status >= 500 {
            tracing::warn!(status, micros, "answered with a server error");
        } else {
            tracing::debug!(status, micros, "answered");
        }
    });
    resp
}
