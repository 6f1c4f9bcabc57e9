//! Unlock codes: offline activation typed by hand.
//!
//! A machine that never goes online is activated the Noxturnal way: the end user types the license
//! key ([`ActivationKey`]) and the machine's [`PcId`] into the producer's web page, and gets back an
//! **unlock code** to type into the application. The code proves that the producer allowed *that* key
//! on *that* PC identifier, for *that* product, for a set of features until a date — and nobody who
//! holds the application binary can mint one, because it carries a BLS12-381 signature whose secret
//! key only the back office holds.
//!
//! ```text
//! 20051YRV-R45T7J6X-0CSEABQZ-CNRSWVG6-4EFSXTNV-E5C2392F-
//! 1PF9D45H-3PBC1XCZ-0F7QZHSP-VDJ1VAFK-XC3RE8VE-76WFGN74
//! 12 groups of 7 data symbols + 1 check symbol: 96 characters, 107 with the hyphens
//! ```
//!
//! * **Payload, 36 bits**: a 4-bit format version ([`FORMAT_VERSION`]), a 16-bit [`FeatureMask`]
//!   (bit *i* = the *i*-th feature of the product's ordered feature list), and a 16-bit expiry day
//!   (days since 2020-01-01, `0` = permanent; the code is valid through the end of that day).
//! * **Signature, 384 bits**: a BLS "min-sig" signature (a compressed G1 point) over
//!   `"tessera-unlock-v1" 0x00 ‖ key text ‖ 0x00 ‖ PC id bytes ‖ payload ‖ 0x00 ‖ product`, with the
//!   domain separation tag [`DST`].
//! * **Text**: the 420 bits as 84 Crockford base32 symbols, in 12 groups of 7, each followed by a
//!   check symbol over the group's index and its 7 symbols. A typo is located to its group
//!   ([`UnlockError::Typo`]), and two whole groups typed in the wrong order are caught too.
//!
//! Everything here is pure: the date comes in as an argument, randomness as a `CryptoRng`. The design,
//! and what the back office and the application each hold, is described in `docs/unlock-codes.md`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blst::min_sig;
use rand::{CryptoRng, RngCore};
use time::macros::date;
use time::{Date, Duration};
use zeroize::Zeroizing;

use crate::activation_key::ActivationKey;
use crate::code::{self, bytes_to_symbols, check_symbol, symbols_to_bytes, CodeError};
use crate::pcid::PcId;

/// The format version carried in the first 4 bits of every code this module issues.
pub const FORMAT_VERSION: u8 = 1;

/// The BLS domain separation tag: hash-to-G1 (SHA-256, SSWU, random oracle) for Tessera unlock codes.
pub const DST: &[u8] = b"TESSERA-UNLOCK-V1_BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// The first bytes of every signed message.
const MESSAGE_PREFIX: &[u8] = b"tessera-unlock-v1\0";

/// How many groups a code has.
pub const GROUP_COUNT: usize = 12;

/// Data symbols in each group (each group also has one check symbol).
pub const GROUP_DATA: usize = 7;

/// Characters in a code, not counting separators: 12 × (7 + 1) = 96.
pub const CODE_SYMBOLS: usize = GROUP_COUNT * (GROUP_DATA + 1);

/// Data symbols in a code: 84 × 5 = 420 bits = 36 payload bits + 384 signature bits.
const DATA_SYMBOLS: usize = GROUP_COUNT * GROUP_DATA;

/// Bits of payload (version, feature mask, expiry day).
const PAYLOAD_BITS: usize = 36;

/// Bytes of a compressed BLS12-381 G1 point: the signature.
const SIGNATURE_LEN: usize = 48;

/// Bytes of a BLS secret key (a scalar, big-endian).
pub const SECRET_KEY_LEN: usize = 32;

/// Bytes of a compressed BLS12-381 G2 point: the public key.
pub const PUBLIC_KEY_LEN: usize = 96;

/// Day 0 of the expiry-day count. Day *n* is this date plus *n* days; day 0 means "never expires".
pub const EXPIRY_EPOCH: Date = date!(2020 - 01 - 01);

/// How many features a [`FeatureMask`] can name: the first 16 of a product's feature list.
pub const MAX_FEATURES: usize = 16;

const SECRET_LABEL: &str = "TESSERA UNLOCK PRIVATE KEY";
const PUBLIC_LABEL: &str = "TESSERA UNLOCK PUBLIC KEY";

