//! Credentials of the back office, tried as an attacker and as an administrator would: API tokens
//! listed, revoked, expiring, revoked by a password reset; logins throttled per account and per
//! address, password checks bounded; authentication before the body is even read. A real server
//! on port 0; callers on several loopback addresses (127.0.0.x) where the address matters.

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_backoffice::{auth, http};
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::{Clock, ManualClock};
use tessera_testkit::{BackOfficeKit, TestBackOffice};

struct Office {
    base: String,
    token: String,
    password: String,
    state: http::Shared,
    clock: Arc<ManualClock>,
    _office: TestBackOffice,
}

async fn start() -> Office {
    start_with_rate(None).await
}

async fn start_with_rate(per_minute: Option<u32>) -> Office {
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
    ));
    let mut kit = BackOfficeKit::new()
        .bare()
        .issuer("Example Software Ltd.")
        .clock(clock.clone());
    if let Some(r) = per_minute {
        kit = kit.public_requests_per_minute(r);
    }
    let o = kit.start().await;
    Office {
        base: o.url.clone(),
        token: o.admin_token.clone(),
        password: o.admin_password.clone(),
        state: o.state.clone(),
        clock,
        _office: o,
    }
}

/// A client whose requests come from `ip` (any 127.0.0.0/8 address reaches the server on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

