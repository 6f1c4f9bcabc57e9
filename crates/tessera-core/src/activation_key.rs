//! Activation keys: the license keys a producer hands to its customers.
//!
//! A key is 120 random bits written as 24 Crockford base32 symbols plus one check symbol, in five
//! groups of five: `7KQ2M-XW4RT-0BZ9D-HC1NA-5VJ8E`. A mistyped key is rejected locally by
//! [`ActivationKey::parse`] before anything goes over the network. Only the [`KeyHash`] of a key is
//! ever stored; the key itself is shown once, when it is created.

use std::fmt;
use std::str::FromStr;

use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::code::{bytes_to_symbols, CodeError, CodeShape};

const SHAPE: CodeShape = CodeShape { data: 24, group: 5 };

/// How many random bits a key carries.
pub const KEY_BITS: usize = 120;

/// A license key in its canonical form. Its `Debug` output hides all but the first group.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationKey {
    symbols: Vec<u8>,
}

impl ActivationKey {
    /// Draws a new key from a cryptographic random number generator.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_BITS / 8];
        rng.fill_bytes(&mut bytes);
        ActivationKey {
            symbols: bytes_to_symbols(&bytes, SHAPE.data),
        }
    }

    /// Parses a typed key: case-insensitive, spaces and hyphens ignored, `O`→`0`, `I`/`L`→`1`.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        SHAPE.parse(input).map(|symbols| ActivationKey { symbols })
    }

    /// The hash under which the key is stored and looked up.
    pub fn hash(&self) -> KeyHash {
        let mut h = Sha256::new();
        h.update(b"tessera-activation-key-v1:");
        h.update(self.to_string().as_bytes());
        KeyHash(h.finalize().into())
    }
}

impl fmt::Display for ActivationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&SHAPE.render(&self.symbols))
    }
}

impl fmt::Debug for ActivationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.to_string();
        write!(f, "ActivationKey({}-…)", shown.get(..5).unwrap_or(""))
    }
}

impl FromStr for ActivationKey {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The SHA-256 of an activation key: what the stores keep instead of the key.
///
/// Keys carry 120 random bits, so a fast hash is enough: there is nothing to brute-force.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters, as written by [`KeyHash::to_hex`].
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(KeyHash(out))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn key(seed: u64) -> ActivationKey {
        ActivationKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    #[test]
    fn shape_is_five_groups_of_five() {
        let k = key(1).to_string();
        assert_eq!(k.len(), 29);
        assert_eq!(k.split('-').count(), 5);
        assert!(k.split('-').all(|g| g.len() == 5));
    }

    #[test]
    fn typed_forms_parse_to_the_same_key() {
        let k = key(2);
        let s = k.to_string();
        let typed = s.to_lowercase().replace('-', " ").replace('0', "o");
        assert_eq!(ActivationKey::parse(&typed).unwrap(), k);
        assert_eq!(
            ActivationKey::parse(&s.replace('-', "")).unwrap().hash(),
            k.hash()
        );
    }

    #[test]
    fn wrong_length_is_reported() {
        let s = key(3).to_string();
        assert_eq!(
            ActivationKey::parse(&s[..s.len() - 1]),
            Err(CodeError::WrongLength {
                expected: 25,
                found: 24
            })
        );
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let h = key(4).hash();
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert!(!format!("{:?}", key(4)).contains(&key(4).to_string()[6..]));
    }

    fn alphabet_char(v: u8) -> char {
        crate::code::ALPHABET[v as usize] as char
    }

    proptest! {
        #[test]
        fn any_single_substitution_is_caught(seed in any::<u64>(), pos in 0usize..25, delta in 1u8..32) {
            let k = key(seed);
            let mut chars: Vec<char> = k.to_string().replace('-', "").chars().collect();
            let old = crate::code::symbol_value(chars[pos]).unwrap();
            chars[pos] = alphabet_char((old + delta) % 32);
            let typed: String = chars.into_iter().collect();
            prop_assert_eq!(ActivationKey::parse(&typed), Err(CodeError::ChecksumMismatch));
        }

        #[test]
        fn any_adjacent_transposition_is_caught(seed in any::<u64>(), pos in 0usize..24) {
            let k = key(seed);
            let mut chars: Vec<char> = k.to_string().replace('-', "").chars().collect();
            prop_assume!(chars[pos] != chars[pos + 1]);
            chars.swap(pos, pos + 1);
            let typed: String = chars.into_iter().collect();
            prop_assert_eq!(ActivationKey::parse(&typed), Err(CodeError::ChecksumMismatch));
        }

        #[test]
        fn generated_keys_always_parse(seed in any::<u64>()) {
            let k = key(seed);
            prop_assert_eq!(ActivationKey::parse(&k.to_string()), Ok(k));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = ActivationKey::parse(&s);
        }
    }
}
