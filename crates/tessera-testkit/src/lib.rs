//! The test kit: a back office, a license server and client identities, each started on port 0
//! over real storage (SQLite in a temporary directory, or PostgreSQL when asked), for the
//! workspace's integration tests and benches.
//!
//! A test that needs a producer with a floating line and a license server activated from it:
//!
//! ```no_run
//! # async fn demo() {
//! use tessera_testkit::{BackOfficeKit, KeyCount, ServerKit};
//! let bo = BackOfficeKit::new().floating(3).start().await;
//! let dir = tempfile::tempdir().unwrap();
//! let srv = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
//! let running = srv.start().await;
//! running.activate(&bo.url, &[KeyCount::new(bo.keys[0].clone(), 3)]).await;
//! # }
//! ```
//!
//! Everything here panics with a message on failure: it is test set-up, and a test that cannot set
//! up should fail there, saying why.
#![allow(clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tessera_backoffice::service::BackOffice;
use tessera_core::{Clock, DeviceType, HostId};
use tessera_host::{HostIdentity, SystemClock};
use tessera_store::AnyStore;
use tessera_wire::admin::ActivateRequest;
use tokio::sync::oneshot;

/// One activation key with a count, as the admin API's activation takes them.
pub use tessera_wire::KeyCount;

/// The claims of a capability response token, read without verifying it (the tests of signatures
/// verify): its middle part, base64url, as JSON, read as `T` (a `Value`, or the core's
/// `CapabilityResponseClaims`).
pub fn token_claims<T: serde::de::DeserializeOwned>(token: &str) -> T {
    use base64::Engine as _;
    let part = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a response token: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("the token's claims are not base64url ({e}): {token}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the token's claims do not read ({e}): {token}"))
}

/// The claims of a capability answer (`{"response": TOKEN, ...}`), as [`token_claims`].
pub fn answer_claims<T: serde::de::DeserializeOwned>(answer: &Value) -> T {
    token_claims(
        answer["response"]
            .as_str()
            .unwrap_or_else(|| panic!("not a capability answer: {answer}")),
    )
}

/// Sends the capability request `body` to the license server at `url` and reads its answer's
/// claims (as [`answer_claims`]); any status but 200 fails the test with the answer's body.
pub async fn capability_claims(url: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer from {url}: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {text}"));
    answer_claims(&answer)
}

/// A Tokio runtime for blocking tests (two workers, everything enabled).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the test")
}

/// A client machine numbered `n`: one physical machine id made of `n` repeated, so tests can tell
/// devices apart.
pub fn machine(n: u8) -> HostIdentity {
    HostIdentity {
        ids: vec![format!("machine_id={}", format!("{n:02x}").repeat(16))
            .parse::<HostId>()
            .expect("a machine id host id")],
        device_type: DeviceType::Physical,
        evidence: vec![],
    }
}

/// What the back office is set up with: product `cad` ("CAD") with its features, and one customer
/// (`ACME`) with an entitlement of the given lines; where it keeps its data (a temporary directory,
/// on SQLite or PostgreSQL), its clock, lines added to its `backoffice.toml`, its public rate limit
/// and whether its outbox worker runs.
#[derive(Debug, Clone)]
pub struct BackOfficeKit {
    dir: Option<PathBuf>,
    issuer: Option<String>,
    product: Option<Value>,
    lines: Vec<Value>,
    database: Option<String>,
    clock: Option<Arc<dyn Clock>>,
    config: String,
    public_requests_per_minute: Option<u32>,
    outbox_worker: bool,
}

impl Default for BackOfficeKit {
    fn default() -> Self {
        BackOfficeKit::new()
    }
}

impl BackOfficeKit {
    /// A back office with product `cad` offering feature `modeler` 2.0, and no lines yet.
    pub fn new() -> BackOfficeKit {
        BackOfficeKit {
            dir: None,
            issuer: None,
            product: Some(json!({"features": [{"name": "modeler", "version": "2.0"}]})),
            lines: Vec::new(),
            database: None,
            clock: None,
            config: String::new(),
            public_requests_per_minute: None,
            outbox_worker: false,
        }
    }