impl Office {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(
        &self,
        client: &reqwest::Client,
        user: &str,
        password: &str,
        extra: Value,
    ) -> (StatusCode, Option<String>, Value) {
        let mut body = json!({"username": user, "password": password});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let resp = client
            .post(self.url("/api/v1/auth/token"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_expire_and_die_with_a_password_reset() {
    let o = start().await;
    let c = reqwest::Client::new();
    // a token that lasts one day
    let (st, _, t) = o
        .login(
            &c,
            "admin",
            &o.password,
            json!({"name": "ci", "expires_days": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let day = t["token"].as_str().unwrap().to_string();
    let day_id = t["id"].as_str().unwrap().to_string();
    assert_eq!(day_id.len(), 16);
    assert_eq!(
        t["expires_at"].as_i64(),
        Some(o.clock.now().unix_timestamp() + 86_400)
    );
    // an expiry out of bounds is refused
    let (st, _, p) = o
        .login(&c, "admin", &o.password, json!({"expires_days": 0}))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    // and a token to revoke
    let (_, _, t) = o
        .login(&c, "admin", &o.password, json!({"name": "laptop"}))
        .await;
    let laptop = t["token"].as_str().unwrap().to_string();
    let laptop_id = t["id"].as_str().unwrap().to_string();

    // the list shows every token, never the token itself
    let (st, list) = o.get(&o.token, "/api/v1/auth/tokens").await;
    assert_eq!(st, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&day) && !text.contains(&laptop) && !text.contains(&o.token));
    let by_id = |id: &str| list.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(by_id(&day_id)["state"], "active");
    assert_eq!(by_id(&day_id)["name"], "ci");
    assert_eq!(by_id(&laptop_id)["expires_at"], Value::Null);

    // revoked: refused at once, with a clear answer
    let (st, v) = o
        .post(&o.token, &format!("/api/v1/auth/tokens/{laptop_id}/revoke"))
        .await;
    assert_eq!(
        (st, v["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{v}"
    );
    let (st, p) = o.get(&laptop, "/api/v1/products").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    // an unknown id is 404, a short one 422
    let (st, _) = o
        .post(&o.token, "/api/v1/auth/tokens/0123456789abcdef/revoke")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = o.post(&o.token, "/api/v1/auth/tokens/abc/revoke").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // expired: works until its day is over, then refused with a clear answer
    assert_eq!(o.get(&day, "/api/v1/products").await.0, StatusCode::OK);
    o.clock.advance(Duration::days(1));
    let (st, p) = o.get(&day, "/api/v1/products").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let (_, list) = o.get(&o.token, "/api/v1/auth/tokens?user=admin").await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == day_id.as_str() && t["state"] == "expired"));

    // a password reset revokes every token of the user
    assert_eq!(o.get(&o.token, "/api/v1/products").await.0, StatusCode::OK);
    let revoked = auth::reset_password(
        o.state.bo.store(),
        "admin",
        "a new password of some length",
        o.clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(revoked, 2, "the init token and the expired one");
    let (st, p) = o.get(&o.token, "/api/v1/products").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    // the old password no longer logs in; the new one does
    let (st, _, _) = o.login(&c, "admin", &o.password, json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = o
        .login(&c, "admin", "a new password of some length", json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // the token endpoints are documented
    let doc: Value = reqwest::get(o.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/api/v1/auth/tokens", "/api/v1/auth/tokens/{id}/revoke"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    // unknown users cannot be reset
    assert!(auth::reset_password(
        o.state.bo.store(),
        "nobody",
        "x".repeat(12).as_str(),
        o.clock.now()
    )
    .await
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_admin_requests_are_401_whatever_the_body() {
    let o = start().await;
    let c = reqwest::Client::new();
    let bodies: [(&str, &str); 4] = [
        ("application/json", "{\"colour\": \"red\"}"),
        ("application/json", "{\"id\": "),
        ("text/plain", "hello"),
        ("application/json", "[1, 2, 3]"),
    ];
    let admin_posts = [
        "/api/v1/products",
        "/api/v1/products/cad/features",
        "/api/v1/customers",
        "/api/v1/customers/CUS-1/grace",
        "/api/v1/entitlements",
        "/api/v1/keys/LIN-1/revoke",
        "/api/v1/keys/LIN-1/rehost",
        "/api/v1/auth/tokens/0123456789abcdef/revoke",
    ];
    for path in admin_posts {
        for (ctype, body) in bodies {
            for auth in [
                None,
                Some("Bearer tsr_not_a_token"),
                Some("Basic YWRtaW46eA=="),
            ] {
                let mut req = c
                    .post(o.url(path))
                    .header("content-type", ctype)
                    .body(body.to_string());
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let resp = req.send().await.unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED,
                    "{path} {body} {auth:?}"
                );
                assert_eq!(resp.headers()["content-type"], "application/problem+json");
                let p: Value = resp.json().await.unwrap();
                assert_eq!(p["code"], "unauthorized", "{path}: {p}");
                let detail = p["detail"].as_str().unwrap();
                for leak in [
                    "field",
                    "colour",
                    "features",
                    "customer_id",
                    "days",
                    "holder",
                    "JSON",
                ] {
                    assert!(!detail.contains(leak), "{path} reveals {leak}: {detail}");
                }
            }
        }
    }
    // queries are not parsed before authentication either
    for path in [
        "/api/v1/keys?limit=many",
        "/api/v1/usage?offset=x",
        "/api/v1/auth/tokens?user=1&x=2",
    ] {
        let resp = c.get(o.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // an oversized body without a token: 401 too (the body is not read). The server closes that
    // connection rather than read the body it refused: the client must not put it back in its
    // pool, or the next request on it can meet the close (IncompleteMessage)
    let resp = c
        .post(o.url("/api/v1/products"))
        .header("content-type", "application/json")
        .header("connection", "close")
        .body("x".repeat(200_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // with the token the same malformed body is explained
    let resp = c
        .post(o.url("/api/v1/products"))
        .bearer_auth(&o.token)
        .json(&json!({"colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_logins_are_throttled_per_account_and_per_address() {
    let o = start().await;
    auth::create_user(
        o.state.bo.store(),
        "maria",
        "maria's long password",
        o.clock.now(),
    )
    .await
    .unwrap();
    // 30 wrong logins at once for one account from one address
    let c1 = client_from("127.0.0.1");
    let storm: Vec<_> = (0..30)
        .map(|_| {
            let c = c1.clone();
            let o = &o;
            async move { o.login(&c, "admin", "not the password", json!({})).await }
        })
        .collect();
    let (results, health) = tokio::join!(futures_join_all(storm), async {
        // the server answers other requests meanwhile
        reqwest::Client::new()
            .get(o.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(health, StatusCode::OK);
    let wrong = results
        .iter()
        .filter(|r| r.0 == StatusCode::UNAUTHORIZED)
        .count();
    let throttled: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(wrong + throttled.len(), 30, "{results:?}");
    assert_eq!(
        wrong,
        auth::ACCOUNT_BURST as usize,
        "only the account's budget is checked"
    );
    for (_, retry, p) in &throttled {
        let secs: u64 = retry
            .as_deref()
            .expect("Retry-After on every 429")
            .parse()
            .unwrap();
        assert!(secs >= 1, "{secs}");
        assert!(
            ["login_throttled", "rate_limited"].contains(&p["code"].as_str().unwrap()),
            "{p}"
        );
    }
    // the account is throttled from any address, even with the right password…
    let (st, retry, p) = o
        .login(&client_from("127.0.0.2"), "admin", &o.password, json!({}))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("login_throttled")),
        "{p}"
    );
    assert!(retry.is_some());
    // …while another account logs in from another address
    let (st, _, _) = o
        .login(
            &client_from("127.0.0.3"),
            "maria",
            "maria's long password",
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // one address trying many accounts at once: its budget runs out, whatever the names
    let c4 = client_from("127.0.0.4");
    let guesses: Vec<_> = (0..(auth::ADDRESS_BURST as usize + 3))
        .map(|i| {
            let c = c4.clone();
            let o = &o;
            async move {
                o.login(&c, &format!("guess{i}"), "not the password", json!({}))
                    .await
            }
        })
        .collect();
    let results = futures_join_all(guesses).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        auth::ADDRESS_BURST as usize,
        "{statuses:?}"
    );
    for (st, retry, p) in &results {
        if *st == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(p["code"], "login_throttled");
            assert!(retry.is_some());
        }
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_beyond_the_queue_are_refused_with_retry_after() {
    let o = start().await;
    // take every hashing turn, as slow hashes would
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = Arc::new(std::sync::Mutex::new(hold));
    let mut holders = Vec::new();
    for _ in 0..auth::HASH_CONCURRENCY {
        let state = o.state.clone();
        let hold = hold.clone();
        holders.push(tokio::spawn(async move {
            state
                .hashing
                .run(move || {
                    let _ = hold.lock().unwrap().recv();
                })
                .await
        }));
    }
    while o.state.hashing.free() > 0 {
        tokio::task::yield_now().await;
    }
    // many wrong logins at once, each from its own address and for its own account, so no
    // throttle applies: the queue takes a few, the rest are refused at once
    let n = auth::HASH_QUEUE + 14;
    let logins: Vec<_> = (0..n)
        .map(|i| {
            let c = client_from(&format!("127.0.1.{}", i + 1));
            let o = &o;
            async move {
                o.login(&c, &format!("user{i}"), "not the password", json!({}))
                    .await
            }
        })
        .collect();
    let answers = tokio::spawn({
        let base = o.base.clone();
        async move {
            // the server keeps answering while the hashes are all taken
            let mut health = Vec::new();
            for _ in 0..3 {
                health.push(
                    reqwest::get(format!("{base}/healthz"))
                        .await
                        .unwrap()
                        .status(),
                );
            }
            health
        }
    });
    let (results, ()) = tokio::join!(futures_join_all(logins), async {
        // let the hashes go once every refusal is in: the queued logins then finish
        loop {
            let busy = o.state.hashing.refused();
            if busy >= n - auth::HASH_QUEUE {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for _ in 0..auth::HASH_CONCURRENCY {
            release.send(()).unwrap();
        }
    });
    assert!(answers.await.unwrap().iter().all(|s| *s == StatusCode::OK));
    for h in holders {
        h.await.unwrap().unwrap();
    }
    let busy: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let wrong = results
        .iter()
        .filter(|r| r.0 == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(busy.len(), n - auth::HASH_QUEUE, "{results:?}");
    assert_eq!(wrong, auth::HASH_QUEUE, "{results:?}");
    for (_, retry, p) in busy {
        assert_eq!(p["code"], "busy");
        assert_eq!(retry.as_deref(), Some("1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_429_says_when_to_try_again() {
    let o = start_with_rate(Some(2)).await;
    let c = reqwest::Client::new();
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            c.post(o.url("/api/v1/trials"))
                .json(&json!({"product": "none", "pc_id": "x"}))
                .send()
                .await
                .unwrap(),
        );
    }
    let resp = last.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "rate_limited");
    // the pages too
    for (path, form) in [
        ("/activate", vec![("key", "x"), ("pc_id", "y")]),
        ("/offline", vec![("request", "x")]),
        (
            "/demo",
            vec![("name", "x"), ("email", "a@b.example"), ("product", "p")],
        ),
    ] {
        let resp = c.post(o.url(path)).form(&form).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert!(resp.headers().contains_key("retry-after"), "{path}");
    }
    // and the login
    let (st, retry, _) = o.login(&c, "admin", &o.password, json!({})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
