//! `tessera backoffice …`: run the producer's back office and do every producer action from the
//! command line. Actions work on the data directory directly (through the same service the HTTP
//! API uses), so they need no token and work while the server runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use tessera_backoffice::daemon;
use tessera_backoffice::model::{LicenseModel, LinePolicy, ProductFeature, ProductSpec};
use tessera_backoffice::service::{BackOffice, LineView, NewLine};
use tessera_core::time_fmt::{display_date, parse_time, DateBound};
use tessera_host::SystemClock;
use tessera_store::{AnyStore, OutboxFilter, OutboxStore as _, Page};

/// Where the back office lives.
#[derive(Debug, Args)]
pub struct Data {
    /// The back office's data directory.
    #[arg(
        long,
        default_value = "tessera-backoffice",
        env = "TESSERA_BACKOFFICE_DATA"
    )]
    data: PathBuf,
    /// Database URL (overrides the configuration): sqlite://PATH or postgres://…
    #[arg(long, env = "TESSERA_BACKOFFICE_DATABASE")]
    database: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackofficeCommand {
    /// Create a back office: producer keys, configuration, store, and the first admin user
    /// (its password and an API token are printed once).
    Init {
        #[command(flatten)]
        data: Data,
        /// The producer's name, written into every license.
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Serve the back office (REST API, public /activate and /offline pages, /healthz, /metrics).
    Serve {
        #[command(flatten)]
        data: Data,
        /// Address to listen on (default from the configuration, 127.0.0.1:7171).
        #[arg(long)]
        listen: Option<String>,
        /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Products and their features.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Customers: add and list the producer's customers.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Entitlements (what a customer bought) and their lines.
    #[command(subcommand)]
    Entitlement(EntitlementCommand),
    /// Activation keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Release a key's activations so it can be activated on a new machine.
    Rehost {
        #[command(flatten)]
        data: Data,
        /// The key or its line id (LIN-…).
        key: String,
        /// Release only this holder (e.g. device:pc_id=… or server:ethernet=…).
        #[arg(long)]
        holder: Option<String>,
    },
    /// Grace periods.
    #[command(subcommand)]
    Grace(GraceCommand),
    /// Offline activation files.
    #[command(subcommand)]
    Offline(OfflineCommand),
    /// Make the unlock code for a node-locked key on a PC identifier (what the /activate page does).
    Unlock {
        #[command(flatten)]
        data: Data,
        /// The activation key.
        #[arg(long)]
        key: String,
        /// The PC identifier.
        #[arg(long)]
        pc_id: String,
    },
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Back-office users (argon2id passwords).
    #[command(subcommand)]
    User(UserCommand),
    /// Usage reports from license servers.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Mail and webhook calls waiting, sent or given up.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Issue a demo key and e-mail it (what the /demo page does).
    Demo {
        #[command(flatten)]
        data: Data,
        /// The name of the person the demo is for.
        #[arg(long)]
        name: String,
        /// Their company.
        #[arg(long, default_value = "")]
        company: String,
        /// E-mail address the key is sent to.
        #[arg(long)]
        email: String,
        /// Product id.
        #[arg(long)]
        product: String,
    },
    /// Take a usage report file from a license server and write the renewed license bundle.
    Renew {
        #[command(flatten)]
        data: Data,
        /// The usage report file.
        report: PathBuf,
        /// Where to write the renewed license.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List messages, newest first.
    List {
        #[command(flatten)]
        data: Data,
        /// Which: pending, sent, failed (given up) or all.
        #[arg(long, default_value = "all")]
        state: String,
        /// Rows to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Try to deliver every message that is due now.
    Deliver {
        #[command(flatten)]
        data: Data,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// List usage reports, newest first.
    List {
        #[command(flatten)]
        data: Data,
        /// Rows to show.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Define a product.
    Add {
        #[command(flatten)]
        data: Data,
        /// Product id (letters, digits, '-', '_').
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// A feature, NAME or NAME:VERSION (repeat, in order).
        #[arg(long = "feature", required = true)]
        features: Vec<String>,
        /// Trial length in days.
        #[arg(long, default_value_t = 60)]
        trial_days: u32,
        /// A feature that remains after a trial (repeat).
        #[arg(long = "basic")]
        basic: Vec<String>,
        /// Product version written into licenses.
        #[arg(long)]
        product_version: Option<String>,
    },
    /// Append features to a product.
    AddFeature {
        #[command(flatten)]
        data: Data,
        /// Product id.
        id: String,
        /// A feature, NAME or NAME:VERSION (repeat).
        #[arg(long = "feature", required = true)]
        features: Vec<String>,
    },
    /// List products.
    List {
        #[command(flatten)]
        data: Data,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Add a customer.
    Add {
        #[command(flatten)]
        data: Data,
        /// The customer's name.
        #[arg(long)]
        name: String,
        /// Contact e-mail.
        #[arg(long)]
        email: Option<String>,
    },
    /// List customers.
    List {
        #[command(flatten)]
        data: Data,
    },
}

#[derive(Debug, Subcommand)]
pub enum EntitlementCommand {
    /// Create an entitlement; prints each line's activation key (shown this once).
    ///
    /// A line is written KEY=VALUE pairs separated by commas:
    /// product=ID,model=floating|node_locked|named_user|metered|uncounted,count=N
    /// and optionally features=a+b, expires=YYYY-MM-DD, starts=YYYY-MM-DD, term_days=N,
    /// overdraft=N, grace_days=N, renewal_days=N, offline_max_days=N, offline_refresh_days=N,
    /// offline_max_active=N, and lock.SETTING=VALUE to fix a license-server setting (lease_seconds,
    /// max_borrow_days, max_borrows_per_account, max_leases_per_device,
    /// capability_requests_per_minute, cluster=true|false).
    Create {
        #[command(flatten)]
        data: Data,
        /// The customer id (CUS-…).
        #[arg(long)]
        customer: String,
        /// A line (repeat).
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
    },
    /// Show an entitlement with its lines and their activations.
    Show {
        #[command(flatten)]
        data: Data,
        /// Entitlement id (ENT-…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List keys (hints only) with their use, newest first.
    List {
        #[command(flatten)]
        data: Data,
        /// Rows to show.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Revoke a key.
    Revoke {
        #[command(flatten)]
        data: Data,
        /// The key or its line id.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GraceCommand {
    /// Add days to every grace period of one customer's licenses (0 resets).
    Extend {
        #[command(flatten)]
        data: Data,
        /// Customer id.
        customer: String,
        /// Extra days.
        #[arg(long)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum OfflineCommand {
    /// Answer a request file (activation, renewal with usage) with a response file; a license
    /// server's confirmation is recorded and acknowledged instead (no file is written).
    Respond {
        #[command(flatten)]
        data: Data,
        /// The request file.
        request: PathBuf,
        /// Where to write the response file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; a random password is printed once.
    Add {
        #[command(flatten)]
        data: Data,
        /// Login name.
        #[arg(long)]
        name: String,
    },
    /// Give a user a new random password (printed once).
    ResetPassword {
        #[command(flatten)]
        data: Data,
        /// Login name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user (printed once).
    Create {
        #[command(flatten)]
        data: Data,
        /// The user.
        #[arg(long, default_value = "admin")]
        user: String,
        /// A label.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token stops working (1 to 3650); no expiry when not given.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List API tokens (ids, labels, users, expiry, revocation; never the tokens).
    List {
        #[command(flatten)]
        data: Data,
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API token by its id (as `token list` shows it) or by the token itself.
    Revoke {
        #[command(flatten)]
        data: Data,
        /// The token's id, or the token.
        id: String,
    },
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn open(d: &Data) -> Result<BackOffice<AnyStore>> {
    Ok(
        daemon::open(&d.data, d.database.as_deref(), Arc::new(SystemClock))
            .await?
            .0,
    )
}

/// A unix time as the CLI shows it.
fn unix_date(secs: i64) -> String {
    tessera_core::time::OffsetDateTime::from_unix_timestamp(secs)
        .map(tessera_core::time_fmt::display_time)
        .unwrap_or_else(|_| secs.to_string())
}

fn show<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        text(value);
    }
    Ok(())
}

fn parse_features(list: &[String]) -> Result<Vec<ProductFeature>> {
    list.iter()
        .map(|f| {
            let (name, version) = f.split_once(':').unwrap_or((f, "1.0"));
            Ok(ProductFeature {
                name: name.trim().to_string(),
                version: version
                    .parse()
                    .map_err(|e| anyhow!("--feature {f}: version: {e}"))?,
            })
        })
        .collect()
}

/// Parses `product=cad,model=floating,count=10,…`.
pub fn parse_line(text: &str) -> Result<NewLine> {
    let mut product = None;
    let mut model = None;
    let mut count = None;
    let mut policy = LinePolicy {
        features: vec![],
        count: 0,
        model: LicenseModel::Floating,
        starts_at: None,
        expires_at: None,
        term_days: None,
        overdraft: 0,
        policy: Default::default(),
        demo: false,
    };
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--line {text}: '{pair}' is not KEY=VALUE"))?;
        let num = |v: &str| -> Result<u32> {
            v.parse()
                .map_err(|_| anyhow!("--line {text}: {k} must be a whole number, not '{v}'"))
        };
        match k.trim() {
            "product" => product = Some(v.to_string()),
            "model" => {
                model = Some(match v {
                    "floating" => LicenseModel::Floating,
                    "node_locked" | "node-locked" => LicenseModel::NodeLocked,
                    "named_user" | "named-user" => LicenseModel::NamedUser,
                    "metered" => LicenseModel::Metered,
                    "uncounted" => LicenseModel::Uncounted,
                    other => bail!("--line {text}: model '{other}' is not one of floating, node_locked, named_user, metered, uncounted"),
                })
            }
            "count" => count = Some(num(v)?),
            "features" => policy.features = v.split('+').map(str::to_string).collect(),
            "expires" => {
                policy.expires_at = Some(parse_time(v, DateBound::EndOfDay).map_err(|e| anyhow!("--line {text}: expires: {e}"))?)
            }
            "starts" => {
                policy.starts_at = Some(parse_time(v, DateBound::StartOfDay).map_err(|e| anyhow!("--line {text}: starts: {e}"))?)
            }
            "term_days" => policy.term_days = Some(num(v)?),
            "overdraft" => policy.overdraft = num(v)?,
            "grace_days" => policy.policy.grace_days = num(v)?,
            "renewal_days" => policy.policy.renewal_days = num(v)?,
            "offline_max_days" => policy.policy.offline_max_days = num(v)?,
            "offline_refresh_days" => policy.policy.offline_refresh_days = num(v)?,
            "offline_max_active" => policy.policy.offline_max_active = num(v)?,
            lock if lock.starts_with("lock.") => {
                let name = &lock["lock.".len()..];
                let value = tessera_core::license::ServerLock::named(name)
                    .and_then(|l| l.parse(v))
                    .map_err(|e| anyhow!("--line {text}: {e}"))?;
                policy.policy.server_locks.insert(name.to_string(), value);
            }
            other => bail!("--line {text}: unknown key '{other}'"),
        }
    }
    policy.model = model.ok_or_else(|| anyhow!("--line {text}: model=… is required"))?;
    policy.count = count.unwrap_or(if policy.model == LicenseModel::Uncounted {
        0
    } else {
        1
    });
    if count.is_none() && policy.model != LicenseModel::Uncounted {
        bail!("--line {text}: count=… is required");
    }
    Ok(NewLine {
        product: product.ok_or_else(|| anyhow!("--line {text}: product=… is required"))?,
        policy,
    })
}

fn print_line(l: &LineView) {
    let features = if l.policy.features.is_empty() {
        "all features".to_string()
    } else {
        l.policy.features.join("+")
    };
    let expiry = l
        .policy
        .expires_at
        .map(display_date)
        .or(l
            .policy
            .term_days
            .map(|d| format!("{d} days from first activation")))
        .unwrap_or_else(|| "permanent".into());
    let status = if l.revoked_at.is_some() {
        "  REVOKED"
    } else {
        ""
    };
    println!(
        "  {}  {}  key {}…  {} {} count {} ({} used)  {}  expires {}{}",
        l.line_id,
        l.entitlement_id,
        l.key_hint,
        l.product,
        l.policy.model,
        l.policy.count,
        l.used,
        features,
        expiry,
        status
    );
    if let Some(k) = &l.key {
        println!("      activation key: {k}");
    }
    for h in &l.activated_by {
        println!("      activated by {h}");
    }
}

/// What `init --json` prints.
#[derive(Serialize)]
struct InitShown<'a> {
    admin_user: &'a str,
    admin_password: &'a str,
    admin_token: &'a str,
    kid: &'a str,
    database: &'a str,
}

/// One message of the outbox as `outbox list` shows it.
#[derive(Serialize)]
struct OutboxRow<'a> {
    id: i64,
    kind: &'a str,
    recipient: &'a str,
    subject: &'a str,
    status: &'static str,
    attempts: i64,
    last_error: Option<&'a str>,
    created_at: i64,
    next_attempt_at: i64,
}

/// Runs a back-office command.
pub fn run(cmd: BackofficeCommand) -> Result<()> {
    // serving: as many threads as backoffice.toml says (default one per CPU core); a file that
    // does not read is reported by the command itself
    let workers = match &cmd {
        BackofficeCommand::Serve { data, .. } => daemon::load_config(&data.data)
            .map(|c| c.worker_threads())
            .unwrap_or(2),
        _ => 2,
    };
    let rt = runtime(workers)?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: BackofficeCommand) -> Result<()> {
    match cmd {
        BackofficeCommand::Init { data, issuer } => {
            let report = daemon::init(
                &data.data,
                data.database.as_deref(),
                issuer.as_deref(),
                &SystemClock,
            )
            .await?;
            if data.json {
                let shown = InitShown {
                    admin_user: &report.admin_user,
                    admin_password: &report.admin_password,
                    admin_token: &report.admin_token,
                    kid: &report.kid,
                    database: &report.database,
                };
                // through a JSON value: the fields in the order the command has always printed
                println!("{}", serde_json::to_value(shown)?);
            } else {
                println!("Back office created in {}", data.data.display());
                println!("  producer key id: {}", report.kid);
                println!("  public keys to ship: {0}/keys/producer.pub (licenses), {0}/keys/unlock.pub (unlock codes)", data.data.display());
                println!("  database: {}", report.database);
                println!("  admin user: {}", report.admin_user);
                println!(
                    "  admin password: {}   (shown once; store it now)",
                    report.admin_password
                );
                println!("  admin API token: {}   (shown once)", report.admin_token);
                println!(
                    "Start it with: tessera backoffice serve --data {}",
                    data.data.display()
                );
            }
            Ok(())
        }
        BackofficeCommand::Serve {
            data,
            listen,
            tls_cert,
            tls_key,
        } => serve(&data, listen, tls_cert, tls_key).await,
        BackofficeCommand::Product(p) => match p {
            ProductCommand::Add {
                data,
                id,
                name,
                features,
                trial_days,
                basic,
                product_version,
            } => {
                let bo = open(&data).await?;
                let spec = ProductSpec {
                    features: parse_features(&features)?,
                    version: product_version,
                    trial_days,
                    basic_features: basic,
                    demo_days: 30,
                };
                let p = bo.create_product(&id, &name, spec).await?;
                show(data.json, &p, |p| {
                    let f: Vec<String> = p
                        .spec
                        .features
                        .iter()
                        .map(|f| format!("{} {}", f.name, f.version))
                        .collect();
                    println!(
                        "product {} ({}) with features: {}",
                        p.id,
                        p.name,
                        f.join(", ")
                    );
                })
            }
            ProductCommand::AddFeature { data, id, features } => {
                let bo = open(&data).await?;
                let p = bo.add_features(&id, parse_features(&features)?).await?;
                show(data.json, &p, |p| {
                    let f: Vec<String> = p
                        .spec
                        .features
                        .iter()
                        .map(|f| format!("{} {}", f.name, f.version))
                        .collect();
                    println!("product {} now has features: {}", p.id, f.join(", "));
                })
            }
            ProductCommand::List { data } => {
                let bo = open(&data).await?;
                let list = bo.list_products().await?;
                show(data.json, &list, |list| {
                    if list.is_empty() {
                        println!("no products yet: tessera backoffice product add --id ID --feature NAME");
                    }
                    for p in list {
                        let f: Vec<String> = p
                            .spec
                            .features
                            .iter()
                            .map(|f| format!("{} {}", f.name, f.version))
                            .collect();
                        println!(
                            "{}  {}  trial {} days  features: {}",
                            p.id,
                            p.name,
                            p.spec.trial_days,
                            f.join(", ")
                        );
                    }
                })
            }
        },
        BackofficeCommand::Customer(c) => match c {
            CustomerCommand::Add { data, name, email } => {
                let bo = open(&data).await?;
                let c = bo.create_customer(&name, email.as_deref()).await?;
                show(data.json, &c, |c| {
                    println!("customer {} ({})", c.id, c.name)
                })
            }
            CustomerCommand::List { data } => {
                let bo = open(&data).await?;
                let list = bo.list_customers().await?;
                show(data.json, &list, |list| {
                    for c in list {
                        println!(
                            "{}  {}  {}  grace +{} days",
                            c.id,
                            c.name,
                            c.email.as_deref().unwrap_or("-"),
                            c.grace_extra_days
                        );
                    }
                })
            }
        },
        BackofficeCommand::Entitlement(e) => match e {
            EntitlementCommand::Create {
                data,
                customer,
                lines,
            } => {
                let bo = open(&data).await?;
                let lines = lines
                    .iter()
                    .map(|l| parse_line(l))
                    .collect::<Result<Vec<_>>>()?;
                let e = bo.create_entitlement(&customer, lines).await?;
                show(data.json, &e, |e| {
                    println!(
                        "entitlement {} for {} (the keys are shown this once):",
                        e.id, e.customer_id
                    );
                    for l in &e.lines {
                        print_line(l);
                    }
                })
            }
            EntitlementCommand::Show { data, id } => {
                let bo = open(&data).await?;
                let e = bo.get_entitlement(&id).await?;
                show(data.json, &e, |e| {
                    println!("entitlement {} for {}:", e.id, e.customer_id);
                    for l in &e.lines {
                        print_line(l);
                    }
                })
            }
        },
        BackofficeCommand::Key(k) => match k {
            KeyCommand::List { data, limit } => {
                let bo = open(&data).await?;
                let list = bo
                    .list_keys(Page {
                        offset: 0,
                        limit: limit.clamp(1, 10_000),
                    })
                    .await?;
                show(data.json, &list, |list| list.iter().for_each(print_line))
            }
            KeyCommand::Revoke { data, key } => {
                let bo = open(&data).await?;
                let l = bo.revoke(&key).await?;
                show(data.json, &l, |l| {
                    println!("revoked:");
                    print_line(l);
                })
            }
        },
        BackofficeCommand::Rehost { data, key, holder } => {
            let bo = open(&data).await?;
            let (l, n) = bo.rehost(&key, holder.as_deref()).await?;
            show(data.json, &l, |l| {
                println!("released {n} activation(s); the key can be activated on a new machine:");
                print_line(l);
            })
        }
        BackofficeCommand::Grace(GraceCommand::Extend {
            data,
            customer,
            days,
        }) => {
            let bo = open(&data).await?;
            let c = bo.extend_grace(&customer, days).await?;
            show(data.json, &c, |c| {
                println!(
                    "{} ({}): grace periods extended by {} days on their next license",
                    c.id, c.name, c.grace_extra_days
                )
            })
        }
        BackofficeCommand::Offline(OfflineCommand::Respond { data, request, out }) => {
            let bo = open(&data).await?;
            let text = std::fs::read_to_string(&request)
                .with_context(|| format!("cannot read the request file {}", request.display()))?;
            let response = bo
                .offline_respond(&text)
                .await
                .with_context(|| format!("{}", request.display()))?;
            if response.starts_with("confirmed: ") {
                // a confirmation is recorded, not answered with a file
                print!("{response}");
                return Ok(());
            }
            crate::fsutil::write_atomic(&out, response.as_bytes(), 0o644)?;
            println!(
                "wrote the response to {}: apply it where the request was made",
                out.display()
            );
            Ok(())
        }
        BackofficeCommand::Unlock { data, key, pc_id } => {
            let bo = open(&data).await?;
            let r = bo.unlock(&key, &pc_id).await?;
            show(data.json, &r, |r| {
                println!("unlock code for {} ({}):", r.product, r.features.join(", "));
                println!("  {}", r.code);
                if let Some(e) = &r.expires {
                    println!("  valid through {e}");
                }
            })
        }
        BackofficeCommand::Usage(UsageCommand::List { data, limit }) => {
            let bo = open(&data).await?;
            let list = bo
                .list_usage(Page {
                    offset: 0,
                    limit: limit.clamp(1, 10_000),
                })
                .await?;
            show(data.json, &list, |list| {
                if list.is_empty() {
                    println!("no usage reports yet");
                }
                for u in list {
                    let when =
                        tessera_core::time::OffsetDateTime::from_unix_timestamp(u.received_at)
                            .map(tessera_core::time_fmt::display_time)
                            .unwrap_or_default();
                    let flag = if u.over_use { "  OVER ENTITLEMENT" } else { "" };
                    println!(
                        "{}  {}  {}  customer {}{}",
                        when,
                        u.id,
                        u.reporter,
                        u.customer_id.as_deref().unwrap_or("-"),
                        flag
                    );
                    if let Some(fs) = u.report["features"].as_array() {
                        for f in fs {
                            println!(
                                "    {} peak {} in use {} metered {} overdraft peak {}",
                                f["name"].as_str().unwrap_or("?"),
                                f["peak"],
                                f["in_use"],
                                f["metered_units"],
                                f["overdraft_peak"]
                            );
                        }
                    }
                }
            })
        }
        BackofficeCommand::Outbox(OutboxCommand::List { data, state, limit }) => {
            let bo = open(&data).await?;
            let filter = match state.as_str() {
                "pending" => OutboxFilter::Pending,
                "sent" => OutboxFilter::Sent,
                "failed" => OutboxFilter::Failed,
                "all" => OutboxFilter::All,
                other => bail!("--state {other}: use pending, sent, failed or all"),
            };
            let list = bo
                .store()
                .list_messages(
                    filter,
                    Page {
                        offset: 0,
                        limit: limit.clamp(1, 10_000),
                    },
                )
                .await?;
            let rows: Vec<OutboxRow> = list
                .iter()
                .map(|m| OutboxRow {
                    id: m.id,
                    kind: m.kind.as_str(),
                    recipient: &m.recipient,
                    subject: &m.subject,
                    status: if m.sent_at.is_some() {
                        "sent"
                    } else if m.given_up_at.is_some() {
                        "given up"
                    } else {
                        "pending"
                    },
                    attempts: m.attempts,
                    last_error: m.last_error.as_deref(),
                    created_at: m.created_at.unix_timestamp(),
                    next_attempt_at: m.next_attempt_at.unix_timestamp(),
                })
                .collect();
            // through a JSON value: the fields in the order the command has always printed
            let json = serde_json::to_value(&rows)?;
            show(data.json, &json, |_| {
                if rows.is_empty() {
                    println!("the outbox is empty");
                }
                for r in &rows {
                    println!(
                        "#{} {} to {} \"{}\": {} after {} attempt(s){}",
                        r.id,
                        r.kind,
                        r.recipient,
                        r.subject,
                        r.status,
                        r.attempts,
                        r.last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    );
                }
            })
        }
        BackofficeCommand::Outbox(OutboxCommand::Deliver { data }) => {
            let bo = open(&data).await?;
            let Some(outbox) = bo.outbox() else {
                bail!(
                    "no [mail] or [webhook] is configured in {}/backoffice.toml",
                    data.data.display()
                );
            };
            let r = outbox.deliver_due(bo.now()).await?;
            println!(
                "sent {}, to retry {}, given up {}",
                r.sent, r.retried, r.given_up
            );
            Ok(())
        }
        BackofficeCommand::Demo {
            data,
            name,
            company,
            email,
            product,
        } => {
            let bo = open(&data).await?;
            let r = bo.demo_request(&name, &company, &email, &product).await?;
            if let Some(o) = bo.outbox() {
                o.deliver_due(bo.now()).await?;
            }
            show(data.json, &r, |r| {
                println!(
                    "demo key for {} queued to {email} (entitlement {}, customer {})",
                    r.product, r.entitlement_id, r.customer_id
                )
            })
        }
        BackofficeCommand::Renew { data, report, out } => {
            let bo = open(&data).await?;
            let text = std::fs::read_to_string(&report)
                .with_context(|| format!("cannot read the usage report {}", report.display()))?;
            let outcome = bo
                .usage_report(&text)
                .await
                .with_context(|| format!("{}", report.display()))?;
            let renewal = outcome.renewal.as_ref().ok_or_else(|| {
                anyhow!(
                    "this is an application's usage report: applications renew by activating again"
                )
            })?;
            crate::fsutil::write_atomic(&out, renewal.license.as_bytes(), 0o644)?;
            for o in &outcome.over_use {
                println!(
                    "over entitlement: {} peak {} with {} licensed",
                    o.feature, o.peak, o.licensed
                );
            }
            println!("wrote the renewed license to {}", out.display());
            Ok(())
        }
        BackofficeCommand::User(UserCommand::Add { data, name }) => {
            let bo = open(&data).await?;
            let password = tessera_backoffice::auth::random_password();
            tessera_backoffice::auth::create_user(bo.store(), &name, &password, bo.now()).await?;
            println!("user {name} created; password (shown once): {password}");
            Ok(())
        }
        BackofficeCommand::User(UserCommand::ResetPassword { data, name }) => {
            let bo = open(&data).await?;
            let password = tessera_backoffice::auth::random_password();
            if bo.store().get_user(&name).await?.is_none() {
                bail!("there is no user '{name}'");
            }
            let revoked =
                tessera_backoffice::auth::reset_password(bo.store(), &name, &password, bo.now())
                    .await?;
            println!("new password for {name} (shown once): {password}");
            println!("revoked {revoked} API token(s) of {name}");
            Ok(())
        }
        BackofficeCommand::Token(TokenCommand::Create {
            data,
            user,
            name,
            expires_days,
        }) => {
            let bo = open(&data).await?;
            if bo.store().get_user(&user).await?.is_none() {
                bail!("there is no user '{user}'");
            }
            let token = tessera_backoffice::auth::create_token(
                bo.store(),
                &user,
                &name,
                expires_days,
                bo.now(),
            )
            .await?;
            println!("{token}");
            Ok(())
        }
        BackofficeCommand::Token(TokenCommand::List { data, user }) => {
            let bo = open(&data).await?;
            let list = tessera_backoffice::auth::list_tokens(bo.store(), user.as_deref(), bo.now())
                .await?;
            show(data.json, &list, |list| {
                if list.is_empty() {
                    println!("no API tokens");
                }
                for t in list {
                    println!(
                        "{}  {:<8} user {:<12} label {:<16} created {}  {}",
                        t.id,
                        t.state,
                        t.user,
                        t.name,
                        unix_date(t.created_at),
                        match (t.revoked_at, t.expires_at) {
                            (Some(r), _) => format!("revoked {}", unix_date(r)),
                            (None, Some(e)) => format!("expires {}", unix_date(e)),
                            (None, None) => "no expiry".into(),
                        }
                    );
                }
            })
        }
        BackofficeCommand::Token(TokenCommand::Revoke { data, id }) => {
            let bo = open(&data).await?;
            let t = tessera_backoffice::auth::revoke_token(bo.store(), &id, bo.now()).await?;
            show(data.json, &t, |t| {
                println!("token {} ({}, user {}) is revoked", t.id, t.name, t.user)
            })
        }
    }
}

use tessera_store::AuthStore as _;

async fn serve(
    data: &Data,
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
) -> Result<()> {
    let (bo, mut config) =
        daemon::open(&data.data, data.database.as_deref(), Arc::new(SystemClock)).await?;
    init_logging(&config.log);
    if let Some(l) = listen {
        config.listen = l;
    }
    if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
        config.tls = Some(daemon::TlsConfig { cert, key });
    }
    let addr: SocketAddr = config.listen.parse().map_err(|e| {
        anyhow!(
            "listen address '{}': {e} (write HOST:PORT, e.g. 127.0.0.1:7171)",
            config.listen
        )
    })?;
    let state = daemon::state(bo, &config);
    let worker = daemon::start_outbox_worker(&state, Arc::new(SystemClock));
    if worker.is_none() {
        eprintln!("note: no [mail] or [webhook] in the configuration: unlock codes are shown but not e-mailed, and the demo form is off");
    }
    let signal = tessera_host::serve::shutdown_signal();
    let shutdown = async {
        signal.await;
        crate::say(false, "stopping");
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "back office starting"
    );
    println!(
        "back office listening on {scheme}://{local} (data {})",
        data.data.display()
    );
    if config.tls.is_none() {
        crate::warn_plain_http(
            local,
            "the back office",
            "administrators' logins and API tokens",
        );
    }
    daemon::serve_with(
        listener,
        state,
        config.tls.as_ref(),
        config.limits(),
        shutdown,
    )
    .await?;
    if let Some((handle, stop)) = worker {
        let _ = stop.send(true);
        let _ = handle.await;
    }
    tracing::info!("back office stopped");
    crate::say(true, "back office stopped");
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // the log goes to standard error; standard output says where the service listens (as for the
    // license server)
    // colours only on a terminal: not in the journal or a redirected file
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_locks_license_server_settings_and_refuses_unknown_or_bad_ones() {
        let l = parse_line(
            "product=cad,model=floating,count=3,lock.lease_seconds=900,lock.cluster=false",
        )
        .unwrap();
        let locks = &l.policy.policy.server_locks;
        assert_eq!(
            locks.get("lease_seconds"),
            Some(&tessera_core::license::LockedValue::Number(900))
        );
        assert_eq!(
            locks.get("cluster"),
            Some(&tessera_core::license::LockedValue::Flag(false))
        );
        let e = parse_line("product=cad,model=floating,count=3,lock.listen=1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'listen' is not a license-server setting"),
            "{e}"
        );
        let e = parse_line("product=cad,model=floating,count=3,lock.lease_seconds=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease_seconds: 1 is outside 3 to 86400"), "{e}");
    }
}
