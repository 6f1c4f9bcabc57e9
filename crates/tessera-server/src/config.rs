//! The server's configuration, `DATA/server.toml`: what it says, its defaults, and how it is read
//! and checked. Unknown keys are errors.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_core::HostId;

use crate::error::{file_err, ServerError};

/// Default listen address: every interface, port 7070.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7070";

/// `DATA/server.toml`. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Database URL; SQLite in the data directory when absent.
    #[serde(default)]
    pub database: Option<String>,
    /// The host id this server is known by (default: this machine's machine id, or first id).
    /// Set it only to move a server deliberately; a copy of the storage on another host id is
    /// refused.
    #[serde(default)]
    pub hostid: Option<String>,
    /// Lease length in seconds (default 300).
    #[serde(default = "default_lease")]
    pub lease_seconds: u32,
    /// Longest borrow in days. Default: the producer's offline policy carried by the license
    /// bundle (`offline_max_days`, 30 unless the producer set another), else 7.
    #[serde(default)]
    pub max_borrow_days: Option<u32>,
    /// Most seats one device and user may have borrowed at once. Default: the producer's policy
    /// (`offline_max_active`, 3), else 3.
    #[serde(default)]
    pub max_borrows_per_account: Option<u32>,
    /// Where the second copy of the anchor lives (default `~/.local/state/tessera`).
    #[serde(default)]
    pub anchor_dir: Option<PathBuf>,
    /// Log filter.
    #[serde(default = "default_log")]
    pub log: String,
    /// Hour of the day (0–23, the machine's local time: `TZ`, else `/etc/localtime`) of the daily
    /// sync with the back office (renewal and usage report); default 0, local midnight.
    #[serde(default)]
    pub sync_hour: u8,
    /// The same in UTC instead; overrides `sync_hour`.
    #[serde(default)]
    pub sync_hour_utc: Option<u8>,
    /// TLS certificate chain (PEM) for HTTPS, with `tls_key` (`--tls-cert` overrides).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert` (`--tls-key` overrides).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// A file to append the log to (default: standard error).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// Several server processes share this PostgreSQL database and serve one pool (each with
    /// its own copy of this data directory and the same `hostid`). Default false: one process per
    /// database, enforced.
    #[serde(default)]
    pub cluster: bool,
    /// Seconds a client has to send a request's headers (also how long an idle connection stays
    /// open), and then its body (default 30). A client that does not is disconnected.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u32,
    /// Connections served at once (default 1024); more are closed until some end.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Threads that serve requests (1 to 1024; default: one per CPU core the system gives this
    /// process). The seat book's writer has a thread of its own besides.
    #[serde(default)]
    pub worker_threads: Option<u32>,
    /// Capability requests a minute one client address may make, in bursts of as many (default
    /// 1200; 0: no limit). More are answered 429 `rate_limited` with `Retry-After`. Clients
    /// behind one NAT share an address: raise it for large sites.
    #[serde(default = "default_capability_rate")]
    pub capability_requests_per_minute: u32,
    /// Whether that limit applies to clients on this machine (loopback) too. Default false: a
    /// reverse proxy on this machine, or a load test, is not limited here.
    #[serde(default)]
    pub rate_limit_loopback: bool,
    /// Most leases one device may hold at once (default 1000): an uncounted feature grants as
    /// many as asked for, so this bounds what one client can make the server keep.
    #[serde(default = "default_max_leases_per_device")]
    pub max_leases_per_device: u32,
    /// Days the denials and overdraft use recorded are kept for the denial report (default 30,
    /// 1 to 36500); older ones are pruned by the server's scheduled work.
    #[serde(default = "default_usage_event_retention_days")]
    pub usage_event_retention_days: u32,
    /// Failed logins one account may have in an hour (default 100): the budget refills evenly
    /// over the hour; beyond it logins to the account are answered 429 `login_throttled` with
    /// `Retry-After`, before any password is checked.
    #[serde(default = "default_login_failures")]
    pub login_failures_per_hour: u32,
    /// Logins (right or wrong) one client address may try a minute, in bursts of as many
    /// (default 10): the back-off per address.
    #[serde(default = "default_login_address")]
    pub login_attempts_per_minute: u32,
    /// Minutes without a request after which a browser session ends (default 30).
    #[serde(default = "default_session_idle")]
    pub session_idle_minutes: u32,
    /// Hours after the login at which a browser session ends however busy (default 12).
    #[serde(default = "default_session_hours")]
    pub session_max_hours: u32,
    /// Days the audit log keeps an entry (default 365).
    #[serde(default = "default_audit_days")]
    pub audit_retention_days: u32,
    /// Most entries the audit log keeps; the oldest go first (default 100000).
    #[serde(default = "default_audit_entries")]
    pub audit_max_entries: u32,
    /// Whether every capability request must be signed by a registered client key (header
    /// `Tessera-Signature`, docs/protocol.md); unsigned or badly signed ones are refused (401
    /// `signature_required`, `signature_invalid`; 403 `unknown_client_key`). Default false.
    #[serde(default)]
    pub require_signed_requests: bool,
    /// How far a signed request's `created` time may be from this server's clock, in seconds
    /// (default 300): how long a captured signed request can be replayed.
    #[serde(default = "default_signed_request_skew")]
    pub signed_request_max_skew_seconds: u32,
    /// The License Server Manager's branding (`[manager]`): the product's name, logo and menu
    /// labels.
    #[serde(default)]
    pub manager: ManagerConfig,
}

