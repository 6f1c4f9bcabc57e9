//! The License Server Manager's administration views in a real headless Chromium: Properties
//! (a change applied at once and one at the next start, a producer's lock shown read-only, a
//! refused change that writes nothing), Online server updates (two activation IDs at once, then
//! Refresh), Offline server updates (request files downloaded, a response uploaded, the
//! confirmation), Client key operations (a DER key uploaded, listed, deleted), Users and roles
//! (a read-only user with a first password shown once), API tokens (created once, revoked; the start-up token replaced) and
//! the Audit log showing all of it; a read-only user is denied a change and a forged form
//! changes nothing.

#[path = "support/browser.rs"]
mod browser;

use std::path::PathBuf;

use serde_json::{json, Value};
use tessera_core::Clock as _;
use tessera_testkit::{BackOfficeKit, ServerKit};

/// The five newest audit log entries.
async fn recent_audit(url: &str, token: &str) -> Vec<Value> {
    let (st, log) = api(
        url,
        token,
        reqwest::Method::GET,
        "/api/v1/admin/audit?limit=5",
    )
    .await;
    assert_eq!(st, 200, "{log}");
    log["entries"].as_array().cloned().unwrap_or_default()
}

/// The admin API with a token: the status code and the JSON answer (null when none).
async fn api(url: &str, token: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Submits the form `css` from the page with `fetch` (as the browser would, with its cookie)
/// and answers the status, the content type, the content disposition and the body: how a test
/// reads what a download button gives.
async fn fetch_form(b: &browser::Browser, css: &str) -> (u16, String, String, String) {
    let script = r#"
        const done = arguments[arguments.length - 1];
        const f = document.querySelector(arguments[0]).closest("form");
        fetch(f.action, {method: "POST", body: new URLSearchParams(new FormData(f))})
          .then(r => r.text().then(t => done([r.status, r.headers.get("content-type") || "",
                r.headers.get("content-disposition") || "", t])))
          .catch(e => done([0, "", "", String(e)]));
    "#;
    let v = b
        .client
        .execute_async(script, vec![json!(css)])
        .await
        .unwrap();
    (
        v[0].as_u64().unwrap() as u16,
        v[1].as_str().unwrap().to_string(),
        v[2].as_str().unwrap().to_string(),
        v[3].as_str().unwrap().to_string(),
    )
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/client-keys")
        .join(name)
}

/// The browser's session cookie (`name=value`), to forge a form with it.
async fn session_cookie(b: &browser::Browser) -> String {
    b.client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "tessera_session")
        .map(|c| format!("{}={}", c.name(), c.value()))
        .expect("a session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sets_up_and_updates_the_server_in_a_browser() {
    let Some(b) = browser::browser("manager ops").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // two lines to activate online at once (the first locks a setting), a third for offline
    let policy = json!({"grace_days": 30, "renewal_days": 30, "offline_max_days": 30,
        "offline_refresh_days": 14, "offline_max_active": 3,
        "server_locks": {"max_leases_per_device": 5}});
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(json!([{"name": "modeler", "version": "2.0"}]))
        .line(json!({"product": "cad", "model": "floating", "count": 3, "policy": policy}))
        .line(json!({"product": "cad", "model": "floating", "count": 2}))
        .line(json!({"product": "cad", "model": "floating", "count": 4}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .lease_seconds(300)
        .init()
        .await;
    let server = data.start().await;
    let (url, token) = (server.url.clone(), data.token.clone());
    let toml_path = data.data.join("server.toml");
    b.log_in(
        &url,
        "admin",
        &data.password,
        Some("the admin's own password"),
    )
    .await;

    // ---- Online server updates: two activation IDs at once (the second row added with +)
    b.click_text("Online server updates").await;
    assert_eq!(b.path().await, "/updates/online");
    let rows = b
        .client
        .find_all(fantoccini::Locator::Css("[data-row]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the script leaves one row and a + button");
    b.screenshot("online-activations-empty").await;
    b.fill("[data-row]:nth-of-type(1) input[name=key]", &bo.keys[0])
        .await;
    b.fill("[data-row]:nth-of-type(1) input[name=count]", "3")
        .await;
    b.toggle("button.add").await;
    b.fill("[data-row]:nth-of-type(2) input[name=key]", &bo.keys[1])
        .await;
    b.fill("[data-row]:nth-of-type(2) input[name=count]", "2")
        .await;
    // never activated online: the back office's address is asked
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#backoffice"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default(),
        ""
    );
    b.fill("#backoffice", &bo.url).await;
    b.screenshot("online-activations").await;
    b.click("#activate-form button[type=submit]").await;
    let text = b.text().await;
    assert!(text.contains("Activated 2 activation ID(s)"), "{text}");
    assert!(b.text_of("#served-table").await.contains("modeler"));
    // the features served now came from both activations
    let (st, status) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/status").await;
    assert_eq!(st, 200);
    assert_eq!(status["activated"], json!(true));
    let ids: std::collections::BTreeSet<String> = status["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["activation_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "{status}");
    assert_eq!(status["backoffice_url"], json!(bo.url));
    // the address is known now: the form offers it
    b.goto(&format!("{url}/updates/online")).await;
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#backoffice"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default(),
        bo.url
    );
    // a wrong activation ID: the back office's refusal is shown, with the rows as typed
    b.fill("[data-row]:nth-of-type(1) input[name=key]", "NOT-A-KEY")
        .await;
    b.click("#activate-form button[type=submit]").await;
    let refused = b.text_of(".error").await;
    assert!(refused.contains("The activation failed"), "{refused}");
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("[data-row] input[name=key]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default(),
        "NOT-A-KEY"
    );

    // ---- Update licenses: Refresh syncs now
    b.goto(&format!("{url}/updates/online")).await;
    b.click_text("Update licenses").await;
    assert!(b.text().await.contains(&bo.url));
    b.click_text("Refresh").await;
    let synced = b.text_of(".flash").await;
    assert!(synced.contains("Synced with the back office"), "{synced}");
    b.screenshot("online-update-licenses").await;

    // ---- Properties: one applied at once, one at the next start; the producer's lock
    b.click_text("Properties").await;
    let locked = b.text_of("#p-max_leases_per_device").await;
    assert!(
        locked.contains("locked by the producer") && locked.contains("locked at 5"),
        "{locked}"
    );
    assert!(b
        .client
        .find(fantoccini::Locator::Css("#f-max_leases_per_device"))
        .await
        .is_err());
    let hostid = b.text_of("#p-hostid").await;
    assert!(hostid.contains("tessera server rebind"), "{hostid}");
    b.fill("#f-lease_seconds", "600").await;
    b.fill("#f-session_idle_minutes", "45").await;
    b.click("#properties-form > button[type=submit]").await;
    let saved = b.text_of(".flash").await;
    assert!(
        saved.contains("In force at once: lease_seconds")
            && saved.contains(
                "Restart the license server for these to take effect: session_idle_minutes"
            ),
        "{saved}"
    );
    assert!(b
        .text_of("#p-session_idle_minutes")
        .await
        .contains("restart pending"));
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.contains("lease_seconds = 600") && toml.contains("session_idle_minutes = 45"),
        "{toml}"
    );
    let (_, props) = api(
        &url,
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/properties",
    )
    .await;
    let prop = |key: &str| {
        props["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["properties"].as_array().unwrap())
            .find(|p| p["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(prop("lease_seconds")["in_force"], json!(600));
    assert_eq!(prop("session_idle_minutes")["restart_pending"], json!(true));
    b.screenshot("properties").await;
    b.client
        .execute(
            "document.getElementById('g-license_generation').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("properties-locked").await;
    // refused whole: a listen address that is not one, with a good value beside it
    b.fill("#f-listen", "nonsense").await;
    b.fill("#f-lease_seconds", "900").await;
    b.click("#properties-form > button[type=submit]").await;
    let error = b.text_of("#properties-error").await;
    assert!(
        error.contains("Nothing was saved") && error.contains("not an address to listen on"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);
    b.screenshot("properties-refused").await;

    // ---- Offline server updates: an update request and an activation request downloaded
    b.click_text("Offline server updates").await;
    b.screenshot("offline-updates").await;
    let (st, kind, disposition, update) = fetch_form(&b, "#download-update").await;
    assert_eq!(st, 200, "{update}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(
        disposition.contains("attachment") && disposition.contains("tessera-update-request.txt"),
        "{disposition}"
    );
    let claims = tessera_core::offline::RequestClaims::verify(&update, bo.clock.now()).unwrap();
    assert!(matches!(
        claims.body,
        tessera_core::offline::RequestBody::Renewal { .. }
    ));
    b.fill("#offline-key", &bo.keys[2]).await;
    b.fill("#offline-count", "4").await;
    let (st, _, disposition, request) = fetch_form(&b, "#download-request").await;
    assert_eq!(st, 200, "{request}");
    assert!(disposition.contains("tessera-activation-request.txt"));
    let asked = tessera_core::offline::RequestClaims::verify(&request, bo.clock.now()).unwrap();
    assert!(
        format!("{:?}", asked.body).contains(&bo.keys[2]),
        "{:?}",
        asked.body
    );
    // the back office answers the update request; the response file is uploaded
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/offline", bo.url))
        .body(update.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = response.text().await.unwrap();
    let file = dir.path().join("response.txt");
    std::fs::write(&file, &response).unwrap();
    b.attach("#response", &file).await;
    b.click("#apply-form button[type=submit]").await;
    let applied = b.text_of(".flash").await;
    assert!(applied.contains("The response was applied"), "{applied}");
    // a file that is not a response: refused with the API's words, nothing changed
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "not a response").unwrap();
    b.attach("#response", &junk).await;
    b.click("#apply-form button[type=submit]").await;
    assert!(!b.text_of(".error").await.is_empty());
    // the confirmation, offered now that a response was applied
    let (st, kind, _, confirmation) = fetch_form(&b, "#download-confirmation").await;
    assert_eq!(st, 200, "{confirmation}");
    assert!(kind.starts_with("text/plain"));
    let ack = reqwest::Client::new()
        .post(format!("{}/api/v1/offline", bo.url))
        .body(confirmation)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ack.starts_with("confirmed: license server"), "{ack}");

    // ---- Client key operations: a DER key uploaded, listed, deleted; a wrong file refused
    b.click_text("Client key operations").await;
    b.attach("#key", &fixture("rsa2048.spki.der")).await;
    b.click("#key-form button[type=submit]").await;
    let added = b.text_of(".flash").await;
    assert!(added.contains("is registered"), "{added}");
    let (_, keys) = api(
        &url,
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/client-keys",
    )
    .await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let key_id = keys[0]["id"].as_str().unwrap().to_string();
    assert!(b.text_of("#client-keys-table").await.contains(&key_id));
    b.screenshot("client-keys").await;
    b.attach("#key", &fixture("rsa1024.spki.der")).await;
    b.click("#key-form button[type=submit]").await;
    assert!(b.text_of(".error").await.contains("1024 bits"));
    b.click(&format!(
        "form[action='/client-keys/{key_id}/delete'] button"
    ))
    .await;
    assert!(b.text_of(".flash").await.contains("is deleted"));
    let (_, keys) = api(
        &url,
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/client-keys",
    )
    .await;
    assert_eq!(keys, json!([]));

    // ---- Users and roles: a read-only user, the first password shown once
    b.click_text("Users and roles").await;
    b.fill("#new-name", "reader").await;
    b.click("#new-user-form button[type=submit]").await;
    let first_password = b.text_of("#first-password").await;
    assert!(first_password.len() >= 12, "{first_password}");
    b.screenshot("users").await;
    b.goto(&format!("{url}/users")).await;
    assert!(!b.text().await.contains(&first_password), "shown once only");
    let (_, users) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/users").await;
    let reader = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "reader")
        .unwrap();
    assert_eq!(reader["role"], json!("read_only"));
    assert_eq!(reader["must_change_password"], json!(true));
    // another user: made an administrator, then deleted
    b.fill("#new-name", "helper").await;
    b.click("#new-user-form button[type=submit]").await;
    b.goto(&format!("{url}/users")).await;
    let row = "tr[data-user=helper]";
    b.client
        .find(fantoccini::Locator::Css(&format!("{row} select")))
        .await
        .unwrap()
        .select_by_value("admin")
        .await
        .unwrap();
    b.click(&format!("{row} form[action$='/role'] button"))
        .await;
    assert!(b
        .text_of(".flash")
        .await
        .contains("helper has the role administrator"));
    b.click(&format!("{row} form[action$='/delete'] button"))
        .await;
    assert!(b.text_of(".flash").await.contains("helper is deleted"));
    let (_, users) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/users").await;
    assert!(!users.to_string().contains("helper"), "{users}");

    // ---- API tokens: created (shown once, and it works), revoked (and it stops)
    b.click_text("API tokens").await;
    b.fill("#token-name", "ci").await;
    b.fill("#token-days", "30").await;
    b.click("#new-token-form button[type=submit]").await;
    let new_token = b.text_of("#new-token").await;
    let (st, _) = api(
        &url,
        &new_token,
        reqwest::Method::GET,
        "/api/v1/admin/status",
    )
    .await;
    assert_eq!(st, 200);
    b.screenshot("tokens").await;
    b.goto(&format!("{url}/tokens")).await;
    assert!(!b.text().await.contains(&new_token), "shown once only");
    let (_, list) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/tokens").await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.click(&format!("tr[data-token='{id}'] button")).await;
    assert!(b.text_of(".flash").await.contains("is revoked"));
    let (st, _) = api(
        &url,
        &new_token,
        reqwest::Method::GET,
        "/api/v1/admin/status",
    )
    .await;
    assert_eq!(st, 401);

    // ---- Audit log: every one of these actions, newest first
    b.click_text("Audit log").await;
    let log = b.text_of("#audit-table").await;
    for action in [
        "activate",
        "activate_failed",
        "sync",
        "properties_set",
        "properties_set_failed",
        "offline_update_request",
        "offline_request",
        "offline_apply",
        "offline_confirmation",
        "client_key_add",
        "client_key_delete",
        "user_created",
        "role_changed",
        "user_deleted",
        "token_created",
        "token_revoked",
    ] {
        assert!(
            log.lines()
                .any(|l| l.split_whitespace().any(|w| w == action)),
            "{action}: {log}"
        );
    }
    // newest first: the revoked token's refusal, then its revocation
    let first_row = b.text_of("#audit-table tbody tr:nth-child(1)").await;
    assert!(
        first_row.contains("credential_refused") && first_row.contains("revoked"),
        "{first_row}"
    );
    let second_row = b.text_of("#audit-table tbody tr:nth-child(2)").await;
    assert!(second_row.contains("token_revoked"), "{second_row}");
    b.screenshot("audit").await;
    // paged by the page size
    b.goto(&format!("{url}/settings")).await;
    b.fill("#page_size", "5").await;
    b.click("#settings-form button[type=submit]").await;
    b.goto(&format!("{url}/audit")).await;
    assert_eq!(b.text_of("#audit-table tbody").await.lines().count(), 5);
    b.click_text("Older entries").await;
    assert!(b.path().await.starts_with("/audit?before="));
    let older = b.text_of("#audit-table tbody").await;
    assert!(
        !older.contains("token_revoked") && older.contains("user_created"),
        "{older}"
    );

    // ---- A forged form (the session's cookie, not its CSRF token) changes nothing
    let cookie = session_cookie(&b).await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}/properties"))
        .header("cookie", cookie)
        .form(&[
            ("csrf", "forged"),
            ("v.lease_seconds", "1200"),
            ("o.lease_seconds", "600"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);

    // ---- Without the script, the activation form offers five rows at once
    let html = reqwest::Client::new()
        .get(format!("{url}/updates/online"))
        .header("cookie", session_cookie(&b).await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("data-row>").count(), 5, "{html}");

    // ---- A phone: the views keep to the screen's width, their tables scroll in their box
    b.size(360, 800).await;
    for view in [
        "/properties",
        "/updates/online",
        "/updates/offline",
        "/users",
        "/audit",
    ] {
        b.goto(&format!("{url}{view}")).await;
        let width = b
            .client
            .execute("return document.documentElement.scrollWidth", vec![])
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        if width > 380.0 {
            let wide = b
                .client
                .execute(
                    "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 380).slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join('; ')",
                    vec![],
                )
                .await
                .unwrap();
            b.screenshot("too-wide").await;
            panic!("{view} is {width} px wide at 360: {wide}");
        }
        assert!(width <= 380.0, "{view} is {width} px wide at 360");
    }
    b.screenshot("online-phone").await;
    b.size(1280, 900).await;

    // ---- The start-up token replaced: the new one shown once and working, the old one refused
    b.click_text("API tokens").await;
    b.click("#rotate-form button[type=submit]").await;
    let shown = b.text().await;
    assert!(shown.contains("The start-up token was replaced"), "{shown}");
    let rotated = b.text_of("#new-token").await;
    assert_ne!(rotated, token);
    b.screenshot("token-rotated").await;
    let (st, _) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/status").await;
    assert_eq!(st, 401, "the old start-up token stopped working");
    let token = rotated;
    let (st, _) = api(&url, &token, reqwest::Method::GET, "/api/v1/admin/status").await;
    assert_eq!(st, 200);
    b.goto(&format!("{url}/tokens")).await;
    assert!(!b.text().await.contains(&token), "shown once only");
    let log = recent_audit(&url, &token).await;
    assert!(log.iter().any(|e| e["action"] == "token_rotate"), "{log:?}");

    // ---- The read-only user: reads the properties, is denied a change, nothing changes
    b.click_text("Log out").await;
    b.log_in(
        &url,
        "reader",
        &first_password,
        Some("the reader's own password"),
    )
    .await;
    b.goto(&format!("{url}/properties")).await;
    assert!(b.text().await.contains("read-only user"));
    b.fill("#f-lease_seconds", "1200").await;
    b.click("#properties-form > button[type=submit]").await;
    let denied = b.text().await;
    assert!(denied.contains("Access denied"), "{denied}");
    b.screenshot("access-denied").await;
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);
    let (_, props) = api(
        &url,
        &token,
        reqwest::Method::GET,
        "/api/v1/admin/properties",
    )
    .await;
    let lease = props["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["properties"].as_array().unwrap())
        .find(|p| p["key"] == "lease_seconds")
        .unwrap()["in_force"]
        .clone();
    assert_eq!(lease, json!(600));
    let log = recent_audit(&url, &token).await;
    assert!(
        log.iter()
            .any(|e| e["action"] == "access_denied" && e["actor"] == "reader"),
        "{log:?}"
    );
    // nor may they see the users, nor is the start-up token theirs to replace
    b.goto(&format!("{url}/users")).await;
    assert!(b.text().await.contains("Access denied"));
    b.goto(&format!("{url}/tokens")).await;
    assert!(!b.text().await.contains("Replace the start-up token"));
    b.close().await;
}
