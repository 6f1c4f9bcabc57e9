//! `tessera server pools …`: the named license pools' twin (upload a model, show the pools view,
//! print the model kept, delete it), through the running server's admin API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use tessera_wire::admin::{PoolModelText, PoolsView};

use crate::reservations::Connection;
use crate::server::{admin_call, Body};

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Upload a model definition (docs/model-language.md), replacing the one kept: refused with
    /// the line and column of what is wrong, or while reservations exist.
    Upload {
        #[command(flatten)]
        conn: Connection,
        /// The model file.
        file: PathBuf,
        /// Print the pools view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the pools: per pool and feature, version, expiry, seats allocated and used, status.
    Show {
        #[command(flatten)]
        conn: Connection,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the model kept, as uploaded.
    Model {
        #[command(flatten)]
        conn: Connection,
        /// Print it as JSON (name and text).
        #[arg(long)]
        json: bool,
    },
    /// Delete the model: one default pool again.
    Delete {
        #[command(flatten)]
        conn: Connection,
        /// Print the pools view as JSON.
        #[arg(long)]
        json: bool,
    },
}

const PATH: &str = "/api/v1/admin/pools";

fn print(view: &PoolsView) {
    if let Some(why) = &view.unreadable {
        println!("warning: {why}");
    }
    let Some(name) = &view.model else {
        println!("no pool model: every seat is in the default pool");
        return;
    };
    if view.in_force {
        println!("model \"{name}\" in force");
    } else {
        println!(
            "model \"{name}\" NOT in force: {}",
            view.not_in_force.as_deref().unwrap_or("")
        );
    }
    for w in &view.warnings {
        println!("warning: {w}");
    }
    if view.pools.is_empty() {
        return;
    }
    println!(
        "{:<24} {:<20} {:<8} {:<12} {:>9} {:>5} {:<9}",
        "POOL", "FEATURE", "VERSION", "EXPIRY", "ALLOCATED", "USED", "STATUS"
    );
    for r in &view.pools {
        let allocated = if r.default && r.overdraft > 0 {
            format!("{}+{}", r.allocated, r.overdraft)
        } else {
            r.allocated.to_string()
        };
        let pool = if r.default {
            "(default)".to_string()
        } else {
            r.pool.clone()
        };
        println!(
            "{:<24} {:<20} {:<8} {:<12} {:>9} {:>5} {:<9}",
            pool, r.feature, r.version, r.expiry, allocated, r.used, r.status
        );
    }
}

fn show(view: &PoolsView, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
    } else {
        print(view);
    }
    Ok(())
}

pub async fn run(cmd: PoolsCommand) -> Result<()> {
    let call = |c: &Connection, path: &str, body: Body| {
        let (server, token, ca) = (c.server.clone(), c.token(), c.ca_cert.clone());
        let path = path.to_string();
        async move { admin_call::<PoolsView>(&server, &token?, ca.as_deref(), &path, body).await }
    };
    match cmd {
        PoolsCommand::Upload { conn, file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let v = call(&conn, &format!("{PATH}/model"), Body::Plain(text))
                .await
                .with_context(|| format!("{} was not uploaded", file.display()))?;
            show(&v, json)
        }
        PoolsCommand::Show { conn, json } => show(&call(&conn, PATH, Body::None).await?, json),
        PoolsCommand::Model { conn, json } => {
            let m: PoolModelText = admin_call(
                &conn.server,
                &conn.token()?,
                conn.ca_cert.as_deref(),
                &format!("{PATH}/model"),
                Body::None,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", m.text);
                if !m.text.ends_with('\n') {
                    println!();
                }
            }
            Ok(())
        }
        PoolsCommand::Delete { conn, json } => show(
            &call(&conn, &format!("{PATH}/model"), Body::Delete).await?,
            json,
        ),
    }
}
