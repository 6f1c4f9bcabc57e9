//! Named users through the real server: a back-office `named_user` line arrives as a named-user
//! feature, which serves nobody until users are assigned, then only them (others refused
//! `not_authorised`, naming the feature); users beyond the seats are trimmed and listed; the
//! assignment survives a restart.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

async fn ask(url: &str, user: &str, id: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(&json!({"operation": "request", "device_id": format!("string=pc-{user}"), "user": user,
            "request_id": id, "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler"}]}))
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
        .unwrap()
        .to_string();
    use base64::Engine as _;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap()
}

async fn admin(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_user_seats_serve_only_the_users_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .line(json!({"product": "cad", "model": "named_user", "count": 2}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 2)])
        .await;
    let (url, token) = (server.url.clone(), data.token.clone());

    // nobody assigned: nobody served, told why
    let c = ask(&url, "ann", "a0").await;
    assert_eq!(c["grants"], json!([]));
    assert_eq!(c["denials"][0]["code"], "not_authorised");
    assert_eq!(c["denials"][0]["feature"], "modeler");
    let (st, view) = admin(
        &url,
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/named-users",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["features"][0]["feature"], "modeler");
    assert_eq!(view["features"][0]["seats"], 2);

    // three users for two seats: the last is trimmed
    let (st, view) = admin(
        &url,
        &token,
        reqwest::Method::PUT,
        "/api/v1/admin/named-users/modeler",
        Some(json!({"users": ["ann", "bob", "cy"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["features"][0]["users"], json!(["ann", "bob"]));
    assert_eq!(view["features"][0]["trimmed"], json!(["cy"]));
    assert_eq!(
        ask(&url, "ann", "a1").await["grants"][0]["feature"],
        "modeler"
    );
    assert_eq!(
        ask(&url, "cy", "c1").await["denials"][0]["code"],
        "not_authorised"
    );
    assert_eq!(
        ask(&url, "dan", "d1").await["denials"][0]["code"],
        "not_authorised"
    );

    // bad input: a user twice, a feature that is not for named users; nothing changes
    let (st, p) = admin(
        &url,
        &token,
        reqwest::Method::PUT,
        "/api/v1/admin/named-users/modeler",
        Some(json!({"users": ["ann", "ann"]})),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_named_users")
        )
    );
    let (st, p) = admin(
        &url,
        &token,
        reqwest::Method::PUT,
        "/api/v1/admin/named-users/render",
        Some(json!({"users": ["ann"]})),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_named_user"))
    );

    // kept across a restart
    let server = data.restart(server).await;
    let url = server.url.clone();
    assert_eq!(
        ask(&url, "bob", "b1").await["grants"][0]["feature"],
        "modeler"
    );
    assert_eq!(
        ask(&url, "dan", "d2").await["denials"][0]["code"],
        "not_authorised"
    );

    // cleared: nobody again
    let (st, view) = admin(
        &url,
        &token,
        reqwest::Method::DELETE,
        "/api/v1/admin/named-users/modeler",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["features"][0]["users"], json!([]));
    assert_eq!(
        ask(&url, "ann", "a2").await["denials"][0]["code"],
        "not_authorised"
    );
}
