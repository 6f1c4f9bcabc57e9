//! A license server that never goes online: activated with files, renewed with an update request
//! carrying its usage report, and confirming to the back office which license it serves; each
//! file through the admin API, answered by the back office's `/api/v1/offline`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};

struct Admin {
    url: String,
    token: String,
}

impl Admin {
    /// POSTs to an admin route; status and body text.
    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let mut r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    async fn apply(&self, response: &str) -> (StatusCode, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/admin/offline-apply", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "text/plain")
            .body(response.to_string())
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }
}

/// The back office's answer to a request file.
async fn respond(bo_url: &str, request: &str) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .post(format!("{bo_url}/api/v1/offline"))
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn license_of(response: &str) -> tessera_core::LicenseClaims {
    let r: tessera_core::offline::ResponseClaims = tessera_core::document::decode_unverified(
        response,
        tessera_core::DocumentType::OfflineResponse,
    )
    .unwrap();
    tessera_core::document::decode_unverified(&r.license, tessera_core::DocumentType::License)
        .unwrap()
}

async fn take(url: &str, device: &str, id: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(&json!({"operation": "request", "device_id": device, "request_id": id,
            "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler", "version": "1.0", "count": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert!(v["response"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_goes_online_renews_reports_and_confirms_with_files() {
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(json!([{"name": "modeler", "version": "2.0"}]))
        .floating(4)
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem())
        .hostid("ethernet=0050569a3b01")
        .init()
        .await;
    let server = data.start().await;
    let admin = Admin {
        url: server.url.clone(),
        token: data.token.clone(),
    };

    // nothing to renew or confirm before an activation
    for path in [
        "/api/v1/admin/offline-update-request",
        "/api/v1/admin/offline-confirmation",
    ] {
        let (st, p) = admin.post(path, None).await;
        assert_eq!(st, StatusCode::CONFLICT, "{path}: {p}");
        assert!(p.contains("not_activated"), "{p}");
    }

    // activated with files
    let (st, request) = admin
        .post(
            "/api/v1/admin/offline-request",
            Some(json!({"activations": [{"key": bo.keys[0], "count": 4}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{request}");
    let (st, response) = respond(&bo.url, &request).await;
    assert_eq!(st, StatusCode::OK, "{response}");
    let first = license_of(&response);
    let (st, applied) = admin.apply(&response).await;
    assert_eq!(st, StatusCode::OK, "{applied}");

    // two seats in use, then an update request carries that use to the back office
    take(&server.url, "string=a", "r1").await;
    take(&server.url, "string=b", "r2").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a later issue time
    let (st, update) = admin
        .post("/api/v1/admin/offline-update-request", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{update}");
    let claims = tessera_core::offline::RequestClaims::verify(&update, bo.clock.now()).unwrap();
    assert!(matches!(
        claims.body,
        tessera_core::offline::RequestBody::Renewal {
            usage_report: Some(_),
            ..
        }
    ));
    let (st, renewal) = respond(&bo.url, &update).await;
    assert_eq!(st, StatusCode::OK, "{renewal}");
    let renewed = license_of(&renewal);
    assert_ne!(renewed.jti, first.jti);
    assert!(renewed.iat > first.iat);
    let reports = bo
        .office
        .list_usage(tessera_store::Page::first(50))
        .await
        .unwrap();
    let report = reports
        .iter()
        .find(|r| r.reporter.contains("0050569a3b01"))
        .unwrap_or_else(|| panic!("no report from the server: {reports:?}"));
    let modeler = report.report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "modeler")
        .unwrap();
    assert_eq!(modeler["peak"], 2, "{}", report.report);
    // the server restarts before the response comes back: it still knows the request it sent
    let server = data.restart(server).await;
    let admin = Admin {
        url: server.url.clone(),
        token: data.token.clone(),
    };
    let store = tessera_store::open(&tessera_store::sqlite_url_for_data_dir(&data.data))
        .await
        .unwrap();
    use tessera_store::MetaStore;
    assert_eq!(
        store.get_setting("offline.update_pending").await.unwrap(),
        Some(claims.jti.clone())
    );
    let (st, applied) = admin.apply(&renewal).await;
    assert_eq!(st, StatusCode::OK, "{applied}");
    // answered: the next report starts afresh, and the confirmation will name the request
    assert_eq!(
        store.get_setting("offline.update_pending").await.unwrap(),
        Some(String::new())
    );
    assert_eq!(
        store.get_setting("offline.last_applied").await.unwrap(),
        Some(claims.jti.clone())
    );
    // a response from someone else's request, or a forged one, is refused; nothing changes
    let (st, p) = admin.apply(&renewal.replace('A', "B")).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");

    // the confirmation: the back office records the license the server serves
    let (st, confirmation) = admin.post("/api/v1/admin/offline-confirmation", None).await;
    assert_eq!(st, StatusCode::OK, "{confirmation}");
    let (st, ack) = respond(&bo.url, &confirmation).await;
    assert_eq!(st, StatusCode::OK, "{ack}");
    assert!(
        ack.starts_with("confirmed: license server ethernet=0050569a3b01 serves license")
            && ack.contains(&renewed.jti)
            && ack.contains(&claims.jti),
        "{ack}"
    );
    let host: tessera_core::HostId = "ethernet=0050569a3b01".parse().unwrap();
    let (license, _) = bo
        .office
        .server_confirmation(&host)
        .await
        .unwrap()
        .expect("the confirmation is recorded");
    assert_eq!(license, renewed.jti);

    // a confirmation signed by another key for this server is refused, and the record stands
    let other = tessera_core::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = tessera_core::offline::RequestClaims {
        jti: "forged-confirmation".into(),
        iat: bo.clock.now(),
        aud: bo.producer_key().kid().to_string(),
        requester_key: String::new(),
        body: tessera_core::offline::RequestBody::Confirmation {
            server_hostid: host.clone(),
            license: "LIC-forged".into(),
            in_reply_to: None,
        },
    }
    .sign(&other)
    .unwrap();
    let (st, p) = respond(&bo.url, &forged).await;
    assert!(st.is_client_error(), "{st}: {p}");
    let (license, _) = bo.office.server_confirmation(&host).await.unwrap().unwrap();
    assert_eq!(license, renewed.jti);

    // the audit log shows the exchange
    let audit: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/admin/audit?limit=50", server.url))
        .bearer_auth(&data.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "offline_request",
        "offline_apply",
        "offline_update_request",
        "offline_confirmation",
        "offline_apply_failed",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}
