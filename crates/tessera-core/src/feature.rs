//! Feature records: one licensed feature with its version, count, term and origin.
//!
//! The same feature name may appear in several records (different activations, products, versions or
//! expiries); each record is kept apart and the most fitting one serves a request.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::time_fmt::display_date;
use crate::version::Version;

/// How many seats a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Count {
    /// Feature on, no count.
    Uncounted,
    /// At most this many in use at once (or, for a metered feature, this many units).
    Counted(u32),
}

impl Count {
    /// The count, if counted.
    pub fn get(self) -> Option<u32> {
        match self {
            Count::Uncounted => None,
            Count::Counted(n) => Some(n),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Uncounted => f.write_str("uncounted"),
            Count::Counted(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Uncounted => s.serialize_str("uncounted"),
            Count::Counted(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(i64),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => u32::try_from(n).map(Count::Counted).map_err(|_| {
                serde::de::Error::custom(format!("count {n} is out of range (0 to 4294967295)"))
            }),
            Repr::S(s) if s == "uncounted" => Ok(Count::Uncounted),
            Repr::S(s) => Err(serde::de::Error::custom(format!(
                "count must be a number or \"uncounted\", not \"{s}\""
            ))),
        }
    }
}

/// When a record stops being usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// Never expires.
    Permanent,
    /// Usable until just before this instant.
    At(OffsetDateTime),
}

impl Expiry {
    /// Whether the record has expired at `now`.
    pub fn is_past(self, now: OffsetDateTime) -> bool {
        matches!(self, Expiry::At(t) if now >= t)
    }

    /// Ordering key: permanent sorts after every date.
    pub fn sort_key(self) -> (u8, i128) {
        match self {
            Expiry::At(t) => (0, t.unix_timestamp_nanos()),
            Expiry::Permanent => (1, 0),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::Permanent => f.write_str("permanent"),
            Expiry::At(t) => f.write_str(&display_date(*t)),
        }
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expiry::Permanent => s.serialize_str("permanent"),
            Expiry::At(t) => s.serialize_i64(t.unix_timestamp()),
        }
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(i64),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => OffsetDateTime::from_unix_timestamp(n)
                .map(Expiry::At)
                .map_err(serde::de::Error::custom),
            Repr::S(s) if s == "permanent" => Ok(Expiry::Permanent),
            Repr::S(s) => Err(serde::de::Error::custom(format!(
                "expiry must be a unix time or \"permanent\", not \"{s}\""
            ))),
        }
    }
}

/// One feature record, with every attribute a license can give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The feature name, e.g. `solver`.
    pub name: String,
    /// The version this record grants; it serves requests for this version and below.
    #[serde(default)]
    pub version: Version,
    /// Seats (or units, when metered), or uncounted.
    pub count: Count,
    /// Units are consumed and not returned (exports, hours).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metered: bool,
    /// How many seats beyond the count may be granted (flagged as overdraft).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overdraft: u32,
    /// Its seats are for named users: a license server serves them only to the users its
    /// administrator assigned (as many as the count), and refuses others (`not_authorised`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub named_user: bool,
    /// Not usable before this instant.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::timestamp::option"
    )]
    pub start: Option<OffsetDateTime>,
    /// When it stops being usable.
    pub expiry: Expiry,
    /// A string the producer's application interprets as it likes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_string: Option<String>,
    /// The product this record was sold with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The product's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// The activation ID (license key id) this record came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_id: Option<String>,
    /// The entitlement this record came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement_id: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a feature record is not acceptable in a license.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureRuleError {
    /// The name is empty, too long or has characters other than letters, digits, `_`, `-`, `.`.
    #[error("feature name '{name}' is not valid: use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A counted record with count 0.
    #[error(
        "feature '{name}': a count of 0 grants nothing; give a positive count or \"uncounted\""
    )]
    ZeroCount {
        /// The name.
        name: String,
    },
    /// Metered but uncounted.
    #[error("feature '{name}': a metered feature needs a count of units")]
    MeteredUncounted {
        /// The name.
        name: String,
    },
    /// Overdraft on an uncounted record.
    #[error("feature '{name}': overdraft only applies to a counted feature")]
    OverdraftUncounted {
        /// The name.
        name: String,
    },
    /// Start on or after expiry.
    #[error("feature '{name}': it starts on or after its expiry")]
    StartAfterExpiry {
        /// The name.
        name: String,
    },
}

