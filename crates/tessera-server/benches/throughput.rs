//! License server throughput and capacity, measured (not asserted): see docs/performance.md.
//!
//! ```text
//! cargo bench -p tessera-server --bench throughput
//! ```
//!
//! 1. **Throughput.** A load generator on loopback (64 keep-alive HTTP/1.1 connections, its own
//!    threads) drives, in the same run, (a) a trivial JSON handler (parse the body, answer a small
//!    JSON object) and (b) a real license server on SQLite in a directory on disk, each connection
//!    checking a seat out (a durable, signed grant) and returning it (a durable return answered
//!    with a sealed response, proven with the lease's session key). Requests/s, p50 and p99.
//!    `TESSERA_BENCH_MODE=grants` drives instead a **grants-only** workload against a third
//!    server (every request a fresh grant for a new device, never returned: a burst of new users
//!    at nine in the morning); `=both` measures the two in the same alternating rounds.
//! 2. **Capacity.** One million active leases written to the store of a second server, which is
//!    then opened in a fresh process: time to reload, resident memory, and one request served.
//!
//! The two targets of the throughput part are measured in alternating rounds (trivial, server,
//! trivial, server, ...) so that a slower or busier stretch of the machine weighs on both alike;
//! each round's ratio is printed with the totals.
//!
//! `TESSERA_BENCH_ONLY=throughput` or `=capacity` runs one part; `TESSERA_BENCH_MODE` is
//! `checkout` (the default: checkout and return), `grants` or `both`;
//! `TESSERA_BENCH_RESERVATIONS=N` loads N reservations (for other devices) into the checkout
//! server first; `TESSERA_BENCH_SECS` (default 10) sets each target's measured time in all, split over
//! `TESSERA_BENCH_ROUNDS` rounds (default 5), `TESSERA_BENCH_LEASES`
//! (default 1000000) the capacity run's leases, `TESSERA_BENCH_DIR` where the data directories go
//! (default a temporary directory under `target/`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tessera_core::capability::{session_proof, Operation};
use tessera_core::Clock;
use tessera_host::SystemClock;
use tessera_server::{daemon, engine::record_key, http};
use tessera_store::{LeaseChange, LeaseRow, LeaseStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;

/// The `tessera` binary's allocator, so that the server in this process runs as it does there (the
/// trivial handler in the same process gets it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--reload") {
        let dir = args.get(i + 1).ok_or("--reload DIR")?;
        return reload(Path::new(dir));
    }
    let secs: u64 = std::env::var("TESSERA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let leases: usize = std::env::var("TESSERA_BENCH_LEASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let base = match std::env::var_os("TESSERA_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
            std::fs::create_dir_all(&d)?;
            d
        }
    };
    let work = tempfile::tempdir_in(&base)?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let (trivial_url, server_url, grants_url, _serving, capacity_dir) =
        server_rt.block_on(setup(work.path(), leases))?;
    let rounds: u32 = std::env::var("TESSERA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let only = std::env::var("TESSERA_BENCH_ONLY").unwrap_or_default();
    let d = Duration::from_secs(secs);
    let mode = std::env::var("TESSERA_BENCH_MODE").unwrap_or_default();
    let mut targets = Vec::new();
    if mode != "grants" {
        targets.push((
            "license server: checkout + return, durable (SQLite, group commit)",
            server_url.as_str(),
            Workload::CheckoutReturn,
        ));
    }
    if mode == "grants" || mode == "both" {
        targets.push((
            "license server: grants only, a new device each, durable (SQLite, group commit)",
            grants_url.as_str(),
            Workload::Grants,
        ));
    }
    if only != "capacity" {
        throughput(&load_rt, &trivial_url, &targets, d, rounds)?;
    }
    drop(load_rt);
    drop(server_rt);
    if only == "throughput" {
        return Ok(());
    }

    // capacity, in a fresh process so its memory is the reloaded server's alone
    println!();
    println!("# capacity: {leases} active leases");
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--reload")
        .arg(&capacity_dir)
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err("the reload run failed".into());
    }
    Ok(())
}