/// Why an unlock code, or an unlock key, was not accepted. The messages are written to be shown to
/// the end user who typed the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnlockError {
    /// Too few or too many characters.
    #[error(
        "an unlock code has {expected} characters (not counting spaces and hyphens) but {found} were entered"
    )]
    WrongLength {
        /// How many symbols a code has (96).
        expected: usize,
        /// How many were typed.
        found: usize,
    },
    /// A character that is not in the alphabet (nor a space or hyphen).
    #[error(
        "'{ch}' at position {position} cannot be part of an unlock code (use 0-9 and A-Z except U)"
    )]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// 1-based character position in the input as typed.
        position: usize,
    },
    /// A group's check symbol does not match: a character of that group was mistyped.
    #[error(
        "group {group} of the unlock code has a typo: compare it with the code you were given"
    )]
    Typo {
        /// 1-based group number, counting groups of 8 characters from the left.
        group: usize,
    },
    /// The code is of a format this version of the application does not know.
    #[error(
        "this unlock code uses format version {version}, which this version of the application does not support"
    )]
    UnsupportedVersion {
        /// The version in the code.
        version: u8,
    },
    /// The signature does not match: the code was issued for another license key, another PC
    /// identifier or another product, or with another producer key, or it is forged.
    #[error(
        "this unlock code was not issued for this license key on this computer: check the license key and the PC identifier it was requested with"
    )]
    SignatureMismatch,
    /// The code was genuine but its validity has ended.
    #[error("this unlock code expired at the end of {on}")]
    Expired {
        /// The last day on which the code was valid.
        on: Date,
    },
    /// Bytes or text that are not an unlock signing or verifying key.
    #[error("not a valid unlock key: {detail}")]
    InvalidKey {
        /// What was wrong.
        detail: String,
    },
    /// A feature name that is not in the product's feature list (when building a [`FeatureMask`]).
    #[error("'{name}' is not one of the product's features")]
    UnknownFeature {
        /// The name asked for.
        name: String,
    },
    /// A feature past the 16th of the product's feature list, which an unlock code cannot carry.
    #[error("'{name}' is feature number {number} of the product; an unlock code can carry only the first 16")]
    FeatureNotEncodable {
        /// The name asked for.
        name: String,
        /// Its 1-based place in the product's feature list.
        number: usize,
    },
    /// An expiry date outside what a code can carry (2020-01-02 to 2199-06-06).
    #[error(
        "an unlock code cannot expire on {date}: the expiry must be between 2020-01-02 and 2199-06-06"
    )]
    ExpiryOutOfRange {
        /// The date asked for.
        date: Date,
    },
}

/// `code::parse_symbols` only ever reports a bad character; length and checks are ours.
fn from_code_error(e: CodeError) -> UnlockError {
    match e {
        CodeError::InvalidCharacter { ch, position } => {
            UnlockError::InvalidCharacter { ch, position }
        }
        CodeError::WrongLength { found, .. } => UnlockError::WrongLength {
            expected: CODE_SYMBOLS,
            found,
        },
        CodeError::ChecksumMismatch => UnlockError::Typo { group: 1 },
    }
}

fn invalid_key(detail: impl Into<String>) -> UnlockError {
    UnlockError::InvalidKey {
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------------
// Features and validity
// ---------------------------------------------------------------------------------------------------

/// Which features an unlock code grants: bit *i* (from the least significant) stands for the *i*-th
/// entry of the product's ordered feature list, which the back office and the application both know.
///
/// The list may only grow at its end: reordering or removing an entry would change what the codes
/// already issued mean. Bits past the end of the list an application knows are ignored by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FeatureMask(pub u16);

impl FeatureMask {
    /// No feature.
    pub const NONE: FeatureMask = FeatureMask(0);
    /// All 16 bits set: every feature the product has or will have (up to 16).
    pub const ALL: FeatureMask = FeatureMask(u16::MAX);

    /// The raw bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Whether the feature at 0-based `index` in the product's list is granted.
    pub fn contains(self, index: usize) -> bool {
        index < MAX_FEATURES && self.0 & (1 << index) != 0
    }

    /// The mask granting every feature of `product_features` (at most the first 16).
    pub fn all_of<P: AsRef<str>>(product_features: &[P]) -> Self {
        let n = product_features.len().min(MAX_FEATURES);
        FeatureMask(((1u32 << n) - 1) as u16)
    }

    /// The mask granting the features `names`, each looked up in the product's ordered feature list.
    pub fn from_names<P: AsRef<str>, N: AsRef<str>>(
        product_features: &[P],
        names: &[N],
    ) -> Result<Self, UnlockError> {
        let mut bits = 0u16;
        for name in names {
            let name = name.as_ref();
            let index = product_features
                .iter()
                .position(|f| f.as_ref() == name)
                .ok_or_else(|| UnlockError::UnknownFeature { name: name.into() })?;
            if index >= MAX_FEATURES {
                return Err(UnlockError::FeatureNotEncodable {
                    name: name.into(),
                    number: index + 1,
                });
            }
            bits |= 1 << index;
        }
        Ok(FeatureMask(bits))
    }

    /// The names of the granted features, in the product's order. Bits past the end of
    /// `product_features` are left out.
    pub fn names<P: AsRef<str>>(self, product_features: &[P]) -> Vec<&str> {
        product_features
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, f)| f.as_ref())
            .collect()
    }

    /// Whether the feature called `name` in the product's list is granted.
    pub fn allows<P: AsRef<str>>(self, product_features: &[P], name: &str) -> bool {
        product_features
            .iter()
            .position(|f| f.as_ref() == name)
            .is_some_and(|i| self.contains(i))
    }
}

/// What an unlock code grants: features, and the last day on which they may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnlockGrant {
    /// The features granted.
    pub features: FeatureMask,
    /// The last day (UTC) on which the code is valid; `None` for a permanent code. A code can expire
    /// from 2020-01-02 to 2199-06-06.
    pub expires: Option<Date>,
}

impl UnlockGrant {
    /// A grant that never expires.
    pub fn permanent(features: FeatureMask) -> Self {
        UnlockGrant {
            features,
            expires: None,
        }
    }

    /// A grant valid through the end of `last_day` (UTC).
    pub fn until(features: FeatureMask, last_day: Date) -> Self {
        UnlockGrant {
            features,
            expires: Some(last_day),
        }
    }

    /// Whether the grant is still valid on `today`.
    pub fn is_valid_on(&self, today: Date) -> bool {
        self.expires.is_none_or(|last| today <= last)
    }
}

