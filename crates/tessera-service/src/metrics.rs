//! Metrics in the Prometheus text format: HTTP requests by method, matched route and status
//! ([`HttpMetrics`], counted by a layer: [`HttpMetrics::counted`]), plain counters ([`Counter`]),
//! and writers for a service's own lines ([`write_counter`], [`write_gauge`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Routes not counted: the scrapes and health checks themselves.
const NOT_COUNTED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// HTTP requests by method, matched route and status (`tessera_http_requests_total`).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    counters: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpMetrics {
    /// A shared set of counters.
    pub fn new() -> Arc<HttpMetrics> {
        Arc::new(HttpMetrics::default())
    }

    /// `router` with every request counted here (requests no route matched count as
    /// `unmatched`; health checks and scrapes are not counted).
    pub fn counted<S: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
        router: Router<S>,
    ) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), count))
    }

    /// Adds one to the requests of `method` on `route` answered `status`.
    pub fn incr(&self, method: &str, route: &str, status: u16) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_owned(), route.to_owned(), status))
            .or_insert(0) += 1;
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP tessera_http_requests_total HTTP requests by route and status.\n# TYPE tessera_http_requests_total counter\n",
        );
        for ((method, route, status), v) in self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tessera_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {v}",
                label(route)
            );
        }
        out
    }
}

async fn count(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let resp = next.run(req).await;
    if !NOT_COUNTED.contains(&route.as_str()) {
        metrics.incr(method.as_str(), &route, resp.status().as_u16());
    }
    resp
}

/// A label value with `\`, `"` and line breaks escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A counter that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Writes a counter without labels: its `# TYPE` line and its value.
pub fn write_counter(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "# TYPE {name} counter\n{name} {value}\n");
}

/// Writes a gauge without labels: its `# TYPE` line and its value.
pub fn write_gauge(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "# TYPE {name} gauge\n{name} {value}\n");
}

/// A `/metrics` answer: `text` in the Prometheus text format.
pub fn answer(text: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_matched_route_and_status() {
        let m = HttpMetrics::new();
        let app = m.counted(
            Router::new()
                .route("/items/{id}", get(|| async { "item" }))
                .route("/healthz", get(|| async { "ok" })),
        );
        for uri in ["/items/1", "/items/2", "/healthz", "/nothing"] {
            let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = m.render();
        assert!(
            text.contains("tessera_http_requests_total{method=\"GET\",route=\"/items/{id}\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tessera_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("/healthz"), "{text}");
    }

    #[test]
    fn plain_lines_and_escaped_labels() {
        let c = Counter::default();
        c.incr();
        c.incr();
        let mut out = String::new();
        write_counter(&mut out, "x_total", c.get());
        write_gauge(&mut out, "y", 1.5);
        assert_eq!(
            out,
            "# TYPE x_total counter\nx_total 2\n# TYPE y gauge\ny 1.5\n"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
