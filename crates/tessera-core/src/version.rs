//! Feature versions in the numeric dotted form `a.b` (any number of parts).
//!
//! Versions compare part by part as numbers, missing parts counting as zero: `1.10 > 1.9`,
//! `2 == 2.0 == 2.0.0`. A feature record of version *v* satisfies a request for version *w* when
//! `v >= w`: a request for `1.0` is served by `2.0`, never the reverse.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most parts a version may have.
pub const MAX_PARTS: usize = 8;

/// A numeric dotted version such as `2.0` or `11.4.1`.
#[derive(Clone)]
pub struct Version {
    parts: Vec<u32>,
}

/// Why a version string did not parse. Positions count characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The string was empty.
    #[error("a version is required, in the form 1.0")]
    Empty,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("empty part at position {position} (a version looks like 1.0 or 2.10.3)")]
    EmptyPart {
        /// 1-based character position.
        position: usize,
    },
    /// A character other than a digit or a dot.
    #[error("'{ch}' at position {position} is not a digit (a version looks like 1.0 or 2.10.3)")]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// 1-based character position.
        position: usize,
    },
    /// A part beyond 4294967295.
    #[error("the part at position {position} is too large")]
    TooLarge {
        /// 1-based character position of the part.
        position: usize,
    },
    /// More than [`MAX_PARTS`] parts.
    #[error("a version may have at most {MAX_PARTS} parts")]
    TooManyParts,
}

impl Version {
    /// A version from its numeric parts; at least one part, at most [`MAX_PARTS`].
    pub fn new(parts: &[u32]) -> Result<Self, VersionError> {
        if parts.is_empty() {
            return Err(VersionError::Empty);
        }
        if parts.len() > MAX_PARTS {
            return Err(VersionError::TooManyParts);
        }
        Ok(Version {
            parts: parts.to_vec(),
        })
    }

    /// Parses `a.b…`.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let mut parts = Vec::new();
        let mut current: Option<u64> = None;
        let mut part_start = 1;
        for (i, ch) in s.chars().enumerate() {
            let position = i + 1;
            match ch {
                '.' => {
                    let Some(v) = current.take() else {
                        return Err(VersionError::EmptyPart { position });
                    };
                    parts.push(v as u32);
                    part_start = position + 1;
                    if parts.len() >= MAX_PARTS {
                        return Err(VersionError::TooManyParts);
                    }
                }
                '0'..='9' => {
                    let digit = u64::from(ch as u8 - b'0');
                    let v = current.unwrap_or(0) * 10 + digit;
                    if v > u64::from(u32::MAX) {
                        return Err(VersionError::TooLarge {
                            position: part_start,
                        });
                    }
                    current = Some(v);
                }
                other => {
                    return Err(VersionError::InvalidCharacter {
                        ch: other,
                        position,
                    })
                }
            }
        }
        match current {
            Some(v) => parts.push(v as u32),
            None => {
                return Err(VersionError::EmptyPart {
                    position: s.chars().count() + 1,
                })
            }
        }
        Ok(Version { parts })
    }

    /// The numeric parts as written.
    pub fn parts(&self) -> &[u32] {
        &self.parts
    }

    /// Whether a record of this version can serve a request for `wanted`.
    pub fn satisfies(&self, wanted: &Version) -> bool {
        self >= wanted
    }

    /// The parts without trailing zeros, so that `2`, `2.0` and `2.0.0` are one value.
    fn significant(&self) -> &[u32] {
        let end = self
            .parts
            .iter()
            .rposition(|&p| p != 0)
            .map_or(0, |i| i + 1);
        &self.parts[..end]
    }
}

impl Default for Version {
    /// `1.0`, the version of a feature record that names none.
    fn default() -> Self {
        Version { parts: vec![1, 0] }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn numeric_not_lexical_ordering() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2.0") > v("1.99.99"));
        assert_eq!(v("2"), v("2.0.0"));
        assert_eq!(v("1.01"), v("1.1"));
    }

    #[test]
    fn newer_serves_older_never_the_reverse() {
        assert!(v("2.0").satisfies(&v("1.0")));
        assert!(!v("1.0").satisfies(&v("2.0")));
        assert!(v("1.0").satisfies(&v("1.0")));
    }

    #[test]
    fn parse_errors_say_where() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert_eq!(
            Version::parse("1..2"),
            Err(VersionError::EmptyPart { position: 3 })
        );
        assert_eq!(
            Version::parse(".1"),
            Err(VersionError::EmptyPart { position: 1 })
        );
        assert_eq!(
            Version::parse("1."),
            Err(VersionError::EmptyPart { position: 3 })
        );
        assert_eq!(
            Version::parse("1.x"),
            Err(VersionError::InvalidCharacter {
                ch: 'x',
                position: 3
            })
        );
        assert_eq!(
            Version::parse("1.99999999999"),
            Err(VersionError::TooLarge { position: 3 })
        );
        assert_eq!(
            Version::parse("1.2.3.4.5.6.7.8.9"),
            Err(VersionError::TooManyParts)
        );
        assert_eq!(
            Version::parse("-1"),
            Err(VersionError::InvalidCharacter {
                ch: '-',
                position: 1
            })
        );
    }

    #[test]
    fn serde_is_a_string() {
        assert_eq!(serde_json::to_string(&v("2.10")).unwrap(), "\"2.10\"");
        let back: Version = serde_json::from_str("\"3.1\"").unwrap();
        assert_eq!(back, v("3.1"));
        assert!(serde_json::from_str::<Version>("\"3.a\"").is_err());
    }

    fn parts() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(0u32..1000, 1..5)
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(p in parts()) {
            let ver = Version::new(&p).unwrap();
            let back = Version::parse(&ver.to_string()).unwrap();
            prop_assert_eq!(back.parts(), &p[..]);
        }

        #[test]
        fn ordering_is_total_and_matches_padded_tuples(a in parts(), b in parts()) {
            let (va, vb) = (Version::new(&a).unwrap(), Version::new(&b).unwrap());
            let n = a.len().max(b.len());
            let pad = |x: &[u32]| { let mut x = x.to_vec(); x.resize(n, 0); x };
            prop_assert_eq!(va.cmp(&vb), pad(&a).cmp(&pad(&b)));
            prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
            prop_assert_eq!(va.satisfies(&vb), pad(&a) >= pad(&b));
        }

        #[test]
        fn ordering_is_transitive(a in parts(), b in parts(), c in parts()) {
            let (va, vb, vc) = (Version::new(&a).unwrap(), Version::new(&b).unwrap(), Version::new(&c).unwrap());
            if va <= vb && vb <= vc {
                prop_assert!(va <= vc);
            }
        }

        #[test]
        fn equal_versions_hash_equal(a in parts(), zeros in 0usize..3) {
            use std::collections::hash_map::DefaultHasher;
            let va = Version::new(&a).unwrap();
            let mut padded = a.clone();
            padded.extend(std::iter::repeat_n(0, zeros));
            prop_assume!(padded.len() <= MAX_PARTS);
            let vb = Version::new(&padded).unwrap();
            prop_assert_eq!(&va, &vb);
            let h = |v: &Version| { let mut s = DefaultHasher::new(); v.hash(&mut s); s.finish() };
            prop_assert_eq!(h(&va), h(&vb));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Version::parse(&s);
        }
    }
}
