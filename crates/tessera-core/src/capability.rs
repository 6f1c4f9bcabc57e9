//! Capability requests and responses: how an application asks a license server for seats.
//!
//! The request is plain JSON; the response is a document signed by the license server's key (which
//! the producer certified, see [`crate::certificate`]) and echoes the client's nonce and request
//! id, so a client can reject a fake server and a replayed answer. `docs/protocol.md` describes it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::document::{self, DocumentType, SignError, VerifyError};
use crate::keys::{Keyring, SigningKey};

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this never fails
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The proof a client sends with a renew or return of lease `lease`: HMAC-SHA256 under the lease's
/// session key over `renew|return`, the request's nonce, request id and the lease id, base64url.
pub fn session_proof(
    session_key: &[u8],
    operation: Operation,
    nonce: &str,
    request_id: &str,
    lease: u64,
) -> String {
    let mut m = mac(session_key);
    m.update(proof_input(operation, nonce, request_id, lease).as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fn proof_input(operation: Operation, nonce: &str, request_id: &str, lease: u64) -> String {
    let op = match operation {
        Operation::Renew => "renew",
        Operation::Return => "return",
        Operation::Request => "request",
        Operation::Preview => "preview",
        Operation::Borrow => "borrow",
    };
    format!("tessera-session-proof|{op}|{nonce}|{request_id}|{lease}")
}

/// Checks a [`session_proof`] in constant time.
pub fn check_session_proof(
    session_key: &[u8],
    operation: Operation,
    nonce: &str,
    request_id: &str,
    lease: u64,
    proof: &str,
) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(proof) else {
        return false;
    };
    let mut m = mac(session_key);
    m.update(proof_input(operation, nonce, request_id, lease).as_bytes());
    m.verify_slice(&bytes).is_ok()
}

/// The `alg` of a batch-signed answer. The token is `HEADER.CLAIMS.PROOF` (base64url): HEADER and
/// CLAIMS as in a JWS; PROOF is JSON `{"path": [...], "sig": ...}`. The leaf of an answer is
/// SHA-256(0x00 ‖ "HEADER.CLAIMS"), an inner node SHA-256(0x01 ‖ left ‖ right) (an odd node is
/// carried up as it is); `path` lists the sibling hashes from the leaf up, each prefixed `L` or `R`
/// for the side it sits on; `sig` is the server key's Ed25519 signature of
/// "tessera-capability-batch-v1|" ‖ root. Verifying costs one signature check, like a JWS.
pub const BATCH_ALG: &str = "EdDSA-SHA256-batch";

fn leaf_hash(signing_input: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(signing_input);
    h.finalize().into()
}

fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

fn root_message(root: &[u8; 32]) -> Vec<u8> {
    let mut m = b"tessera-capability-batch-v1|".to_vec();
    m.extend_from_slice(root);
    m
}

fn header_alg(token: &str) -> Option<String> {
    let header = token.trim().split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["alg"].as_str().map(String::from)
}

fn verify_batch(token: &str, keys: &Keyring) -> Result<CapabilityResponseClaims, VerifyError> {
    let malformed = |detail: String| VerifyError::Malformed {
        line: 1,
        column: 1,
        detail,
    };
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(proof), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "a batch-signed answer has three parts separated by '.'".into(),
        ));
    };
    let json = |part: &str, what: &str| -> Result<serde_json::Value, VerifyError> {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed(format!("the {what} is not base64url JSON")))
    };
    let header = json(h, "header")?;
    if header["typ"] != DocumentType::CapabilityResponse.typ() {
        return Err(VerifyError::WrongDocumentType {
            expected: DocumentType::CapabilityResponse,
            found: header["typ"].as_str().unwrap_or("none").into(),
        });
    }
    let kid = header["kid"].as_str().unwrap_or_default();
    let key = keys.get(kid).ok_or_else(|| VerifyError::UnknownKeyId {
        kid: kid.to_string(),
    })?;
    let proof = json(proof, "proof")?;
    let mut node = leaf_hash(&token.as_bytes()[..h.len() + 1 + p.len()]);
    for step in proof["path"].as_array().into_iter().flatten() {
        let step = step.as_str().unwrap_or_default();
        let (left, hash) = match (step.strip_prefix('L'), step.strip_prefix('R')) {
            (Some(h), _) => (true, h),
            (_, Some(h)) => (false, h),
            _ => return Err(malformed("a proof path entry is not L or R".into())),
        };
        let sibling: [u8; 32] = URL_SAFE_NO_PAD
            .decode(hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("a proof path entry is not a hash".into()))?;
        node = if left {
            node_hash(&sibling, &node)
        } else {
            node_hash(&node, &sibling)
        };
    }
    let sig: [u8; 64] = proof["sig"]
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("the proof's signature is not 64 bytes of base64url".into()))?;
    if !key.verify_bytes(&root_message(&node), &sig) {
        return Err(VerifyError::SignatureMismatch);
    }
    URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("the claims are not the expected JSON".into()))
}

