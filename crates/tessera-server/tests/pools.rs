//! Named license pools through the real server: the seed's model uploaded (as it stands, then with
//! rules for two departments), devices of each department served from their pool, the pools view
//! showing it, a bad model refused with its line and column and the policy in force unchanged,
//! reservations and pools refusing each other, the model kept across a restart, deleted.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_testkit::{BackOfficeKit, ServerKit};
use tessera_wire::KeyCount;

const FEATURE: &str = "eb-feature-android-eval";

/// The seed's model (docs/model-language.md, "The reference model"), verbatim.
const SEED: &str = r#"
model "exampleModelDefinition" {
  // Total feature count of eb-feature-android-eval: 8
  // Default partition shall get 0 lic and 8 in below partitions
  partitions {
    partition "0800 - PUNE" {
      "eb-feature-android-eval" 2.0 3 // P1 license count = 3
    }
    partition "0800 - PUNE" {
      "eb-feature-android-eval" 2.0 2 // P1 license count = 2
    }
    partition "2200 - NECKARSULM" {
      "eb-feature-android-eval" 2.0 3 // P1 license count = 2
    }
    partition "4600 - BRUSSELS" {
      "eb-feature-android-eval" 2.0 2 // P1 license count = 1
    }
    partition "1400 - KASSEL" {
      "eb-feature-android-eval" 2.0 1 // P1 license count = 4
    }
  }
}
"#;

/// The seed's model with rules of access for two departments: Pune's machines by hostid, Kassel's
/// by the attribute their clients send.
fn seed_with_rules() -> String {
    let end = SEED.rfind('}').unwrap();
    format!(
        "{}  rules {{\n    hostid \"string=pune-*\" => \"0800 - PUNE\"\n    attribute \"department\" = \"kassel\" => \"1400 - KASSEL\"\n  }}\n}}\n",
        &SEED[..end]
    )
}

struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some((ty, b)) = body {
            r = r.header("content-type", ty).body(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn upload(&self, text: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/v1/admin/pools/model",
            Some(("text/plain", text.to_string())),
        )
        .await
    }

    async fn view(&self) -> Value {
        let (st, v) = self
            .call(reqwest::Method::GET, "/api/v1/admin/pools", None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    async fn reserve(&self) -> (StatusCode, Value) {
        let doc = json!({"groups": [{"name": "Lab", "reservations": [
            {"holder": "string=lab-1", "entries": [{"feature": FEATURE, "version": "2.0", "count": 1}]}]}]});
        self.call(
            reqwest::Method::POST,
            "/api/v1/admin/reservations",
            Some(("application/json", doc.to_string())),
        )
        .await
    }
}

/// (allocated, used) of `pool` in the pools view (`default` for the default pool).
fn used(view: &Value, pool: &str) -> (u64, u64) {
    let row = view["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pool"] == pool)
        .unwrap_or_else(|| panic!("no row for {pool}: {view}"));
    (
        row["allocated"].as_u64().unwrap(),
        row["used"].as_u64().unwrap(),
    )
}

/// Asks for one seat as `device` (with `attributes`); whether it was granted, or the denial code.
async fn ask(url: &str, device: &str, attributes: Value) -> Result<(), String> {
    let id = device.replace('=', "-");
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(
            &json!({"operation": "request", "device_id": device, "request_id": id,
            "nonce": format!("nonce-{id}-0123456789"), "attributes": attributes,
            "features": [{"name": FEATURE, "version": "2.0"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    let claims = answer["response"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    match claims["denials"].as_array().unwrap().first() {
        Some(d) => Err(d["code"].as_str().unwrap().to_string()),
        None => {
            assert_eq!(claims["grants"][0]["feature"], FEATURE);
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departments_draw_from_their_pools_and_the_model_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bo = BackOfficeKit::new()
        .in_dir(&dir.path().join("bo"))
        .features(json!([{"name": FEATURE, "version": "2.0"}]))
        .floating(14)
        .start()
        .await;
    let data = ServerKit::new(dir.path(), &bo.producer_pem()).init().await;
    let server = data.start().await;
    server
        .activate(&bo.url, &[KeyCount::new(&bo.keys[0], 14)])
        .await;
    let admin = Admin {
        url: server.url.clone(),
        token: data.token.clone(),
        http: reqwest::Client::new(),
    };

    // no model: one default pool, nothing to show
    let v = admin.view().await;
    assert_eq!(
        (v["in_force"].clone(), v["pools"].clone()),
        (json!(false), json!([]))
    );
    let (st, p) = admin
        .call(reqwest::Method::GET, "/api/v1/admin/pools/model", None)
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_pool_model"))
    );

    // the seed's model as it stands: 11 of the 14 seats in four pools, with the warning that
    // nobody is sent to them
    let (st, v) = admin.upload(SEED).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "exampleModelDefinition");
    assert_eq!(v["in_force"], true);
    assert!(
        v["warnings"].to_string().contains("no rules of access"),
        "{v}"
    );
    assert_eq!(used(&v, "0800 - PUNE"), (5, 0));
    assert_eq!(used(&v, "2200 - NECKARSULM"), (3, 0));
    assert_eq!(used(&v, "4600 - BRUSSELS"), (2, 0));
    assert_eq!(used(&v, "1400 - KASSEL"), (1, 0));
    assert_eq!(used(&v, "default"), (3, 0));
    let row = &v["pools"][0];
    assert_eq!(
        (row["feature"].as_str(), row["version"].as_str()),
        (Some(FEATURE), Some("2.0"))
    );
    assert!(
        row["expiry"].is_string() && row["status"] == "available",
        "{row}"
    );

    // with rules for Pune (by hostid) and Kassel (by attribute)
    let model = seed_with_rules();
    let (st, v) = admin.upload(&model).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        !v["warnings"].to_string().contains("no rules of access"),
        "{v}"
    );
    let (st, m) = admin
        .call(reqwest::Method::GET, "/api/v1/admin/pools/model", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(m["text"], model.as_str());
    assert_eq!(m["name"], "exampleModelDefinition");

    // strangers share the default pool's 3
    let url = server.url.clone();
    let none = json!({});
    let kassel = json!({"department": "kassel"});
    for d in ["string=x1", "string=x2"] {
        assert_eq!(ask(&url, d, none.clone()).await, Ok(()));
    }
    // Pune's five machines take Pune's 5; a sixth falls back on the default pool's last seat
    for i in 1..=6 {
        assert_eq!(
            ask(&url, &format!("string=pune-{i}"), none.clone()).await,
            Ok(()),
            "pune-{i}"
        );
    }
    let v = admin.view().await;
    assert_eq!(used(&v, "0800 - PUNE"), (5, 5));
    assert_eq!(used(&v, "default"), (3, 3));
    assert_eq!(
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pool"] == "0800 - PUNE")
            .unwrap()["status"],
        "full"
    );
    // a stranger is refused while 6 seats sit free in other departments' pools
    assert_eq!(
        ask(&url, "string=x3", none.clone()).await,
        Err("all_in_use".into())
    );
    // Kassel's machine, by its attribute, takes Kassel's seat; a second finds none left
    assert_eq!(ask(&url, "string=k1", kassel.clone()).await, Ok(()));
    assert_eq!(
        ask(&url, "string=k2", kassel.clone()).await,
        Err("all_in_use".into())
    );
    let v = admin.view().await;
    assert_eq!(used(&v, "1400 - KASSEL"), (1, 1));
    assert_eq!(used(&v, "2200 - NECKARSULM"), (3, 0));

    // a bad model is refused with its line and column; the model in force is unchanged
    let bad = model.replace(
        "\"0800 - PUNE\" {\n      \"eb-feature-android-eval\" 2.0 3",
        "\"0800 - PUNE\" {\n      \"eb-feature-android-eval\" 2.0 x",
    );
    assert_ne!(bad, model);
    let (st, p) = admin.upload(&bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "invalid_model");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("line 7, column 37"), "{detail}");
    assert!(detail.contains("expected a count"), "{detail}");
    // over-allocated: 100 seats for Pune of 14
    let over = model.replace("2.0 3 // P1 license count = 3", "2.0 100");
    let (st, p) = admin.upload(&over).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_model"))
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("the model is refused: line 7, column 7"),
        "{p}"
    );
    let after = admin.view().await;
    assert_eq!(after, v);
    let (_, m) = admin
        .call(reqwest::Method::GET, "/api/v1/admin/pools/model", None)
        .await;
    assert_eq!(m["text"], model.as_str());

    // reservations are refused while the model is in force, saying what to delete
    let (st, p) = admin.reserve().await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("pools_active"))
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("tessera server pools delete"),
        "{p}"
    );

    // kept across a restart: in force, each lease counted back in the pool it was granted from
    // (Pune's by hostid; Kassel's by the attribute its client sent, kept with the lease)
    let server = data.restart(server).await;
    let admin = Admin {
        url: server.url.clone(),
        ..admin
    };
    let v = admin.view().await;
    assert_eq!(
        (v["model"].as_str(), v["in_force"].as_bool()),
        (Some("exampleModelDefinition"), Some(true)),
        "{v}"
    );
    assert_eq!(used(&v, "0800 - PUNE"), (5, 5));
    assert_eq!(used(&v, "1400 - KASSEL"), (1, 1));
    assert_eq!(used(&v, "default"), (3, 3));
    assert_ne!(
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["default"] == true)
            .unwrap()["status"],
        "over",
        "{v}"
    );
    assert_eq!(
        ask(&server.url, "string=x4", none.clone()).await,
        Err("all_in_use".into())
    );
    // Kassel's one seat is still held: another Kassel machine finds its pool and the default full
    assert_eq!(
        ask(&server.url, "string=k3", kassel.clone()).await,
        Err("all_in_use".into())
    );

    // deleted: one default pool; the seats the pools held are anybody's
    let (st, v) = admin
        .call(reqwest::Method::DELETE, "/api/v1/admin/pools/model", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["model"].is_null() && v["pools"] == json!([]), "{v}");
    assert_eq!(ask(&server.url, "string=x5", none.clone()).await, Ok(()));

    // now reservations may be added, and a model is refused while they exist
    let (st, r) = admin.reserve().await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, p) = admin.upload(&model).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("reservations_active"))
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("tessera server reservations clear"),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("\"Lab\""),
        "the refusal names the group to delete: {p}"
    );
    assert!(admin.view().await["model"].is_null());
    let (st, _) = admin
        .call(reqwest::Method::DELETE, "/api/v1/admin/reservations", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = admin.upload(&model).await;
    assert_eq!(
        (st, v["in_force"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );

    // documented in the OpenAPI document; the admin token guards it
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/api/v1/admin/pools", "/api/v1/admin/pools/model"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/api/v1/admin/pools/model"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/admin/pools/model"]["delete"].is_object());
    let stranger = Admin {
        token: "tss_wrong".into(),
        ..admin
    };
    let (st, _) = stranger.upload(SEED).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