fn expiry_to_day(expires: Option<Date>) -> Result<u16, UnlockError> {
    match expires {
        None => Ok(0),
        Some(date) => u16::try_from((date - EXPIRY_EPOCH).whole_days())
            .ok()
            .filter(|&d| d >= 1)
            .ok_or(UnlockError::ExpiryOutOfRange { date }),
    }
}

fn day_to_expiry(day: u16) -> Option<Date> {
    (day != 0).then(|| {
        EXPIRY_EPOCH
            .checked_add(Duration::days(i64::from(day)))
            .unwrap_or(Date::MAX)
    })
}

// ---------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------

/// The BLS12-381 secret key that signs unlock codes. Only the back office holds it. `Debug` never
/// shows the secret, and the key is wiped from memory when dropped.
///
/// Its text form, for files, is
/// `-----BEGIN TESSERA UNLOCK PRIVATE KEY-----` / base64 of the 32-byte big-endian scalar /
/// `-----END TESSERA UNLOCK PRIVATE KEY-----`.
#[derive(Clone)]
pub struct UnlockSecretKey {
    inner: min_sig::SecretKey,
}

impl UnlockSecretKey {
    /// Draws a new key (IETF BLS `KeyGen` over 32 bytes from `rng`).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut ikm = Zeroizing::new([0u8; 32]);
        loop {
            rng.fill_bytes(ikm.as_mut());
            // KeyGen only fails for input keying material shorter than 32 bytes.
            if let Ok(inner) = min_sig::SecretKey::key_gen(ikm.as_ref(), &[]) {
                return UnlockSecretKey { inner };
            }
        }
    }

    /// A key from its 32 bytes (a big-endian scalar, non-zero and below the group order).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UnlockError> {
        if bytes.len() != SECRET_KEY_LEN {
            return Err(invalid_key(format!(
                "a secret key has {SECRET_KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        min_sig::SecretKey::from_bytes(bytes)
            .map(|inner| UnlockSecretKey { inner })
            .map_err(|_| invalid_key("the secret key is zero or not below the group order"))
    }

    /// The 32 bytes of the key, wiped from memory when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        Zeroizing::new(self.inner.to_bytes())
    }

    /// The key in its text form, wiped from memory when dropped.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let bytes = self.to_bytes();
        Zeroizing::new(armour(SECRET_LABEL, bytes.as_ref()))
    }

    /// Reads the text form written by [`UnlockSecretKey::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, UnlockError> {
        let bytes = Zeroizing::new(dearmour(SECRET_LABEL, text)?);
        Self::from_bytes(&bytes)
    }

    /// The matching public key, to embed in the application.
    pub fn public(&self) -> UnlockPublicKey {
        UnlockPublicKey::from_inner(self.inner.sk_to_pk())
    }
}

impl fmt::Debug for UnlockSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UnlockSecretKey(public={}…, secret hidden)",
            self.public().short()
        )
    }
}

/// The BLS12-381 public key (a compressed G2 point, 96 bytes) that checks unlock codes. The
/// application embeds it.
///
/// Its text form is `-----BEGIN TESSERA UNLOCK PUBLIC KEY-----` / base64 of the 96 bytes /
/// `-----END TESSERA UNLOCK PUBLIC KEY-----`.
#[derive(Clone)]
pub struct UnlockPublicKey {
    inner: min_sig::PublicKey,
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl UnlockPublicKey {
    fn from_inner(inner: min_sig::PublicKey) -> Self {
        UnlockPublicKey {
            bytes: inner.compress(),
            inner,
        }
    }

    /// A key from its 96 bytes (compressed form). The point is validated: on the curve, in the
    /// prime-order subgroup, not the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UnlockError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(invalid_key(format!(
                "a public key has {PUBLIC_KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        min_sig::PublicKey::key_validate(bytes)
            .map(Self::from_inner)
            .map_err(|e| invalid_key(format!("not a BLS12-381 G2 public key ({e:?})")))
    }

    /// The 96 bytes (compressed form).
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.bytes
    }

    /// The key in its text form.
    pub fn to_pem(&self) -> String {
        armour(PUBLIC_LABEL, &self.bytes)
    }

    /// Reads the text form written by [`UnlockPublicKey::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, UnlockError> {
        Self::from_bytes(&dearmour(PUBLIC_LABEL, text)?)
    }

    fn short(&self) -> String {
        hex::encode(&self.bytes[..8])
    }
}

impl PartialEq for UnlockPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for UnlockPublicKey {}

impl fmt::Debug for UnlockPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockPublicKey({}…)", self.short())
    }
}

fn armour(label: &str, bytes: &[u8]) -> String {
    let b64 = STANDARD.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn dearmour(label: &str, text: &str) -> Result<Vec<u8>, UnlockError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .trim()
        .strip_prefix(begin.as_str())
        .and_then(|rest| rest.strip_suffix(end.as_str()))
        .ok_or_else(|| invalid_key(format!("expected a {begin} block")))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let b64 = Zeroizing::new(b64);
    STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| invalid_key(format!("bad base64 in the {label} block: {e}")))
}

// ---------------------------------------------------------------------------------------------------
// The code
// ---------------------------------------------------------------------------------------------------

/// An unlock code: a payload (format version, features, expiry day) and a BLS signature, written as
/// 96 typable characters in 12 groups.
///
/// [`UnlockCode::parse`] only checks the form (characters, length, the check symbol of each group,
/// the format version); [`UnlockCode::verify`] checks the signature and the expiry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnlockCode {
    features: FeatureMask,
    expiry_day: u16,
    signature: [u8; SIGNATURE_LEN],
}

