//! Any text as a typed activation key or PC identifier: never panics; what parses re-renders to a
//! canonical form that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::{ActivationKey, PcId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = ActivationKey::parse(text) {
        let canonical = key.to_string();
        assert_eq!(ActivationKey::parse(&canonical).unwrap(), key);
        assert_eq!(canonical.len(), 29);
    }
    if let Ok(pc) = PcId::parse(text) {
        assert_eq!(PcId::parse(&pc.to_string()).unwrap(), pc);
    }
});