fn throughput(
    load_rt: &tokio::runtime::Runtime,
    trivial_url: &str,
    targets: &[(&str, &str, Workload)],
    d: Duration,
    rounds: u32,
) -> Result<(), BoxError> {
    let secs = d.as_secs();
    let each = d / rounds;
    println!(
        "# license server throughput: {CONNECTIONS} connections, {secs} s each in {rounds} alternating rounds, loopback"
    );
    println!();
    // each target is compared with the trivial handler's rounds next to its own
    let mut trivial = vec![Measured::default(); targets.len()];
    let mut server: Vec<Measured> = targets.iter().map(|_| Measured::default()).collect();
    let mut ratios = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (i, (_, url, w)) in targets.iter().enumerate() {
            let t = load_rt.block_on(run(trivial_url, each, Workload::Trivial))?;
            let s = load_rt.block_on(run(url, each, *w))?;
            ratios[i].push(format!("{:.2}", s.rate() / t.rate().max(1.0)));
            trivial[i].merge(t);
            server[i].merge(s);
        }
    }
    println!("| target | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (what, _, _)) in targets.iter().enumerate() {
        trivial[i].print("trivial JSON handler (axum, same process)");
        server[i].print(what);
    }
    for (i, (what, url, _)) in targets.iter().enumerate() {
        report(load_rt, url, what)?;
        println!(
            "{what} / trivial handler: {:.2} (rounds: {})",
            server[i].rate() / trivial[i].rate().max(1.0),
            ratios[i].join(", ")
        );
    }
    Ok(())
}

/// The group commit figures of a server under load, from its `/metrics`.
fn report(load_rt: &tokio::runtime::Runtime, server_url: &str, what: &str) -> Result<(), BoxError> {
    let metrics = load_rt.block_on(async {
        reqwest::get(format!("http://{server_url}/metrics"))
            .await?
            .text()
            .await
    })?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let commits = metric("tessera_engine_commits_total").max(1.0);
    println!();
    println!("{what}:");
    println!(
        "group commit: {:.0} decisions in {:.0} commits ({:.1} a commit), {:.3} ms a commit on average, {:.3} ms of it deciding",
        metric("tessera_engine_decisions_total"),
        commits,
        metric("tessera_engine_decisions_total") / commits,
        metric("tessera_engine_commit_seconds_total") * 1000.0 / commits,
        metric("tessera_engine_decide_seconds_total") * 1000.0 / commits
    );
    let sampled = SAMPLED.load(Ordering::Relaxed).max(1);
    println!(
        "answers: checkout {} bytes, return {} bytes on average",
        CHECKOUT_BYTES.load(Ordering::Relaxed) / sampled,
        RETURN_BYTES.load(Ordering::Relaxed) / sampled
    );
    Ok(())
}

/// The three URLs (trivial, checkout and return, grants only), the stop switches of the servers
/// under load (they serve while those are held), and the capacity server's data directory.
type Setup = (
    String,
    String,
    String,
    Vec<tokio::sync::oneshot::Sender<()>>,
    PathBuf,
);

