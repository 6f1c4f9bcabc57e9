//! The back office's mail as a user meets it: the demo form's key, an unlock code sent from the
//! /activate page, and the producer's over-use notice after a usage report, all delivered to a
//! real SMTP server (aiosmtpd) on loopback by the running server's outbox worker.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::offline::encode_key;
use tessera_core::usage::{FeatureUsage, UsageReportClaims};
use tessera_core::{ActivationKey, Clock, HostId, Keyring, License, PcId, SigningKey};
use tessera_host::SystemClock;
use tessera_testkit::{BackOfficeKit, TestBackOffice};

mod support;
use support::smtp::{free_port, SmtpServer};

struct Office {
    base: String,
    token: String,
    office: TestBackOffice,
    http: reqwest::Client,
}

async fn start(smtp_port: Option<u16>) -> Office {
    let mut kit = BackOfficeKit::new()
        .bare()
        .issuer("Example Software Ltd.")
        .outbox_worker();
    if let Some(port) = smtp_port {
        kit = kit.config(&format!(
            "notify_email = \"licensing@example.test\"\n[mail]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"Example Licensing <licensing@example.test>\"\n"
        ));
    }
    let office = kit.start().await;
    Office {
        base: office.url.clone(),
        token: office.admin_token.clone(),
        office,
        http: reqwest::Client::new(),
    }
}

