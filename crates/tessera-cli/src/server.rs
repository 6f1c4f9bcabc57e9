//! `tessera server …`: run a license server and administer it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use tessera_host::SystemClock;
use tessera_server::http;
use tessera_wire::admin::{
    ActivateRequest, AuditPage, FeatureRecords, KeyCount, NewToken, NewUser, OfflineRequestBody,
    PasswordChange, RoleChange, Status, SyncOutcome, TokenCreated, TokenInfo, TokenLogin,
    UsageEventKind, UsageEventQuery, UsageEvents, UsageHistory, UserCreated, UserView,
};
use tessera_wire::ErrorAnswer;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Create a license server trusting a producer's public key; prints the admin token once.
    Init {
        /// The data directory.
        #[arg(long, default_value = "tessera-server", env = "TESSERA_SERVER_DATA")]
        data: PathBuf,
        /// The producer's public key (producer.pub).
        #[arg(long)]
        producer_key: PathBuf,
        /// Database URL (default SQLite in the data directory).
        #[arg(long)]
        database: Option<String>,
        /// The host id this server is known by (default: this machine's).
        #[arg(long)]
        hostid: Option<String>,
    },
    /// Serve capability requests (default 0.0.0.0:7070).
    Serve {
        /// The data directory.
        #[arg(long, default_value = "tessera-server", env = "TESSERA_SERVER_DATA")]
        data: PathBuf,
        /// Address to listen on (overrides server.toml).
        #[arg(long)]
        listen: Option<String>,
        /// TLS certificate chain (PEM); with --tls-key, serve HTTPS (or `tls_cert` in server.toml).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Accept the leases now in the store as they are, after the server refused to start because
    /// they were changed outside it (or a backup was restored). The server must be stopped.
    AcceptStorage {
        /// The data directory.
        #[arg(long, default_value = "tessera-server", env = "TESSERA_SERVER_DATA")]
        data: PathBuf,
    },
    /// Bind the storage to this machine after it was moved here (the server refuses to start on
    /// storage bound to another machine), re-validating with the back office: online (a sync:
    /// usage report out, renewed licenses in) or with a fresh offline response file. The server
    /// must be stopped.
    Rebind {
        /// The data directory.
        #[arg(long, default_value = "tessera-server", env = "TESSERA_SERVER_DATA")]
        data: PathBuf,
        /// A response file the back office made for this server's offline request (instead of
        /// syncing online); its license must be newer than the one installed.
        #[arg(long, conflicts_with = "request_out")]
        response: Option<PathBuf>,
        /// Without a network: write an offline activation request for these keys (with
        /// --key KEY:COUNT) to take to the back office, then run again with --response.
        #[arg(long, requires = "keys")]
        request_out: Option<PathBuf>,
        /// KEY:COUNT (repeat), with --request-out.
        #[arg(long = "key", value_name = "KEY:COUNT")]
        keys: Vec<String>,
    },
    /// The admin token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Activate activation keys with counts at the back office (through the running server).
    Activate {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// An API token (the admin token printed by `init`, or one of `tokens create`); default:
        /// the one `tessera server login` saved for this server.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The back office.
        #[arg(long, env = "TESSERA_BACKOFFICE_URL")]
        backoffice: String,
        /// KEY:COUNT (repeat).
        #[arg(long = "key", required = true, value_name = "KEY:COUNT")]
        keys: Vec<String>,
    },
    /// Offline activation files (for a server that cannot reach the back office).
    #[command(subcommand)]
    Offline(OfflineCommand),
    /// Properties: every setting of server.toml by group, what is in force, what the producer
    /// locked; change several at once.
    #[command(subcommand)]
    Properties(crate::properties::PropertiesCommand),
    /// Reservations: seats set aside for one device or one user, in groups.
    #[command(subcommand)]
    Reservations(crate::reservations::ReservationsCommand),
    /// Named users: who may take seats of a feature sold for named users.
    #[command(subcommand, name = "named-users")]
    NamedUsers(crate::named_users::NamedUsersCommand),
    /// Named license pools: a model that splits seats into pools and says who draws from which.
    #[command(subcommand)]
    Pools(crate::pools::PoolsCommand),
    /// Client keys: the public keys (RSA-2048 or Ed25519, DER) that may sign capability
    /// requests, required when server.toml sets `require_signed_requests = true`.
    #[command(subcommand, name = "client-keys")]
    ClientKeys(crate::keys::ClientKeysCommand),
    /// The producer keys trusted for license bundles and certificates (a second one lets the
    /// producer rotate its signing key).
    #[command(subcommand, name = "producer-keys")]
    ProducerKeys(crate::keys::ProducerKeysCommand),
    /// Release stuck seats: one lease (--lease ID), or every lease of one device (--device
    /// HOSTID). Their seats are free for others at once.
    Release(crate::keys::ReleaseArgs),
    /// The leases held: id, feature, seats, holder, expiry (what `release` takes).
    Leases {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync with the back office now: send the usage report, install the renewed licenses.
    Sync {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// An API token (the admin token printed by `init`, or one of `tokens create`); default:
        /// the one `tessera server login` saved for this server.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Log in with a user name and password: an API token acting as the user (with the user's
    /// role) is saved, private to you, under your configuration directory
    /// (`$XDG_CONFIG_HOME/tessera/server-tokens.json`, or `~/.config/…`; `TESSERA_CONFIG_DIR`
    /// overrides), and used by later commands to this server when no --token is given.
    Login {
        #[command(flatten)]
        at: At,
        /// The user name.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Read the password from standard input (one line) instead of asking.
        #[arg(long)]
        password_stdin: bool,
        /// Days until the saved token stops working (default: never; revoke it with `tokens revoke`).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Forget the token `login` saved for this server (revoke it with `tokens revoke` to end it).
    Logout {
        #[command(flatten)]
        at: At,
    },
    /// Change a password. Online (the default): with the user's current password, as at the first
    /// login, whose printed password must be changed. Offline with --data: set it with the data
    /// directory alone (the way back in when the password is lost, and how a server made before
    /// logins gives `admin` one); the user's sessions end, tokens are kept.
    Passwd {
        #[command(flatten)]
        at: At,
        /// The user whose password changes.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Offline: the server's data directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Read the passwords from standard input: the current one, then the new one (one a
        /// line; the new one only with --data).
        #[arg(long)]
        password_stdin: bool,
        /// With --data: the user must change it at the next login.
        #[arg(long, requires = "data")]
        must_change: bool,
    },
    /// The license server's users and their roles (`admin`: everything; `read_only`: every
    /// view, no change). Administrators only.
    #[command(subcommand)]
    Users(UsersCommand),
    /// API tokens for scripts: create (shown once), list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The audit log, newest first: logins, failures, changes (times in UTC).
    Audit {
        #[command(flatten)]
        at: At,
        /// Entries to show (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only entries older than this id (the id the previous page ended before).
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the features, their use and the leases held.
    Status {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// An API token (the admin token printed by `init`, or one of `tokens create`); default:
        /// the one `tessera server login` saved for this server.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The features view: each feature and version with its records summed (count, used,
    /// available, overdraft used, first and last expiry, metered, counted); with --details, every
    /// feature record (start, expiry, vendor string, product, activation and entitlement ids).
    Features {
        #[command(flatten)]
        list: crate::views::ListArgs,
        /// Every feature record rather than the summary.
        #[arg(long)]
        details: bool,
    },
    /// One feature: its records and the devices holding its seats (search, sort and page them).
    Feature {
        /// The feature's name, exactly.
        name: String,
        #[command(flatten)]
        list: crate::views::ListArgs,
    },
    /// The devices view: each device and user holding leases (id type, device type, alias,
    /// when what it holds runs out, the features it holds).
    Devices {
        #[command(flatten)]
        list: crate::views::ListArgs,
    },
    /// One device: what it holds, each feature with its lease's and its record's expiry.
    Device {
        /// The device's host id (`KIND=VALUE`).
        id: String,
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The denial report: who was refused which feature, when and why (newest first); with
    /// --overdraft, the grants that took seats beyond the count.
    Denials {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// The admin token printed by `init`.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: String,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Only events since: a time ago (`30m`, `24h`, `7d`), a date (`2026-06-01`) or an
        /// RFC 3339 time (`2026-06-01T08:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// Only this feature.
        #[arg(long)]
        feature: Option<String>,
        /// At most this many, the newest (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Overdraft use (grants beyond the count) instead of denials.
        #[arg(long)]
        overdraft: bool,
        /// Print JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (for a spreadsheet; cells that would run as formulas are defused).
        #[arg(long)]
        csv: bool,
    },
    /// A feature's usage history: the most seats used in each period and the count, per version
    /// (the server samples every minute; keeps minutes 2 days, hours 90 days, then days).
    UsageHistory {
        /// The feature's name, exactly.
        feature: String,
        #[command(flatten)]
        at: At,
        /// From: a time ago (`1h`, `24h`, `7d`), a date (`2026-06-01`) or an RFC 3339 time;
        /// default: a day ago.
        #[arg(long)]
        since: Option<String>,
        /// To (not included): a date or an RFC 3339 time; default: now.
        #[arg(long)]
        until: Option<String>,
        /// The length of a period: minute, hour or day; default: what fits the range.
        #[arg(long, value_parser = ["minute", "hour", "day"])]
        resolution: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which running server, and how to prove who you are.
#[derive(Debug, clap::Args)]
pub struct At {
    /// The running license server.
    #[arg(
        long,
        default_value = "http://127.0.0.1:7070",
        env = "TESSERA_SERVER_URL"
    )]
    pub(crate) server: String,
    /// An API token; default: the one `tessera server login` saved for this server.
    #[arg(long, env = "TESSERA_SERVER_TOKEN")]
    pub(crate) token: Option<String>,
    /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
    #[arg(long, env = "TESSERA_CA_CERT")]
    pub(crate) ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the users.
    List {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a user; a random first password is printed once (to be changed at the first login).
    Add {
        #[command(flatten)]
        at: At,
        /// The user name.
        name: String,
        /// `admin` or `read_only`.
        #[arg(long, default_value = "read_only")]
        role: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their tokens and sessions.
    Delete {
        #[command(flatten)]
        at: At,
        /// The user name.
        name: String,
    },
    /// Give a user another role (their sessions end).
    Role {
        #[command(flatten)]
        at: At,
        /// The user name.
        name: String,
        /// `admin` or `read_only`.
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token (printed once).
    Create {
        #[command(flatten)]
        at: At,
        /// A label.
        #[arg(long, default_value = "api")]
        name: String,
        /// The user it acts as (default: you).
        #[arg(long)]
        user: Option<String>,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List API tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token by its id (as listed) or the token itself.
    Revoke {
        #[command(flatten)]
        at: At,
        /// The id or the token.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the admin token (the start-up token) with a new one, printed once; the old token stops
    /// working at once. Online (the default): through the running server, as an administrator.
    /// Offline with --data: with the data directory alone, not the old token (also the way back in
    /// when the token is lost; works on a running server too, which reads the token from the store
    /// at each admin request).
    Rotate {
        #[command(flatten)]
        at: At,
        /// Offline: the server's data directory.
        #[arg(long, env = "TESSERA_SERVER_DATA")]
        data: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OfflineCommand {
    /// Write an activation request file to take to the back office.
    Request {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// An API token (the admin token printed by `init`, or one of `tokens create`); default:
        /// the one `tessera server login` saved for this server.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// KEY:COUNT (repeat).
        #[arg(long = "key", required = true, value_name = "KEY:COUNT")]
        keys: Vec<String>,
        /// Where to write the request.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an update request file: the renewal of the server's bundle with its usage report,
    /// for a server that never goes online (the back office answers it with a response to apply).
    Update {
        #[command(flatten)]
        at: At,
        /// Where to write the request.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a confirmation file telling the back office which license the server serves (after
    /// applying a response); the back office records it.
    Confirm {
        #[command(flatten)]
        at: At,
        /// Where to write the confirmation.
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply the back office's response file.
    Apply {
        /// The running license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// An API token (the admin token printed by `init`, or one of `tokens create`); default:
        /// the one `tessera server login` saved for this server.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The response file.
        response: PathBuf,
    },
}

fn key_counts(keys: &[String]) -> Result<Vec<KeyCount>> {
    keys.iter()
        .map(|k| {
            let (key, count) = k
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("--key {k}: write KEY:COUNT"))?;
            let count: u32 = count
                .parse()
                .map_err(|_| anyhow!("--key {k}: the count must be a whole number"))?;
            Ok(KeyCount::new(key, count))
        })
        .collect()
}

pub fn run(cmd: ServerCommand) -> Result<()> {
    // serving: as many threads as server.toml says (default one per CPU core); a server.toml
    // that does not read is reported by the command itself, with the file's name
    let workers = match &cmd {
        ServerCommand::Serve { data, .. } => tessera_server::config::load_config(data)
            .map(|c| c.worker_threads())
            .unwrap_or(2),
        _ => 2,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(cmd))
}

/// What an admin request sends.
pub(crate) enum Body {
    /// A GET.
    None,
    /// A GET with a query string.
    Query(Vec<(&'static str, String)>),
    /// A POST without a body.
    Empty,
    /// A POST of a wire type as JSON.
    Json(serde_json::Value),
    /// A POST of a JSON document given as text.
    Text(String),
    /// A PUT of JSON.
    Put(serde_json::Value),
    /// A POST of a plain text document.
    Plain(String),
    /// A DELETE.
    Delete,
    /// A POST of bytes (`application/octet-stream`).
    Bytes(Vec<u8>),
}

impl Body {
    /// A POST of `value` as JSON.
    fn json(value: &impl serde::Serialize) -> Result<Body> {
        Ok(Body::Json(serde_json::to_value(value)?))
    }
}

/// Calls the running server's admin API; returns the answer's text, or the problem's detail and
/// code as the error.
pub(crate) async fn admin_request(
    server: &str,
    token: &str,
    ca_cert: Option<&std::path::Path>,
    path: &str,
    body: Body,
) -> Result<String> {
    let client = crate::client::http_client(ca_cert)?;
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let req = match body {
        Body::None => client.get(&url),
        Body::Query(q) => client.get(&url).query(&q),
        Body::Empty => client.post(&url),
        Body::Json(b) => client.post(&url).json(&b),
        Body::Text(t) => client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(t),
        Body::Put(b) => client.put(&url).json(&b),
        Body::Plain(t) => client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(t),
        Body::Delete => client.delete(&url),
        Body::Bytes(b) => client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(b),
    };
    let req = if token.is_empty() {
        req
    } else {
        req.bearer_auth(token)
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the license server at {server}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{}",
            ErrorAnswer::read(status.as_u16(), text.as_bytes())
                .describe("the license server refused")
        );
    }
    Ok(text)
}

/// Calls the running server's admin API; reads its answer as `T`.
pub(crate) async fn admin_call<T: DeserializeOwned>(
    server: &str,
    token: &str,
    ca_cert: Option<&std::path::Path>,
    path: &str,
    body: Body,
) -> Result<T> {
    let text = admin_request(server, token, ca_cert, path, body).await?;
    parse_answer(path, &text)
}

/// The admin API's answer to `path` as `T`.
fn parse_answer<T: DeserializeOwned>(path: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| {
        format!("the license server's answer to {path} is not what this version of tessera reads")
    })
}

/// Where `login` keeps the tokens it saved: `TESSERA_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/tessera`, else `~/.config/tessera`.
fn saved_tokens_path() -> Result<PathBuf> {
    let non_empty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let dir = non_empty("TESSERA_CONFIG_DIR")
        .or_else(|| non_empty("XDG_CONFIG_HOME").map(|d| d.join("tessera")))
        .or_else(|| non_empty("HOME").map(|d| d.join(".config/tessera")))
        .ok_or_else(|| anyhow!("no configuration directory: set HOME, XDG_CONFIG_HOME or TESSERA_CONFIG_DIR, or pass --token"))?;
    Ok(dir.join("server-tokens.json"))
}

fn saved_tokens() -> Result<std::collections::BTreeMap<String, String>> {
    let path = saved_tokens_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a saved-token file: remove it and `tessera server login` again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn save_tokens(tokens: &std::collections::BTreeMap<String, String>) -> Result<PathBuf> {
    let path = saved_tokens_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::fsutil::write_atomic(
        &path,
        serde_json::to_string_pretty(tokens)?.as_bytes(),
        0o600,
    )?;
    Ok(path)
}

fn server_key(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

/// The token given, else the one `login` saved for `server`.
pub(crate) fn token_for(server: &str, token: Option<String>) -> Result<String> {
    match token {
        // an empty token given (`--token "$T"` with T unset) is a mistake, not a request for the
        // saved login's token: that would act as another user than the script meant
        Some(t) if t.trim().is_empty() => {
            bail!("the token given is empty (--token or TESSERA_SERVER_TOKEN): give a token, or leave both out to use the one `tessera server login` saved")
        }
        Some(t) => return Ok(t),
        None => {}
    }
    saved_tokens()?.remove(&server_key(server)).ok_or_else(|| {
        anyhow!("no credentials for {server}: pass --token (the admin token printed by `tessera server init`), or `tessera server login --server {server}` first")
    })
}

/// A password: a line of standard input with `from_stdin`, else asked on the terminal (not
/// echoed where `stty` can turn echo off).
fn read_password(prompt: &str, from_stdin: bool) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let interactive = !from_stdin && stdin.is_terminal();
    if interactive {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
        let _ = std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if interactive {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    read.context("cannot read the password")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!(
            "no password given ({})",
            if from_stdin {
                "standard input was empty"
            } else {
                "type it, or use --password-stdin"
            }
        );
    }
    Ok(password)
}

/// A table: a header row and rows, columns padded to their widest cell.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run_access(cmd: ServerCommand) -> Result<()> {
    match cmd {
        ServerCommand::Login {
            at,
            user,
            password_stdin,
            expires_days,
        } => {
            let password = read_password(&format!("password of {user}"), password_stdin)?;
            let host = std::process::Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "this machine".into());
            let body = Body::json(&TokenLogin {
                user: user.clone(),
                password,
                name: Some(format!("cli login on {host}")),
                expires_days,
            })?;
            let made: TokenCreated = admin_call(
                &at.server,
                "",
                at.ca_cert.as_deref(),
                "/api/v1/admin/login/token",
                body,
            )
            .await?;
            let mut tokens = saved_tokens()?;
            tokens.insert(server_key(&at.server), made.token);
            let path = save_tokens(&tokens)?;
            println!(
                "logged in to {} as {user}; token {} saved in {} (used when no --token is given)",
                at.server,
                made.id,
                path.display()
            );
            Ok(())
        }
        ServerCommand::Logout { at } => {
            let mut tokens = saved_tokens()?;
            if tokens.remove(&server_key(&at.server)).is_some() {
                save_tokens(&tokens)?;
                println!("forgot the token saved for {} (it still works until revoked: `tessera server tokens revoke`)", at.server);
            } else {
                println!("no token was saved for {}", at.server);
            }
            Ok(())
        }
        ServerCommand::Passwd {
            at,
            user,
            data,
            password_stdin,
            must_change,
        } => {
            if let Some(data) = data {
                let new = read_password(&format!("new password of {user}"), password_stdin)?;
                tessera_server::set_user_password(&data, &user, &new, must_change).await?;
                println!(
                    "the password of {user} is set{}",
                    if must_change {
                        "; it must be changed at the next login"
                    } else {
                        ""
                    }
                );
                return Ok(());
            }
            let current = read_password(&format!("current password of {user}"), password_stdin)?;
            let new = read_password(&format!("new password of {user}"), password_stdin)?;
            admin_request(
                &at.server,
                "",
                at.ca_cert.as_deref(),
                "/api/v1/admin/password",
                Body::json(&PasswordChange {
                    user: user.clone(),
                    current_password: current,
                    new_password: new,
                })?,
            )
            .await?;
            println!("the password of {user} is changed; log in again");
            Ok(())
        }
        ServerCommand::Users(cmd) => users(cmd).await,
        ServerCommand::Tokens(cmd) => tokens(cmd).await,
        ServerCommand::Audit {
            at,
            limit,
            before,
            json,
        } => {
            let mut path = format!("/api/v1/admin/audit?limit={limit}");
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let page: AuditPage = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &path,
                Body::None,
            )
            .await?;
            if json {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page
                .entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.at.clone(),
                        e.actor.clone(),
                        e.action.clone(),
                        e.address.clone().unwrap_or_else(|| "-".into()),
                        e.detail.clone(),
                    ]
                })
                .collect();
            print_table(
                &["ID", "AT (UTC)", "ACTOR", "ACTION", "ADDRESS", "DETAIL"],
                &rows,
            );
            if let Some(b) = page.next_before {
                println!("(older entries: --before {b})");
            }
            Ok(())
        }
        _ => Err(anyhow!("not an access command")),
    }
}

async fn users(cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::List { at, json } => {
            let list: Vec<UserView> = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/users",
                Body::None,
            )
            .await?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        u.role.clone(),
                        if !u.has_password {
                            "none (tokens only)".into()
                        } else if u.must_change_password {
                            "must be changed".into()
                        } else {
                            "set".into()
                        },
                        u.created_at.clone(),
                    ]
                })
                .collect();
            print_table(&["USER", "ROLE", "PASSWORD", "CREATED (UTC)"], &rows);
            Ok(())
        }
        UsersCommand::Add {
            at,
            name,
            role,
            json,
        } => {
            let made: UserCreated = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/users",
                Body::json(&NewUser {
                    name,
                    role,
                    password: None,
                })?,
            )
            .await?;
            if json {
                return print_json(&made);
            }
            println!(
                "user {} ({}) created; first password (shown once, to be changed at the first login): {}",
                made.user.name,
                made.user.role,
                made.password.unwrap_or_default()
            );
            Ok(())
        }
        UsersCommand::Delete { at, name } => {
            admin_request(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &format!("/api/v1/admin/users/{}", path_segment(&name)),
                Body::Delete,
            )
            .await?;
            println!("user {name} deleted, with their tokens and sessions");
            Ok(())
        }
        UsersCommand::Role { at, name, role } => {
            let u: UserView = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &format!("/api/v1/admin/users/{}/role", path_segment(&name)),
                Body::Put(serde_json::to_value(RoleChange { role })?),
            )
            .await?;
            println!("user {} now has the role {}", u.name, u.role);
            Ok(())
        }
    }
}

/// `text` for one path segment (percent-encoded but for unreserved characters).
pub(crate) fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn tokens(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Create {
            at,
            name,
            user,
            expires_days,
            json,
        } => {
            let made: TokenCreated = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/tokens",
                Body::json(&NewToken {
                    name: Some(name),
                    expires_days,
                    user,
                })?,
            )
            .await?;
            if json {
                return print_json(&made);
            }
            println!(
                "API token for {} (id {}; shown once): {}",
                made.user, made.id, made.token
            );
            Ok(())
        }
        TokensCommand::List { at, json } => {
            let list: Vec<TokenInfo> = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/tokens",
                Body::None,
            )
            .await?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.user.clone(),
                        t.state.clone(),
                        t.created_at.clone(),
                        t.expires_at.clone().unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            print_table(
                &["ID", "NAME", "USER", "STATE", "CREATED (UTC)", "EXPIRES"],
                &rows,
            );
            Ok(())
        }
        TokensCommand::Revoke { at, id } => {
            let t: TokenInfo = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &format!("/api/v1/admin/tokens/{}", path_segment(&id)),
                Body::Delete,
            )
            .await?;
            println!("token {} ({}) of {} is {}", t.id, t.name, t.user, t.state);
            Ok(())
        }
    }
}

async fn run_async(cmd: ServerCommand) -> Result<()> {
    match cmd {
        cmd @ (ServerCommand::Login { .. }
        | ServerCommand::Logout { .. }
        | ServerCommand::Passwd { .. }
        | ServerCommand::Users(_)
        | ServerCommand::Tokens(_)
        | ServerCommand::Audit { .. }) => run_access(cmd).await,
        ServerCommand::Init {
            data,
            producer_key,
            database,
            hostid,
        } => {
            let pem = std::fs::read_to_string(&producer_key)
                .with_context(|| format!("cannot read {}", producer_key.display()))?;
            let made =
                tessera_server::init(&data, &pem, database.as_deref(), hostid.as_deref()).await?;
            println!("License server created in {}", data.display());
            println!(
                "  admin token: {}   (shown once; used by `tessera server activate|status`)",
                made.token
            );
            println!(
                "  admin password: {}   (user admin; shown once; must be changed at the first login: `tessera server passwd`)",
                made.password
            );
            println!(
                "Start it with: tessera server serve --data {}",
                data.display()
            );
            Ok(())
        }
        ServerCommand::Serve {
            data,
            listen,
            tls_cert,
            tls_key,
        } => {
            let server = tessera_server::open(&data, Arc::new(SystemClock)).await?;
            let addr = listen.unwrap_or_else(|| server.config.listen.clone());
            let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
                Ok(f) => f,
                Err(_) => tracing_subscriber::EnvFilter::try_new(&server.config.log).map_err(|e| {
                    anyhow!(
                        "{}: log = \"{}\" is not a log filter ({e}); use a level such as \"info\" or \"debug\", or directives such as \"info,tessera_server=debug\"",
                        data.join("server.toml").display(),
                        server.config.log
                    )
                })?,
            };
            match &server.config.log_file {
                Some(path) => {
                    let path = if path.is_absolute() {
                        path.clone()
                    } else {
                        server.data.join(path)
                    };
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| {
                            anyhow!(
                                "cannot open the log file {} (log_file in server.toml): {e}",
                                path.display()
                            )
                        })?;
                    let builder = tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(false)
                        .with_writer(std::sync::Mutex::new(file))
                        .with_filter_reloading();
                    let handle = builder.reload_handle();
                    if builder.try_init().is_ok() {
                        server.set_log_reload(log_reload(handle));
                    }
                }
                None => {
                    // the log goes to standard error; standard output says where it listens
                    // colours only on a terminal: not in the journal or a redirected file
                    let builder = tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_writer(std::io::stderr)
                        .with_filter_reloading();
                    let handle = builder.reload_handle();
                    if builder.try_init().is_ok() {
                        server.set_log_reload(log_reload(handle));
                    }
                }
            }
            tracing::info!(
                hostid = %server.hostid,
                cluster = server.config.cluster,
                worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
                "license server starting"
            );
            let host = server.hostid.clone();
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
            let in_data = |p: PathBuf| {
                if p.is_absolute() {
                    p
                } else {
                    server.data.join(p)
                }
            };
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => match (
                    server.config.tls_cert.clone(),
                    server.config.tls_key.clone(),
                ) {
                    (Some(c), Some(k)) => Some((in_data(c), in_data(k))),
                    (None, None) => None,
                    _ => {
                        return Err(anyhow!(
                            "{}: set both tls_cert and tls_key, or neither",
                            data.join("server.toml").display()
                        ))
                    }
                },
            };
            let signal = tessera_host::serve::shutdown_signal();
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!(
                "license server {host} listening on {scheme}://{} (data {})",
                listener.local_addr()?,
                data.display()
            );
            if tls.is_none() {
                crate::warn_plain_http(
                    listener.local_addr()?,
                    "the license server",
                    "the admin token",
                );
            }
            let shutdown = async {
                signal.await;
                crate::say(false, "stopping");
            };
            match tls {
                Some((cert, key)) => {
                    tessera_server::serve_tls_on(
                        listener,
                        &cert,
                        &key,
                        http::state(server),
                        shutdown,
                    )
                    .await?
                }
                None => tessera_server::serve_on(listener, http::state(server), shutdown).await?,
            }
            tracing::info!("license server stopped");
            crate::say(true, "license server stopped");
            Ok(())
        }
        ServerCommand::Rebind {
            data,
            response,
            request_out,
            keys,
        } => {
            let server = tessera_server::open_for_rebind(&data, Arc::new(SystemClock)).await?;
            if let Some(out) = request_out {
                let text = server.offline_request(&key_counts(&keys)?)?;
                std::fs::write(&out, text)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!(
                    "Offline request written to {}: take it to the back office, then run `tessera server rebind --data {} --response RESPONSE`",
                    out.display(),
                    data.display()
                );
                return Ok(());
            }
            match response {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    server.offline_apply_fresh(&text).await.map_err(|e| {
                        anyhow!("the back office's response did not re-validate this server: {e}; nothing was changed")
                    })?;
                }
                None => {
                    server.sync().await.map_err(|e| {
                        anyhow!("the back office did not re-validate this server: {e}; nothing was changed (without a network, use --response FILE with an offline response)")
                    })?;
                }
            }
            let ids = server.bind_to_this_machine().await?;
            println!(
                "The storage in {} is now bound to this machine ({}).",
                data.display(),
                ids.join(", ")
            );
            Ok(())
        }
        ServerCommand::AcceptStorage { data } => {
            let n = tessera_server::accept_storage(&data).await?;
            println!(
                "The {n} leases now in {} will be served as they are at the next start.",
                data.display()
            );
            Ok(())
        }
        ServerCommand::Reservations(cmd) => crate::reservations::run(cmd).await,
        ServerCommand::Properties(cmd) => crate::properties::run(cmd).await,
        ServerCommand::Features { list, details } => crate::views::features(list, details).await,
        ServerCommand::Feature { name, list } => crate::views::feature(&name, list).await,
        ServerCommand::Devices { list } => crate::views::devices(list).await,
        ServerCommand::Device { id, at, json } => crate::views::device(&id, at, json).await,
        ServerCommand::NamedUsers(cmd) => crate::named_users::run(cmd).await,
        ServerCommand::Pools(cmd) => crate::pools::run(cmd).await,
        ServerCommand::ClientKeys(cmd) => crate::keys::client_keys(cmd).await,
        ServerCommand::ProducerKeys(cmd) => crate::keys::producer_keys(cmd).await,
        ServerCommand::Release(args) => crate::keys::release(args).await,
        ServerCommand::Leases { at, json } => crate::keys::leases(at, json).await,
        ServerCommand::Token(TokenCommand::Rotate { at, data, json }) => {
            crate::keys::rotate_token(at, data, json).await
        }
        ServerCommand::Activate {
            server,
            token,
            ca_cert,
            backoffice,
            keys,
        } => {
            let request = ActivateRequest {
                backoffice,
                activations: key_counts(&keys)?,
            };
            let v: FeatureRecords = admin_call(
                &server,
                &token_for(&server, token)?,
                ca_cert.as_deref(),
                "/api/v1/admin/activate",
                Body::json(&request)?,
            )
            .await?;
            println!(
                "activated: the server now serves {} feature record(s)",
                v.feature_records
            );
            Ok(())
        }
        ServerCommand::Offline(OfflineCommand::Request {
            server,
            token,
            ca_cert,
            keys,
            out,
        }) => {
            let body = Body::json(&OfflineRequestBody {
                activations: key_counts(&keys)?,
            })?;
            let text = admin_request(
                &server,
                &token_for(&server, token)?,
                ca_cert.as_deref(),
                "/api/v1/admin/offline-request",
                body,
            )
            .await?;
            crate::fsutil::write_atomic(&out, text.as_bytes(), 0o644)?;
            println!(
                "request written to {}: answer it at the back office's /offline page or with `tessera backoffice offline respond`, then `tessera server offline apply`",
                out.display()
            );
            Ok(())
        }
        ServerCommand::Offline(
            cmd @ (OfflineCommand::Update { .. } | OfflineCommand::Confirm { .. }),
        ) => {
            let (at, out, path, next) = match cmd {
                OfflineCommand::Update { at, out } => (
                    at,
                    out,
                    "/api/v1/admin/offline-update-request",
                    "take it to the back office (its /offline page, or `tessera backoffice offline respond`), then `tessera server offline apply` the response and `tessera server offline confirm`",
                ),
                OfflineCommand::Confirm { at, out } => (
                    at,
                    out,
                    "/api/v1/admin/offline-confirmation",
                    "take it to the back office (`tessera backoffice offline respond`): it records which license this server serves",
                ),
                _ => return Err(anyhow!("not an offline file command")),
            };
            let text = admin_request(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                path,
                Body::Empty,
            )
            .await?;
            crate::fsutil::write_atomic(&out, text.as_bytes(), 0o644)?;
            println!("written to {}: {next}", out.display());
            Ok(())
        }
        ServerCommand::Offline(OfflineCommand::Apply {
            server,
            token,
            ca_cert,
            response,
        }) => {
            let text = std::fs::read_to_string(&response)
                .with_context(|| format!("cannot read {}", response.display()))?;
            let answer = admin_request(
                &server,
                &token_for(&server, token)?,
                ca_cert.as_deref(),
                "/api/v1/admin/offline-apply",
                Body::Text(text),
            )
            .await?;
            let v: FeatureRecords = parse_answer("/api/v1/admin/offline-apply", &answer)?;
            println!(
                "applied: the server now serves {} feature record(s)",
                v.feature_records
            );
            Ok(())
        }
        ServerCommand::Sync {
            server,
            token,
            ca_cert,
        } => {
            let v: SyncOutcome = admin_call(
                &server,
                &token_for(&server, token)?,
                ca_cert.as_deref(),
                "/api/v1/admin/sync",
                Body::Empty,
            )
            .await?;
            let over = v.over_use;
            if over.is_empty() {
                println!("synced: usage reported, licenses renewed");
            } else {
                println!(
                    "synced: licenses renewed; use over the entitlement reported for {}",
                    over.join(", ")
                );
            }
            Ok(())
        }
        ServerCommand::Status {
            server,
            token,
            ca_cert,
            json,
        } => {
            let v: Status = admin_call(
                &server,
                &token_for(&server, token)?,
                ca_cert.as_deref(),
                "/api/v1/admin/status",
                Body::None,
            )
            .await?;
            if json {
                // through a JSON value: the fields in the order the command has always printed
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::to_value(&v)?)?
                );
                return Ok(());
            }
            println!(
                "license server {} ({}), {} lease(s) held",
                v.hostid,
                if v.activated {
                    "activated"
                } else {
                    "not activated"
                },
                v.leases
            );
            if let Some(bo) = &v.backoffice_url {
                println!("  back office: {bo}");
            }
            for f in &v.features {
                let count = f.count.map_or("uncounted".to_string(), |c| c.to_string());
                println!(
                    "  {} {}  {} used of {} (+{} overdraft)  expires {}",
                    f.name, f.version, f.used, count, f.overdraft, f.expiry
                );
            }
            Ok(())
        }
        ServerCommand::UsageHistory {
            feature,
            at,
            since,
            until,
            resolution,
            json,
        } => {
            let now = tessera_core::Clock::now(&SystemClock);
            let mut q = vec![("feature", feature)];
            if let Some(s) = since {
                q.push(("from", since_arg(&s, now)?));
            }
            if let Some(u) = until {
                q.push(("to", since_arg(&u, now)?));
            }
            if let Some(r) = resolution {
                q.push(("resolution", r));
            }
            let v: UsageHistory = admin_call(
                &at.server,
                &token_for(&at.server, at.token.clone())?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/usage-history",
                Body::Query(q),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", history_table(&v));
            }
            Ok(())
        }
        ServerCommand::Denials {
            server,
            token,
            ca_cert,
            since,
            feature,
            limit,
            overdraft,
            json,
            csv,
        } => {
            let q = UsageEventQuery {
                kind: Some(if overdraft {
                    UsageEventKind::Overdraft
                } else {
                    UsageEventKind::Denial
                }),
                since: since
                    .as_deref()
                    .map(|s| since_arg(s, tessera_core::Clock::now(&SystemClock)))
                    .transpose()?,
                feature,
                limit: Some(limit),
            };
            if csv {
                let text = admin_request(
                    &server,
                    &token,
                    ca_cert.as_deref(),
                    "/api/v1/admin/denials.csv",
                    Body::Query(event_query(&q)),
                )
                .await?;
                print!("{text}");
                return Ok(());
            }
            let v: UsageEvents = admin_call(
                &server,
                &token,
                ca_cert.as_deref(),
                "/api/v1/admin/denials",
                Body::Query(event_query(&q)),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", events_table(&v));
            }
            Ok(())
        }
    }
}

