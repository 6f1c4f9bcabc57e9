//! The properties view through the real server: every setting grouped, a live change in force for
//! the next request, a change for the next start written and shown as pending, a producer-locked
//! setting shown and refused, bad changes refused whole with server.toml untouched, the audit log
//! of it all, and the changes kept across a restart.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

async fn call(
    url: &str,
    token: &str,
    method: reqwest::Method,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{url}/api/v1/admin/properties"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn prop<'a>(view: &'a Value, key: &str) -> &'a Value {
    view["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["properties"].as_array().unwrap())
        .find(|p| p["key"] == key)
        .unwrap_or_else(|| panic!("no property {key} in {view}"))
}

/// The seconds a fresh lease of `modeler` runs for, from the signed answer.
async fn lease_length(url: &str, id: &str) -> i64 {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(&json!({"operation": "request", "device_id": format!("string={id}"), "request_id": id,
            "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler", "version": "1.0", "count": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    let claims = answer["response"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let expires = claims["grants"][0]["expires"].as_i64().unwrap();
    expires - claims["iat"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_change_live_or_at_restart_and_the_producers_locks_hold() {
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(json!([{"name": "modeler", "version": "2.0"}]))
        .line(json!({"product": "cad", "model": "floating", "count": 4,
            "policy": {"grace_days": 30, "renewal_days": 30, "offline_max_days": 30,
                "offline_refresh_days": 14, "offline_max_active": 3,
                "server_locks": {"max_leases_per_device": 5}}}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .lease_seconds(300)
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 4)])
        .await;
    let (url, token) = (server.url.clone(), data.token.clone());
    let toml_path = data.data.join("server.toml");
    let toml_before = std::fs::read_to_string(&toml_path).unwrap();

    // every group, in the order a license administrator looks for them
    let (st, view) = call(&url, &token, reqwest::Method::GET, None).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    let groups: Vec<&str> = view["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "general",
            "secure_api",
            "back_office_sync",
            "license_generation",
            "server_sync",
            "capability_polling",
            "local",
            "logging"
        ]
    );
    let lease = prop(&view, "lease_seconds");
    assert_eq!(
        (
            lease["in_force"].clone(),
            lease["applies"].clone(),
            lease["editable"].clone()
        ),
        (json!(300), json!("live"), json!(true))
    );
    // the producer's lock: shown with its value and reason, not editable
    let locked = prop(&view, "max_leases_per_device");
    assert_eq!(locked["locked"], json!(5));
    assert_eq!(locked["in_force"], json!(5));
    assert_eq!(locked["editable"], json!(false));
    assert!(locked["read_only_reason"]
        .as_str()
        .unwrap()
        .contains("producer"));
    let host = prop(&view, "hostid");
    assert_eq!(host["editable"], json!(false));
    assert!(host["read_only_reason"]
        .as_str()
        .unwrap()
        .contains("rebind"));
    assert_eq!(lease_length(&url, "a").await, 300);

    // refused whole: a locked one, an unknown one, a bad value, a bad log filter, a read-only one
    for (body, status, code, says) in [
        (
            json!({"values": {"lease_seconds": 600, "max_leases_per_device": 50}}),
            409,
            "property_locked",
            "locked at 5 by the producer",
        ),
        (
            json!({"values": {"lease_seconds": 600, "lease_secs": 60}}),
            422,
            "unknown_property",
            "'lease_secs' is not a property",
        ),
        (
            json!({"values": {"lease_seconds": 2}}),
            422,
            "invalid_property",
            "lease_seconds: 2 is outside 3 to 86400",
        ),
        (
            json!({"values": {"worker_threads": 0}}),
            422,
            "invalid_property",
            "worker_threads: 0 is outside 1 to 1024",
        ),
        (
            json!({"values": {"log": "info,=["}}),
            422,
            "invalid_property",
            "is not a log filter",
        ),
        (
            json!({"values": {"hostid": "string=elsewhere"}}),
            409,
            "property_read_only",
            "rebind",
        ),
        (
            json!({"values": {"listen": null}}),
            422,
            "invalid_property",
            "may not be unset",
        ),
        (
            json!({"values": {"listen": "0.0.0.0"}}),
            422,
            "invalid_property",
            "HOST:PORT",
        ),
        (
            json!({"values": {}}),
            422,
            "invalid_property",
            "no values given",
        ),
    ] {
        let (st, p) = call(&url, &token, reqwest::Method::PUT, Some(body.clone())).await;
        assert_eq!(
            (st.as_u16(), p["code"].as_str()),
            (status, Some(code)),
            "{body}: {p}"
        );
        assert!(p["detail"].as_str().unwrap().contains(says), "{body}: {p}");
    }
    assert_eq!(
        std::fs::read_to_string(&toml_path).unwrap(),
        toml_before,
        "nothing written"
    );
    assert_eq!(lease_length(&url, "b").await, 300, "nothing applied");

    // a live change and one for the next start, together
    let (st, done) = call(
        &url,
        &token,
        reqwest::Method::PUT,
        Some(json!({"values": {"lease_seconds": 600, "log": "debug", "request_timeout_seconds": 45, "max_borrow_days": 5, "worker_threads": 3}})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let mut now: Vec<&str> = done["applied_now"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    now.sort_unstable();
    assert_eq!(now, ["lease_seconds", "log", "max_borrow_days"]);
    assert_eq!(
        done["after_restart"],
        json!(["request_timeout_seconds", "worker_threads"])
    );
    assert_eq!(
        lease_length(&url, "c").await,
        600,
        "the new lease length is in force at once"
    );
    let view = &done["properties"];
    assert_eq!(prop(view, "max_borrow_days")["in_force"], json!(5));
    let timeout = prop(view, "request_timeout_seconds");
    assert_eq!(
        (
            timeout["configured"].clone(),
            timeout["in_force"].clone(),
            timeout["restart_pending"].clone()
        ),
        (json!(45), json!(30), json!(true))
    );
    // server.toml keeps its comments and says the new values
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(text.starts_with("# Tessera license server."), "{text}");
    assert!(
        text.contains("lease_seconds = 600")
            && text.contains("request_timeout_seconds = 45")
            && text.contains("worker_threads = 3"),
        "{text}"
    );
    // the same value again changes nothing
    let (st, again) = call(
        &url,
        &token,
        reqwest::Method::PUT,
        Some(json!({"values": {"lease_seconds": 600}})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(again["unchanged"], json!(["lease_seconds"]));

    // the audit log has the change with its old and new values, and the refusals
    let audit: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/admin/audit?limit=50"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "properties_set"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("lease_seconds: 300 -> 600")),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "properties_set_failed"
                && e["detail"].as_str().unwrap().contains("locked")),
        "{audit}"
    );

    // after a restart: the new values are in force, nothing pending
    let server = data.restart(server).await;
    let (_, view) = call(&server.url, &token, reqwest::Method::GET, None).await;
    let timeout = prop(&view, "request_timeout_seconds");
    assert_eq!(
        (
            timeout["in_force"].clone(),
            timeout["restart_pending"].clone()
        ),
        (json!(45), json!(false))
    );
    assert_eq!(prop(&view, "lease_seconds")["in_force"], json!(600));
    assert_eq!(prop(&view, "worker_threads")["in_force"], json!(3));
    assert_eq!(
        prop(&view, "max_leases_per_device")["in_force"],
        json!(5),
        "the lock holds after a restart"
    );
    assert_eq!(lease_length(&server.url, "d").await, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_sees_the_properties_and_changes_none() {
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .floating(2)
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    let http = reqwest::Client::new();
    let made = http
        .post(format!("{}/api/v1/admin/users", server.url))
        .bearer_auth(&data.token)
        .json(&json!({"name": "auditor", "role": "read_only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = http
        .post(format!("{}/api/v1/admin/tokens", server.url))
        .bearer_auth(&data.token)
        .json(&json!({"user": "auditor", "name": "script"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ro = made["token"].as_str().unwrap_or_else(|| panic!("{made}"));
    let (st, view) = call(&server.url, ro, reqwest::Method::GET, None).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    let (st, p) = call(
        &server.url,
        ro,
        reqwest::Method::PUT,
        Some(json!({"values": {"lease_seconds": 900}})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{p}");
    let (_, view) = call(&server.url, &data.token, reqwest::Method::GET, None).await;
    assert_ne!(prop(&view, "lease_seconds")["in_force"], json!(900));
}
