//! Drives the example application (`examples/cad.rs`) as a user would: a trial on first run, an
//! online activation, an unlock code typed in, and a refusal with its reason. `cargo test` builds the
//! examples next to the test binaries.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use tessera_backoffice::daemon;
use tessera_host::SystemClock;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (url, token) = rt.block_on(async {
        let report = daemon::init(data.path(), None, None, &SystemClock)
            .await
            .unwrap();
        let (bo, config) = daemon::open(data.path(), None, Arc::new(SystemClock))
            .await
            .unwrap();
        let state = daemon::state(bo, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(daemon::serve_on(listener, state, std::future::pending()));
        (url, report.admin_token)
    });
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
    let producer = data.path().join("keys/producer.pub");
    let unlock = data.path().join("keys/unlock.pub");
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
    let srv_url = rt.block_on(async {
        tessera_server::daemon::init(srv_dir.path(), &pem, None, Some("ethernet=0050569a3b01"))
            .await
            .unwrap();
        let mut cfg = std::fs::read_to_string(srv_dir.path().join("server.toml")).unwrap();
        cfg.push_str(&format!(
            "anchor_dir = \"{}\"\n",
            srv_dir.path().join("anchors").display()
        ));
        std::fs::write(srv_dir.path().join("server.toml"), cfg).unwrap();
        let server = tessera_server::daemon::open(srv_dir.path(), Arc::new(SystemClock))
            .await
            .unwrap();
        server
            .activate(&url, &[(floating_key.clone(), 1)])
            .await
            .unwrap();
        let state = tessera_server::http::state(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(tessera_server::http::serve_on(
            listener,
            state,
            std::future::pending(),
        ));
        srv_url
    });
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
