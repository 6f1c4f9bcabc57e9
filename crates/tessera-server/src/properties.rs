//! The license server's properties: every setting of `DATA/server.toml`, grouped as a license
//! administrator looks for them (general, secure API, back-office sync, license generation,
//! server-to-server sync, capability polling, this installation, logging), with what each is now,
//! what `server.toml` says, whether a change applies at once or at the next start, and whether the
//! producer fixed it in the license bundle ([`tessera_core::license::LicensePolicy::server_locks`]).
//!
//! A change ([`Server::set_properties`]) is checked whole (every key known, editable, not locked,
//! of its kind and range, and the resulting file a valid configuration), written to `server.toml`
//! in one atomic replace (comments and the order of keys kept), and then applied to the running
//! server where it can be: the lease length, the most leases per device, the borrow limits and the
//! log filter. Everything else is read at the start and says so.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tessera_core::license::{LockedValue, ServerLock};
use utoipa::ToSchema;

use crate::config::{parse_config, Config};
use crate::server::Server;

/// The groups properties are shown in, in order: (id, title).
pub const GROUPS: &[(&str, &str)] = &[
    ("general", "General"),
    ("secure_api", "Secure REST API"),
    ("back_office_sync", "Back-office sync"),
    ("license_generation", "License generation"),
    ("server_sync", "Server-to-server sync"),
    ("capability_polling", "Capability polling and retry"),
    ("local", "This installation"),
    ("logging", "Logging"),
];

/// What a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number within a range.
    Number(u64, u64),
    /// On or off.
    Flag,
    /// Text.
    Text,
    /// A file or directory path (relative ones are inside the data directory).
    Path,
    /// An hour of the day, 0 to 23.
    Hour,
}

/// When a change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// At once, on the running server.
    Live,
    /// At the next start of the server.
    Restart,
    /// Not changed here: why, and how to change it instead.
    ReadOnly(&'static str),
}

