//! The seat policy in a cluster: two server processes over one PostgreSQL. Reservations stored
//! through one member are in force at the other; strangers asking both at once never take a
//! reserved seat, and the holder gets its seats at either. Then the reservations give way to a
//! named-pool model uploaded at the other member, and pool counts are global: strangers and
//! members asking both at once get exactly what the default pool and the pool hold.
//! Skipped without `TESSERA_TEST_POSTGRES_URL` (fails under `CI=true`).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_core::Clock;
use tessera_testkit::{BackOfficeKit, ServerKit, TestServer};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

async fn admin(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some((ctype, b)) = body {
        r = r.header("content-type", ctype).body(b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

/// Whether `device` got one seat of `feature`.
async fn take(url: String, device: String, feature: &'static str) -> bool {
    // devices named lab-* say they are the lab's (the pool's rule of access is on this attribute)
    let attributes = if device.starts_with("string=lab-") {
        json!({"team": "lab"})
    } else {
        json!({})
    };
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(
            &json!({"operation": "request", "device_id": device, "request_id": "r",
            "nonce": format!("nonce-{device}-0123456789"), "attributes": attributes,
            "features": [{"name": feature, "version": "1.0", "count": 1}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    let claims: Value = tessera_testkit::answer_claims(&v);
    match claims["grants"].as_array().unwrap().first() {
        Some(g) => {
            assert_eq!(g["overdraft"].as_u64().unwrap_or(0), 0);
            true
        }
        None => {
            assert_eq!(claims["denials"][0]["code"], "all_in_use", "{claims}");
            false
        }
    }
}

/// Devices `prefix-0..n` asking for one seat each, spread over both members at once; how many
/// got one.
async fn crowd(urls: &[String], prefix: &str, n: usize, feature: &'static str) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(take(
                urls[i % 2].clone(),
                format!("string={prefix}-{i}"),
                feature,
            ))
        })
        .collect();
    let mut got = 0;
    for t in tasks {
        if t.await.unwrap() {
            got += 1;
        }
    }
    got
}

/// Waits until `ready` says the member at `url` serves what was stored at the other.
async fn until(url: &str, token: &str, path: &str, ready: impl Fn(&Value) -> bool) {
    for _ in 0..200 {
        let (st, v) = admin(url, token, reqwest::Method::GET, path, None).await;
        if st == StatusCode::OK && ready(&v) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url}{path}: the other member's change never arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_pools_hold_across_cluster_members() {
    let Some(base) = tessera_store::testing::postgres_test_url_or_skip(
        "reservations_and_pools_hold_across_cluster_members",
    )
    .unwrap() else {
        return;
    };
    let db = tessera_store::testing::TempPostgres::create(&base)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(
            json!([{"name": "modeler", "version": "2.0"}, {"name": "render", "version": "2.0"}]),
        )
        .floating(4)
        .start()
        .await;
    let hour = tessera_host::SystemClock.now().hour();
    let a = ServerKit::new(dir.path(), &bo.producer_pem())
        .name("node-a")
        .database(Some(db.url()))
        .hostid("ethernet=0050569a3b07")
        .config(&format!(
            "cluster = true\nsync_hour_utc = {}\n",
            (hour + 12) % 24
        ))
        .init()
        .await;
    let token = a.token.clone();
    let first = TestServer::start(&a.data).await;
    let (st, v) = admin(
        &first.url,
        &token,
        reqwest::Method::POST,
        "/api/v1/admin/activate",
        Some((
            "application/json",
            json!({"backoffice": bo.url, "activations": [{"key": bo.keys[0], "count": 4}]})
                .to_string(),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let b_dir = dir.path().join("node-b");
    copy_dir(&a.data, &b_dir);
    let cfg = std::fs::read_to_string(b_dir.join("server.toml"))
        .unwrap()
        .replace("anchors-node-a", "anchors-node-b");
    std::fs::write(b_dir.join("server.toml"), cfg).unwrap();
    let _ = std::fs::remove_file(b_dir.join("server.lock"));
    let second = TestServer::start(&b_dir).await;
    let urls = vec![first.url.clone(), second.url.clone()];

    // 3 of 4 modeler seats reserved for string=lab-0, stored through the first member
    let (st, v) = admin(
        &urls[0],
        &token,
        reqwest::Method::POST,
        "/api/v1/admin/reservations",
        Some((
            "application/json",
            json!({"groups": [{"name": "Lab", "reservations": [{"holder": "string=lab-0",
                "entries": [{"feature": "modeler", "version": "1.0", "count": 3}]}]}]})
            .to_string(),
        )),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until(&urls[1], &token, "/api/v1/admin/reservations", |v| {
        v["entries"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    // twelve strangers at both members at once: the one shared seat, and no reserved one
    // (overdraft is 0: `take` checks no grant went beyond the count)
    assert_eq!(crowd(&urls, "stranger", 12, "modeler").await, 1);
    // the holder gets its three at the second member
    let (st, v) = admin(
        &urls[1],
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/reservations",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/capability", urls[1]))
        .json(&json!({"operation": "request", "device_id": "string=lab-0", "request_id": "r",
            "nonce": "nonce-lab-0-0123456789", "features": [{"name": "modeler", "version": "1.0", "count": 3}]}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert!(v["response"].is_string(), "{v}");
    assert_eq!(crowd(&urls, "late", 4, "modeler").await, 0, "all four held");

    // the reservations deleted at the second member; a pool model uploaded there too; the
    // first member serves it
    let (st, v) = admin(
        &urls[1],
        &token,
        reqwest::Method::DELETE,
        "/api/v1/admin/reservations",
        None,
    )
    .await;
    assert!(st.is_success(), "{v}");
    let model = r#"model "m" { partitions { partition "lab" { "render" 2.0 2 } } rules { attribute "team" = "lab" => "lab" } }"#;
    let (st, v) = admin(
        &urls[1],
        &token,
        reqwest::Method::POST,
        "/api/v1/admin/pools/model",
        Some(("text/plain", model.to_string())),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until(&urls[0], &token, "/api/v1/admin/pools", |v| {
        v.to_string().contains("\"lab\"")
    })
    .await;
    // strangers at both members: the default pool's two render seats, globally
    assert_eq!(crowd(&urls, "outsider", 10, "render").await, 2);
    // the lab's members at both: the pool's two, globally (each member counts the other's grants
    // in the pool they drew on, carried in the lease log with the lease: the attribute is not)
    assert_eq!(crowd(&urls, "lab", 10, "render").await, 2);
    assert_eq!(crowd(&urls, "lab-late", 4, "render").await, 0);
    for url in &urls {
        let (_, v) = admin(
            url,
            &token,
            reqwest::Method::GET,
            "/api/v1/admin/pools",
            None,
        )
        .await;
        let lab = v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pool"] == "lab")
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(lab["used"], 2, "{url}: {v}");
    }
}
