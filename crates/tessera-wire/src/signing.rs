//! Signed capability requests (docs/protocol.md, "Signed requests"): a client holding a key its
//! license server's administrator registered signs each capability request, and sends the
//! signature in the [`SIGNATURE_HEADER`] header:
//!
//! ```text
//! Tessera-Signature: keyid=<fingerprint>, alg=<rsa-pss-sha256|rsa-pkcs1-sha256|ed25519>, created=<unix seconds>, sig=<base64>
//! ```
//!
//! The signature covers [`signed_message`]: the line `tessera-capability-request-v1`, the line
//! `created` (decimal), then the request body exactly as sent. The server refuses a `created`
//! too far from its clock, which bounds how long a captured request can be replayed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The header that carries a request's signature.
pub const SIGNATURE_HEADER: &str = "tessera-signature";

/// The first line of every signed message (the version of this scheme).
pub const SIGNED_MESSAGE_PREFIX: &str = "tessera-capability-request-v1\n";

/// A signature algorithm of a client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlg {
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt of 32 bytes), an RSA-2048 key.
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, an RSA-2048 key.
    RsaPkcs1Sha256,
    /// Ed25519 (RFC 8032), an Ed25519 key.
    Ed25519,
}

impl SignatureAlg {
    /// The name in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlg::RsaPssSha256 => "rsa-pss-sha256",
            SignatureAlg::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignatureAlg::Ed25519 => "ed25519",
        }
    }

    /// The algorithm of a name in the header.
    pub fn parse(name: &str) -> Option<SignatureAlg> {
        [
            SignatureAlg::RsaPssSha256,
            SignatureAlg::RsaPkcs1Sha256,
            SignatureAlg::Ed25519,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// The contents of a [`SIGNATURE_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// The id (fingerprint) of the client key, as the license server lists it.
    pub keyid: String,
    /// The algorithm.
    pub alg: SignatureAlg,
    /// When it was signed (unix seconds).
    pub created: i64,
    /// The signature.
    pub sig: Vec<u8>,
}

impl RequestSignature {
    /// The header's value.
    pub fn header_value(&self) -> String {
        format!(
            "keyid={}, alg={}, created={}, sig={}",
            self.keyid,
            self.alg.as_str(),
            self.created,
            STANDARD.encode(&self.sig)
        )
    }

    /// Reads a header's value; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<RequestSignature, String> {
        let (mut keyid, mut alg, mut created, mut sig) = (None, None, None, None);
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not NAME=VALUE"))?;
            let v = v.trim().trim_matches('"');
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "keyid" => &mut keyid,
                "alg" => &mut alg,
                "created" => &mut created,
                "sig" => &mut sig,
                other => return Err(format!("unknown parameter `{other}`")),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(format!("`{}` is given twice", name.trim()));
            }
        }
        let missing = |what: &str| format!("`{what}=` is missing");
        let keyid = keyid.ok_or_else(|| missing("keyid"))?;
        let alg_name = alg.ok_or_else(|| missing("alg"))?;
        let alg = SignatureAlg::parse(&alg_name).ok_or_else(|| {
            format!("alg `{alg_name}` is not one of rsa-pss-sha256, rsa-pkcs1-sha256, ed25519")
        })?;
        let created = created
            .ok_or_else(|| missing("created"))?
            .parse::<i64>()
            .map_err(|_| "`created` is not a whole number of unix seconds".to_string())?;
        let sig = STANDARD
            .decode(sig.ok_or_else(|| missing("sig"))?)
            .map_err(|_| "`sig` is not standard base64".to_string())?;
        Ok(RequestSignature {
            keyid,
            alg,
            created,
            sig,
        })
    }
}

/// What a request's signature covers: [`SIGNED_MESSAGE_PREFIX`], `created` and a line break,
/// then the body bytes as sent.
pub fn signed_message(created: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_MESSAGE_PREFIX.len() + 24 + body.len());
    m.extend_from_slice(SIGNED_MESSAGE_PREFIX.as_bytes());
    m.extend_from_slice(created.to_string().as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Appends one DER element (definite length up to 65535 bytes).
fn der(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
}

fn spki(oid: &[u8], null_params: bool, key: &[u8]) -> Vec<u8> {
    let mut alg = Vec::new();
    der(0x06, oid, &mut alg);
    if null_params {
        alg.extend_from_slice(&[0x05, 0x00]);
    }
    let mut inner = Vec::new();
    der(0x30, &alg, &mut inner);
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    der(0x03, &bits, &mut inner);
    let mut out = Vec::new();
    der(0x30, &inner, &mut out);
    out
}

/// The SubjectPublicKeyInfo DER of an RSA key given as its PKCS#1 RSAPublicKey DER.
pub fn spki_for_rsa(pkcs1: &[u8]) -> Vec<u8> {
    spki(OID_RSA, true, pkcs1)
}

/// The SubjectPublicKeyInfo DER of an Ed25519 key given as its 32 bytes.
pub fn spki_for_ed25519(key: &[u8]) -> Vec<u8> {
    spki(OID_ED25519, false, key)
}

/// A client key's id: hex of the first 16 bytes of the SHA-256 of its SubjectPublicKeyInfo DER
/// (`openssl pkey -pubin -in key.der -inform DER -outform DER | sha256sum | cut -c1-32`).
pub fn fingerprint(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(spki_der)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_and_bad_ones_say_why() {
        let s = RequestSignature {
            keyid: "00ff".into(),
            alg: SignatureAlg::RsaPssSha256,
            created: 1_700_000_000,
            sig: vec![1, 2, 3, 250],
        };
        assert_eq!(RequestSignature::parse(&s.header_value()).unwrap(), s);
        for (bad, why) in [
            ("keyid=a, alg=ed25519, created=1", "`sig=` is missing"),
            ("keyid=a, alg=dsa, created=1, sig=AA==", "alg `dsa`"),
            ("keyid=a, alg=ed25519, created=x, sig=AA==", "`created`"),
            ("keyid=a, alg=ed25519, created=1, sig=%%", "base64"),
            ("keyid=a, keyid=b", "twice"),
            ("nonsense", "NAME=VALUE"),
        ] {
            let err = RequestSignature::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            signed_message(5, b"{}"),
            b"tessera-capability-request-v1\n5\n{}".to_vec()
        );
    }
}