/// One property.
#[derive(Debug, Clone, Copy)]
pub struct Property {
    /// Its key in `server.toml`.
    pub key: &'static str,
    /// The group's id ([`GROUPS`]).
    pub group: &'static str,
    /// What it is, for a person.
    pub label: &'static str,
    /// What it does.
    pub help: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it may be unset (`null`: the default, or the producer's policy).
    pub optional: bool,
    /// When a change takes effect.
    pub applies: Applies,
}

const fn p(
    key: &'static str,
    group: &'static str,
    label: &'static str,
    help: &'static str,
    kind: Kind,
    optional: bool,
    applies: Applies,
) -> Property {
    Property {
        key,
        group,
        label,
        help,
        kind,
        optional,
        applies,
    }
}

use Applies::{Live, ReadOnly, Restart};

/// Every property, in the order shown.
pub const PROPERTIES: &[Property] = &[
    p("hostid", "general", "Server host id", "The host id the back office knows this server by (one of this machine's ids; default: its machine id).", Kind::Text, true,
      ReadOnly("the license bundle and the store are bound to it: move a server to another of its ids with `tessera server rebind`")),
    p("listen", "general", "Listen address", "Address and port the license server listens on.", Kind::Text, false, Restart),
    p("database", "general", "Database", "Where leases and settings are stored (default: SQLite in the data directory).", Kind::Text, true,
      ReadOnly("moving the store is an operation of its own (docs/operations.md, \"Moving to PostgreSQL\"): edit server.toml by hand while the server is stopped")),
    p("tls_cert", "secure_api", "TLS certificate", "Certificate chain (PEM) for HTTPS, with the TLS key.", Kind::Path, true, Restart),
    p("tls_key", "secure_api", "TLS key", "Private key (PEM) for HTTPS, with the TLS certificate.", Kind::Path, true, Restart),
    p("session_idle_minutes", "secure_api", "Session idle timeout (minutes)", "A browser session ends after this long without a request.", Kind::Number(1, 1440), false, Restart),
    p("session_max_hours", "secure_api", "Session longest life (hours)", "A browser session ends this long after the login, however busy.", Kind::Number(1, 720), false, Restart),
    p("login_failures_per_hour", "secure_api", "Failed logins per account per hour", "Beyond it, logins to the account are refused for a while.", Kind::Number(1, 100_000), false, Restart),
    p("login_attempts_per_minute", "secure_api", "Logins per address per minute", "Back-off for one client address, right or wrong passwords alike.", Kind::Number(1, 100_000), false, Restart),
    p("audit_retention_days", "secure_api", "Audit log kept (days)", "Older audit entries are pruned.", Kind::Number(1, 36_500), false, Restart),
    p("audit_max_entries", "secure_api", "Audit log size (entries)", "The oldest audit entries go first beyond it.", Kind::Number(1, 100_000_000), false, Restart),
    p("sync_hour", "back_office_sync", "Daily sync hour (local time)", "Hour of the day of the sync with the back office (renewal and usage report).", Kind::Hour, false, Restart),
    p("sync_hour_utc", "back_office_sync", "Daily sync hour (UTC)", "The same in UTC; overrides the local hour when set.", Kind::Hour, true, Restart),
    p("lease_seconds", "license_generation", "Lease length (seconds)", "How long a seat is held without renewal; clients renew at a third of it.", Kind::Number(3, 86_400), false, Live),
    p("max_leases_per_device", "license_generation", "Leases per device", "Most leases one device may hold at once.", Kind::Number(1, 1_000_000), false, Live),
    p("max_borrow_days", "license_generation", "Longest borrow (days)", "Unset: the producer's offline policy. Only lower values than the producer's take effect.", Kind::Number(1, 3650), true, Live),
    p("max_borrows_per_account", "license_generation", "Borrowed seats per account", "Unset: the producer's offline policy. Only lower values than the producer's take effect.", Kind::Number(1, 100_000), true, Live),
    p("usage_event_retention_days", "license_generation", "Denials kept (days)", "Denials and overdraft use are kept this long for the denial report.", Kind::Number(1, 36_500), false, Restart),
    p("cluster", "server_sync", "Cluster member", "Several server processes share one PostgreSQL database and serve one pool (same hostid on each).", Kind::Flag, false, Restart),
    p("capability_requests_per_minute", "capability_polling", "Capability requests per address per minute", "More are answered 429 with Retry-After (0: no limit).", Kind::Number(0, 1_000_000), false, Restart),
    p("rate_limit_loopback", "capability_polling", "Limit loopback clients too", "Whether that limit applies to clients on this machine.", Kind::Flag, false, Restart),
    p("request_timeout_seconds", "capability_polling", "Request timeout (seconds)", "A client that does not send its request in this time is disconnected.", Kind::Number(1, 3600), false, Restart),
    p("max_connections", "capability_polling", "Connections at once", "More are closed until some end.", Kind::Number(1, 1_000_000), false, Restart),
    p("worker_threads", "capability_polling", "Worker threads", "Threads that serve requests (unset: one per CPU core).", Kind::Number(1, 1024), true, Restart),
    p("require_signed_requests", "capability_polling", "Require signed requests", "Capability requests must be signed by a registered client key (docs/protocol.md, \"Signed capability requests\").", Kind::Flag, false, Restart),
    p("signed_request_max_skew_seconds", "capability_polling", "Signature clock tolerance (seconds)", "How far a signed request's time may be from this server's clock.", Kind::Number(1, 86_400), false, Restart),
    p("manager", "local", "Manager branding", "The License Server Manager's product name, logo and menu labels ([manager] in server.toml: product_name, logo, labels), read at the start.", Kind::Text, true,
      ReadOnly("a table of its own: edit [manager] in server.toml by hand (docs/operations.md, \"Branding the manager\"), then restart")),
    p("anchor_dir", "local", "Anchor directory", "Where the second copy of the storage anchor lives (outside the data directory).", Kind::Path, true, Restart),
    p("log", "logging", "Log level", "A level (error, warn, info, debug, trace) or directives such as info,tessera_server=debug.", Kind::Text, false, Live),
    p("log_file", "logging", "Log file", "A file the log is appended to (unset: standard error).", Kind::Path, true, Restart),
];

/// A property as shown: [`Property`] with its values now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertyView {
    /// Its key in `server.toml`.
    pub key: String,
    /// What it is.
    pub label: String,
    /// What it does.
    pub description: String,
    /// `number`, `switch`, `text`, `path` or `hour`.
    pub kind: String,
    /// Smallest value (numbers and hours).
    pub min: Option<u64>,
    /// Largest value (numbers and hours).
    pub max: Option<u64>,
    /// Whether it may be unset (`null`).
    pub optional: bool,
    /// What `server.toml` says (`null`: not set there).
    pub configured: serde_json::Value,
    /// The default when not set (`null`: none, or the producer's policy).
    pub default: serde_json::Value,
    /// The value the running server uses.
    pub in_force: serde_json::Value,
    /// `live` (a change applies at once), `restart` (at the next start) or `read_only`.
    pub applies: String,
    /// Whether it may be changed here.
    pub editable: bool,
    /// Why not, when it may not.
    pub read_only_reason: Option<String>,
    /// The value the producer fixed it at, when it did.
    pub locked: Option<serde_json::Value>,
    /// Whether `server.toml` says something the running server will use only after a restart.
    pub restart_pending: bool,
    /// The values it may take, where there is such a list (the host id: this machine's ids).
    pub choices: Vec<String>,
}

