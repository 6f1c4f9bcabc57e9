//! `tessera server named-users …`: the named users' twin (list, assign a feature's users, remove
//! them), through the running server's admin API.

use anyhow::Result;
use clap::Subcommand;
use tessera_wire::admin::{AssignUsers, NamedUsersView};

use crate::reservations::Connection;
use crate::server::{admin_call, Body};

#[derive(Debug, Subcommand)]
pub enum NamedUsersCommand {
    /// Show every named-user feature with its users (and those trimmed: beyond its seats).
    List {
        #[command(flatten)]
        conn: Connection,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Assign a named-user feature's users, replacing those before: only they are served.
    Set {
        #[command(flatten)]
        conn: Connection,
        /// The feature.
        feature: String,
        /// A user (repeat, in order: users beyond the feature's seats are trimmed).
        #[arg(long = "user", required = true)]
        users: Vec<String>,
    },
    /// Remove every user of a named-user feature (it then serves nobody).
    Clear {
        #[command(flatten)]
        conn: Connection,
        /// The feature.
        feature: String,
    },
}

fn print(view: &NamedUsersView) {
    if let Some(why) = &view.unreadable {
        println!("warning: {why}");
    }
    if view.features.is_empty() {
        println!("no named-user features in the licenses served");
        return;
    }
    for f in &view.features {
        println!(
            "{}: {} of {} user(s): {}",
            f.feature,
            f.users.len(),
            f.seats,
            if f.users.is_empty() {
                "none (nobody is served)".to_string()
            } else {
                f.users.join(", ")
            }
        );
        if !f.trimmed.is_empty() {
            println!(
                "  trimmed (beyond its seats, not served): {}",
                f.trimmed.join(", ")
            );
        }
    }
}

pub async fn run(cmd: NamedUsersCommand) -> Result<()> {
    const PATH: &str = "/api/v1/admin/named-users";
    let (conn, path, body, json) = match cmd {
        NamedUsersCommand::List { conn, json } => (conn, PATH.to_string(), Body::None, json),
        NamedUsersCommand::Set {
            conn,
            feature,
            users,
        } => (
            conn,
            format!("{PATH}/{}", crate::reservations::percent_encode(&feature)),
            Body::Put(serde_json::to_value(AssignUsers { users })?),
            false,
        ),
        NamedUsersCommand::Clear { conn, feature } => (
            conn,
            format!("{PATH}/{}", crate::reservations::percent_encode(&feature)),
            Body::Delete,
            false,
        ),
    };
    let v: NamedUsersView = admin_call(
        &conn.server,
        &conn.token()?,
        conn.ca_cert.as_deref(),
        &path,
        body,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print(&v);
    }
    Ok(())
}
