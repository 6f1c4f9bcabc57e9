//! The data directory, configuration, `init` and `serve`.
//!
//! ```text
//! DATA/backoffice.toml        configuration (listen address, database, issuer, TLS, limits)
//! DATA/keys/producer.key      Ed25519 signing key, PKCS#8 PEM, 0600
//! DATA/keys/producer.pub      its public key (embed in applications and license servers)
//! DATA/keys/unlock.key        BLS12-381 key for unlock codes, 0600
//! DATA/keys/unlock.pub        its public key (embed in applications that take unlock codes)
//! DATA/tessera.db             the SQLite store (unless `database` names PostgreSQL)
//! ```

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tessera_core::keys::PublicKey;
use tessera_core::unlock::UnlockSecretKey;
use tessera_core::{Clock, SigningKey};
use tessera_store::{AnyStore, KeyStore, PublicKeyRecord};

use crate::auth;
use crate::http::{self, AppState, RateLimiter};
use crate::outbox::{MailConfig, Outbox, WebhookConfig};
use crate::service::{BackOffice, ProducerKeys};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// `DATA/backoffice.toml`. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Database URL; the SQLite file in the data directory when absent.
    #[serde(default)]
    pub database: Option<String>,
    /// The producer's name, written as the issuer of every document.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// TLS certificate and key (PEM); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Requests a minute one address may make to the public endpoints and pages.
    #[serde(default = "default_rate")]
    pub public_requests_per_minute: u32,
    /// Log filter, e.g. `info` or `tessera_backoffice=debug` (`RUST_LOG` overrides it).
    #[serde(default = "default_log")]
    pub log: String,
    /// Where the producer is told about over-use (needs `[mail]`).
    #[serde(default)]
    pub notify_email: Option<String>,
    /// The SMTP server mail goes through (unlock codes, demo keys, notices).
    #[serde(default)]
    pub mail: Option<MailConfig>,
    /// A URL called with events (over-use), optionally HMAC-signed.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Seconds a client has to send a request's headers (also how long an idle connection stays
    /// open), and then its body (default 30). A client that does not is disconnected.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u32,
    /// Connections served at once (default 1024); more are closed until some end.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Threads that serve requests (1 to 1024; default: one per CPU core the system gives this
    /// process).
    #[serde(default)]
    pub worker_threads: Option<u32>,
}

fn default_request_timeout() -> u32 {
    tessera_service::serve::DEFAULT_REQUEST_TIMEOUT_SECONDS
}
fn default_max_connections() -> u32 {
    tessera_service::serve::DEFAULT_MAX_CONNECTIONS
}

impl Config {
    /// The limits the back office applies to its clients' connections.
    pub fn limits(&self) -> tessera_service::serve::Limits {
        tessera_service::serve::Limits::new(self.request_timeout_seconds, self.max_connections)
    }

    /// How many threads serve requests: `worker_threads`, else one per CPU core (see
    /// [`tessera_service::serve::worker_threads`]).
    pub fn worker_threads(&self) -> usize {
        tessera_service::serve::worker_threads(self.worker_threads)
    }
}

/// TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_issuer() -> String {
    "Tessera producer".into()
}
fn default_rate() -> u32 {
    60
}
fn default_log() -> String {
    "info".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            database: None,
            issuer: default_issuer(),
            tls: None,
            public_requests_per_minute: default_rate(),
            log: default_log(),
            notify_email: None,
            mail: None,
            webhook: None,
            request_timeout_seconds: default_request_timeout(),
            max_connections: default_max_connections(),
            worker_threads: None,
        }
    }
}

/// Why the back office could not start or a command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The data directory is not initialised.
    #[error(
        "{0} is not an initialised back office: run `tessera backoffice init --data {0}` first"
    )]
    NotInitialised(String),
    /// Already initialised.
    #[error("{0} already holds a back office (keys/producer.key exists); use another --data, or serve this one")]
    AlreadyInitialised(String),
    /// A file could not be read or written.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What happened.
        detail: String,
    },
    /// The configuration is wrong.
    #[error("{path}: {detail}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tessera_store::StoreError),
    /// A service operation failed.
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    /// The listener failed.
    #[error("cannot listen on {addr}: {detail}")]
    Listen {
        /// The address.
        addr: String,
        /// What happened.
        detail: String,
    },
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Writes a file atomically with `mode`.
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), DaemonError> {
    tessera_host::write_atomic(path, content, mode).map_err(|e| file_err(path, e))
}

fn read(path: &Path) -> Result<String, DaemonError> {
    fs::read_to_string(path).map_err(|e| file_err(path, e))
}

