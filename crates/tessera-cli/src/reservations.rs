//! `tessera server reservations …`: the reservations view's twin (list with status, add a group,
//! add entries to a group, import, export, delete a group, delete all), through the running server's admin API.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use tessera_core::reservations::{Reservation, ReservationEntry, ReservationGroup, Reservations};
use tessera_wire::admin::ReservationsView;

use crate::server::{admin_call, admin_request, Body};

/// Where the running server is, and the admin token.
#[derive(Debug, Args)]
pub struct Connection {
    /// The running license server.
    #[arg(
        long,
        default_value = "http://127.0.0.1:7070",
        env = "TESSERA_SERVER_URL"
    )]
    pub server: String,
    /// An API token (the admin token printed by `init`, or one of `tokens create`); default: the
    /// one `tessera server login` saved for this server.
    #[arg(long, env = "TESSERA_SERVER_TOKEN")]
    pub token: Option<String>,
    /// Also trust the certificate authorities in this PEM file for HTTPS (a private CA).
    #[arg(long, env = "TESSERA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl Connection {
    /// The token given, else the one `tessera server login` saved for the server.
    pub fn token(&self) -> Result<String> {
        crate::server::token_for(&self.server, self.token.clone())
    }
}

#[derive(Debug, Subcommand)]
pub enum ReservationsCommand {
    /// Show every reservation with its status (whether the server holds the seats it reserves).
    List {
        #[command(flatten)]
        conn: Connection,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a new group with one reservation (to add several at once, import a file).
    Add {
        #[command(flatten)]
        conn: Connection,
        /// The new group's name.
        #[arg(long)]
        group: String,
        /// Who: a device's host id (ethernet=0050569a3b01) or a user (user=alice).
        #[arg(long)]
        holder: String,
        /// FEATURE:VERSION:COUNT (repeat), e.g. modeler:2.0:2; the version is the lowest that serves it.
        #[arg(
            long = "feature",
            required = true,
            value_name = "FEATURE:VERSION:COUNT"
        )]
        features: Vec<String>,
    },
    /// Add a reservation to a group in force: its entries join the holder's reservation there
    /// (or it becomes a new reservation of the group).
    AddEntries {
        #[command(flatten)]
        conn: Connection,
        /// The existing group's name.
        #[arg(long)]
        group: String,
        /// Who: a device's host id (ethernet=0050569a3b01) or a user (user=alice).
        #[arg(long)]
        holder: String,
        /// FEATURE:VERSION:COUNT (repeat), e.g. modeler:2.0:2; the version is the lowest that serves it.
        #[arg(
            long = "feature",
            required = true,
            value_name = "FEATURE:VERSION:COUNT"
        )]
        features: Vec<String>,
    },
    /// Add the groups of a reservations file (as `export` writes it): refused whole if anything in it is wrong.
    Import {
        #[command(flatten)]
        conn: Connection,
        /// The file (JSON).
        file: PathBuf,
    },
    /// Write the reservations in force as a file to import elsewhere.
    Export {
        #[command(flatten)]
        conn: Connection,
        /// Where to write it (standard output without).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete a group, whole.
    Delete {
        #[command(flatten)]
        conn: Connection,
        /// The group's name.
        group: String,
    },
    /// Delete every group (before switching to named pools, for one).
    Clear {
        #[command(flatten)]
        conn: Connection,
    },
}

fn entry(text: &str) -> Result<ReservationEntry> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(count), Some(version), Some(feature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(anyhow!(
            "--feature {text}: write FEATURE:VERSION:COUNT, e.g. modeler:2.0:2"
        ));
    };
    let count = count
        .parse()
        .map_err(|_| anyhow!("--feature {text}: the count must be a whole number"))?;
    Ok(ReservationEntry {
        feature: feature.to_string(),
        version: version.to_string(),
        count,
    })
}

fn print(view: &ReservationsView) {
    if let Some(why) = &view.unreadable {
        println!("warning: {why}");
    }
    if view.entries.is_empty() {
        println!("no reservations");
        return;
    }
    println!(
        "{:<12} {:<28} {:<10} {:<20} {:<16} {:<8} {:>5}",
        "STATUS", "HOLDER", "ID TYPE", "GROUP", "FEATURE", "VERSION", "COUNT"
    );
    for e in &view.entries {
        println!(
            "{:<12} {:<28} {:<10} {:<20} {:<16} {:<8} {:>5}",
            if e.satisfied { "ok" } else { "UNSATISFIED" },
            e.holder,
            e.id_type,
            e.group,
            e.feature,
            e.version,
            e.count
        );
        if let Some(r) = &e.reason {
            println!("             {r}");
        }
    }
}

const PATH: &str = "/api/v1/admin/reservations";

pub async fn run(cmd: ReservationsCommand) -> Result<()> {
    let call = |c: &Connection, path: String, body: Body| {
        let (server, token, ca) = (c.server.clone(), c.token(), c.ca_cert.clone());
        async move { admin_call::<ReservationsView>(&server, &token?, ca.as_deref(), &path, body).await }
    };
    match cmd {
        ReservationsCommand::List { conn, json } => {
            let v = call(&conn, PATH.into(), Body::None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print(&v);
            }
        }
        ReservationsCommand::Add {
            conn,
            group,
            holder,
            features,
        } => {
            let doc = Reservations {
                groups: vec![ReservationGroup {
                    name: group,
                    reservations: vec![Reservation {
                        holder,
                        entries: features.iter().map(|f| entry(f)).collect::<Result<_>>()?,
                    }],
                }],
            };
            let v = call(&conn, PATH.into(), Body::Text(serde_json::to_string(&doc)?)).await?;
            print(&v);
        }
        ReservationsCommand::AddEntries {
            conn,
            group,
            holder,
            features,
        } => {
            let reservation = Reservation {
                holder,
                entries: features.iter().map(|f| entry(f)).collect::<Result<_>>()?,
            };
            let path = format!("{PATH}/{}/entries", percent_encode(&group));
            let v = call(
                &conn,
                path,
                Body::Text(serde_json::to_string(&reservation)?),
            )
            .await?;
            print(&v);
        }
        ReservationsCommand::Import { conn, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let v = call(&conn, PATH.into(), Body::Text(text)).await?;
            print(&v);
        }
        ReservationsCommand::Export { conn, out } => {
            let text = admin_request(
                &conn.server,
                &conn.token()?,
                conn.ca_cert.as_deref(),
                &format!("{PATH}/export"),
                Body::None,
            )
            .await?;
            // pretty, and checked to be a reservations document
            let doc: Reservations = serde_json::from_str(&text)
                .context("the license server's export is not a reservations document")?;
            let pretty = serde_json::to_string_pretty(&doc)? + "\n";
            match out {
                Some(path) => {
                    std::fs::write(&path, pretty)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {} group(s) to {}", doc.groups.len(), path.display());
                }
                None => print!("{pretty}"),
            }
        }
        ReservationsCommand::Delete { conn, group } => {
            let path = format!("{PATH}/{}", percent_encode(&group));
            let v = call(&conn, path, Body::Delete).await?;
            print(&v);
        }
        ReservationsCommand::Clear { conn } => {
            let v = call(&conn, PATH.into(), Body::Delete).await?;
            print(&v);
        }
    }
    Ok(())
}

/// `name` as one path segment.
pub(crate) fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