    /// Keeps the back office's data in `dir` (a new temporary directory otherwise).
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// The producer's name in issued licenses.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_string());
        self
    }

    /// Its store (a `postgres://` URL, e.g. a `tessera_store::testing::TempPostgres`'s); SQLite in
    /// the data directory otherwise.
    pub fn database(mut self, url: Option<&str>) -> Self {
        self.database = url.map(str::to_string);
        self
    }

    /// The clock the back office reads (initialisation included): a `ManualClock` moves only when
    /// the test says. The system clock otherwise.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds these lines to `backoffice.toml` before it is opened (`[mail]`, `notify_email`, ...).
    pub fn config(mut self, lines: &str) -> Self {
        self.config.push_str(lines);
        if !self.config.is_empty() && !self.config.ends_with('\n') {
            self.config.push('\n');
        }
        self
    }

    /// Public requests a minute per address (`public_requests_per_minute`), instead of the
    /// configured number.
    pub fn public_requests_per_minute(mut self, per_minute: u32) -> Self {
        self.public_requests_per_minute = Some(per_minute);
        self
    }

    /// Runs the outbox worker (mail and webhooks, when configured) while the back office serves.
    pub fn outbox_worker(mut self) -> Self {
        self.outbox_worker = true;
        self
    }

    /// Product `cad` with this product spec (`{"features": [...], "basic_features": [...], ...}`),
    /// instead of the default.
    pub fn product(mut self, spec: Value) -> Self {
        self.product = Some(spec);
        self
    }

    /// Product `cad` with these features (`[{"name": "modeler", "version": "2.0"}, ...]`).
    pub fn features(self, features: Value) -> Self {
        self.product(json!({ "features": features }))
    }

    /// No product and no customer: a bare back office (tests that add them through its API).
    pub fn bare(mut self) -> Self {
        self.product = None;
        self.lines.clear();
        self
    }

    /// Adds an entitlement line (`{"product": "cad", "model": "floating", "count": 3}`).
    pub fn line(mut self, line: Value) -> Self {
        self.lines.push(line);
        self
    }

    /// Adds a floating line of `count` seats of product `cad`.
    pub fn floating(self, count: u32) -> Self {
        self.line(json!({"product": "cad", "model": "floating", "count": count}))
    }

    fn clock_or_system(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }

    /// Initialises the data directory (keys, `backoffice.toml` with the added lines, store, admin
    /// user) without opening it: for tests that open and serve it themselves (TLS, say).
    pub async fn init(self) -> BackOfficeData {
        let (temp, dir) = match &self.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("a temporary directory");
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let clock = self.clock_or_system();
        let report = tessera_backoffice::daemon::init(
            &dir,
            self.database.as_deref(),
            self.issuer.as_deref(),
            &*clock,
        )
        .await
        .expect("back office init");
        if !self.config.is_empty() {
            let toml = dir.join("backoffice.toml");
            let mut cfg = read(&toml);
            cfg.push_str(&self.config);
            std::fs::write(&toml, cfg).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
        }
        BackOfficeData {
            dir,
            admin_token: report.admin_token,
            admin_password: report.admin_password,
            clock,
            kit: self,
            temp,
        }
    }

    /// Initialises the data directory, creates the product and the lines, and serves on a free
    /// loopback port until the returned value is dropped.
    pub async fn start(self) -> TestBackOffice {
        self.init().await.start().await
    }
}

/// A back office data directory made by [`BackOfficeKit::init`] (removed when dropped, unless it
/// was given with [`BackOfficeKit::in_dir`]).
#[derive(Debug)]
pub struct BackOfficeData {
    /// The data directory.
    pub dir: PathBuf,
    /// The admin user's API token.
    pub admin_token: String,
    /// The admin user's password.
    pub admin_password: String,
    /// The clock it runs on.
    pub clock: Arc<dyn Clock>,
    kit: BackOfficeKit,
    temp: Option<tempfile::TempDir>,
}

impl BackOfficeData {
    /// Opens the back office (another handle on the same store each time), with the kit's clock
    /// and public rate limit.
    pub async fn open(&self) -> (BackOffice<AnyStore>, tessera_backoffice::daemon::Config) {
        let (office, mut config) =
            tessera_backoffice::daemon::open(&self.dir, None, self.clock.clone())
                .await
                .expect("back office open");
        if let Some(r) = self.kit.public_requests_per_minute {
            config.public_requests_per_minute = r;
        }
        (office, config)
    }

