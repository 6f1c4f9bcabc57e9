//! The license-format test vectors under `tests/vectors/` (see `docs/license-format.md`).
//!
//! Ed25519 signatures are deterministic, so issuing the same claims with the same key must give the
//! same bytes. This test rebuilds every vector and compares it with the file; run it with
//! `TESSERA_UPDATE_VECTORS=1` to rewrite the files after an intended format change.

use std::path::PathBuf;

use tessera_core::document::{self, DocumentType, VerifyError};
use tessera_core::feature::{Count, Expiry, Feature};
use tessera_core::license::{License, LicenseClaims, LICENSE_FORMAT_VERSION};
use tessera_core::time::macros::datetime;
use tessera_core::{HostId, Keyring, SigningKey, Version};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// The test key: seed bytes 0, 1, 2, …, 31. Never use it for anything but tests.
fn key() -> SigningKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SigningKey::from_seed(&seed)
}

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn claims() -> LicenseClaims {
    let mut solver = Feature::new("solver", v("2.0"), Count::Counted(10));
    solver.overdraft = 2;
    solver.start = Some(datetime!(2026-01-01 0:00 UTC));
    solver.vendor_string = Some("edition=pro".into());
    solver.product = Some("ACME Studio".into());
    solver.product_version = Some("2026.1".into());
    solver.activation_id = Some("AID-0001".into());
    solver.entitlement_id = Some("ENT-0042".into());
    let viewer = Feature::new("viewer", v("1.0"), Count::Uncounted);
    let mut export = Feature::new("export", v("1.0"), Count::Counted(500));
    export.metered = true;
    LicenseClaims {
        v: LICENSE_FORMAT_VERSION,
        iss: "Example Software Ltd.".into(),
        sub: "ACME Engineering GmbH".into(),
        jti: "vector-0001".into(),
        iat: datetime!(2026-01-01 0:00 UTC),
        nbf: Some(datetime!(2026-01-01 0:00 UTC)),
        exp: None,
        hostids: vec!["ethernet=0050569a3b01".parse::<HostId>().unwrap()],
        features: vec![solver, viewer, export],
        policy: None,
    }
}

fn expired_claims() -> LicenseClaims {
    let mut c = claims();
    c.jti = "vector-0002".into();
    c.hostids = vec![];
    for f in &mut c.features {
        f.expiry = Expiry::At(datetime!(2026-01-31 23:59:59 UTC));
    }
    c
}

/// Changes one character of the claims part to another base64url character.
fn tamper(armoured: &str) -> String {
    let lines: Vec<&str> = armoured.lines().collect();
    let mut second: Vec<char> = lines[4].chars().collect();
    second[10] = if second[10] == 'A' { 'B' } else { 'A' };
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    out[4] = second.into_iter().collect();
    out.join("\n") + "\n"
}

fn expected_files() -> Vec<(&'static str, String)> {
    let k = key();
    let license = claims().issue(&k).unwrap();
    let expired = expired_claims().issue(&k).unwrap();
    let token: String = license
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let header = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let finalized = claims().finalize().unwrap();
    vec![
        ("producer.key", k.to_pkcs8_pem().unwrap().to_string()),
        ("producer.pub", k.public().to_spki_pem().unwrap()),
        (
            "producer.jwk.json",
            serde_json::to_string_pretty(&k.public().to_jwk()).unwrap() + "\n",
        ),
        ("license.lic", license.clone()),
        ("license.token", token.clone() + "\n"),
        ("license.header.json", header + "\n"),
        (
            "license.claims.json",
            serde_json::to_string_pretty(&finalized).unwrap() + "\n",
        ),
        ("tampered.lic", tamper(&license)),
        ("expired.lic", expired),
    ]
}

#[test]
fn vectors_match_the_files() {
    let update = std::env::var("TESSERA_UPDATE_VECTORS").is_ok_and(|v| v == "1");
    for (name, content) in expected_files() {
        let path = dir().join(name);
        if update {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &content).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with TESSERA_UPDATE_VECTORS=1)",
                path.display()
            )
        });
        assert_eq!(
            on_disk, content,
            "{name} differs from what the code produces now"
        );
    }
}

#[test]
fn vectors_verify_as_documented() {
    let ring = Keyring::with(key().public());
    let now = datetime!(2026-06-01 0:00 UTC);
    let host: Vec<HostId> = vec!["ethernet=00:50:56:9A:3B:01".parse().unwrap()];
    let read = |n: &str| std::fs::read_to_string(dir().join(n)).unwrap();

    let lic = License::verify(&read("license.lic"), &ring, now, &host).unwrap();
    assert_eq!(lic.claims(), &claims().finalize().unwrap());
    assert_eq!(lic.kid().as_str(), key().kid().as_str());
    // the bare token verifies too
    assert!(License::verify(&read("license.token"), &ring, now, &host).is_ok());

    assert_eq!(
        License::verify(&read("tampered.lic"), &ring, now, &host).unwrap_err(),
        VerifyError::SignatureMismatch
    );
    assert_eq!(
        License::verify(&read("expired.lic"), &ring, now, &[]).unwrap_err(),
        VerifyError::Expired {
            expired_at: datetime!(2026-01-31 23:59:59 UTC)
        }
    );
    let other: Vec<HostId> = vec!["ethernet=0050569a3b02".parse().unwrap()];
    assert!(matches!(
        License::verify(&read("license.lic"), &ring, now, &other),
        Err(VerifyError::BoundToOtherHost { .. })
    ));
    // the private key file is the test key
    let from_file = SigningKey::from_pkcs8_pem(&read("producer.key")).unwrap();
    assert_eq!(from_file.kid(), key().kid());
    // a license is not a server certificate
    assert!(matches!(
        document::verify::<serde_json::Value>(
            &read("license.token"),
            &ring,
            DocumentType::ServerCertificate,
            now
        ),
        Err(VerifyError::WrongDocumentType { .. })
    ));
}
