//! Offline request and response files.
//!
//! A license server or device that cannot reach the back office writes an **offline request**
//! (`-----BEGIN TESSERA OFFLINE REQUEST-----`), carries it to a machine that can, and brings back
//! the **offline response** (`-----BEGIN TESSERA OFFLINE RESPONSE-----`). Online activation sends
//! the same request body over HTTP, so both paths follow the same rules.
//!
//! A request is signed by its requester's own Ed25519 key, named in the request: the signature
//! proves the file was not altered on the way, and the request id (`jti`) makes answering it twice
//! return the same answer. The request also names the producer key it is meant for (`aud`), so a
//! request meant for another producer is refused. The response is signed by the producer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::hostid::HostId;
use crate::keys::{Keyring, PublicKey, SigningKey};

/// One activation key with the count wanted from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCount {
    /// The activation key as typed.
    pub key: String,
    /// How many seats (for a server) to activate.
    pub count: u32,
}

impl KeyCount {
    /// `count` seats from the activation key `key`.
    pub fn new(key: impl Into<String>, count: u32) -> Self {
        KeyCount {
            key: key.into(),
            count,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestBody {
    /// A license server activates one or more activation keys with counts.
    ServerActivation {
        /// The server's host id.
        server_hostid: HostId,
        /// The server's Ed25519 public key (base64url, 32 bytes), to be certified.
        server_key: String,
        /// Keys and counts.
        activations: Vec<KeyCount>,
    },
    /// A device activates a node-locked key.
    DeviceActivation {
        /// The activation key as typed.
        key: String,
        /// The device's PC identifier for the product.
        pc_id: String,
        /// The product the application is, to catch a key for another product.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
    },
    /// A license server renews its license bundle (and reports usage).
    Renewal {
        /// The server's host id.
        server_hostid: HostId,
        /// A usage report document (armoured), if the server sends one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_report: Option<String>,
    },
    /// A license server confirms it applied a response and serves its license: the back office
    /// records which bundle a server that never goes online runs. It is answered with an
    /// acknowledgement, not a response document.
    Confirmation {
        /// The server's host id.
        server_hostid: HostId,
        /// The id (`jti`) of the license the server serves now.
        license: String,
        /// The request the applied response answered, when the server knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<String>,
    },
}

/// The claims of an offline (or online) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestClaims {
    /// Request id: answering the same id twice returns the same answer.
    pub jti: String,
    /// When it was made.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// The key id of the producer key the request is meant for.
    pub aud: String,
    /// The requester's Ed25519 public key (base64url, 32 bytes); the request is signed with it.
    pub requester_key: String,
    /// What is asked for.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// Decodes a base64url Ed25519 public key; `what` names it in the error.
pub fn decode_key(b64: &str, what: &str) -> Result<PublicKey, VerifyError> {
    let bad = |detail: String| VerifyError::Malformed {
        line: 1,
        column: 1,
        detail,
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| bad(format!("{what} is not base64url: {e}")))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("{what} is {} bytes, not 32", bytes.len())))?;
    PublicKey::from_bytes(&arr).map_err(|e| bad(format!("{what}: {e}")))
}

/// Encodes a public key as base64url of its 32 bytes.
pub fn encode_key(key: &PublicKey) -> String {
    URL_SAFE_NO_PAD.encode(key.to_bytes())
}

impl RequestClaims {
    /// Signs the request with the requester's key (its public key is written into the request).
    pub fn sign(mut self, requester: &SigningKey) -> Result<String, SignError> {
        self.requester_key = encode_key(&requester.public());
        document::sign_armoured(requester, DocumentType::OfflineRequest, &self)
    }

    /// Verifies a request: its signature by the key it names, and its type. Freshness and
    /// replay are the back office's business (it answers a request id once).
    pub fn verify(text: &str, now: OffsetDateTime) -> Result<RequestClaims, VerifyError> {
        let unverified: RequestClaims =
            document::decode_unverified(text, DocumentType::OfflineRequest)?;
        let key = decode_key(&unverified.requester_key, "requester_key")?;
        let verified: RequestClaims =
            document::verify(text, &Keyring::with(key), DocumentType::OfflineRequest, now)?.claims;
        Ok(verified)
    }

    /// The requester's public key.
    pub fn requester_public_key(&self) -> Result<PublicKey, VerifyError> {
        decode_key(&self.requester_key, "requester_key")
    }
}

/// The claims of the producer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseClaims {
    /// Response id.
    pub jti: String,
    /// When it was made.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// The request it answers.
    pub in_reply_to: String,
    /// The license file granted (armoured).
    pub license: String,
    /// The server certificate, for a license server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl ResponseClaims {
    /// Signs the response with the producer's key.
    pub fn issue(&self, producer: &SigningKey) -> Result<String, SignError> {
        document::sign_armoured(producer, DocumentType::OfflineResponse, self)
    }

    /// Verifies a response against the producer's keys.
    pub fn verify(
        text: &str,
        producer_keys: &Keyring,
        now: OffsetDateTime,
    ) -> Result<ResponseClaims, VerifyError> {
        Ok(document::verify(text, producer_keys, DocumentType::OfflineResponse, now)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn request() -> RequestClaims {
        RequestClaims {
            jti: "r1".into(),
            iat: datetime!(2026-06-01 0:00 UTC),
            aud: "producer-kid".into(),
            requester_key: String::new(),
            body: RequestBody::DeviceActivation {
                key: "K".into(),
                pc_id: "P".into(),
                product: None,
            },
        }
    }

    #[test]
    fn self_signed_request_round_trip_and_tamper() {
        let device = SigningKey::from_seed(&[5; 32]);
        let text = request().sign(&device).unwrap();
        let back = RequestClaims::verify(&text, datetime!(2026-06-01 0:00 UTC)).unwrap();
        assert_eq!(back.jti, "r1");
        assert_eq!(back.requester_public_key().unwrap(), device.public());
        // a request re-signed by someone else but still naming the original key fails
        let other = SigningKey::from_seed(&[6; 32]);
        let mut forged = request();
        forged.requester_key = encode_key(&device.public());
        let forged_text =
            document::sign_armoured(&other, DocumentType::OfflineRequest, &forged).unwrap();
        assert!(RequestClaims::verify(&forged_text, datetime!(2026-06-01 0:00 UTC)).is_err());
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["kind"], "device_activation");
    }
}
