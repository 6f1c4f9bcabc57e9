//! The license file: a signed document granting feature records to a licensee.
//!
//! Its claims are a JWT claim set (`iss`, `sub`, `jti`, `iat`, `nbf`, `exp`) plus Tessera's own:
//! the format version `v`, the host ids it is bound to (`hostids`, any one matches; empty means not
//! bound) and the feature records. `docs/license-format.md` describes every claim.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::feature::{Expiry, Feature, FeatureRuleError};
use crate::hostid::HostId;
use crate::keys::{KeyId, Keyring, SigningKey};
use crate::time_fmt::display_date;
use crate::version::Version;

/// The license format version this code writes and reads.
pub const LICENSE_FORMAT_VERSION: u32 = 1;

/// The claims of a license document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// Format version; a reader refuses versions it does not know.
    pub v: u32,
    /// Who issued it (the producer).
    pub iss: String,
    /// Who it is for (the licensee).
    pub sub: String,
    /// The license's unique id.
    pub jti: String,
    /// When it was issued.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// Not valid before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub nbf: Option<OffsetDateTime>,
    /// Not valid from this instant on; absent for a permanent license.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub exp: Option<OffsetDateTime>,
    /// Host ids the license is bound to; any one of them matches. Empty: not bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostids: Vec<HostId>,
    /// The feature records.
    pub features: Vec<Feature>,
    /// The producer's policy for this license (grace, renewal, offline use), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LicensePolicy>,
}

/// Policy a license carries for the application and the license server to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicensePolicy {
    /// Days the application keeps working after its last successful validation (default 30).
    pub grace_days: u32,
    /// Days between renewals of a subscription (default 30, "one month").
    pub renewal_days: u32,
    /// Longest offline certificate / borrow, in days (default 30).
    pub offline_max_days: u32,
    /// How many days before an offline certificate expires it is refreshed when online (default 14).
    pub offline_refresh_days: u32,
    /// Most offline certificates active at once per account (default 3).
    pub offline_max_active: u32,
    /// Settings of the license server the producer fixes ([`ServerLock`]): the server uses these
    /// values whatever its configuration says, shows them and refuses to change them. Empty (and
    /// absent from the document) when the producer locks nothing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub server_locks: std::collections::BTreeMap<String, LockedValue>,
}

/// The value a producer fixes a license-server setting at (see [`LicensePolicy::server_locks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LockedValue {
    /// A switch (`true`: on).
    Flag(bool),
    /// A whole number.
    Number(u64),
}

impl std::fmt::Display for LockedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockedValue::Flag(b) => write!(f, "{b}"),
            LockedValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A license-server setting a producer may lock, by its name in the server's `server.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLock {
    /// The setting's name (`server.toml`'s key).
    pub name: &'static str,
    /// Whether it is a switch (else a whole number).
    pub flag: bool,
    /// The smallest and largest number it may be locked at (switches: 0 and 1).
    pub range: (u64, u64),
}

/// The settings a producer may lock. Where several license lines lock one setting, the strictest
/// value wins ([`ServerLock::strictest`]): the smaller number, and a switch off over on.
pub const SERVER_LOCKS: &[ServerLock] = &[
    ServerLock {
        name: "lease_seconds",
        flag: false,
        range: (3, 86_400),
    },
    ServerLock {
        name: "max_borrow_days",
        flag: false,
        range: (1, 3650),
    },
    ServerLock {
        name: "max_borrows_per_account",
        flag: false,
        range: (1, 100_000),
    },
    ServerLock {
        name: "max_leases_per_device",
        flag: false,
        range: (1, 1_000_000),
    },
    ServerLock {
        name: "capability_requests_per_minute",
        flag: false,
        range: (1, 1_000_000),
    },
    ServerLock {
        name: "cluster",
        flag: true,
        range: (0, 1),
    },
];

