//! Ed25519 signing keys with key ids.
//!
//! A producer signs everything it issues with its private key; applications and license servers hold
//! the public key. Every signed document names its key by a key id (`kid`), so keys can rotate: a
//! [`Keyring`] holds every public key still trusted. The key id is the key's RFC 7638 JWK thumbprint,
//! which any JOSE library can compute from the public key alone.
//!
//! Files: the private key is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the public key SPKI PEM
//! (`-----BEGIN PUBLIC KEY-----`), so `openssl pkey` and every JOSE library read them.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A key id: the base64url RFC 7638 thumbprint of the public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a key id read from a document or a store.
    pub fn new(s: impl Into<String>) -> Self {
        KeyId(s.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(public: &ed25519_dalek::VerifyingKey) -> Self {
        // RFC 7638: the required members in lexicographic order, no white space.
        let jwk = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(public.as_bytes())
        );
        KeyId(URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes())))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error(
        "not an Ed25519 private key in PKCS#8 PEM form (-----BEGIN PRIVATE KEY-----): {detail}"
    )]
    InvalidPrivateKey {
        /// What the decoder said.
        detail: String,
    },
    /// Not an SPKI PEM Ed25519 public key.
    #[error("not an Ed25519 public key in SPKI PEM form (-----BEGIN PUBLIC KEY-----): {detail}")]
    InvalidPublicKey {
        /// What the decoder said.
        detail: String,
    },
    /// Encoding failed (should not happen for a valid key).
    #[error("could not encode the key: {detail}")]
    Encode {
        /// What the encoder said.
        detail: String,
    },
}

/// An Ed25519 private key with its key id. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    kid: KeyId,
}

impl SigningKey {
    /// Draws a new key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_inner(ed25519_dalek::SigningKey::generate(rng))
    }

    /// A key from its 32-byte seed (for test vectors and key derivation).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_inner(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_inner(inner: ed25519_dalek::SigningKey) -> Self {
        let kid = KeyId::of(&inner.verifying_key());
        SigningKey { inner, kid }
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(Self::from_inner)
            .map_err(|e| KeyError::InvalidPrivateKey {
                detail: e.to_string(),
            })
    }

    /// Writes the key as PKCS#8 PEM. The string is wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|e| KeyError::Encode {
                detail: e.to_string(),
            })
    }

    /// The key id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            inner: self.inner.verifying_key(),
            kid: self.kid.clone(),
        }
    }

    /// Signs raw bytes.
    pub(crate) fn sign_bytes(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(kid={}, secret hidden)", self.kid)
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: ed25519_dalek::VerifyingKey,
    kid: KeyId,
}

impl PublicKey {
    /// Reads an SPKI PEM public key.
    pub fn from_spki_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self::from_inner)
            .map_err(|e| KeyError::InvalidPublicKey {
                detail: e.to_string(),
            })
    }

    /// A public key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self::from_inner)
            .map_err(|e| KeyError::InvalidPublicKey {
                detail: e.to_string(),
            })
    }

    fn from_inner(inner: ed25519_dalek::VerifyingKey) -> Self {
        let kid = KeyId::of(&inner);
        PublicKey { inner, kid }
    }

    /// Writes the key as SPKI PEM.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                detail: e.to_string(),
            })
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// The key id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The key as a JWK (`{"kty":"OKP","crv":"Ed25519","x":…,"kid":…}`).
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.inner.as_bytes()),
            "kid": self.kid.as_str(),
        })
    }

    /// Checks a signature over raw bytes (strict: rejects malleable signatures).
    pub(crate) fn verify_bytes(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.inner.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(kid={})", self.kid)
    }
}

/// The public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring holding one key.
    pub fn with(key: PublicKey) -> Self {
        let mut k = Self::new();
        k.add(key);
        k
    }

    /// Trusts another key.
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.kid.clone(), key);
    }

    /// The key with this id, if trusted.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(&KeyId(kid.to_string()))
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_kid() {
        let k = SigningKey::from_seed(&[7; 32]);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.kid(), k.kid());
        let pubpem = k.public().to_spki_pem().unwrap();
        assert!(pubpem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_spki_pem(&pubpem).unwrap(), k.public());
        assert!(!format!("{k:?}").contains(&pem[30..60]));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let pk = PublicKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            pk.kid().as_str(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let e = SigningKey::from_pkcs8_pem("hello").unwrap_err();
        assert!(matches!(e, KeyError::InvalidPrivateKey { .. }));
        let pubpem = SigningKey::from_seed(&[1; 32])
            .public()
            .to_spki_pem()
            .unwrap();
        // a public key is not a private key
        assert!(SigningKey::from_pkcs8_pem(&pubpem).is_err());
    }
}
