//! The admin API's security tried through the real server on a free port: the first login must
//! change the password, a read-only user reads but is refused changes (`access_denied`), wrong
//! passwords, throttling, idle sessions, CSRF, logged-out sessions, the start-up token, users and
//! tokens, and the audit log of all of it.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_core::{Clock, ManualClock};
use tessera_host::SystemClock;
use tessera_testkit::{producer_key, ServerData, ServerKit, TestServer};

/// A request's answer: status, headers, JSON body (or null).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// How a request proves who it is.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Token(&'a str),
    /// A session cookie and, when given, its CSRF token.
    Session(&'a str, Option<&'a str>),
}

async fn call(
    url: &str,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> Answer {
    let mut r = reqwest::Client::new().request(method, format!("{url}{path}"));
    match auth {
        Auth::None => {}
        Auth::Token(t) => r = r.bearer_auth(t),
        Auth::Session(cookie, csrf) => {
            r = r.header("cookie", cookie);
            if let Some(c) = csrf {
                r = r.header("x-csrf-token", c);
            }
        }
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// A logged-in session: the cookie to send back and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    answer: Value,
}

async fn login(url: &str, user: &str, password: &str) -> Result<Session, Answer> {
    let a = call(
        url,
        Method::POST,
        "/api/v1/admin/login",
        Auth::None,
        Some(json!({"user": user, "password": password})),
    )
    .await;
    if a.status != StatusCode::OK {
        return Err(a);
    }
    let set_cookie = a.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    Ok(Session {
        cookie,
        csrf: a.body["csrf_token"].as_str().unwrap().to_string(),
        answer: a.body,
    })
}

async fn setup(
    config: &str,
    clock: Option<Arc<dyn Clock>>,
) -> (tempfile::TempDir, ServerData, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let pem = producer_key(&dir.path().join("bo")).await;
    let mut kit = ServerKit::new(dir.path(), &pem).config(config);
    if let Some(c) = clock {
        kit = kit.clock(c);
    }
    let data = kit.init().await;
    let server = data.start().await;
    (dir, data, server)
}

async fn audit_actions(url: &str, token: &str) -> Vec<(String, String, String)> {
    let a = call(
        url,
        Method::GET,
        "/api/v1/admin/audit?limit=1000",
        Auth::Token(token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(log: &[(String, String, String)], actor: &str, action: &str) -> bool {
    log.iter().any(|(a, b, _)| a == actor && b == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_login_must_change_the_password_and_roles_are_enforced() {
    let (_dir, data, server) = setup("login_attempts_per_minute = 100\n", None).await;
    let url = server.url.clone();
    let token = data.token.clone();

    // the start-up token still works as admin's
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    // a wrong password
    let wrong = login(&url, "admin", "not the password")
        .await
        .err()
        .unwrap();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers["content-type"], "application/problem+json");
    assert_eq!(wrong.body["code"], "login_failed");

    // the first login: the password printed at init, which must be changed
    let first = login(&url, "admin", &data.password).await.ok().unwrap();
    assert_eq!(first.answer["must_change_password"], true);
    assert_eq!(first.answer["role"], "admin");
    assert_eq!(first.answer["idle_timeout_seconds"], 1800);
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&first.cookie, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["code"], "password_change_required");
    // an API token cannot be had with that password either
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/login/token",
        Auth::None,
        Some(json!({"user": "admin", "password": data.password})),
    )
    .await;
    assert_eq!(a.body["code"], "password_change_required", "{}", a.body);

    // changing it needs the current password and a long enough new one
    let change = |current: &str, new: &str| json!({"user": "admin", "current_password": current, "new_password": new});
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/password",
        Auth::None,
        Some(change("wrong password!!", "a new long password")),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/password",
        Auth::None,
        Some(change(&data.password, "short")),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body["detail"].as_str().unwrap().contains("12 characters"),
        "{}",
        a.body
    );
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/password",
        Auth::None,
        Some(change(&data.password, "correct horse battery")),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    // the old session ended with the change; the old password no longer works
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&first.cookie, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(login(&url, "admin", &data.password).await.is_err());
    let admin = login(&url, "admin", "correct horse battery")
        .await
        .ok()
        .unwrap();
    assert_eq!(admin.answer["must_change_password"], false);
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&admin.cookie, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    // CSRF: a change with the cookie but without its token is refused, nothing changes
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        Auth::Session(&admin.cookie, None),
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["code"], "csrf_token_missing");
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        Auth::Session(&admin.cookie, Some("0".repeat(64).as_str())),
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(a.body["code"], "csrf_token_missing");
    let users = call(
        &url,
        Method::GET,
        "/api/v1/admin/users",
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(users.body.as_array().unwrap().len(), 1, "{}", users.body);

    // with it: a read-only user, with a password made for it
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        Auth::Session(&admin.cookie, Some(&admin.csrf)),
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["user"]["must_change_password"], true);
    let viewer_first = a.body["password"].as_str().unwrap().to_string();
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        Auth::Token(&token),
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        Auth::Token(&token),
        Some(json!({"name": "x", "role": "owner"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body["detail"].as_str().unwrap().contains("read_only"),
        "{}",
        a.body
    );
    let a = call(&url, Method::POST, "/api/v1/admin/password", Auth::None, Some(json!({"user": "viewer", "current_password": viewer_first, "new_password": "viewer password 1"}))).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);

    // the read-only user sees every view and changes nothing
    let viewer = login(&url, "viewer", "viewer password 1")
        .await
        .ok()
        .unwrap();
    assert_eq!(viewer.answer["role"], "read_only");
    let auth = Auth::Session(&viewer.cookie, Some(&viewer.csrf));
    let a = call(&url, Method::GET, "/api/v1/admin/status", auth, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = call(&url, Method::GET, "/api/v1/admin/audit", auth, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for (path, body) in [
        ("/api/v1/admin/sync", None),
        (
            "/api/v1/admin/activate",
            Some(
                json!({"backoffice": "http://127.0.0.1:9", "activations": [{"key": "K", "count": 1}]}),
            ),
        ),
        (
            "/api/v1/admin/users",
            Some(json!({"name": "sneaky", "role": "admin"})),
        ),
    ] {
        let a = call(&url, Method::POST, path, auth, body).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
        assert_eq!(a.headers["content-type"], "application/problem+json");
        assert_eq!(a.body["code"], "access_denied", "{path}");
        let detail = a.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("read_only") && detail.contains(path),
            "{detail}"
        );
    }
    // its own API token, by password: read-only too
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/login/token",
        Auth::None,
        Some(json!({"user": "viewer", "password": "viewer password 1"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let viewer_token = a.body["token"].as_str().unwrap().to_string();
    assert!(viewer_token.starts_with("tss_"));
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/sync",
        Auth::Token(&viewer_token),
        None,
    )
    .await;
    assert_eq!(a.body["code"], "access_denied");
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/tokens",
        Auth::Token(&viewer_token),
        None,
    )
    .await;
    let mine = a.body.as_array().unwrap();
    assert!(mine.iter().all(|t| t["user"] == "viewer"), "{}", a.body);
    // the administrator revokes it: it stops at once
    let id = mine[0]["id"].as_str().unwrap().to_string();
    let a = call(
        &url,
        Method::DELETE,
        &format!("/api/v1/admin/tokens/{id}"),
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["state"], "revoked");
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Token(&viewer_token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // logout: the session id is refused from then on, also when replayed
    let a = call(&url, Method::POST, "/api/v1/admin/logout", auth, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let a = call(&url, Method::GET, "/api/v1/admin/status", auth, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.body["detail"].as_str().unwrap().contains("log in again"),
        "{}",
        a.body
    );
    // a forged session id
    let forged = format!("tessera_session={}", "ab".repeat(32));
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&forged, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // roles change; the last administrator stays one and stays
    let a = call(
        &url,
        Method::PUT,
        "/api/v1/admin/users/admin/role",
        Auth::Token(&token),
        Some(json!({"role": "read_only"})),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_administrator"))
    );
    let a = call(
        &url,
        Method::DELETE,
        "/api/v1/admin/users/admin",
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(a.body["code"], "last_administrator");
    let a = call(
        &url,
        Method::PUT,
        "/api/v1/admin/users/viewer/role",
        Auth::Token(&token),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["role"], "admin");
    let a = call(
        &url,
        Method::DELETE,
        "/api/v1/admin/users/viewer",
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(login(&url, "viewer", "viewer password 1").await.is_err());

    // the audit log has all of it, newest first, in UTC
    let log = audit_actions(&url, &token).await;
    for (actor, action) in [
        ("admin", "login_failed"),
        ("admin", "login"),
        ("admin", "password_changed"),
        ("-", "credential_refused"),
        ("admin", "user_created"),
        ("viewer", "password_changed"),
        ("viewer", "access_denied"),
        ("viewer", "token_created"),
        ("admin", "token_revoked"),
        ("viewer", "logout"),
        ("admin", "role_changed"),
        ("admin", "user_deleted"),
    ] {
        assert!(
            has(&log, actor, action),
            "{actor} {action} missing from {log:#?}"
        );
    }
    // newest first: the deleted user's login, then the deletion
    assert_eq!(
        (log[0].0.as_str(), log[0].1.as_str()),
        ("viewer", "login_failed"),
        "{log:#?}"
    );
    assert_eq!(log[1].1, "user_deleted", "{log:#?}");
    let csrf: Vec<_> = log.iter().filter(|(_, _, d)| d.contains("CSRF")).collect();
    assert_eq!(csrf.len(), 2, "{log:#?}");
    let page = call(
        &url,
        Method::GET,
        "/api/v1/admin/audit?limit=2",
        Auth::Token(&token),
        None,
    )
    .await;
    let entries = page.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries[0]["at"].as_str().unwrap().ends_with('Z'),
        "{}",
        page.body
    );
    let before = page.body["next_before"].as_i64().unwrap();
    let next = call(
        &url,
        Method::GET,
        &format!("/api/v1/admin/audit?limit=2&before={before}"),
        Auth::Token(&token),
        None,
    )
    .await;
    assert!(next.body["entries"][0]["id"].as_i64().unwrap() < before);
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/audit?limit=0",
        Auth::Token(&token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let (_dir, data, server) = setup(
        "login_failures_per_hour = 3\nlogin_attempts_per_minute = 7\n",
        None,
    )
    .await;
    let url = server.url.clone();
    for _ in 0..3 {
        let a = login(&url, "admin", "wrong password here")
            .await
            .err()
            .unwrap();
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // the fourth failure within the hour is not even checked: the right password is refused too
    let a = login(&url, "admin", &data.password).await.err().unwrap();
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.body["code"], "login_throttled");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry), "{retry}");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3 an hour"),
        "{}",
        a.body
    );
    // another account is not throttled by it, until the address has used its budget
    for _ in 0..3 {
        let a = login(&url, "nobody", "wrong password here")
            .await
            .err()
            .unwrap();
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = login(&url, "someone", "wrong password here")
        .await
        .err()
        .unwrap();
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        a.body["detail"].as_str().unwrap().contains("your address"),
        "{}",
        a.body
    );
    // the start-up token is not throttled
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Token(&data.token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let log = audit_actions(&url, &data.token).await;
    assert_eq!(
        log.iter()
            .filter(|(a, b, _)| a == "admin" && b == "login_failed")
            .count(),
        3
    );
    assert!(has(&log, "admin", "login_throttled"), "{log:#?}");
    assert!(has(&log, "someone", "login_throttled"), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_after_30_idle_minutes_and_after_their_longest_life() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let (_dir, data, server) = setup("session_max_hours = 1\n", Some(clock.clone())).await;
    let url = server.url.clone();
    let change = json!({"user": "admin", "current_password": data.password, "new_password": "correct horse battery"});
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/password",
        Auth::None,
        Some(change),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let s = login(&url, "admin", "correct horse battery")
        .await
        .ok()
        .unwrap();
    let auth = Auth::Session(&s.cookie, None);
    // used every 29 minutes it lives on...
    for _ in 0..2 {
        clock.advance(time::Duration::minutes(29));
        let a = call(&url, Method::GET, "/api/v1/admin/status", auth, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // ...until its longest life (here one hour) is over
    clock.advance(time::Duration::minutes(3));
    let a = call(&url, Method::GET, "/api/v1/admin/status", auth, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // idle for 30 minutes: ended
    let s = login(&url, "admin", "correct horse battery")
        .await
        .ok()
        .unwrap();
    clock.advance(time::Duration::minutes(30));
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        a.body
    );
    // and gone: the same id again is unknown
    let a = call(
        &url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Session(&s.cookie, None),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let log = audit_actions(&url, &data.token).await;
    assert!(
        log.iter()
            .any(|(_, b, d)| b == "credential_refused" && d.contains("expired")),
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_a_password_with_the_data_directory() {
    // while the server runs, as `tessera server token rotate` does
    let (_dir, data, server) = setup("", None).await;
    tessera_server::set_user_password(&data.data, "admin", "operator chosen pw", false)
        .await
        .unwrap();
    let err = tessera_server::set_user_password(&data.data, "nobody", "operator chosen pw", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    let err = tessera_server::set_user_password(&data.data, "admin", "short", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("12"), "{err}");
    let s = login(&server.url, "admin", "operator chosen pw")
        .await
        .ok()
        .unwrap();
    assert_eq!(s.answer["must_change_password"], false);
    // the start-up token survived
    let a = call(
        &server.url,
        Method::GET,
        "/api/v1/admin/status",
        Auth::Token(&data.token),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let log = audit_actions(&server.url, &data.token).await;
    assert!(has(&log, "operator", "password_set"), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_read_by_any_user_and_changed_by_administrators_with_an_audit() {
    let (_dir, data, server) = setup("", None).await;
    let url = server.url.clone();
    let admin = Auth::Token(&data.token);
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/users",
        admin,
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = call(
        &url,
        Method::POST,
        "/api/v1/admin/tokens",
        admin,
        Some(json!({"user": "viewer", "name": "script"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let viewer = a.body["token"].as_str().unwrap().to_string();
    for path in [
        "/api/v1/admin/reservations",
        "/api/v1/admin/reservations/export",
    ] {
        let a = call(&url, Method::GET, path, Auth::Token(&viewer), None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    }
    for (method, path) in [
        (Method::POST, "/api/v1/admin/reservations"),
        (Method::DELETE, "/api/v1/admin/reservations"),
        (Method::DELETE, "/api/v1/admin/reservations/g1"),
    ] {
        let a = call(
            &url,
            method,
            path,
            Auth::Token(&viewer),
            Some(json!({"groups": []})),
        )
        .await;
        assert_eq!(a.body["code"], "access_denied", "{path}: {}", a.body);
    }
    let a = call(
        &url,
        Method::DELETE,
        "/api/v1/admin/reservations",
        admin,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let log = audit_actions(&url, &data.token).await;
    assert!(has(&log, "admin", "reservations_clear"), "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|(a, b, _)| a == "viewer" && b == "access_denied")
            .count(),
        3,
        "{log:#?}"
    );
}