impl UnlockCode {
    /// Signs a code allowing `key` on the machine `pcid` for `product`, with `grant`. Fails only
    /// when the grant's expiry date is outside what a code can carry.
    pub fn issue(
        sk: &UnlockSecretKey,
        product: &str,
        key: &ActivationKey,
        pcid: &PcId,
        grant: UnlockGrant,
    ) -> Result<UnlockCode, UnlockError> {
        let expiry_day = expiry_to_day(grant.expires)?;
        let payload = pack_payload(FORMAT_VERSION, grant.features.0, expiry_day);
        let msg = message(product, key, pcid, &payload);
        let signature = sk.inner.sign(&msg, DST, &[]).compress();
        Ok(UnlockCode {
            features: grant.features,
            expiry_day,
            signature,
        })
    }

    /// Parses a typed code: case-insensitive, spaces and hyphens anywhere ignored, `O` read as `0`,
    /// `I` and `L` as `1`. Checks each group's check symbol and the format version, not the signature.
    pub fn parse(input: &str) -> Result<UnlockCode, UnlockError> {
        let symbols = code::parse_symbols(input).map_err(from_code_error)?;
        if symbols.len() != CODE_SYMBOLS {
            return Err(UnlockError::WrongLength {
                expected: CODE_SYMBOLS,
                found: symbols.len(),
            });
        }
        let mut data = Vec::with_capacity(DATA_SYMBOLS);
        for (index, group) in symbols.chunks_exact(GROUP_DATA + 1).enumerate() {
            let (body, check) = group.split_at(GROUP_DATA);
            if check.first().copied() != Some(group_check(index, body)) {
                return Err(UnlockError::Typo { group: index + 1 });
            }
            data.extend_from_slice(body);
        }
        let bits = symbols_to_bytes(&data);
        let payload = take_bits(&bits, 0, PAYLOAD_BITS);
        let (version, features, expiry_day) = unpack_payload(&payload);
        if version != FORMAT_VERSION {
            return Err(UnlockError::UnsupportedVersion { version });
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&take_bits(&bits, PAYLOAD_BITS, SIGNATURE_LEN * 8));
        Ok(UnlockCode {
            features: FeatureMask(features),
            expiry_day,
            signature,
        })
    }

    /// Checks the code for this product, license key and machine against the producer's public key,
    /// and that it has not expired on `today` (UTC). Returns what it grants.
    ///
    /// The signature is checked first, so [`UnlockError::Expired`] is only ever said of a genuine
    /// code.
    pub fn verify(
        &self,
        pk: &UnlockPublicKey,
        product: &str,
        key: &ActivationKey,
        pcid: &PcId,
        today: Date,
    ) -> Result<UnlockGrant, UnlockError> {
        let payload = pack_payload(FORMAT_VERSION, self.features.0, self.expiry_day);
        let msg = message(product, key, pcid, &payload);
        // Decompression checks the point is on the curve; `true` also refuses the identity, and
        // `sig_validate` checks the prime-order subgroup.
        let sig = min_sig::Signature::sig_validate(&self.signature, true)
            .map_err(|_| UnlockError::SignatureMismatch)?;
        if sig.verify(false, &msg, DST, &[], &pk.inner, false) != blst::BLST_ERROR::BLST_SUCCESS {
            return Err(UnlockError::SignatureMismatch);
        }
        let grant = UnlockGrant {
            features: self.features,
            expires: day_to_expiry(self.expiry_day),
        };
        match grant.expires {
            Some(on) if today > on => Err(UnlockError::Expired { on }),
            _ => Ok(grant),
        }
    }

    /// The 96 symbol values: each group's 7 data symbols followed by its check symbol.
    fn symbols(&self) -> Vec<u8> {
        encode_symbols(
            FORMAT_VERSION,
            self.features.0,
            self.expiry_day,
            &self.signature,
        )
    }
}

impl fmt::Display for UnlockCode {
    /// The canonical text: 12 groups of 8 upper-case characters separated by `-` (107 characters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&code::format_grouped(&self.symbols(), GROUP_DATA + 1))
    }
}

impl fmt::Debug for UnlockCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockCode({self})")
    }
}

impl FromStr for UnlockCode {
    type Err = UnlockError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnlockCode::parse(s)
    }
}

/// The check symbol of group `index` (0-based): the GF(32) weighted check over the group index and
/// the group's symbols, so a typo anywhere in the group, a swap of two of its characters (the check
/// symbol included), and two whole groups typed in each other's place are all caught.
fn group_check(index: usize, body: &[u8]) -> u8 {
    let mut checked = Vec::with_capacity(body.len() + 1);
    checked.push((index % 32) as u8);
    checked.extend_from_slice(body);
    check_symbol(&checked)
}

/// The message the signature covers.
fn message(product: &str, key: &ActivationKey, pcid: &PcId, payload: &[u8; 5]) -> Vec<u8> {
    let key_text = key.to_string();
    let pc = pcid.to_bytes();
    let mut msg = Vec::with_capacity(
        MESSAGE_PREFIX.len() + key_text.len() + pc.len() + payload.len() + product.len() + 2,
    );
    msg.extend_from_slice(MESSAGE_PREFIX);
    msg.extend_from_slice(key_text.as_bytes());
    msg.push(0);
    msg.extend_from_slice(&pc);
    msg.extend_from_slice(payload);
    msg.push(0);
    msg.extend_from_slice(product.as_bytes());
    msg
}

