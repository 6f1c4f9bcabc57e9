//! The back office's domain values: product definitions, entitlement-line policies, refusals.

use serde::{Deserialize, Serialize};
use tessera_core::feature::valid_feature_name;
use tessera_core::license::LicensePolicy;
use tessera_core::time::OffsetDateTime;
use tessera_core::Version;
use utoipa::ToSchema;

/// A feature a product offers, in the product's fixed order (unlock codes refer to features by
/// their position, so features are only ever appended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductFeature {
    /// Feature name.
    pub name: String,
    /// The version a license grants.
    #[schema(value_type = String, example = "2.0")]
    #[serde(default)]
    pub version: Version,
}

/// What the back office keeps about a product beyond its id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// The features, in order.
    pub features: Vec<ProductFeature>,
    /// The product version written into licenses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Trial length in days (default 60).
    #[serde(default = "default_trial_days")]
    pub trial_days: u32,
    /// Features that remain usable after a trial ends.
    #[serde(default)]
    pub basic_features: Vec<String>,
    /// Length of a demo key issued from the public demo form, in days (default 30).
    #[serde(default = "default_demo_days")]
    pub demo_days: u32,
}

/// Checks a name, e-mail address or other text that reaches terminals, pages, mail and signed
/// claims: at most `max` characters, and no control characters (line breaks, escapes, DEL, C1)
/// nor the invisible marks that reorder text (bidirectional overrides and isolates).
pub fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max {
        return Err(format!("at most {max} characters"));
    }
    if let Some(c) = text.chars().find(|c| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(format!(
            "control characters are not allowed (found U+{:04X}): use printable text on one line",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Longest demo, trial or term in days: ten years.
pub const MAX_DAYS: u32 = 3650;

fn default_trial_days() -> u32 {
    60
}

fn default_demo_days() -> u32 {
    30
}

impl ProductSpec {
    /// Checks names, duplicates and bounds.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ()).map_err(|(_, e)| e)
    }

    /// As [`ProductSpec::validate`], naming the field that is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.check_features().map_err(|e| ("features", e))?;
        if self.trial_days == 0 || self.trial_days > MAX_DAYS {
            return Err(("trial_days", format!("between 1 and {MAX_DAYS}")));
        }
        if self.demo_days == 0 || self.demo_days > MAX_DAYS {
            return Err(("demo_days", format!("between 1 and {MAX_DAYS}")));
        }
        if let Some(v) = &self.version {
            check_text(v, 64).map_err(|e| ("version", e))?;
        }
        Ok(())
    }

    fn check_features(&self) -> Result<(), String> {
        if self.features.is_empty() {
            return Err("a product needs at least one feature".into());
        }
        if self.features.len() > 16 {
            return Err(
                "a product has at most 16 features (unlock codes carry a 16-bit feature mask)"
                    .into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.features {
            if !valid_feature_name(&f.name) {
                return Err(format!(
                    "feature name '{}' is not valid: use 1 to 64 letters, digits, '_', '-' or '.'",
                    f.name
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(format!("feature '{}' is listed twice", f.name));
            }
        }
        for b in &self.basic_features {
            if !seen.contains(b.as_str()) {
                return Err(format!(
                    "basic feature '{b}' is not one of the product's features"
                ));
            }
        }
        Ok(())
    }

    /// The feature of that name.
    pub fn feature(&self, name: &str) -> Option<&ProductFeature> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// How a line's seats are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LicenseModel {
    /// Shared seats served by a license server.
    Floating,
    /// One machine per seat, activated by PC identifier.
    NodeLocked,
    /// Seats assigned to named users on a license server.
    NamedUser,
    /// Units consumed and not returned.
    Metered,
    /// Feature on, no count.
    Uncounted,
}

impl std::fmt::Display for LicenseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LicenseModel::Floating => "floating",
            LicenseModel::NodeLocked => "node_locked",
            LicenseModel::NamedUser => "named_user",
            LicenseModel::Metered => "metered",
            LicenseModel::Uncounted => "uncounted",
        })
    }
}

impl LicenseModel {
    /// Whether a license server serves it (everything but node-locked).
    pub fn served(self) -> bool {
        !matches!(self, LicenseModel::NodeLocked)
    }
}

/// Everything about an entitlement line but its key: stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinePolicy {
    /// Features of the product this line grants; empty means all of them.
    #[serde(default)]
    pub features: Vec<String>,
    /// Seats (floating, named-user), machines (node-locked) or units (metered).
    pub count: u32,
    /// The license model.
    pub model: LicenseModel,
    /// Not usable before.
    #[serde(default, with = "time::serde::timestamp::option")]
    #[schema(value_type = Option<i64>)]
    pub starts_at: Option<OffsetDateTime>,
    /// Expiry of the entitlement (absent: permanent, or a term).
    #[serde(default, with = "time::serde::timestamp::option")]
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<OffsetDateTime>,
    /// A term in days counted from the first activation, instead of a fixed expiry.
    #[serde(default)]
    pub term_days: Option<u32>,
    /// Seats beyond the count that may be granted, flagged.
    #[serde(default)]
    pub overdraft: u32,
    /// Grace, renewal and offline-certificate policy.
    #[serde(default)]
    #[schema(value_type = LicensePolicyDoc)]
    pub policy: LicensePolicy,
    /// A demo line: created from the public demo form.
    #[serde(default)]
    pub demo: bool,
}

