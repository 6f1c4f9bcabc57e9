//! `tessera server client-keys|producer-keys|release|token rotate`: the client keys, the trusted
//! producer keys, releasing stuck seats and rotating the start-up token, through the running
//! server's admin API (`token rotate --data` works on the data directory instead).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tessera_wire::admin::{
    ClientKeyView, LeaseInfo, NewProducerKey, ProducerKeyView, ReleaseRequest, Released,
    TokenCreated,
};

use crate::server::{
    admin_call, admin_request, path_segment, print_json, print_table, token_for, At, Body,
};

#[derive(Debug, Subcommand)]
pub enum ClientKeysCommand {
    /// List the client keys (id, algorithm, when and by whom added).
    List {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register a client key: a DER file, RSA-2048 (SubjectPublicKeyInfo or PKCS#1
    /// RSAPublicKey) or Ed25519 (SubjectPublicKeyInfo), e.g. from `openssl pkey -in key.pem
    /// -pubout -outform DER -out key.der`.
    Add {
        #[command(flatten)]
        at: At,
        /// The public key file (DER).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a client key by its id: requests signed with it are refused from then on.
    Delete {
        #[command(flatten)]
        at: At,
        /// The key's id, as listed.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProducerKeysCommand {
    /// List the producer keys trusted.
    List {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Trust another producer key (the producer's new `producer.pub`, SPKI PEM).
    Add {
        #[command(flatten)]
        at: At,
        /// The public key file (PEM).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a producer key (not the last one, nor the one the installed bundle needs).
    Remove {
        #[command(flatten)]
        at: At,
        /// The key id, as listed.
        kid: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["lease", "device"])))]
pub struct ReleaseArgs {
    #[command(flatten)]
    at: At,
    /// The lease to release (its id, as `tessera server leases` lists it).
    #[arg(long)]
    lease: Option<u64>,
    /// A device's host id (KIND=VALUE): every lease it holds is released.
    #[arg(long)]
    device: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn client_keys(cmd: ClientKeysCommand) -> Result<()> {
    match cmd {
        ClientKeysCommand::List { at, json } => {
            let list: Vec<ClientKeyView> = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/client-keys",
                Body::None,
            )
            .await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no client keys registered");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.algorithm.clone(),
                        k.added_at.clone(),
                        k.added_by.clone(),
                    ]
                })
                .collect();
            print_table(&["ID", "ALGORITHM", "ADDED (UTC)", "BY"], &rows);
            Ok(())
        }
        ClientKeysCommand::Add { at, file, json } => {
            let der =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let k: ClientKeyView = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/client-keys",
                Body::Bytes(der),
            )
            .await?;
            if json {
                return print_json(&k);
            }
            println!("client key {} ({}) registered", k.id, k.algorithm);
            Ok(())
        }
        ClientKeysCommand::Delete { at, id } => {
            admin_request(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &format!("/api/v1/admin/client-keys/{}", path_segment(&id)),
                Body::Delete,
            )
            .await?;
            println!("client key {id} deleted");
            Ok(())
        }
    }
}

pub async fn producer_keys(cmd: ProducerKeysCommand) -> Result<()> {
    match cmd {
        ProducerKeysCommand::List { at, json } => {
            let list: Vec<ProducerKeyView> = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/producer-keys",
                Body::None,
            )
            .await?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|k| vec![k.kid.clone(), k.added_at.clone(), k.added_by.clone()])
                .collect();
            print_table(&["KEY ID", "TRUSTED SINCE (UTC)", "BY"], &rows);
            Ok(())
        }
        ProducerKeysCommand::Add { at, file, json } => {
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let k: ProducerKeyView = admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/producer-keys",
                Body::Json(serde_json::to_value(NewProducerKey { public_key: pem })?),
            )
            .await?;
            if json {
                return print_json(&k);
            }
            println!("producer key {} is trusted", k.kid);
            Ok(())
        }
        ProducerKeysCommand::Remove { at, kid } => {
            admin_request(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                &format!("/api/v1/admin/producer-keys/{}", path_segment(&kid)),
                Body::Delete,
            )
            .await?;
            println!("producer key {kid} is no longer trusted");
            Ok(())
        }
    }
}

pub async fn release(args: ReleaseArgs) -> Result<()> {
    let ReleaseArgs {
        at,
        lease,
        device,
        json,
    } = args;
    let r: Released = admin_call(
        &at.server,
        &token_for(&at.server, at.token)?,
        at.ca_cert.as_deref(),
        "/api/v1/admin/leases/release",
        Body::Json(serde_json::to_value(ReleaseRequest { lease, device })?),
    )
    .await?;
    if json {
        return print_json(&r);
    }
    lease_table(&r.released);
    println!("released {} lease(s)", r.released.len());
    Ok(())
}

fn lease_table(leases: &[LeaseInfo]) {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.lease.to_string(),
                l.feature.clone(),
                l.count.to_string(),
                l.device.clone(),
                l.expires_at.clone(),
                if l.borrowed { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    print_table(
        &[
            "LEASE",
            "FEATURE",
            "SEATS",
            "HOLDER",
            "EXPIRES (UTC)",
            "BORROWED",
        ],
        &rows,
    );
}

pub async fn leases(at: At, json: bool) -> Result<()> {
    let list: Vec<LeaseInfo> = admin_call(
        &at.server,
        &token_for(&at.server, at.token)?,
        at.ca_cert.as_deref(),
        "/api/v1/admin/leases",
        Body::None,
    )
    .await?;
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no leases held");
        return Ok(());
    }
    lease_table(&list);
    Ok(())
}

pub async fn rotate_token(at: At, data: Option<PathBuf>, json: bool) -> Result<()> {
    let made = match data {
        Some(data) => {
            let token = tessera_server::rotate_admin_token(&data).await?;
            TokenCreated {
                id: tessera_server::token::admin_token_hash(&token)
                    .chars()
                    .take(16)
                    .collect(),
                token,
                user: tessera_server::token::ADMIN_USER.into(),
                expires_at: None,
            }
        }
        None => {
            admin_call(
                &at.server,
                &token_for(&at.server, at.token)?,
                at.ca_cert.as_deref(),
                "/api/v1/admin/token/rotate",
                Body::Empty,
            )
            .await?
        }
    };
    if json {
        return print_json(&made);
    }
    println!(
        "new admin token: {}   (shown once; the old one no longer works)",
        made.token
    );
    Ok(())
}