/// Why a server lock is not one a producer may set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerLockError {
    /// Not a setting that can be locked.
    #[error("'{name}' is not a license-server setting a producer can lock (one of: {})", SERVER_LOCKS.iter().map(|l| l.name).collect::<Vec<_>>().join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// The value does not fit the setting.
    #[error("{name}: {detail}")]
    BadValue {
        /// The setting.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

impl ServerLock {
    /// The lockable setting called `name`.
    pub fn named(name: &str) -> Result<&'static ServerLock, ServerLockError> {
        SERVER_LOCKS
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| ServerLockError::Unknown { name: name.into() })
    }

    /// Reads a value for this setting as written in a license line (`true`/`false` for a
    /// switch, a whole number within [`ServerLock::range`] otherwise).
    pub fn parse(&self, text: &str) -> Result<LockedValue, ServerLockError> {
        let bad = |detail: String| ServerLockError::BadValue {
            name: self.name.into(),
            detail,
        };
        if self.flag {
            return match text {
                "true" | "on" | "1" => Ok(LockedValue::Flag(true)),
                "false" | "off" | "0" => Ok(LockedValue::Flag(false)),
                _ => Err(bad(format!("'{text}' is not true or false"))),
            };
        }
        let n: u64 = text
            .parse()
            .map_err(|_| bad(format!("'{text}' is not a whole number")))?;
        self.check(LockedValue::Number(n))
    }

    /// Checks a value's kind and range for this setting.
    pub fn check(&self, v: LockedValue) -> Result<LockedValue, ServerLockError> {
        let bad = |detail: String| ServerLockError::BadValue {
            name: self.name.into(),
            detail,
        };
        match (self.flag, v) {
            (true, LockedValue::Flag(_)) => Ok(v),
            (false, LockedValue::Number(n)) if (self.range.0..=self.range.1).contains(&n) => Ok(v),
            (false, LockedValue::Number(n)) => Err(bad(format!(
                "{n} is outside {} to {}",
                self.range.0, self.range.1
            ))),
            (true, _) => Err(bad("a switch is locked at true or false".into())),
            (false, _) => Err(bad("a number is locked at a whole number".into())),
        }
    }

    /// The stricter of two values of one setting: the smaller number; off over on.
    pub fn strictest(a: LockedValue, b: LockedValue) -> LockedValue {
        match (a, b) {
            (LockedValue::Number(x), LockedValue::Number(y)) => LockedValue::Number(x.min(y)),
            (LockedValue::Flag(x), LockedValue::Flag(y)) => LockedValue::Flag(x && y),
            // kinds differ only in a document not made by a back office: the first stands
            (a, _) => a,
        }
    }
}

impl Default for LicensePolicy {
    fn default() -> Self {
        LicensePolicy {
            grace_days: 30,
            renewal_days: 30,
            offline_max_days: 30,
            offline_refresh_days: 14,
            offline_max_active: 3,
            server_locks: std::collections::BTreeMap::new(),
        }
    }
}

/// Why license claims cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseRuleError {
    /// No licensee named.
    #[error("the licensee is empty: name who the license is for")]
    NoLicensee,
    /// No features.
    #[error("a license needs at least one feature")]
    NoFeatures,
    /// A feature record breaks a rule.
    #[error(transparent)]
    Feature(#[from] FeatureRuleError),
    /// The license ends before it starts.
    #[error("the license expires before it becomes valid")]
    EndsBeforeStart,
    /// A feature outlives the license (it could never be used after the license expires).
    #[error("feature '{name}' expires after the license itself ({})", display_date(*.license_exp))]
    FeatureOutlivesLicense {
        /// The feature.
        name: String,
        /// The license's expiry.
        license_exp: OffsetDateTime,
    },
}

impl LicenseClaims {
    /// Checks the rules a license must keep before it is signed, and fills in the document expiry
    /// when every feature expires: a license whose features have all expired is itself expired.
    pub fn finalize(mut self) -> Result<Self, LicenseRuleError> {
        if self.sub.trim().is_empty() {
            return Err(LicenseRuleError::NoLicensee);
        }
        if self.features.is_empty() {
            return Err(LicenseRuleError::NoFeatures);
        }
        for f in &self.features {
            f.validate()?;
        }
        if let (Some(nbf), Some(exp)) = (self.nbf, self.exp) {
            if exp <= nbf {
                return Err(LicenseRuleError::EndsBeforeStart);
            }
        }
        let latest = self
            .features
            .iter()
            .map(|f| f.expiry)
            .max_by_key(|e| e.sort_key())
            .unwrap_or(Expiry::Permanent);
        match (self.exp, latest) {
            (None, Expiry::At(t)) => self.exp = Some(t),
            (Some(license_exp), _) => {
                if let Some(f) = self
                    .features
                    .iter()
                    // a permanent feature lives as long as the license; a dated one past the
                    // license's end is a mistake worth saying
                    .find(|f| matches!(f.expiry, Expiry::At(t) if t > license_exp))
                {
                    return Err(LicenseRuleError::FeatureOutlivesLicense {
                        name: f.name.clone(),
                        license_exp,
                    });
                }
            }
            (None, Expiry::Permanent) => {}
        }
        Ok(self)
    }

    /// Signs the claims (after [`LicenseClaims::finalize`]) and returns the armoured license file.
    pub fn issue(self, key: &SigningKey) -> Result<String, IssueError> {
        let claims = self.finalize()?;
        Ok(document::sign_armoured(
            key,
            DocumentType::License,
            &claims,
        )?)
    }
}

