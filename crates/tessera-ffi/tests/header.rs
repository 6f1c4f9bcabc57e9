//! The checked-in C header (include/tessera.h) is what cbindgen makes of the crate today: a change
//! to the C API without a new header fails here. `TESSERA_BLESS=1` writes the new header instead.

use std::path::Path;

#[test]
fn the_checked_in_header_matches_the_crate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_crate(dir)
        .generate()
        .unwrap();
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = dir.join("include/tessera.h");
    if std::env::var("TESSERA_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the crate's C API; regenerate it with\n  \
         TESSERA_BLESS=1 cargo test -p tessera-ffi --test header\nand commit it",
        path.display()
    );
    // the header declares what an application needs
    for name in [
        "tessera_client_checkout",
        "tessera_last_error",
        "TESSERA_STATUS_REFUSED_ALL_IN_USE",
        "typedef struct TesseraClient TesseraClient;",
    ] {
        assert!(generated.contains(name), "the header lacks {name}");
    }
}