/// Grace, renewal and offline-certificate policy (`tessera_core::license::LicensePolicy`, which
/// has no OpenAPI schema of its own; a test keeps the two in step). All five or none.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = LicensePolicy)]
pub struct LicensePolicyDoc {
    /// Days the application keeps working after its last successful validation (default 30).
    pub grace_days: u32,
    /// Days between renewals of a subscription (default 30).
    pub renewal_days: u32,
    /// Longest offline certificate / borrow, in days (default 30).
    pub offline_max_days: u32,
    /// How many days before an offline certificate expires it is refreshed when online (default 14).
    pub offline_refresh_days: u32,
    /// Most offline certificates active at once per account (default 3).
    pub offline_max_active: u32,
    /// License-server settings the producer fixes, by `server.toml` key: numbers, or `true`/`false`
    /// for `cluster` (absent: none). Lockable: lease_seconds, max_borrow_days,
    /// max_borrows_per_account, max_leases_per_device, capability_requests_per_minute, cluster.
    #[schema(value_type = Option<Object>)]
    pub server_locks: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Why an activation (or another request) is refused: each has a stable code for programs and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The key does not parse (a typo caught by its check symbol, a wrong length, a bad character).
    #[error("the activation key {key_label}is not valid: {detail}")]
    InvalidKey {
        /// "KEY " or "" to name which key.
        key_label: String,
        /// What is wrong.
        detail: String,
    },
    /// No line has this key.
    #[error("unknown activation key {hint}: check it against the key you received")]
    UnknownKey {
        /// The key's first group.
        hint: String,
    },
    /// A node-locked key already used on another machine.
    #[error("activation key {hint} is already activated on another machine; ask the producer to re-host it if that machine was replaced")]
    BoundToAnotherMachine {
        /// The key's first group.
        hint: String,
    },
    /// Not enough count left.
    #[error("activation key {hint} has {available} of {total} left, {requested} asked for")]
    CountExhausted {
        /// The key's first group.
        hint: String,
        /// What is left.
        available: i64,
        /// The line's count.
        total: i64,
        /// What was asked for.
        requested: i64,
    },
    /// Past the entitlement's expiry.
    #[error("the entitlement of activation key {hint} expired on {on}")]
    EntitlementExpired {
        /// The key's first group.
        hint: String,
        /// The date.
        on: String,
    },
    /// Before the entitlement's start.
    #[error("the entitlement of activation key {hint} starts on {on}")]
    NotYetValid {
        /// The key's first group.
        hint: String,
        /// The date.
        on: String,
    },
    /// Revoked by the producer.
    #[error("activation key {hint} was revoked on {on}")]
    Revoked {
        /// The key's first group.
        hint: String,
        /// The date.
        on: String,
    },
    /// A key for another product, or for a model this request cannot use.
    #[error("activation key {hint} is {detail}")]
    WrongProduct {
        /// The key's first group.
        hint: String,
        /// What it is for instead.
        detail: String,
    },
    /// A license server host id already activated with another key.
    #[error("license server {server} was activated with another key; if it was replaced, ask the producer to re-host it")]
    ServerKeyMismatch {
        /// The server's host id.
        server: String,
    },
    /// A license server that belongs to another customer.
    #[error(
        "license server {server} belongs to another customer; a license server serves one customer"
    )]
    OtherCustomer {
        /// The server's host id.
        server: String,
    },
    /// The PC already has every feature this key would give.
    #[error(
        "this computer already has {features} from an earlier key: no new unlock code was made"
    )]
    AlreadyActivated {
        /// The features.
        features: String,
    },
}

impl Refusal {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidKey { .. } => "invalid_key",
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::BoundToAnotherMachine { .. } => "bound_to_another_machine",
            Refusal::CountExhausted { .. } => "count_exhausted",
            Refusal::EntitlementExpired { .. } => "entitlement_expired",
            Refusal::NotYetValid { .. } => "entitlement_not_yet_valid",
            Refusal::Revoked { .. } => "revoked",
            Refusal::WrongProduct { .. } => "wrong_product",
            Refusal::AlreadyActivated { .. } => "already_activated",
            Refusal::ServerKeyMismatch { .. } => "server_key_mismatch",
            Refusal::OtherCustomer { .. } => "other_customer",
        }
    }
}
