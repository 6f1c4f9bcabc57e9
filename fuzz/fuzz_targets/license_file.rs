//! Any bytes as a license file: never panics; whatever verifies was signed by the test key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::license::License;
use tessera_core::{HostId, Keyring, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = SigningKey::from_seed(&core::array::from_fn(|i| i as u8));
    let ring = Keyring::with(key.public());
    let now = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    let host: Vec<HostId> = vec!["ethernet=0050569a3b01".parse().unwrap()];
    if let Ok(lic) = License::verify(text, &ring, now, &host) {
        // only genuine licenses verify; the claims round-trip
        let json = serde_json::to_string(lic.claims()).unwrap();
        assert!(!json.is_empty());
        for f in lic.features() {
            let _ = lic.feature(&f.name, &f.version, now);
        }
    }
});