/// A group of properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertyGroup {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its properties, in order.
    pub properties: Vec<PropertyView>,
}

/// Every property, by group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertiesView {
    /// The groups, in order.
    pub groups: Vec<PropertyGroup>,
    /// Where the settings live.
    pub file: String,
}

/// A change of properties: values by key; `null` unsets an optional one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProperties {
    /// New values by key.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertiesChanged {
    /// Keys whose new value the running server uses now.
    pub applied_now: Vec<String>,
    /// Keys written to `server.toml` that take effect at the next start.
    pub after_restart: Vec<String>,
    /// Keys given with the value they had.
    pub unchanged: Vec<String>,
    /// Every property after the change.
    pub properties: PropertiesView,
}

/// Why a change of properties was refused (nothing was changed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyError {
    /// Not a property.
    #[error(
        "'{key}' is not a property of the license server (GET /api/v1/admin/properties lists them)"
    )]
    Unknown {
        /// The key given.
        key: String,
    },
    /// Not changed here.
    #[error("{key} cannot be changed here: {reason}")]
    ReadOnly {
        /// The key.
        key: String,
        /// Why, and how instead.
        reason: String,
    },
    /// Fixed by the producer.
    #[error("{key} is locked at {value} by the producer in the license bundle: the producer's setting wins over the administrator's (ask the producer to change it in the back office)")]
    Locked {
        /// The key.
        key: String,
        /// The locked value.
        value: String,
    },
    /// The value does not fit the property.
    #[error("{key}: {detail}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// Nothing given.
    #[error("no values given: send {{\"values\": {{\"key\": value}}}}")]
    Empty,
    /// `server.toml` could not be read, checked or written.
    #[error("{0}")]
    File(String),
}

/// The property called `key`.
pub fn property(key: &str) -> Option<&'static Property> {
    PROPERTIES.iter().find(|p| p.key == key)
}

fn kind_name(k: Kind) -> (&'static str, Option<u64>, Option<u64>) {
    match k {
        Kind::Number(a, b) => ("number", Some(a), Some(b)),
        Kind::Flag => ("switch", None, None),
        Kind::Text => ("text", None, None),
        Kind::Path => ("path", None, None),
        Kind::Hour => ("hour", Some(0), Some(23)),
    }
}

fn field(c: &Config, key: &str) -> serde_json::Value {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.get(key).cloned())
        .unwrap_or(serde_json::Value::Null)
}

fn locked_json(v: LockedValue) -> serde_json::Value {
    match v {
        LockedValue::Flag(b) => serde_json::Value::Bool(b),
        LockedValue::Number(n) => serde_json::Value::from(n),
    }
}