/// `--since`: a time ago (`30m`, `24h`, `7d`) becomes the RFC 3339 time it names; a date or an
/// RFC 3339 time is passed on as it is (the server checks it).
fn since_arg(text: &str, now: time::OffsetDateTime) -> Result<String> {
    let text = text.trim();
    let ago = text
        .strip_suffix('m')
        .map(|n| (n, 60))
        .or_else(|| text.strip_suffix('h').map(|n| (n, 3600)))
        .or_else(|| text.strip_suffix('d').map(|n| (n, 86_400)));
    let Some((n, unit)) =
        ago.filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Ok(text.to_string());
    };
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("--since {text}: too far back"))?;
    let secs = n
        .checked_mul(unit)
        .ok_or_else(|| anyhow!("--since {text}: too far back"))?;
    let at = now
        .checked_sub(time::Duration::seconds(secs))
        .ok_or_else(|| anyhow!("--since {text}: too far back"))?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow!("--since {text}: {e}"))
}

/// The query string of a usage event query (the filters given).
fn event_query(q: &UsageEventQuery) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(k) = q.kind {
        out.push(("kind", k.as_str().to_string()));
    }
    if let Some(s) = &q.since {
        out.push(("since", s.clone()));
    }
    if let Some(f) = &q.feature {
        out.push(("feature", f.clone()));
    }
    if let Some(l) = q.limit {
        out.push(("limit", l.to_string()));
    }
    out
}

