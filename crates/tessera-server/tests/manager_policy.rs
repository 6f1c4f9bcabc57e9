//! The manager's seat-policy views in a real headless Chromium: Reservations (add an entry to a
//! new group and then to the same group, its status, the page size, export, delete, a bad import
//! refused naming the entry, the good one imported back), Named license pools (the seed's model
//! refused while reservations exist, naming them; uploaded as a file once they are deleted; the
//! pools shown; a model with a syntax error refused with its line and column while the model in
//! force stays; deleted) and Named users (assigned with trimming shown, a bad list refused with
//! the text kept, unassigned). A read-only user is denied a change and a forged form changes
//! nothing.

#[path = "support/browser.rs"]
mod browser;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

const POOLED: &str = "eb-feature-android-eval";

/// The seed's model file (the pools API tests' model, as a file to upload).
fn seed_model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-model.txt")
}

/// Calls the admin API with the admin token.
async fn api(
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

async fn get(url: &str, token: &str, path: &str) -> Value {
    let (st, v) = api(url, token, reqwest::Method::GET, path, None).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    v
}

/// Chooses the option `value` of the select matching `css`.
async fn select(b: &browser::Browser, css: &str, value: &str) {
    b.client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// The value of the field matching `css` (what the form holds).
async fn value_of(b: &browser::Browser, css: &str) -> Option<String> {
    b.client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
}

/// Ticks the checkbox of each group in the delete form and submits it.
async fn delete_groups(b: &browser::Browser, groups: &[&str]) {
    for g in groups {
        b.toggle(&format!("#delete-form input[value='{g}']")).await;
    }
    b.click("#delete-form button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_named_pools_are_administered_in_a_browser() {
    let Some(b) = browser::browser("manager policy").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(
            json!([{"name": "modeler", "version": "2.0"}, {"name": POOLED, "version": "2.0"}]),
        )
        .floating(14)
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 14)])
        .await;
    let (url, token) = (server.url.clone(), data.token.clone());
    b.log_in(
        &url,
        "admin",
        &data.password,
        Some("a much better password"),
    )
    .await;

    // nothing reserved yet
    b.click_text("Reservations").await;
    assert_eq!(b.path().await, "/reservations");
    assert!(b.text().await.contains("Total number of records: 0"));

    // an entry to a new group: satisfied, with its device ID and ID type
    b.fill("#group", "CAD lab").await;
    b.fill("#device", "0050569a3b01").await;
    b.fill("#feature", "modeler").await;
    b.fill("#version", "2.0").await;
    b.fill("#count", "2").await;
    b.click("#add-form button[type=submit]").await;
    assert!(
        b.text_of(".flash")
            .await
            .contains("Added the group CAD lab"),
        "{}",
        b.text().await
    );
    let row = b.text_of("#reservations-table tbody tr:nth-child(1)").await;
    assert!(
        row.starts_with("satisfied 0050569a3b01 ethernet CAD lab modeler 2.0 2"),
        "{row}"
    );

    // another entry to the same group, for a user, more than the server holds: not satisfied,
    // and why, in words beside the red dot
    b.fill("#group", "CAD lab").await;
    b.fill("#device", "ann").await;
    select(&b, "#id_type", "user").await;
    b.fill("#feature", POOLED).await;
    b.fill("#version", "1.0").await;
    b.fill("#count", "20").await;
    b.click("#add-form button[type=submit]").await;
    assert!(
        b.text_of(".flash").await.contains("to the group CAD lab"),
        "{}",
        b.text().await
    );
    let row = b.text_of("#reservations-table tbody tr:nth-child(2)").await;
    assert!(row.starts_with("not satisfied"), "{row}");
    assert!(row.contains("ann user CAD lab"), "{row}");
    assert!(b
        .client
        .find(fantoccini::Locator::Css(
            "#reservations-table tbody tr:nth-child(2) .dot.bad"
        ))
        .await
        .is_ok());
    assert!(b
        .client
        .find(fantoccini::Locator::Css(
            "#reservations-table tbody tr:nth-child(1) .dot.ok"
        ))
        .await
        .is_ok());
    let v = get(&url, &token, "/api/v1/admin/reservations").await;
    assert_eq!(v["groups"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["groups"][0]["reservations"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    assert_eq!(v["entries"][1]["satisfied"], false);
    let reason = v["entries"][1]["reason"].as_str().unwrap().to_string();
    assert!(
        row.contains(&reason),
        "the reason in text: {row} / {reason}"
    );

    // a bad entry: refused with the API's words naming it; what was typed stays; nothing changed
    b.fill("#group", "CAD lab").await;
    b.fill("#device", "bob").await;
    select(&b, "#id_type", "user").await;
    b.fill("#feature", "modeler").await;
    b.fill("#version", "2").await;
    b.fill("#count", "1").await;
    b.click("#add-form button[type=submit]").await;
    let err = b.text_of("#add-error").await;
    assert!(
        err.contains("reservation.entries[0].version") && err.contains("a.b"),
        "{err}"
    );
    let kept = value_of(&b, "#device").await;
    assert_eq!(kept.as_deref(), Some("bob"));
    assert_eq!(get(&url, &token, "/api/v1/admin/reservations").await, v);

    // a second group
    b.fill("#group", "Sales").await;
    b.fill("#device", "bob").await;
    b.fill("#version", "1.0").await;
    b.click("#add-form button[type=submit]").await;
    assert!(b.text().await.contains("Total number of records: 3"));
    b.screenshot("reservations").await;

    // paged with the page size setting
    b.click_text("Settings").await;
    b.fill("#page_size", "2").await;
    b.click("#settings-form button[type=submit]").await;
    b.goto(&format!("{url}/reservations")).await;
    assert_eq!(
        b.text_of("#reservations-table tbody").await.lines().count(),
        2
    );
    b.click("nav.pager a[aria-label='Page 2']").await;
    let rows = b.text_of("#reservations-table tbody").await;
    assert!(
        rows.lines().count() == 1 && rows.contains("Sales"),
        "{rows}"
    );
    b.goto(&format!("{url}/settings")).await;
    b.fill("#page_size", "50").await;
    b.click("#settings-form button[type=submit]").await;

    // export: the API's document, as an attachment
    b.goto(&format!("{url}/reservations")).await;
    let (status, disposition, exported) = b.fetch("/reservations/export").await;
    assert_eq!(status, 200);
    assert!(
        disposition.contains("attachment") && disposition.contains("reservations.json"),
        "{disposition}"
    );
    let exported_doc: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(
        exported_doc,
        get(&url, &token, "/api/v1/admin/reservations/export").await
    );
    let good = dir.path().join("reservations.json");
    std::fs::write(&good, &exported).unwrap();

    // delete both groups (ticked, one submit)
    delete_groups(&b, &["CAD lab", "Sales"]).await;
    assert!(b
        .text_of(".flash")
        .await
        .contains("Deleted the reservation group(s) CAD lab, Sales"));
    assert_eq!(
        get(&url, &token, "/api/v1/admin/reservations").await["groups"],
        json!([])
    );

    // a bad file is refused whole, naming the entry; nothing changed
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, exported.replacen("\"2.0\"", "\"2.x\"", 1)).unwrap();
    b.attach("#import-file", &bad).await;
    b.click("#import-form button[type=submit]").await;
    let err = b.text_of("#import-error").await;
    assert!(
        err.contains("groups[0].reservations[0].entries[0].version"),
        "{err}"
    );
    b.screenshot("reservations-import-refused").await;
    assert_eq!(
        get(&url, &token, "/api/v1/admin/reservations").await["groups"],
        json!([])
    );

    // the good file comes back whole
    b.attach("#import-file", &good).await;
    b.click("#import-form button[type=submit]").await;
    assert!(
        b.text_of(".flash").await.contains("Imported: 2 group(s)"),
        "{}",
        b.text().await
    );
    assert_eq!(
        get(&url, &token, "/api/v1/admin/reservations/export").await,
        exported_doc
    );

    // the seed's model is refused while reservations exist: the message names them
    b.click_text("Named license pools").await;
    assert!(b.text_of("#pools-state").await.contains("No model"));
    b.click_text("Model").await;
    b.attach("#model-file", &seed_model()).await;
    b.click("#model-form button[type=submit]").await;
    let err = b.text_of("#model-error").await;
    assert!(
        err.contains("\"CAD lab\", \"Sales\"") && err.contains("Delete those groups"),
        "{err}"
    );
    assert!(b
        .text_of("#current-model")
        .await
        .contains("No model is kept"));
    assert!(get(&url, &token, "/api/v1/admin/pools").await["model"].is_null());

    // delete the groups, upload it again: the pools
    b.click_text("Reservations").await;
    delete_groups(&b, &["CAD lab", "Sales"]).await;
    b.click_text("Named license pools").await;
    b.click_text("Model").await;
    b.attach("#model-file", &seed_model()).await;
    b.click("#model-form button[type=submit]").await;
    assert_eq!(b.path().await, "/pools");
    let flash = b.text_of(".flash").await;
    assert!(
        flash.contains("Uploaded the model exampleModelDefinition")
            && flash.contains("no rules of access"),
        "{flash}"
    );
    let text = b.text().await;
    assert!(text.contains("in force"), "{text}");
    for pool in [
        "0800 - PUNE",
        "2200 - NECKARSULM",
        "4600 - BRUSSELS",
        "1400 - KASSEL",
        "Default pool",
    ] {
        assert!(text.contains(pool), "{pool}: {text}");
    }
    let pune = b.text_of("section.pool .pool-table tbody tr").await;
    assert!(
        pune.starts_with(&format!("{POOLED} 2.0")) && pune.contains(" 5 0 available"),
        "{pune}"
    );
    b.screenshot("pools").await;
    let v = get(&url, &token, "/api/v1/admin/pools").await;
    assert_eq!(
        (v["model"].as_str(), v["in_force"].as_bool()),
        (Some("exampleModelDefinition"), Some(true))
    );

    // the model tab shows it; a model with a syntax error is refused with its line and column,
    // the text typed stays, and the model in force stays
    b.click_text("Model").await;
    assert!(b
        .text_of("#current-model")
        .await
        .contains("partition \"0800 - PUNE\""));
    b.client
        .execute(
            "document.getElementById('current-h').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("pools-model").await;
    let typo = "model \"typo\" {\n  partitons {\n  }\n}";
    b.fill("#model-text", typo).await;
    b.click("#model-form button[type=submit]").await;
    let err = b.text_of("#model-error").await;
    assert!(
        err.contains("line 2, column 3") && err.contains("partitons"),
        "{err}"
    );
    assert!(b
        .text_of("#model-error-at")
        .await
        .contains("2 |   partitons {"));
    let kept = value_of(&b, "#model-text").await;
    assert_eq!(kept.as_deref(), Some(typo));
    assert!(b
        .text_of("#current-model")
        .await
        .contains("exampleModelDefinition"));
    b.screenshot("pools-model-refused").await;
    assert_eq!(get(&url, &token, "/api/v1/admin/pools").await, v);

    // reservations are refused while the model is in force, in the API's words
    b.click_text("Reservations").await;
    b.fill("#group", "Lab").await;
    b.fill("#device", "0050569a3b01").await;
    b.fill("#feature", "modeler").await;
    b.fill("#version", "2.0").await;
    b.click("#add-form button[type=submit]").await;
    let err = b.text_of("#add-error").await;
    assert!(err.contains("Delete the model first"), "{err}");
    assert_eq!(
        get(&url, &token, "/api/v1/admin/reservations").await["groups"],
        json!([])
    );

    // delete the model: one default pool again
    b.click_text("Named license pools").await;
    b.click_text("Model").await;
    b.click("#delete-model-form button[type=submit]").await;
    assert!(b.text_of(".flash").await.contains("Deleted the model"));
    assert!(b
        .text_of("#current-model")
        .await
        .contains("No model is kept"));
    assert!(get(&url, &token, "/api/v1/admin/pools").await["model"].is_null());

    // a phone: the pages keep to the window's width (tables scroll within their box)
    b.size(360, 800).await;
    for page in ["/reservations", "/pools", "/pools/model", "/named-users"] {
        b.goto(&format!("{url}{page}")).await;
        let width = b
            .client
            .execute("return document.documentElement.scrollWidth", vec![])
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        assert!(width <= 380.0, "{page} is {width} px wide at 360");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_users_are_assigned_and_a_read_only_user_changes_nothing() {
    let Some(b) = browser::browser("manager named users").await else {
        return;
    };
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
    b.log_in(
        &url,
        "admin",
        &data.password,
        Some("a much better password"),
    )
    .await;

    // nobody assigned yet
    b.click_text("Named users").await;
    let card = b.text_of("section.named").await;
    assert!(
        card.contains("modeler") && card.contains("nobody"),
        "{card}"
    );

    // three users for two seats: the third is trimmed, and the page says so
    b.fill("#users-1", "ann, bob\ncy").await;
    b.click("section.named form.stack button[type=submit]")
        .await;
    let flash = b.text_of(".flash").await;
    assert!(
        flash.contains("Assigned 2 user(s) to modeler")
            && flash.contains("Trimmed (beyond its 2 seats, not served): cy"),
        "{flash}"
    );
    assert!(b.text_of("section.named .users").await.contains("ann, bob"));
    assert!(b.text_of("section.named .trimmed").await.contains("cy"));
    b.screenshot("named-users").await;
    let v = get(&url, &token, "/api/v1/admin/named-users").await;
    assert_eq!(v["features"][0]["users"], json!(["ann", "bob"]));
    assert_eq!(v["features"][0]["trimmed"], json!(["cy"]));

    // a user named twice: refused in the API's words, the text kept, nothing changed
    b.fill("#users-1", "ann\nann").await;
    b.click("section.named form.stack button[type=submit]")
        .await;
    let err = b.text_of("#users-error-1").await;
    assert!(err.contains("ann"), "{err}");
    let kept = value_of(&b, "#users-1").await;
    assert_eq!(kept.as_deref(), Some("ann\nann"));
    assert_eq!(get(&url, &token, "/api/v1/admin/named-users").await, v);

    // a forged form (a wrong CSRF token) with the admin's session changes nothing
    let cookie = b.client.get_named_cookie("tessera_session").await.unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}/named-users/modeler/clear"))
        .header("cookie", format!("tessera_session={}", cookie.value()))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(get(&url, &token, "/api/v1/admin/named-users").await, v);

    // a read-only user sees the view; a change is denied and changes nothing
    let (st, created) = api(
        &url,
        &token,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        Some(json!({"name": "viewer", "role": "read_only"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let first = created["password"].as_str().unwrap().to_string();
    b.click_text("Log out").await;
    b.log_in(&url, "viewer", &first, Some("viewer password 1"))
        .await;
    b.goto(&format!("{url}/named-users")).await;
    assert!(b.text().await.contains("read-only"));
    b.fill("#users-1", "dee").await;
    b.click("section.named form.stack button[type=submit]")
        .await;
    let text = b.text().await;
    assert!(text.contains("Access denied"), "{text}");
    b.screenshot("named-users-denied").await;
    assert_eq!(get(&url, &token, "/api/v1/admin/named-users").await, v);

    // the admin unassigns them all
    b.goto(&format!("{url}/named-users")).await;
    b.click_text("Log out").await;
    b.log_in(&url, "admin", "a much better password", None)
        .await;
    b.click_text("Named users").await;
    b.click_text("Unassign all").await;
    assert!(b
        .text_of(".flash")
        .await
        .contains("Removed every user of modeler"));
    let v = get(&url, &token, "/api/v1/admin/named-users").await;
    assert_eq!(v["features"][0]["users"], json!([]));
    b.close().await;
}
