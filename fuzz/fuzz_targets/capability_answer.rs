//! Any text as a license server's answer, in each of its three forms (signed, batch-signed,
//! sealed): never panics; whatever verifies was made with the test key or session key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::capability::{sealed_lease, CapabilityResponseClaims};
use tessera_core::{Keyring, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = SigningKey::from_seed(&core::array::from_fn(|i| i as u8));
    let ring = Keyring::with(key.public());
    let now = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    let nonce = "nonce-0000000000-abcdef";
    if let Ok(c) = CapabilityResponseClaims::verify(text, &ring, nonce, now) {
        assert_eq!(c.nonce, nonce);
    }
    let _ = sealed_lease(text);
    if let Ok(c) = CapabilityResponseClaims::verify_sealed(text, &[7u8; 32], nonce) {
        assert_eq!(c.nonce, nonce);
    }
});