/// Starts a back office, the trivial handler and the license server under test; fills the
/// capacity server's store.
async fn setup(dir: &Path, leases: usize) -> Result<Setup, BoxError> {
    let (bo_url, keys) = backoffice(&dir.join("backoffice"), 4).await?;
    let producer_pem = std::fs::read_to_string(dir.join("backoffice/keys/producer.pub"))?;

    // the trivial handler
    let app = axum::Router::new().route(
        "/api/v1/capability",
        axum::routing::post(|axum::Json(v): axum::Json<Value>| async move {
            axum::Json(json!({"ok": true, "operation": v["operation"]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let trivial_url = format!("{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // the license server under load
    let data = dir.join("server");
    let (server_url, server_stop) =
        start_server(&data, &producer_pem, "ethernet=0050569a3b01").await?;
    activate(&server_url, &data, &bo_url, &[(&keys[0], 10_000)]).await?;
    // with reservations loaded (TESSERA_BENCH_RESERVATIONS=N): N devices other than the load
    // generator's hold a reserved seat each, so every request also weighs the reservations
    let reservations: usize = std::env::var("TESSERA_BENCH_RESERVATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if reservations > 0 {
        reserve(&server_url, &data, reservations).await?;
    }

    // the grants-only server: room for every grant of the run (none is returned)
    let grants = dir.join("grants");
    let (grants_url, grants_stop) =
        start_server(&grants, &producer_pem, "ethernet=0050569a3b03").await?;
    activate(&grants_url, &grants, &bo_url, &[(&keys[3], 1_000_000)]).await?;

    // the capacity server: activated, stopped, its store filled with active leases
    let cap = dir.join("capacity");
    let (cap_url, stop) = start_server(&cap, &producer_pem, "ethernet=0050569a3b02").await?;
    // the leases fill the first line; the second has room for the request served after reload
    activate(
        &cap_url,
        &cap,
        &bo_url,
        &[
            (&keys[1], u32::try_from(leases)?.clamp(1, 1_000_000)),
            (&keys[2], 10),
        ],
    )
    .await?;
    let _ = stop.send(());
    fill(&cap, leases).await?;
    Ok((
        trivial_url,
        server_url,
        grants_url,
        vec![server_stop, grants_stop],
        cap,
    ))
}

async fn start_server(
    data: &Path,
    producer_pem: &str,
    hostid: &str,
) -> Result<(String, tokio::sync::oneshot::Sender<()>), BoxError> {
    let token = daemon::init(data, producer_pem, None, Some(hostid))
        .await?
        .token;
    std::fs::write(data.join("admin.token"), &token)?;
    let cfg = std::fs::read_to_string(data.join("server.toml"))?;
    std::fs::write(
        data.join("server.toml"),
        format!(
            "{cfg}anchor_dir = \"{}\"\n",
            data.join("../anchors").display()
        ),
    )?;
    let server = daemon::open(data, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve_on(listener, http::state(server), async move {
        let _ = stopped.await;
    }));
    Ok((url, stop))
}

async fn activate(
    addr: &str,
    data: &Path,
    bo_url: &str,
    keys: &[(&str, u32)],
) -> Result<(), BoxError> {
    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/admin/activate"))
        .bearer_auth(token.trim())
        .json(&json!({"backoffice": bo_url, "activations": keys.iter().map(|(k, n)| json!({"key": k, "count": n})).collect::<Vec<_>>()}))
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("activation failed: {}", r.text().await?).into());
    }
    Ok(())
}

/// Loads `n` reservations (one seat of `modeler` each, for devices that never ask) in groups of 10.
async fn reserve(addr: &str, data: &Path, n: usize) -> Result<(), BoxError> {
    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let groups: Vec<Value> = (0..n.div_ceil(10))
        .map(|g| {
            json!({"name": format!("group-{g}"), "reservations": (0..10.min(n - g * 10)).map(|r| json!({
                "holder": format!("string=reserved-{g}-{r}"),
                "entries": [{"feature": "modeler", "version": "1.0", "count": 1}]})).collect::<Vec<_>>()})
        })
        .collect();
    // in documents under the admin API's 64 KiB body limit
    let mut view = Value::Null;
    for chunk in groups.chunks(20) {
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/api/v1/admin/reservations"))
            .bearer_auth(token.trim())
            .json(&json!({ "groups": chunk }))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("reservations refused: {}", r.text().await?).into());
        }
        view = r.json().await?;
    }
    let satisfied = view["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["satisfied"] == true).count());
    eprintln!("({satisfied} of {n} reservations in force on the checkout server)");
    Ok(())
}

async fn backoffice(dir: &Path, lines: usize) -> Result<(String, Vec<String>), BoxError> {
    use tessera_backoffice::daemon as bo;
    bo::init(dir, None, None, &SystemClock).await?;
    let (office, config) = bo::open(dir, None, Arc::new(SystemClock)).await?;
    office
        .create_product(
            "cad",
            "CAD",
            serde_json::from_value(json!({"features": [{"name": "modeler", "version": "2.0"}]}))?,
        )
        .await?;
    let c = office.create_customer("ACME", None).await?;
    let line = json!({"product": "cad", "model": "floating", "count": 1_000_000});
    let e = office
        .create_entitlement(
            &c.id,
            (0..lines)
                .map(|_| serde_json::from_value(line.clone()))
                .collect::<Result<_, _>>()?,
        )
        .await?;
    let keys = e.lines.iter().filter_map(|l| l.key.clone()).collect();
    let state = bo::state(office, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(bo::serve_on(listener, state, std::future::pending()));
    Ok((url, keys))
}

/// Writes `n` active leases straight into the (stopped-serving) capacity server's store, in the
/// form the engine writes them.
async fn fill(data: &Path, n: usize) -> Result<(), BoxError> {
    let config = daemon::load_config(data)?;
    let url = config
        .database
        .clone()
        .unwrap_or_else(|| tessera_store::sqlite_url_for_data_dir(data));
    let store = tessera_store::open(&url).await?;
    let license = tessera_store::ServerStateStore::server_state(
        &store,
        &tessera_store::InstanceId::on_site(),
    )
    .await?
    .license
    .ok_or("the capacity server has no bundle")?;
    let claims: tessera_core::LicenseClaims =
        tessera_core::document::decode_unverified(&license, tessera_core::DocumentType::License)?;
    let record = claims
        .features
        .first()
        .map(record_key)
        .ok_or("the bundle has no features")?;
    let expires = SystemClock.now() + tessera_core::time::Duration::days(1);
    let started = Instant::now();
    let mut id = 1_000_000i64;
    for chunk in 0..n.div_ceil(20_000) {
        let rows = (0..20_000.min(n - chunk * 20_000))
            .map(|i| {
                id += 1;
                LeaseChange::Put(LeaseRow {
                    id,
                    device: format!("string=ws-{:07}", chunk * 20_000 + i),
                    request_id: format!("{:024x}", id),
                    record_key: record.clone(),
                    count: 1,
                    overdraft: 0,
                    expires_at: expires,
                    borrowed: false,
                    alias: None,
                    device_type: tessera_core::DeviceType::Unknown,
                })
            })
            .collect();
        store
            .apply_lease_changes(&tessera_store::InstanceId::on_site(), rows)
            .await?;
    }
    // written outside the server, so accepted the way an administrator would accept them
    // (`tessera server accept-storage`), or the reload would rightly refuse them
    let accepted = loop {
        match daemon::accept_storage(data).await {
            Err(daemon::ServerError::Running { .. }) => {
                // the capacity server is still letting go of its data directory
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => break r?,
        }
    };
    if accepted != n {
        return Err(format!("{accepted} leases stored, {n} written").into());
    }
    eprintln!(
        "(wrote {n} leases to the capacity store in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The capacity run, in its own process: reopen the server with its leases; report time and memory.
fn reload(data: &Path) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let before = memory();
        let started = Instant::now();
        // the first server is still running in the parent: its lock is on another directory
        let server = daemon::open(data, Arc::new(SystemClock)).await?;
        let took = started.elapsed();
        let held = server.engine.lease_count();
        let after = memory();
        // and it still serves: one more seat
        let req: tessera_core::capability::CapabilityRequest = serde_json::from_value(json!({
            "operation": "request", "device_id": "string=one-more", "request_id": "r",
            "nonce": "nonce-nonce-nonce-1", "features": [{"name": "modeler"}]}))?;
        let answered = server.engine.handle(req).await.is_ok();
        println!();
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| leases held after reload | {held} |");
        println!(
            "| reload (open: checks, read, seat book) | {:.2} s |",
            took.as_secs_f64()
        );
        println!(
            "| resident memory before open | {:.0} MiB |",
            before.0 as f64 / 1024.0
        );
        println!(
            "| resident memory holding the leases | {:.0} MiB |",
            after.0 as f64 / 1024.0
        );
        println!(
            "| peak resident memory (during reload) | {:.0} MiB |",
            after.1 as f64 / 1024.0
        );
        println!("| a request served after reload | {answered} |");
        Ok::<_, BoxError>(())
    })
}

/// (VmRSS, VmHWM) in KiB.
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    Trivial,
    CheckoutReturn,
    /// Every request a fresh grant for a new device, never returned.
    Grants,
}

#[derive(Debug, Default, Clone)]
struct Measured {
    latencies_us: Vec<u32>,
    errors: u64,
    elapsed: Duration,
}

impl Measured {
    fn merge(&mut self, other: Measured) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&mut self, what: &str) {
        self.latencies_us.sort_unstable();
        let q = |p: f64| {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 * p) as usize).min(n - 1);
            f64::from(self.latencies_us[i]) / 1000.0
        };
        println!(
            "| {what} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            self.rate(),
            q(0.50),
            q(0.99),
            self.errors
        );
    }
}

async fn run(addr: &str, d: Duration, w: Workload) -> Result<Measured, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, stop) = (addr.to_string(), stop.clone());
        tasks.push(tokio::spawn(
            async move { connection(&addr, c, w, &stop).await },
        ));
    }
    // warm up, then measure
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    MEASURING.store(true, Ordering::SeqCst);
    tokio::time::sleep(d).await;
    MEASURING.store(false, Ordering::SeqCst);
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut m = Measured {
        elapsed,
        ..Measured::default()
    };
    for t in tasks {
        let (lat, errors) = t.await??;
        m.latencies_us.extend(lat);
        m.errors += errors;
    }
    Ok(m)
}

