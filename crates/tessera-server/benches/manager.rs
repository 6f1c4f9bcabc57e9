//! The License Server Manager's page budget, measured: every page under 100 KB and rendered in
//! under 50 ms with 10,000 devices holding seats (see docs/performance.md, "Manager pages, 10,000
//! devices").
//!
//! ```text
//! cargo bench -p tessera-server --bench manager
//! ```
//!
//! In one process: a back office with a line of 20,000 seats of `modeler` (and a few other
//! features), a license server on SQLite activated from it, 10,000 devices taking a seat each
//! through capability requests (over loopback HTTP, 32 at a time), an hour of usage history sampled
//! (60 minutes), a few denials; then a login through the login page (with the forced password
//! change), and each page fetched `TESSERA_BENCH_RUNS` times (default 100) after 5 warm-up fetches:
//! p50, p99 and the largest time in milliseconds, and the page's size in bytes. Prints a Markdown
//! table; says which pages miss the budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_core::clock::ManualClock;
use tessera_testkit::{BackOfficeKit, ServerKit, TestServer};
use tessera_wire::KeyCount;

/// The `tessera` binary's allocator, so that the server runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DEVICES: usize = 10_000;
const BUDGET_MS: f64 = 50.0;
const BUDGET_BYTES: usize = 100 * 1024;

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let runs: usize = std::env::var("TESSERA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let root = std::env::var_os("TESSERA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(root)?;
    let clock = Arc::new(ManualClock::new(
        tessera_core::time::OffsetDateTime::now_utc(),
    ));
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .clock(clock.clone())
        .features(json!([
            {"name": "modeler", "version": "2.0"},
            {"name": "render", "version": "1.0"},
            {"name": "viewer", "version": "1.0"}
        ]))
        .line(json!({"product": "cad", "model": "floating", "count": 20_000, "overdraft": 0}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .clock(clock.clone())
        .lease_seconds(86_400)
        .init()
        .await;
    let server = Arc::new(data.open().await);
    let mut running = TestServer::serve(server.clone()).await;
    running.token = Some(data.token.clone());
    running
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 20_000)])
        .await;
    let url = running.url.clone();

    // 10,000 devices take a seat each (a tenth of them render too)
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..32 {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= DEVICES {
                    return Ok::<(), String>(());
                }
                let mut features = vec![json!({"name": "modeler", "count": 1})];
                if i % 10 == 0 {
                    features.push(json!({"name": "render", "count": 1}));
                }
                let body = json!({"operation": "request", "device_id": format!("string=ws-{i:05}"),
                    "user": format!("user{}", i % 500), "alias": format!("pc-{i}"),
                    "device_type": "physical", "request_id": format!("r{i}"),
                    "nonce": format!("nonce-{i}-0123456789abcdef"), "features": features});
                let r = http
                    .post(format!("{url}/api/v1/capability"))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("device {i}: {}", r.status()));
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "{DEVICES} devices took their seats in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // an hour of history, and a few denials (viewer is not in the line's count: refused)
    for _ in 0..60 {
        server.sample_usage_history().await?;
        clock.advance(tessera_core::time::Duration::minutes(1));
    }
    for i in 0..20 {
        let body = json!({"operation": "request", "device_id": format!("string=late-{i}"),
            "user": "late", "request_id": format!("late{i}"),
            "nonce": format!("nonce-late-{i}-0123456789"), "features": [{"name": "nope", "count": 1}]});
        http.post(format!("{url}/api/v1/capability"))
            .json(&body)
            .send()
            .await?;
    }

    // log in as the pages' user, through the forms (the cookies kept by hand)
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut jar = Jar::default();
    let first = data.password.clone();
    let r = browser
        .post(format!("{url}/login"))
        .form(&[("user", "admin"), ("password", first.as_str())])
        .send()
        .await?;
    jar.keep(&r);
    let r = browser
        .post(format!("{url}/password"))
        .header("cookie", jar.header())
        .form(&[
            ("user", "admin"),
            ("current", first.as_str()),
            ("new", "a much better password"),
            ("confirm", "a much better password"),
        ])
        .send()
        .await?;
    if !r.status().is_redirection() {
        return Err(format!("the password change answered {}", r.status()).into());
    }
    jar.keep(&r);
    let r = browser
        .post(format!("{url}/login"))
        .form(&[("user", "admin"), ("password", "a much better password")])
        .send()
        .await?;
    jar.keep(&r);
    let cookie = jar.header();

    let pages = [
        "/features",
        "/features?tab=details",
        "/features/modeler",
        "/devices",
        "/devices/string=ws-04242",
        "/usage",
        "/denials",
    ];
    println!("| page | p50 ms | p99 ms | max ms | bytes |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut missed = Vec::new();
    for page in pages {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for i in 0..runs + 5 {
            let t = Instant::now();
            let r = browser
                .get(format!("{url}{page}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = r.status();
            let body = r.bytes().await?;
            let took = t.elapsed();
            if status != 200 {
                return Err(format!("{page}: {status}").into());
            }
            bytes = body.len();
            if i >= 5 {
                times.push(took);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let (p50, p99, max) = (ms(at(0.5)), ms(at(0.99)), ms(times[times.len() - 1]));
        println!("| `{page}` | {p50:.1} | {p99:.1} | {max:.1} | {bytes} |");
        if p99 > BUDGET_MS || bytes > BUDGET_BYTES {
            missed.push(page);
        }
    }
    if missed.is_empty() {
        println!(
            "\nevery page within the budget (p99 under {BUDGET_MS} ms, under {BUDGET_BYTES} bytes)"
        );
    } else {
        println!("\nover the budget: {}", missed.join(", "));
    }
    Ok(())
}

/// The cookies the server set, kept as a browser would (a `Max-Age=0` one removed).
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let Some((name, value)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if v.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
