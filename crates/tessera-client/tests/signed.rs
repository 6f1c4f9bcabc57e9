//! The client library signing its capability requests with a client key, against a real license
//! server that requires signed requests: without a key its checkout is refused with the server's
//! code; with a registered RSA-2048 or Ed25519 key it checks out, renews and returns; with a key
//! the administrator has not registered it is refused.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use tessera_client::signing::RequestSigner;
use tessera_client::{Client, ClientConfig, ClientError};
use tessera_host::SystemClock;
use tessera_testkit::{machine, BackOfficeKit, KeyCount, ServerKit};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tessera-server/tests/fixtures/client-keys")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn refused_with(err: &ClientError) -> String {
    match err {
        ClientError::Refused { code, .. } => code.to_string(),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn the_client_signs_its_requests_with_a_registered_key() {
    let rt = tessera_testkit::runtime();
    let bo = rt.block_on(
        BackOfficeKit::new()
            .features(json!([{"name": "modeler"}]))
            .floating(2)
            .start(),
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = rt.block_on(
        ServerKit::new(dir.path(), &bo.producer_pem())
            .lease_seconds(3)
            .config("require_signed_requests = true\n")
            .init(),
    );
    let (url, _stop) = rt.block_on(async {
        srv.activate_and_start_at(
            &bo.url,
            &[KeyCount::new(bo.keys[0].clone(), 2)],
            "127.0.0.1:0",
        )
        .await
        .split()
    });
    let rsa = RequestSigner::from_pkcs8(&fixture("rsa2048.pem")).unwrap();
    // the administrator registers the RSA key's public half, as the client library gives it
    let upload = |der: Vec<u8>| {
        rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/admin/client-keys"))
                .bearer_auth(&srv.token)
                .header("content-type", "application/octet-stream")
                .body(der)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    assert!(upload(rsa.public_key_der().to_vec()).is_success());
    let client = |n: u8, key: Option<Vec<u8>>| {
        let d = dir.path().join(format!("app{n}"));
        let mut cfg = ClientConfig::new("cad", &bo.producer_pem())
            .unwrap()
            .state_dirs(d.join("s"), d.join("b"));
        if let Some(k) = key {
            cfg = cfg.signing_key(&k).unwrap();
        }
        Client::with(cfg, Arc::new(SystemClock), machine(n)).unwrap()
    };

    // unsigned: the server's refusal, by code
    let err = client(1, None)
        .checkout(&url, "modeler", "1.0")
        .unwrap_err();
    assert_eq!(refused_with(&err), "signature_required", "{err}");
    // signed with the registered RSA key: a seat, kept alive by signed renewals, returned on drop
    let signed = client(2, Some(fixture("rsa2048.pem")));
    let seat = signed.checkout(&url, "modeler", "1.0").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(seat.renewals() >= 1, "renewed {} times", seat.renewals());
    // an Ed25519 key not registered: refused; registered: served (both seats in use now)
    let ed_client = client(3, Some(fixture("ed25519.pem")));
    let err = ed_client.checkout(&url, "modeler", "1.0").unwrap_err();
    assert_eq!(refused_with(&err), "unknown_client_key", "{err}");
    assert!(upload(fixture("ed25519.spki.der")).is_success());
    let ed_seat = ed_client.checkout(&url, "modeler", "1.0").unwrap();
    // the count still holds for signed clients
    let err = client(4, Some(fixture("rsa2048.pem")))
        .checkout(&url, "modeler", "1.0")
        .unwrap_err();
    assert_eq!(refused_with(&err), "all_in_use", "{err}");
    // returning is signed too: the seat is free again for another signed client
    drop(seat);
    let again = client(5, Some(fixture("rsa2048.pem")))
        .checkout(&url, "modeler", "1.0")
        .unwrap();
    drop(again);
    drop(ed_seat);
}

#[test]
fn keys_that_are_not_rsa_2048_or_ed25519_are_refused_at_configuration() {
    let err = ClientConfig::new(
        "cad",
        &tessera_testkit::runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            tessera_testkit::producer_key(dir.path()).await
        }),
    )
    .unwrap()
    .signing_key(b"not a key")
    .unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidClientKey { .. }),
        "{err:?}"
    );
    // a public key is not a private one
    let err = RequestSigner::from_pkcs8(&fixture("rsa2048.spki.der")).unwrap_err();
    assert!(
        err.to_string().contains("not an RSA-2048 or Ed25519"),
        "{err}"
    );
}