/// Why a license could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The claims break a rule.
    #[error(transparent)]
    Rule(#[from] LicenseRuleError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A license whose signature, type, validity period and host binding have been checked.
#[derive(Debug, Clone)]
pub struct License {
    claims: LicenseClaims,
    kid: KeyId,
}

/// Why a feature cannot be used from a valid license.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// No record of that name.
    #[error("this license does not include feature '{name}'")]
    NotLicensed {
        /// The feature asked for.
        name: String,
    },
    /// Only older versions are licensed.
    #[error(
        "feature '{name}' is licensed up to version {have}, but version {wanted} was asked for"
    )]
    VersionTooLow {
        /// The feature asked for.
        name: String,
        /// The highest licensed version.
        have: Version,
        /// The version asked for.
        wanted: Version,
    },
    /// Every fitting record has expired.
    #[error("feature '{name}' expired on {}", display_date(*.expired_at))]
    Expired {
        /// The feature asked for.
        name: String,
        /// The latest expiry among the fitting records.
        expired_at: OffsetDateTime,
    },
    /// No fitting record has started yet.
    #[error("feature '{name}' is not usable before {}", display_date(*.starts_at))]
    NotYetStarted {
        /// The feature asked for.
        name: String,
        /// The earliest start among the fitting records.
        starts_at: OffsetDateTime,
    },
}

impl License {
    /// Verifies a license file (armoured or a bare token) against the trusted keys at `now`.
    ///
    /// `host` is the verifying machine's host ids; a bound license needs one of its host ids among
    /// them. Pass an empty slice to check a license for a machine whose ids are unknown: a bound
    /// license is then refused with [`VerifyError::BoundToOtherHost`].
    pub fn verify(
        text: &str,
        keys: &Keyring,
        now: OffsetDateTime,
        host: &[HostId],
    ) -> Result<License, VerifyError> {
        let verified = document::verify::<LicenseClaims>(text, keys, DocumentType::License, now)?;
        let claims = verified.claims;
        if claims.v != LICENSE_FORMAT_VERSION {
            return Err(VerifyError::Malformed {
                line: 1,
                column: 1,
                detail: format!(
                    "license format version {} is not supported by this Tessera (it reads version {LICENSE_FORMAT_VERSION}); update the application",
                    claims.v
                ),
            });
        }
        if !claims.hostids.is_empty() && !claims.hostids.iter().any(|id| host.contains(id)) {
            return Err(VerifyError::BoundToOtherHost {
                bound_to: claims.hostids.clone(),
                presented: host.to_vec(),
            });
        }
        Ok(License {
            claims,
            kid: verified.kid,
        })
    }

    /// The claims.
    pub fn claims(&self) -> &LicenseClaims {
        &self.claims
    }

    /// The key that signed it.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// All feature records.
    pub fn features(&self) -> &[Feature] {
        &self.claims.features
    }