/// Version (4 bits), features (16), expiry day (16): 36 bits, most significant first, in 5 bytes
/// whose last 4 bits are zero.
fn pack_payload(version: u8, features: u16, expiry_day: u16) -> [u8; 5] {
    let v =
        ((u64::from(version & 0x0f) << 32) | (u64::from(features) << 16) | u64::from(expiry_day))
            << 4;
    let b = v.to_be_bytes();
    [b[3], b[4], b[5], b[6], b[7]]
}

fn unpack_payload(payload: &[u8]) -> (u8, u16, u16) {
    let v = payload
        .iter()
        .take(5)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        >> 4;
    (((v >> 32) & 0x0f) as u8, (v >> 16) as u16, v as u16)
}

/// Copies `count` bits of `src`, from its first bit, into `dst` from bit `at`; most significant first.
fn put_bits(dst: &mut [u8], at: usize, src: &[u8], count: usize) {
    for i in 0..count {
        let bit = src.get(i / 8).map_or(0, |b| (b >> (7 - i % 8)) & 1);
        if bit == 1 {
            if let Some(byte) = dst.get_mut((at + i) / 8) {
                *byte |= 1 << (7 - (at + i) % 8);
            }
        }
    }
}

/// `count` bits of `src` from bit `at`, left-aligned in whole bytes (zero-padded).
fn take_bits(src: &[u8], at: usize, count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count.div_ceil(8)];
    for i in 0..count {
        let j = at + i;
        let bit = src.get(j / 8).map_or(0, |b| (b >> (7 - j % 8)) & 1);
        if bit == 1 {
            if let Some(byte) = out.get_mut(i / 8) {
                *byte |= 1 << (7 - i % 8);
            }
        }
    }
    out
}