/// A usage history as a table: one line a period and version, with a heading; a sentence when
/// nothing was recorded.
fn history_table(v: &UsageHistory) -> String {
    let mut out = format!(
        "{} from {} to {}, per {}\n",
        v.feature, v.from, v.to, v.resolution
    );
    if v.series.iter().all(|s| s.points.is_empty()) {
        out.push_str("no use recorded in this range\n");
        return out;
    }
    out.push_str(&format!(
        "{:<26} {:<10} {:>6} {:>10}\n",
        "PERIOD", "VERSION", "USED", "COUNT"
    ));
    for s in &v.series {
        for p in &s.points {
            let count = p.count.map_or("uncounted".to_string(), |c| c.to_string());
            let over = if p.count.is_some_and(|c| p.used > c) {
                "  over-use"
            } else {
                ""
            };
            out.push_str(&format!(
                "{:<26} {:<10} {:>6} {:>10}{over}\n",
                p.at, s.version, p.used, count
            ));
        }
    }
    out
}

/// The events as a table, one a line, with a heading; a sentence when there are none.
fn events_table(v: &UsageEvents) -> String {
    let what = match v.kind {
        UsageEventKind::Denial => "denials",
        UsageEventKind::Overdraft => "overdraft grants",
    };
    if v.events.is_empty() {
        return format!(
            "no {what} recorded (events are kept {} days)\n",
            v.retention_days
        );
    }
    let heading = [
        "WHEN", "DEVICE", "USER", "ALIAS", "FEATURE", "VERSION", "COUNT", "CODE", "MESSAGE",
    ];
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 9]> = v
        .events
        .iter()
        .map(|e| {
            [
                e.at.clone(),
                e.device_id.clone(),
                dash(&e.user),
                dash(&e.alias),
                e.feature.clone(),
                dash(&e.version),
                e.count.to_string(),
                e.code.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    let mut widths = heading.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        format!("{}\n", l.trim_end())
    };
    let mut out = line(&heading.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    out.push_str(&format!(
        "{} {what} (newest first; kept {} days)\n",
        rows.len(),
        v.retention_days
    ));
    out
}

/// How `tessera server serve` changes its log filter while serving (the `log` property).
fn log_reload<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> tessera_server::properties::LogReload {
    tessera_server::properties::LogReload(Box::new(move |text: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(text)
            .map_err(|e| format!("\"{text}\" is not a log filter: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_history_prints_a_line_a_period_and_marks_over_use() {
        use tessera_wire::admin::{UsagePoint, UsageSeries};
        let mut v = UsageHistory {
            feature: "modeler".into(),
            from: "2026-06-01T08:00:00Z".into(),
            to: "2026-06-01T09:00:00Z".into(),
            resolution: "minute".into(),
            series: vec![UsageSeries {
                version: "2.0".into(),
                points: vec![
                    UsagePoint {
                        at: "2026-06-01T08:00:00Z".into(),
                        used: 2,
                        count: Some(3),
                    },
                    UsagePoint {
                        at: "2026-06-01T08:01:00Z".into(),
                        used: 4,
                        count: Some(3),
                    },
                ],
            }],
        };
        let t = history_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[2].contains("08:00:00Z") && !lines[2].contains("over-use"),
            "{t}"
        );
        assert!(lines[3].ends_with("over-use"), "{t}");
        v.series.clear();
        assert!(history_table(&v).contains("no use recorded"));
    }

    #[test]
    fn an_empty_token_is_refused_not_replaced_by_the_saved_one() {
        let e = token_for("http://127.0.0.1:7070", Some("  ".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the token given is empty"), "{e}");
        assert_eq!(
            token_for("http://127.0.0.1:7070", Some("tss_x".into())).unwrap(),
            "tss_x"
        );
    }
    use time::macros::datetime;

    #[test]
    fn since_takes_a_time_ago_or_passes_a_date_on() {
        let now = datetime!(2026-06-08 12:00 UTC);
        assert_eq!(since_arg("7d", now).unwrap(), "2026-06-01T12:00:00Z");
        assert_eq!(since_arg("24h", now).unwrap(), "2026-06-07T12:00:00Z");
        assert_eq!(since_arg("30m", now).unwrap(), "2026-06-08T11:30:00Z");
        assert_eq!(since_arg("2026-06-01", now).unwrap(), "2026-06-01");
        assert!(since_arg("99999999999999999d", now).is_err());
    }

    #[test]
    fn the_table_lines_up_and_says_when_there_is_nothing() {
        let e = tessera_wire::admin::UsageEvent {
            id: 1,
            kind: UsageEventKind::Denial,
            at: "2026-06-01T08:00:00Z".into(),
            device_id: "ethernet=0050569a3b01".into(),
            device_id_type: "ethernet".into(),
            device_type: "physical".into(),
            user: Some("alice".into()),
            alias: None,
            feature: "modeler".into(),
            version: Some("2.0".into()),
            count: 1,
            code: "all_in_use".into(),
            message: "all 3 seats are in use".into(),
        };
        let mut v = UsageEvents {
            kind: UsageEventKind::Denial,
            retention_days: 30,
            events: vec![e],
        };
        let t = events_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("WHEN"), "{t}");
        assert_eq!(
            lines[0].find("DEVICE"),
            lines[1].find("ethernet=0050569a3b01"),
            "{t}"
        );
        assert!(
            lines[1].contains("alice") && lines[1].contains("all_in_use"),
            "{t}"
        );
        assert!(lines[2].contains("1 denials"), "{t}");
        v.events.clear();
        v.kind = UsageEventKind::Overdraft;
        assert_eq!(
            events_table(&v),
            "no overdraft grants recorded (events are kept 30 days)\n"
        );
    }
}
