//! The back office as a producer and its customers use it: a real server on port 0, driven over
//! HTTP. The whole story runs on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_backoffice::daemon;
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::offline::{encode_key, RequestBody, RequestClaims, ResponseClaims};
use tessera_core::unlock::{UnlockCode, UnlockPublicKey};
use tessera_core::{ActivationKey, Clock, HostId, Keyring, License, PcId, SigningKey};
use tessera_host::SystemClock;
use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres};
use tessera_testkit::{BackOfficeKit, TestBackOffice};

struct Server {
    base: String,
    token: String,
    office: TestBackOffice,
    http: reqwest::Client,
}

impl Server {
    async fn start(database: Option<&str>, rate: Option<u32>) -> Server {
        let mut kit = BackOfficeKit::new()
            .bare()
            .issuer("Example Software Ltd.")
            .database(database);
        if let Some(r) = rate {
            kit = kit.public_requests_per_minute(r);
        }
        let office = kit.start().await;
        Server {
            base: office.url.clone(),
            token: office.admin_token.clone(),
            office,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn public(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn producer_keys(&self) -> Keyring {
        Keyring::with(self.office.producer_key())
    }

    fn unlock_public(&self) -> UnlockPublicKey {
        UnlockPublicKey::from_pem(&self.office.unlock_pem()).unwrap()
    }
}

fn pc(n: u8) -> PcId {
    let id: HostId = format!("machine_id={}", format!("{n:02x}").repeat(16))
        .parse()
        .unwrap();
    PcId::derive("cad", &[id]).unwrap()
}

fn problem_code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

/// Product "cad" with three features; customer; entitlement with two floating lines and two
/// node-locked lines (one with every feature, one with "export" only).
async fn catalogue(s: &Server) -> (String, Vec<String>) {
    let (st, _) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/products",
            Some(json!({"id": "cad", "name": "ACME CAD", "features": [
                {"name": "modeler", "version": "2.0"}, {"name": "render", "version": "1.0"}, {"name": "export", "version": "1.0"}
            ], "basic_features": ["modeler"], "trial_days": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, customer) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/customers",
            Some(json!({"name": "ACME Engineering", "email": "it@acme.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, ent) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/entitlements",
            Some(json!({"customer_id": customer["id"], "lines": [
                {"product": "cad", "model": "floating", "count": 10, "overdraft": 2},
                {"product": "cad", "model": "floating", "count": 5, "features": ["render"]},
                {"product": "cad", "model": "node_locked", "count": 1, "features": ["modeler", "render"]},
                {"product": "cad", "model": "node_locked", "count": 1, "features": ["export"]},
            ]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ent}");
    let keys: Vec<String> = ent["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 4);
    for k in &keys {
        ActivationKey::parse(k).unwrap();
    }
    (customer["id"].as_str().unwrap().to_string(), keys)
}

async fn story(database: Option<&str>) {
    let s = Server::start(database, None).await;
    let (customer_id, keys) = catalogue(&s).await;
    let now = SystemClock.now();

    // --- a device online: node-locked, idempotent for the same device, refused elsewhere
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(1).to_string(), "product": "cad"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let me: HostId = (&pc(1)).into();
    let lic = License::verify(
        r["license"].as_str().unwrap(),
        &s.producer_keys(),
        now,
        std::slice::from_ref(&me),
    )
    .unwrap();
    assert_eq!(lic.features().len(), 2);
    assert_eq!(lic.claims().policy.as_ref().unwrap().grace_days, 30);
    let (st, _) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(1).to_string()}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "re-activating the same device is allowed"
    );
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(2).to_string()}),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::CONFLICT, "bound_to_another_machine"),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("another machine"));

    // --- refusals, each with its code
    let (st, r) = s.public("/api/v1/activate/device", json!({"key": ActivationKey::generate(&mut rand::rngs::OsRng).to_string(), "pc_id": pc(1).to_string()})).await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::NOT_FOUND, "unknown_key")
    );
    let mut typo: Vec<char> = keys[2].chars().collect();
    typo[3] = if typo[3] == 'A' { 'B' } else { 'A' };
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": typo.iter().collect::<String>(), "pc_id": pc(1).to_string()}),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_key"),
        "{r}"
    );
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(1).to_string(), "product": "cam"}),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::CONFLICT, "wrong_product")
    );
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[0], "pc_id": pc(1).to_string()}),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::CONFLICT, "wrong_product"),
        "a floating key is not for a device"
    );

    // --- a license server with two activation IDs
    let server_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let server_id: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let (st, r) = s
        .public(
            "/api/v1/activate/server",
            json!({"server_hostid": server_id.to_string(), "server_key": encode_key(&server_key.public()),
                   "activations": [{"key": keys[0], "count": 6}, {"key": keys[1], "count": 5}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let bundle = License::verify(
        r["license"].as_str().unwrap(),
        &s.producer_keys(),
        now,
        std::slice::from_ref(&server_id),
    )
    .unwrap();
    let modeler: u32 = bundle
        .features()
        .iter()
        .filter(|f| f.name == "modeler")
        .filter_map(|f| f.count.get())
        .sum();
    let render: u32 = bundle
        .features()
        .iter()
        .filter(|f| f.name == "render")
        .filter_map(|f| f.count.get())
        .sum();
    assert_eq!((modeler, render), (6, 11));
    assert!(
        bundle.claims().exp.is_some(),
        "a server bundle expires one renewal period out"
    );
    let cert = ServerCertificateClaims::verify(
        r["certificate"].as_str().unwrap(),
        &s.producer_keys(),
        now,
    )
    .unwrap();
    assert_eq!(cert.server_public_key().unwrap(), server_key.public());
    assert_eq!(cert.server_hostid, server_id);

    // a second server wants more than is left: refused, and the first keeps its seats
    let other_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (st, r) = s
        .public(
            "/api/v1/activate/server",
            json!({"server_hostid": "ethernet=0050569a3b02", "server_key": encode_key(&other_key.public()),
                   "activations": [{"key": keys[1], "count": 1}]}),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::CONFLICT, "count_exhausted"),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("0 of 5 left"), "{r}");
    let (_, ent) = s.admin(reqwest::Method::GET, "/api/v1/keys", None).await;
    let used: i64 = ent
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["used"].as_i64().unwrap())
        .sum();
    assert_eq!(used, 6 + 5 + 1);
    // a node-locked key cannot be activated into a server
    let (st, r) = s
        .public("/api/v1/activate/server", json!({"server_hostid": "ethernet=0050569a3b02", "server_key": encode_key(&other_key.public()), "activations": [{"key": keys[3], "count": 1}]}))
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::CONFLICT, "wrong_product")
    );

    // --- a device offline, with files; the same request twice gives the same answer
    let device = SigningKey::generate(&mut rand::rngs::OsRng);
    let kid = s.office.producer_key().kid().to_string();
    let request = RequestClaims {
        jti: "req-1".into(),
        iat: now,
        aud: kid.clone(),
        requester_key: String::new(),
        body: RequestBody::DeviceActivation {
            key: keys[3].clone(),
            pc_id: pc(3).to_string(),
            product: Some("cad".into()),
        },
    }
    .sign(&device)
    .unwrap();
    let post_offline = |body: String| {
        let http = s.http.clone();
        let url = s.url("/api/v1/offline");
        async move {
            let resp = http
                .post(url)
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let (st, response) = post_offline(request.clone()).await;
    assert_eq!(st, StatusCode::OK, "{response}");
    let answer = ResponseClaims::verify(&response, &s.producer_keys(), now).unwrap();
    assert_eq!(answer.in_reply_to, "req-1");
    let three: HostId = (&pc(3)).into();
    License::verify(&answer.license, &s.producer_keys(), now, &[three]).unwrap();
    let (_, again) = post_offline(request.clone()).await;
    assert_eq!(
        again, response,
        "answering the same request twice returns the same grant"
    );
    // tampered request
    let mut lines: Vec<String> = request.lines().map(String::from).collect();
    let l = &mut lines[3];
    let c = if l.as_bytes()[10] == b'A' { "B" } else { "A" };
    l.replace_range(10..11, c);
    let (st, body) = post_offline(lines.join("\n")).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("invalid_document"), "{body}");
    // a request for another producer
    let foreign = RequestClaims {
        jti: "req-2".into(),
        iat: now,
        aud: SigningKey::generate(&mut rand::rngs::OsRng)
            .kid()
            .to_string(),
        requester_key: String::new(),
        body: RequestBody::DeviceActivation {
            key: keys[3].clone(),
            pc_id: pc(3).to_string(),
            product: None,
        },
    }
    .sign(&device)
    .unwrap();
    let (st, body) = post_offline(foreign).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("wrong_producer"), "{body}");

    // --- unlock codes from the public page
    let form = |key: &str, pc_id: &str| {
        let http = s.http.clone();
        let url = s.url("/activate");
        let params = [
            ("key", key.to_string()),
            ("pc_id", pc_id.to_string()),
            ("email", String::new()),
        ];
        async move {
            let resp = http.post(url).form(&params).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    // a fresh node-locked line with all features for the unlock story
    let (_, ent2) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/entitlements",
            Some(json!({"customer_id": customer_id, "lines": [
                {"product": "cad", "model": "node_locked", "count": 1, "features": ["modeler"]},
                {"product": "cad", "model": "node_locked", "count": 1, "features": ["render"]},
                {"product": "cad", "model": "node_locked", "count": 1, "features": ["modeler"]},
            ]})),
        )
        .await;
    let k: Vec<String> = ent2["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    let (st, page) = form(&k[0], &pc(7).to_string()).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let code_text = page
        .split("id=\"unlock-code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let code = UnlockCode::parse(code_text).unwrap();
    let grant = code
        .verify(
            &s.unlock_public(),
            "cad",
            &ActivationKey::parse(&k[0]).unwrap(),
            &pc(7),
            now.date(),
        )
        .unwrap();
    assert_eq!(
        grant.features.names(&["modeler", "render", "export"]),
        vec!["modeler"]
    );
    // a second key for a new feature on the same PC: a second code
    let (st, page2) = form(&k[1], &pc(7).to_string()).await;
    assert_eq!(st, StatusCode::OK, "{page2}");
    assert!(page2.contains("unlock-code"));
    // a key for a feature the PC already has: a warning, no code
    let (st, page3) = form(&k[2], &pc(7).to_string()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{page3}");
    assert!(
        page3.contains("already_activated") && !page3.contains("id=\"unlock-code\""),
        "{page3}"
    );
    // the first key on another PC: refused
    let (st, page4) = form(&k[0], &pc(8).to_string()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(page4.contains("bound_to_another_machine"), "{page4}");

    // --- trials: the first start is remembered
    let (st, t1) = s
        .public(
            "/api/v1/trials",
            json!({"product": "cad", "pc_id": pc(9).to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t1}");
    let (_, t2) = s
        .public(
            "/api/v1/trials",
            json!({"product": "cad", "pc_id": pc(9).to_string()}),
        )
        .await;
    assert_eq!(t1["started_at"], t2["started_at"]);
    assert_eq!(
        t1["expires_at"].as_i64().unwrap() - t1["started_at"].as_i64().unwrap(),
        60 * 86400
    );
    let nine: HostId = (&pc(9)).into();
    let trial = License::verify(
        t1["license"].as_str().unwrap(),
        &s.producer_keys(),
        now,
        &[nine],
    )
    .unwrap();
    let day61 = now + tessera_core::time::Duration::days(61);
    assert!(
        trial
            .feature("render", &"1.0".parse().unwrap(), day61)
            .is_err(),
        "full features end with the trial"
    );
    assert!(
        trial
            .feature("modeler", &"1.0".parse().unwrap(), day61)
            .is_ok(),
        "basic features remain"
    );

    // --- revoke, re-host, grace
    let (st, _) = s
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/keys/{}/revoke", keys[3]),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[3], "pc_id": pc(3).to_string()}),
        )
        .await;
    assert_eq!((st, problem_code(&r)), (StatusCode::FORBIDDEN, "revoked"));
    let (st, r) = s
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/keys/{}/rehost", keys[2]),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["released"], 1);
    let (st, _) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(2).to_string()}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "after re-hosting, the new machine activates"
    );
    let (st, c) = s
        .admin(
            reqwest::Method::POST,
            &format!("/api/v1/customers/{customer_id}/grace"),
            Some(json!({"days": 15})),
        )
        .await;
    assert_eq!(
        (st, c["grace_extra_days"].as_i64()),
        (StatusCode::OK, Some(15))
    );
    let (_, r) = s
        .public(
            "/api/v1/activate/device",
            json!({"key": keys[2], "pc_id": pc(2).to_string()}),
        )
        .await;
    let two: HostId = (&pc(2)).into();
    let lic = License::verify(
        r["license"].as_str().unwrap(),
        &s.producer_keys(),
        now,
        &[two],
    )
    .unwrap();
    assert_eq!(lic.claims().policy.as_ref().unwrap().grace_days, 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_story_on_sqlite() {
    story(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_story_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("producer_story_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(Some(db.url())).await;
    db.cleanup().await.unwrap();
}

async fn parallel_activations(database: Option<&str>) {
    let s = Server::start(database, Some(10_000)).await;
    let (customer, _) = catalogue(&s).await;
    let (_, ent) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/entitlements",
            Some(json!({"customer_id": customer, "lines": [
            {"product": "cad", "model": "node_locked", "count": 5}]})),
        )
        .await;
    let key = ent["lines"][0]["key"].as_str().unwrap().to_string();
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for n in 0..24u8 {
        let s = s.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            s.public(
                "/api/v1/activate/device",
                json!({"key": key, "pc_id": pc(100 + n).to_string()}),
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (st, r) = t.await.unwrap();
        match st {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(problem_code(&r), "count_exhausted");
                refused += 1
            }
            other => panic!("{other}: {r}"),
        }
    }
    assert_eq!((ok, refused), (5, 19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_activations_yield_exactly_the_limit_on_sqlite() {
    parallel_activations(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_activations_yield_exactly_the_limit_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("parallel_activations_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    parallel_activations(Some(db.url())).await;
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_problems_and_change_nothing() {
    let s = Server::start(None, Some(5)).await;
    // no token
    let resp = s.http.get(s.url("/api/v1/products")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    // malformed JSON
    let resp = s
        .http
        .post(s.url("/api/v1/products"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "malformed_json"
    );
    // unknown field
    let (st, r) = s
        .admin(
            reqwest::Method::POST,
            "/api/v1/products",
            Some(json!({"id": "x", "features": [{"name": "a"}], "colour": "red"})),
        )
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    assert!(r["detail"].as_str().unwrap().contains("colour"), "{r}");
    // oversized body
    let big = json!({"id": "x".repeat(100_000), "features": []});
    let (st, r) = s
        .admin(reqwest::Method::POST, "/api/v1/products", Some(big))
        .await;
    assert_eq!(
        (st, problem_code(&r)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let (_, products) = s
        .admin(reqwest::Method::GET, "/api/v1/products", None)
        .await;
    assert_eq!(products, json!([]), "nothing was created");
    // an oversized request file, a query that does not parse: problems too
    let resp = s
        .http
        .post(s.url("/api/v1/offline"))
        // answered before the body is read, the connection is closed: keep it out of the pool
        .header("connection", "close")
        .body("x".repeat(100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = s
        .http
        .get(s.url("/api/v1/keys?limit=many"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "invalid_request"
    );
    // public endpoints are rate-limited (5 a minute here)
    let mut codes = Vec::new();
    for _ in 0..7 {
        let (st, _) = s
            .public(
                "/api/v1/trials",
                json!({"product": "none", "pc_id": pc(1).to_string()}),
            )
            .await;
        codes.push(st);
    }
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        2,
        "{codes:?}"
    );
}

#[tokio::test]
async fn health_metrics_openapi_and_tokens() {
    let s = Server::start(None, None).await;
    assert_eq!(
        s.http
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let doc: Value = s
        .http
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/api/v1/products",
        "/api/v1/activate/server",
        "/api/v1/activate/device",
        "/api/v1/offline",
        "/api/v1/unlock",
        "/api/v1/trials",
        "/activate",
        "/offline",
        "/healthz",
        "/api/v1/keys/{key}/revoke",
    ] {
        assert!(paths.contains(&p), "{p} is not documented: {paths:?}");
    }
    // a token from the admin password printed at init is refused for a wrong password
    let resp = s
        .http
        .post(s.url("/api/v1/auth/token"))
        .json(&json!({"username": "admin", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("tessera_http_requests_total{method=\"POST\",route=\"/api/v1/auth/token\",status=\"401\"} 1"), "{m}");
    // the activation page renders
    let page = s
        .http
        .get(s.url("/activate"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("PC identifier") && page.contains("Example Software Ltd."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_given_certificate() {
    let data = BackOfficeKit::new().bare().init().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = data.dir.join("cert.pem");
    let key_path = data.dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let (bo, config) = data.open().await;
    let state = daemon::state(bo, &config);
    // a free port: bind, read it, release it for the TLS server
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tls = daemon::TlsConfig {
        cert: cert_path,
        key: key_path,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        daemon::serve_tls(addr, &tls, state, async move {
            let _ = rx.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        match client
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
        {
            Ok(r) => {
                answer = Some(r.text().await.unwrap());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert_eq!(answer.as_deref(), Some("ok"));
    // plain HTTP on the TLS port is not served
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}