/// The lease a sealed response (see [`CapabilityResponseClaims::seal`]) was sealed for, or `None`
/// for a signed response.
pub fn sealed_lease(token: &str) -> Option<u64> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if v["alg"] != "HS256" {
        return None;
    }
    v["kid"].as_str()?.strip_prefix("lease-")?.parse().ok()
}

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
    /// What the client says about the device or user (`department = "sales"`, `site = "pune"`):
    /// the administrator's rules of access may match on them (named license pools). At most
    /// [`crate::policy::limits::MAX_ATTRIBUTES`] entries; names of letters, digits, `_`, `-` and
    /// `.`, up to [`crate::policy::limits::MAX_ATTRIBUTE_NAME_LEN`] characters; values up to
    /// [`crate::policy::limits::MAX_NAME_LEN`], no control characters.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Retrying the same request id never takes a second seat (1 to 128 characters).
    pub request_id: String,
    /// Echoed in the signed response: 16 to 128 characters ([`crate::policy::limits::NONCE_LEN`]).
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
    /// For a renew or return (of exactly one lease): [`session_proof`] computed with the session
    /// key the signed grant carried, which proves that the caller holds the lease. Required: a
    /// renew or return without it, or with a wrong one, is refused. The server answers with a
    /// response sealed by that key (cheap) unless `signed` asks for a signature.
    #[serde(default)]
    pub session_proof: Option<String>,
    /// With a `session_proof`: answer with a signature (checked with the server certificate)
    /// rather than a seal. A client asks for one now and then, so that a proxy holding the session
    /// key cannot answer its renewals for long.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
}

/// A seat granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedSeat {
    /// Lease id.
    pub lease: u64,
    /// The feature the seat is for.
    pub feature: String,
    /// The record's version.
    pub version: String,
    /// How many seats the lease holds.
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
    /// The lease's session key (base64url, 32 bytes), in signed answers only: renewals and returns
    /// of this lease may be authenticated with it ([`session_proof`]) and are then answered with a
    /// response sealed by it ([`CapabilityResponseClaims::seal`]) rather than signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

impl GrantedSeat {
    /// The session key, decoded (`None` when absent or not base64url).
    pub fn session_key_bytes(&self) -> Option<Vec<u8>> {
        self.session_key
            .as_deref()
            .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
    }
}