/// Whether `name` is a valid feature name.
pub fn valid_feature_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Feature {
    /// A record with the given name, version and count; permanent, not metered, no overdraft.
    pub fn new(name: impl Into<String>, version: Version, count: Count) -> Self {
        Feature {
            name: name.into(),
            version,
            count,
            metered: false,
            overdraft: 0,
            named_user: false,
            start: None,
            expiry: Expiry::Permanent,
            vendor_string: None,
            product: None,
            product_version: None,
            activation_id: None,
            entitlement_id: None,
        }
    }

    /// Checks the record's rules.
    pub fn validate(&self) -> Result<(), FeatureRuleError> {
        let name = || self.name.clone();
        if !valid_feature_name(&self.name) {
            return Err(FeatureRuleError::InvalidName { name: name() });
        }
        match self.count {
            Count::Counted(0) => return Err(FeatureRuleError::ZeroCount { name: name() }),
            Count::Uncounted if self.metered => {
                return Err(FeatureRuleError::MeteredUncounted { name: name() })
            }
            Count::Uncounted if self.overdraft > 0 => {
                return Err(FeatureRuleError::OverdraftUncounted { name: name() })
            }
            _ => {}
        }
        if let (Some(start), Expiry::At(end)) = (self.start, self.expiry) {
            if start >= end {
                return Err(FeatureRuleError::StartAfterExpiry { name: name() });
            }
        }
        Ok(())
    }

    /// Whether the record is usable at `now` (started and not expired).
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| now >= s) && !self.expiry.is_past(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn count_and_expiry_serde() {
        assert_eq!(serde_json::to_string(&Count::Counted(5)).unwrap(), "5");
        assert_eq!(
            serde_json::to_string(&Count::Uncounted).unwrap(),
            "\"uncounted\""
        );
        assert_eq!(
            serde_json::from_str::<Count>("\"uncounted\"").unwrap(),
            Count::Uncounted
        );
        assert!(serde_json::from_str::<Count>("-1").is_err());
        assert!(serde_json::from_str::<Count>("\"many\"").is_err());
        let e: Expiry = serde_json::from_str("1830297599").unwrap();
        assert_eq!(e, Expiry::At(datetime!(2027-12-31 23:59:59 UTC)));
        assert_eq!(
            serde_json::to_string(&Expiry::Permanent).unwrap(),
            "\"permanent\""
        );
    }

    #[test]
    fn rules() {
        let ok = Feature::new("solver", Version::default(), Count::Counted(5));
        assert_eq!(ok.validate(), Ok(()));
        let mut f = ok.clone();
        f.name = "bad name".into();
        assert!(matches!(
            f.validate(),
            Err(FeatureRuleError::InvalidName { .. })
        ));
        let mut f = ok.clone();
        f.count = Count::Counted(0);
        assert!(matches!(
            f.validate(),
            Err(FeatureRuleError::ZeroCount { .. })
        ));
        let mut f = ok.clone();
        f.count = Count::Uncounted;
        f.metered = true;
        assert!(matches!(
            f.validate(),
            Err(FeatureRuleError::MeteredUncounted { .. })
        ));
        let mut f = ok.clone();
        f.count = Count::Uncounted;
        f.overdraft = 1;
        assert!(matches!(
            f.validate(),
            Err(FeatureRuleError::OverdraftUncounted { .. })
        ));
        let mut f = ok;
        f.start = Some(datetime!(2027-01-01 0:00 UTC));
        f.expiry = Expiry::At(datetime!(2026-01-01 0:00 UTC));
        assert!(matches!(
            f.validate(),
            Err(FeatureRuleError::StartAfterExpiry { .. })
        ));
        assert!(!f.is_active(datetime!(2026-06-01 0:00 UTC)));
    }
}
