//! The license server's data directory, trusted storage, activation and serving.
//!
//! ```text
//! DATA/server.toml       configuration (listen, database, hostid override, lease length)
//! DATA/keys/server.key   the server's Ed25519 key (0600); the producer certifies its public key
//! DATA/producer.pub      the producer's public key, trusted for licenses and certificates
//! DATA/anchor            a copy of the storage anchor (another copy lives outside DATA)
//! DATA/tessera.db        the store (SQLite unless `database` names PostgreSQL)
//! ```
//!
//! **Trusted storage.** The store records the host id it belongs to and the licenses activated
//! into it. At start the server refuses to serve when the host id differs (the storage was copied
//! to another machine) or when the store's anchor is behind a copy kept outside it (an older copy
//! was restored over a newer one): serving then could double seats.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::feature::Feature;
use tessera_core::offline::encode_key;
use tessera_core::{Clock, HostId, Keyring, License, PublicKey, SigningKey};
use tessera_store::{AnyStore, MetaStore};

use tessera_wire::activation::{ActivationResult, ServerActivationRequest, UsageOutcome};
use tessera_wire::ErrorAnswer;

use crate::engine::{Engine, LeasePolicy};

/// Default listen address: every interface, port 7070.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7070";

/// `DATA/server.toml`. Unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
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

impl Config {
    /// The limits the server applies to its clients' connections.
    pub fn limits(&self) -> tessera_host::serve::Limits {
        tessera_host::serve::Limits::new(self.request_timeout_seconds, self.max_connections)
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

/// Why the server cannot start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Not initialised.
    #[error("{0} is not a license server data directory: run `tessera server init --data {0} --producer-key producer.pub` first")]
    NotInitialised(String),
    /// Already initialised.
    #[error("{0} already holds a license server")]
    AlreadyInitialised(String),
    /// The storage belongs to another host.
    #[error("this storage belongs to license server {stored}, but this server is {current}: it was copied from another server. Refusing to serve (it could double seats). Activate this server afresh with its own data directory")]
    CopiedStorage {
        /// The host id in the storage.
        stored: String,
        /// This server's host id.
        current: String,
    },
    /// An older copy of the storage was restored.
    #[error("the storage is older than the last one this server used (its mark is {stored}, the server had reached {seen}): an older copy was restored. Refusing to serve (leases granted since could be granted twice). Restore the latest copy, or remove {marker} (and DATA/anchor) to accept this one and re-validate with the back office (`tessera server sync`)")]
    RestoredOlderCopy {
        /// Anchor and commit sequence in the store (`ANCHOR.SEQUENCE`).
        stored: String,
        /// The mark seen before.
        seen: String,
        /// The anchor file.
        marker: String,
    },
    /// The storage is bound to another machine: it was copied or restored there.
    #[error("this license server's storage is bound to the machine with host ids {bound}, but this machine is {current}: it was copied or restored onto another machine. Refusing to serve (both copies could grant the same seats). If this machine replaces that one, re-validate with the back office: `tessera server rebind --data {data}` (online), or `tessera server rebind --data {data} --response FILE` with a fresh offline response")]
    OtherMachine {
        /// The host ids the storage is bound to.
        bound: String,
        /// This machine's host ids.
        current: String,
        /// The data directory.
        data: String,
    },
    /// The store was changed by hand: its license bundle or its leases no longer verify.
    #[error("{0}")]
    EditedStorage(String),
    /// A file problem.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What happened.
        detail: String,
    },
    /// The configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tessera_store::StoreError),
    /// The back office refused or could not be reached.
    #[error("{0}")]
    BackOffice(String),
}

fn file_err(p: &Path, e: impl std::fmt::Display) -> ServerError {
    ServerError::File {
        path: p.display().to_string(),
        detail: e.to_string(),
    }
}

fn write(p: &Path, content: &[u8], mode: u32) -> Result<(), ServerError> {
    tessera_host::write_atomic(p, content, mode).map_err(|e| file_err(p, e))
}