    /// Opens the back office, creates the kit's product and lines, and serves on a free loopback
    /// port until the returned value is dropped.
    pub async fn start(self) -> TestBackOffice {
        use tessera_backoffice::daemon as bo;
        let (office, config) = self.open().await;
        let BackOfficeData {
            dir,
            admin_token,
            admin_password,
            clock,
            kit,
            temp,
        } = self;
        let mut keys = Vec::new();
        if let Some(spec) = kit.product {
            office
                .create_product(
                    "cad",
                    "CAD",
                    serde_json::from_value(spec).expect("a product spec"),
                )
                .await
                .expect("create product cad");
            if !kit.lines.is_empty() {
                let c = office
                    .create_customer("ACME", None)
                    .await
                    .expect("create customer");
                let lines = kit
                    .lines
                    .into_iter()
                    .map(|l| serde_json::from_value(l).expect("an entitlement line"))
                    .collect();
                let e = office
                    .create_entitlement(&c.id, lines)
                    .await
                    .expect("create entitlement");
                keys = e.lines.iter().filter_map(|l| l.key.clone()).collect();
            }
        }
        let state = bo::state(office.clone(), &config);
        let worker = if kit.outbox_worker {
            bo::start_outbox_worker(&state, clock.clone())
        } else {
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the listener's address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(bo::serve_on(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestBackOffice {
            url,
            dir,
            admin_token,
            admin_password,
            keys,
            office,
            state,
            clock,
            _worker: worker,
            stop: Some(stop),
            _temp: temp,
        }
    }
}

