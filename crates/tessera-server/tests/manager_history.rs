//! The License Server Manager's usage history, denial report, banners and branding in a real
//! headless Chromium, on a manual clock shared by the back office and the license server: six
//! hours of seats taken and running out, sampled every minute, charted with the over-use marked,
//! then rolled up into hours; the denials filtered and downloaded as CSV (formula cells defused);
//! the banners for a license not renewed and no sync for a week, and for an expired license; the
//! product name, logo and a relabelled menu entry from `[manager]` in server.toml. Also, without
//! a browser: the usage-history and CSV API, and the properties with `[manager]`.

#[path = "support/browser.rs"]
mod browser;

use std::sync::Arc;

use serde_json::{json, Value};
use tessera_core::clock::ManualClock;
use tessera_testkit::{BackOfficeKit, ServerKit, TestServer};
use tessera_wire::admin::UsageHistory;
use tessera_wire::KeyCount;

/// A capability request for `count` seats of `feature` as `device`.
fn ask(device: &str, user: &str, alias: &str, id: &str, feature: &str, count: u32) -> Value {
    json!({"operation": "request", "device_id": device, "user": user, "alias": alias,
        "device_type": "physical", "request_id": id, "nonce": format!("nonce-{id}-0123456789"),
        "features": [{"name": feature, "count": count}]})
}

/// Sends a capability request (granted or refused, it is answered 200).
async fn take(url: &str, body: &Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn admin_get(url: &str, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The time a test starts at: a whole hour (so the six hours sampled are six whole hours).
fn start() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    now.replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

const BRANDING: &str = "[manager]\nproduct_name = \"Acme License Hub\"\nlogo = \"acme.svg\"\n\n[manager.labels]\nfeatures = \"Licences\"\n";
const LOGO: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"28\" viewBox=\"0 0 40 28\"><rect width=\"40\" height=\"28\" rx=\"4\" fill=\"#f0b400\"/><text x=\"20\" y=\"19\" font-size=\"14\" text-anchor=\"middle\" fill=\"#1c2430\">AC</text></svg>";

/// A back office (modeler 2.0 and render 1.0, 3 seats each, 1 overdraft) and a license server
/// activated from it, both on `clock`, with hour-long leases and the branding above; the server
/// is held in-process (to sample and roll up on the manual clock) and served.
async fn served(
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
) -> (
    tessera_testkit::TestBackOffice,
    tessera_testkit::ServerData,
    Arc<tessera_server::daemon::Server>,
    TestServer,
) {
    let bo = BackOfficeKit::new()
        .in_dir(&dir.join("bo"))
        .clock(clock.clone())
        .features(
            json!([{"name": "modeler", "version": "2.0"}, {"name": "render", "version": "1.0"}]),
        )
        .line(json!({"product": "cad", "model": "floating", "count": 3, "overdraft": 1}))
        .start()
        .await;
    let data = ServerKit::new(dir, &bo.producer_pem())
        .clock(clock.clone())
        .lease_seconds(3600)
        .config(BRANDING)
        .init()
        .await;
    std::fs::write(data.data.join("acme.svg"), LOGO).unwrap();
    let server = Arc::new(data.open().await);
    let mut running = TestServer::serve(server.clone()).await;
    running.token = Some(data.token.clone());
    running
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 3)])
        .await;
    (bo, data, server, running)
}

/// Logs in again on the login page a page sent the browser to (the session ended).
async fn log_in_again(b: &browser::Browser) {
    assert!(b.path().await.starts_with("/login"), "{}", b.path().await);
    b.fill("#user", "admin").await;
    b.fill("#password", "a much better password").await;
    b.click("form.stack button[type=submit]").await;
}