/// Checks one new value against its property; the TOML value to write (`None`: unset).
fn checked(prop: &Property, v: &serde_json::Value) -> Result<Option<toml_edit::Value>, String> {
    if v.is_null() {
        return if prop.optional {
            Ok(None)
        } else {
            Err("may not be unset: give a value".into())
        };
    }
    match prop.kind {
        Kind::Number(min, max) => {
            let n = v
                .as_u64()
                .ok_or_else(|| format!("{v} is not a whole number"))?;
            if !(min..=max).contains(&n) {
                return Err(format!("{n} is outside {min} to {max}"));
            }
            i64::try_from(n)
                .map(|n| Some(toml_edit::Value::from(n)))
                .map_err(|_| format!("{n} is too large"))
        }
        Kind::Hour => match v.as_u64() {
            Some(n @ 0..=23) => Ok(Some(toml_edit::Value::from(n as i64))),
            _ => Err(format!("{v} is not an hour of the day, 0 to 23")),
        },
        Kind::Flag => v
            .as_bool()
            .map(|b| Some(toml_edit::Value::from(b)))
            .ok_or_else(|| format!("{v} is not true or false")),
        Kind::Text | Kind::Path => {
            let s = v.as_str().ok_or_else(|| format!("{v} is not text"))?;
            if s.trim().is_empty() {
                return Err(if prop.optional {
                    "is empty: give a value, or null to unset it".into()
                } else {
                    "is empty: give a value".into()
                });
            }
            if s.len() > 4096 || s.chars().any(char::is_control) {
                return Err("at most 4096 characters, without control characters".into());
            }
            Ok(Some(toml_edit::Value::from(s)))
        }
    }
}