/// The 96 symbols of a code: payload then signature as 84 data symbols, grouped with checks.
fn encode_symbols(
    version: u8,
    features: u16,
    expiry_day: u16,
    signature: &[u8; SIGNATURE_LEN],
) -> Vec<u8> {
    let mut bits = [0u8; (DATA_SYMBOLS * 5).div_ceil(8)];
    put_bits(
        &mut bits,
        0,
        &pack_payload(version, features, expiry_day),
        PAYLOAD_BITS,
    );
    put_bits(&mut bits, PAYLOAD_BITS, signature, SIGNATURE_LEN * 8);
    let data = bytes_to_symbols(&bits, DATA_SYMBOLS);
    let mut out = Vec::with_capacity(CODE_SYMBOLS);
    for (index, body) in data.chunks(GROUP_DATA).enumerate() {
        out.extend_from_slice(body);
        out.push(group_check(index, body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{symbol_value, ALPHABET};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::RngCore;
    use rand::SeedableRng;

    const PRODUCT: &str = "noxturnal";
    const FEATURES: [&str; 4] = ["polygraphy", "psg", "scoring", "export"];

    fn secret(seed: u64) -> UnlockSecretKey {
        UnlockSecretKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    fn key(seed: u64) -> ActivationKey {
        ActivationKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    fn pcid(machine: &str) -> PcId {
        PcId::derive(PRODUCT, &[format!("string={machine}").parse().unwrap()]).unwrap()
    }

    fn today() -> Date {
        date!(2026 - 06 - 01)
    }

    fn grant() -> UnlockGrant {
        UnlockGrant::until(
            FeatureMask::from_names(&FEATURES, &["psg", "export"]).unwrap(),
            date!(2027 - 06 - 30),
        )
    }

    fn issue_with(seed: u64, grant: UnlockGrant) -> UnlockCode {
        UnlockCode::issue(&secret(1), PRODUCT, &key(seed), &pcid("pc-a"), grant).unwrap()
    }

    fn issue(seed: u64) -> UnlockCode {
        issue_with(seed, grant())
    }

    fn chars_of(code: &UnlockCode) -> Vec<char> {
        code.to_string().replace('-', "").chars().collect()
    }

    fn text(chars: &[char]) -> String {
        chars.iter().collect()
    }

    #[test]
    fn round_trip_and_verify() {
        let code = issue(7);
        let parsed = UnlockCode::parse(&code.to_string()).unwrap();
        assert_eq!(parsed, code);
        let got = parsed
            .verify(
                &secret(1).public(),
                PRODUCT,
                &key(7),
                &pcid("pc-a"),
                today(),
            )
            .unwrap();
        assert_eq!(got, grant());
        assert_eq!(got.features.names(&FEATURES), vec!["psg", "export"]);
        assert!(got.features.allows(&FEATURES, "psg"));
        assert!(!got.features.allows(&FEATURES, "scoring"));
        assert!(!got.features.allows(&FEATURES, "nonesuch"));
    }

    #[test]
    fn length_is_96_without_separators() {
        let s = issue(1).to_string();
        assert_eq!(s.len(), 107);
        assert_eq!(s.split('-').count(), GROUP_COUNT);
        assert!(s.split('-').all(|g| g.len() == GROUP_DATA + 1));
        let bare = s.replace('-', "");
        assert_eq!(bare.len(), CODE_SYMBOLS);
        assert!(bare.len() <= 100);
    }

    #[test]
    fn typed_forms_parse_to_the_same_code() {
        let code = issue(2);
        let s = code.to_string();
        let typed = s
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(UnlockCode::parse(&typed).unwrap(), code);
        assert_eq!(UnlockCode::parse(&s.replace('-', "")).unwrap(), code);
        let spaced: String = s.replace('-', "").chars().flat_map(|c| [c, ' ']).collect();
        assert_eq!(spaced.parse::<UnlockCode>().unwrap(), code);
    }

    #[test]
    fn wrong_length_and_bad_characters() {
        let s = issue(3).to_string();
        assert_eq!(
            UnlockCode::parse(&s[..s.len() - 1]),
            Err(UnlockError::WrongLength {
                expected: 96,
                found: 95
            })
        );
        assert_eq!(
            UnlockCode::parse(&format!("{s}A")),
            Err(UnlockError::WrongLength {
                expected: 96,
                found: 97
            })
        );
        let mut bad: Vec<char> = s.chars().collect();
        bad[10] = 'U';
        assert_eq!(
            UnlockCode::parse(&text(&bad)),
            Err(UnlockError::InvalidCharacter {
                ch: 'U',
                position: 11
            })
        );
    }

    #[test]
    fn every_single_substitution_names_its_group() {
        for seed in 0..3 {
            let chars = chars_of(&issue(seed));
            for pos in 0..CODE_SYMBOLS {
                let old = symbol_value(chars[pos]).unwrap();
                for v in (0..32u8).filter(|&v| v != old) {
                    let mut typed = chars.clone();
                    typed[pos] = ALPHABET[v as usize] as char;
                    assert_eq!(
                        UnlockCode::parse(&text(&typed)),
                        Err(UnlockError::Typo {
                            group: pos / (GROUP_DATA + 1) + 1
                        }),
                        "position {pos} to {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_in_a_group_is_caught() {
        for seed in 0..5 {
            let chars = chars_of(&issue(seed));
            for group in 0..GROUP_COUNT {
                for i in 0..GROUP_DATA {
                    let pos = group * (GROUP_DATA + 1) + i;
                    if chars[pos] == chars[pos + 1] {
                        continue;
                    }
                    let mut typed = chars.clone();
                    typed.swap(pos, pos + 1);
                    assert_eq!(
                        UnlockCode::parse(&text(&typed)),
                        Err(UnlockError::Typo { group: group + 1 })
                    );
                }
            }
        }
    }

    #[test]
    fn swapped_whole_groups_are_caught() {
        let s = issue(4).to_string();
        let groups: Vec<&str> = s.split('-').collect();
        for i in 0..GROUP_COUNT {
            for j in i + 1..GROUP_COUNT {
                let mut g = groups.clone();
                g.swap(i, j);
                assert!(
                    matches!(
                        UnlockCode::parse(&g.join("-")),
                        Err(UnlockError::Typo { .. })
                    ),
                    "groups {i} and {j}"
                );
            }
        }
    }

    #[test]
    fn verifies_only_for_the_same_key_pc_product_and_public_key() {
        let code = issue(5);
        let pk = secret(1).public();
        let ok = |pk: &UnlockPublicKey, product: &str, k: &ActivationKey, pc: &PcId| {
            code.verify(pk, product, k, pc, today())
        };
        assert!(ok(&pk, PRODUCT, &key(5), &pcid("pc-a")).is_ok());
        let mismatch = Err(UnlockError::SignatureMismatch);
        assert_eq!(ok(&pk, PRODUCT, &key(6), &pcid("pc-a")), mismatch);
        assert_eq!(ok(&pk, PRODUCT, &key(5), &pcid("pc-b")), mismatch);
        assert_eq!(ok(&pk, "other-product", &key(5), &pcid("pc-a")), mismatch);
        assert_eq!(
            ok(&secret(2).public(), PRODUCT, &key(5), &pcid("pc-a")),
            mismatch
        );
        assert!(UnlockError::SignatureMismatch
            .to_string()
            .contains("not issued for this license key on this computer"));
    }

    #[test]
    fn tampered_features_or_expiry_are_refused() {
        let code = issue(8);
        let pk = secret(1).public();
        let more = UnlockCode {
            features: FeatureMask::ALL,
            ..code.clone()
        };
        let later = UnlockCode {
            expiry_day: 0,
            ..code.clone()
        };
        for forged in [more, later] {
            // re-rendered with correct group checks: only the signature can catch it
            let reparsed = UnlockCode::parse(&forged.to_string()).unwrap();
            assert_eq!(
                reparsed.verify(&pk, PRODUCT, &key(8), &pcid("pc-a"), today()),
                Err(UnlockError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn forged_signatures_are_refused() {
        let pk = secret(1).public();
        let mut rng = StdRng::seed_from_u64(99);
        for _ in 0..50 {
            let mut signature = [0u8; SIGNATURE_LEN];
            rng.fill_bytes(&mut signature);
            let forged = UnlockCode {
                features: FeatureMask::ALL,
                expiry_day: 0,
                signature,
            };
            let reparsed = UnlockCode::parse(&forged.to_string()).unwrap();
            assert_eq!(
                reparsed.verify(&pk, PRODUCT, &key(1), &pcid("pc-a"), today()),
                Err(UnlockError::SignatureMismatch)
            );
        }
        // a valid point, signed by someone else
        let other = UnlockCode::issue(
            &secret(3),
            PRODUCT,
            &key(1),
            &pcid("pc-a"),
            UnlockGrant::permanent(FeatureMask::ALL),
        )
        .unwrap();
        assert_eq!(
            other.verify(&pk, PRODUCT, &key(1), &pcid("pc-a"), today()),
            Err(UnlockError::SignatureMismatch)
        );
        // the identity point (compressed: 0xc0 then zeros)
        let mut identity = [0u8; SIGNATURE_LEN];
        identity[0] = 0xc0;
        let forged = UnlockCode {
            features: FeatureMask::ALL,
            expiry_day: 0,
            signature: identity,
        };
        assert_eq!(
            forged.verify(&pk, PRODUCT, &key(1), &pcid("pc-a"), today()),
            Err(UnlockError::SignatureMismatch)
        );
    }

    #[test]
    fn expired_code_is_refused_with_its_date() {
        let last = date!(2026 - 06 - 30);
        let code = issue_with(9, UnlockGrant::until(FeatureMask(1), last));
        let pk = secret(1).public();
        let check = |day: Date| code.verify(&pk, PRODUCT, &key(9), &pcid("pc-a"), day);
        assert_eq!(
            check(last).unwrap(),
            UnlockGrant::until(FeatureMask(1), last)
        );
        let err = check(date!(2026 - 07 - 01)).unwrap_err();
        assert_eq!(err, UnlockError::Expired { on: last });
        assert!(err.to_string().contains("2026-06-30"));
        // an expired code for another machine is still a mismatch, not "expired"
        assert_eq!(
            code.verify(&pk, PRODUCT, &key(9), &pcid("pc-b"), date!(2026 - 07 - 01)),
            Err(UnlockError::SignatureMismatch)
        );
    }

    #[test]
    fn all_and_no_features_and_permanent_work() {
        let pk = secret(1).public();
        for grant in [
            UnlockGrant::permanent(FeatureMask::ALL),
            UnlockGrant::permanent(FeatureMask::NONE),
            UnlockGrant::until(FeatureMask::all_of(&FEATURES), date!(2199 - 06 - 06)),
            UnlockGrant::until(FeatureMask::NONE, date!(2020 - 01 - 02)),
        ] {
            let code = issue_with(10, grant);
            let parsed = UnlockCode::parse(&code.to_string()).unwrap();
            assert_eq!(
                parsed.verify(&pk, PRODUCT, &key(10), &pcid("pc-a"), date!(2020 - 01 - 01)),
                Ok(grant)
            );
        }
        assert_eq!(FeatureMask::all_of(&FEATURES), FeatureMask(0b1111));
        assert_eq!(FeatureMask::ALL.names(&FEATURES), FEATURES.to_vec());
        assert!(FeatureMask::NONE.names(&FEATURES).is_empty());
        let many: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        assert_eq!(FeatureMask::all_of(&many), FeatureMask::ALL);
    }

    #[test]
    fn expiry_range_is_enforced() {
        assert_eq!(
            EXPIRY_EPOCH + Duration::days(i64::from(u16::MAX)),
            date!(2199 - 06 - 06)
        );
        for date in [
            date!(2020 - 01 - 01),
            date!(2019 - 12 - 31),
            date!(2199 - 06 - 07),
        ] {
            assert_eq!(
                UnlockCode::issue(
                    &secret(1),
                    PRODUCT,
                    &key(1),
                    &pcid("pc-a"),
                    UnlockGrant::until(FeatureMask::ALL, date)
                ),
                Err(UnlockError::ExpiryOutOfRange { date })
            );
        }
    }

    #[test]
    fn feature_names_map_to_bits() {
        assert_eq!(
            FeatureMask::from_names(&FEATURES, &["polygraphy", "scoring"]),
            Ok(FeatureMask(0b0101))
        );
        assert_eq!(
            FeatureMask::from_names(&FEATURES, &["nope"]),
            Err(UnlockError::UnknownFeature {
                name: "nope".into()
            })
        );
        let many: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        assert_eq!(
            FeatureMask::from_names(&many, &["f15"]),
            Ok(FeatureMask(0x8000))
        );
        assert_eq!(
            FeatureMask::from_names(&many, &["f16"]),
            Err(UnlockError::FeatureNotEncodable {
                name: "f16".into(),
                number: 17
            })
        );
        assert_eq!(FeatureMask(0x8000).names(&many), vec!["f15"]);
        assert!(!FeatureMask::ALL.contains(16));
    }

    #[test]
    fn unsupported_version_is_reported() {
        let code = issue(11);
        let symbols = encode_symbols(2, code.features.0, code.expiry_day, &code.signature);
        let s = code::format_grouped(&symbols, GROUP_DATA + 1);
        assert_eq!(
            UnlockCode::parse(&s),
            Err(UnlockError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn payload_layout() {
        assert_eq!(pack_payload(1, 0xffff, 0), [0x1f, 0xff, 0xf0, 0x00, 0x00]);
        assert_eq!(pack_payload(1, 0, 0xabcd), [0x10, 0x00, 0x0a, 0xbc, 0xd0]);
        assert_eq!(
            unpack_payload(&pack_payload(1, 0x1234, 0x5678)),
            (1, 0x1234, 0x5678)
        );
    }

    #[test]
    fn known_answer() {
        // Fixed inputs give a fixed code (BLS signatures are deterministic): catches any change to
        // the message, the layout or the check symbols. docs/unlock-codes.md quotes this vector.
        let sk = UnlockSecretKey::from_bytes(&[0x11; 32]).unwrap();
        let key = ActivationKey::parse("00000-00000-00000-00000-00000").unwrap();
        let pc = PcId::parse("FP2YX-658DX-1AGEP-9AR7J").unwrap();
        let grant = UnlockGrant::until(FeatureMask(0b101), date!(2030 - 12 - 31));
        let code = UnlockCode::issue(&sk, "example", &key, &pc, grant).unwrap();
        assert_eq!(code.to_string(), KNOWN_CODE);
        let parsed = UnlockCode::parse(KNOWN_CODE).unwrap();
        let pk = sk.public();
        assert_eq!(
            parsed.verify(&pk, "example", &key, &pc, date!(2030 - 12 - 31)),
            Ok(grant)
        );
        assert_eq!(
            parsed.verify(&pk, "example", &key, &pc, date!(2031 - 01 - 01)),
            Err(UnlockError::Expired {
                on: date!(2030 - 12 - 31)
            })
        );
    }

    const KNOWN_CODE: &str =
        "20051YRV-R45T7J6X-0CSEABQZ-CNRSWVG6-4EFSXTNV-E5C2392F-1PF9D45H-3PBC1XCZ-0F7QZHSP-VDJ1VAFK-XC3RE8VE-76WFGN74";

    #[test]
    fn keys_round_trip_and_hide_the_secret() {
        let sk = secret(12);
        let pem = sk.to_pem();
        assert!(pem.starts_with("-----BEGIN TESSERA UNLOCK PRIVATE KEY-----\n"));
        let back = UnlockSecretKey::from_pem(&pem).unwrap();
        assert_eq!(*back.to_bytes(), *sk.to_bytes());
        assert_eq!(back.public(), sk.public());
        let b64 = STANDARD.encode(*sk.to_bytes());
        assert!(!format!("{sk:?}").contains(&b64[..8]));
        assert!(format!("{sk:?}").contains("secret hidden"));

        let pk = sk.public();
        assert_eq!(pk.to_bytes().len(), 96);
        let pub_pem = pk.to_pem();
        assert!(pub_pem.starts_with("-----BEGIN TESSERA UNLOCK PUBLIC KEY-----\n"));
        assert_eq!(UnlockPublicKey::from_pem(&pub_pem).unwrap(), pk);
        assert_eq!(UnlockPublicKey::from_bytes(&pk.to_bytes()).unwrap(), pk);
        // one label is not the other
        assert!(UnlockSecretKey::from_pem(&pub_pem).is_err());
        assert!(UnlockPublicKey::from_pem(&pem).is_err());
    }

    #[test]
    fn bad_key_bytes_are_refused() {
        assert!(matches!(
            UnlockSecretKey::from_bytes(&[0; 32]),
            Err(UnlockError::InvalidKey { .. })
        ));
        assert!(matches!(
            UnlockSecretKey::from_bytes(&[0xff; 32]),
            Err(UnlockError::InvalidKey { .. })
        ));
        assert!(matches!(
            UnlockSecretKey::from_bytes(&[1; 31]),
            Err(UnlockError::InvalidKey { .. })
        ));
        let mut identity = [0u8; 96];
        identity[0] = 0xc0;
        assert!(matches!(
            UnlockPublicKey::from_bytes(&identity),
            Err(UnlockError::InvalidKey { .. })
        ));
        assert!(matches!(
            UnlockPublicKey::from_bytes(&[0x8a; 96]),
            Err(UnlockError::InvalidKey { .. })
        ));
        assert!(matches!(
            UnlockPublicKey::from_bytes(&[0; 96]),
            Err(UnlockError::InvalidKey { .. })
        ));
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..20 {
            let mut b = [0u8; 96];
            rng.fill_bytes(&mut b);
            b[0] |= 0x80;
            b[0] &= !0x40;
            assert!(UnlockPublicKey::from_bytes(&b).is_err());
        }
        assert!(UnlockPublicKey::from_pem("hello").is_err());
    }

    #[test]
    fn messages_name_the_group() {
        assert_eq!(
            UnlockError::Typo { group: 4 }.to_string(),
            "group 4 of the unlock code has a typo: compare it with the code you were given"
        );
    }

    proptest! {

        #[test]
        fn any_single_substitution_names_its_group(
            seed in any::<u64>(), pos in 0usize..CODE_SYMBOLS, delta in 1u8..32,
        ) {
            let mut chars = chars_of(&issue(seed));
            let old = symbol_value(chars[pos]).unwrap();
            chars[pos] = ALPHABET[((old + delta) % 32) as usize] as char;
            prop_assert_eq!(
                UnlockCode::parse(&text(&chars)),
                Err(UnlockError::Typo { group: pos / (GROUP_DATA + 1) + 1 })
            );
        }

        #[test]
        fn any_adjacent_transposition_in_a_group_is_caught(
            seed in any::<u64>(), group in 0usize..GROUP_COUNT, i in 0usize..GROUP_DATA,
        ) {
            let mut chars = chars_of(&issue(seed));
            let pos = group * (GROUP_DATA + 1) + i;
            prop_assume!(chars[pos] != chars[pos + 1]);
            chars.swap(pos, pos + 1);
            prop_assert_eq!(
                UnlockCode::parse(&text(&chars)),
                Err(UnlockError::Typo { group: group + 1 })
            );
        }

        #[test]
        fn issued_codes_round_trip_and_verify(
            seed in any::<u64>(), features in any::<u16>(), day in 0u16..,
        ) {
            let grant = UnlockGrant { features: FeatureMask(features), expires: day_to_expiry(day) };
            let code = issue_with(seed, grant);
            let parsed = UnlockCode::parse(&code.to_string()).unwrap();
            prop_assert_eq!(&parsed, &code);
            prop_assert_eq!(
                parsed.verify(&secret(1).public(), PRODUCT, &key(seed), &pcid("pc-a"), EXPIRY_EPOCH),
                Ok(grant)
            );
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = UnlockCode::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_code_shaped_input(s in "[0-9A-Za-z -]{90,110}") {
            if let Ok(code) = UnlockCode::parse(&s) {
                prop_assert_eq!(UnlockCode::parse(&code.to_string()), Ok(code));
            }
        }
    }
}
