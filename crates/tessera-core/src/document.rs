//! Signed documents: JWS compact tokens in a short text armour.
//!
//! Everything Tessera signs (licenses, server certificates, capability responses, offline requests
//! and responses, usage reports, unlocks) is a JWS in compact serialisation (RFC 7515) with
//! `alg: EdDSA` (RFC 8037), the signer's key id in `kid`, and the document's type in `typ`:
//!
//! ```text
//! BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(Ed25519 signature over the first two parts)
//! ```
//!
//! Verification checks the type, so a server certificate can never be passed off as a license. For
//! mail and copy-paste the token is wrapped at 64 columns between `-----BEGIN TESSERA LICENSE-----`
//! and `-----END TESSERA LICENSE-----` lines (the label names the type); text before and after the
//! armour, white space, and CR/LF line ends are ignored. A bare token is accepted too.
//! `docs/license-format.md` specifies all of it, with test vectors.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::hostid::HostId;
use crate::keys::{KeyId, Keyring, SigningKey};
use crate::time_fmt::display_time;

/// How far a verifier's clock may lag the signer's before a fresh document reads "not yet valid".
pub const NOT_BEFORE_LEEWAY: Duration = Duration::minutes(5);

/// The kinds of signed document. The type is part of the signed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DocumentType {
    /// A license file: features granted to a licensee, maybe bound to a host.
    License,
    /// A license server's public key, certified by the producer at activation.
    ServerCertificate,
    /// A license server's answer to a capability request.
    CapabilityResponse,
    /// A request file for offline activation or renewal.
    OfflineRequest,
    /// The back office's answer to an offline request.
    OfflineResponse,
    /// A usage report sent to the producer.
    UsageReport,
    /// The content of an unlock code.
    Unlock,
}

impl DocumentType {
    /// Every type.
    pub const ALL: [DocumentType; 7] = [
        DocumentType::License,
        DocumentType::ServerCertificate,
        DocumentType::CapabilityResponse,
        DocumentType::OfflineRequest,
        DocumentType::OfflineResponse,
        DocumentType::UsageReport,
        DocumentType::Unlock,
    ];

    /// The `typ` header value.
    pub fn typ(self) -> &'static str {
        match self {
            DocumentType::License => "tessera-license+jwt",
            DocumentType::ServerCertificate => "tessera-server-certificate+jwt",
            DocumentType::CapabilityResponse => "tessera-capability-response+jwt",
            DocumentType::OfflineRequest => "tessera-offline-request+jwt",
            DocumentType::OfflineResponse => "tessera-offline-response+jwt",
            DocumentType::UsageReport => "tessera-usage-report+jwt",
            DocumentType::Unlock => "tessera-unlock+jwt",
        }
    }

    /// The armour label, as in `-----BEGIN TESSERA LICENSE-----`.
    pub fn label(self) -> &'static str {
        match self {
            DocumentType::License => "TESSERA LICENSE",
            DocumentType::ServerCertificate => "TESSERA SERVER CERTIFICATE",
            DocumentType::CapabilityResponse => "TESSERA CAPABILITY RESPONSE",
            DocumentType::OfflineRequest => "TESSERA OFFLINE REQUEST",
            DocumentType::OfflineResponse => "TESSERA OFFLINE RESPONSE",
            DocumentType::UsageReport => "TESSERA USAGE REPORT",
            DocumentType::Unlock => "TESSERA UNLOCK",
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            DocumentType::License => "license",
            DocumentType::ServerCertificate => "server certificate",
            DocumentType::CapabilityResponse => "capability response",
            DocumentType::OfflineRequest => "offline request",
            DocumentType::OfflineResponse => "offline response",
            DocumentType::UsageReport => "usage report",
            DocumentType::Unlock => "unlock",
        }
    }

    fn from_typ(typ: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.typ() == typ)
    }

    fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.label() == label)
    }
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a document was not accepted. Each variant is a distinct reason a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The text is not a well-formed document. `line` and `column` count from 1 in the input text.
    #[error("malformed at line {line}, column {column}: {detail}")]
    Malformed {
        /// 1-based line in the input.
        line: usize,
        /// 1-based column in the input.
        column: usize,
        /// What is wrong there.
        detail: String,
    },
    /// Signed with an algorithm other than EdDSA.
    #[error("unsupported signature algorithm '{alg}' (Tessera documents are signed with EdDSA)")]
    UnsupportedAlgorithm {
        /// The `alg` header.
        alg: String,
    },
    /// The key id is not among the trusted public keys.
    #[error("signed with unknown key id {kid}: the public key given does not belong to the producer that signed it")]
    UnknownKeyId {
        /// The `kid` header.
        kid: String,
    },
    /// The signature does not match the content.
    #[error("signature does not match: the document was changed after it was signed")]
    SignatureMismatch,
    /// Another kind of document than the one expected.
    #[error("this is a {found}, not a {expected}")]
    WrongDocumentType {
        /// What the caller asked for.
        expected: DocumentType,
        /// What the document says it is.
        found: String,
    },
    /// The validity period has not begun.
    #[error("not valid until {}", display_time(*.valid_from))]
    NotYetValid {
        /// When it becomes valid.
        valid_from: OffsetDateTime,
    },
    /// The validity period has ended.
    #[error("expired on {}", display_time(*.expired_at))]
    Expired {
        /// When it expired.
        expired_at: OffsetDateTime,
    },
    /// Bound to host ids that this machine does not have.
    #[error("bound to another host: the license is for {}, but this machine is {}", join(.bound_to), presented_text(.presented))]
    BoundToOtherHost {
        /// The host ids in the document (any one of them matches).
        bound_to: Vec<HostId>,
        /// The host ids presented by the verifier.
        presented: Vec<HostId>,
    },
}

