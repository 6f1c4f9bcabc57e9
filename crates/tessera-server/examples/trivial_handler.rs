//! The throughput benchmark's yardstick as a process of its own, for load generators outside
//! the bench (`crates/tessera-server/benches/wrk.sh`): a trivial JSON handler on
//! `/api/v1/capability` that parses the request body and answers a small JSON object, served by
//! axum on a 2-thread runtime, as in the bench, with the `tessera` binary's allocator.
//!
//! ```text
//! cargo run --release -p tessera-server --example trivial_handler -- 127.0.0.1:7072
//! TRIVIAL_STACK=host cargo run --release -p tessera-server --example trivial_handler
//! ```
//!
//! With `TRIVIAL_STACK=host` the same handler is served through `tessera_host::serve` (the
//! services' own serving: connection limit, request deadlines) instead of `axum::serve`: the
//! difference between the two is what that serving costs a request (docs/performance.md).

use serde_json::{json, Value};

/// The allocator of the `tessera` binary, so that the two are compared on equal terms.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7072".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/api/v1/capability",
            axum::routing::post(|axum::Json(v): axum::Json<Value>| async move {
                axum::Json(json!({"ok": true, "operation": v["operation"]}))
            }),
        );
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("trivial handler on http://{}", listener.local_addr()?);
        if std::env::var("TRIVIAL_STACK").as_deref() == Ok("host") {
            tessera_host::serve::serve(
                listener,
                app,
                None,
                tessera_host::serve::Limits::default(),
                std::future::pending(),
            )
            .await?;
        } else {
            axum::serve(listener, app).await?;
        }
        Ok(())
    })
}