    /// The record that serves a request for `name` at version `wanted` or above, at `now`.
    ///
    /// Among the records of that name whose version satisfies `wanted` and that are active at `now`,
    /// the one that expires last wins (permanent beats any date); on a tie, the higher version.
    pub fn feature(
        &self,
        name: &str,
        wanted: &Version,
        now: OffsetDateTime,
    ) -> Result<&Feature, FeatureError> {
        let named: Vec<&Feature> = self.features().iter().filter(|f| f.name == name).collect();
        if named.is_empty() {
            return Err(FeatureError::NotLicensed { name: name.into() });
        }
        let fitting: Vec<&Feature> = named
            .iter()
            .copied()
            .filter(|f| f.version.satisfies(wanted))
            .collect();
        if fitting.is_empty() {
            let have = named
                .iter()
                .map(|f| f.version.clone())
                .max()
                .unwrap_or_default();
            return Err(FeatureError::VersionTooLow {
                name: name.into(),
                have,
                wanted: wanted.clone(),
            });
        }
        if let Some(best) = fitting
            .iter()
            .copied()
            .filter(|f| f.is_active(now))
            .max_by(|a, b| {
                a.expiry
                    .sort_key()
                    .cmp(&b.expiry.sort_key())
                    .then_with(|| a.version.cmp(&b.version))
            })
        {
            return Ok(best);
        }
        let not_started = fitting
            .iter()
            .filter(|f| !f.expiry.is_past(now))
            .filter_map(|f| f.start)
            .min();
        if let Some(starts_at) = not_started {
            return Err(FeatureError::NotYetStarted {
                name: name.into(),
                starts_at,
            });
        }
        let expired_at = fitting
            .iter()
            .filter_map(|f| match f.expiry {
                Expiry::At(t) => Some(t),
                Expiry::Permanent => None,
            })
            .max()
            .unwrap_or(now);
        Err(FeatureError::Expired {
            name: name.into(),
            expired_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::Count;
    use time::macros::datetime;
    use time::Duration;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[3; 32])
    }

    fn now() -> OffsetDateTime {
        datetime!(2026-06-01 0:00 UTC)
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn claims(features: Vec<Feature>) -> LicenseClaims {
        LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: "Example Software".into(),
            sub: "ACME".into(),
            jti: "lic-1".into(),
            iat: now(),
            nbf: None,
            exp: None,
            hostids: vec![],
            features,
            policy: None,
        }
    }

    fn feature(name: &str, ver: &str, expiry: Expiry) -> Feature {
        let mut f = Feature::new(name, v(ver), Count::Counted(5));
        f.expiry = expiry;
        f
    }

    #[test]
    fn best_record_wins_and_errors_say_why() {
        let feats = vec![
            feature("cad", "1.0", Expiry::Permanent),
            feature("cad", "2.0", Expiry::At(datetime!(2027-01-01 0:00 UTC))),
            feature("cam", "3.0", Expiry::At(datetime!(2026-01-01 0:00 UTC))),
        ];
        let text = claims(feats).issue(&key()).unwrap();
        let lic = License::verify(&text, &Keyring::with(key().public()), now(), &[]).unwrap();
        // version 1.0 requested: the permanent 1.0 outlives the 2.0 record
        assert_eq!(
            lic.feature("cad", &v("1.0"), now()).unwrap().version,
            v("1.0")
        );
        assert_eq!(
            lic.feature("cad", &v("1.5"), now()).unwrap().version,
            v("2.0")
        );
        assert_eq!(
            lic.feature("cad", &v("3.0"), now()),
            Err(FeatureError::VersionTooLow {
                name: "cad".into(),
                have: v("2.0"),
                wanted: v("3.0")
            })
        );
        assert_eq!(
            lic.feature("cam", &v("1.0"), now()),
            Err(FeatureError::Expired {
                name: "cam".into(),
                expired_at: datetime!(2026-01-01 0:00 UTC)
            })
        );
        assert_eq!(
            lic.feature("sim", &v("1.0"), now()),
            Err(FeatureError::NotLicensed { name: "sim".into() })
        );
    }

    #[test]
    fn not_yet_started_is_reported() {
        let mut f = feature("cad", "1.0", Expiry::Permanent);
        f.start = Some(now() + Duration::days(10));
        let text = claims(vec![f]).issue(&key()).unwrap();
        let lic = License::verify(&text, &Keyring::with(key().public()), now(), &[]).unwrap();
        assert!(matches!(
            lic.feature("cad", &v("1.0"), now()),
            Err(FeatureError::NotYetStarted { .. })
        ));
    }

    #[test]
    fn document_expiry_follows_the_last_feature() {
        let c = claims(vec![
            feature("a", "1.0", Expiry::At(datetime!(2027-01-01 0:00 UTC))),
            feature("b", "1.0", Expiry::At(datetime!(2027-06-01 0:00 UTC))),
        ])
        .finalize()
        .unwrap();
        assert_eq!(c.exp, Some(datetime!(2027-06-01 0:00 UTC)));
        let mut c2 = claims(vec![feature(
            "a",
            "1.0",
            Expiry::At(datetime!(2028-01-01 0:00 UTC)),
        )]);
        c2.exp = Some(datetime!(2027-01-01 0:00 UTC));
        assert!(matches!(
            c2.finalize(),
            Err(LicenseRuleError::FeatureOutlivesLicense { .. })
        ));
        let mut c3 = claims(vec![feature("a", "1.0", Expiry::Permanent)]);
        c3.exp = Some(datetime!(2027-01-01 0:00 UTC));
        assert_eq!(
            c3.finalize().unwrap().exp,
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(claims(vec![]).finalize(), Err(LicenseRuleError::NoFeatures));
    }

    #[test]
    fn host_binding() {
        let mut c = claims(vec![feature("a", "1.0", Expiry::Permanent)]);
        let mine: HostId = "ethernet=0050569a3b01".parse().unwrap();
        let other: HostId = "ethernet=0050569a3b02".parse().unwrap();
        c.hostids = vec![mine.clone()];
        let text = c.issue(&key()).unwrap();
        let ring = Keyring::with(key().public());
        assert!(License::verify(&text, &ring, now(), std::slice::from_ref(&mine)).is_ok());
        let err = License::verify(&text, &ring, now(), std::slice::from_ref(&other)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::BoundToOtherHost {
                bound_to: vec![mine],
                presented: vec![other]
            }
        );
        assert!(err.to_string().contains("ethernet=0050569a3b01"));
        assert!(err.to_string().contains("ethernet=0050569a3b02"));
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let mut c = claims(vec![feature("a", "1.0", Expiry::Permanent)]);
        c.v = 99;
        let text = document::sign_armoured(&key(), DocumentType::License, &c).unwrap();
        let err = License::verify(&text, &Keyring::with(key().public()), now(), &[]).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }
}