/// Six hours on the manual clock from `t0`, a minute at a time, each minute sampled: in the first
/// two hours and the last four a device takes a modeler seat for an hour every 25 minutes (two or
/// three in use); at minute 130 one takes two (four in use: one beyond the count, as overdraft,
/// until minute 135), and two more are refused, with a user and alias a spreadsheet would run as
/// formulas. Render is taken once.
async fn six_hours(server: &tessera_server::daemon::Server, url: &str, clock: &ManualClock) {
    for m in 0..360u32 {
        if m > 0 {
            clock.advance(time::Duration::minutes(1));
        }
        server.engine.sweep().await.unwrap();
        if m % 25 == 0 && !(120..200).contains(&m) {
            let (device, alias, id) =
                (format!("string=ws-{m}"), format!("pc-{m}"), format!("r{m}"));
            take(url, &ask(&device, "ann", &alias, &id, "modeler", 1)).await;
        }
        if m == 10 {
            take(
                url,
                &ask("string=lab-1", "cy", "lab-1", "render-1", "render", 1),
            )
            .await;
        }
        if (130..133).contains(&m) {
            let count = if m == 130 { 2 } else { 1 };
            let (device, id) = (format!("string=burst-{m}"), format!("b{m}"));
            take(
                url,
                &ask(
                    &device,
                    "=cmd|' /C calc'!A0",
                    "@SUM(1+1)",
                    &id,
                    "modeler",
                    count,
                ),
            )
            .await;
        }
        server.sample_usage_history().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_history_denials_banners_and_branding_in_a_browser() {
    let Some(b) = browser::browser("manager history").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t0 = start();
    let clock = Arc::new(ManualClock::new(t0));
    let (_bo, data, server, running) = served(dir.path(), clock.clone()).await;
    let url = running.url.clone();
    let token = data.token.clone();
    six_hours(&server, &url, &clock).await;

    // the API: a minute a period, the over-use in the third hour
    let h: UsageHistory = admin_get(
        &url,
        &token,
        &format!(
            "/api/v1/admin/usage-history?feature=modeler&from={}&to={}",
            rfc(t0),
            rfc(t0 + time::Duration::hours(6))
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(h.resolution, "minute");
    assert_eq!(h.series.len(), 1);
    let points = &h.series[0].points;
    assert!(points.len() >= 359, "{}", points.len());
    assert!(points.iter().all(|p| p.count == Some(3)));
    let peak = points.iter().map(|p| p.used).max().unwrap();
    assert_eq!(peak, 4, "the overdraft seat");
    let over: Vec<_> = points.iter().filter(|p| p.used > 3).collect();
    assert!(!over.is_empty());
    let minutes: Vec<&str> = over.iter().map(|p| p.at.as_str()).collect();
    let want: Vec<String> = (130..135)
        .map(|m| rfc(t0 + time::Duration::minutes(m)))
        .collect();
    assert_eq!(minutes, want, "over the count from minute 130 to 134");

    // the browser: log in (the branding shows at once), the usage history of the last day
    b.log_in(
        &url,
        "admin",
        &data.password,
        Some("a much better password"),
    )
    .await;
    assert!(b.text_of("header.top").await.contains("Acme License Hub"));
    let title = b.client.title().await.unwrap();
    assert!(title.ends_with("Acme License Hub"), "{title}");
    let menu = b.text_of("nav.menu").await;
    assert!(
        menu.contains("Licences") && !menu.contains("Features\n"),
        "{menu}"
    );
    let logo_ok = b
        .client
        .execute(
            "const i = document.querySelector('header.top img'); return i.complete && i.naturalWidth === 40;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(logo_ok, Value::Bool(true), "the producer's logo is shown");
    b.screenshot("branding").await;

    b.click_text("Usage history").await;
    assert_eq!(b.path().await, "/usage");
    // the feature picker has both; modeler is charted first
    let options = b.text_of("#feature").await;
    assert!(
        options.contains("modeler") && options.contains("render"),
        "{options}"
    );
    let svg = b.text_of("svg.chart").await;
    assert!(svg.contains("seats") && svg.contains("time (UTC)"), "{svg}");
    let dots = b
        .client
        .execute(
            "return document.querySelectorAll('svg.chart circle.over').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        dots.as_u64(),
        Some(over.len() as u64),
        "each over-use minute is marked"
    );
    let desc = b
        .client
        .execute(
            "return document.querySelector('svg.chart desc').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        desc.as_str().unwrap().contains("at most 4 seats used"),
        "{desc}"
    );
    let summary = b.text_of("#usage-summary tbody").await;
    assert!(summary.starts_with("2.0"), "{summary}");
    assert!(
        summary.contains(&format!(" {} ", over.len()))
            || summary.ends_with(&over.len().to_string()),
        "{summary}"
    );
    let over_rows = b.text_of("#usage-over tbody").await;
    assert_eq!(over_rows.lines().count(), over.len(), "{over_rows}");
    assert!(b
        .text()
        .await
        .contains("tessera server usage-history modeler --since 24h"));
    b.screenshot("usage-history").await;

    // the last hour (from 06:00 after t0's day) has nothing of the six hours: the chart says so
    b.click_text("Last hour").await;
    assert!(b.path().await.contains("range=hour"));
    let d = b
        .client
        .execute(
            "return document.querySelector('svg.chart desc').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert!(d.as_str().unwrap().contains("Seats used of modeler"), "{d}");

    // two days and a half later the minutes are rolled up into hours: the hour keeps its peak
    clock.advance(time::Duration::hours(60));
    server.roll_up_usage_history().await.unwrap();
    let h: UsageHistory = admin_get(
        &url,
        &token,
        &format!(
            "/api/v1/admin/usage-history?feature=modeler&from={}&to={}&resolution=minute",
            rfc(t0),
            rfc(t0 + time::Duration::hours(6))
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let hours: Vec<(String, u64)> = h.series[0]
        .points
        .iter()
        .map(|p| (p.at.clone(), p.used))
        .collect();
    assert_eq!(hours.len(), 6, "one row an hour now: {hours:?}");
    assert_eq!(hours[0].0, rfc(t0));
    assert_eq!(hours[2].1, 4, "the third hour keeps its over-use peak");
    assert!(
        hours.iter().enumerate().all(|(i, h)| i == 2 || h.1 <= 3),
        "{hours:?}"
    );
    // the week's chart: hours, the over-use hour marked (after a login: the session ended)
    b.goto(&format!("{url}/usage?feature=modeler&range=week"))
        .await;
    log_in_again(&b).await;
    assert_eq!(b.path().await, "/usage?feature=modeler&range=week");
    let dots = b
        .client
        .execute(
            "return document.querySelectorAll('svg.chart circle.over').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        dots.as_u64(),
        Some(1),
        "the one hour over the count: {}",
        b.text_of("main").await
    );
    b.screenshot("usage-history-week").await;
    // render's page
    b.goto(&format!("{url}/usage?feature=render&range=week"))
        .await;
    assert!(b.text_of("#usage-summary").await.contains("1.0"));

    // the denial report: three bursts, one granted as overdraft, two denied
    b.click_text("Denials").await;
    let rows = b.text_of("#denials-table tbody").await;
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(
        rows.contains("all_in_use") || rows.contains("denied"),
        "{rows}"
    );
    assert!(
        rows.contains("@SUM(1+1)") && rows.contains("string=burst-132"),
        "{rows}"
    );
    b.screenshot("denials").await;
    // filtered by feature: render was never refused
    b.fill("#feature", "render").await;
    b.click(".toolbar form button").await;
    assert!(b.path().await.contains("feature=render"));
    assert!(b.text_of("#denials-table tbody").await.trim().is_empty());
    b.fill("#feature", "modeler").await;
    b.click(".toolbar form button").await;
    // a bad filter is refused with the API's words, beside the form
    b.fill("#since", "last tuesday").await;
    b.click(".toolbar form button").await;
    assert!(
        b.text_of(".error").await.contains("last tuesday"),
        "{}",
        b.text().await
    );
    b.fill("#since", "").await;
    b.click(".toolbar form button").await;
    // the CSV, as the browser downloads it from the link
    let csv = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch(document.querySelector('#csv').href).then(r => r.text().then(t => done([r.status, r.headers.get('content-type'), r.headers.get('content-disposition'), t])));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(csv[0], 200, "{csv}");
    assert!(csv[1].as_str().unwrap().starts_with("text/csv"), "{csv}");
    assert!(csv[2].as_str().unwrap().contains("denials.csv"), "{csv}");
    let text = csv[3].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("\"at\",\"kind\",\"device_id\""),
        "{text}"
    );
    assert!(lines[1].contains("\"modeler\""), "{text}");
    // the formula cells are defused: a quote before = and @
    assert!(lines[1].contains("\"'=cmd|' /C calc'!A0\""), "{text}");
    assert!(lines[1].contains("\"'@SUM(1+1)\""), "{text}");
    // the overdraft tab: the one grant beyond the count
    b.click_text("Overdraft").await;
    let rows = b.text_of("#denials-table tbody").await;
    assert_eq!(rows.lines().count(), 1, "{rows}");
    assert!(rows.contains("overdraft"), "{rows}");
    b.screenshot("denials-overdraft").await;

    // banners: eight days on, no sync since the activation and the license not renewed
    let features = b.text().await;
    assert!(!features.contains("has not been renewed"), "{features}");
    clock.advance(time::Duration::days(8) - time::Duration::hours(60));
    b.goto(&format!("{url}/features")).await;
    log_in_again(&b).await;
    let banners = b.text_of("main").await;
    assert!(
        banners.contains("The last successful sync with the back office was 8 days ago"),
        "{banners}"
    );
    assert!(
        banners.contains("has not been renewed for 8 days"),
        "{banners}"
    );
    b.screenshot("banners").await;
    // a sync renews the license: both banners go
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/admin/sync"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    b.goto(&format!("{url}/usage")).await;
    let after = b.text_of("main").await;
    assert!(
        !after.contains("last successful sync") && !after.contains("not been renewed"),
        "{after}"
    );
    // 31 days without a sync: the license expired
    clock.advance(time::Duration::days(31));
    b.goto(&format!("{url}/denials")).await;
    log_in_again(&b).await;
    let alert = b.text_of(".banner.alert").await;
    assert!(alert.contains("license expired on"), "{alert}");
    b.screenshot("banner-expired").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_history_and_csv_api_check_their_queries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let (_bo, data, server, running) = served(dir.path(), clock.clone()).await;
    let (url, token) = (running.url.clone(), data.token.clone());
    server.sample_usage_history().await.unwrap();

    // bad queries: 422 naming what is wrong
    for (q, says) in [
        ("", "feature"),
        ("feature=modeler&resolution=week", "resolution"),
        (
            "feature=modeler&from=2020-01-01&resolution=minute",
            "coarser",
        ),
        ("feature=modeler&from=tomorrow", "from"),
        ("feature=modeler&colour=red", "colour"),
    ] {
        let r = admin_get(&url, &token, &format!("/api/v1/admin/usage-history?{q}")).await;
        assert_eq!(r.status(), 422, "{q}");
        let v: Value = r.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains(says), "{q}: {v}");
    }
    // without a token: refused
    let r = reqwest::get(format!("{url}/api/v1/admin/usage-history?feature=modeler"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // a day by default: the minute sampled, nothing in use, the count
    let h: UsageHistory = admin_get(&url, &token, "/api/v1/admin/usage-history?feature=modeler")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h.resolution, "minute");
    assert_eq!(h.series[0].points.len(), 1);
    assert_eq!(h.series[0].points[0].count, Some(3));
    assert_eq!(h.series[0].points[0].used, 0);

    // the CSV: the heading alone when nothing was refused; a bad filter is a problem, not a CSV
    let r = admin_get(&url, &token, "/api/v1/admin/denials.csv?kind=overdraft").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("overdraft.csv"));
    assert_eq!(
        r.text().await.unwrap(),
        "\"at\",\"kind\",\"device_id\",\"device_id_type\",\"device_type\",\"user\",\"alias\",\"feature\",\"version\",\"count\",\"code\",\"message\"\r\n"
    );
    let r = admin_get(&url, &token, "/api/v1/admin/denials.csv?limit=0").await;
    assert_eq!(r.status(), 422);

    // both are in the OpenAPI document, the CSV as text/csv
    let doc: Value = reqwest::get(format!("{url}/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/admin/usage-history"]["get"].is_object());
    assert!(
        doc["paths"]["/api/v1/admin/denials.csv"]["get"]["responses"]["200"]["content"]["text/csv"]
            .is_object()
    );

    // the status carries what the banners need
    let s: Value = admin_get(&url, &token, "/api/v1/admin/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["online"], true);
    assert!(
        s["last_sync"].is_string() && s["bundle_expires"].is_string(),
        "{s}"
    );
    assert!(s["server_time"].is_string());

    // the properties view lists [manager] (read-only) and a change keeps it in server.toml
    let r = admin_get(&url, &token, "/api/v1/admin/properties").await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    let manager = view["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["properties"].as_array().unwrap())
        .find(|p| p["key"] == "manager")
        .cloned()
        .expect("the manager property");
    assert_eq!(manager["in_force"]["product_name"], "Acme License Hub");
    assert_eq!(manager["editable"], false);
    let r = reqwest::Client::new()
        .put(format!("{url}/api/v1/admin/properties"))
        .bearer_auth(&token)
        .json(&json!({"values": {"lease_seconds": 1800}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let toml = std::fs::read_to_string(data.data.join("server.toml")).unwrap();
    let parsed: toml::Table = toml.parse().unwrap();
    assert_eq!(parsed["lease_seconds"].as_integer(), Some(1800));
    assert_eq!(
        parsed["manager"]["product_name"].as_str(),
        Some("Acme License Hub"),
        "{toml}"
    );
    assert_eq!(
        parsed["manager"]["labels"]["features"].as_str(),
        Some("Licences")
    );
    // the manager property cannot be set through the API
    let r = reqwest::Client::new()
        .put(format!("{url}/api/v1/admin/properties"))
        .bearer_auth(&token)
        .json(&json!({"values": {"manager": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "property_read_only", "{v}");
    let after = std::fs::read_to_string(data.data.join("server.toml")).unwrap();
    assert_eq!(after, toml, "nothing changed");
}
