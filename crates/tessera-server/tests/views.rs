//! The administrator's views through the real server: seats taken by real capability requests
//! (with an alias and a device type), then the features summary (count, used, available,
//! overdraft), every feature record, a feature's page with the devices holding it, the devices
//! and one device; searched, sorted and paged; a query that does not fit refused with 400
//! `invalid_query`; read by a read-only user; the alias and device type still there after a
//! restart.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

/// A request for `count` seats of each of `features` as `device` (with its user, alias and type).
fn ask(
    device: &str,
    user: Option<&str>,
    alias: Option<&str>,
    device_type: &str,
    id: &str,
    features: &[(&str, u32)],
) -> Value {
    let features: Vec<Value> = features
        .iter()
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    json!({"operation": "request", "device_id": device, "user": user, "alias": alias,
        "device_type": device_type, "request_id": id, "nonce": format!("nonce-{id}-0123456789"),
        "features": features})
}

// Sends a capability request; the answer's claims (read, not verified: other tests verify).
use tessera_testkit::capability_claims as capability;

async fn get(url: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(url: &str, token: &str, path: &str) -> Value {
    let (status, v) = get(url, token, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

fn devices(v: &Value) -> Vec<&str> {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_show_features_and_devices_and_keep_what_clients_said() {
    story(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_on_postgres() {
    let Some(base) =
        tessera_store::testing::postgres_test_url_or_skip("the_views_on_postgres").unwrap()
    else {
        return;
    };
    let db = tessera_store::testing::TempPostgres::create(&base)
        .await
        .unwrap();
    story(Some(db.url())).await;
}

/// Seats taken, every view read, searched, sorted and paged, bad queries refused, a read-only
/// user reading, a restart: on SQLite, or on the PostgreSQL database at `database`.
async fn story(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    // two lines of product cad (modeler 2.0, render 1.0): three seats with one overdraft seat,
    // and two seats; each line's features are records of their own
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(
            json!([{"name": "modeler", "version": "2.0"}, {"name": "render", "version": "1.0"}]),
        )
        .line(json!({"product": "cad", "model": "floating", "count": 3, "overdraft": 1}))
        .line(json!({"product": "cad", "model": "floating", "count": 2}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .database(database)
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(
            &bo.url,
            &[KeyCount::new(&bo.keys[0], 3), KeyCount::new(&bo.keys[1], 2)],
        )
        .await;
    let url = server.url.clone();
    let token = data.token.clone();

    // five modeler seats in all: taken by three devices, then a sixth beyond the count
    let takes = [
        ask(
            "string=ws-1",
            Some("ann"),
            Some("Ann's workstation"),
            "physical",
            "r1",
            &[("modeler", 2)],
        ),
        ask(
            "string=ws-2",
            Some("bob"),
            Some("build-vm"),
            "virtual",
            "r2",
            &[("modeler", 2), ("render", 1)],
        ),
        ask(
            "ethernet=0050569a0003",
            None,
            None,
            "unknown",
            "r3",
            &[("modeler", 1)],
        ),
        ask(
            "ethernet=0050569a0004",
            Some("carol"),
            None,
            "container",
            "r4",
            &[("modeler", 1)],
        ),
    ];
    let mut overdraft = Vec::new();
    for t in &takes {
        let c = capability(&url, t).await;
        assert!(c["denials"].as_array().unwrap().is_empty(), "{c}");
        overdraft.push(c["grants"][0]["overdraft"].as_u64().unwrap());
    }
    assert_eq!(overdraft, vec![0, 0, 0, 1]);

    // the summary: each feature and version with its two records summed
    let v = ok(&url, &token, "/api/v1/admin/features").await;
    assert_eq!(
        (
            v["total"].as_u64(),
            v["page"].as_u64(),
            v["page_size"].as_u64()
        ),
        (Some(2), Some(1), Some(50))
    );
    let m = &v["features"][0];
    assert_eq!(
        (m["name"].as_str(), m["version"].as_str()),
        (Some("modeler"), Some("2.0")),
        "{v}"
    );
    assert_eq!(m["records"], 2, "{m}");
    assert_eq!(m["count"], 5, "{m}");
    assert_eq!(m["used"], 6, "{m}");
    assert_eq!(m["available"], 0, "{m}");
    assert_eq!(m["overdraft_used"], 1, "{m}");
    assert_eq!(
        (m["first_expiry"].as_str(), m["last_expiry"].as_str()),
        (Some("permanent"), Some("permanent"))
    );
    assert_eq!(
        (m["metered"].as_bool(), m["counted"].as_bool()),
        (Some(false), Some(true))
    );
    let r = &v["features"][1];
    assert_eq!(r["name"], "render");
    assert_eq!(
        (
            r["count"].as_u64(),
            r["used"].as_u64(),
            r["available"].as_u64(),
            r["overdraft_used"].as_u64()
        ),
        (Some(5), Some(1), Some(4), Some(0)),
        "{r}"
    );
    // sorted by what is used, most first; searched by name
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/features?sort=available&order=desc",
    )
    .await;
    assert_eq!(v["features"][0]["name"], "render");
    let v = ok(&url, &token, "/api/v1/admin/features?q=REN&match=prefix").await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["features"][0]["name"], "render");
    let v = ok(&url, &token, "/api/v1/admin/features?q=ren").await;
    assert_eq!(v["total"], 0, "exact by default: {v}");

    // the details: every record, with where it came from
    let v = ok(&url, &token, "/api/v1/admin/feature-records").await;
    assert_eq!(v["total"], 4, "{v}");
    let records = v["records"].as_array().unwrap();
    let modeler: Vec<&Value> = records.iter().filter(|r| r["name"] == "modeler").collect();
    assert_eq!(modeler.len(), 2);
    assert_eq!(
        modeler
            .iter()
            .map(|r| r["used"].as_u64().unwrap())
            .sum::<u64>(),
        6
    );
    let mut counts: Vec<u64> = modeler
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![2, 3]);
    for r in records {
        assert_eq!(r["product"], "cad", "{r}");
        assert!(
            r["activation_id"].as_str().is_some_and(|a| !a.is_empty()),
            "{r}"
        );
        assert!(
            r["entitlement_id"].as_str().is_some_and(|a| !a.is_empty()),
            "{r}"
        );
        assert_eq!(r["expiry"], "permanent");
    }
    assert_ne!(modeler[0]["activation_id"], modeler[1]["activation_id"]);
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/feature-records?sort=count&page_size=1",
    )
    .await;
    assert_eq!(
        (v["total"].as_u64(), v["records"].as_array().unwrap().len()),
        (Some(4), 1)
    );
    assert_eq!(v["records"][0]["count"], 2);

    // a feature's page: its records, and the devices holding it with what they said
    let v = ok(&url, &token, "/api/v1/admin/features/modeler").await;
    assert_eq!(v["summary"][0]["used"], 6);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(
        devices(&v),
        vec![
            "ethernet=0050569a0003",
            "ethernet=0050569a0004",
            "string=ws-1",
            "string=ws-2"
        ]
    );
    let ws1 = &v["devices"][2];
    assert_eq!(ws1["alias"], "Ann's workstation", "{v}");
    assert_eq!(ws1["device_type"], "physical");
    assert_eq!(ws1["id_type"], "string");
    assert_eq!(ws1["user"], "ann");
    assert_eq!(
        (ws1["count"].as_u64(), ws1["overdraft"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(ws1["borrowed"], false);
    assert!(ws1["expires"].as_str().unwrap().ends_with('Z'), "{ws1}");
    let eth4 = &v["devices"][1];
    assert_eq!(
        (eth4["overdraft"].as_u64(), eth4["device_type"].as_str()),
        (Some(1), Some("container"))
    );
    assert_eq!(eth4["alias"], Value::Null);
    let v = ok(&url, &token, "/api/v1/admin/features/render").await;
    assert_eq!(devices(&v), vec!["string=ws-2"]);
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/features/modeler?q=build-vm&sort=count",
    )
    .await;
    assert_eq!(devices(&v), vec!["string=ws-2"]);
    let (status, p) = get(&url, &token, "/api/v1/admin/features/painter").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    assert_eq!(p["code"], "no_such_feature");

    // the devices: each with its id type, type, alias, user and features
    let v = ok(&url, &token, "/api/v1/admin/devices").await;
    assert_eq!(v["total"], 4);
    assert_eq!(
        devices(&v),
        vec![
            "ethernet=0050569a0003",
            "ethernet=0050569a0004",
            "string=ws-1",
            "string=ws-2"
        ]
    );
    let ws2 = &v["devices"][3];
    assert_eq!(ws2["id_type"], "string");
    assert_eq!(ws2["device_type"], "virtual");
    assert_eq!(ws2["alias"], "build-vm");
    assert_eq!(ws2["user"], "bob");
    assert_eq!(ws2["features"], json!(["modeler", "render"]));
    assert_eq!(ws2["leases"], 2);
    assert_eq!(v["devices"][0]["id_type"], "ethernet");
    assert_eq!(v["devices"][0]["user"], Value::Null);
    // paged
    let v = ok(&url, &token, "/api/v1/admin/devices?page_size=3").await;
    assert_eq!(
        (v["total"].as_u64(), v["devices"].as_array().unwrap().len()),
        (Some(4), 3)
    );
    let v = ok(&url, &token, "/api/v1/admin/devices?page_size=3&page=2").await;
    assert_eq!(devices(&v), vec!["string=ws-2"]);
    let v = ok(&url, &token, "/api/v1/admin/devices?page=3&page_size=3").await;
    assert_eq!(
        (v["total"].as_u64(), v["devices"].as_array().unwrap().len()),
        (Some(4), 0)
    );
    // sorted
    let v = ok(&url, &token, "/api/v1/admin/devices?sort=alias&order=desc").await;
    assert_eq!(&devices(&v)[..2], &["string=ws-2", "string=ws-1"]);
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/devices?sort=features&order=desc&page_size=1",
    )
    .await;
    assert_eq!(devices(&v), vec!["string=ws-2"]);
    let v = ok(&url, &token, "/api/v1/admin/devices?order=desc").await;
    assert_eq!(devices(&v)[0], "string=ws-2");
    // searched: by the id, the part after KIND=, the alias or the user; exact or prefix
    for (query, want) in [
        ("q=ws&match=prefix", vec!["string=ws-1", "string=ws-2"]),
        ("q=string%3Dws-1", vec!["string=ws-1"]),
        ("q=ws-1", vec!["string=ws-1"]),
        ("q=BUILD-VM", vec!["string=ws-2"]),
        ("q=carol", vec!["ethernet=0050569a0004"]),
        ("q=ws", vec![]),
    ] {
        let v = ok(&url, &token, &format!("/api/v1/admin/devices?{query}")).await;
        assert_eq!(devices(&v), want, "{query}");
        assert_eq!(v["total"].as_u64(), Some(want.len() as u64), "{query}");
    }

    // one device: what it holds, with the lease's and the record's expiry
    let v = ok(&url, &token, "/api/v1/admin/devices/string=ws-2").await;
    assert_eq!(v["device_id"], "string=ws-2");
    assert_eq!(v["holders"][0]["alias"], "build-vm");
    let features = v["features"].as_array().unwrap();
    assert_eq!(
        features
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["modeler", "render"]
    );
    assert_eq!(features[0]["count"], 2);
    assert_eq!(features[0]["expiry"], "permanent");
    assert_eq!(features[1]["user"], "bob");
    assert_eq!(
        v["expires"],
        features[0]["lease_expires"]
            .as_str()
            .unwrap()
            .max(features[1]["lease_expires"].as_str().unwrap())
    );
    // any spelling of a host id
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/devices/ETHERNET=00:50:56:9A:00:03",
    )
    .await;
    assert_eq!(v["device_id"], "ethernet=0050569a0003");
    let (status, p) = get(&url, &token, "/api/v1/admin/devices/string=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    assert_eq!(p["code"], "no_such_device");

    // queries that do not fit: 400 with what to change
    for (path, names) in [
        ("/api/v1/admin/devices?page_size=0", "page_size"),
        ("/api/v1/admin/devices?page_size=100000", "page_size"),
        ("/api/v1/admin/features?page_size=99999999999", "page_size"),
        ("/api/v1/admin/devices?page=0", "page"),
        ("/api/v1/admin/devices?sort=colour", "device"),
        (
            "/api/v1/admin/feature-records?sort=colour",
            "entitlement_id",
        ),
        ("/api/v1/admin/features/modeler?sort=used", "expires"),
        ("/api/v1/admin/features?colour=red", "colour"),
        ("/api/v1/admin/features?match=fuzzy&q=x", "match"),
        ("/api/v1/admin/devices?q=", "q"),
    ] {
        let (status, p) = get(&url, &token, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {p}");
        assert_eq!(p["code"], "invalid_query", "{path}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(names), "{path}: {p}");
    }

    // no credentials: no views
    let (status, _) = get(&url, "tss_not-a-token", "/api/v1/admin/devices").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // a read-only user reads every view
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/v1/admin/users"))
        .bearer_auth(&token)
        .json(&json!({"name": "viewer", "role": "read_only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{url}/api/v1/admin/tokens"))
        .bearer_auth(&token)
        .json(&json!({"user": "viewer", "name": "views"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let viewer = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/api/v1/admin/features",
        "/api/v1/admin/feature-records",
        "/api/v1/admin/features/modeler",
        "/api/v1/admin/devices",
        "/api/v1/admin/devices/string=ws-1",
    ] {
        ok(&url, &viewer, path).await;
    }

    // a borrow: held offline to its end, which is when everything the device holds has run out
    let c = capability(
        &url,
        &json!({"operation": "borrow", "device_id": "ethernet=0050569a0003", "request_id": "b1",
            "nonce": "nonce-b1-0123456789", "features": [{"name": "render", "count": 1}],
            "borrow_days": 1}),
    )
    .await;
    assert_eq!(c["grants"].as_array().unwrap().len(), 1, "{c}");
    assert_eq!(c["grants"][0]["borrowed"], true, "{c}");
    let v = ok(&url, &token, "/api/v1/admin/features/render").await;
    assert_eq!(devices(&v), vec!["ethernet=0050569a0003", "string=ws-2"]);
    assert_eq!(v["devices"][0]["borrowed"], true);
    assert_eq!(v["devices"][1]["borrowed"], false);
    let v = ok(&url, &token, "/api/v1/admin/devices/ethernet=0050569a0003").await;
    let borrowed = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "render")
        .unwrap();
    assert_eq!(borrowed["borrowed"], true);
    assert_eq!(v["expires"], borrowed["lease_expires"], "{v}");
    let v = ok(
        &url,
        &token,
        "/api/v1/admin/devices?sort=expires&order=desc&page_size=1",
    )
    .await;
    assert_eq!(devices(&v), vec!["ethernet=0050569a0003"]);

    // what the clients said is kept with the leases: the same after a restart
    let server = data.restart(server).await;
    let url = server.url.clone();
    let v = ok(&url, &token, "/api/v1/admin/devices/string=ws-1").await;
    assert_eq!(v["holders"][0]["alias"], "Ann's workstation");
    assert_eq!(v["holders"][0]["device_type"], "physical");
    assert_eq!(v["holders"][0]["user"], "ann");
    let v = ok(&url, &token, "/api/v1/admin/devices?q=build-vm").await;
    assert_eq!(v["devices"][0]["device_type"], "virtual");
    let v = ok(&url, &token, "/api/v1/admin/features").await;
    assert_eq!(
        (
            v["features"][0]["used"].as_u64(),
            v["features"][0]["overdraft_used"].as_u64()
        ),
        (Some(6), Some(1))
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_are_in_the_openapi_document() {
    let doc = serde_json::to_value(tessera_server::http::openapi()).unwrap();
    for path in [
        "/api/v1/admin/features",
        "/api/v1/admin/feature-records",
        "/api/v1/admin/features/{name}",
        "/api/v1/admin/devices",
        "/api/v1/admin/devices/{id}",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    let params: Vec<&str> = doc["paths"]["/api/v1/admin/devices"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        vec!["q", "match", "sort", "order", "page", "page_size"]
    );
}
