//! The license server's data directory and opening: `init` makes it, [`open`] reads the
//! configuration and keys, checks trusted storage ([`crate::trust`]) and loads the engine over the
//! installed bundle; [`serve_on`] serves it with its scheduled work ([`crate::tasks`]).
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

use tessera_core::{Clock, HostId, Keyring, License, PublicKey, SigningKey};
use tessera_store::{AnyStore, ServerStateStore};

use crate::bundle::{apply_borrow_policy, bundle_records};
use crate::config::{database_url, load_config, server_hostid, Config};
use crate::engine::{Engine, InstanceId, LeasePolicy};
use crate::error::{file_err, write, ServerError};
use crate::http::Shared;
use crate::token::new_admin_token;
use crate::trust::{check_binding, claim_database, lock_data_dir, move_anchor};

/// What `init` made that is shown once: the start-up API token of the first administrator
/// (`admin`) and the first password of `admin`, which must be changed at the first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialised {
    /// The start-up API token (the admin token).
    pub token: String,
    /// The first password of user `admin`.
    pub password: String,
}

/// Creates a license server in `data` trusting `producer_pem`; returns the admin token and the
/// first password of `admin` (shown once).
///
/// `DATA/server.toml` is written from `database` and `hostid` unless it exists already (the Debian
/// package links it to `/etc/tessera/server.toml`): then it is kept, and `database` and `hostid`
/// may only repeat what it says.
pub async fn init(
    data: &Path,
    producer_pem: &str,
    database: Option<&str>,
    hostid: Option<&str>,
) -> Result<Initialised, ServerError> {
    if data.join("keys/server.key").exists() {
        return Err(ServerError::AlreadyInitialised(data.display().to_string()));
    }
    PublicKey::from_spki_pem(producer_pem)
        .map_err(|e| ServerError::Config(format!("the producer key: {e}")))?;
    // private to the server's user (0700), whatever the umask: the store and the key are inside
    tessera_host::private_dir(data).map_err(|e| file_err(data, e))?;
    tessera_host::private_dir(&data.join("keys")).map_err(|e| file_err(data, e))?;
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let config_path = data.join("server.toml");
    if config_path.exists() {
        // a configuration laid out beforehand (the Debian package links DATA/server.toml to
        // /etc/tessera/server.toml), or written by an init that failed later: kept as it is
        let config = load_config(&data)?;
        let hostid = hostid
            .map(|h| {
                h.parse::<HostId>()
                    .map_err(|e| ServerError::Config(format!("hostid: {e}")))
            })
            .transpose()?
            .map(|h| h.to_string());
        for (key, given, set) in [
            (
                "database",
                database.map(str::to_string),
                config.database.clone(),
            ),
            ("hostid", hostid, config.hostid.clone()),
        ] {
            if given.is_some() && given != set {
                return Err(ServerError::Config(format!(
                    "{} already exists and says otherwise: set `{key}` there instead of passing --{key}",
                    config_path.display()
                )));
            }
        }
        return finish_init(&data, producer_pem).await;
    }
    let mut toml_text = "# Tessera license server. Unknown keys are errors.\nlisten = \"0.0.0.0:7070\"\nlease_seconds = 300\n# max_borrow_days = 7            (default: the producer's offline policy, 30 days)\n# max_borrows_per_account = 3   (default: the producer's offline policy, 3)\nlog = \"info\"\n# log_file = \"server.log\"        (default: standard error; relative to this directory)\n# cluster = false               (true: several processes share one PostgreSQL database; same hostid on each)\n# request_timeout_seconds = 30  (headers, then body; slower clients are disconnected)\n# max_connections = 1024\n# worker_threads = 4            (threads serving requests; default: one per CPU core)\n# capability_requests_per_minute = 1200   (per client address; 0: no limit; loopback exempt unless rate_limit_loopback = true)\n# max_leases_per_device = 1000\n# usage_event_retention_days = 30   (denials and overdraft use kept for the denial report)\n# require_signed_requests = false   (true: capability requests must be signed by a registered client key)\n".to_string();
    if let Some(db) = database {
        toml_text.push_str(&format!("database = \"{}\"\n", db.replace('"', "")));
    }
    if let Some(h) = hostid {
        let h: HostId = h
            .parse()
            .map_err(|e| ServerError::Config(format!("hostid: {e}")))?;
        toml_text.push_str(&format!("hostid = \"{h}\"\n"));
    }
    write(&config_path, toml_text.as_bytes(), 0o600)?;
    finish_init(&data, producer_pem).await
}

