//! Server certificates: a license server's public key, certified by the producer.
//!
//! When a license server activates, the back office signs a [`ServerCertificateClaims`] document
//! naming the server's host id and its Ed25519 public key. The server hands the certificate to its
//! clients; a client that trusts the producer's key checks the certificate, then the server's
//! signature on each capability response, so a fake server cannot answer for a real one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::hostid::HostId;
use crate::keys::{Keyring, PublicKey, SigningKey};

/// The claims of a server certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCertificateClaims {
    /// Certificate id.
    pub jti: String,
    /// Issuer (the producer).
    pub iss: String,
    /// The customer the server belongs to.
    pub sub: String,
    /// Issued at.
    #[serde(with = "time::serde::timestamp")]
    pub iat: OffsetDateTime,
    /// Expires at.
    #[serde(with = "time::serde::timestamp")]
    pub exp: OffsetDateTime,
    /// The server's host id.
    pub server_hostid: HostId,
    /// The server's Ed25519 public key, 32 bytes, base64url.
    pub server_key: String,
}

impl ServerCertificateClaims {
    /// The server's public key.
    pub fn server_public_key(&self) -> Result<PublicKey, VerifyError> {
        let bad = |detail: String| VerifyError::Malformed {
            line: 1,
            column: 1,
            detail,
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.server_key)
            .map_err(|e| bad(format!("server_key is not base64url: {e}")))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("server_key is {} bytes, not 32", bytes.len())))?;
        PublicKey::from_bytes(&arr).map_err(|e| bad(e.to_string()))
    }

    /// Encodes a public key for `server_key`.
    pub fn encode_key(key: &PublicKey) -> String {
        URL_SAFE_NO_PAD.encode(key.to_bytes())
    }

    /// Signs the certificate with the producer's key; returns the armoured document.
    pub fn issue(&self, producer: &SigningKey) -> Result<String, SignError> {
        document::sign_armoured(producer, DocumentType::ServerCertificate, self)
    }

    /// Verifies a certificate against the producer's keys at `now`.
    pub fn verify(
        text: &str,
        producer_keys: &Keyring,
        now: OffsetDateTime,
    ) -> Result<ServerCertificateClaims, VerifyError> {
        let claims: ServerCertificateClaims =
            document::verify(text, producer_keys, DocumentType::ServerCertificate, now)?.claims;
        claims.server_public_key()?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn certificate_round_trip_and_wrong_producer() {
        let producer = SigningKey::from_seed(&[1; 32]);
        let server = SigningKey::from_seed(&[2; 32]);
        let now = datetime!(2026-06-01 0:00 UTC);
        let c = ServerCertificateClaims {
            jti: "c1".into(),
            iss: "Example".into(),
            sub: "ACME".into(),
            iat: now,
            exp: now + time::Duration::days(30),
            server_hostid: "ethernet=0050569a3b01".parse().unwrap(),
            server_key: ServerCertificateClaims::encode_key(&server.public()),
        };
        let text = c.issue(&producer).unwrap();
        let back =
            ServerCertificateClaims::verify(&text, &Keyring::with(producer.public()), now).unwrap();
        assert_eq!(back.server_public_key().unwrap(), server.public());
        let other = SigningKey::from_seed(&[3; 32]);
        assert!(matches!(
            ServerCertificateClaims::verify(&text, &Keyring::with(other.public()), now),
            Err(VerifyError::UnknownKeyId { .. })
        ));
    }
}
