//! Client keys and trusted producer keys.
//!
//! **Client keys** are public keys the administrator uploads (RSA-2048 or Ed25519, DER: a
//! SubjectPublicKeyInfo, or for RSA a PKCS#1 RSAPublicKey). With `require_signed_requests = true`
//! in server.toml every capability request must carry a signature by one of them
//! (`Tessera-Signature`, [`tessera_wire::signing`]); without it nothing is looked at and the
//! capability route costs what it did. Signatures are checked with `ring`.
//!
//! **Trusted producer keys** are the producer's public keys the server accepts license bundles
//! and certificates from: the key it was made with (`producer.pub`), and those the administrator
//! adds when the producer rotates its signing key. The last one cannot be removed.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tessera_core::{Keyring, PublicKey};
use tessera_store::{
    AnyStore, ClientKeyRecord, ClientKeyStore, InstanceId, KeyRemoval, StoreError, TrustedKeyRecord,
};
use tessera_wire::signing::{signed_message, RequestSignature, SignatureAlg};

use crate::server::Server;

/// The algorithm of a client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// `rsa-2048` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// Why an uploaded key was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyRefused(pub String);

/// A client key, ready to check signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// Its fingerprint: hex of the first 16 bytes of the SHA-256 of [`ClientKey::spki`].
    pub id: String,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// The key as SubjectPublicKeyInfo DER (an RSA key given as PKCS#1 is wrapped).
    pub spki: Vec<u8>,
    /// What `ring` takes: the PKCS#1 RSAPublicKey, or the 32 bytes of an Ed25519 key.
    raw: Vec<u8>,
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// An OID's dotted form, for a message.
fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        }
        if i > 32 {
            break;
        }
    }
    parts.join(".")
}

const HOW_TO_EXPORT: &str = "export the public key as DER: `openssl pkey -pubin -in key.pub.pem -outform DER -out key.der` (or from the private key: `openssl pkey -in key.pem -pubout -outform DER -out key.der`)";