impl Server {
    /// The settings the producer fixed in the license bundle served now.
    pub fn producer_locks(&self) -> BTreeMap<String, LockedValue> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every property, by group, as the running server has them.
    pub fn properties(&self) -> Result<PropertiesView, PropertyError> {
        let path = self.data.join("server.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PropertyError::File(format!("cannot read {}: {e}", path.display())))?;
        let configured: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| PropertyError::File(format!("{} does not parse: {e}", path.display())))?;
        let defaults = parse_config("", &path).map_err(|e| PropertyError::File(e.to_string()))?;
        let in_force = self.in_force();
        let locks = self.producer_locks();
        let limits = self.engine.limits();
        let hostids: Vec<String> = {
            let id = tessera_host::this_machine().identify();
            id.machine_ids().map(ToString::to_string).collect()
        };
        let groups = GROUPS
            .iter()
            .map(|(id, title)| PropertyGroup {
                id: (*id).into(),
                title: (*title).into(),
                properties: PROPERTIES
                    .iter()
                    .filter(|p| p.group == *id)
                    .map(|p| {
                        let (kind, min, max) = kind_name(p.kind);
                        let set = configured
                            .get(p.key)
                            .and_then(|i| i.as_value())
                            .map(toml_to_json)
                            .unwrap_or(serde_json::Value::Null);
                        let default = field(&defaults, p.key);
                        let locked = locks.get(p.key).copied().map(locked_json);
                        let now = match (p.key, &locked) {
                            (_, Some(v)) => v.clone(),
                            ("hostid", None) => serde_json::Value::String(self.hostid.to_string()),
                            // what the engine applies: the producer's policy may narrow these
                            ("lease_seconds", None) => serde_json::Value::from(limits.0),
                            ("max_leases_per_device", None) => serde_json::Value::from(limits.1),
                            ("max_borrow_days", None) => serde_json::Value::from(limits.2),
                            ("max_borrows_per_account", None) => serde_json::Value::from(limits.3),
                            _ => field(&in_force, p.key),
                        };
                        let will_be = if set.is_null() {
                            default.clone()
                        } else {
                            set.clone()
                        };
                        let restart_pending = locked.is_none()
                            && p.applies != Applies::Live
                            && !matches!(p.applies, ReadOnly(_))
                            && will_be != now;
                        let (editable, reason) = match (&locked, p.applies) {
                            (Some(v), _) => (
                                false,
                                Some(format!(
                                    "locked at {v} by the producer in the license bundle"
                                )),
                            ),
                            (None, ReadOnly(why)) => (false, Some(why.to_string())),
                            _ => (true, None),
                        };
                        PropertyView {
                            key: p.key.into(),
                            label: p.label.into(),
                            description: p.help.into(),
                            kind: kind.into(),
                            min,
                            max,
                            optional: p.optional,
                            configured: set,
                            default,
                            in_force: now,
                            applies: match p.applies {
                                Live => "live",
                                Restart => "restart",
                                ReadOnly(_) => "read_only",
                            }
                            .into(),
                            editable,
                            read_only_reason: reason,
                            locked,
                            restart_pending,
                            choices: if p.key == "hostid" {
                                hostids.clone()
                            } else {
                                Vec::new()
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(PropertiesView {
            groups,
            file: path.display().to_string(),
        })
    }

    /// Changes properties: checked whole, written to `server.toml` in one atomic replace, then
    /// applied to the running server where they can be. Nothing changes when any value is
    /// refused. Returns what applies now and what at the next start, and each change as
    /// `key: old -> new` for the audit log.
    pub fn set_properties(
        &self,
        change: &SetProperties,
    ) -> Result<(PropertiesChanged, Vec<String>), PropertyError> {
        if change.values.is_empty() {
            return Err(PropertyError::Empty);
        }
        let _one_at_a_time = self
            .properties_edit
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let locks = self.producer_locks();
        let mut edits = Vec::new();
        for (key, v) in &change.values {
            let prop = property(key).ok_or_else(|| PropertyError::Unknown { key: key.clone() })?;
            if let Some(l) = locks.get(key) {
                return Err(PropertyError::Locked {
                    key: key.clone(),
                    value: l.to_string(),
                });
            }
            if let ReadOnly(why) = prop.applies {
                return Err(PropertyError::ReadOnly {
                    key: key.clone(),
                    reason: why.into(),
                });
            }
            let value = checked(prop, v).map_err(|detail| PropertyError::BadValue {
                key: key.clone(),
                detail,
            })?;
            if key == "listen" {
                if let Some(text) = v.as_str() {
                    listen_check(text).map_err(|detail| PropertyError::BadValue {
                        key: key.clone(),
                        detail,
                    })?;
                }
            }
            if key == "log" {
                if let Some(text) = v.as_str() {
                    tracing_subscriber_check(text).map_err(|detail| PropertyError::BadValue {
                        key: key.clone(),
                        detail,
                    })?;
                }
            }
            edits.push((prop, value));
        }
        // through a symbolic link (the Debian package links DATA/server.toml to /etc/tessera):
        // the file it names is replaced, not the link
        let link = self.data.join("server.toml");
        let path = std::fs::canonicalize(&link).unwrap_or_else(|_| link.clone());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PropertyError::File(format!("cannot read {}: {e}", path.display())))?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
            PropertyError::File(format!(
                "{} does not parse ({e}): correct it by hand first",
                path.display()
            ))
        })?;
        let before = parse_config(&text, &path).map_err(|e| PropertyError::File(e.to_string()))?;
        for (prop, value) in &edits {
            match value {
                Some(v) => {
                    doc.insert(prop.key, toml_edit::Item::Value(v.clone()));
                }
                None => {
                    doc.remove(prop.key);
                }
            }
        }
        let new_text = doc.to_string();
        let after =
            parse_config(&new_text, &path).map_err(|e| PropertyError::File(e.to_string()))?;
        let mut audit = Vec::new();
        let (mut now_keys, mut later, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
        for (prop, _) in &edits {
            let (old, new) = (field(&before, prop.key), field(&after, prop.key));
            if old == new {
                unchanged.push(prop.key.to_string());
                continue;
            }
            audit.push(format!("{}: {old} -> {new}", prop.key));
            match prop.applies {
                Live => now_keys.push(prop.key.to_string()),
                _ => later.push(prop.key.to_string()),
            }
        }
        if !audit.is_empty() {
            let mode = file_mode(&path).unwrap_or(0o600);
            tessera_host::write_atomic(&path, new_text.as_bytes(), mode).map_err(|e| {
                PropertyError::File(format!(
                    "cannot write {} ({e}): nothing was changed; free space or fix its permissions, or edit it by hand",
                    path.display()
                ))
            })?;
            self.apply_live(&after, &now_keys);
        }
        Ok((
            PropertiesChanged {
                applied_now: now_keys,
                after_restart: later,
                unchanged,
                properties: self.properties()?,
            },
            audit,
        ))
    }

    /// Puts the live properties of `c` named in `keys` in force.
    fn apply_live(&self, c: &Config, keys: &[String]) {
        let mut in_force = self.in_force.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            match key.as_str() {
                "lease_seconds" => in_force.lease_seconds = c.lease_seconds,
                "max_leases_per_device" => in_force.max_leases_per_device = c.max_leases_per_device,
                "max_borrow_days" => in_force.max_borrow_days = c.max_borrow_days,
                "max_borrows_per_account" => {
                    in_force.max_borrows_per_account = c.max_borrows_per_account
                }
                "log" => {
                    if let Some(reload) = self.log_reload.get() {
                        match (reload.0)(&c.log) {
                            Ok(()) => in_force.log.clone_from(&c.log),
                            Err(e) => tracing::warn!("the new log filter is not in force: {e}"),
                        }
                    } else {
                        in_force.log.clone_from(&c.log);
                    }
                }
                _ => {}
            }
        }
        let c = in_force.clone();
        drop(in_force);
        // a bundle being installed right now applies the limits itself once it is in
        if let Ok(installed) = self.installed.try_lock() {
            self.apply_limits(&c, installed.as_deref());
        }
    }

    /// The configuration the running server uses (the start's, with live changes since).
    pub fn in_force(&self) -> Config {
        self.in_force
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts the lease and borrow limits of `c` (with the producer's locks over it, and the
    /// offline policy of the bundle `license` narrowing the borrow limits) in the engine.
    pub(crate) fn apply_limits(&self, c: &Config, license: Option<&str>) {
        let mut c = c.clone();
        let _ = apply_locks(&mut c, &self.producer_locks());
        self.engine
            .set_lease_limits(c.lease_seconds, c.max_leases_per_device);
        crate::bundle::apply_borrow_policy(
            &self.engine,
            &c,
            license,
            &self.producer_keyring(),
            &self.hostid,
            self.clock.now(),
        );
    }

    /// A new license bundle is served: its locks are read and the limits put in force again.
    pub(crate) fn bundle_changed(&self, license: Option<&str>) {
        let locks = crate::bundle::producer_locks(
            license,
            &self.producer_keyring(),
            &self.hostid,
            self.clock.now(),
        );
        let mut c = self.in_force();
        match apply_locks(&mut c, &locks) {
            Ok(said) => {
                for s in said {
                    tracing::warn!("{s}");
                }
            }
            // the cluster switch is read at the start; the next start refuses with this
            Err(e) => tracing::error!("{e}"),
        }
        *self.locks.lock().unwrap_or_else(|e| e.into_inner()) = locks;
        self.apply_limits(&self.in_force(), license);
    }

    /// Sets how the log filter is changed while serving (the command that set up the log gives
    /// it); without one a new `log` is taken at the next start.
    pub fn set_log_reload(&self, reload: LogReload) {
        let _ = self.log_reload.set(reload);
    }
}

/// Changes the running log filter: given the new `log` value.
pub struct LogReload(pub Box<ReloadFn>);

/// Sets a new log filter from the text of `log`; says why it could not.
pub type ReloadFn = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for LogReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogReload")
    }
}

/// A listen address the next start can bind: `HOST:PORT` (an IPv6 host in brackets), so that a
/// typo is refused now rather than found when the server does not come back after a restart.
fn listen_check(text: &str) -> Result<(), String> {
    let bad = || {
        format!("\"{text}\" is not an address to listen on: write HOST:PORT, e.g. 0.0.0.0:7070 or [::]:7070")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(())
}

fn tracing_subscriber_check(text: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(text).map(|_| ()).map_err(|e| {
        format!("\"{text}\" is not a log filter ({e}); use a level such as \"info\" or \"debug\", or directives such as \"info,tessera_server=debug\"")
    })
}

fn file_mode(p: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        None
    }
}

fn toml_to_json(v: &toml_edit::Value) -> serde_json::Value {
    match v {
        toml_edit::Value::String(s) => serde_json::Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => serde_json::Value::from(*i.value()),
        toml_edit::Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        toml_edit::Value::Float(f) => serde_json::Value::from(*f.value()),
        other => serde_json::Value::String(other.to_string().trim().to_string()),
    }
}

/// Puts the producer's locks over a configuration: each locked setting takes the locked value
/// (a warning names each one `server.toml` said otherwise). A cluster setting the producer locked
/// the other way is an error: serving alone over a cluster's database, or as a cluster the
/// producer did not license, is not something to do quietly.
pub fn apply_locks(
    c: &mut Config,
    locks: &BTreeMap<String, LockedValue>,
) -> Result<Vec<String>, String> {
    let mut overridden = Vec::new();
    for (name, v) in locks {
        let Ok(lock) = ServerLock::named(name) else {
            tracing::warn!("the license bundle locks '{name}', which this version of the license server does not know: ignored");
            continue;
        };
        let Ok(v) = lock.check(*v) else {
            tracing::warn!(
                "the license bundle locks '{name}' at {v}, which does not fit it: ignored"
            );
            continue;
        };
        let n = |v: LockedValue| match v {
            LockedValue::Number(n) => u32::try_from(n).unwrap_or(u32::MAX),
            LockedValue::Flag(b) => u32::from(b),
        };
        let before = field(c, name);
        match name.as_str() {
            "lease_seconds" => c.lease_seconds = n(v),
            "max_borrow_days" => c.max_borrow_days = Some(n(v)),
            "max_borrows_per_account" => c.max_borrows_per_account = Some(n(v)),
            "max_leases_per_device" => c.max_leases_per_device = n(v),
            "capability_requests_per_minute" => c.capability_requests_per_minute = n(v),
            "cluster" => {
                let locked = matches!(v, LockedValue::Flag(true));
                if c.cluster != locked {
                    return Err(format!(
                        "server.toml sets cluster = {}, but the producer's license locks it at {locked}: set cluster = {locked} in server.toml (the producer's setting wins)",
                        c.cluster
                    ));
                }
            }
            _ => continue,
        }
        let after = field(c, name);
        if before != after && !before.is_null() {
            overridden.push(format!(
                "server.toml sets {name} = {before}, but the producer locked it at {v}: using {v}"
            ));
        }
    }
    Ok(overridden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_is_a_configuration_key_in_a_known_group() {
        let defaults =
            serde_json::to_value(parse_config("", Path::new("server.toml")).unwrap()).unwrap();
        let keys: std::collections::BTreeSet<&str> = defaults
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let shown: std::collections::BTreeSet<&str> = PROPERTIES.iter().map(|p| p.key).collect();
        // every setting is shown once, and nothing else is
        assert_eq!(keys, shown);
        assert_eq!(shown.len(), PROPERTIES.len());
        for p in PROPERTIES {
            assert!(GROUPS.iter().any(|(g, _)| *g == p.group), "{}", p.key);
        }
        // every lockable setting is a property
        for l in tessera_core::license::SERVER_LOCKS {
            assert!(property(l.name).is_some(), "{}", l.name);
        }
    }

    #[test]
    fn values_are_checked_against_their_kind_and_range() {
        let lease = property("lease_seconds").unwrap();
        assert!(checked(lease, &serde_json::json!(600)).unwrap().is_some());
        assert!(checked(lease, &serde_json::json!(2))
            .unwrap_err()
            .contains("outside 3 to 86400"));
        assert!(checked(lease, &serde_json::json!("600"))
            .unwrap_err()
            .contains("not a whole number"));
        assert!(checked(lease, &serde_json::Value::Null)
            .unwrap_err()
            .contains("may not be unset"));
        let hour = property("sync_hour_utc").unwrap();
        assert!(checked(hour, &serde_json::json!(24))
            .unwrap_err()
            .contains("0 to 23"));
        assert!(checked(hour, &serde_json::Value::Null).unwrap().is_none());
        let flag = property("cluster").unwrap();
        assert!(checked(flag, &serde_json::json!(1))
            .unwrap_err()
            .contains("true or false"));
        let text = property("log").unwrap();
        assert!(checked(text, &serde_json::json!(" "))
            .unwrap_err()
            .contains("empty"));
        assert!(tracing_subscriber_check("info,=[").is_err());
        assert!(listen_check("0.0.0.0:7070").is_ok() && listen_check("[::]:7070").is_ok());
        for bad in ["7070", "0.0.0.0", "0.0.0.0:70700", ":7070", "host :1"] {
            assert!(listen_check(bad).is_err(), "{bad}");
        }
        assert!(tracing_subscriber_check("debug").is_ok());
    }

    #[test]
    fn locks_override_the_configuration_and_a_cluster_mismatch_is_refused() {
        let mut c = parse_config("lease_seconds = 60\ncluster = false", Path::new("s")).unwrap();
        let mut locks = BTreeMap::new();
        locks.insert("lease_seconds".to_string(), LockedValue::Number(900));
        locks.insert("future_setting".to_string(), LockedValue::Number(1));
        let said = apply_locks(&mut c, &locks).unwrap();
        assert_eq!(c.lease_seconds, 900);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("lease_seconds = 60"));
        locks.insert("cluster".to_string(), LockedValue::Flag(true));
        let e = apply_locks(&mut c, &locks).unwrap_err();
        assert!(e.contains("locks it at true"), "{e}");
    }
}