/// Reads `DATA/server.toml`.
pub fn load_config(data: &Path) -> Result<Config, ServerError> {
    let p = data.join("server.toml");
    let text = fs::read_to_string(&p).map_err(|e| file_err(&p, e))?;
    let config: Config =
        toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?;
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

/// Creates a license server in `data` trusting `producer_pem`; returns the admin token (shown once).
pub async fn init(
    data: &Path,
    producer_pem: &str,
    database: Option<&str>,
    hostid: Option<&str>,
) -> Result<String, ServerError> {
    if data.join("keys/server.key").exists() {
        return Err(ServerError::AlreadyInitialised(data.display().to_string()));
    }
    PublicKey::from_spki_pem(producer_pem)
        .map_err(|e| ServerError::Config(format!("the producer key: {e}")))?;
    // private to the server's user (0700), whatever the umask: the store and the key are inside
    tessera_host::private_dir(data).map_err(|e| file_err(data, e))?;
    tessera_host::private_dir(&data.join("keys")).map_err(|e| file_err(data, e))?;
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let mut toml_text = "# Tessera license server. Unknown keys are errors.\nlisten = \"0.0.0.0:7070\"\nlease_seconds = 300\n# max_borrow_days = 7            (default: the producer's offline policy, 30 days)\n# max_borrows_per_account = 3   (default: the producer's offline policy, 3)\nlog = \"info\"\n# log_file = \"server.log\"        (default: standard error; relative to this directory)\n# cluster = false               (true: several processes share one PostgreSQL database; same hostid on each)\n# request_timeout_seconds = 30  (headers, then body; slower clients are disconnected)\n# max_connections = 1024\n# capability_requests_per_minute = 1200   (per client address; 0: no limit; loopback exempt unless rate_limit_loopback = true)\n# max_leases_per_device = 1000\n".to_string();
    if let Some(db) = database {
        toml_text.push_str(&format!("database = \"{}\"\n", db.replace('"', "")));
    }
    if let Some(h) = hostid {
        let h: HostId = h
            .parse()
            .map_err(|e| ServerError::Config(format!("hostid: {e}")))?;
        toml_text.push_str(&format!("hostid = \"{h}\"\n"));
    }
    write(&data.join("server.toml"), toml_text.as_bytes(), 0o600)?;
    write(&data.join("producer.pub"), producer_pem.as_bytes(), 0o644)?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    let host = server_hostid(&config)?;
    store
        .put_setting("server.hostid", &host.to_string())
        .await?;
    let token = new_admin_token(&store).await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    write(&data.join("keys/server.key"), pem.as_bytes(), 0o600)?;
    Ok(token)
}

/// The setting that holds the SHA-256 (hex) of the admin token. The running server reads it at
/// every admin request, so a rotation takes effect at once, on every member of a cluster.
pub const ADMIN_TOKEN_SETTING: &str = "server.admin_token_sha256";

/// Makes a new admin token and stores its hash (replacing the old one); returns the token.
async fn new_admin_token(store: &AnyStore) -> Result<String, ServerError> {
    let mut token_bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut token_bytes);
    let token = format!("tss_{}", hex::encode(token_bytes));
    store
        .put_setting(ADMIN_TOKEN_SETTING, &admin_token_hash(&token))
        .await?;
    Ok(token)
}

/// The SHA-256 (hex) of an admin token, as the store keeps it.
pub fn admin_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Replaces the admin token of the server in `data` with a new one, returned (show it once): the
/// old token stops working at once, also on a server that is running (it reads the token's hash
/// from the store at each admin request). Needs only the data directory (its configuration and
/// store), not the old token, so it is also the way back in when the token is lost.
pub async fn rotate_admin_token(data: &Path) -> Result<String, ServerError> {
    if !data.join("keys/server.key").exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    new_admin_token(&store).await
}

fn database_url(data: &Path, c: &Config) -> String {
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

/// The server certificate as received from the back office, and as the JSON string that every
/// signed answer carries (escaped once, not once per answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCertificate {
    /// The armoured certificate.
    pub text: Arc<str>,
    /// `text` as a JSON string literal, quotes included.
    pub json: Arc<str>,
}

impl ServedCertificate {
    /// Wraps an armoured certificate.
    pub fn new(text: String) -> ServedCertificate {
        let json = serde_json::Value::String(text.clone()).to_string();
        ServedCertificate {
            text: text.into(),
            json: json.into(),
        }
    }
}

/// The setting in which the members of a cluster claim the day's scheduled sync (unix seconds).
const SCHEDULED_SYNC_SETTING: &str = "server.scheduled_sync_claimed_at";
/// The setting in which they record that it was done (unix seconds).
const SCHEDULED_SYNC_DONE_SETTING: &str = "server.scheduled_sync_done_at";

/// An opened license server: everything `serve` needs.
#[derive(Debug)]
pub struct Server {
    /// Configuration.
    pub config: Config,
    /// The store.
    pub store: AnyStore,
    /// The engine.
    pub engine: Engine,
    /// This server's host id.
    pub hostid: HostId,
    /// The server's key.
    pub key: SigningKey,
    /// The producer's key.
    pub producer: PublicKey,
    /// The certificate from the back office, once activated.
    pub certificate: tokio::sync::RwLock<Option<ServedCertificate>>,
    /// The data directory.
    pub data: PathBuf,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The license bundle served (to notice one another cluster member installed).
    installed: tokio::sync::Mutex<Option<String>>,
    /// Keeps other server processes off this data directory and database while this one runs.
    _lock: (fs::File, tessera_store::ExclusiveGuard),
}

