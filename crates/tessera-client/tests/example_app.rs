//! Drives the example application (`examples/cad.rs`) as a user would: a trial on first run, an
//! online activation, an unlock code typed in, and a refusal with its reason. `cargo test` builds the
//! examples next to the test binaries.

use std::path::PathBuf;
use std::process::Command;

use tessera_testkit::{BackOfficeKit, KeyCount, ServerKit};

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/example_app-… → target/debug/examples/cad
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("cad")
}

#[test]
fn example_application_runs_trial_activation_and_unlock() {
    let app = example();
    assert!(
        app.exists(),
        "{} was not built (cargo test builds examples)",
        app.display()
    );
    let rt = tessera_testkit::runtime();
    let bo = rt.block_on(BackOfficeKit::new().bare().start());
    let (url, token) = (bo.url.clone(), bo.admin_token.clone());
    let http = reqwest::blocking::Client::new();
    let admin = |path: &str, body: serde_json::Value| -> serde_json::Value {
        http.post(format!("{url}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    admin(
        "/api/v1/products",
        serde_json::json!({"id": "cad", "features": [{"name": "modeler"}, {"name": "render"}, {"name": "export"}, {"name": "simulate"}], "basic_features": ["modeler"]}),
    );
    let c = admin("/api/v1/customers", serde_json::json!({"name": "ACME"}));
    let e = admin(
        "/api/v1/entitlements",
        serde_json::json!({"customer_id": c["id"], "lines": [
        {"product": "cad", "model": "node_locked", "count": 1, "features": ["export"]},
        {"product": "cad", "model": "node_locked", "count": 1, "features": ["render"]},
        {"product": "cad", "model": "floating", "count": 1, "features": ["simulate"]}]}),
    );
    let floating_key = e["lines"][2]["key"].as_str().unwrap().to_string();
    let export_key = e["lines"][0]["key"].as_str().unwrap().to_string();
    let render_key = e["lines"][1]["key"].as_str().unwrap().to_string();

    let state = tempfile::tempdir().unwrap();
    let producer = bo.dir.join("keys/producer.pub");
    let unlock = bo.dir.join("keys/unlock.pub");
    let run = |args: &[&str]| {
        let o = Command::new(&app)
            .args([
                "--producer-key",
                producer.to_str().unwrap(),
                "--unlock-key",
                unlock.to_str().unwrap(),
                "--backoffice",
                &url,
                "--state",
                state.path().to_str().unwrap(),
            ])
            .args(args)
            .env_remove("TESSERA_LICENSE")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    // first run: a 60-day trial of everything
    let (code, out) = run(&["run", "modeler", "render", "export"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("render: trial, 60 days left"), "{out}");
    // activation online: export is licensed, with the grace period counting
    let (code, out) = run(&["activate", &export_key]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = run(&["run", "export"]);
    assert!(out.contains("export: licensed, 30 days left"), "{out}");
    // an unlock code typed in (as the /activate page shows it)
    let pc = run(&["pcid"]).1.trim().to_string();
    let page: serde_json::Value = http
        .post(format!("{url}/api/v1/unlock"))
        .json(&serde_json::json!({"key": render_key, "pc_id": pc}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (code, out) = run(&["unlock", &render_key, page["code"].as_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("unlocked: render"), "{out}");
    // a license server with the floating key: a seat checked out and returned on exit, then borrowed
    let srv_dir = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(&producer).unwrap();
    let running = rt.block_on(async {
        ServerKit::new(srv_dir.path(), &pem)
            .init()
            .await
            .activate_and_start_at(
                &url,
                &[KeyCount::new(floating_key.clone(), 1)],
                "127.0.0.1:0",
            )
            .await
    });
    let srv_url = running.url.clone();
    let (code, out) = run(&["seat", &srv_url, "simulate"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("seat returned"), "{out}");
    let (code, out) = run(&["borrow", &srv_url, "simulate", "3"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = run(&["run", "simulate"]);
    assert!(
        out.contains("simulate: borrowed, only 3 days left"),
        "{out}"
    );
    let (code, out) = run(&["return", "simulate"]);
    assert_eq!(code, Some(0), "{out}");
    // the export key again on this machine is fine; a typo in it is caught before the network
    let mut typo: Vec<char> = export_key.chars().collect();
    typo[1] = if typo[1] == 'A' { 'B' } else { 'A' };
    let (code, out) = run(&["activate", &typo.iter().collect::<String>()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("typo"), "{out}");
}