/// Reads `DATA/backoffice.toml` (defaults when it is missing).
pub fn load_config(data: &Path) -> Result<Config, DaemonError> {
    let path = data.join("backoffice.toml");
    if !path.exists() {
        return Ok(Config::default());
    }
    let text = read(&path)?;
    let config: Config = toml::from_str(&text).map_err(|e| DaemonError::Config {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    for (name, value, max) in [
        (
            "request_timeout_seconds",
            config.request_timeout_seconds,
            3600,
        ),
        ("max_connections", config.max_connections, 1_000_000),
        (
            "worker_threads",
            config.worker_threads.unwrap_or(1),
            tessera_service::serve::MAX_WORKER_THREADS,
        ),
    ] {
        if value == 0 || value > max {
            return Err(DaemonError::Config {
                path: path.display().to_string(),
                detail: format!("`{name}` must be between 1 and {max}"),
            });
        }
    }
    Ok(config)
}

/// What `init` made.
#[derive(Debug)]
pub struct InitReport {
    /// The admin user's name.
    pub admin_user: String,
    /// Its password: shown once.
    pub admin_password: String,
    /// An API token for the admin: shown once.
    pub admin_token: String,
    /// The producer key id.
    pub kid: String,
    /// The database URL.
    pub database: String,
}

/// Creates a back office in `data`: keys, configuration, store, the first admin user.
///
/// `DATA/backoffice.toml` is written unless it exists already (the Debian package links it to
/// `/etc/tessera/backoffice.toml`): then it is kept, and `database` and `issuer` may only repeat
/// what it says.
pub async fn init(
    data: &Path,
    database: Option<&str>,
    issuer: Option<&str>,
    clock: &dyn Clock,
) -> Result<InitReport, DaemonError> {
    let keys_dir = data.join("keys");
    if keys_dir.join("producer.key").exists() {
        return Err(DaemonError::AlreadyInitialised(data.display().to_string()));
    }
    // private to the back office's user (0700), whatever the umask: the store and keys are inside
    tessera_host::private_dir(data).map_err(|e| file_err(data, e))?;
    tessera_host::private_dir(&keys_dir).map_err(|e| file_err(&keys_dir, e))?;
    let data = &data.canonicalize().map_err(|e| file_err(data, e))?;
    let keys_dir = data.join("keys");
    let config_path = data.join("backoffice.toml");
    // a configuration laid out beforehand (the Debian package links DATA/backoffice.toml to
    // /etc/tessera/backoffice.toml), or written by an init that failed later, is kept
    let existing = config_path.exists();
    let mut config = if existing {
        load_config(data)?
    } else {
        Config::default()
    };
    for (key, given, set) in [
        ("database", database, config.database.as_deref()),
        ("issuer", issuer, Some(config.issuer.as_str())),
    ] {
        if existing && given.is_some() && given != set {
            return Err(DaemonError::Config {
                path: config_path.display().to_string(),
                detail: format!(
                    "the file exists already and says otherwise: set `{key}` there instead of passing --{key}"
                ),
            });
        }
    }
    if let Some(db) = database {
        config.database = Some(db.to_string());
    }
    if let Some(i) = issuer {
        config.issuer = i.to_string();
    }
    let url = database_url(data, &config);
    let store = tessera_store::open(&url).await?;

    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let unlock = UnlockSecretKey::generate(&mut rand::rngs::OsRng);
    let pem = signing.to_pkcs8_pem().map_err(|e| file_err(&keys_dir, e))?;
    let pub_pem = signing
        .public()
        .to_spki_pem()
        .map_err(|e| file_err(&keys_dir, e))?;
    write_file(
        &keys_dir.join("unlock.key"),
        unlock.to_pem().as_bytes(),
        0o600,
    )?;
    write_file(
        &keys_dir.join("unlock.pub"),
        unlock.public().to_pem().as_bytes(),
        0o644,
    )?;
    write_file(&keys_dir.join("producer.pub"), pub_pem.as_bytes(), 0o644)?;
    let mut toml_text = format!(
        "# Tessera back office configuration. Unknown keys are errors.\nlisten = \"{}\"\nissuer = \"{}\"\npublic_requests_per_minute = {}\nlog = \"info\"\n",
        config.listen,
        config.issuer.replace('"', "'"),
        config.public_requests_per_minute
    );
    if let Some(db) = &config.database {
        toml_text.push_str(&format!("database = \"{}\"\n", db.replace('"', "")));
    }
    toml_text.push_str("# [tls]\n# cert = \"/path/to/cert.pem\"\n# key = \"/path/to/key.pem\"\n");
    if !existing {
        // 0600: it may hold a database URL with a password, and SMTP credentials
        write_file(&data.join("backoffice.toml"), toml_text.as_bytes(), 0o600)?;
    }

    let now = clock.now();
    store
        .put_public_key(PublicKeyRecord {
            kid: signing.kid().to_string(),
            public_pem: pub_pem,
            created_at: now,
            retired_at: None,
        })
        .await?;
    let password = auth::random_password();
    auth::create_user(&store, "admin", &password, now).await?;
    let token = auth::create_token(&store, "admin", "init", None, now).await?;
    // the private key last: its presence marks an initialised back office
    write_file(&keys_dir.join("producer.key"), pem.as_bytes(), 0o600)?;
    Ok(InitReport {
        admin_user: "admin".into(),
        admin_password: password,
        admin_token: token,
        kid: signing.kid().to_string(),
        database: url,
    })
}

fn database_url(data: &Path, config: &Config) -> String {
    config
        .database
        .clone()
        .unwrap_or_else(|| tessera_store::sqlite_url_for_data_dir(data))
}

/// Opens an initialised back office: configuration, keys, store.
pub async fn open(
    data: &Path,
    database: Option<&str>,
    clock: Arc<dyn Clock>,
) -> Result<(BackOffice<AnyStore>, Config), DaemonError> {
    let keys_dir = data.join("keys");
    let key_path = keys_dir.join("producer.key");
    if !key_path.exists() {
        return Err(DaemonError::NotInitialised(data.display().to_string()));
    }
    let data = &data.canonicalize().map_err(|e| file_err(data, e))?;
    // a data directory made by an older version, or loosened since: private again
    for dir in [data.clone(), data.join("keys")] {
        tessera_host::private_dir(&dir).map_err(|e| file_err(&dir, e))?;
    }
    for key in ["producer.key", "unlock.key"] {
        let p = data.join("keys").join(key);
        tessera_host::private_file(&p).map_err(|e| file_err(&p, e))?;
    }
    let mut config = load_config(data)?;
    if let Some(db) = database {
        config.database = Some(db.to_string());
    }
    let signing =
        SigningKey::from_pkcs8_pem(&read(&key_path)?).map_err(|e| file_err(&key_path, e))?;
    let unlock_path = keys_dir.join("unlock.key");
    let unlock =
        UnlockSecretKey::from_pem(&read(&unlock_path)?).map_err(|e| file_err(&unlock_path, e))?;
    let store = tessera_store::open(&database_url(data, &config)).await?;
    let mut bo = BackOffice::new(
        store.clone(),
        clock,
        Arc::new(ProducerKeys { signing, unlock }),
        config.issuer.clone(),
    );
    if config.mail.is_some() || config.webhook.is_some() {
        let outbox =
            Outbox::new(store, config.mail.clone(), config.webhook.clone()).map_err(|e| {
                DaemonError::Config {
                    path: data.join("backoffice.toml").display().to_string(),
                    detail: e.to_string(),
                }
            })?;
        bo = bo.with_outbox(Arc::new(outbox), config.notify_email.clone());
    }
    Ok((bo, config))
}

/// The producer's public key from a data directory (for tests and tools).
pub fn public_key(data: &Path) -> Result<PublicKey, DaemonError> {
    let p = data.join("keys").join("producer.pub");
    PublicKey::from_spki_pem(&read(&p)?).map_err(|e| file_err(&p, e))
}

/// The HTTP state for a back office.
pub fn state(bo: BackOffice<AnyStore>, config: &Config) -> http::Shared {
    Arc::new(AppState {
        bo,
        limiter: RateLimiter::new(config.public_requests_per_minute),
        metrics: tessera_service::metrics::HttpMetrics::new(),
        hashing: crate::auth::HashGate::default(),
        logins: crate::auth::LoginThrottle::default(),
    })
}

/// Serves on an already bound listener until `shutdown` resolves (tests bind port 0), within
/// `limits` (from [`Config::limits`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: http::Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        state,
        None,
        tessera_service::serve::Limits::default(),
        shutdown,
    )
    .await
}

