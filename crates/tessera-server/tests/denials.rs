//! The denial report through the real server: a feature filled, a request refused, and the refusal
//! read back from `GET /api/v1/admin/denials` with who, what, when and why; a grant beyond the
//! count recorded as overdraft; a preview's refusal not recorded; old events pruned by the server's
//! scheduled work once the (test) clock has moved past their retention.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_core::{Clock, ManualClock};
use tessera_host::SystemClock;
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::admin::{UsageEventKind, UsageEvents};
use tessera_wire::KeyCount;

fn ask(operation: &str, device: &str, user: &str, id: &str, feature: Value) -> Value {
    json!({"operation": operation, "device_id": device, "user": user, "alias": format!("{user}-pc"),
        "device_type": "virtual", "request_id": id, "nonce": format!("nonce-{id}-0123456789"),
        "features": [feature]})
}

// Sends a capability request; the answer's claims (read, not verified: other tests verify).
use tessera_testkit::capability_claims as capability;

async fn get(url: &str, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(format!("{url}/api/v1/admin/denials{query}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn events(url: &str, token: &str, query: &str) -> UsageEvents {
    let r = get(url, Some(token), query).await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_overdraft_are_recorded_and_pruned() {
    // one seat and one more as overdraft
    let bo = BackOfficeKit::new()
        .line(json!({"product": "cad", "model": "floating", "count": 1, "overdraft": 1}))
        .start()
        .await;
    let pem = bo.producer_pem();
    let (bo_url, keys) = bo.detach();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let sync_far_away = format!("sync_hour_utc = {}\n", (SystemClock.now().hour() + 12) % 24);
    let data = ServerKit::new(dir.path(), &pem)
        .clock(clock.clone())
        .config(&sync_far_away)
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(&bo_url, &[KeyCount::new(keys[0].clone(), 1)])
        .await;
    let url = server.url.clone();
    let token = data.token.clone();
    let modeler = json!({"name": "modeler", "version": "2.0"});

    // the seat, then the overdraft seat, then nothing
    let c = capability(
        &url,
        &ask(
            "request",
            "ethernet=0050569a0001",
            "alice",
            "a1",
            modeler.clone(),
        ),
    )
    .await;
    assert_eq!(c["grants"][0]["overdraft"], 0, "{c}");
    let c = capability(
        &url,
        &ask(
            "request",
            "ethernet=0050569a0002",
            "bob",
            "b1",
            modeler.clone(),
        ),
    )
    .await;
    assert_eq!(c["grants"][0]["overdraft"], 1, "{c}");
    let refused = ask(
        "request",
        "ethernet=0050569a0003",
        "carol",
        "c1",
        modeler.clone(),
    );
    let c = capability(&url, &refused).await;
    assert_eq!(c["denials"][0]["code"], "all_in_use", "{c}");
    let refusal_message = c["denials"][0]["message"].as_str().unwrap().to_string();
    // a retry of the refused request is refused (and recorded) again; a preview is not recorded
    let c = capability(
        &url,
        &ask(
            "preview",
            "ethernet=0050569a0004",
            "dave",
            "d1",
            modeler.clone(),
        ),
    )
    .await;
    assert_eq!(c["denials"][0]["code"], "all_in_use", "{c}");
    clock.advance(tessera_core::time::Duration::minutes(1));
    let c = capability(
        &url,
        &ask(
            "request",
            "string=kiosk",
            "erin",
            "e1",
            json!({"name": "renderer", "count": 2}),
        ),
    )
    .await;
    assert_eq!(c["denials"][0]["code"], "not_licensed", "{c}");

    // the report: newest first, who, what, when and why
    let v = events(&url, &token, "").await;
    assert_eq!(v.kind, UsageEventKind::Denial);
    assert_eq!(v.retention_days, 30);
    assert_eq!(v.events.len(), 2, "{v:?}");
    let (newest, carol) = (&v.events[0], &v.events[1]);
    assert_eq!(newest.feature, "renderer");
    assert_eq!(newest.code, "not_licensed");
    assert_eq!(newest.count, 2);
    assert_eq!(
        (newest.device_id.as_str(), newest.device_id_type.as_str()),
        ("string=kiosk", "string")
    );
    assert_eq!(carol.device_id, "ethernet=0050569a0003");
    assert_eq!(carol.device_id_type, "ethernet");
    assert_eq!(carol.device_type, "virtual");
    assert_eq!(carol.user.as_deref(), Some("carol"));
    assert_eq!(carol.alias.as_deref(), Some("carol-pc"));
    assert_eq!(carol.feature, "modeler");
    assert_eq!(carol.version.as_deref(), Some("2.0"));
    assert_eq!(carol.count, 1);
    assert_eq!(carol.code, "all_in_use");
    assert_eq!(carol.message, refusal_message);
    let at = |s: &str| {
        tessera_core::time::OffsetDateTime::parse(
            s,
            &tessera_core::time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        at(&newest.at) - at(&carol.at),
        tessera_core::time::Duration::minutes(1)
    );
    assert!(v.events.iter().all(|e| e.user.as_deref() != Some("dave")));

    // the filters
    let v = events(&url, &token, "?feature=modeler").await;
    assert_eq!(v.events.len(), 1);
    assert_eq!(v.events[0].user.as_deref(), Some("carol"));
    let v = events(&url, &token, "?limit=1").await;
    assert_eq!(v.events.len(), 1);
    assert_eq!(v.events[0].feature, "renderer");
    let since = &newest.at;
    let v = events(
        &url,
        &token,
        &format!("?since={}", since.replace('+', "%2B")),
    )
    .await;
    assert_eq!(v.events.len(), 1, "{v:?}");
    let v = events(&url, &token, "?since=2000-01-01").await;
    assert_eq!(v.events.len(), 2);

    // overdraft use, recorded the same way
    let v = events(&url, &token, "?kind=overdraft").await;
    assert_eq!(v.kind, UsageEventKind::Overdraft);
    assert_eq!(v.events.len(), 1, "{v:?}");
    let o = &v.events[0];
    assert_eq!(o.device_id, "ethernet=0050569a0002");
    assert_eq!(o.user.as_deref(), Some("bob"));
    assert_eq!(o.feature, "modeler");
    assert_eq!(o.count, 1);
    assert_eq!(o.code, "overdraft");

    // the admin credential, and filters that do not fit
    for t in [None, Some("tss_wrong")] {
        let r = get(&url, t, "").await;
        assert_eq!(r.status(), 401);
    }
    for bad in [
        "?limit=0",
        "?limit=5000",
        "?since=yesterday",
        "?kind=grant",
        "?colour=red",
    ] {
        let r = get(&url, Some(&token), bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], "invalid_request", "{bad}");
    }

    // a month later, the scheduled work prunes them (it runs every few seconds and prunes
    // hourly by the server's clock)
    clock.advance(tessera_core::time::Duration::days(31));
    let mut left = usize::MAX;
    for _ in 0..60 {
        let d = events(&url, &token, "").await.events.len();
        let o = events(&url, &token, "?kind=overdraft").await.events.len();
        left = d + o;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(left, 0, "events past their retention were not pruned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_of_zero_days_is_refused_at_start() {
    let keys = tempfile::tempdir().unwrap();
    let pem = tessera_testkit::producer_key(&keys.path().join("bo")).await;
    for (line, want) in [
        (
            "usage_event_retention_days = 0",
            "usage_event_retention_days",
        ),
        (
            "usage_event_retention_days = 99999",
            "usage_event_retention_days",
        ),
        (
            "usage_event_retention_days = \"a month\"",
            "usage_event_retention_days",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = ServerKit::new(dir.path(), &pem).config(line).init().await;
        let err = tessera_server::daemon::open(&data.data, Arc::new(SystemClock))
            .await
            .err()
            .unwrap_or_else(|| panic!("{line}: opened"));
        assert!(err.to_string().contains(want), "{line}: {err}");
    }
}
