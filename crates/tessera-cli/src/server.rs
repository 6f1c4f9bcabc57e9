//! `tessera server …`: run a license server and administer it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use tessera_host::SystemClock;
use tessera_server::http;
use tessera_wire::admin::{
    ActivateRequest, FeatureRecords, KeyCount, OfflineRequestBody, Status, SyncOutcome,
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
        /// The admin token printed by `init`.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: String,
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
    /// Reservations: seats set aside for one device or one user, in groups.
    #[command(subcommand)]
    Reservations(crate::reservations::ReservationsCommand),
    /// Named license pools: a model that splits seats into pools and says who draws from which.
    #[command(subcommand)]
    Pools(crate::pools::PoolsCommand),
    /// Sync with the back office now: send the usage report, install the renewed licenses.
    Sync {
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
        /// The admin token printed by `init`.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: String,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Replace the admin token with a new one, printed once. The old token stops working at once,
    /// also on a running server (it reads the token from the store at each admin request). Needs
    /// the data directory, not the old token: also the way back in when the token is lost.
    Rotate {
        /// The data directory.
        #[arg(long, default_value = "tessera-server", env = "TESSERA_SERVER_DATA")]
        data: PathBuf,
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
        /// The admin token printed by `init`.
        #[arg(long, env = "TESSERA_SERVER_TOKEN")]
        token: String,
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
    /// Apply the back office's response file.
    Apply {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(cmd))
}

/// What an admin request sends.
pub(crate) enum Body {
    /// A GET.
    None,
    /// A POST without a body.
    Empty,
    /// A POST of a wire type as JSON.
    Json(serde_json::Value),
    /// A POST of a JSON document given as text.
    Text(String),
    /// A POST of a plain text document.
    Plain(String),
    /// A DELETE.
    Delete,
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
        Body::Empty => client.post(&url),
        Body::Json(b) => client.post(&url).json(&b),
        Body::Text(t) => client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(t),
        Body::Plain(t) => client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(t),
        Body::Delete => client.delete(&url),
    };
    let resp = req
        .bearer_auth(token)
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

async fn run_async(cmd: ServerCommand) -> Result<()> {
    match cmd {
        ServerCommand::Init {
            data,
            producer_key,
            database,
            hostid,
        } => {
            let pem = std::fs::read_to_string(&producer_key)
                .with_context(|| format!("cannot read {}", producer_key.display()))?;
            let token =
                tessera_server::init(&data, &pem, database.as_deref(), hostid.as_deref()).await?;
            println!("License server created in {}", data.display());
            println!(
                "  admin token: {token}   (shown once; used by `tessera server activate|status`)"
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
                    let _ = tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(false)
                        .with_writer(std::sync::Mutex::new(file))
                        .try_init();
                }
                None => {
                    // the log goes to standard error; standard output says where it listens
                    // colours only on a terminal: not in the journal or a redirected file
                    let _ = tracing_subscriber::fmt()
                        .with_env_filter(filter)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_writer(std::io::stderr)
                        .try_init();
                }
            }
            tracing::info!(hostid = %server.hostid, cluster = server.config.cluster, "license server starting");
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
        ServerCommand::Pools(cmd) => crate::pools::run(cmd).await,
        ServerCommand::Token(TokenCommand::Rotate { data }) => {
            let token = tessera_server::rotate_admin_token(&data).await?;
            println!("new admin token: {token}   (shown once; the old one no longer works)");
            Ok(())
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
                &token,
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
                &token,
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
                &token,
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
                &token,
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
                &token,
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
            for f in &v.features {
                let count = f.count.map_or("uncounted".to_string(), |c| c.to_string());
                println!(
                    "  {} {}  {} used of {} (+{} overdraft)  expires {}",
                    f.name, f.version, f.used, count, f.overdraft, f.expiry
                );
            }
            Ok(())
        }
    }
}