/// A back office serving on a free port (stops when dropped).
#[derive(Debug)]
pub struct TestBackOffice {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// The admin user's API token.
    pub admin_token: String,
    /// The admin user's password.
    pub admin_password: String,
    /// The activation keys of the entitlement's lines, in order.
    pub keys: Vec<String>,
    /// The service itself, for set-up the HTTP API does not need to show.
    pub office: BackOffice<AnyStore>,
    /// The HTTP state it serves (its rate limiter, password-check gate, ...).
    pub state: tessera_backoffice::http::Shared,
    /// The clock it runs on.
    pub clock: Arc<dyn Clock>,
    _worker: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    )>,
    stop: Option<oneshot::Sender<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestBackOffice {
    /// The producer's public key (PEM) that licenses and server certificates are signed with.
    pub fn producer_pem(&self) -> String {
        read(&self.dir.join("keys/producer.pub"))
    }

    /// The public key (PEM) that unlock codes are signed with.
    pub fn unlock_pem(&self) -> String {
        read(&self.dir.join("keys/unlock.pub"))
    }

    /// Keeps the back office serving until the test's runtime ends, and gives its URL and the
    /// lines' keys (for tests that only talk to it over HTTP).
    pub fn detach(self) -> (String, Vec<String>) {
        let TestBackOffice {
            url,
            keys,
            stop,
            _temp,
            _worker,
            ..
        } = self;
        // the server task ends with the runtime; its data directory must outlive the test
        std::mem::forget(stop);
        std::mem::forget(_worker);
        if let Some(t) = _temp {
            let _ = t.keep();
        }
        (url, keys)
    }

    /// Tells the server to stop (it finishes the requests it is answering); its data stays.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// The producer's public key that licenses and server certificates are signed with.
    pub fn producer_key(&self) -> tessera_core::PublicKey {
        tessera_backoffice::daemon::public_key(&self.dir).expect("the producer's public key")
    }

    /// POSTs `body` to the admin API at `path` with the admin token; the JSON answer (panics
    /// unless it is a success).
    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// A producer key (PEM) from a back office data directory made in `dir`; no back office runs.
pub async fn producer_key(dir: &Path) -> String {
    tessera_backoffice::daemon::init(dir, None, None, &SystemClock)
        .await
        .expect("back office init");
    read(&dir.join("keys/producer.pub"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How a license server data directory is made: in `PARENT/NAME`, trusting a producer key, bound
/// to a host id, on SQLite unless a database is given, with its storage marks in
/// `PARENT/anchors` (or `PARENT/anchors-NAME`), extra server.toml lines, and the clock it is
/// opened with.
#[derive(Debug, Clone)]
pub struct ServerKit {
    parent: PathBuf,
    name: String,
    producer_pem: String,
    database: Option<String>,
    hostid: String,
    extra: String,
    clock: Option<Arc<dyn Clock>>,
}

impl ServerKit {
    /// A server in `PARENT/srv` trusting `producer_pem`, host id `ethernet=0050569a3b01`.
    pub fn new(parent: &Path, producer_pem: &str) -> ServerKit {
        ServerKit {
            parent: parent.to_path_buf(),
            name: "srv".into(),
            producer_pem: producer_pem.to_string(),
            database: None,
            hostid: "ethernet=0050569a3b01".into(),
            extra: String::new(),
            clock: None,
        }
    }

    /// The clock the server is opened with (a `ManualClock` to let leases expire or days pass);
    /// the system clock otherwise.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Its data directory's name under the parent (and of its anchors, `anchors-NAME`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The host id the server is bound to.
    pub fn hostid(mut self, hostid: &str) -> Self {
        self.hostid = hostid.to_string();
        self
    }

    /// Its store (a `postgres://` URL); SQLite in the data directory otherwise.
    pub fn database(mut self, url: Option<&str>) -> Self {
        self.database = url.map(str::to_string);
        self
    }

    /// Adds these lines to server.toml (each ending in a newline).
    pub fn config(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// Leases of this many seconds (`lease_seconds` in server.toml).
    pub fn lease_seconds(self, seconds: u32) -> Self {
        self.config(&format!("lease_seconds = {seconds}\n"))
    }

    /// Creates the data directory; what a test needs to open and administer it.
    pub async fn init(self) -> ServerData {
        let data = self.parent.join(&self.name);
        let made = tessera_server::daemon::init(
            &data,
            &self.producer_pem,
            self.database.as_deref(),
            Some(&self.hostid),
        )
        .await
        .expect("license server init");
        let toml = data.join("server.toml");
        let mut cfg = read(&toml);
        let mut extra = self.extra.clone();
        // a lease length given here replaces the default line rather than repeating the key
        if let Some(line) = extra
            .lines()
            .find(|l| l.trim_start().starts_with("lease_seconds"))
            .map(str::to_string)
        {
            cfg = cfg
                .lines()
                .filter(|l| !l.trim_start().starts_with("lease_seconds"))
                .map(|l| format!("{l}\n"))
                .collect();
            cfg.push_str(&line);
            cfg.push('\n');
            extra = extra
                .lines()
                .filter(|l| !l.trim_start().starts_with("lease_seconds"))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        let anchors = if self.name == "srv" {
            "anchors".to_string()
        } else {
            format!("anchors-{}", self.name)
        };
        cfg.push_str(&format!(
            "{extra}anchor_dir = \"{}\"\n",
            self.parent.join(anchors).display()
        ));
        std::fs::write(&toml, cfg).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
        ServerData {
            data,
            token: made.token,
            password: made.password,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        }
    }
}

/// A license server data directory made by [`ServerKit::init`].
#[derive(Debug, Clone)]
pub struct ServerData {
    /// The data directory.
    pub data: PathBuf,
    /// The admin token (shown once at init).
    pub token: String,
    /// The first password of user `admin` (shown once at init; to be changed at the first login).
    pub password: String,
    /// The clock it is opened with.
    pub clock: Arc<dyn Clock>,
}

impl ServerData {
    /// Opens the data directory with the kit's clock (not serving it): for a test that activates
    /// it in-process, holds on to it, or serves it with [`TestServer::serve`].
    pub async fn open(&self) -> tessera_server::daemon::Server {
        tessera_server::daemon::open(&self.data, self.clock.clone())
            .await
            .unwrap_or_else(|e| panic!("open the license server in {}: {e}", self.data.display()))
    }

    /// Stops `running` (a server of this data directory) and serves the data directory again on a
    /// free port, once the stopped server has let go of it (its last request answered; polled for
    /// up to five seconds): a restart, as an administrator's service manager would do it.
    pub async fn restart(&self, mut running: TestServer) -> TestServer {
        running.stop();
        drop(running);
        for _ in 0..100 {
            match tessera_server::daemon::open(&self.data, self.clock.clone()).await {
                Ok(server) => {
                    let mut s = TestServer::serve(server).await;
                    s.token = Some(self.token.clone());
                    return s;
                }
                Err(tessera_server::daemon::ServerError::Running { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reopen the license server in {}: {e}", self.data.display()),
            }
        }
        panic!(
            "the stopped license server did not let go of {}",
            self.data.display()
        )
    }

    /// Opens the data directory with the kit's clock and serves it on a free port.
    pub async fn start(&self) -> TestServer {
        self.start_at("127.0.0.1:0").await
    }

    /// Opens the data directory with the kit's clock and serves it at `addr` (see
    /// [`TestServer::serve_at`]).
    pub async fn start_at(&self, addr: &str) -> TestServer {
        let mut s = TestServer::serve_at(self.open().await, addr).await;
        s.token = Some(self.token.clone());
        s
    }

    /// Opens the data directory with the kit's clock, activates `keys` from the back office at
    /// `backoffice` in-process (no admin API call), and serves it at `addr`.
    pub async fn activate_and_start_at(
        &self,
        backoffice: &str,
        keys: &[KeyCount],
        addr: &str,
    ) -> TestServer {
        let server = self.open().await;
        server
            .activate(backoffice, keys)
            .await
            .unwrap_or_else(|e| panic!("activate the license server from {backoffice}: {e}"));
        let mut s = TestServer::serve_at(server, addr).await;
        s.token = Some(self.token.clone());
        s
    }
}

/// A license server serving on a free loopback port; it stops when [`TestServer::stop`] is called
/// or the value is dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The admin token, when the server was started from [`ServerData`].
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Opens the server in `data` (real clock) and serves it on a free port.
    pub async fn start(data: &Path) -> TestServer {
        let server = tessera_server::daemon::open(data, Arc::new(SystemClock))
            .await
            .unwrap_or_else(|e| panic!("open the license server in {}: {e}", data.display()));
        TestServer::serve(server).await
    }

    /// Serves an already opened server (or one the test shares) on a free port.
    pub async fn serve(server: impl Into<Arc<tessera_server::daemon::Server>>) -> TestServer {
        TestServer::serve_at(server, "127.0.0.1:0").await
    }

    /// Serves an already opened server at `addr` (`127.0.0.1:0` for a free port; the address of a
    /// stopped server to restart it where its clients look, retried for up to five seconds while
    /// the old socket is released).
    pub async fn serve_at(
        server: impl Into<Arc<tessera_server::daemon::Server>>,
        addr: &str,
    ) -> TestServer {
        let state = tessera_server::http::state(server);
        let mut bound = tokio::net::TcpListener::bind(addr).await;
        for _ in 0..50 {
            if bound.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            bound = tokio::net::TcpListener::bind(addr).await;
        }
        let listener = bound.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the listener's address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(tessera_server::http::serve_on(
            listener,
            state,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            url,
            token: None,
            stop: Some(stop),
        }
    }

    /// Its address without the scheme (`127.0.0.1:PORT`).
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Its URL and the sender that stops it (when sent to or dropped).
    pub fn split(mut self) -> (String, oneshot::Sender<()>) {
        let url = std::mem::take(&mut self.url);
        (url, self.into_stopper())
    }

    /// Tells the server to stop (it finishes the requests it is answering).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// The sender that stops the server when sent to or dropped; the server keeps running while
    /// the caller holds it.
    pub fn into_stopper(mut self) -> oneshot::Sender<()> {
        match self.stop.take() {
            Some(s) => s,
            None => oneshot::channel().0,
        }
    }

    /// Activates seats from a back office with the admin token it was started with.
    pub async fn activate(&self, backoffice: &str, keys: &[KeyCount]) {
        let token = self
            .token
            .clone()
            .expect("a server started from ServerData knows its admin token");
        self.activate_with(&token, backoffice, keys).await;
    }

    /// Activates seats from a back office through the admin API (`POST /api/v1/admin/activate`)
    /// with `token`; panics unless the server answers 200.
    pub async fn activate_with(&self, token: &str, backoffice: &str, keys: &[KeyCount]) {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/admin/activate", self.url))
            .bearer_auth(token)
            .json(&ActivateRequest {
                backoffice: backoffice.to_string(),
                activations: keys.to_vec(),
            })
            .send()
            .await
            .expect("POST /api/v1/admin/activate");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "activation: {status}: {text}");
    }
}
