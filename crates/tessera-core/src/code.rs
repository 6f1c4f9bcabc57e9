//! Typable codes: Crockford base32 symbols in groups, guarded by check symbols.
//!
//! Activation keys and PC identifiers (and, later, unlock codes) are read aloud, typed from paper and
//! pasted from e-mail. They use Crockford's base32 alphabet (`0-9`, `A-Z` without `I L O U`), are
//! case-insensitive, accept `O` for `0` and `I`/`L` for `1`, and ignore spaces and hyphens.
//!
//! The check symbol is a weighted sum over GF(32) (the field with 32 elements, polynomial
//! x⁵ + x² + 1), with weight αⁱ⁺¹ for the symbol at position *i*. Because every weight is a distinct
//! non-zero field element, every single-symbol substitution and every transposition of two symbols less
//! than 31 places apart changes the sum, so it is caught before any network call. Crockford's own
//! mod-37 check symbol would do the same but needs the extra symbols `* ~ $ = U`, which cannot be typed
//! into every field or URL; ours stays inside the 32-symbol alphabet.

use std::fmt;

/// The 32 symbols, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why a typed code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// A character that is not in the alphabet (nor a space or hyphen). `position` counts characters
    /// of the input from 1.
    #[error("'{ch}' at position {position} is not a valid character (use 0-9 and A-Z except I, L, O, U)")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// 1-based character position in the input as typed.
        position: usize,
    },
    /// Too few or too many symbols.
    #[error("expected {expected} characters (not counting spaces and hyphens) but found {found}")]
    WrongLength {
        /// How many symbols the code has.
        expected: usize,
        /// How many were typed.
        found: usize,
    },
    /// The check symbol does not match: at least one character was mistyped.
    #[error(
        "the code has a typo: its check character does not match; compare it with the original"
    )]
    ChecksumMismatch,
}

/// Maps a typed character to its 5-bit value, with Crockford's aliases.
pub fn symbol_value(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u8)
}

/// Parses typed input into symbol values, ignoring spaces, tabs and hyphens.
pub fn parse_symbols(input: &str) -> Result<Vec<u8>, CodeError> {
    let mut out = Vec::with_capacity(input.len());
    for (i, ch) in input.chars().enumerate() {
        if ch == '-' || ch.is_whitespace() {
            continue;
        }
        match symbol_value(ch) {
            Some(v) => out.push(v),
            None => {
                return Err(CodeError::InvalidCharacter {
                    ch,
                    position: i + 1,
                })
            }
        }
    }
    Ok(out)
}

/// Multiplies two elements of GF(32) (polynomial x⁵ + x² + 1).
fn gf32_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 0x20 != 0 {
            a ^= 0x25;
        }
    }
    product & 0x1f
}

/// The check symbol value for a run of symbol values (each below 32).
pub fn check_symbol(symbols: &[u8]) -> u8 {
    let mut sum = 0u8;
    let mut weight = 1u8;
    for &s in symbols {
        weight = gf32_mul(weight, 2);
        sum ^= gf32_mul(weight, s & 0x1f);
    }
    sum
}

/// Renders symbol values as text, with a hyphen every `group` symbols.
pub fn format_grouped(symbols: &[u8], group: usize) -> String {
    let mut s = String::with_capacity(symbols.len() + symbols.len() / group.max(1));
    for (i, &v) in symbols.iter().enumerate() {
        if i > 0 && group > 0 && i % group == 0 {
            s.push('-');
        }
        s.push(ALPHABET[(v & 0x1f) as usize] as char);
    }
    s
}

/// Takes the first `count` 5-bit symbols from `bytes`, most significant bit first.
/// Bits past the end of `bytes` read as zero.
pub fn bytes_to_symbols(bytes: &[u8], count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| {
            let mut v = 0u8;
            for b in 0..5 {
                let bit = i * 5 + b;
                let byte = bytes.get(bit / 8).copied().unwrap_or(0);
                v = (v << 1) | ((byte >> (7 - bit % 8)) & 1);
            }
            v
        })
        .collect()
}

/// Packs 5-bit symbols into bytes, most significant bit first; the last byte is zero-padded.
pub fn symbols_to_bytes(symbols: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; (symbols.len() * 5).div_ceil(8)];
    for (i, &v) in symbols.iter().enumerate() {
        for b in 0..5 {
            if (v >> (4 - b)) & 1 == 1 {
                let bit = i * 5 + b;
                if let Some(byte) = out.get_mut(bit / 8) {
                    *byte |= 1 << (7 - bit % 8);
                }
            }
        }
    }
    out
}

/// A fixed-length code of `data` symbols followed by one check symbol, grouped for display.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeShape {
    pub data: usize,
    pub group: usize,
}

impl CodeShape {
    /// Appends the check symbol and renders the grouped text.
    pub(crate) fn render(&self, data: &[u8]) -> String {
        let mut all = data.to_vec();
        all.push(check_symbol(data));
        format_grouped(&all, self.group)
    }

    /// Parses typed text, checks length and check symbol, and returns the data symbols.
    pub(crate) fn parse(&self, input: &str) -> Result<Vec<u8>, CodeError> {
        let mut symbols = parse_symbols(input)?;
        if symbols.len() != self.data + 1 {
            return Err(CodeError::WrongLength {
                expected: self.data + 1,
                found: symbols.len(),
            });
        }
        let check = symbols.pop().unwrap_or_default();
        if check_symbol(&symbols) != check {
            return Err(CodeError::ChecksumMismatch);
        }
        Ok(symbols)
    }
}

impl fmt::Display for CodeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} symbols + check", self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_case_are_accepted() {
        assert_eq!(parse_symbols("o-i l").unwrap(), vec![0, 1, 1]);
        assert_eq!(parse_symbols("zZ").unwrap(), vec![31, 31]);
        assert_eq!(
            parse_symbols("AB U"),
            Err(CodeError::InvalidCharacter {
                ch: 'U',
                position: 4
            })
        );
    }

    #[test]
    fn bits_round_trip() {
        let bytes = [0xde, 0xad, 0xbe, 0xef, 0x01];
        let syms = bytes_to_symbols(&bytes, 8);
        assert_eq!(symbols_to_bytes(&syms), bytes.to_vec());
    }

    #[test]
    fn gf32_multiplication_is_a_field() {
        // every non-zero element has an inverse
        for a in 1..32u8 {
            assert!((1..32u8).any(|b| gf32_mul(a, b) == 1), "{a} has no inverse");
        }
        // alpha = 2 generates all 31 non-zero elements
        let mut seen = std::collections::BTreeSet::new();
        let mut x = 1u8;
        for _ in 0..31 {
            x = gf32_mul(x, 2);
            seen.insert(x);
        }
        assert_eq!(seen.len(), 31);
    }
}
