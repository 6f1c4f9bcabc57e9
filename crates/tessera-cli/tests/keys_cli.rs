//! Client keys, producer keys, releasing stuck seats and rotating the start-up token from the
//! command line against a running license server: a bad key refused with its reason, a good one
//! registered, listed (table and JSON) and deleted; the last producer key kept; a stuck seat
//! released for another device; the rotated token working and the old one not.

use std::path::PathBuf;

use serde_json::{json, Value};

mod support;
use support::{backoffice_with_floating_line, Serve, Site};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tessera-server/tests/fixtures/client-keys")
        .join(name)
        .display()
        .to_string()
}

fn request(url: &str, device: &str, id: &str) -> Value {
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(
            &json!({"operation": "request", "device_id": device, "request_id": id,
            "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler"}]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    support::claims(&answer)
}

#[test]
fn keys_seats_and_the_token_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = backoffice_with_floating_line(d, 1);
    let _bo = Serve(bo);
    let site = Site::start(d);
    let token = site.token.clone();
    let url = site.url.clone();
    let call = |args: &[&str], token: &str| site.run_as(args, token);
    let ok = |args: &[&str], token: &str| site.ok_as(args, token);

    // client keys: RSA-1024 refused with its reason; RSA-2048 registered, listed, deleted
    let o = call(
        &["server", "client-keys", "add", &fixture("rsa1024.spki.der")],
        &token,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1024 bits") && err.contains("invalid_client_key"),
        "{err}"
    );
    let out = ok(
        &["server", "client-keys", "add", &fixture("rsa2048.spki.der")],
        &token,
    );
    assert!(
        out.contains("registered") && out.contains("rsa-2048"),
        "{out}"
    );
    let listed: Value =
        serde_json::from_str(&ok(&["server", "client-keys", "list", "--json"], &token)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let table = ok(&["server", "client-keys", "list"], &token);
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");
    ok(&["server", "client-keys", "delete", &id], &token);
    assert!(ok(&["server", "client-keys", "list"], &token).contains("no client keys"));

    // the only producer key stays
    let keys: Value =
        serde_json::from_str(&ok(&["server", "producer-keys", "list", "--json"], &token)).unwrap();
    let kid = keys[0]["kid"].as_str().unwrap();
    let o = call(&["server", "producer-keys", "remove", kid], &token);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only key trusted"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // a stuck seat: released by device, taken by another
    site.activate(&bo_url, &key, 1);
    assert_eq!(
        request(&url, "string=stuck", "s1")["grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(request(&url, "string=other", "o1")["grants"], json!([]));
    let held: Value = serde_json::from_str(&ok(&["server", "leases", "--json"], &token)).unwrap();
    assert_eq!(held[0]["device"], "string=stuck", "{held}");
    assert!(ok(&["server", "leases"], &token).contains("string=stuck"));
    let out = ok(&["server", "release", "--device", "string=stuck"], &token);
    assert!(
        out.contains("released 1 lease") && out.contains("modeler"),
        "{out}"
    );
    assert_eq!(
        request(&url, "string=other", "o2")["grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let o = call(&["server", "release"], &token);
    assert!(!o.status.success(), "--lease or --device is required");

    // the start-up token rotated: the new one works, the old one does not
    let made: Value =
        serde_json::from_str(&ok(&["server", "token", "rotate", "--json"], &token)).unwrap();
    let new = made["token"].as_str().unwrap();
    assert!(new.starts_with("tss_") && new != token);
    assert!(!call(&["server", "client-keys", "list"], &token)
        .status
        .success());
    ok(&["server", "client-keys", "list"], new);
}