/// `[manager]` in server.toml: how the License Server Manager (the browser UI at `/`) presents
/// the producer's product. Every key is optional.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// The product's name in every page's header and title (default `Tessera License Server`).
    #[serde(default = "default_product_name")]
    pub product_name: String,
    /// A logo file (PNG, SVG, JPEG or WebP, at most 256 KiB) shown in the header; Tessera's
    /// otherwise. A relative path is read from the data directory.
    #[serde(default)]
    pub logo: Option<PathBuf>,
    /// Menu labels by entry (`features = "Licences"`, `"Seat policy" = "Sharing"`): the entries
    /// are listed in docs/manager.md.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            product_name: default_product_name(),
            logo: None,
            labels: Default::default(),
        }
    }
}

fn default_product_name() -> String {
    "Tessera License Server".into()
}

fn default_signed_request_skew() -> u32 {
    300
}

fn default_login_failures() -> u32 {
    100
}
fn default_login_address() -> u32 {
    10
}
fn default_session_idle() -> u32 {
    30
}
fn default_session_hours() -> u32 {
    12
}
fn default_audit_days() -> u32 {
    365
}
fn default_audit_entries() -> u32 {
    100_000
}

fn default_request_timeout() -> u32 {
    tessera_host::serve::DEFAULT_REQUEST_TIMEOUT_SECONDS
}
fn default_max_connections() -> u32 {
    tessera_host::serve::DEFAULT_MAX_CONNECTIONS
}
fn default_capability_rate() -> u32 {
    1200
}
fn default_max_leases_per_device() -> u32 {
    crate::engine::DEFAULT_MAX_LEASES_PER_DEVICE
}
/// Default `usage_event_retention_days`.
pub const DEFAULT_USAGE_EVENT_RETENTION_DAYS: u32 = 30;
fn default_usage_event_retention_days() -> u32 {
    DEFAULT_USAGE_EVENT_RETENTION_DAYS
}

impl Config {
    /// The limits the server applies to its clients' connections.
    pub fn limits(&self) -> tessera_host::serve::Limits {
        tessera_host::serve::Limits::new(self.request_timeout_seconds, self.max_connections)
    }

    /// How many threads serve requests: `worker_threads`, else one per CPU core (see
    /// [`tessera_host::serve::worker_threads`]).
    pub fn worker_threads(&self) -> usize {
        tessera_host::serve::worker_threads(self.worker_threads)
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_lease() -> u32 {
    300
}
fn default_log() -> String {
    "info".into()
}

/// Reads `DATA/server.toml`.
pub fn load_config(data: &Path) -> Result<Config, ServerError> {
    let p = data.join("server.toml");
    let text = fs::read_to_string(&p).map_err(|e| file_err(&p, e))?;
    parse_config(&text, &p)
}

/// Reads and checks the text of a `server.toml` (`p` names it in errors).
pub fn parse_config(text: &str, p: &Path) -> Result<Config, ServerError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
    for (name, value, max) in [
        (
            "request_timeout_seconds",
            config.request_timeout_seconds,
            3600,
        ),
        ("max_connections", config.max_connections, 1_000_000),
        (
            "max_leases_per_device",
            config.max_leases_per_device,
            1_000_000,
        ),
        (
            "usage_event_retention_days",
            config.usage_event_retention_days,
            36_500,
        ),
        (
            "login_failures_per_hour",
            config.login_failures_per_hour,
            100_000,
        ),
        (
            "login_attempts_per_minute",
            config.login_attempts_per_minute,
            100_000,
        ),
        ("session_idle_minutes", config.session_idle_minutes, 24 * 60),
        ("session_max_hours", config.session_max_hours, 24 * 30),
        ("audit_retention_days", config.audit_retention_days, 36_500),
        ("audit_max_entries", config.audit_max_entries, 100_000_000),
        (
            "worker_threads",
            config.worker_threads.unwrap_or(1),
            tessera_host::serve::MAX_WORKER_THREADS,
        ),
    ] {
        if value == 0 || value > max {
            return Err(ServerError::Config(format!(
                "{}: `{name}` must be between 1 and {max}",
                p.display()
            )));
        }
    }
    for (name, hour) in [
        ("sync_hour", Some(config.sync_hour)),
        ("sync_hour_utc", config.sync_hour_utc),
    ] {
        if hour.is_some_and(|h| h > 23) {
            return Err(ServerError::Config(format!(
                "{}: `{name}` is an hour of the day, 0 to 23",
                p.display()
            )));
        }
    }
    Ok(config)
}

/// The store's URL: `database`, else SQLite in the data directory.
pub(crate) fn database_url(data: &Path, c: &Config) -> String {
    c.database
        .clone()
        .unwrap_or_else(|| tessera_store::sqlite_url_for_data_dir(data))
}

/// This server's host id: the configured one, else this machine's machine id (or first id).
pub fn server_hostid(c: &Config) -> Result<HostId, ServerError> {
    if let Some(h) = &c.hostid {
        return h
            .parse()
            .map_err(|e| ServerError::Config(format!("hostid: {e}")));
    }
    let id = tessera_host::this_machine().identify();
    id.pc_id_source()
        .cloned()
        .or_else(|| id.machine_ids().next().cloned())
        .ok_or_else(|| {
            ServerError::Config("this machine has no host id: set `hostid` in server.toml".into())
        })
}
