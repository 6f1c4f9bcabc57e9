//! Host identifiers (hostids) and device types.
//!
//! A hostid names a machine or a user: a license can be bound to one, a reservation can name one, and a
//! capability request carries one. Written as `KIND=VALUE`, for example `ethernet=0050569a3b01`,
//! `machine_id=4c4c4544…`, `vm_uuid=564d…`, `user=alice`, `string=lab-42`, `container=9f3e…`.
//! Values are normalised on parsing (MAC separators dropped, hex lower-cased) so that two spellings
//! of one identifier compare equal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kinds of host identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HostIdKind {
    /// The MAC address of a physical network interface, 12 hex digits.
    Ethernet,
    /// The operating system's machine id (`/etc/machine-id`), 32 hex digits.
    MachineId,
    /// The UUID a hypervisor (or the firmware) gives the machine (DMI product UUID).
    VmUuid,
    /// A user name: for user-based reservations and named users.
    User,
    /// A custom string chosen by the producer or the administrator.
    String,
    /// A container id (12 to 64 hex digits).
    Container,
    /// A PC identifier (see [`crate::pcid`]): what a device activates a node-locked key with.
    PcId,
}

impl HostIdKind {
    /// Every kind, in display order.
    pub const ALL: [HostIdKind; 7] = [
        HostIdKind::Ethernet,
        HostIdKind::MachineId,
        HostIdKind::VmUuid,
        HostIdKind::User,
        HostIdKind::String,
        HostIdKind::Container,
        HostIdKind::PcId,
    ];

    /// The name used in `KIND=VALUE`.
    pub fn as_str(self) -> &'static str {
        match self {
            HostIdKind::Ethernet => "ethernet",
            HostIdKind::MachineId => "machine_id",
            HostIdKind::VmUuid => "vm_uuid",
            HostIdKind::User => "user",
            HostIdKind::String => "string",
            HostIdKind::Container => "container",
            HostIdKind::PcId => "pc_id",
        }
    }

    /// Parses a kind name, case-insensitive, accepting `-` for `_`.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        HostIdKind::ALL.into_iter().find(|k| k.as_str() == norm)
    }

    /// Whether the identifier names a person rather than a machine.
    pub fn is_user(self) -> bool {
        matches!(self, HostIdKind::User)
    }
}

impl fmt::Display for HostIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a hostid did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostIdError {
    /// Not of the form `KIND=VALUE`.
    #[error("a host id is written KIND=VALUE, e.g. ethernet=0050569a3b01 (kinds: ethernet, machine_id, vm_uuid, user, string, container, pc_id)")]
    MissingKind,
    /// The kind is not one we know.
    #[error("unknown host id kind '{0}' (kinds: ethernet, machine_id, vm_uuid, user, string, container, pc_id)")]
    UnknownKind(String),
    /// The value does not fit the kind.
    #[error("invalid {kind} value '{value}': {expected}")]
    InvalidValue {
        /// The kind.
        kind: HostIdKind,
        /// The value as given.
        value: String,
        /// What a value of this kind looks like.
        expected: &'static str,
    },
}

/// A host identifier: a kind and a normalised value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId {
    kind: HostIdKind,
    value: String,
}

fn hex_only(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    cleaned
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then_some(cleaned)
}

impl HostId {
    /// Builds a hostid, normalising and checking the value for its kind.
    pub fn new(kind: HostIdKind, value: &str) -> Result<Self, HostIdError> {
        let raw = value.trim();
        let invalid = |expected| HostIdError::InvalidValue {
            kind,
            value: raw.to_string(),
            expected,
        };
        let value = match kind {
            HostIdKind::Ethernet => hex_only(raw)
                .filter(|h| h.len() == 12)
                .ok_or_else(|| invalid("12 hex digits, e.g. 00:50:56:9a:3b:01"))?,
            HostIdKind::MachineId => hex_only(raw)
                .filter(|h| h.len() == 32)
                .ok_or_else(|| invalid("32 hex digits, as in /etc/machine-id"))?,
            HostIdKind::VmUuid => {
                let h = hex_only(raw)
                    .filter(|h| h.len() == 32)
                    .ok_or_else(|| invalid("a UUID, e.g. 564d2f1e-8a2b-4c3d-9e0f-1a2b3c4d5e6f"))?;
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                )
            }
            HostIdKind::Container => hex_only(raw)
                .filter(|h| (12..=64).contains(&h.len()))
                .ok_or_else(|| invalid("12 to 64 hex digits"))?,
            HostIdKind::PcId => crate::pcid::PcId::parse(raw)
                .map(|p| p.to_string())
                .map_err(|_| invalid("a PC identifier, e.g. K3TQ8-W1ZMC-7H2RA-PX0DV"))?,
            HostIdKind::User | HostIdKind::String => {
                if raw.is_empty() || raw.chars().count() > 256 || raw.chars().any(char::is_control)
                {
                    return Err(invalid("1 to 256 printable characters"));
                }
                raw.to_string()
            }
        };
        Ok(HostId { kind, value })
    }

    /// The kind.
    pub fn kind(&self) -> HostIdKind {
        self.kind
    }

    /// The normalised value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl From<&crate::pcid::PcId> for HostId {
    /// The `pc_id=…` host id of a PC identifier.
    fn from(p: &crate::pcid::PcId) -> Self {
        HostId {
            kind: HostIdKind::PcId,
            value: p.to_string(),
        }
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.value)
    }
}

impl FromStr for HostId {
    type Err = HostIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s.split_once('=').ok_or(HostIdError::MissingKind)?;
        let kind =
            HostIdKind::parse(kind).ok_or_else(|| HostIdError::UnknownKind(kind.trim().into()))?;
        HostId::new(kind, value)
    }
}

impl Serialize for HostId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What kind of machine a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeviceType {
    /// Real hardware.
    Physical,
    /// A virtual machine.
    Virtual,
    /// A container (its hardware identifiers are the host's or made up).
    Container,
    /// Could not be determined.
    #[default]
    Unknown,
}

impl DeviceType {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Physical => "physical",
            DeviceType::Virtual => "virtual",
            DeviceType::Container => "container",
            DeviceType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_normalise() {
        let a: HostId = "ETHERNET=00:50:56:9A:3B:01".parse().unwrap();
        let b: HostId = "ethernet=0050569a3b01".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "ethernet=0050569a3b01");
        let u: HostId = "vm-uuid=564D2F1E8A2B4C3D9E0F1A2B3C4D5E6F".parse().unwrap();
        assert_eq!(u.value(), "564d2f1e-8a2b-4c3d-9e0f-1a2b3c4d5e6f");
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let e = "ethernet=0050".parse::<HostId>().unwrap_err();
        assert!(e.to_string().contains("12 hex digits"), "{e}");
        assert_eq!(
            "mac=00".parse::<HostId>(),
            Err(HostIdError::UnknownKind("mac".into()))
        );
        assert_eq!("alice".parse::<HostId>(), Err(HostIdError::MissingKind));
        assert!("user=".parse::<HostId>().is_err());
        assert!("user=al\u{7}ice".parse::<HostId>().is_err());
    }

    #[test]
    fn users_keep_their_case() {
        let u: HostId = "user=Alice".parse().unwrap();
        assert_eq!(u.value(), "Alice");
        assert!(u.kind().is_user());
    }
}