impl Office {
    async fn admin(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    fn keys(&self) -> Keyring {
        Keyring::with(self.office.producer_key())
    }

    async fn product(&self) -> String {
        self.admin("/api/v1/products", json!({"id": "cad", "name": "ACME CAD", "features": [{"name": "modeler"}, {"name": "render"}], "demo_days": 14})).await;
        let c = self
            .admin("/api/v1/customers", json!({"name": "ACME"}))
            .await;
        c["id"].as_str().unwrap().to_string()
    }
}

fn pc(n: u8) -> PcId {
    let id: HostId = format!("machine_id={}", format!("{n:02x}").repeat(16))
        .parse()
        .unwrap();
    PcId::derive("cad", &[id]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_key_unlock_code_and_over_use_notice_arrive_by_mail() {
    if !SmtpServer::available("demo_key_unlock_code_and_over_use_notice_arrive_by_mail") {
        return;
    }
    let port = free_port();
    let mut smtp = SmtpServer::start(port, false).await;
    let o = start(Some(port)).await;
    let customer = o.product().await;
    let now = SystemClock.now();

    // --- the demo form: the key arrives by mail and activates every feature for 14 days
    let resp = o
        .http
        .post(format!("{}/demo", o.base))
        .form(&[
            ("name", "Ada Lovelace"),
            ("company", "Analytical Engines"),
            ("email", "ada@engines.example"),
            ("product", "cad"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    assert!(page.contains("on its way to ada@engines.example"), "{page}");
    let mail = smtp.next_mail().await;
    assert_eq!(mail["to"], "ada@engines.example");
    assert_eq!(mail["subject"], "Your cad demo key");
    let body = mail["body"].as_str().unwrap();
    let key = body
        .lines()
        .map(str::trim)
        .find_map(|l| ActivationKey::parse(l).ok())
        .unwrap_or_else(|| panic!("no key in the mail: {body}"));
    assert!(
        !page.contains(&key.to_string()),
        "the key is only sent by mail"
    );
    // a second demo for the same address and product is refused
    let again = o
        .http
        .post(format!("{}/api/v1/demo", o.base))
        .json(&json!({"name": "Ada", "email": "ada@engines.example", "product": "cad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let resp: Value = o
        .http
        .post(format!("{}/api/v1/activate/device", o.base))
        .json(&json!({"key": key.to_string(), "pc_id": pc(1).to_string()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: HostId = (&pc(1)).into();
    let demo = License::verify(resp["license"].as_str().unwrap(), &o.keys(), now, &[me]).unwrap();
    assert_eq!(demo.features().len(), 2, "full features");
    let exp = demo.claims().exp.unwrap();
    assert!(
        exp > now + tessera_core::time::Duration::days(13)
            && exp
                <= now
                    + tessera_core::time::Duration::days(14)
                    + tessera_core::time::Duration::minutes(1)
    );

    // --- an unlock code with a copy by mail
    let ent = o.admin("/api/v1/entitlements", json!({"customer_id": customer, "lines": [{"product": "cad", "model": "node_locked", "count": 1}]})).await;
    let k = ent["lines"][0]["key"].as_str().unwrap().to_string();
    let page = o
        .http
        .post(format!("{}/activate", o.base))
        .form(&[
            ("key", k.as_str()),
            ("pc_id", pc(2).to_string().as_str()),
            ("email", "user@acme.example"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("A copy was sent to user@acme.example"),
        "{page}"
    );
    let code = page
        .split("id=\"unlock-code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let mail = smtp.next_mail().await;
    assert_eq!(mail["to"], "user@acme.example");
    assert!(mail["body"].as_str().unwrap().contains(&code), "{mail}");

    // --- a usage report over the entitlement: renewed bundle, and the producer is told once
    let ent = o.admin("/api/v1/entitlements", json!({"customer_id": customer, "lines": [{"product": "cad", "model": "floating", "count": 3}]})).await;
    let fk = ent["lines"][0]["key"].as_str().unwrap().to_string();
    let server = SigningKey::generate(&mut rand::rngs::OsRng);
    let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let act: Value = o
        .http
        .post(format!("{}/api/v1/activate/server", o.base))
        .json(&json!({"server_hostid": host.to_string(), "server_key": encode_key(&server.public()), "activations": [{"key": fk, "count": 3}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cert = act["certificate"].as_str().unwrap().to_string();
    ServerCertificateClaims::verify(&cert, &o.keys(), now).unwrap();
    let report = UsageReportClaims {
        jti: "usage-1".into(),
        iat: now,
        server_hostid: host.clone(),
        certificate: cert,
        period_start: now - tessera_core::time::Duration::days(1),
        period_end: now,
        features: vec![
            FeatureUsage {
                name: "modeler".into(),
                peak: 5,
                in_use: 2,
                metered_units: 0,
                overdraft_peak: 0,
            },
            FeatureUsage {
                name: "render".into(),
                peak: 1,
                in_use: 0,
                metered_units: 0,
                overdraft_peak: 0,
            },
        ],
        devices: vec!["ethernet=0050569a3b99".into()],
        users: vec!["alice".into()],
    }
    .sign(&server)
    .unwrap();
    let post = |body: String| {
        let http = o.http.clone();
        let url = format!("{}/api/v1/usage", o.base);
        async move {
            http.post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let outcome = post(report.clone()).await;
    assert_eq!(outcome["recorded"], true, "{outcome}");
    assert_eq!(outcome["over_use"][0]["feature"], "modeler");
    assert_eq!(outcome["over_use"][0]["licensed"], 3);
    let renewed = License::verify(
        outcome["renewal"]["license"].as_str().unwrap(),
        &o.keys(),
        now,
        std::slice::from_ref(&host),
    )
    .unwrap();
    assert!(renewed.claims().exp.unwrap() > now + tessera_core::time::Duration::days(29));
    let notice = smtp.next_mail().await;
    assert_eq!(notice["to"], "licensing@example.test");
    assert!(
        notice["subject"].as_str().unwrap().starts_with("Over-use"),
        "{notice}"
    );
    assert!(
        notice["body"]
            .as_str()
            .unwrap()
            .contains("modeler: peak 5 with 3 licensed"),
        "{notice}"
    );
    // the same report again: recorded once, no second notice
    let again = post(report).await;
    assert_eq!(again["recorded"], false);
    let list: Value = o
        .http
        .get(format!("{}/api/v1/usage", o.base))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["over_use"], true);
    // no further mail within a short wait
    let extra = tokio::time::timeout(Duration::from_millis(500), smtp.next_mail()).await;
    assert!(extra.is_err(), "a second notice was sent: {extra:?}");
}

#[tokio::test]
async fn demo_form_without_mail_says_so() {
    let o = start(None).await;
    o.product().await;
    let resp = o
        .http
        .post(format!("{}/api/v1/demo", o.base))
        .json(&json!({"name": "Ada", "email": "ada@engines.example", "product": "cad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["code"], "mail_not_configured");
    // and nothing was created for it
    let customers: Value = o
        .http
        .get(format!("{}/api/v1/customers", o.base))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(customers.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn forged_usage_reports_are_refused() {
    let o = start(None).await;
    let now = SystemClock.now();
    // a certificate made by another producer
    let rogue_producer = SigningKey::generate(&mut rand::rngs::OsRng);
    let server = SigningKey::generate(&mut rand::rngs::OsRng);
    let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let cert = ServerCertificateClaims {
        jti: "c".into(),
        iss: "rogue".into(),
        sub: "ACME".into(),
        iat: now,
        exp: now + tessera_core::time::Duration::days(30),
        server_hostid: host.clone(),
        server_key: ServerCertificateClaims::encode_key(&server.public()),
    }
    .issue(&rogue_producer)
    .unwrap();
    let report = UsageReportClaims {
        jti: "u".into(),
        iat: now,
        server_hostid: host,
        certificate: cert,
        period_start: now,
        period_end: now,
        features: vec![],
        devices: vec![],
        users: vec![],
    }
    .sign(&server)
    .unwrap();
    let resp = o
        .http
        .post(format!("{}/api/v1/usage", o.base))
        .body(report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["code"], "invalid_document");
    assert!(
        p["detail"].as_str().unwrap().contains("unknown key id"),
        "{p}"
    );
}

#[tokio::test]
async fn offline_renewal_with_a_usage_report_file() {
    use tessera_core::offline::{RequestBody, RequestClaims, ResponseClaims};
    let o = start(None).await;
    let customer = o.product().await;
    let now = SystemClock.now();
    let ent = o.admin("/api/v1/entitlements", json!({"customer_id": customer, "lines": [{"product": "cad", "model": "floating", "count": 4, "policy": {"grace_days": 30, "renewal_days": 7, "offline_max_days": 30, "offline_refresh_days": 14, "offline_max_active": 3}}]})).await;
    let key = ent["lines"][0]["key"].as_str().unwrap().to_string();
    let server = SigningKey::generate(&mut rand::rngs::OsRng);
    let host: HostId = "ethernet=0050569a3b07".parse().unwrap();
    // activation offline too: the server signs its request with the key it asks to certify
    let kid = o.office.producer_key().kid().to_string();
    let request = RequestClaims {
        jti: "act-1".into(),
        iat: now,
        aud: kid.clone(),
        requester_key: String::new(),
        body: RequestBody::ServerActivation {
            server_hostid: host.clone(),
            server_key: encode_key(&server.public()),
            activations: vec![tessera_core::offline::KeyCount { key, count: 4 }],
        },
    }
    .sign(&server)
    .unwrap();
    let respond = |body: String| {
        let http = o.http.clone();
        let url = format!("{}/api/v1/offline", o.base);
        async move {
            http.post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let response = ResponseClaims::verify(&respond(request).await, &o.keys(), now).unwrap();
    let first = License::verify(
        &response.license,
        &o.keys(),
        now,
        std::slice::from_ref(&host),
    )
    .unwrap();
    assert_eq!(
        first.claims().exp.unwrap().unix_timestamp() - now.unix_timestamp(),
        7 * 86400,
        "expires one renewal period out"
    );
    let cert = response.certificate.unwrap();
    // a renewal request carrying a usage report
    let report = UsageReportClaims {
        jti: "usage-offline-1".into(),
        iat: now,
        server_hostid: host.clone(),
        certificate: cert,
        period_start: now,
        period_end: now,
        features: vec![FeatureUsage {
            name: "modeler".into(),
            peak: 2,
            in_use: 1,
            metered_units: 0,
            overdraft_peak: 0,
        }],
        devices: vec![],
        users: vec![],
    }
    .sign(&server)
    .unwrap();
    let renewal = RequestClaims {
        jti: "renew-1".into(),
        iat: now,
        aud: kid,
        requester_key: String::new(),
        body: RequestBody::Renewal {
            server_hostid: host.clone(),
            usage_report: Some(report),
        },
    }
    .sign(&server)
    .unwrap();
    let answer = ResponseClaims::verify(&respond(renewal).await, &o.keys(), now).unwrap();
    assert_eq!(answer.in_reply_to, "renew-1");
    let renewed =
        License::verify(&answer.license, &o.keys(), now, std::slice::from_ref(&host)).unwrap();
    assert_eq!(
        renewed
            .features()
            .iter()
            .filter_map(|f| f.count.get())
            .max(),
        Some(4)
    );
    let list: Value = o
        .http
        .get(format!("{}/api/v1/usage", o.base))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["id"], "usage-offline-1");
    assert_eq!(list[0]["over_use"], false);
}

/// The outbox message sent to `to`, once the worker has recorded its delivery.
async fn delivered_to(o: &Office, to: &str) -> tessera_store::OutboxMessage {
    use tessera_store::OutboxStore as _;
    let bo = o.office.office.clone();
    // the mail reaches the SMTP server a moment before the worker records it as sent
    for _ in 0..500 {
        let sent = bo
            .store()
            .list_messages(
                tessera_store::OutboxFilter::Sent,
                tessera_store::Page::first(100),
            )
            .await
            .unwrap();
        if let Some(m) = sent.into_iter().find(|m| m.recipient == to) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery to {to} was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_keys_and_codes_leave_the_outbox_and_a_demo_is_one_per_address_whatever_its_case()
{
    if !SmtpServer::available(
        "delivered_keys_and_codes_leave_the_outbox_and_a_demo_is_one_per_address_whatever_its_case",
    ) {
        return;
    }
    let port = free_port();
    let mut smtp = SmtpServer::start(port, false).await;
    let o = start(Some(port)).await;
    let customer = o.product().await;
    let demo = |email: &str| {
        let http = o.http.clone();
        let url = format!("{}/api/v1/demo", o.base);
        let body = json!({"name": "Grace", "email": email, "product": "cad"});
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // a malformed address is invalid_email, as documented, and nothing is queued
    for bad in [
        "grace",
        "grace@",
        "@navy.example",
        "grace@@navy.example",
        "grace navy@x.example",
    ] {
        let (st, p) = demo(bad).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_email")),
            "{bad}: {p}"
        );
    }

    // the demo key arrives by mail…
    let (st, p) = demo("Grace.Hopper@Navy.Example").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{p}");
    let mail = smtp.next_mail().await;
    assert_eq!(mail["to"], "Grace.Hopper@Navy.Example");
    let key = mail["body"]
        .as_str()
        .unwrap()
        .lines()
        .map(str::trim)
        .find_map(|l| ActivationKey::parse(l).ok())
        .expect("a key in the mail")
        .to_string();
    // …and once delivered the outbox keeps the mail without it
    let kept = delivered_to(&o, "Grace.Hopper@Navy.Example").await;
    assert!(!kept.body.contains(&key), "{}", kept.body);
    assert!(
        kept.body.contains(tessera_backoffice::service::REDACTED),
        "{}",
        kept.body
    );
    assert!(kept.body.starts_with("Hello Grace,"), "the rest is kept");

    // one demo per address: the same address in another case is the same address
    for same in [
        "grace.hopper@navy.example",
        "GRACE.HOPPER@NAVY.EXAMPLE",
        " Grace.Hopper@navy.EXAMPLE ",
    ] {
        let (st, p) = demo(same).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::CONFLICT, Some("conflict")),
            "{same}: {p}"
        );
    }
    // another address is another demo
    let (st, _) = demo("ada@navy.example").await;
    assert_eq!(st, StatusCode::ACCEPTED);
    smtp.next_mail().await;

    // an unlock code mailed from the /activate page leaves the outbox once delivered too
    let ent = o.admin("/api/v1/entitlements", json!({"customer_id": customer, "lines": [{"product": "cad", "model": "node_locked", "count": 1}]})).await;
    let k = ent["lines"][0]["key"].as_str().unwrap().to_string();
    let resp = o
        .http
        .post(format!("{}/activate", o.base))
        .form(&[
            ("key", k.as_str()),
            ("pc_id", pc(3).to_string().as_str()),
            ("email", "user@acme.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mail = smtp.next_mail().await;
    assert_eq!(mail["to"], "user@acme.example");
    let kept = delivered_to(&o, "user@acme.example").await;
    let code_line = mail["body"]
        .as_str()
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .trim()
        .to_string();
    assert!(!code_line.is_empty() && mail["body"].as_str().unwrap().contains(&code_line));
    assert!(!kept.body.contains(&code_line), "{}", kept.body);
    assert!(kept.body.contains(tessera_backoffice::service::REDACTED));
}
