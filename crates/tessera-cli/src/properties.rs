//! `tessera server properties …`: the properties view's twin (show every setting by group, change
//! several at once), through the running server's admin API.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use tessera_server::properties::{PropertiesChanged, PropertiesView, SetProperties};

use crate::reservations::Connection;
use crate::server::{admin_call, Body};

const PATH: &str = "/api/v1/admin/properties";

#[derive(Debug, Subcommand)]
pub enum PropertiesCommand {
    /// Show every property by group: the value in force, what server.toml says, when a change
    /// applies, and what the producer locked.
    Show {
        #[command(flatten)]
        conn: Connection,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change properties, all or none: KEY=VALUE (repeat); KEY= unsets an optional one. Says
    /// which apply at once and which at the next start.
    Set {
        #[command(flatten)]
        conn: Connection,
        /// KEY=VALUE, e.g. lease_seconds=600 log=debug max_borrow_days=
        #[arg(required = true)]
        values: Vec<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print(view: &PropertiesView) {
    println!("settings: {}", view.file);
    for g in &view.groups {
        println!("\n{}", g.title);
        for p in &g.properties {
            let mut note = Vec::new();
            if let Some(v) = &p.locked {
                note.push(format!("locked by the producer at {}", shown(v)));
            } else if let Some(why) = &p.read_only_reason {
                note.push(format!("read-only: {why}"));
            }
            if p.restart_pending {
                note.push(format!(
                    "server.toml says {}: after a restart",
                    shown(if p.configured.is_null() {
                        &p.default
                    } else {
                        &p.configured
                    })
                ));
            }
            println!(
                "  {:<32} {:<24} {:<8} {}",
                p.key,
                shown(&p.in_force),
                p.applies,
                note.join("; ")
            );
        }
    }
}

/// A value as the property's kind reads it: numbers and hours as numbers, switches as
/// true/false, text as it is; empty: unset.
fn value_for(kind: &str, key: &str, text: &str) -> Result<serde_json::Value> {
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(match kind {
        "number" | "hour" => serde_json::Value::from(
            text.parse::<u64>()
                .map_err(|_| anyhow!("{key}={text}: {key} is a whole number"))?,
        ),
        "switch" => serde_json::Value::Bool(match text {
            "true" | "on" | "yes" => true,
            "false" | "off" | "no" => false,
            _ => return Err(anyhow!("{key}={text}: {key} is true or false")),
        }),
        _ => serde_json::Value::String(text.to_string()),
    })
}

pub async fn run(cmd: PropertiesCommand) -> Result<()> {
    match cmd {
        PropertiesCommand::Show { conn, json } => {
            let v: PropertiesView = admin_call(
                &conn.server,
                &conn.token()?,
                conn.ca_cert.as_deref(),
                PATH,
                Body::None,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print(&v);
            }
        }
        PropertiesCommand::Set { conn, values, json } => {
            let token = conn.token()?;
            let view: PropertiesView = admin_call(
                &conn.server,
                &token,
                conn.ca_cert.as_deref(),
                PATH,
                Body::None,
            )
            .await?;
            let kind_of = |key: &str| {
                view.groups
                    .iter()
                    .flat_map(|g| &g.properties)
                    .find(|p| p.key == key)
                    .map(|p| p.kind.clone())
            };
            let mut change = SetProperties::default();
            for kv in &values {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("{kv}: write KEY=VALUE (KEY= to unset)"))?;
                let k = k.trim();
                // an unknown key goes to the server as text, which names it in its refusal
                let kind = kind_of(k).unwrap_or_else(|| "text".into());
                change.values.insert(k.to_string(), value_for(&kind, k, v)?);
            }
            let done: PropertiesChanged = admin_call(
                &conn.server,
                &token,
                conn.ca_cert.as_deref(),
                PATH,
                Body::Put(serde_json::to_value(&change)?),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
                return Ok(());
            }
            if !done.applied_now.is_empty() {
                println!("in force now: {}", done.applied_now.join(", "));
            }
            if !done.after_restart.is_empty() {
                println!(
                    "written to server.toml, in force after the next start (restart the server): {}",
                    done.after_restart.join(", ")
                );
            }
            if !done.unchanged.is_empty() {
                println!("unchanged: {}", done.unchanged.join(", "));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_by_the_property_kind() {
        assert_eq!(
            value_for("number", "k", "600").unwrap(),
            serde_json::json!(600)
        );
        assert!(value_for("number", "k", "ten").is_err());
        assert_eq!(
            value_for("switch", "k", "on").unwrap(),
            serde_json::json!(true)
        );
        assert!(value_for("switch", "k", "maybe").is_err());
        assert_eq!(
            value_for("text", "k", "600").unwrap(),
            serde_json::json!("600")
        );
        assert!(value_for("number", "k", "").unwrap().is_null());
    }
}