/// Reads a PKCS#1 RSAPublicKey: its modulus must be 2048 bits.
fn rsa_pkcs1(der_bytes: &[u8]) -> Result<(), KeyRefused> {
    let bad = || {
        KeyRefused(format!(
            "the file is not a valid RSA public key (the RSAPublicKey structure does not read): {HOW_TO_EXPORT}"
        ))
    };
    let (tag, seq, rest) = tlv(der_bytes).ok_or_else(bad)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad());
    }
    let (tag, n, rest) = tlv(seq).ok_or_else(bad)?;
    let (tag_e, e, rest) = match tag {
        0x02 => tlv(rest).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if tag_e != 0x02 || !rest.is_empty() || n.first().is_none_or(|b| b & 0x80 != 0) {
        return Err(bad());
    }
    let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    let bits = n
        .first()
        .map_or(0, |b| (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
    if bits != 2048 {
        return Err(KeyRefused(format!(
            "the RSA key has {bits} bits: a client key must be RSA-2048 (a 2048-bit modulus) or Ed25519; nothing was stored"
        )));
    }
    let e: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if e.is_empty() || e.len() > 4 || !odd || e == [1] {
        return Err(KeyRefused(
            "the RSA key's public exponent is not an odd number from 3 to 2^32 (65537 is usual): nothing was stored".into(),
        ));
    }
    Ok(())
}

impl ClientKey {
    /// Reads an uploaded key: RSA-2048 (SubjectPublicKeyInfo or PKCS#1 RSAPublicKey DER) or
    /// Ed25519 (SubjectPublicKeyInfo DER). Anything else is refused, saying what it is.
    pub fn from_der(bytes: &[u8]) -> Result<ClientKey, KeyRefused> {
        if bytes.is_empty() {
            return Err(KeyRefused(format!("the file is empty: {HOW_TO_EXPORT}")));
        }
        if bytes.starts_with(b"-----BEGIN") {
            return Err(KeyRefused(format!(
                "the file is PEM text, not DER: {HOW_TO_EXPORT}"
            )));
        }
        let garbage = || {
            KeyRefused(format!(
                "the file is not a DER-encoded public key (neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey): {HOW_TO_EXPORT}"
            ))
        };
        let (tag, seq, rest) = tlv(bytes).ok_or_else(garbage)?;
        if tag != 0x30 || !rest.is_empty() {
            return Err(garbage());
        }
        let (first, _, _) = tlv(seq).ok_or_else(garbage)?;
        match first {
            // PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }
            0x02 => {
                rsa_pkcs1(bytes)?;
                Ok(Self::rsa(bytes))
            }
            // SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID, params }, BIT STRING }
            0x30 => {
                let (_, alg, rest) = tlv(seq).ok_or_else(garbage)?;
                let (tag, bits, rest) = tlv(rest).ok_or_else(garbage)?;
                if tag != 0x03 || !rest.is_empty() {
                    return Err(garbage());
                }
                let (tag, oid, _) = tlv(alg).ok_or_else(garbage)?;
                if tag != 0x06 {
                    return Err(garbage());
                }
                let key = match bits.split_first() {
                    Some((0, key)) => key,
                    _ => return Err(garbage()),
                };
                match oid {
                    OID_RSA => {
                        rsa_pkcs1(key)?;
                        Ok(Self::rsa(key))
                    }
                    OID_ED25519 => {
                        if key.len() != 32 {
                            return Err(KeyRefused(
                                "the Ed25519 key is not 32 bytes long: nothing was stored".into(),
                            ));
                        }
                        Ok(Self::made(
                            KeyAlgorithm::Ed25519,
                            tessera_wire::signing::spki_for_ed25519(key),
                            key.to_vec(),
                        ))
                    }
                    OID_EC => Err(KeyRefused(
                        "the key is an elliptic-curve (EC) key: a client key must be RSA-2048 or Ed25519; nothing was stored".into(),
                    )),
                    other => {
                        let name = match other {
                            OID_ED448 => " (Ed448)",
                            OID_DSA => " (DSA)",
                            _ => "",
                        };
                        Err(KeyRefused(format!(
                            "the key's algorithm {}{name} is not RSA or Ed25519: a client key must be RSA-2048 or Ed25519; nothing was stored",
                            dotted(other)
                        )))
                    }
                }
            }
            _ => Err(garbage()),
        }
    }

    /// An RSA key from its (checked) PKCS#1 form, wrapped as a SubjectPublicKeyInfo.
    fn rsa(pkcs1: &[u8]) -> ClientKey {
        Self::made(
            KeyAlgorithm::Rsa2048,
            tessera_wire::signing::spki_for_rsa(pkcs1),
            pkcs1.to_vec(),
        )
    }

    fn made(algorithm: KeyAlgorithm, spki: Vec<u8>, raw: Vec<u8>) -> ClientKey {
        ClientKey {
            id: fingerprint(&spki),
            algorithm,
            spki,
            raw,
        }
    }

    /// Checks `sig` by this key over `msg` with `alg`; the error says why it does not verify.
    pub fn verify(&self, alg: SignatureAlg, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        use ring::signature;
        let scheme: &dyn signature::VerificationAlgorithm = match (self.algorithm, alg) {
            (KeyAlgorithm::Rsa2048, SignatureAlg::RsaPssSha256) => {
                &signature::RSA_PSS_2048_8192_SHA256
            }
            (KeyAlgorithm::Rsa2048, SignatureAlg::RsaPkcs1Sha256) => {
                &signature::RSA_PKCS1_2048_8192_SHA256
            }
            (KeyAlgorithm::Ed25519, SignatureAlg::Ed25519) => &signature::ED25519,
            (k, a) => {
                return Err(format!(
                    "alg={} does not fit client key {} ({}): use {}",
                    a.as_str(),
                    self.id,
                    k.as_str(),
                    match k {
                        KeyAlgorithm::Ed25519 => "alg=ed25519",
                        _ => "alg=rsa-pss-sha256 or alg=rsa-pkcs1-sha256",
                    }
                ))
            }
        };
        signature::UnparsedPublicKey::new(scheme, &self.raw)
            .verify(msg, sig)
            .map_err(|_| {
                format!(
                    "the signature does not verify with client key {}: sign the line `tessera-capability-request-v1`, the line `created`, then the body exactly as sent (docs/protocol.md)",
                    self.id
                )
            })
    }

    /// The record the store keeps.
    fn record(&self, at: time::OffsetDateTime, by: &str) -> ClientKeyRecord {
        ClientKeyRecord {
            id: self.id.clone(),
            algorithm: self.algorithm.as_str().into(),
            public_der: STANDARD.encode(&self.spki),
            added_at: at,
            added_by: by.into(),
        }
    }
}

/// Whether a license bundle's signature is by a key of `ring` (its expiry aside).
fn bundle_verifies(
    text: &str,
    ring: &Keyring,
    host: &tessera_core::HostId,
    now: time::OffsetDateTime,
) -> bool {
    use tessera_core::{License, VerifyError};
    match License::verify(text, ring, now, std::slice::from_ref(host)) {
        Ok(_) => true,
        Err(VerifyError::Expired { .. } | VerifyError::NotYetValid { .. }) => true,
        Err(_) => false,
    }
}

pub use tessera_wire::signing::fingerprint;

/// The client keys in force, by id.
pub(crate) type ClientKeySet = Arc<HashMap<String, Arc<ClientKey>>>;

/// Why a capability request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureRefusal {
    /// No `Tessera-Signature` header.
    Required,
    /// A header that does not read, a stale time, or a signature that does not verify.
    Invalid(String),
    /// A key id that is not registered.
    UnknownKey(String),
}

/// The client keys in the store, by id (one that does not read is left out, logged).
pub(crate) async fn load_client_keys(store: &AnyStore) -> Result<ClientKeySet, StoreError> {
    let mut keys = HashMap::new();
    for r in store.client_keys(&InstanceId::on_site()).await? {
        let parsed = STANDARD
            .decode(&r.public_der)
            .ok()
            .and_then(|der| ClientKey::from_der(&der).ok());
        match parsed {
            Some(k) if k.id == r.id => {
                keys.insert(k.id.clone(), Arc::new(k));
            }
            _ => tracing::error!(
                key = %r.id,
                "a client key in the store does not read (changed outside the server); requests signed with it are refused"
            ),
        }
    }
    Ok(Arc::new(keys))
}

/// The producer keys trusted (their ids as stored, and the keyring), trusting `producer` (the key
/// of `producer.pub`) first when the store holds none: the first start with schema 19.
pub(crate) async fn load_producer_keys(
    store: &AnyStore,
    producer: &PublicKey,
    now: time::OffsetDateTime,
) -> Result<(Vec<String>, Keyring), StoreError> {
    let site = InstanceId::on_site();
    let mut stored = store.trusted_producer_keys(&site).await?;
    if stored.is_empty() {
        let record = TrustedKeyRecord {
            kid: producer.kid().to_string(),
            public_pem: producer.to_spki_pem().map_err(|e| StoreError::Corrupt {
                detail: e.to_string(),
            })?,
            added_at: now,
            added_by: "init".into(),
        };
        store.add_trusted_producer_key(&site, &record).await?;
        stored = store.trusted_producer_keys(&site).await?;
    }
    let mut ring = Keyring::new();
    for r in &stored {
        match PublicKey::from_spki_pem(&r.public_pem) {
            Ok(k) if k.kid().as_str() == r.kid => ring.add(k),
            _ => tracing::error!(
                kid = %r.kid,
                "a trusted producer key in the store does not read (changed outside the server); ignored"
            ),
        }
    }
    if ring.is_empty() {
        // never none: the key the server was made with
        ring.add(producer.clone());
    }
    Ok((stored.into_iter().map(|r| r.kid).collect(), ring))
}

impl Server {
    /// Reads the client keys and trusted producer keys from the store into the sets in force,
    /// trusting `producer.pub`'s key first when the store holds none (the first start with
    /// schema 19). Says whether anything changed.
    pub(crate) async fn refresh_keys(&self) -> Result<bool, StoreError> {
        let keys = load_client_keys(&self.store).await?;
        let producers = load_producer_keys(&self.store, &self.producer, self.clock.now()).await?;
        let mut changed = false;
        {
            let mut current = self.client_keys.write().unwrap_or_else(|e| e.into_inner());
            let same =
                current.len() == keys.len() && keys.keys().all(|id| current.contains_key(id));
            if !same {
                *current = keys;
                changed = true;
            }
        }
        {
            let mut current = self
                .producer_keys
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if current.0 != producers.0 {
                *current = producers;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The producer keys trusted now.
    pub fn producer_keyring(&self) -> Keyring {
        self.producer_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The client key of this id, if registered.
    fn client_key(&self, id: &str) -> Option<Arc<ClientKey>> {
        self.client_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Checks a capability request's signature header against the client keys (only called with
    /// `require_signed_requests`).
    pub(crate) async fn check_request_signature(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<String, SignatureRefusal> {
        let header = header.ok_or(SignatureRefusal::Required)?;
        let header = std::str::from_utf8(header).map_err(|_| {
            SignatureRefusal::Invalid("the Tessera-Signature header is not text".into())
        })?;
        let sig = RequestSignature::parse(header)
            .map_err(|e| SignatureRefusal::Invalid(format!("the Tessera-Signature header: {e}")))?;
        let now = self.clock.now().unix_timestamp();
        let skew = i64::from(self.config.signed_request_max_skew_seconds);
        if (sig.created - now).abs() > skew {
            return Err(SignatureRefusal::Invalid(format!(
                "the signature was made at {} (unix seconds) and this server's clock says {now}: more than {skew} s apart. Check the client's clock; sign each request when it is sent",
                sig.created
            )));
        }
        let mut key = self.client_key(&sig.keyid);
        if key.is_none() && self.config.cluster {
            // another member may have registered it a moment ago
            if let Err(e) = self.refresh_keys().await {
                tracing::warn!(error = %e, "could not read the client keys");
            }
            key = self.client_key(&sig.keyid);
        }
        let key = key.ok_or_else(|| SignatureRefusal::UnknownKey(sig.keyid.clone()))?;
        key.verify(sig.alg, &signed_message(sig.created, body), &sig.sig)
            .map_err(SignatureRefusal::Invalid)?;
        Ok(key.id.clone())
    }

    /// The client keys registered, oldest first.
    pub async fn list_client_keys(&self) -> Result<Vec<ClientKeyRecord>, StoreError> {
        self.store.client_keys(&InstanceId::on_site()).await
    }

    /// Registers a client key read from DER (`Ok(Err(_))`: refused, nothing stored).
    pub async fn add_client_key(
        &self,
        der: &[u8],
        by: &str,
    ) -> Result<Result<ClientKeyRecord, KeyRefused>, StoreError> {
        let key = match ClientKey::from_der(der) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let record = key.record(self.clock.now(), by);
        match self
            .store
            .add_client_key(&InstanceId::on_site(), &record)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Ok(Err(KeyRefused(format!(
                    "client key {} is registered already; nothing changed",
                    key.id
                ))))
            }
            Err(e) => return Err(e),
        }
        self.refresh_keys().await?;
        Ok(Ok(record))
    }

    /// Deletes a client key; says whether there was one.
    pub async fn delete_client_key(&self, id: &str) -> Result<bool, StoreError> {
        let gone = self
            .store
            .delete_client_key(&InstanceId::on_site(), id)
            .await?;
        self.refresh_keys().await?;
        Ok(gone)
    }

    /// The trusted producer keys, oldest first.
    pub async fn list_producer_keys(&self) -> Result<Vec<TrustedKeyRecord>, StoreError> {
        self.store
            .trusted_producer_keys(&InstanceId::on_site())
            .await
    }

    /// Trusts another producer key (SPKI PEM, Ed25519). `Ok(Err(_))`: refused, nothing stored.
    pub async fn add_producer_key(
        &self,
        pem: &str,
        by: &str,
    ) -> Result<Result<TrustedKeyRecord, KeyRefused>, StoreError> {
        let key = match PublicKey::from_spki_pem(pem) {
            Ok(k) => k,
            Err(e) => {
                return Ok(Err(KeyRefused(format!(
                    "not a producer public key (SPKI PEM, Ed25519, as in producer.pub): {e}; nothing was stored"
                ))))
            }
        };
        let record = TrustedKeyRecord {
            kid: key.kid().to_string(),
            public_pem: key.to_spki_pem().map_err(|e| StoreError::Corrupt {
                detail: e.to_string(),
            })?,
            added_at: self.clock.now(),
            added_by: by.into(),
        };
        if !self
            .store
            .add_trusted_producer_key(&InstanceId::on_site(), &record)
            .await?
        {
            return Ok(Err(KeyRefused(format!(
                "producer key {} is trusted already; nothing changed",
                record.kid
            ))));
        }
        self.refresh_keys().await?;
        Ok(Ok(record))
    }

    /// Stops trusting a producer key, unless it is the last one. `Ok(None)`: refused because the
    /// license bundle installed verifies only with it (the server could not start again).
    pub async fn remove_producer_key(&self, kid: &str) -> Result<Option<KeyRemoval>, StoreError> {
        let installed = self.installed.lock().await.clone();
        if let Some(text) = installed.as_deref() {
            let (kids, ring) =
                load_producer_keys(&self.store, &self.producer, self.clock.now()).await?;
            let mut without = Keyring::new();
            for other in kids.iter().filter(|k| k.as_str() != kid) {
                if let Some(k) = ring.get(other) {
                    without.add(k.clone());
                }
            }
            let now = self.clock.now();
            let verifies = |ring: &Keyring| bundle_verifies(text, ring, &self.hostid, now);
            if kids.iter().any(|k| k == kid) && verifies(&ring) && !verifies(&without) {
                return Ok(None);
            }
        }
        let r = self
            .store
            .remove_trusted_producer_key(&InstanceId::on_site(), kid)
            .await?;
        if r == KeyRemoval::Removed {
            self.refresh_keys().await?;
        }
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reads_and_oids_print() {
        let made = tessera_wire::signing::spki_for_ed25519(&[9; 32]);
        let (tag, c, rest) = tlv(&made).unwrap();
        assert_eq!((tag, c.len(), rest.len()), (0x30, made.len() - 2, 0));
        assert_eq!(ClientKey::from_der(&made).unwrap().spki, made);
        assert!(tlv(&[0x30, 0x05, 1, 2]).is_none(), "shorter than it says");
        assert!(tlv(&[0x30, 0x80]).is_none(), "indefinite length");
        assert_eq!(dotted(OID_RSA), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(OID_EC), "1.2.840.10045.2.1");
    }

    #[test]
    fn garbage_and_pem_are_refused_saying_so() {
        let e = ClientKey::from_der(b"hello, world").unwrap_err();
        assert!(e.0.contains("not a DER-encoded public key"), "{e}");
        let e = ClientKey::from_der(b"-----BEGIN PUBLIC KEY-----\n").unwrap_err();
        assert!(e.0.contains("PEM text, not DER"), "{e}");
        let e = ClientKey::from_der(&[]).unwrap_err();
        assert!(e.0.contains("empty"), "{e}");
        // an Ed25519 SPKI of the wrong length
        let e = ClientKey::from_der(&[
            0x30, 0x0a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x01, 0x00,
        ])
        .unwrap_err();
        assert!(e.0.contains("32 bytes"), "{e}");
    }
}
