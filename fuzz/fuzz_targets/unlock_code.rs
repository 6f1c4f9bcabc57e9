//! Any text as a typed unlock code: never panics; what parses re-renders to a canonical form (12
//! groups of 8, 107 characters) that parses to the same code; checking a parsed code's signature (any
//! 48 bytes that passed the group checks) never panics either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::time::macros::date;
use tessera_core::{ActivationKey, PcId, UnlockCode, UnlockPublicKey, UnlockSecretKey};

fn fixture() -> &'static (UnlockPublicKey, ActivationKey, PcId) {
    static FIXTURE: OnceLock<(UnlockPublicKey, ActivationKey, PcId)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        (
            UnlockSecretKey::from_bytes(&[0x11; 32]).unwrap().public(),
            ActivationKey::parse("00000-00000-00000-00000-00000").unwrap(),
            PcId::parse("FP2YX-658DX-1AGEP-9AR7J").unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = UnlockCode::parse(text) {
        let canonical = code.to_string();
        assert_eq!(canonical.len(), 107);
        assert_eq!(UnlockCode::parse(&canonical).unwrap(), code);
        let (pk, key, pc) = fixture();
        let _ = code.verify(pk, "example", key, pc, date!(2026 - 01 - 01));
    }
});
