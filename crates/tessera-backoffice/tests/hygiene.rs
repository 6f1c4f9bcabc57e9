//! What the back office refuses or adds whoever asks: control characters in names and e-mail
//! addresses, lengths and counts out of bounds (a demo of 4294967295 days once made every demo
//! request panic after creating an orphan customer), unknown paths and wrong methods as
//! problem+json, and security headers on the public pages.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_store::BackOfficeStore;
use tessera_testkit::{BackOfficeKit, TestBackOffice};

struct Office {
    base: String,
    token: String,
    bo: tessera_backoffice::service::BackOffice<tessera_store::AnyStore>,
    _office: TestBackOffice,
}

/// A back office with mail configured (queued only: no worker delivers it), serving on a free port.
async fn start() -> Office {
    let office = BackOfficeKit::new()
        .bare()
        .config("[mail]\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\nfrom = \"Licensing <licensing@example.test>\"\n")
        .start()
        .await;
    Office {
        base: office.url.clone(),
        token: office.admin_token.clone(),
        // the same store, for what the test checks and plants behind the API
        bo: office.office.clone(),
        _office: office,
    }
}

impl Office {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, String, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, r.json().await.unwrap_or(Value::Null))
    }

    /// Asserts a 422 problem naming `field`.
    async fn refused(&self, path: &str, body: Value, field: &str) {
        let (status, ct, v) = self.post(path, body.clone()).await;
        assert_eq!(status, 422, "{path} {body}: {v}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["code"], "invalid_request", "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("{field}:")),
            "{field}: {detail}"
        );
    }

    async fn customers(&self) -> usize {
        self.bo.list_customers().await.unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_unbounded_numbers_are_refused() {
    let o = start().await;
    let features = json!([{"name": "modeler"}]);
    // products
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD\u{1b}[2J", "features": features}),
        "name",
    )
    .await;
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD\u{202e}dxf", "features": features}),
        "name",
    )
    .await;
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD", "features": features, "version": "1\n2"}),
        "version",
    )
    .await;
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD", "features": [{"name": "mod\teler"}]}),
        "features",
    )
    .await;
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD", "features": features, "demo_days": 4294967295u32}),
        "demo_days",
    )
    .await;
    o.refused(
        "/api/v1/products",
        json!({"id": "cad", "name": "CAD", "features": features, "trial_days": 0}),
        "trial_days",
    )
    .await;
    let (status, _, v) = o
        .post(
            "/api/v1/products",
            json!({"id": "cad", "name": "CAD Suite", "features": features, "demo_days": 3650}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    // customers
    o.refused(
        "/api/v1/customers",
        json!({"name": "ACME\r\nX-Injected: 1"}),
        "name",
    )
    .await;
    o.refused(
        "/api/v1/customers",
        json!({"name": "ACME", "email": "buyer@acme.example\r\nBcc: all@example.test"}),
        "email",
    )
    .await;
    o.refused(
        "/api/v1/customers",
        json!({"name": "A".repeat(201)}),
        "name",
    )
    .await;
    let (status, _, c) = o
        .post(
            "/api/v1/customers",
            json!({"name": "ACME", "email": "buyer@acme.example"}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    // entitlements: counts bounded
    let customer = c["id"].as_str().unwrap();
    for (line, what) in [
        (
            json!({"product": "cad", "model": "floating", "count": 2_000_000}),
            "count",
        ),
        (
            json!({"product": "cad", "model": "floating", "count": 5, "overdraft": 4294967295u32}),
            "overdraft",
        ),
        (
            json!({"product": "cad", "model": "floating", "count": 5, "features": ["mod\u{7f}eler"]}),
            "feature",
        ),
    ] {
        let (status, _, v) = o
            .post(
                "/api/v1/entitlements",
                json!({"customer_id": customer, "lines": [line]}),
            )
            .await;
        assert_eq!(status, 422, "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("lines[0]:") && detail.contains(what),
            "{detail}"
        );
    }
    // users
    let err = tessera_backoffice::auth::create_user(
        o.bo.store(),
        "eve\u{1b}]0;owned\u{7}",
        "a long enough password",
        o.bo.now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("name:"), "{err}");
    // the public demo form
    let before = o.customers().await;
    for (body, field) in [
        (
            json!({"name": "Ada\u{0}", "email": "ada@example.test", "product": "cad"}),
            "name",
        ),
        (
            json!({"name": "Ada", "company": "Engines\u{85}", "email": "ada@example.test", "product": "cad"}),
            "company",
        ),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/demo", o.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{v}"
        );
    }
    assert_eq!(
        o.customers().await,
        before,
        "nothing made by a refused demo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_too_long_for_the_calendar_fails_cleanly_and_leaves_no_customer() {
    let o = start().await;
    // a product stored before demo_days was bounded (written straight to the store)
    o.bo.store()
        .create_product(tessera_store::backoffice::ProductRecord {
            id: "old".into(),
            name: "Old CAD".into(),
            spec_json: json!({"features": [{"name": "modeler", "version": "1.0"}], "trial_days": 60, "basic_features": [], "demo_days": 4294967295u32}).to_string(),
            created_at: o.bo.now(),
        })
        .await
        .unwrap();
    let before = o.customers().await;
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/demo", o.base))
            .json(&json!({"name": "Ada", "email": "ada@example.test", "product": "old"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "invalid_request", "{v}");
        assert!(
            v["detail"].as_str().unwrap().starts_with("demo_days:"),
            "{v}"
        );
    }
    assert_eq!(o.customers().await, before, "no orphan customer");
    // the longest demo allowed works
    let (status, _, v) = o
        .post(
            "/api/v1/products",
            json!({"id": "cad", "name": "CAD", "features": [{"name": "modeler"}], "demo_days": 3650}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/demo", o.base))
        .json(&json!({"name": "Ada", "email": "ada@example.test", "product": "cad"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(o.customers().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_wrong_methods_and_page_headers() {
    let o = start().await;
    let r = reqwest::get(format!("{}/no/such/page", o.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_found");
    let r = reqwest::Client::new()
        .delete(format!("{}/activate", o.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "method_not_allowed");
    for page in ["/activate", "/offline", "/demo"] {
        let r = reqwest::get(format!("{}{page}", o.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}
