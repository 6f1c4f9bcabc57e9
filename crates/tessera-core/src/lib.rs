//! # tessera-core
//!
//! The licensing domain of Tessera, with no I/O: feature [`version`]s, [`hostid`]s, [`feature`]
//! records, Ed25519 signing [`keys`], signed [`document`]s (the [`license`] file among them),
//! [`activation_key`]s and [`pcid`] (PC identifiers). Time comes in as an argument (a
//! [`clock::Clock`] is read at the edge) and randomness as a `CryptoRng`, so every function here is
//! deterministic and testable.
//!
//! ```
//! use tessera_core::{feature::{Count, Feature}, keys::{Keyring, SigningKey}, license::*, Version};
//! use time::macros::datetime;
//!
//! let key = SigningKey::from_seed(&[1; 32]);
//! let now = datetime!(2026-06-01 0:00 UTC);
//! let claims = LicenseClaims {
//!     v: LICENSE_FORMAT_VERSION, iss: "Example Software".into(), sub: "ACME".into(),
//!     jti: "lic-1".into(), iat: now, nbf: None, exp: None, hostids: vec![],
//!     features: vec![Feature::new("solver", "2.0".parse().unwrap(), Count::Counted(5))],
//!     policy: None,
//! };
//! let file = claims.issue(&key).unwrap();
//! let license = License::verify(&file, &Keyring::with(key.public()), now, &[]).unwrap();
//! assert!(license.feature("solver", &"1.0".parse::<Version>().unwrap(), now).is_ok());
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation_key;
pub mod capability;
pub mod certificate;
pub mod clock;
pub mod code;
pub mod document;
pub mod feature;
pub mod hostid;
pub mod keys;
pub mod license;
pub mod model;
pub mod named_users;
pub mod offline;
pub mod pcid;
pub mod policy;
pub mod pools;
pub mod reservations;
pub mod seats;
pub mod time_fmt;
pub mod unlock;
pub mod usage;
pub mod version;

pub use activation_key::{ActivationKey, KeyHash};
pub use clock::{Clock, ManualClock};
pub use code::CodeError;
pub use document::{DocumentType, VerifyError};
pub use hostid::{DeviceType, HostId, HostIdKind};
pub use keys::{KeyId, Keyring, PublicKey, SigningKey};
pub use license::{License, LicenseClaims};
pub use pcid::PcId;
pub use unlock::{
    FeatureMask, UnlockCode, UnlockError, UnlockGrant, UnlockPublicKey, UnlockSecretKey,
};
pub use version::Version;

/// Re-exported so callers name the same `time` types as the core.
pub use time;