/// The private state directory that holds the outside copy of the anchor: `anchor_dir`, else
/// `$XDG_STATE_HOME/tessera`, else `$HOME/.local/state/tessera`. Never a shared directory such as
/// /tmp, where another local user could plant or delete the copy.
fn anchor_dir(c: &Config) -> Result<PathBuf, ServerError> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    c.anchor_dir
        .clone()
        .or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .and_then(absolute)
                .map(|p| p.join("tessera"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|p| p.join(".local/state/tessera"))
        })
        .ok_or_else(|| {
            ServerError::Config(
                "no private directory for the outside copy of the storage anchor: neither HOME nor XDG_STATE_HOME is set. Set `anchor_dir = \"/var/lib/tessera-anchor\"` (a directory only the server's user can write) in server.toml, or run the server with HOME set".into(),
            )
        })
}

/// Makes `dir` (and its parents) if missing, and makes sure that only this user can use it: a
/// directory (not a link) owned by this user, mode 0700 (tightened if it is ours and looser).
pub fn private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|e| file_err(parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(file_err(dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| file_err(dir, e))?;
    let refuse = |why: &str| {
        Err(file_err(
            dir,
            format!("{why}: the storage anchor must live in a directory only the server's user can change. Remove it, or set `anchor_dir` in server.toml to another directory"),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory (or a symbolic link)");
    }
    // the process's own user: the owner of /proc/self
    if let Ok(me) = fs::metadata("/proc/self").map(|m| m.uid()) {
        if meta.uid() != me {
            return refuse(&format!(
                "owned by user {} (this server runs as user {me})",
                meta.uid()
            ));
        }
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

fn anchor_files(data: &Path, c: &Config, host: &HostId) -> Result<Vec<PathBuf>, ServerError> {
    let outside = anchor_dir(c)?;
    private_dir(&outside)?;
    let tag = hex::encode(&Sha256::digest(format!("{}|{host}", data.display()).as_bytes())[..8]);
    Ok(vec![
        data.join("anchor"),
        outside.join(format!("anchor-{tag}")),
    ])
}

/// The storage's machine binding: the setting holding the host ids (one a line) of the machines
/// allowed to serve this storage.
const MACHINE_SETTING: &str = "server.machine_ids";

/// The host ids this machine proves (machine id, network cards, VM UUID): what the storage is
/// bound to. User names and containers never count (a container id changes whenever the
/// container is made again, on the same machine).
fn proven_ids() -> Vec<String> {
    tessera_host::this_machine()
        .identify()
        .machine_ids()
        .filter(|id| id.kind() != tessera_core::HostIdKind::Container)
        .map(ToString::to_string)
        .collect()
}

/// The producer's offline policy as the administrator may narrow it: each of `max_borrow_days`
/// and `max_borrows_per_account` in server.toml is taken only when it is lower than the producer's
/// (from the license bundle, else the defaults, 7 days and 3 seats); a higher one is ignored with a
/// warning. Returns (days, seats per account).
pub fn borrow_limits(config: &Config, producer: Option<(u32, u32)>) -> (u32, u32) {
    let (days, seats) = producer.unwrap_or((7, 3));
    let narrow = |mine: Option<u32>, theirs: u32, what: &str| match mine {
        Some(m) if m > theirs => {
            tracing::warn!(
                "server.toml sets {what} = {m}, above the producer's {theirs}: the administrator may only lower it; using {theirs}"
            );
            theirs
        }
        Some(m) => m,
        None => theirs,
    };
    (
        narrow(config.max_borrow_days, days, "max_borrow_days"),
        narrow(
            config.max_borrows_per_account,
            seats,
            "max_borrows_per_account",
        ),
    )
}

/// The feature records of the stored license bundle, if it verifies for this server now.
fn bundle_records(
    text: Option<&str>,
    producer: &PublicKey,
    host: &HostId,
    now: tessera_core::time::OffsetDateTime,
) -> Vec<Feature> {
    text.and_then(|t| {
        License::verify(
            t,
            &Keyring::with(producer.clone()),
            now,
            std::slice::from_ref(host),
        )
        .ok()
    })
    .map(|l| l.features().to_vec())
    .unwrap_or_default()
}

/// Sets the engine's borrow limits: the administrator's, else the producer's offline policy from
/// the bundle.
fn apply_borrow_policy(
    engine: &Engine,
    config: &Config,
    license: Option<&str>,
    producer: &PublicKey,
    host: &HostId,
    now: tessera_core::time::OffsetDateTime,
) {
    let policy = license
        .and_then(|t| {
            License::verify(
                t,
                &Keyring::with(producer.clone()),
                now,
                std::slice::from_ref(host),
            )
            .ok()
        })
        .and_then(|l| l.claims().policy.clone());
    let (days, active) = borrow_limits(
        config,
        policy.map(|p| (p.offline_max_days, p.offline_max_active)),
    );
    engine.set_borrow_limits(days, active);
}

/// Opens the server: configuration, keys, trusted-storage checks, the seat book.
pub async fn open(data: &Path, clock: Arc<dyn Clock>) -> Result<Server, ServerError> {
    open_as(data, clock, false).await
}

/// Opens the server for `tessera server rebind`: as [`open`], but storage bound to other machines
/// is opened too, so that a re-validation with the back office ([`Server::sync`] or
/// [`Server::offline_apply`]) can be made before [`Server::bind_to_this_machine`].
pub async fn open_for_rebind(data: &Path, clock: Arc<dyn Clock>) -> Result<Server, ServerError> {
    open_as(data, clock, true).await
}

async fn open_as(data: &Path, clock: Arc<dyn Clock>, rebind: bool) -> Result<Server, ServerError> {
    let key_path = data.join("keys/server.key");
    if !key_path.exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    // a data directory made by an older version, or loosened since: private again
    for dir in [data.clone(), data.join("keys")] {
        tessera_host::private_dir(&dir).map_err(|e| file_err(&dir, e))?;
    }
    tessera_host::private_file(&key_path).map_err(|e| file_err(&key_path, e))?;
    let config = load_config(&data)?;
    let key = SigningKey::from_pkcs8_pem(
        &fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?,
    )
    .map_err(|e| file_err(&key_path, e))?;
    let pp = data.join("producer.pub");
    let producer =
        PublicKey::from_spki_pem(&fs::read_to_string(&pp).map_err(|e| file_err(&pp, e))?)
            .map_err(|e| file_err(&pp, e))?;
    // one server process per data directory and per database: two would each keep their own seat
    // book and could grant more seats than the count together
    let lock_file = lock_data_dir(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    if config.cluster && config.hostid.is_none() {
        return Err(ServerError::Config(format!(
            "{}: `cluster = true` needs `hostid` set, to the same value on every member: a cluster is one license server to the back office and to clients",
            data.join("server.toml").display()
        )));
    }
    let guard = if config.cluster {
        store.shared("tessera-license-server").await?.ok_or_else(|| {
            ServerError::Config(
                "a license server process without `cluster = true` serves this database: stop it, or set `cluster = true` (and the same `hostid`) in its server.toml too".into(),
            )
        })?
    } else {
        store.exclusive("tessera-license-server").await?.ok_or_else(|| {
            ServerError::Config(
                "another license server process serves this database: stop it first, or set `cluster = true` (and the same `hostid`) in the server.toml of every process sharing it".into(),
            )
        })?
    };
    let host = server_hostid(&config)?;
    // trusted storage: bound to this host id …
    match store.get_setting("server.hostid").await? {
        Some(stored) if stored != host.to_string() => {
            return Err(ServerError::CopiedStorage {
                stored,
                current: host.to_string(),
            })
        }
        Some(_) => {}
        None => {
            store
                .put_setting("server.hostid", &host.to_string())
                .await?
        }
    }
    // … to a machine that proves one of the host ids recorded (the `hostid` in server.toml is
    // only a name: a copy of the data directory carries it along) …
    let proven = proven_ids();
    let bound = store.get_setting(MACHINE_SETTING).await?;
    match bound.as_deref() {
        _ if rebind => {}
        None if proven.is_empty() => {
            return Err(ServerError::Config(
                "this machine shows no host id to bind the license server's storage to (no machine id, no network card, no VM UUID): give it a stable machine id (/etc/machine-id)".into(),
            ))
        }
        None => {
            store
                .put_setting(MACHINE_SETTING, &proven.join("\n"))
                .await?
        }
        Some(ids) => {
            if !ids.lines().any(|id| proven.iter().any(|p| p == id)) {
                return Err(ServerError::OtherMachine {
                    bound: ids.lines().collect::<Vec<_>>().join(", "),
                    current: proven.join(", "),
                    data: data.display().to_string(),
                });
            }
        }
    }
    // … and not older than what this server last used: the anchor (moved at each start) and the
    // sequence number of the last commit, against the marks kept beside and outside the store
    let files = anchor_files(&data, &config, &host)?;
    let stored = store.anchor().await?;
    let stored_seq = store
        .get_setting(tessera_store::LEASES_DIGEST_SETTING)
        .await?
        .map_or(0, |v| crate::engine::parse_digest_value(&v).seq);
    for f in &files {
        if let Some((seen, seen_seq)) = fs::read_to_string(f)
            .ok()
            .and_then(|t| crate::engine::HighWater::parse(&t))
        {
            if (stored, stored_seq) < (seen, seen_seq) {
                return Err(ServerError::RestoredOlderCopy {
                    stored: format!("{stored}.{stored_seq}"),
                    seen: format!("{seen}.{seen_seq}"),
                    marker: f.display().to_string(),
                });
            }
        }
    }
    let next = store.bump_anchor().await?;
    let mut marks = Vec::new();
    for f in &files {
        write(
            f,
            crate::engine::HighWater::format(next, stored_seq).as_bytes(),
            0o600,
        )?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(|e| file_err(f, e))?;
        marks.push((f.clone(), file));
    }
    let now = clock.now();
    let license = store.get_setting("server.license").await?;
    let certificate = store.get_setting("server.certificate").await?;
    // the bundle in the store must still be the one the producer signed for this server
    if let Some(text) = license.as_deref() {
        use tessera_core::VerifyError;
        match License::verify(
            text,
            &Keyring::with(producer.clone()),
            now,
            std::slice::from_ref(&host),
        ) {
            Ok(_) => {}
            Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => {
                tracing::warn!("the license bundle is not valid now: no seats until it is renewed (`tessera server sync`)");
            }
            Err(e) => {
                return Err(ServerError::EditedStorage(format!(
                    "the license bundle in the store does not verify ({e}): it was changed outside the license server. Restore the latest backup of the store, or install a fresh bundle from the back office (`tessera server activate` or `offline apply`) after removing the `server.license` setting"
                )))
            }
        }
    }
    let records = bundle_records(license.as_deref(), &producer, &host, now);
    let policy = LeasePolicy {
        lease: tessera_core::time::Duration::seconds(i64::from(
            config.lease_seconds.clamp(3, 86_400),
        )),
        max_borrow_days: config.max_borrow_days.unwrap_or(7).clamp(1, 3650),
        max_borrows_per_account: config
            .max_borrows_per_account
            .unwrap_or(3)
            .clamp(1, 100_000),
        max_leases_per_device: config.max_leases_per_device,
    };
    let engine = Engine::load(
        records,
        store.clone(),
        key.clone(),
        host.clone(),
        clock.clone(),
        policy,
        if config.cluster {
            crate::engine::Sharing::Cluster
        } else {
            crate::engine::Sharing::Alone(Some(crate::engine::HighWater {
                epoch: next,
                files: marks,
            }))
        },
    )
    .await
    .map_err(|e| match e {
        crate::engine::LoadError::Store(e) => ServerError::Store(e),
        e => ServerError::EditedStorage(e.to_string().replace("DIR", &data.display().to_string())),
    })?;
    apply_borrow_policy(&engine, &config, license.as_deref(), &producer, &host, now);
    Ok(Server {
        config,
        store,
        engine,
        hostid: host,
        key,
        producer,
        certificate: tokio::sync::RwLock::new(certificate.map(ServedCertificate::new)),
        data,
        clock,
        installed: tokio::sync::Mutex::new(license),
        _lock: (lock_file, guard),
    })
}

/// Takes the data directory's lock file: one server process per data directory.
fn lock_data_dir(data: &Path) -> Result<fs::File, ServerError> {
    let lock_path = data.join("server.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| file_err(&lock_path, e))?;
    if lock_file.try_lock().is_err() {
        return Err(ServerError::Config(format!(
            "another license server process is running on {}: stop it first",
            data.display()
        )));
    }
    Ok(lock_file)
}

/// Accepts the leases now in the store as they are (after they were changed by hand, or restored
/// from a backup): the next start serves them instead of refusing. Returns how many there are.
pub async fn accept_storage(data: &Path) -> Result<usize, ServerError> {
    if !data.join("keys/server.key").exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let _lock = lock_data_dir(&data)?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    let n = tessera_store::LeaseStore::load_leases(&store).await?.len();
    // no digest to check at the next start; the commit sequence (the restore detector) and the
    // lease counter stay
    let stored = store
        .get_setting(tessera_store::LEASES_DIGEST_SETTING)
        .await?
        .unwrap_or_default();
    let stored = crate::engine::parse_digest_value(&stored);
    store
        .put_setting(
            tessera_store::LEASES_DIGEST_SETTING,
            &crate::engine::digest_value("", stored.seq, stored.next_lease),
        )
        .await?;
    Ok(n)
}

impl Server {
    /// Binds the storage to this machine (after `tessera server rebind` re-validated it with the
    /// back office): in a cluster this machine is added to those bound, otherwise it replaces them.
    /// Returns the host ids now bound.
    pub async fn bind_to_this_machine(&self) -> Result<Vec<String>, ServerError> {
        let mut ids = proven_ids();
        if ids.is_empty() {
            return Err(ServerError::Config(
                "this machine shows no host id to bind the storage to (no machine id, no network card, no VM UUID)".into(),
            ));
        }
        if self.config.cluster {
            if let Some(old) = self.store.get_setting(MACHINE_SETTING).await? {
                for id in old.lines() {
                    if !ids.iter().any(|i| i == id) {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        self.store
            .put_setting(MACHINE_SETTING, &ids.join("\n"))
            .await?;
        Ok(ids)
    }

    /// Activates activation keys with counts at the back office, online; stores and serves the
    /// bundle it returns.
    pub async fn activate(
        &self,
        backoffice: &str,
        activations: &[(String, u32)],
    ) -> Result<usize, ServerError> {
        let body = ServerActivationRequest {
            server_hostid: self.hostid.clone(),
            server_key: encode_key(&self.key.public()),
            activations: activations
                .iter()
                .map(|(key, count)| tessera_core::offline::KeyCount {
                    key: key.clone(),
                    count: *count,
                })
                .collect(),
        };
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/activate/server",
                backoffice.trim_end_matches('/')
            ))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                ServerError::BackOffice(format!(
                    "cannot reach the back office at {backoffice}: {e}"
                ))
            })?;
        let answer: ActivationResult = backoffice_answer(resp, "the back office refused").await?;
        self.store
            .put_setting("server.backoffice_url", backoffice)
            .await?;
        self.install(
            &answer.license,
            answer.certificate.as_deref().unwrap_or_default(),
        )
        .await
    }

    /// Whether this process runs today's scheduled sync with the back office: a single server
    /// always; in a cluster (one server identity, several processes) only the member that claims
    /// the day first in the shared store, so the back office gets one usage report a day, not one
    /// per member. A claim holds for 12 hours. (A sync an administrator asks for always runs.)
    pub async fn claim_scheduled_sync(&self) -> Result<bool, ServerError> {
        if !self.engine.clustered() {
            return Ok(true);
        }
        let now = self.clock.now().unix_timestamp();
        Ok(self
            .store
            .claim_setting(SCHEDULED_SYNC_SETTING, now, now - 12 * 3600)
            .await?)
    }

    /// In a cluster, an hour after another member claimed the day's scheduled sync: whether this
    /// member runs it after all, because no member has reported it done (the one that claimed it
    /// stopped, or cannot reach the back office). Claims it if so, so only one member takes over.
    pub async fn take_over_scheduled_sync(&self) -> Result<bool, ServerError> {
        if !self.engine.clustered() {
            return Ok(false);
        }
        let now = self.clock.now().unix_timestamp();
        let done = self
            .store
            .get_setting(SCHEDULED_SYNC_DONE_SETTING)
            .await?
            .and_then(|v| v.trim().parse::<i64>().ok());
        if done.is_some_and(|d| d >= now - 12 * 3600) {
            return Ok(false);
        }
        Ok(self
            .store
            .claim_setting(SCHEDULED_SYNC_SETTING, now, now - 3600)
            .await?)
    }

    /// Records (in a cluster) that the day's scheduled sync succeeded.
    pub async fn note_scheduled_sync_done(&self) -> Result<(), ServerError> {
        if self.engine.clustered() {
            let now = self.clock.now().unix_timestamp();
            self.store
                .put_setting(SCHEDULED_SYNC_DONE_SETTING, &now.to_string())
                .await?;
        }
        Ok(())
    }

    /// Syncs with the back office now: sends a usage report signed with this server's key and
    /// installs the renewed bundle it answers with. Returns the features used over the entitlement.
    pub async fn sync(&self) -> Result<Vec<String>, ServerError> {
        let url = self
            .store
            .get_setting("server.backoffice_url")
            .await?
            .ok_or_else(|| {
                ServerError::BackOffice(
                    "this server was never activated online: activate it, or renew with offline files".into(),
                )
            })?;
        let certificate = self
            .certificate
            .read()
            .await
            .as_ref()
            .map(|c| c.text.to_string())
            .ok_or_else(|| ServerError::BackOffice("this server is not activated".into()))?;
        let now = self.clock.now();
        let usage = self.engine.report(false).await;
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let devices: std::collections::BTreeSet<String> = self
            .engine
            .leases()
            .await
            .into_iter()
            .map(|l| l.device)
            .collect();
        let report = tessera_core::usage::UsageReportClaims {
            jti: format!("usage-{}", hex::encode(id)),
            iat: now,
            server_hostid: self.hostid.clone(),
            certificate,
            period_start: now - tessera_core::time::Duration::days(1),
            period_end: now,
            features: usage
                .iter()
                .map(
                    |(f, peak, used, consumed, over)| tessera_core::usage::FeatureUsage {
                        name: f.name.clone(),
                        peak: u32::try_from(*peak).unwrap_or(u32::MAX),
                        in_use: u32::try_from(*used).unwrap_or(u32::MAX),
                        metered_units: *consumed,
                        overdraft_peak: u32::try_from(*over).unwrap_or(u32::MAX),
                    },
                )
                .collect(),
            devices: devices.into_iter().collect(),
            users: vec![],
        }
        .sign(&self.key)
        .map_err(|e| ServerError::Config(e.to_string()))?;
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/usage", url.trim_end_matches('/')))
            .body(report)
            .send()
            .await
            .map_err(|e| {
                ServerError::BackOffice(format!("cannot reach the back office at {url}: {e}"))
            })?;
        let outcome: UsageOutcome =
            backoffice_answer(resp, "the back office refused the sync").await?;
        let (license, certificate) = outcome.renewal.as_ref().map_or(("", ""), |r| {
            (
                r.license.as_str(),
                r.certificate.as_deref().unwrap_or_default(),
            )
        });
        self.install(license, certificate).await?;
        self.engine.report(true).await;
        Ok(outcome.over_use.into_iter().map(|o| o.feature).collect())
    }

    /// In a cluster: serves the bundle another member installed (an activation or a renewal), if
    /// there is a newer one in the shared store. Returns whether it changed.
    pub async fn refresh_from_store(&self) -> Result<bool, ServerError> {
        let license = self.store.get_setting("server.license").await?;
        let mut installed = self.installed.lock().await;
        if license.is_none() || license == *installed {
            return Ok(false);
        }
        let certificate = self.store.get_setting("server.certificate").await?;
        let now = self.clock.now();
        let records = bundle_records(license.as_deref(), &self.producer, &self.hostid, now);
        *self.certificate.write().await = certificate.map(ServedCertificate::new);
        self.engine.reload(records).await?;
        apply_borrow_policy(
            &self.engine,
            &self.config,
            license.as_deref(),
            &self.producer,
            &self.hostid,
            now,
        );
        *installed = license;
        Ok(true)
    }

    /// An offline activation request file for these keys and counts, signed with this server's key,
    /// for the back office's `/offline` page or `tessera backoffice offline respond`.
    pub fn offline_request(&self, activations: &[(String, u32)]) -> Result<String, ServerError> {
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        tessera_core::offline::RequestClaims {
            jti: format!("srv-{}", hex::encode(id)),
            iat: self.clock.now(),
            aud: self.producer.kid().to_string(),
            requester_key: String::new(),
            body: tessera_core::offline::RequestBody::ServerActivation {
                server_hostid: self.hostid.clone(),
                server_key: encode_key(&self.key.public()),
                activations: activations
                    .iter()
                    .map(|(k, n)| tessera_core::offline::KeyCount {
                        key: k.clone(),
                        count: *n,
                    })
                    .collect(),
            },
        }
        .sign(&self.key)
        .map_err(|e| ServerError::Config(e.to_string()))
    }

    /// For `tessera server rebind --response FILE`: applies a response file only if its license
    /// was issued after the one installed, so that a response kept from an earlier activation (in
    /// a copy of the data directory, say) re-validates nothing.
    pub async fn offline_apply_fresh(&self, response: &str) -> Result<usize, ServerError> {
        let r = tessera_core::offline::ResponseClaims::verify(
            response,
            &Keyring::with(self.producer.clone()),
            self.clock.now(),
        )
        .map_err(|e| ServerError::BackOffice(format!("the response file is not valid: {e}")))?;
        let issued = |text: &str| {
            tessera_core::document::decode_unverified::<tessera_core::LicenseClaims>(
                text,
                tessera_core::DocumentType::License,
            )
            .ok()
            .map(|c| c.iat)
        };
        if let (Some(new), Some(installed)) = (
            issued(&r.license),
            self.store
                .get_setting("server.license")
                .await?
                .as_deref()
                .and_then(issued),
        ) {
            if new <= installed {
                return Err(ServerError::BackOffice(format!(
                    "the response's license was issued on {}, not after the one installed ({}): it is an earlier answer, not a fresh re-validation. Make a new request (`tessera server offline request`) and take it to the back office",
                    tessera_core::time_fmt::display_time(new),
                    tessera_core::time_fmt::display_time(installed)
                )));
            }
        }
        self.offline_apply(response).await
    }

    /// Applies the back office's response file: checks it and installs what it holds.
    pub async fn offline_apply(&self, response: &str) -> Result<usize, ServerError> {
        let r = tessera_core::offline::ResponseClaims::verify(
            response,
            &Keyring::with(self.producer.clone()),
            self.clock.now(),
        )
        .map_err(|e| ServerError::BackOffice(format!("the response file is not valid: {e}")))?;
        let cert = r.certificate.ok_or_else(|| {
            ServerError::BackOffice(
                "the response holds no server certificate: it answers a device's request".into(),
            )
        })?;
        self.install(&r.license, &cert).await
    }

    /// Checks and installs a license bundle and certificate from the back office (online or from
    /// an offline response); returns how many feature records it serves now.
    pub async fn install(&self, license: &str, certificate: &str) -> Result<usize, ServerError> {
        let now = self.clock.now();
        let ring = Keyring::with(self.producer.clone());
        let lic = License::verify(license, &ring, now, std::slice::from_ref(&self.hostid))
            .map_err(|e| {
                ServerError::BackOffice(format!(
                    "the license received is not valid for this server: {e}"
                ))
            })?;
        let cert = ServerCertificateClaims::verify(certificate, &ring, now).map_err(|e| {
            ServerError::BackOffice(format!("the certificate received is not valid: {e}"))
        })?;
        if cert.server_public_key().ok().as_ref() != Some(&self.key.public())
            || cert.server_hostid != self.hostid
        {
            return Err(ServerError::BackOffice(
                "the certificate received is for another server".into(),
            ));
        }
        // a replayed older answer (from a fake or stale back office) must not roll the bundle back
        if let Some(current) = self.store.get_setting("server.license").await? {
            let installed: Option<tessera_core::LicenseClaims> =
                tessera_core::document::decode_unverified(
                    &current,
                    tessera_core::DocumentType::License,
                )
                .ok();
            if let Some(installed) = installed {
                if lic.claims().iat < installed.iat {
                    return Err(ServerError::BackOffice(format!(
                        "the license received was issued on {}, before the one installed ({}): a replayed answer; nothing was changed",
                        tessera_core::time_fmt::display_time(lic.claims().iat),
                        tessera_core::time_fmt::display_time(installed.iat)
                    )));
                }
            }
        }
        self.store.put_setting("server.license", license).await?;
        self.store
            .put_setting("server.certificate", certificate)
            .await?;
        *self.certificate.write().await = Some(ServedCertificate::new(certificate.to_string()));
        *self.installed.lock().await = Some(license.to_string());
        let n = lic.features().len();
        self.engine.reload(lic.features().to_vec()).await?;
        apply_borrow_policy(
            &self.engine,
            &self.config,
            Some(license),
            &self.producer,
            &self.hostid,
            now,
        );
        Ok(n)
    }
}

/// The back office's answer as `T`; its problem (`refused: DETAIL (CODE)`) as the error.
async fn backoffice_answer<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    refused: &str,
) -> Result<T, ServerError> {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let problem = ErrorAnswer::read(status.as_u16(), &body);
        return Err(ServerError::BackOffice(format!(
            "{refused}: {}",
            problem.describe("no detail")
        )));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ServerError::BackOffice(format!(
            "the back office's answer is not what this license server reads: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(extra).unwrap()
    }

    #[test]
    fn server_toml_only_narrows_the_producers_offline_policy() {
        let producer = Some((2, 3));
        assert_eq!(borrow_limits(&config(""), producer), (2, 3));
        assert_eq!(
            borrow_limits(
                &config("max_borrow_days = 25\nmax_borrows_per_account = 6"),
                producer
            ),
            (2, 3),
            "higher values are ignored"
        );
        assert_eq!(
            borrow_limits(
                &config("max_borrow_days = 1\nmax_borrows_per_account = 2"),
                producer
            ),
            (1, 2),
            "lower ones apply"
        );
        // a bundle without a policy: the defaults are the ceiling
        assert_eq!(borrow_limits(&config("max_borrow_days = 25"), None), (7, 3));
        assert_eq!(borrow_limits(&config("max_borrow_days = 5"), None), (5, 3));
    }

    #[test]
    fn the_anchor_directory_is_private_or_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        // made 0700 whatever the umask
        let a = dir.path().join("a/b/anchors");
        private_dir(&a).unwrap();
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // an existing directory of ours that others could write to is tightened
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&loose).unwrap();
        assert_eq!(
            fs::metadata(&loose).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // a link (planted by someone else, say) or a file is refused
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(private_dir(&file).is_err());
        // no HOME, no XDG_STATE_HOME, no anchor_dir: no fallback to a shared directory
        let c = config("anchor_dir = \"/srv/anchor\"");
        assert_eq!(anchor_dir(&c).unwrap(), PathBuf::from("/srv/anchor"));
    }
}
