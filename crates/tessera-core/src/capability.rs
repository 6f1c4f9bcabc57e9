//! Capability requests and responses: how an application asks a license server for seats.
//!
//! The request is plain JSON; the response is a document signed by the license server's key (which
//! the producer certified, see [`crate::certificate`]) and echoes the client's nonce and request
//! id, so a client can reject a fake server and a replayed answer. `docs/protocol.md` describes it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::keys::{Keyring, SigningKey};

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Take seats.
    Request,
    /// Say what a request would get, taking nothing.
    Preview,
    /// Extend leases held.
    Renew,
    /// Give leases back.
    Return,
    /// Take seats offline until a date.
    Borrow,
}

/// One feature asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WantedFeature {
    /// Feature name.
    pub name: String,
    /// Lowest acceptable version (default 1.0).
    #[serde(default)]
    pub version: crate::Version,
    /// Seats (default 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// A capability request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    /// The operation.
    pub operation: Operation,
    /// The device's host id, `KIND=VALUE`.
    pub device_id: String,
    /// Physical, virtual, container or unknown.
    #[serde(default)]
    pub device_type: crate::DeviceType,
    /// A human-readable name for the device.
    #[serde(default)]
    pub alias: Option<String>,
    /// The user on the device.
    #[serde(default)]
    pub user: Option<String>,
    /// Retrying the same request id never takes a second seat.
    pub request_id: String,
    /// Echoed in the signed response (base64url, 16 to 64 characters).
    pub nonce: String,
    /// Features wanted (request, preview, borrow).
    #[serde(default)]
    pub features: Vec<WantedFeature>,
    /// Leases to renew or return.
    #[serde(default)]
    pub leases: Vec<u64>,
    /// For a borrow: days offline (at most the policy's longest borrow).
    #[serde(default)]
    pub borrow_days: Option<u32>,
}

/// A seat granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedSeat {
    /// Lease id.
    pub lease: u64,
    /// Feature.
    pub feature: String,
    /// The record's version.
    pub version: String,
    /// Seats.
    pub count: u32,
    /// Of those, beyond the count.
    #[serde(default)]
    pub overdraft: u32,
    /// Lease expiry.
    #[serde(with = "time::serde::timestamp")]
    pub expires: OffsetDateTime,
    /// Taken offline.
    #[serde(default)]
    pub borrowed: bool,
}

/// A feature not granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedFeature {
    /// Feature (or lease id, for renew and return).
    pub feature: String,
    /// Stable code: `not_licensed`, `version_too_low`, `not_active`, `all_in_use`, `bad_count`,
    /// `unknown_lease`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// The signed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityResponseClaims {
    /// The client's nonce.
    pub nonce: String,
    /// The client's request id.
    pub request_id: String,
    /// The device.
    pub device_id: String,
    /// The operation answered.
    pub operation: Operation,
    /// The server's host id.
    pub server: String,
    /// When answered.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// Granted seats (request, borrow, renew).
    pub grants: Vec<GrantedSeat>,
    /// Refused features or leases.
    pub denials: Vec<DeniedFeature>,
    /// Renew leases at least this often (seconds).
    pub renew_interval_secs: u64,
}

impl CapabilityResponseClaims {
    /// Signs the answer with the server's key; returns the compact token.
    pub fn sign(&self, server: &SigningKey) -> Result<String, SignError> {
        document::sign(server, DocumentType::CapabilityResponse, self)
    }

    /// Verifies an answer with the server's (certified) key and checks it answers `nonce`.
    pub fn verify(
        token: &str,
        server_key: &Keyring,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<CapabilityResponseClaims, VerifyError> {
        let c: CapabilityResponseClaims =
            document::verify(token, server_key, DocumentType::CapabilityResponse, now)?.claims;
        if c.nonce != nonce {
            return Err(VerifyError::Malformed {
                line: 1,
                column: 1,
                detail: "the response answers another request (nonce mismatch): a replayed answer"
                    .into(),
            });
        }
        Ok(c)
    }
}
