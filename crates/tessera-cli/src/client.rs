//! `tessera client …`: what an application does, from the command line: activate this machine
//! online or with request/response files, check an unlock code, start a trial.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use tessera_core::offline::{RequestBody, RequestClaims, ResponseClaims};
use tessera_core::unlock::{UnlockCode, UnlockPublicKey};
use tessera_core::{ActivationKey, Clock, Keyring, License, PcId, SigningKey};
use tessera_host::SystemClock;
use tessera_wire::activation::{
    ActivationResult, DeviceActivationRequest, TrialRequest, TrialResult,
};
use tessera_wire::ErrorAnswer;

use crate::commands::load_public_key;
use crate::fsutil::{read_text, write_atomic};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Activate a node-locked key on this machine online; writes the license file.
    Activate {
        /// The back office, e.g. http://127.0.0.1:7171
        #[arg(long, env = "TESSERA_BACKOFFICE_URL")]
        url: String,
        /// The activation key.
        #[arg(long)]
        key: String,
        /// The product id (the PC identifier is salted with it).
        #[arg(long)]
        product: String,
        /// The producer's public key, to check the license received.
        #[arg(long)]
        producer_key: PathBuf,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Where to write the license.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an offline activation request file for this machine.
    OfflineRequest {
        /// The activation key.
        #[arg(long)]
        key: String,
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key (the request names it).
        #[arg(long)]
        producer_key: PathBuf,
        /// Where to write the request.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an offline response file and write the license it holds.
    OfflineApply {
        /// The response file.
        response: PathBuf,
        /// The producer's public key.
        #[arg(long)]
        producer_key: PathBuf,
        /// Where to write the license.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a typed unlock code for a key on this machine.
    Unlock {
        /// The unlock code as typed.
        #[arg(long)]
        code: String,
        /// The activation key it was made for.
        #[arg(long)]
        key: String,
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's unlock public key (unlock.pub).
        #[arg(long)]
        unlock_key: PathBuf,
        /// The product's features in order, comma-separated, to name what is unlocked.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// What this machine may use: each feature checked as the application would (license file,
    /// unlock codes, trial, basic features), with days left. Exits 1 when one may not be used.
    Status {
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key.
        #[arg(long)]
        producer_key: PathBuf,
        /// The unlock public key, to count typed unlock codes.
        #[arg(long)]
        unlock_key: Option<PathBuf>,
        /// The product's features in order (for unlock codes), comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// A trial of this many days on first run.
        #[arg(long)]
        trial_days: Option<u32>,
        /// Features that remain after the trial, comma-separated.
        #[arg(long, value_delimiter = ',')]
        basic: Vec<String>,
        /// The back office (trial registration, validation at launch).
        #[arg(long, env = "TESSERA_BACKOFFICE_URL")]
        url: Option<String>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The license file (else TESSERA_LICENSE, the state directory, beside the executable).
        #[arg(long)]
        license: Option<PathBuf>,
        /// The state directory (a `state` and a `backup` folder are kept in it).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Features to check (version 1.0), or FEATURE:VERSION.
        #[arg(required = true)]
        check: Vec<String>,
    },
    /// Check a floating seat out of a license server and hold it (renewing) until Ctrl-C or
    /// `--hold` seconds; then return it.
    Checkout {
        /// The license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key (to check the server's certificate).
        #[arg(long)]
        producer_key: PathBuf,
        /// The feature.
        #[arg(long)]
        feature: String,
        /// Lowest acceptable version.
        #[arg(long = "feature-version", default_value = "1.0")]
        feature_version: String,
        /// Hold this many seconds, then return (default: until Ctrl-C).
        #[arg(long)]
        hold: Option<u64>,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The state directory.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Find and verify this machine's license file as the application does (explicit path,
    /// TESSERA_LICENSE, the state directory, beside the executable).
    Verify {
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key.
        #[arg(long)]
        producer_key: PathBuf,
        /// The license file (else the application's search order).
        #[arg(long)]
        license: Option<PathBuf>,
        /// The state directory.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Borrow a seat for offline use (kept in the state directory until it expires).
    Borrow {
        /// The license server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:7070",
            env = "TESSERA_SERVER_URL"
        )]
        server: String,
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key.
        #[arg(long)]
        producer_key: PathBuf,
        /// The feature.
        #[arg(long)]
        feature: String,
        /// Days offline (at most the server's longest borrow).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The state directory.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Return a borrowed seat early.
    Return {
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key.
        #[arg(long)]
        producer_key: PathBuf,
        /// The feature.
        #[arg(long)]
        feature: String,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// The state directory.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Register (or look up) this machine's trial with the back office.
    Trial {
        /// The back office URL.
        #[arg(long, env = "TESSERA_BACKOFFICE_URL")]
        url: String,
        /// The product id.
        #[arg(long)]
        product: String,
        /// The producer's public key, to check the trial license.
        #[arg(long)]
        producer_key: PathBuf,
        /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
        #[arg(long, env = "TESSERA_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// Where to write the trial license.
        #[arg(long)]
        out: PathBuf,
    },
}

fn this_pc(product: &str) -> Result<PcId> {
    tessera_host::this_machine()
        .identify()
        .pc_id(product)
        .ok_or_else(|| anyhow!("this machine has no machine id, physical MAC address or VM UUID to make a PC identifier from"))
}

/// An HTTP client trusting the public roots, the system's store and the CAs in `ca_cert`.
pub(crate) fn http_client(ca_cert: Option<&Path>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder();
    if let Some(path) = ca_cert {
        let pem = read_text(path, "CA certificate")?;
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
        if certs.is_empty() {
            bail!(
                "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("cannot set up HTTPS")
}

/// The CAs of `--ca-cert` for the client library.
fn with_ca(
    cfg: tessera_client::ClientConfig,
    ca_cert: Option<&Path>,
) -> Result<tessera_client::ClientConfig> {
    match ca_cert {
        None => Ok(cfg),
        Some(path) => cfg
            .ca_certs_pem(&read_text(path, "CA certificate")?)
            .map_err(|e| anyhow!("{}: {e}", path.display())),
    }
}

/// Posts `body` to the back office at `path`; reads its answer as `T`, or its problem as the
/// error.
async fn post_json<T: serde::de::DeserializeOwned>(
    url: &str,
    path: &str,
    body: &impl serde::Serialize,
    ca_cert: Option<&Path>,
) -> Result<T> {
    let resp = http_client(ca_cert)?
        .post(format!("{}{path}", url.trim_end_matches('/')))
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the back office at {url}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{}",
            ErrorAnswer::read(status.as_u16(), &bytes)
                .describe("the back office refused the request")
        );
    }
    serde_json::from_slice(&bytes).with_context(|| {
        format!("the back office's answer to {path} is not what this version of tessera reads")
    })
}

fn check_and_write(license: &str, producer_key: &Path, out: &Path) -> Result<(), Failure> {
    let key = load_public_key(producer_key)?;
    let presented = crate::commands::presented_ids(license);
    let now = SystemClock.now();
    let lic = License::verify(license, &Keyring::with(key), now, &presented)
        .map_err(|e| Failure::Invalid(format!("the license received is not valid here: {e}")))?;
    write_atomic(out, license.as_bytes(), 0o644)?;
    println!(
        "license {} for {} written to {} ({} feature records)",
        lic.claims().jti,
        lic.claims().sub,
        out.display(),
        lic.features().len()
    );
    Ok(())
}

fn library_client(
    product: &str,
    producer_key: &Path,
    state: Option<PathBuf>,
    ca_cert: Option<&Path>,
) -> Result<tessera_client::Client, Failure> {
    let pem = read_text(producer_key, "public key")?;
    let cfg = tessera_client::ClientConfig::new(product, &pem).map_err(|e| anyhow!("{e}"))?;
    let mut cfg = with_ca(cfg, ca_cert)?;
    if let Some(dir) = state {
        cfg = cfg.state_dirs(dir.join("state"), dir.join("backup"));
    }
    Ok(tessera_client::Client::new(cfg).map_err(|e| anyhow!("{e}"))?)
}

pub fn run(cmd: ClientCommand) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: ClientCommand) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Activate {
            url,
            key,
            product,
            producer_key,
            ca_cert,
            out,
        } => {
            ActivationKey::parse(&key).map_err(|e| anyhow!("--key: {e}"))?;
            let pc = this_pc(&product)?;
            let request = DeviceActivationRequest {
                key,
                pc_id: pc.to_string(),
                product: Some(product),
                device_key: None,
            };
            let v: ActivationResult = post_json(
                &url,
                "/api/v1/activate/device",
                &request,
                ca_cert.as_deref(),
            )
            .await?;
            check_and_write(&v.license, &producer_key, &out)
        }
        ClientCommand::OfflineRequest {
            key,
            product,
            producer_key,
            out,
        } => {
            ActivationKey::parse(&key).map_err(|e| anyhow!("--key: {e}"))?;
            let producer = load_public_key(&producer_key)?;
            let pc = this_pc(&product)?;
            let device = SigningKey::generate(&mut rand::rngs::OsRng);
            let text = RequestClaims {
                jti: uuid::Uuid::new_v4().to_string(),
                iat: SystemClock.now(),
                aud: producer.kid().to_string(),
                requester_key: String::new(),
                body: RequestBody::DeviceActivation {
                    key,
                    pc_id: pc.to_string(),
                    product: Some(product),
                },
            }
            .sign(&device)
            .map_err(|e| anyhow!("{e}"))?;
            write_atomic(&out, text.as_bytes(), 0o644)?;
            println!("request written to {}: take it to the producer's /offline page (or `tessera backoffice offline respond`) and bring back the response", out.display());
            Ok(())
        }
        ClientCommand::OfflineApply {
            response,
            producer_key,
            out,
        } => {
            let key = load_public_key(&producer_key)?;
            let text = read_text(&response, "response file")?;
            let r = ResponseClaims::verify(&text, &Keyring::with(key), SystemClock.now())
                .map_err(|e| Failure::Invalid(format!("{}: {e}", response.display())))?;
            check_and_write(&r.license, &producer_key, &out)
        }
        ClientCommand::Unlock {
            code,
            key,
            product,
            unlock_key,
            features,
        } => {
            let pk = UnlockPublicKey::from_pem(&read_text(&unlock_key, "unlock public key")?)
                .map_err(|e| anyhow!("{}: {e}", unlock_key.display()))?;
            let key = ActivationKey::parse(&key).map_err(|e| anyhow!("--key: {e}"))?;
            let pc = this_pc(&product)?;
            let code = UnlockCode::parse(&code).map_err(|e| Failure::Invalid(e.to_string()))?;
            let grant = code
                .verify(&pk, &product, &key, &pc, SystemClock.now().date())
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            let names = if features.is_empty() {
                format!("feature mask {:#06x}", grant.features.bits())
            } else {
                grant.features.names(&features).join(", ")
            };
            match grant.expires {
                Some(d) => println!("valid: unlocks {names} on this computer through {d}"),
                None => println!("valid: unlocks {names} on this computer permanently"),
            }
            Ok(())
        }
        ClientCommand::Status {
            product,
            producer_key,
            unlock_key,
            features,
            trial_days,
            basic,
            url,
            ca_cert,
            license,
            state,
            check,
        } => {
            let pem = read_text(&producer_key, "public key")?;
            let cfg =
                tessera_client::ClientConfig::new(&product, &pem).map_err(|e| anyhow!("{e}"))?;
            let mut cfg = with_ca(cfg, ca_cert.as_deref())?;
            if let Some(u) = &unlock_key {
                let names: Vec<&str> = features.iter().map(String::as_str).collect();
                cfg = cfg
                    .unlock_codes(&read_text(u, "unlock key")?, &names)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            if let Some(days) = trial_days {
                let names: Vec<&str> = basic.iter().map(String::as_str).collect();
                cfg = cfg.trial(days, &names);
            }
            if let Some(u) = &url {
                cfg = cfg.backoffice(u);
            }
            if let Some(l) = license {
                cfg = cfg.license_path(l);
            }
            if let Some(dir) = state {
                cfg = cfg.state_dirs(dir.join("state"), dir.join("backup"));
            }
            let client = tessera_client::Client::new(cfg).map_err(|e| anyhow!("{e}"))?;
            let mut refused = Vec::new();
            for item in &check {
                let (feature, version) = item.split_once(':').unwrap_or((item, "1.0"));
                match client.check(feature, version) {
                    Ok(g) => match g.days_left {
                        Some(d) => {
                            println!("{feature} {version}: yes ({:?}, {d} days left)", g.source)
                        }
                        None => println!("{feature} {version}: yes ({:?})", g.source),
                    },
                    Err(e) => {
                        println!("{feature} {version}: no: {e}");
                        refused.push(feature.to_string());
                    }
                }
            }
            if refused.is_empty() {
                Ok(())
            } else {
                Err(Failure::Invalid(format!(
                    "not available: {}",
                    refused.join(", ")
                )))
            }
        }
        ClientCommand::Checkout {
            server,
            product,
            producer_key,
            feature,
            feature_version: version,
            hold,
            ca_cert,
            state,
        } => {
            let pem = read_text(&producer_key, "public key")?;
            let cfg =
                tessera_client::ClientConfig::new(&product, &pem).map_err(|e| anyhow!("{e}"))?;
            let mut cfg = with_ca(cfg, ca_cert.as_deref())?;
            if let Some(dir) = state {
                cfg = cfg.state_dirs(dir.join("state"), dir.join("backup"));
            }
            let client = tessera_client::Client::new(cfg).map_err(|e| anyhow!("{e}"))?;
            let seat = tokio::task::block_in_place(|| client.checkout(&server, &feature, &version))
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            println!(
                "checked out {feature} {version}: lease {} (renewed in the background)",
                seat.lease()
            );
            // the seat's news (server unreachable, lease expired, lost, back) as it happens
            seat.on_event(|e| eprintln!("{e}"));
            match hold {
                Some(secs) => tokio::time::sleep(std::time::Duration::from_secs(secs)).await,
                None => {
                    println!("Ctrl-C returns it");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let lease = seat.lease();
            tokio::task::block_in_place(|| seat.release()).map_err(|e| anyhow!("{e}"))?;
            println!("returned lease {lease}");
            Ok(())
        }
        ClientCommand::Verify {
            product,
            producer_key,
            license,
            state,
        } => {
            let pem = read_text(&producer_key, "public key")?;
            let mut cfg =
                tessera_client::ClientConfig::new(&product, &pem).map_err(|e| anyhow!("{e}"))?;
            if let Some(dir) = state {
                cfg = cfg.state_dirs(dir.join("state"), dir.join("backup"));
            }
            if let Some(l) = license {
                cfg = cfg.license_path(l);
            }
            let client = tessera_client::Client::new(cfg).map_err(|e| anyhow!("{e}"))?;
            let (path, lic) = client
                .license()
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            println!(
                "valid: {} for {} ({} feature records), verified for this computer",
                path.display(),
                lic.claims().sub,
                lic.features().len()
            );
            Ok(())
        }
        ClientCommand::Borrow {
            server,
            product,
            producer_key,
            feature,
            days,
            ca_cert,
            state,
        } => {
            let client = library_client(&product, &producer_key, state, ca_cert.as_deref())?;
            let b = tokio::task::block_in_place(|| client.borrow(&server, &feature, "1.0", days))
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            let until = tessera_core::time::OffsetDateTime::from_unix_timestamp(b.expires)
                .map(tessera_core::time_fmt::display_time)
                .unwrap_or_default();
            println!(
                "borrowed {feature} (lease {}) until {until}: usable offline on this computer",
                b.lease
            );
            Ok(())
        }
        ClientCommand::Return {
            product,
            producer_key,
            feature,
            ca_cert,
            state,
        } => {
            let client = library_client(&product, &producer_key, state, ca_cert.as_deref())?;
            tokio::task::block_in_place(|| client.return_borrowed(&feature))
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            println!("returned the borrowed {feature}");
            Ok(())
        }
        ClientCommand::Trial {
            url,
            product,
            producer_key,
            ca_cert,
            out,
        } => {
            let pc = this_pc(&product)?;
            let request = TrialRequest {
                product: product.clone(),
                pc_id: pc.to_string(),
            };
            let v: TrialResult =
                post_json(&url, "/api/v1/trials", &request, ca_cert.as_deref()).await?;
            let ends = tessera_core::time::OffsetDateTime::from_unix_timestamp(v.expires_at)
                .map(tessera_core::time_fmt::display_date)
                .unwrap_or_default();
            println!("trial of {product} on this computer ends {ends}");
            if v.license.is_empty() {
                return Err(Failure::Invalid(format!(
                    "the trial of {product} on this computer has ended"
                )));
            }
            check_and_write(&v.license, &producer_key, &out)
        }
    }
}