/// The rest of `init` once `DATA/server.toml` is in place: the producer's key, the store, the
/// admin token and, last (its presence marks an initialised server), the server's key.
async fn finish_init(data: &Path, producer_pem: &str) -> Result<Initialised, ServerError> {
    write(&data.join("producer.pub"), producer_pem.as_bytes(), 0o644)?;
    let config = load_config(data)?;
    let store = tessera_store::open(&database_url(data, &config)).await?;
    let host = server_hostid(&config)?;
    store
        .set_server_hostid(&InstanceId::on_site(), &host.to_string())
        .await?;
    let token = new_admin_token(&store).await?;
    let password = crate::token::first_admin_password(&store).await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    write(&data.join("keys/server.key"), pem.as_bytes(), 0o600)?;
    Ok(Initialised { token, password })
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
    /// The producer's key the server was made with (`producer.pub`); the keys trusted are
    /// [`Server::producer_keyring`].
    pub producer: PublicKey,
    /// The certificate from the back office, once activated.
    pub certificate: tokio::sync::RwLock<Option<ServedCertificate>>,
    /// The data directory.
    pub data: PathBuf,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The license bundle served (to notice one another cluster member installed).
    pub(crate) installed: tokio::sync::Mutex<Option<String>>,
    /// The seat policy documents in force (reservations, pool model).
    pub(crate) policy: tokio::sync::Mutex<crate::seat_policy::PolicyState>,
    /// Held while the seat policy is read or changed, so edits happen one at a time.
    pub(crate) policy_edit: tokio::sync::Mutex<()>,
    /// The client keys registered (read on the capability route only with
    /// `require_signed_requests`).
    pub(crate) client_keys: std::sync::RwLock<crate::client_keys::ClientKeySet>,
    /// The producer keys trusted for bundles and certificates: their ids as stored, and the ring.
    pub(crate) producer_keys: std::sync::RwLock<(Vec<String>, Keyring)>,
    /// The configuration in force: the start's, with the properties changed live since.
    pub(crate) in_force: std::sync::Mutex<Config>,
    /// The settings the producer locked in the license bundle served.
    pub(crate) locks:
        std::sync::Mutex<std::collections::BTreeMap<String, tessera_core::license::LockedValue>>,
    /// How the log filter changes while serving (set by the command that set up the log).
    pub(crate) log_reload: std::sync::OnceLock<crate::properties::LogReload>,
    /// Held while properties are changed, so changes of server.toml happen one at a time.
    pub(crate) properties_edit: std::sync::Mutex<()>,
    /// Keeps other server processes off this data directory and database while this one runs.
    _lock: (fs::File, tessera_store::ExclusiveGuard),
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
    // the producer keys trusted: producer.pub's, and those added when the producer rotated its key
    let (kids, producers) =
        crate::client_keys::load_producer_keys(&store, &producer, clock.now()).await?;
    // the settings the producer locked in the bundle win over server.toml's, from the start
    let mut config = config;
    let locks = {
        let host = server_hostid(&config)?;
        let state = store.server_state(&InstanceId::on_site()).await?;
        crate::bundle::producer_locks(state.license.as_deref(), &producers, &host, clock.now())
    };
    for said in crate::properties::apply_locks(&mut config, &locks).map_err(ServerError::Config)? {
        tracing::warn!("{said}");
    }
    crate::token::adopt_legacy_admin_token(&store).await?;
    if crate::token::admin_lacks_password(&store).await? {
        tracing::warn!(
            "user admin has no password yet (this data directory was made before the license server had logins): it acts with its API tokens; set one with `tessera server passwd --data {}`",
            data.display()
        );
    }
    if config.cluster && config.hostid.is_none() {
        return Err(ServerError::Config(format!(
            "{}: `cluster = true` needs `hostid` set, to the same value on every member: a cluster is one license server to the back office and to clients",
            data.join("server.toml").display()
        )));
    }
    let guard = claim_database(&store, &config).await?;
    let host = server_hostid(&config)?;
    check_binding(&store, &data, &host, rebind).await?;
    let (next, marks) = move_anchor(&store, &data, &config, &host).await?;
    let now = clock.now();
    let tessera_store::ServerState {
        license,
        certificate,
        ..
    } = store.server_state(&InstanceId::on_site()).await?;
    let client_keys = crate::client_keys::load_client_keys(&store).await?;
    // the bundle in the store must still be the one the producer signed for this server
    if let Some(text) = license.as_deref() {
        use tessera_core::VerifyError;
        match License::verify(
            text,
            &producers,
            now,
            std::slice::from_ref(&host),
        ) {
            Ok(_) => {}
            Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => {
                tracing::warn!("the license bundle is not valid now: no seats until it is renewed (`tessera server sync`)");
            }
            Err(e) => {
                return Err(ServerError::EditedStorage(format!(
                    "the license bundle in the store does not verify ({e}): it was changed outside the license server. Restore the latest backup of the store, or install a fresh bundle from the back office (`tessera server activate` or `offline apply`) after clearing the installed one (`UPDATE server_state SET license = NULL, certificate = NULL WHERE instance = 'on-site'`)"
                )))
            }
        }
    }
    let records = bundle_records(license.as_deref(), &producers, &host, now);
    let mut policy = LeasePolicy::default();
    policy.lease =
        tessera_core::time::Duration::seconds(i64::from(config.lease_seconds.clamp(3, 86_400)));
    policy.max_borrow_days = config.max_borrow_days.unwrap_or(7).clamp(1, 3650);
    policy.max_borrows_per_account = config
        .max_borrows_per_account
        .unwrap_or(3)
        .clamp(1, 100_000);
    policy.max_leases_per_device = config.max_leases_per_device;
    let engine = Engine::load(crate::engine::EngineSetup {
        instance: InstanceId::on_site(),
        records,
        store: store.clone(),
        key: key.clone(),
        server: host.clone(),
        clock: clock.clone(),
        policy,
        sharing: if config.cluster {
            crate::engine::Sharing::Cluster
        } else {
            crate::engine::Sharing::Alone(Some(Box::new(crate::engine::HighWater {
                epoch: next,
                files: marks,
            })))
        },
    })
    .await
    .map_err(|e| match e {
        crate::engine::LoadError::Store(e) => ServerError::Store(e),
        crate::engine::LoadError::EditedLeases { stored, found } => ServerError::EditedStorage(format!(
            "the leases in the store were changed outside the license server (their digest is {found}, the server stored {stored}): refusing to serve, since seats freed by hand would be granted twice. Restore the latest backup of the store, or accept the leases as they are now with `tessera server accept-storage --data {}`",
            data.display()
        )),
        e => ServerError::EditedStorage(e.to_string()),
    })?;
    apply_borrow_policy(&engine, &config, license.as_deref(), &producers, &host, now);
    let server = Server {
        in_force: std::sync::Mutex::new(config.clone()),
        locks: std::sync::Mutex::new(locks),
        log_reload: std::sync::OnceLock::new(),
        properties_edit: std::sync::Mutex::new(()),
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
        policy: tokio::sync::Mutex::new(crate::seat_policy::PolicyState::default()),
        policy_edit: tokio::sync::Mutex::new(()),
        client_keys: std::sync::RwLock::new(client_keys),
        producer_keys: std::sync::RwLock::new((kids, producers)),
        _lock: (lock_file, guard),
    };
    // the administrator's reservations and pool model, in force before the first decision
    server.refresh_policy().await?;
    Ok(server)
}

/// Serves on a bound listener until `shutdown`, within the limits of the configuration
/// (`request_timeout_seconds`, `max_connections`), with the server's scheduled work running beside
/// (the lease sweep every few seconds, the daily sync: [`Server::start_tasks`]), stopped before it
/// returns.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = state.server.start_tasks();
    let r = crate::http::serve(listener, state, None, shutdown).await;
    tasks.stop().await;
    r
}

/// Serves HTTPS on a bound listener with the certificate chain and key in PEM files until
/// `shutdown`; otherwise as [`serve_on`].
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    cert: &std::path::Path,
    key: &std::path::Path,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = state.server.start_tasks();
    let tls = tessera_host::serve::TlsFiles { cert, key };
    let r = crate::http::serve(listener, state, Some(tls), shutdown).await;
    tasks.stop().await;
    r
}
