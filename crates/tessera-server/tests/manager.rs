//! The License Server Manager (the browser UI at `/`) in a real headless Chromium: a license
//! administrator's first visit (log in with the printed password, the forced password change),
//! the features and devices views while clients hold seats (tabs, search, sorting, paging with
//! the page size setting, a feature's and a device's page), settings and about, keyboard use,
//! a phone-sized window, the session ending after 30 idle minutes, logout. Also, without a
//! browser: pages need a login, a forged form changes nothing, every page is sent with its
//! security headers.

#[path = "support/browser.rs"]
mod browser;

use std::sync::Arc;

use reqwest::redirect::Policy;
use serde_json::{json, Value};
use tessera_core::clock::ManualClock;
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

/// A capability request for `features` as `device` (with its user and alias).
fn ask(device: &str, user: &str, alias: &str, id: &str, features: &[(&str, u32)]) -> Value {
    let features: Vec<Value> = features
        .iter()
        .map(|(name, count)| json!({"name": name, "count": count}))
        .collect();
    json!({"operation": "request", "device_id": device, "user": user, "alias": alias,
        "device_type": "physical", "request_id": id, "nonce": format!("nonce-{id}-0123456789"),
        "features": features})
}

async fn take(url: &str, body: &Value) {
    tessera_testkit::capability_claims(url, body).await;
}