/// A feature not granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedFeature {
    /// Feature (or lease id, for renew and return).
    pub feature: String,
    /// Stable code: `not_licensed`, `version_too_low`, `not_active`, `all_in_use`, `bad_count`,
    /// `unknown_lease`, `borrow_limit`, `lease_limit`.
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

    /// Seals the answer to a renew or return of `lease` with that lease's session key: a JWS with
    /// `alg` HS256 and `kid` `lease-<id>`. A client that holds the session key (from the signed
    /// grant) checks it with [`CapabilityResponseClaims::verify_sealed`]; it costs a hash, not a
    /// signature.
    pub fn seal(&self, session_key: &[u8], lease: u64) -> Result<String, SignError> {
        // the header holds no text that needs escaping
        let header = format!(
            r#"{{"alg":"HS256","kid":"lease-{lease}","typ":"{}"}}"#,
            DocumentType::CapabilityResponse.typ()
        );
        let claims = serde_json::to_vec(self)?;
        let mut token = String::with_capacity(header.len() * 4 / 3 + claims.len() * 4 / 3 + 48);
        URL_SAFE_NO_PAD.encode_string(header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let mut m = mac(session_key);
        m.update(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
        Ok(token)
    }

    /// Checks a sealed answer with the lease's session key and that it answers `nonce`.
    pub fn verify_sealed(
        token: &str,
        session_key: &[u8],
        nonce: &str,
    ) -> Result<CapabilityResponseClaims, VerifyError> {
        let malformed = |detail: &str| VerifyError::Malformed {
            line: 1,
            column: 1,
            detail: detail.into(),
        };
        let mut parts = token.trim().splitn(4, '.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a token has three parts separated by '.'"));
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("the header is not base64url JSON"))?;
        if header["alg"] != "HS256" {
            return Err(VerifyError::UnsupportedAlgorithm {
                alg: header["alg"].as_str().unwrap_or("none").into(),
            });
        }
        if header["typ"] != DocumentType::CapabilityResponse.typ() {
            return Err(VerifyError::WrongDocumentType {
                expected: DocumentType::CapabilityResponse,
                found: header["typ"].as_str().unwrap_or("none").into(),
            });
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| malformed("the seal is not base64url"))?;
        let mut m = mac(session_key);
        m.update(&token.trim().as_bytes()[..h.len() + 1 + p.len()]);
        if m.verify_slice(&sig).is_err() {
            return Err(VerifyError::SignatureMismatch);
        }
        let c: CapabilityResponseClaims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("the claims are not the expected JSON"))?;
        if c.nonce != nonce {
            return Err(malformed(
                "the response answers another request (nonce mismatch): a replayed answer",
            ));
        }
        Ok(c)
    }

    /// Signs several answers with **one** signature (see [`BATCH_ALG`]): each token carries its
    /// claims, its path in a Merkle tree over all the answers, and the server's signature of the
    /// tree's root. One answer alone is signed as a plain EdDSA JWS.
    pub fn sign_batch(
        answers: &[CapabilityResponseClaims],
        server: &SigningKey,
    ) -> Result<Vec<String>, SignError> {
        if answers.len() <= 1 {
            return answers.iter().map(|a| a.sign(server)).collect();
        }
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&serde_json::json!({
            "alg": BATCH_ALG,
            "kid": server.kid().as_str(),
            "typ": DocumentType::CapabilityResponse.typ(),
        }))?);
        let mut inputs = Vec::with_capacity(answers.len());
        for a in answers {
            let claims = serde_json::to_vec(a)?;
            let mut t = String::with_capacity(header.len() + claims.len() * 4 / 3 + 600);
            t.push_str(&header);
            t.push('.');
            URL_SAFE_NO_PAD.encode_string(claims, &mut t);
            inputs.push(t);
        }
        let mut levels: Vec<Vec<[u8; 32]>> =
            vec![inputs.iter().map(|t| leaf_hash(t.as_bytes())).collect()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => [0; 32],
                })
                .collect();
            levels.push(up);
        }
        let root = levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32]);
        let sig = URL_SAFE_NO_PAD.encode(server.sign_bytes(&root_message(&root)));
        let mut out = Vec::with_capacity(inputs.len());
        for (i, mut t) in inputs.into_iter().enumerate() {
            // {"path":["L<hash>","R<hash>",...],"sig":"<sig>"}, all base64url: nothing to escape
            let mut proof = String::with_capacity(48 * levels.len() + sig.len() + 24);
            proof.push_str(r#"{"path":["#);
            let mut at = i;
            let mut first = true;
            for level in &levels[..levels.len() - 1] {
                let sibling = at ^ 1;
                if let Some(h) = level.get(sibling) {
                    if !first {
                        proof.push(',');
                    }
                    first = false;
                    proof.push('"');
                    proof.push(if sibling < at { 'L' } else { 'R' });
                    URL_SAFE_NO_PAD.encode_string(h, &mut proof);
                    proof.push('"');
                }
                at /= 2;
            }
            proof.push_str(r#"],"sig":""#);
            proof.push_str(&sig);
            proof.push_str(r#""}"#);
            t.push('.');
            URL_SAFE_NO_PAD.encode_string(proof, &mut t);
            out.push(t);
        }
        Ok(out)
    }

    /// Verifies an answer with the server's (certified) key and checks it answers `nonce`. Takes
    /// a plain EdDSA JWS or a batch-signed answer ([`BATCH_ALG`]).
    pub fn verify(
        token: &str,
        server_key: &Keyring,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<CapabilityResponseClaims, VerifyError> {
        let c: CapabilityResponseClaims = if header_alg(token).as_deref() == Some(BATCH_ALG) {
            verify_batch(token.trim(), server_key)?
        } else {
            document::verify(token, server_key, DocumentType::CapabilityResponse, now)?.claims
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn claims() -> CapabilityResponseClaims {
        CapabilityResponseClaims {
            nonce: "n0nce-n0nce-n0nce".into(),
            request_id: "r1".into(),
            device_id: "string=dev".into(),
            operation: Operation::Renew,
            server: "string=srv".into(),
            iat: datetime!(2026-06-01 12:00 UTC),
            grants: vec![],
            denials: vec![],
            renew_interval_secs: 100,
        }
    }

    #[test]
    fn a_sealed_answer_opens_only_with_its_session_key_and_nonce() {
        let key = [7u8; 32];
        let token = claims().seal(&key, 42).unwrap();
        assert_eq!(sealed_lease(&token), Some(42));
        let back =
            CapabilityResponseClaims::verify_sealed(&token, &key, "n0nce-n0nce-n0nce").unwrap();
        assert_eq!(back, claims());
        assert!(matches!(
            CapabilityResponseClaims::verify_sealed(&token, &[8u8; 32], "n0nce-n0nce-n0nce"),
            Err(VerifyError::SignatureMismatch)
        ));
        assert!(
            CapabilityResponseClaims::verify_sealed(&token, &key, "other-nonce-xxxxx").is_err()
        );
        // a changed claim breaks the seal
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut c = claims();
        c.renew_interval_secs = 1;
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert!(matches!(
            CapabilityResponseClaims::verify_sealed(&parts.join("."), &key, "n0nce-n0nce-n0nce"),
            Err(VerifyError::SignatureMismatch)
        ));
        // a signed answer is not a sealed one, and cannot pass for one
        let signed = claims().sign(&SigningKey::from_seed(&[1; 32])).unwrap();
        assert_eq!(sealed_lease(&signed), None);
        assert!(matches!(
            CapabilityResponseClaims::verify_sealed(&signed, &key, "n0nce-n0nce-n0nce"),
            Err(VerifyError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn batch_signed_answers_verify_one_by_one_and_resist_tampering() {
        let key = SigningKey::from_seed(&[9; 32]);
        let ring = Keyring::with(key.public());
        let now = datetime!(2026-06-01 12:00 UTC);
        for n in [1usize, 2, 3, 5, 8, 13] {
            let answers: Vec<CapabilityResponseClaims> = (0..n)
                .map(|i| CapabilityResponseClaims {
                    nonce: format!("nonce-{i:012}-abcdef"),
                    request_id: format!("r{i}"),
                    ..claims()
                })
                .collect();
            let tokens = CapabilityResponseClaims::sign_batch(&answers, &key).unwrap();
            assert_eq!(tokens.len(), n);
            for (i, t) in tokens.iter().enumerate() {
                let c = CapabilityResponseClaims::verify(t, &ring, &answers[i].nonce, now).unwrap();
                assert_eq!(c, answers[i]);
                // another answer's nonce: refused
                if n > 1 {
                    let other = &answers[(i + 1) % n].nonce;
                    assert!(CapabilityResponseClaims::verify(t, &ring, other, now).is_err());
                }
            }
            if n > 1 {
                // claims swapped between two tokens of the batch: the path no longer leads to the root
                let a: Vec<&str> = tokens[0].split('.').collect();
                let b: Vec<&str> = tokens[1].split('.').collect();
                let forged = format!("{}.{}.{}", a[0], b[1], a[2]);
                assert!(matches!(
                    CapabilityResponseClaims::verify(&forged, &ring, &answers[1].nonce, now),
                    Err(VerifyError::SignatureMismatch)
                ));
                // another key: unknown
                let other = Keyring::with(SigningKey::from_seed(&[8; 32]).public());
                assert!(CapabilityResponseClaims::verify(
                    &tokens[0],
                    &other,
                    &answers[0].nonce,
                    now
                )
                .is_err());
            }
        }
    }

    #[test]
    fn a_session_proof_binds_key_operation_nonce_request_and_lease() {
        let key = [3u8; 32];
        let p = session_proof(&key, Operation::Renew, "nonce", "rid", 5);
        assert!(check_session_proof(
            &key,
            Operation::Renew,
            "nonce",
            "rid",
            5,
            &p
        ));
        assert!(!check_session_proof(
            &[4u8; 32],
            Operation::Renew,
            "nonce",
            "rid",
            5,
            &p
        ));
        assert!(!check_session_proof(
            &key,
            Operation::Return,
            "nonce",
            "rid",
            5,
            &p
        ));
        assert!(!check_session_proof(
            &key,
            Operation::Renew,
            "nonce2",
            "rid",
            5,
            &p
        ));
        assert!(!check_session_proof(
            &key,
            Operation::Renew,
            "nonce",
            "rid2",
            5,
            &p
        ));
        assert!(!check_session_proof(
            &key,
            Operation::Renew,
            "nonce",
            "rid",
            6,
            &p
        ));
        assert!(!check_session_proof(
            &key,
            Operation::Renew,
            "nonce",
            "rid",
            5,
            "not base64!"
        ));
    }
}