fn join(ids: &[HostId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

fn presented_text(ids: &[HostId]) -> String {
    if ids.is_empty() {
        "not identified (no host id was presented)".to_string()
    } else {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why signing failed: only claims that cannot be written as JSON.
#[derive(Debug, thiserror::Error)]
#[error("the claims cannot be written as JSON: {0}")]
pub struct SignError(#[from] serde_json::Error);

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// Signs `claims` as a document of type `ty`; returns the compact token.
pub fn sign<T: Serialize>(
    key: &SigningKey,
    ty: DocumentType,
    claims: &T,
) -> Result<String, SignError> {
    let header = Header {
        alg: "EdDSA".into(),
        kid: key.kid().as_str().into(),
        typ: ty.typ().into(),
    };
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
    let sig = key.sign_bytes(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

/// Wraps a token in the armour for its type, 64 characters a line.
pub fn armour(ty: DocumentType, token: &str) -> String {
    let mut out = format!("-----BEGIN {}-----\n", ty.label());
    let bytes = token.as_bytes();
    for chunk in bytes.chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {}-----\n", ty.label()));
    out
}

/// Signs and armours in one step.
pub fn sign_armoured<T: Serialize>(
    key: &SigningKey,
    ty: DocumentType,
    claims: &T,
) -> Result<String, SignError> {
    Ok(armour(ty, &sign(key, ty, claims)?))
}

/// A token pulled out of its armour, each character remembering where it stood in the input.
struct Located {
    token: String,
    positions: Vec<(usize, usize)>,
    end: (usize, usize),
}

impl Located {
    fn malformed(&self, index: usize, detail: impl Into<String>) -> VerifyError {
        let (line, column) = self.positions.get(index).copied().unwrap_or(self.end);
        VerifyError::Malformed {
            line,
            column,
            detail: detail.into(),
        }
    }
}

fn armour_line(line: &str, what: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("-----")?.strip_prefix(what)?;
    let label = rest.strip_suffix("-----")?;
    Some(label.trim().to_string())
}

fn malformed_at(line: usize, column: usize, detail: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        line,
        column,
        detail: detail.into(),
    }
}

/// Finds the token in `input`: inside the armour for `expected`, or a bare token.
fn extract(input: &str, expected: DocumentType) -> Result<Located, VerifyError> {
    let lines: Vec<&str> = input.lines().collect();
    let begin = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| armour_line(l, "BEGIN ").map(|label| (i, label)));
    let mut located = Located {
        token: String::new(),
        positions: Vec::new(),
        end: (lines.len().max(1), 1),
    };
    let push_line = |located: &mut Located, lineno: usize, line: &str| {
        for (col, ch) in line.chars().enumerate() {
            if !ch.is_whitespace() {
                located.token.push(ch);
                located.positions.push((lineno + 1, col + 1));
            }
        }
    };
    match begin {
        None => {
            let bare: Vec<(usize, &str)> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (i, *l))
                .collect();
            let looks_bare = bare.len() == 1 && bare[0].1.trim().matches('.').count() == 2;
            if !looks_bare {
                return Err(malformed_at(
                    1,
                    1,
                    format!("no -----BEGIN {}----- line found", expected.label()),
                ));
            }
            push_line(&mut located, bare[0].0, bare[0].1);
            Ok(located)
        }
        Some((start, label)) => {
            if label != expected.label() {
                let found = DocumentType::from_label(&label)
                    .map(|t| t.name().to_string())
                    .unwrap_or_else(|| format!("document labelled '{label}'"));
                return Err(VerifyError::WrongDocumentType { expected, found });
            }
            for (i, line) in lines.iter().enumerate().skip(start + 1) {
                if let Some(end_label) = armour_line(line, "END ") {
                    if end_label != label {
                        return Err(malformed_at(
                            i + 1,
                            1,
                            format!(
                                "-----END {end_label}----- does not close -----BEGIN {label}-----"
                            ),
                        ));
                    }
                    located.end = (i + 1, 1);
                    return Ok(located);
                }
                push_line(&mut located, i, line);
            }
            Err(malformed_at(
                lines.len() + 1,
                1,
                format!("no -----END {label}----- line: the file is cut short"),
            ))
        }
    }
}

fn decode_part(
    loc: &Located,
    start: usize,
    part: &str,
    what: &str,
) -> Result<Vec<u8>, VerifyError> {
    if let Some(bad) = part
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(loc.malformed(
            start + part[..bad.0].chars().count(),
            format!("'{}' is not a base64url character (in the {what})", bad.1),
        ));
    }
    URL_SAFE_NO_PAD.decode(part).map_err(|e| {
        loc.malformed(
            start + part.chars().count().saturating_sub(1),
            format!("the {what} is not valid base64url: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct TimeClaims {
    #[serde(default, with = "time::serde::timestamp::option")]
    nbf: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::timestamp::option")]
    exp: Option<OffsetDateTime>,
}

/// A document whose signature, type and validity period have been checked.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// The claims.
    pub claims: T,
    /// The key that signed it.
    pub kid: KeyId,
    /// Its type.
    pub doc_type: DocumentType,
}

/// Verifies a document of type `expected` (armoured or bare) against the trusted `keys` at time `now`.
///
/// Checks, in order: the armour and token shape, `alg` is EdDSA, the `kid` is trusted, the signature,
/// the `typ`, then `nbf` (with [`NOT_BEFORE_LEEWAY`]) and `exp`, then decodes the claims as `T`.
pub fn verify<T: DeserializeOwned>(
    input: &str,
    keys: &Keyring,
    expected: DocumentType,
    now: OffsetDateTime,
) -> Result<Verified<T>, VerifyError> {
    let loc = extract(input, expected)?;
    let token = loc.token.as_str();
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let dots = token.matches('.').count();
        let at = if dots > 2 {
            token.match_indices('.').nth(2).map_or(0, |(i, _)| i)
        } else {
            token.len()
        };
        return Err(loc.malformed(
            token[..at].chars().count(),
            format!(
                "a token has three parts separated by '.', this one has {}",
                dots + 1
            ),
        ));
    };
    let p_start = h.chars().count() + 1;
    let s_start = p_start + p.chars().count() + 1;

    let header_bytes = decode_part(&loc, 0, h, "header")?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| loc.malformed(0, format!("the header is not the expected JSON: {e}")))?;
    if header.alg != "EdDSA" {
        return Err(VerifyError::UnsupportedAlgorithm { alg: header.alg });
    }
    let key = keys
        .get(&header.kid)
        .ok_or_else(|| VerifyError::UnknownKeyId {
            kid: header.kid.clone(),
        })?;
    let sig_bytes = decode_part(&loc, s_start, s, "signature")?;
    let payload = decode_part(&loc, p_start, p, "claims")?;
    let sig: [u8; 64] = sig_bytes.as_slice().try_into().map_err(|_| {
        loc.malformed(
            s_start,
            format!("the signature is {} bytes, not 64", sig_bytes.len()),
        )
    })?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    if !key.verify_bytes(signing_input, &sig) {
        return Err(VerifyError::SignatureMismatch);
    }
    let doc_type = DocumentType::from_typ(&header.typ);
    if doc_type != Some(expected) {
        let found = doc_type
            .map(|t| t.name().to_string())
            .unwrap_or_else(|| format!("document of type '{}'", header.typ));
        return Err(VerifyError::WrongDocumentType { expected, found });
    }
    let times: TimeClaims = serde_json::from_slice(&payload).map_err(|e| {
        loc.malformed(
            p_start,
            format!("the claims are not the expected JSON: {e}"),
        )
    })?;
    if let Some(nbf) = times.nbf {
        if now + NOT_BEFORE_LEEWAY < nbf {
            return Err(VerifyError::NotYetValid { valid_from: nbf });
        }
    }
    if let Some(exp) = times.exp {
        if now >= exp {
            return Err(VerifyError::Expired { expired_at: exp });
        }
    }
    let claims: T = serde_json::from_slice(&payload).map_err(|e| {
        loc.malformed(
            p_start,
            format!("the claims are not the expected JSON: {e}"),
        )
    })?;
    Ok(Verified {
        claims,
        kid: KeyId::new(header.kid),
        doc_type: expected,
    })
}

/// Decodes a document's claims **without checking its signature**: only for reading the key a
/// self-signed document names (an offline request carries its requester's public key), which the
/// caller then checks the document with through [`verify`].
pub fn decode_unverified<T: DeserializeOwned>(
    input: &str,
    expected: DocumentType,
) -> Result<T, VerifyError> {
    let loc = extract(input, expected)?;
    let mut parts = loc.token.split('.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return Err(loc.malformed(0, "a token has three parts separated by '.'"));
    };
    let p_start = h.chars().count() + 1;
    let payload = decode_part(&loc, p_start, p, "claims")?;
    serde_json::from_slice(&payload).map_err(|e| {
        loc.malformed(
            p_start,
            format!("the claims are not the expected JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[42; 32])
    }

    fn now() -> OffsetDateTime {
        datetime!(2026-06-01 12:00 UTC)
    }

    fn check(text: &str, ty: DocumentType) -> Result<serde_json::Value, VerifyError> {
        verify::<serde_json::Value>(text, &Keyring::with(key().public()), ty, now())
            .map(|v| v.claims)
    }

    #[test]
    fn round_trip_armoured_and_bare() {
        let claims = json!({"sub": "acme", "n": 3});
        let token = sign(&key(), DocumentType::UsageReport, &claims).unwrap();
        assert_eq!(check(&token, DocumentType::UsageReport).unwrap(), claims);
        let text = format!(
            "Dear customer,\r\n\r\n{}\r\nregards",
            armour(DocumentType::UsageReport, &token).replace('\n', "\r\n  ")
        );
        assert_eq!(check(&text, DocumentType::UsageReport).unwrap(), claims);
    }

    #[test]
    fn one_kind_cannot_pass_for_another() {
        let cert = sign(&key(), DocumentType::ServerCertificate, &json!({})).unwrap();
        // bare: the signed typ is checked
        assert_eq!(
            check(&cert, DocumentType::License),
            Err(VerifyError::WrongDocumentType {
                expected: DocumentType::License,
                found: "server certificate".into()
            })
        );
        // re-armoured under another label: still refused
        let relabelled = armour(DocumentType::License, &cert);
        assert!(matches!(
            check(&relabelled, DocumentType::License),
            Err(VerifyError::WrongDocumentType { .. })
        ));
    }

    #[test]
    fn any_changed_claim_character_breaks_the_signature() {
        let token = sign(
            &key(),
            DocumentType::License,
            &json!({"sub": "acme corporation"}),
        )
        .unwrap();
        let dot = token.find('.').unwrap();
        let mut bytes = token.clone().into_bytes();
        let i = dot + 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check(&tampered, DocumentType::License),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn positions_point_into_the_file() {
        let token = sign(&key(), DocumentType::License, &json!({})).unwrap();
        let text = armour(DocumentType::License, &token);
        // put a '!' at line 2, column 3
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1].replace_range(2..3, "!");
        let err = check(&lines.join("\n"), DocumentType::License).unwrap_err();
        match err {
            VerifyError::Malformed {
                line,
                column,
                detail,
            } => {
                assert_eq!((line, column), (2, 3));
                assert!(detail.contains("'!'"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let cut: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(matches!(
            check(&cut, DocumentType::License),
            Err(VerifyError::Malformed { line: 3, .. })
        ));
        assert!(matches!(
            check("hello", DocumentType::License),
            Err(VerifyError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn validity_window() {
        let t = |nbf: OffsetDateTime, exp: OffsetDateTime| {
            sign(
                &key(),
                DocumentType::License,
                &json!({"nbf": nbf.unix_timestamp(), "exp": exp.unix_timestamp()}),
            )
            .unwrap()
        };
        let later = t(
            datetime!(2026-07-01 0:00 UTC),
            datetime!(2027-01-01 0:00 UTC),
        );
        assert_eq!(
            check(&later, DocumentType::License),
            Err(VerifyError::NotYetValid {
                valid_from: datetime!(2026-07-01 0:00 UTC)
            })
        );
        let gone = t(
            datetime!(2026-01-01 0:00 UTC),
            datetime!(2026-05-31 0:00 UTC),
        );
        let err = check(&gone, DocumentType::License).unwrap_err();
        assert_eq!(
            err,
            VerifyError::Expired {
                expired_at: datetime!(2026-05-31 0:00 UTC)
            }
        );
        assert!(err.to_string().contains("2026-05-31"), "{err}");
        let skewed = t(now() + Duration::minutes(2), now() + Duration::days(1));
        assert!(check(&skewed, DocumentType::License).is_ok());
    }

    #[test]
    fn unknown_key_and_algorithm() {
        let other = SigningKey::from_seed(&[9; 32]);
        let token = sign(&other, DocumentType::License, &json!({})).unwrap();
        assert!(matches!(
            check(&token, DocumentType::License),
            Err(VerifyError::UnknownKeyId { .. })
        ));
        let header =
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"x","typ":"tessera-license+jwt"}"#);
        let forged = format!("{header}.{}.", URL_SAFE_NO_PAD.encode(b"{}"));
        assert_eq!(
            check(&forged, DocumentType::License),
            Err(VerifyError::UnsupportedAlgorithm { alg: "none".into() })
        );
    }
}
