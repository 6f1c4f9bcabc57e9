//! The PC identifier: one short, typable code for a machine, per product.
//!
//! An end user reads it off the application's About box and types it into the activation page
//! (Noxturnal's "PC identifier"). It is a hash of the machine's chosen host identifiers salted with the
//! product name, so two producers see unrelated identifiers for the same machine and cannot correlate
//! it. Written as 19 base32 symbols (95 bits of the hash) and a check symbol in four groups of five:
//! `K3TQ8-W1ZMC-7H2RA-PX0DV`. Which host identifiers feed it, and how stable each is, is described in
//! `docs/hostids.md`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::code::{bytes_to_symbols, symbols_to_bytes, CodeError, CodeShape};
use crate::hostid::HostId;

const SHAPE: CodeShape = CodeShape { data: 19, group: 5 };

/// A PC identifier.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PcId {
    symbols: Vec<u8>,
}

impl PcId {
    /// Derives the PC identifier of a machine with these host ids, for `product`. The order of `ids`
    /// does not matter; duplicates are ignored. Returns `None` when `ids` is empty.
    pub fn derive(product: &str, ids: &[HostId]) -> Option<Self> {
        if ids.is_empty() {
            return None;
        }
        let mut sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sorted.sort();
        sorted.dedup();
        let mut h = Sha256::new();
        h.update(b"tessera-pcid-v1\0");
        h.update(product.as_bytes());
        h.update(b"\0");
        for id in &sorted {
            h.update(id.as_bytes());
            h.update(b"\n");
        }
        let digest = h.finalize();
        Some(PcId {
            symbols: bytes_to_symbols(&digest, SHAPE.data),
        })
    }

    /// Parses a typed PC identifier (case, spaces and hyphens do not matter).
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        SHAPE.parse(input).map(|symbols| PcId { symbols })
    }

    /// The 95 bits as 12 bytes (the last bit zero), for signing.
    pub fn to_bytes(&self) -> Vec<u8> {
        symbols_to_bytes(&self.symbols)
    }
}

impl fmt::Display for PcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&SHAPE.render(&self.symbols))
    }
}

impl fmt::Debug for PcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PcId({self})")
    }
}

impl FromStr for PcId {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PcId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<HostId> {
        vec![
            "machine_id=4c4c4544004a3510804ab4c04f4e3232"
                .parse()
                .unwrap(),
            "ethernet=0050569a3b01".parse().unwrap(),
        ]
    }

    #[test]
    fn stable_order_independent_and_product_salted() {
        let a = PcId::derive("cad", &ids()).unwrap();
        let mut rev = ids();
        rev.reverse();
        assert_eq!(a, PcId::derive("cad", &rev).unwrap());
        assert_ne!(a, PcId::derive("cam", &ids()).unwrap());
        assert_eq!(PcId::parse(&a.to_string().to_lowercase()).unwrap(), a);
        assert_eq!(a.to_string().len(), 23);
        assert!(PcId::derive("cad", &[]).is_none());
    }
}