/// A back office with one line of modeler 2.0 and render 1.0 (3 seats each, 1 overdraft), a license
/// server activated from it on a manual clock, and four devices holding seats.
async fn served(
    dir: &std::path::Path,
) -> (
    tessera_testkit::TestBackOffice,
    tessera_testkit::ServerData,
    tessera_testkit::TestServer,
    Arc<ManualClock>,
) {
    let bo = BackOfficeKit::new()
        .in_dir(&dir.join("bo"))
        .features(
            json!([{"name": "modeler", "version": "2.0"}, {"name": "render", "version": "1.0"}]),
        )
        .line(json!({"product": "cad", "model": "floating", "count": 3, "overdraft": 1}))
        .start()
        .await;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let data = ServerKit::new(dir, &bo.producer_pem())
        .clock(clock.clone())
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 3)])
        .await;
    for (i, (device, user, alias, features)) in [
        (
            "string=ws-1",
            "ann",
            "Ann's workstation",
            vec![("modeler", 2)],
        ),
        (
            "string=ws-2",
            "bob",
            "build-vm",
            vec![("modeler", 1), ("render", 1)],
        ),
        ("string=ws-3", "cy", "lab-3", vec![("render", 1)]),
        (
            "ethernet=0050569a0004",
            "dee",
            "lab-4",
            vec![("modeler", 1)],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        take(
            &server.url,
            &ask(device, user, alias, &format!("r{i}"), &features),
        )
        .await;
    }
    (bo, data, server, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_logs_in_and_reads_features_and_devices_in_a_browser() {
    let Some(b) = browser::browser("manager features").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_bo, data, server, clock) = served(dir.path()).await;
    let url = server.url.clone();

    // the first visit: the login page, with the password printed at init
    b.goto(&format!("{url}/")).await;
    assert!(b.path().await.starts_with("/login"), "{}", b.path().await);
    b.screenshot("login").await;
    b.fill("#user", "admin").await;
    b.fill("#password", "not the password").await;
    b.click("form.stack button[type=submit]").await;
    assert!(
        b.text_of(".error")
            .await
            .contains("wrong user name or password"),
        "{}",
        b.text().await
    );
    b.fill("#user", "admin").await;
    b.fill("#password", &data.password).await;
    b.click("form.stack button[type=submit]").await;

    // the forced password change (the first of the seed's three cases: the current password)
    assert_eq!(b.path().await, "/password?first=1");
    assert!(b.text().await.contains("must be changed"));
    b.fill("#user", "admin").await;
    b.fill("#current", &data.password).await;
    b.fill("#new", "a much better password").await;
    b.fill("#confirm", "a much better passwort").await;
    b.click("form.stack button[type=submit]").await;
    assert!(b.text_of(".error").await.contains("differ"));
    b.screenshot("password-first-login").await;
    b.fill("#user", "admin").await;
    b.fill("#current", &data.password).await;
    b.fill("#new", "a much better password").await;
    b.fill("#confirm", "a much better password").await;
    b.click("form.stack button[type=submit]").await;
    assert!(b.path().await.starts_with("/login"));
    assert!(b.text().await.contains("Your password was changed"));
    b.fill("#user", "admin").await;
    b.fill("#password", "a much better password").await;
    b.click("form.stack button[type=submit]").await;

    // the features summary: seats in use by the four devices
    assert_eq!(b.path().await, "/features");
    let text = b.text().await;
    assert!(text.contains("Signed in as admin"), "{text}");
    let modeler = b.text_of("#features-table tbody tr:nth-child(1)").await;
    assert!(modeler.starts_with("modeler 2.0 3 4 0"), "{modeler}");
    assert!(modeler.contains("overdraft"), "{modeler}");
    let render = b.text_of("#features-table tbody tr:nth-child(2)").await;
    assert!(render.starts_with("render 1.0 3 2 1"), "{render}");
    b.screenshot("features-summary").await;

    // sorted by use, largest first: a click on the header, then another
    b.click_text("Total used").await;
    b.click_text("Total used").await;
    assert!(b.path().await.contains("sort=used&order=desc"));
    assert!(b
        .text_of("#features-table tbody tr:nth-child(1)")
        .await
        .starts_with("modeler"));

    // the exact-name search, and the details tab
    b.fill("#q", "render").await;
    b.click(".toolbar form button").await;
    let rows = b.text_of("#features-table tbody").await;
    assert!(
        rows.contains("render") && !rows.contains("modeler"),
        "{rows}"
    );
    b.fill("#q", "rend").await;
    b.click(".toolbar form button").await;
    assert!(b.text().await.contains("Total number of records: 0"));
    b.click_text("Details").await;
    let details = b.text_of("#features-table").await;
    assert!(
        details.contains("Activation ID") && details.contains("cad"),
        "{details}"
    );
    b.screenshot("features-details").await;

    // the column chooser hides a column (and keeps it hidden on the next visit)
    b.toggle("View columns").await;
    b.toggle("input[data-column=activation_id]").await;
    assert!(!b
        .text_of("#features-table thead")
        .await
        .contains("Activation ID"));
    b.goto(&format!("{url}/features?tab=details")).await;
    assert!(!b
        .text_of("#features-table thead")
        .await
        .contains("Activation ID"));

    // a feature's page: the devices holding it
    b.goto(&format!("{url}/features")).await;
    b.click_text("modeler").await;
    assert_eq!(b.path().await, "/features/modeler");
    let holders = b.text().await;
    for d in [
        "string=ws-1",
        "string=ws-2",
        "ethernet=0050569a0004",
        "Ann's workstation",
    ] {
        assert!(holders.contains(d), "{d}: {holders}");
    }
    assert!(!holders.contains("string=ws-3"), "{holders}");
    b.screenshot("feature").await;

    // the devices, a device's page
    b.click_text("Devices").await;
    let devices = b.text_of("#devices-table tbody").await;
    assert_eq!(devices.lines().count(), 4, "{devices}");
    b.screenshot("devices").await;
    b.click_text("string=ws-2").await;
    let device = b.text().await;
    assert!(
        device.contains("build-vm") && device.contains("bob"),
        "{device}"
    );
    assert!(
        device.contains("modeler") && device.contains("render"),
        "{device}"
    );
    b.screenshot("device").await;

    // the page size (a setting kept in the browser): one device a page, four pages
    b.click_text("Settings").await;
    b.fill("#page_size", "1").await;
    b.click("#settings-form button[type=submit]").await;
    assert!(b.text().await.contains("Saved: 1 records per page"));
    b.screenshot("settings").await;
    b.goto(&format!("{url}/devices?sort=device")).await;
    assert_eq!(b.text_of("#devices-table tbody").await.lines().count(), 1);
    assert!(b.text().await.contains("Total number of records: 4"));
    b.click("nav.pager a[aria-label='Page 4']").await;
    assert!(b
        .text_of("#devices-table tbody")
        .await
        .contains("string=ws-3"));
    b.goto(&format!("{url}/settings")).await;
    b.fill("#page_size", "50").await;
    b.click("#settings-form button[type=submit]").await;

    // about: version, system and the browser
    b.click_text("About").await;
    let about = b.text().await;
    assert!(about.contains(env!("CARGO_PKG_VERSION")), "{about}");
    assert!(about.contains("Chrome"), "{about}");
    b.screenshot("about").await;

    // keyboard: the first Tab reaches the skip link, which leads to the content
    b.goto(&format!("{url}/devices")).await;
    assert_eq!(b.tab(1).await, "Skip to content");

    // a phone: the menu goes above the content, the table scrolls within its box
    b.size(360, 800).await;
    b.goto(&format!("{url}/features")).await;
    let width: f64 = b
        .client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(width <= 380.0, "the page is {width} px wide at 360");
    b.screenshot("features-phone").await;
    b.size(1280, 900).await;

    // 31 minutes without a click: the next one goes to the login page, saying why
    clock.advance(time::Duration::minutes(31));
    b.click_text("Devices").await;
    assert!(b.path().await.starts_with("/login"), "{}", b.path().await);
    assert!(b.text().await.contains("Your session ended"));
    b.fill("#user", "admin").await;
    b.fill("#password", "a much better password").await;
    b.click("form.stack button[type=submit]").await;
    assert_eq!(
        b.path().await,
        "/devices",
        "the login returns to where the user was"
    );

    // while logged in, the password changes without the current one (the seed's second case)
    b.goto(&format!("{url}/password")).await;
    assert!(b
        .client
        .find(fantoccini::Locator::Css("#current"))
        .await
        .is_err());
    b.screenshot("password-logged-in").await;

    // logout: back to the login page; the views need a login again
    b.click_text("Log out").await;
    assert!(b.text().await.contains("You are logged out"));
    b.goto(&format!("{url}/devices")).await;
    assert!(b.path().await.starts_with("/login"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_login_and_a_forged_form_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_bo, data, server, _clock) = served(dir.path()).await;
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();

    // without a session: to the login page, returning to the page after
    for page in [
        "/",
        "/features",
        "/devices",
        "/devices/string=ws-1",
        "/features/modeler",
    ] {
        let r = http.get(format!("{url}{page}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/login?next="), "{page}: {to}");
    }
    // an unknown or ended session is told it ended
    let r = http
        .get(format!("{url}/features"))
        .header("cookie", "tessera_session=not-a-session")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("&ended=1"));

    // a login through the form: the session cookie, and the forced password change first
    let r = http
        .post(format!("{url}/login"))
        .form(&[
            ("user", "admin"),
            ("password", data.password.as_str()),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/password?first=1");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{url}/features"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/password?first=1");

    // a forged logout (no CSRF token) does not end the session
    let r = http
        .post(format!("{url}/logout"))
        .header("cookie", &session)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = http
        .get(format!("{url}/password"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session still works");

    // a password change without the current password needs a logged-in session that need not
    // change it: this one must, so it is refused and the password stays
    let r = http
        .post(format!("{url}/password"))
        .header("cookie", &session)
        .form(&[
            ("new", "another long password"),
            ("confirm", "another long password"),
            ("csrf", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .post(format!("{url}/login"))
        .form(&[("user", "admin"), ("password", data.password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the first password still logs in");

    // the login page: its security headers, no secret in it, small
    let r = http.get(format!("{url}/login")).send().await.unwrap();
    for (h, v) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(r.headers()[h], v, "{h}");
    }
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(!html.contains(&data.token) && !html.contains(&data.password));
    assert!(html.len() < 100 * 1024);
    // the assets are served from the binary
    for (asset, kind) in [
        ("/ui/manager.css", "text/css"),
        ("/ui/manager.js", "text/javascript"),
        ("/ui/logo", "image/svg+xml"),
    ] {
        let r = http.get(format!("{url}{asset}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{asset}");
    }
    // a logo (an SVG may hold script) opened on its own runs none
    let logo = http.get(format!("{url}/ui/logo")).send().await.unwrap();
    assert!(logo.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
}

/// The story, start to end, as a license administrator would do it in the browser: log
/// in → forced password change → activate two activation IDs online → features and devices while
/// clients hold seats → add a reservation → export it → the seed's model refused until the
/// reservations are removed, then loaded → a read-only user denied a change → logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_administrators_story_in_a_browser() {
    let Some(b) = browser::browser("manager story").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(json!([{"name": "modeler", "version": "2.0"}, {"name": "eb-feature-android-eval", "version": "2.0"}]))
        .line(json!({"product": "cad", "model": "floating", "count": 10}))
        .line(json!({"product": "cad", "model": "floating", "count": 10}))
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    let (url, token) = (server.url.clone(), data.token.clone());
    let api = |path: &str| {
        let (url, token, path) = (url.clone(), token.clone(), path.to_string());
        async move {
            reqwest::Client::new()
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // log in with the printed password; the forced change
    b.goto(&format!("{url}/")).await;
    b.fill("#user", "admin").await;
    b.fill("#password", &data.password).await;
    b.click("form.stack button[type=submit]").await;
    assert_eq!(b.path().await, "/password?first=1");
    b.fill("#user", "admin").await;
    b.fill("#current", &data.password).await;
    b.fill("#new", "the administrator's own").await;
    b.fill("#confirm", "the administrator's own").await;
    b.click("form.stack button[type=submit]").await;
    b.fill("#user", "admin").await;
    b.fill("#password", "the administrator's own").await;
    b.click("form.stack button[type=submit]").await;
    assert_eq!(b.path().await, "/features");
    assert!(
        b.text().await.contains("no licenses yet"),
        "the banner says so"
    );

    // activate both activation IDs online, in one go
    b.click_text("Online server updates").await;
    b.fill("[data-row]:nth-of-type(1) input[name=key]", &bo.keys[0])
        .await;
    b.fill("[data-row]:nth-of-type(1) input[name=count]", "10")
        .await;
    b.toggle("button.add").await;
    b.fill("[data-row]:nth-of-type(2) input[name=key]", &bo.keys[1])
        .await;
    b.fill("[data-row]:nth-of-type(2) input[name=count]", "10")
        .await;
    b.fill("#backoffice", &bo.url).await;
    b.click("#activate-form button[type=submit]").await;
    assert!(b.text().await.contains("Activated 2 activation ID(s)"));
    assert_eq!(api("/api/v1/admin/status").await["activated"], json!(true));

    // clients hold seats: the features and devices views show them
    for (i, device) in ["string=cad-1", "string=cad-2", "string=cad-3"]
        .iter()
        .enumerate()
    {
        take(
            &url,
            &ask(device, "ann", "lab", &format!("s{i}"), &[("modeler", 1)]),
        )
        .await;
    }
    b.click_text("Features").await;
    let rows = b.text_of("#features-table tbody").await;
    assert!(rows.contains("modeler 2.0 20 3 17"), "{rows}");
    b.click_text("Devices").await;
    assert_eq!(b.text_of("#devices-table tbody").await.lines().count(), 3);

    // add a reservation, export it
    b.click_text("Reservations").await;
    b.fill("#group", "CAD lab").await;
    b.fill("#device", "cad-9").await;
    b.client
        .find(fantoccini::Locator::Css("#id_type"))
        .await
        .unwrap()
        .select_by_value("string")
        .await
        .unwrap();
    b.fill("#feature", "modeler").await;
    b.fill("#version", "2.0").await;
    b.fill("#count", "2").await;
    b.click("#add-form button[type=submit]").await;
    assert!(b.text_of(".flash").await.contains("CAD lab"));
    let (status, disposition, exported) = b.fetch("/reservations/export").await;
    assert_eq!(status, 200);
    assert!(disposition.contains("attachment"), "{disposition}");
    let doc: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(doc["groups"][0]["name"], "CAD lab", "{doc}");
    assert_eq!(
        doc["groups"][0]["reservations"][0]["entries"][0]["count"], 2,
        "{doc}"
    );

    // the seed's model: refused while the reservations exist, saying which to remove
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-model.txt");
    b.click_text("Named license pools").await;
    b.click_text("Model").await;
    b.attach("#model-file", &model).await;
    b.click("#model-form button[type=submit]").await;
    let err = b.text_of("#model-error").await;
    assert!(err.contains("\"CAD lab\""), "{err}");
    assert!(api("/api/v1/admin/pools").await["model"].is_null());
    // remove them, and it loads
    b.click_text("Reservations").await;
    b.toggle("#delete-form input[value='CAD lab']").await;
    b.click("#delete-form button[type=submit]").await;
    b.click_text("Named license pools").await;
    b.click_text("Model").await;
    b.attach("#model-file", &model).await;
    b.click("#model-form button[type=submit]").await;
    assert_eq!(b.path().await, "/pools");
    assert!(!api("/api/v1/admin/pools").await["model"].is_null());

    // a read-only user: made by the administrator, logs in, may look but not change
    b.click_text("Users and roles").await;
    b.fill("#new-name", "reader").await;
    b.click("#new-user-form button[type=submit]").await;
    let first = b.text_of("#first-password").await;
    b.click_text("Log out").await;
    b.fill("#user", "reader").await;
    b.fill("#password", &first).await;
    b.click("form.stack button[type=submit]").await;
    b.fill("#user", "reader").await;
    b.fill("#current", &first).await;
    b.fill("#new", "the reader's own password").await;
    b.fill("#confirm", "the reader's own password").await;
    b.click("form.stack button[type=submit]").await;
    b.fill("#user", "reader").await;
    b.fill("#password", "the reader's own password").await;
    b.click("form.stack button[type=submit]").await;
    assert!(b.text().await.contains("(read-only)"));
    b.click_text("Named license pools").await;
    b.click_text("Model").await;
    b.click("#delete-model-form button[type=submit]").await;
    let denied = b.text().await;
    assert!(denied.contains("Access denied"), "{denied}");
    assert!(
        !api("/api/v1/admin/pools").await["model"].is_null(),
        "nothing changed"
    );
    let audit = api("/api/v1/admin/audit").await;
    assert!(audit.to_string().contains("access_denied"), "{audit}");

    // logout
    b.goto(&format!("{url}/features")).await;
    b.click_text("Log out").await;
    assert!(b.text().await.contains("You are logged out"));
    b.goto(&format!("{url}/pools")).await;
    assert!(b.path().await.starts_with("/login"));
    b.close().await;
}

/// The leases `device` (any of its users) holds, as the admin API lists them.
async fn held_by(url: &str, token: &str, device: &str) -> usize {
    let r = reqwest::Client::new()
        .get(format!("{url}/api/v1/admin/leases"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Vec<Value> = r.json().await.unwrap();
    list.iter()
        .filter(|l| l["device"].as_str().unwrap().starts_with(device))
        .count()
}

/// The seats granted by the answer to `body`.
async fn grants(url: &str, body: &Value) -> usize {
    let claims = tessera_testkit::capability_claims(url, body).await;
    claims["grants"].as_array().map_or(0, Vec::len)
}

/// Stuck seats released from a device's page, as an administrator would: the button, the devices
/// view saying what was released, the seats free for another device at once. A form posted
/// without a session releases nothing; releasing again says the device holds no lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_releases_a_devices_seats_from_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let (_bo, data, server, _clock) = served(dir.path()).await;
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    assert_eq!(held_by(&url, &data.token, "string=ws-2").await, 2);

    // without a session the form is sent to the login page and nothing is released
    let r = http
        .post(format!("{url}/devices/string%3Dws-2/release"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    assert_eq!(held_by(&url, &data.token, "string=ws-2").await, 2);

    // modeler is full (3 seats and 1 overdraft, all held): a fifth device is refused
    let new_pc = |id: &str| ask("string=ws-5", "eve", "new-pc", id, &[("modeler", 1)]);
    assert_eq!(grants(&url, &new_pc("r5")).await, 0);

    let Some(b) = browser::browser("release a device's seats").await else {
        return;
    };
    b.log_in(&url, "admin", &data.password, Some("a long new password"))
        .await;
    b.click_text("Devices").await;
    b.click_text("string=ws-2").await;
    assert!(b.text().await.contains("Release every seat of this device"));
    b.screenshot("device-release").await;
    b.click("#release-form button[type=submit]").await;
    assert_eq!(b.path().await, "/devices");
    let text = b.text().await;
    assert!(
        text.contains("Released 2 lease(s) of device string=ws-2, 2 seat(s)")
            && text.contains("1 × modeler")
            && text.contains("1 × render"),
        "{text}"
    );
    let devices = b.text_of("#devices-table tbody").await;
    assert_eq!(devices.lines().count(), 3, "{devices}");
    assert!(!devices.contains("ws-2"), "{devices}");
    b.screenshot("device-released").await;
    b.close().await;

    // stored, and the seat is free for another device at once
    assert_eq!(held_by(&url, &data.token, "string=ws-2").await, 0);
    assert_eq!(grants(&url, &new_pc("r6")).await, 1);
    // the same release again: nothing held, said plainly
    let r = http
        .post(format!("{url}/api/v1/admin/leases/release"))
        .bearer_auth(&data.token)
        .json(&json!({"device": "string=ws-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("device string=ws-2 holds no lease"),
        "{problem}"
    );
}
