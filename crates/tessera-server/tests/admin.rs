//! The license server's admin API tried without the token and with bodies that do not fit: the
//! token is checked before the body is read (401, never a field name), every error is
//! problem+json, and the admin token can be rotated while the server runs.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

use tessera_server::daemon;
use tessera_testkit::{producer_key, ServerKit, TestServer};

/// A new server data directory in `dir` trusting a fresh producer key; its admin token.
async fn init_server(dir: &Path) -> (std::path::PathBuf, String) {
    let pem = producer_key(&dir.join("bo")).await;
    let s = ServerKit::new(dir, &pem).init().await;
    (s.data, s.token)
}

async fn start(data: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    TestServer::start(data).await.split()
}

/// POSTs `body` with `content_type` and an optional bearer token; status, content type, body.
async fn post(
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_check_the_token_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let (data, token) = init_server(dir.path()).await;
    let (url, _stop) = start(&data).await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", br#"{"colour": "red"}"#.to_vec()),
        (
            "application/json",
            br#"{"activations": [{"key": 1}]}"#.to_vec(),
        ),
        ("application/json", b"{\"backoffice\": ".to_vec()),
        ("text/plain", vec![0xff, 0xfe, 0x00, 0x80]),
        ("application/json", vec![b'x'; 200_000]),
    ];
    for path in [
        "/api/v1/admin/activate",
        "/api/v1/admin/offline-request",
        "/api/v1/admin/offline-apply",
        "/api/v1/admin/sync",
    ] {
        for (ctype, body) in &bodies {
            for t in [None, Some("tss_wrong")] {
                let (st, ct, p) = post(&format!("{url}{path}"), t, ctype, body.clone()).await;
                assert_eq!(st, StatusCode::UNAUTHORIZED, "{path} {t:?}: {p}");
                assert_eq!(ct, "application/problem+json", "{path}");
                assert_eq!(p["code"], "unauthorized");
                let detail = p["detail"].as_str().unwrap();
                for leak in [
                    "field",
                    "colour",
                    "activations",
                    "backoffice",
                    "UTF-8",
                    "JSON",
                ] {
                    assert!(!detail.contains(leak), "{path} reveals {leak}: {detail}");
                }
            }
        }
    }

    // with the token, every body error of offline-apply is a problem too
    let apply = format!("{url}/api/v1/admin/offline-apply");
    let (st, ct, p) = post(&apply, Some(&token), "text/plain", vec![0xff, 0xfe, 0x80]).await;
    assert_eq!(
        (st, ct.as_str(), p["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            "application/problem+json",
            Some("unreadable_body")
        )
    );
    let (st, ct, p) = post(&apply, Some(&token), "text/plain", vec![b'x'; 200_000]).await;
    assert_eq!(
        (st, ct.as_str(), p["code"].as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "application/problem+json",
            Some("body_too_large")
        )
    );
    let (st, ct, p) = post(
        &apply,
        Some(&token),
        "text/plain",
        b"not a response".to_vec(),
    )
    .await;
    assert_eq!(
        (st, ct.as_str(), p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "application/problem+json",
            Some("invalid_document")
        )
    );
    // and of the JSON endpoints
    let activate = format!("{url}/api/v1/admin/activate");
    let (st, ct, p) = post(
        &activate,
        Some(&token),
        "application/json",
        b"{\"backoffice\": ".to_vec(),
    )
    .await;
    assert_eq!(
        (st, ct.as_str(), p["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            "application/problem+json",
            Some("malformed_json")
        )
    );
    let (st, _, p) = post(
        &activate,
        Some(&token),
        "application/json",
        br#"{"colour": 1}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (st, _, p) = post(&activate, Some(&token), "text/plain", b"{}".to_vec()).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    // status without the token
    let resp = reqwest::get(format!("{url}/api/v1/admin/status"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

async fn status(url: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{url}/api/v1/admin/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_rotates_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (data, first) = init_server(dir.path()).await;
    let (url, _stop) = start(&data).await;
    assert_eq!(status(&url, &first).await, StatusCode::OK);
    // rotated from the data directory, while the server runs
    let second = daemon::rotate_admin_token(&data).await.unwrap();
    assert!(second.starts_with("tss_") && second != first);
    assert_eq!(status(&url, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&url, &second).await, StatusCode::OK);
    // and again: only the newest works
    let third = daemon::rotate_admin_token(&data).await.unwrap();
    assert_eq!(status(&url, &second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&url, &third).await, StatusCode::OK);
    // a directory that holds no server is refused
    let err = daemon::rotate_admin_token(&dir.path().join("nothing"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, daemon::ServerError::NotInitialised(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_answered_without_its_internals() {
    let dir = tempfile::tempdir().unwrap();
    let pem = producer_key(&dir.path().join("bo")).await;
    let srv = ServerKit::new(dir.path(), &pem).init().await;
    let token = srv.token.clone();
    // the test holds the server too, to break its store under it
    let held = Arc::new(srv.open().await);
    let (url, _stop) = TestServer::serve(held.clone()).await.split();
    assert_eq!(status(&url, &token).await, StatusCode::OK);
    // the store's pool closes under the running server: every call to it fails from now on
    held.store.close().await;
    let inside = tessera_store::ServerStateStore::server_state(
        &held.store,
        &tessera_store::InstanceId::on_site(),
    )
    .await
    .unwrap_err()
    .to_string();
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/admin/status"),
        (reqwest::Method::POST, "/api/v1/admin/sync"),
    ] {
        let resp = reqwest::Client::new()
            .request(method, format!("{url}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let code = resp.status();
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        let text = resp.text().await.unwrap();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}: {text}");
        assert_eq!(ctype, "application/problem+json", "{path}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], "storage_unavailable", "{path}");
        // what the store said stays in the log
        assert!(!text.contains(&inside), "{path} leaks {inside:?}: {text}");
        assert!(!text.to_lowercase().contains("pool"), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_kept_the_old_way_keeps_working_and_rotates() {
    use tessera_store::{AuthStore, MetaStore};
    let dir = tempfile::tempdir().unwrap();
    let (data, first) = init_server(dir.path()).await;
    // a data directory from before the auth store: the admin token's hash in a setting, no
    // token in the store
    let old = "tss_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    {
        let data = data.canonicalize().unwrap();
        let store = tessera_store::open(&tessera_store::sqlite_url_for_data_dir(&data))
            .await
            .unwrap();
        store
            .revoke_user_tokens(
                daemon::ADMIN_USER,
                tessera_core::time::OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        store
            .put_setting(daemon::ADMIN_TOKEN_SETTING, &daemon::admin_token_hash(old))
            .await
            .unwrap();
        store.close().await;
    }
    let (url, _stop) = start(&data).await;
    assert_eq!(status(&url, old).await, StatusCode::OK);
    assert_eq!(status(&url, &first).await, StatusCode::UNAUTHORIZED);
    // moved to the store: the setting is cleared, the token is the administrator's
    {
        let data = data.canonicalize().unwrap();
        let store = tessera_store::open(&tessera_store::sqlite_url_for_data_dir(&data))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_setting(daemon::ADMIN_TOKEN_SETTING)
                .await
                .unwrap()
                .as_deref(),
            Some("")
        );
        let tokens = store.list_tokens(Some(daemon::ADMIN_USER)).await.unwrap();
        assert!(tokens
            .iter()
            .any(|t| t.hash == daemon::admin_token_hash(old)
                && t.name == daemon::ADMIN_TOKEN_LABEL
                && t.revoked_at.is_none()));
        store.close().await;
    }
    // and rotates like any start-up token
    let new = daemon::rotate_admin_token(&data).await.unwrap();
    assert_eq!(status(&url, old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&url, &new).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_counted_by_route_and_status_and_capability_requests_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, token) = init_server(dir.path()).await;
    let (url, _stop) = start(&data).await;
    assert_eq!(status(&url, &token).await, StatusCode::OK);
    assert_eq!(status(&url, "tss_wrong").await, StatusCode::UNAUTHORIZED);
    // a capability request (refused: not a valid body) counts in the capability counters only
    let (code, _, _) = post(
        &format!("{url}/api/v1/capability"),
        None,
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert!(code.is_client_error(), "{code}");
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tessera_http_requests_total{method=\"GET\",route=\"/api/v1/admin/status\",status=\"200\"} 1",
        "tessera_http_requests_total{method=\"GET\",route=\"/api/v1/admin/status\",status=\"401\"} 1",
        "tessera_capability_requests_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("route=\"/api/v1/capability\""),
        "the capability route keeps its own counters: {metrics}"
    );
}
