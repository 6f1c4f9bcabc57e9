//! Client keys, signed capability requests and the administrator's key and seat actions, through
//! the real server: keys uploaded (RSA-2048 as SPKI or PKCS#1, Ed25519), refused (RSA-1024, an EC
//! key, garbage) with nothing stored and every upload audited; with `require_signed_requests`
//! only requests signed by a registered key are served; without it unsigned ones are; a stuck
//! seat released by lease or by device is free for another client and stays released across a
//! restart; the start-up token rotated; a second producer key trusted, a bundle signed by it
//! accepted, the last one kept.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit, TestBackOffice};
use tessera_wire::signing::{signed_message, RequestSignature, SignatureAlg};
use tessera_wire::KeyCount;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/client-keys")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(url: &str, token: &str) -> Admin {
        Admin {
            url: url.into(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn upload(&self, der: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/admin/client-keys", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(der)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let (_, page) = self
            .call(Method::GET, "/api/v1/admin/audit?limit=1000", None)
            .await;
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn request_body(device: &str, id: &str) -> Vec<u8> {
    json!({"operation": "request", "device_id": device, "request_id": id,
        "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler"}]})
    .to_string()
    .into_bytes()
}

/// Sends a capability request body with a signature header (or none); the status and the body.
async fn send(url: &str, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        r = r.header("Tessera-Signature", s);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The features granted by an answer, and the denial codes.
fn granted(answer: &Value) -> (Vec<String>, Vec<String>) {
    let claims: Value = tessera_testkit::answer_claims(answer);
    let g = claims["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["feature"].as_str().unwrap().to_string())
        .collect();
    let d = claims["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect();
    (g, d)
}

fn lease_of(answer: &Value) -> u64 {
    let claims: Value = tessera_testkit::answer_claims(answer);
    claims["grants"][0]["lease"].as_u64().unwrap()
}

async fn back_office(dir: &std::path::Path, seats: u32) -> TestBackOffice {
    BackOfficeKit::new()
        .in_dir(dir)
        .features(json!([{"name": "modeler", "version": "2.0"}]))
        .floating(seats)
        .start()
        .await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_signed_by_a_registered_key_are_served_when_the_policy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bo = back_office(&dir.path().join("bo"), 10).await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .config("require_signed_requests = true\n")
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 10)])
        .await;
    let admin = Admin::new(&server.url, &data.token);
    let url = server.url.clone();

    // keys that are not RSA-2048 or Ed25519 are refused, saying what they are; nothing stored
    for (file, says) in [
        ("rsa1024.spki.der", "1024 bits"),
        ("ec-p256.spki.der", "elliptic-curve"),
    ] {
        let (st, p) = admin.upload(fixture(file)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{file}: {p}");
        assert_eq!(p["code"], "invalid_client_key");
        assert!(p["detail"].as_str().unwrap().contains(says), "{file}: {p}");
    }
    let (st, p) = admin.upload(b"this is not a key at all".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("not a DER-encoded public key"),
        "{p}"
    );
    let (_, list) = admin
        .call(Method::GET, "/api/v1/admin/client-keys", None)
        .await;
    assert_eq!(list, json!([]), "nothing stored");

    // RSA-2048 as SubjectPublicKeyInfo; the same key as PKCS#1 is the same key
    let spki = fixture("rsa2048.spki.der");
    let (st, rsa) = admin.upload(spki.clone()).await;
    assert_eq!(st, StatusCode::OK, "{rsa}");
    let rsa_id = rsa["id"].as_str().unwrap().to_string();
    assert_eq!(rsa_id, tessera_wire::signing::fingerprint(&spki));
    assert_eq!(rsa["algorithm"], "rsa-2048");
    assert_eq!(rsa["added_by"], "admin");
    let (st, p) = admin.upload(fixture("rsa2048.pkcs1.der")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "client_key_exists");
    assert!(p["detail"].as_str().unwrap().contains(&rsa_id), "{p}");

    let rsa_key =
        tessera_client::signing::RequestSigner::from_pkcs8(&fixture("rsa2048.pem")).unwrap();
    assert_eq!(rsa_key.key_id(), rsa_id);
    let ed_key =
        tessera_client::signing::RequestSigner::from_pkcs8(&fixture("ed25519.pem")).unwrap();

    // unsigned: refused
    let (st, p) = send(&url, request_body("string=u1", "u1"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "signature_required");
    // signed by the registered RSA key (PSS): served
    let body = request_body("string=r1", "r1");
    let sig = rsa_key.header(now(), &body).unwrap();
    let (st, answer) = send(&url, body.clone(), Some(sig.clone())).await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    assert_eq!(granted(&answer).0, vec!["modeler".to_string()]);
    // the same signature over another body: refused
    let (st, p) = send(&url, request_body("string=r2", "r2"), Some(sig)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "signature_invalid");
    // PKCS#1 v1.5 with the same key: served
    let v15 = tessera_client::signing::RequestSigner::from_pkcs8(&fixture("rsa2048.pem"))
        .unwrap()
        .pkcs1_v15();
    let body = request_body("string=r3", "r3");
    let (st, answer) = send(&url, body.clone(), Some(v15.header(now(), &body).unwrap())).await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    // a signature made far from the server's clock: refused (bounds replay)
    let (st, p) = send(
        &url,
        body.clone(),
        Some(rsa_key.header(now() - 3600, &body).unwrap()),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "signature_invalid");
    assert!(p["detail"].as_str().unwrap().contains("clock"), "{p}");
    // a header that does not read
    let (st, p) = send(&url, body.clone(), Some("keyid=x".into())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert_eq!(p["code"], "signature_invalid");
    // an alg that does not fit the key
    let mut wrong = RequestSignature::parse(&rsa_key.header(now(), &body).unwrap()).unwrap();
    wrong.alg = SignatureAlg::Ed25519;
    let (st, p) = send(&url, body.clone(), Some(wrong.header_value())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("does not fit"),
        "{p}"
    );

    // Ed25519: unknown until registered, then served
    let body = request_body("string=e1", "e1");
    let (st, p) = send(
        &url,
        body.clone(),
        Some(ed_key.header(now(), &body).unwrap()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(p["code"], "unknown_client_key");
    let (st, ed) = admin.upload(fixture("ed25519.spki.der")).await;
    assert_eq!(st, StatusCode::OK, "{ed}");
    assert_eq!(ed["algorithm"], "ed25519");
    assert_eq!(ed["id"], ed_key.key_id());
    let created = now();
    let (st, answer) = send(
        &url,
        body.clone(),
        Some(ed_key.header(created, &body).unwrap()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    // a signature of the message by hand, as another language would make it
    let mut by_hand = RequestSignature::parse(&ed_key.header(created, &body).unwrap()).unwrap();
    assert_eq!(by_hand.sig.len(), 64);
    by_hand.sig[0] ^= 1;
    let (st, p) = send(&url, body.clone(), Some(by_hand.header_value())).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_invalid"))
    );
    assert!(!signed_message(created, &body).is_empty());

    // listed; deleted: its requests are refused again; deleting again is a 404
    let (_, list) = admin
        .call(Method::GET, "/api/v1/admin/client-keys", None)
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&rsa_id.as_str()) && ids.contains(&ed_key.key_id()));
    let (st, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/client-keys/{rsa_id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let body = request_body("string=r4", "r4");
    let (st, p) = send(
        &url,
        body.clone(),
        Some(rsa_key.header(now(), &body).unwrap()),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_client_key"))
    );
    let (st, p) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/client-keys/{rsa_id}"),
            None,
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_client_key"))
    );

    // a read-only user sees the keys but may not upload one
    let (st, _) = admin
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"name": "viewer", "role": "read_only"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, made) = admin
        .call(
            Method::POST,
            "/api/v1/admin/tokens",
            Some(json!({"name": "ro", "user": "viewer"})),
        )
        .await;
    assert!(st.is_success(), "{st}: {made}");
    let viewer = Admin::new(&url, made["token"].as_str().unwrap());
    let (st, list) = viewer
        .call(Method::GET, "/api/v1/admin/client-keys", None)
        .await;
    assert_eq!(
        (st, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (st, p) = viewer.upload(fixture("rsa2048.spki.der")).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("access_denied"))
    );

    // every upload, refusal and delete is in the audit log
    let actions = admin.audit_actions().await;
    let count = |a: &str| actions.iter().filter(|(x, _)| x == a).count();
    assert_eq!(count("client_key_add"), 2, "{actions:?}");
    assert_eq!(count("client_key_add_failed"), 4, "{actions:?}");
    assert_eq!(count("client_key_delete"), 1, "{actions:?}");
    assert_eq!(count("client_key_delete_failed"), 1, "{actions:?}");
    assert!(actions
        .iter()
        .any(|(a, d)| a == "client_key_add_failed" && d.contains("1024 bits")));

    // kept across a restart: the Ed25519 key still serves, the deleted one is still refused
    let server = data.restart(server).await;
    let body = request_body("string=e2", "e2");
    let (st, _) = send(
        &server.url,
        body.clone(),
        Some(ed_key.header(now(), &body).unwrap()),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = send(
        &server.url,
        body.clone(),
        Some(rsa_key.header(now(), &body).unwrap()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_are_served_when_the_policy_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let bo = back_office(&dir.path().join("bo"), 2).await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 2)])
        .await;
    let (st, answer) = send(&server.url, request_body("string=a", "a"), None).await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    assert_eq!(granted(&answer).0, vec!["modeler".to_string()]);
    // a signature header is not even read
    let (st, _) = send(
        &server.url,
        request_body("string=b", "b"),
        Some("garbage".into()),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // keys can still be registered ahead of turning the policy on
    let admin = Admin::new(&server.url, &data.token);
    let (st, _) = admin.upload(fixture("ed25519.spki.der")).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_seats_go_to_others_and_stay_released_across_a_restart() {
    release_story(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_seats_stay_released_on_postgres() {
    let Some(base) = tessera_store::testing::postgres_test_url_or_skip(
        "released_seats_stay_released_on_postgres",
    )
    .unwrap() else {
        return;
    };
    let db = tessera_store::testing::TempPostgres::create(&base)
        .await
        .unwrap();
    release_story(Some(db.url())).await;
    db.cleanup().await.unwrap();
}

async fn release_story(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let bo = back_office(&dir.path().join("bo"), 2).await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .database(database)
        .init()
        .await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 2)])
        .await;
    let admin = Admin::new(&server.url, &data.token);
    let url = server.url.clone();
    let ask = |device: &str, id: &str| {
        let url = url.clone();
        let body = request_body(device, id);
        async move {
            let (st, a) = send(&url, body, None).await;
            assert_eq!(st, StatusCode::OK, "{a}");
            a
        }
    };

    // two seats: a and b hold them (b two users on one device: one seat each? one seat here)
    let a = ask("string=dev-a", "a1").await;
    let a_lease = lease_of(&a);
    let _b = ask("string=dev-b", "b1").await;
    assert_eq!(
        granted(&ask("string=dev-c", "c1").await).1,
        vec!["all_in_use"]
    );

    // the leases, as the administrator sees them
    let (st, held) = admin.call(Method::GET, "/api/v1/admin/leases", None).await;
    assert_eq!(st, StatusCode::OK);
    let held: Vec<(u64, String)> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lease"].as_u64().unwrap(),
                l["device"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(held.len(), 2);
    assert!(
        held.contains(&(a_lease, "string=dev-a".to_string())),
        "{held:?}"
    );

    // by lease: a's seat is free for c
    let (st, r) = admin
        .call(
            Method::POST,
            "/api/v1/admin/leases/release",
            Some(json!({"lease": a_lease})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["released"][0]["lease"], a_lease);
    assert_eq!(r["released"][0]["device"], "string=dev-a");
    assert_eq!(r["released"][0]["feature"], "modeler");
    assert_eq!(granted(&ask("string=dev-c", "c2").await).0, vec!["modeler"]);
    // releasing it again: nothing held
    let (st, p) = admin
        .call(
            Method::POST,
            "/api/v1/admin/leases/release",
            Some(json!({"lease": a_lease})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_lease"))
    );
    // neither or both: refused
    let (st, _) = admin
        .call(
            Method::POST,
            "/api/v1/admin/leases/release",
            Some(json!({"lease": 1, "device": "string=dev-b"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // by device: b's seat is free for d
    assert_eq!(
        granted(&ask("string=dev-d", "d1").await).1,
        vec!["all_in_use"]
    );
    let (st, r) = admin
        .call(
            Method::POST,
            "/api/v1/admin/leases/release",
            Some(json!({"device": "string=dev-b"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["released"].as_array().unwrap().len(), 1);
    assert_eq!(granted(&ask("string=dev-d", "d2").await).0, vec!["modeler"]);
    let actions = admin.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|(a, _)| a == "lease_release").count(),
        2,
        "{actions:?}"
    );

    // after a restart the released leases stay gone: c and d hold the two seats, nobody else
    let server = data.restart(server).await;
    let admin = Admin::new(&server.url, &data.token);
    let (_, status) = admin.call(Method::GET, "/api/v1/admin/status", None).await;
    assert_eq!(status["leases"], 2, "{status}");
    let (st, again) = send(&server.url, request_body("string=dev-e", "e1"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(granted(&again).1, vec!["all_in_use"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_token_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let bo = back_office(&dir.path().join("bo"), 1).await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    let old = Admin::new(&server.url, &data.token);
    let (st, made) = old
        .call(Method::POST, "/api/v1/admin/token/rotate", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert_ne!(token, data.token);
    assert_eq!(made["user"], "admin");
    let (st, p) = old.call(Method::GET, "/api/v1/admin/status", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{p}");
    let new = Admin::new(&server.url, &token);
    let (st, _) = new.call(Method::GET, "/api/v1/admin/status", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(new
        .audit_actions()
        .await
        .iter()
        .any(|(a, _)| a == "token_rotate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_key_is_trusted_and_the_last_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bo = back_office(&dir.path().join("bo"), 1).await;
    // the producer's second signing key: a back office of its own here
    let bo2 = back_office(&dir.path().join("bo2"), 3).await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    let admin = Admin::new(&server.url, &data.token);
    let first = bo.producer_key().kid().to_string();
    let second = bo2.producer_key().kid().to_string();

    let (st, list) = admin
        .call(Method::GET, "/api/v1/admin/producer-keys", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["kid"], first.as_str());
    assert_eq!(list[0]["added_by"], "init");
    // the only key cannot go
    let (st, p) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/producer-keys/{first}"),
            None,
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_producer_key"))
    );

    // a bundle signed by the second key is refused until that key is trusted
    let activate = |token: String, url: String, keys: Vec<KeyCount>, bo_url: String| async move {
        reqwest::Client::new()
            .post(format!("{url}/api/v1/admin/activate"))
            .bearer_auth(token)
            .json(&json!({"backoffice": bo_url, "activations": keys}))
            .send()
            .await
            .unwrap()
            .status()
    };
    let keys2 = vec![KeyCount::new(&bo2.keys[0], 3)];
    let st = activate(
        data.token.clone(),
        server.url.clone(),
        keys2.clone(),
        bo2.url.clone(),
    )
    .await;
    assert!(!st.is_success(), "{st}");
    let (st, p) = admin
        .call(
            Method::POST,
            "/api/v1/admin/producer-keys",
            Some(json!({"public_key": "not a key"})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_producer_key")
        )
    );
    let (st, added) = admin
        .call(
            Method::POST,
            "/api/v1/admin/producer-keys",
            Some(json!({"public_key": bo2.producer_pem()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{added}");
    assert_eq!(added["kid"], second.as_str());
    let st = activate(
        data.token.clone(),
        server.url.clone(),
        keys2,
        bo2.url.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, status) = admin.call(Method::GET, "/api/v1/admin/status", None).await;
    assert_eq!(status["activated"], true, "{status}");

    // the key the installed bundle needs cannot go; the first one can, then the last cannot
    let (st, p) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/producer-keys/{second}"),
            None,
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("producer_key_in_use"))
    );
    let (st, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/producer-keys/{first}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/producer-keys/{second}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        ["last_producer_key", "producer_key_in_use"].contains(&p["code"].as_str().unwrap()),
        "{p}"
    );

    // a restart serves the bundle signed by the second key (its trust is stored)
    let server = data.restart(server).await;
    let admin = Admin::new(&server.url, &data.token);
    let (_, list) = admin
        .call(Method::GET, "/api/v1/admin/producer-keys", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["kid"], second.as_str());
    let (_, status) = admin.call(Method::GET, "/api/v1/admin/status", None).await;
    let features = status["features"].as_array().unwrap();
    assert_eq!(features[0]["count"], 3, "{status}");
    let actions = admin.audit_actions().await;
    for a in [
        "producer_key_add",
        "producer_key_add_failed",
        "producer_key_remove",
        "producer_key_remove_failed",
    ] {
        assert!(actions.iter().any(|(x, _)| x == a), "{a}: {actions:?}");
    }
}
