//! Signing capability requests with a client key (docs/protocol.md, "Signed requests"): for a
//! license server whose administrator requires it (`require_signed_requests = true`) and
//! registered the key's public half (`tessera server client-keys add`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{self, KeyPair as _};
use tessera_wire::signing::{signed_message, RequestSignature, SignatureAlg};

use crate::ClientError;

enum Key {
    Rsa(signature::RsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

/// A client key that signs capability requests: RSA-2048 (RSASSA-PSS with SHA-256 by default,
/// or PKCS#1 v1.5 with [`RequestSigner::pkcs1_v15`]) or Ed25519, read from PKCS#8.
pub struct RequestSigner {
    key: Key,
    alg: SignatureAlg,
    key_id: String,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RequestSigner(key_id={}, alg={}, private key hidden)",
            self.key_id,
            self.alg.as_str()
        )
    }
}

fn invalid(detail: impl Into<String>) -> ClientError {
    ClientError::InvalidClientKey {
        detail: detail.into(),
    }
}

impl RequestSigner {
    /// Reads a PKCS#8 private key, DER or PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl
    /// genpkey` writes it): RSA with a 2048-bit modulus, or Ed25519.
    pub fn from_pkcs8(key: &[u8]) -> Result<RequestSigner, ClientError> {
        let der = if key.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(key).map_err(|_| invalid("the PEM is not text"))?;
            if !text.contains("-----BEGIN PRIVATE KEY-----") {
                return Err(invalid(
                    "not a PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`); convert it with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem`",
                ));
            }
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::trim)
                .collect();
            STANDARD
                .decode(body)
                .map_err(|_| invalid("the PEM's base64 does not decode"))?
        } else {
            key.to_vec()
        };
        if let Ok(k) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            let public_der = tessera_wire::signing::spki_for_ed25519(k.public_key().as_ref());
            return Ok(Self::made(
                Key::Ed25519(k),
                SignatureAlg::Ed25519,
                public_der,
            ));
        }
        match signature::RsaKeyPair::from_pkcs8(&der) {
            Ok(k) => {
                let bits = k.public().modulus_len() * 8;
                if bits != 2048 {
                    return Err(invalid(format!(
                        "the RSA key has {bits} bits: license servers take RSA-2048 or Ed25519 client keys"
                    )));
                }
                let public_der = tessera_wire::signing::spki_for_rsa(k.public().as_ref());
                Ok(Self::made(
                    Key::Rsa(k),
                    SignatureAlg::RsaPssSha256,
                    public_der,
                ))
            }
            Err(e) => Err(invalid(format!(
                "not an RSA-2048 or Ed25519 PKCS#8 private key ({e})"
            ))),
        }
    }

    fn made(key: Key, alg: SignatureAlg, public_der: Vec<u8>) -> RequestSigner {
        RequestSigner {
            key,
            alg,
            key_id: tessera_wire::signing::fingerprint(&public_der),
            public_der,
        }
    }

    /// For an RSA key: sign with RSASSA-PKCS1-v1_5 (SHA-256) instead of PSS.
    pub fn pkcs1_v15(mut self) -> RequestSigner {
        if matches!(self.key, Key::Rsa(_)) {
            self.alg = SignatureAlg::RsaPkcs1Sha256;
        }
        self
    }

    /// The key's id as the license server lists it (its fingerprint).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as SubjectPublicKeyInfo DER: the file the administrator uploads.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// The `Tessera-Signature` header's value for `body` sent at `created` (unix seconds).
    pub fn header(&self, created: i64, body: &[u8]) -> Result<String, ClientError> {
        let msg = signed_message(created, body);
        let sig = match &self.key {
            Key::Ed25519(k) => k.sign(&msg).as_ref().to_vec(),
            Key::Rsa(k) => {
                let scheme: &'static dyn signature::RsaEncoding = match self.alg {
                    SignatureAlg::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    _ => &signature::RSA_PSS_SHA256,
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(scheme, &ring::rand::SystemRandom::new(), &msg, &mut sig)
                    .map_err(|_| invalid("the RSA signature could not be made"))?;
                sig
            }
        };
        Ok(RequestSignature {
            keyid: self.key_id.clone(),
            alg: self.alg,
            created,
            sig,
        }
        .header_value())
    }
}