/// Serves on an already bound listener (HTTPS with `tls`) within `limits` until `shutdown`
/// resolves.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: http::Shared,
    tls: Option<&TlsConfig>,
    limits: tessera_service::serve::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(|t| tessera_service::serve::TlsFiles {
        cert: &t.cert,
        key: &t.key,
    });
    tessera_service::serve::serve(listener, http::router(state), tls, limits, shutdown).await
}

/// Serves with TLS on `addr` until `shutdown` resolves.
pub async fn serve_tls(
    addr: SocketAddr,
    tls: &TlsConfig,
    state: http::Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Listen {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
    serve_with(
        listener,
        state,
        Some(tls),
        tessera_service::serve::Limits::default(),
        shutdown,
    )
    .await
    .map_err(|e| DaemonError::Config {
        path: tls.cert.display().to_string(),
        detail: e.to_string(),
    })
}

/// Starts the outbox worker when mail or webhooks are configured; send `true` (or drop the
/// sender) to stop it.
pub fn start_outbox_worker(
    state: &http::Shared,
    clock: Arc<dyn Clock>,
) -> Option<(
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
)> {
    let outbox = state.bo.outbox()?.clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = crate::outbox::spawn_worker(outbox, clock, crate::outbox::DEFAULT_INTERVAL, rx);
    Some((handle, tx))
}
