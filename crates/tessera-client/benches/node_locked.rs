//! Node-locked checks: load + verify a license file (target: under 200 µs), and a feature check on a
//! loaded license (target: under 1 µs). Run: `cargo bench -p tessera-client --bench node_locked`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tessera_core::feature::{Count, Feature};
use tessera_core::license::{License, LicenseClaims, LICENSE_FORMAT_VERSION};
use tessera_core::time::macros::datetime;
use tessera_core::{HostId, Keyring, SigningKey, Version};

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[7; 32]);
    let now = datetime!(2026-06-01 0:00 UTC);
    let host: HostId = "machine_id=4c4c4544004a3510804ab4c04f4e3232"
        .parse()
        .unwrap();
    let features = (0..20)
        .map(|i| {
            Feature::new(
                format!("feature-{i}"),
                "2.0".parse().unwrap(),
                Count::Counted(5),
            )
        })
        .collect();
    let text = LicenseClaims {
        v: LICENSE_FORMAT_VERSION,
        iss: "Example".into(),
        sub: "ACME".into(),
        jti: "bench".into(),
        iat: now,
        nbf: None,
        exp: None,
        hostids: vec![host.clone()],
        features,
        policy: None,
    }
    .issue(&key)
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("license.lic");
    std::fs::write(&path, &text).unwrap();
    let ring = Keyring::with(key.public());
    let hosts = vec![host];

    c.bench_function("load and verify a license file", |b| {
        b.iter(|| {
            let text = std::fs::read_to_string(black_box(&path)).unwrap();
            License::verify(&text, &ring, now, &hosts).unwrap()
        })
    });
    let lic = License::verify(&text, &ring, now, &hosts).unwrap();
    let wanted: Version = "1.0".parse().unwrap();
    c.bench_function("feature check on a loaded license", |b| {
        b.iter(|| {
            lic.feature(black_box("feature-17"), black_box(&wanted), now)
                .unwrap()
                .count
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
