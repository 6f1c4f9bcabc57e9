//! Any text as a feature version: never panics; what parses round-trips and orders consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::Version;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('|').unwrap_or((text, "1.0"));
    if let (Ok(va), Ok(vb)) = (Version::parse(a), Version::parse(b)) {
        assert_eq!(Version::parse(&va.to_string()).unwrap(), va);
        assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
        assert_eq!(va.satisfies(&vb), va >= vb);
    }
});