static MEASURING: AtomicBool = AtomicBool::new(false);
/// Answer sizes, sampled (one checkout and return in 128 per connection).
static CHECKOUT_BYTES: AtomicU64 = AtomicU64::new(0);
static RETURN_BYTES: AtomicU64 = AtomicU64::new(0);
static SAMPLED: AtomicU64 = AtomicU64::new(0);

struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn post(&mut self, addr: &str, body: &str) -> Result<(u16, &[u8]), BoxError> {
        let req = format!(
            "POST /api/v1/capability HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).await?;
        self.line.clear();
        self.reader.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status line")?;
        let mut len = 0usize;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await? == 0 {
                return Err("connection closed".into());
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        self.body.resize(len, 0);
        self.reader.read_exact(&mut self.body).await?;
        Ok((status, &self.body))
    }
}

async fn connection(
    addr: &str,
    c: usize,
    w: Workload,
    stop: &AtomicBool,
) -> Result<(Vec<u32>, u64), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, wr) = stream.into_split();
    let mut conn = Conn {
        reader: BufReader::new(r),
        writer: wr,
        line: String::new(),
        body: Vec::new(),
    };
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let device = format!("string=bench-{c}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let nonce = format!("nonce-{c:04}-{n:012}");
        let request_id = format!("r-{n}");
        let device = match w {
            // a new device for every grant
            Workload::Grants => format!("{device}-{n}"),
            _ => device.clone(),
        };
        // the generator stays light (bodies formatted, answers scanned, not parsed) so that the
        // cores go to the server under test
        let body = format!(
            r#"{{"operation":"request","device_id":"{device}","request_id":"{request_id}","nonce":"{nonce}","features":[{{"name":"modeler"}}]}}"#
        );
        let t = Instant::now();
        let (status, answer) = conn.post(addr, &body).await?;
        let took = t.elapsed();
        if MEASURING.load(Ordering::Relaxed) {
            lat.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            if status != 200 {
                errors += 1;
            }
        }
        if let Workload::Trivial = w {
            continue;
        }
        let grants_only = matches!(w, Workload::Grants);
        if !grants_only && MEASURING.load(Ordering::Relaxed) && n % 128 == 7 {
            CHECKOUT_BYTES.fetch_add(answer.len() as u64, Ordering::Relaxed);
        }
        // the grant: lease and session key from the signed answer's claims
        let claims = between(answer, b"\"response\":\"", b"\"")
            .and_then(|t| t.split(|&b| b == b'.').nth(1))
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .unwrap_or_default();
        let (Some(lease), Some(key)) = (
            between(&claims, b"\"lease\":", b",")
                .and_then(|l| std::str::from_utf8(l).ok())
                .and_then(|l| l.parse::<u64>().ok()),
            between(&claims, b"\"session_key\":\"", b"\"")
                .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok()),
        ) else {
            errors += 1;
            continue;
        };
        if grants_only {
            continue;
        }
        let nonce = format!("nonce-{c:04}-{n:012}-ret");
        let request_id = format!("ret-{n}");
        let proof = session_proof(&key, Operation::Return, &nonce, &request_id, lease);
        let body = format!(
            r#"{{"operation":"return","device_id":"{device}","request_id":"{request_id}","nonce":"{nonce}","leases":[{lease}],"session_proof":"{proof}"}}"#
        );
        let t = Instant::now();
        let (status, answer) = conn.post(addr, &body).await?;
        let took = t.elapsed();
        let sealed = memchr::memmem::find(answer, b"\"response\":\"eyJ").is_some();
        if MEASURING.load(Ordering::Relaxed) && n % 128 == 7 {
            RETURN_BYTES.fetch_add(answer.len() as u64, Ordering::Relaxed);
            SAMPLED.fetch_add(1, Ordering::Relaxed);
        }
        if MEASURING.load(Ordering::Relaxed) {
            lat.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            if status != 200 || !sealed {
                errors += 1;
            }
        }
    }
    Ok((lat, errors))
}

/// The bytes between `start` and the next `end` after it.
fn between<'a>(s: &'a [u8], start: &[u8], end: &[u8]) -> Option<&'a [u8]> {
    let from = memchr::memmem::find(s, start)? + start.len();
    let len = memchr::memmem::find(&s[from..], end)?;
    Some(&s[from..from + len])
}
