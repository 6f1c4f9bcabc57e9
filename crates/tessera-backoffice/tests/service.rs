//! Licensing rules at the service level, with a clock that moves: server identity binding, request
//! ids, all-or-nothing multi-key activation, terms across re-hosting, uncounted lines, bounds.

use std::sync::Arc;

use tessera_backoffice::model::{LicenseModel, LinePolicy, ProductFeature, ProductSpec};
use tessera_backoffice::service::{BackOffice, NewLine, ServiceError};
use tessera_core::offline::{encode_key, KeyCount, RequestBody, RequestClaims};
use tessera_core::time::Duration;
use tessera_core::{Clock, HostId, ManualClock, PcId, SigningKey};
use tessera_host::SystemClock;
use tessera_store::AnyStore;
use tessera_testkit::{BackOfficeKit, TestBackOffice};

/// A back office on a manual clock with product `cad` (feature `modeler`, 60 trial days, 30 demo
/// days); the kit's handle keeps it (and its data) alive.
async fn office() -> (BackOffice<AnyStore>, Arc<ManualClock>, TestBackOffice) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let spec = ProductSpec {
        features: vec![ProductFeature {
            name: "modeler".into(),
            version: Default::default(),
        }],
        version: None,
        trial_days: 60,
        basic_features: vec![],
        demo_days: 30,
    };
    let office = BackOfficeKit::new()
        .product(serde_json::to_value(spec).unwrap())
        .clock(clock.clone())
        .start()
        .await;
    (office.office.clone(), clock, office)
}

fn policy(model: LicenseModel, count: u32) -> LinePolicy {
    LinePolicy {
        features: vec![],
        count,
        model,
        starts_at: None,
        expires_at: None,
        term_days: None,
        overdraft: 0,
        policy: Default::default(),
        demo: false,
    }
}

async fn keys(bo: &BackOffice<AnyStore>, customer: &str, lines: Vec<LinePolicy>) -> Vec<String> {
    let e = bo
        .create_entitlement(
            customer,
            lines
                .into_iter()
                .map(|policy| NewLine {
                    product: "cad".into(),
                    policy,
                })
                .collect(),
        )
        .await
        .unwrap();
    e.lines.into_iter().map(|l| l.key.unwrap()).collect()
}

fn code(e: ServiceError) -> String {
    match e {
        ServiceError::Refused(r) => r.code().to_string(),
        ServiceError::Conflict { .. } => "conflict".into(),
        ServiceError::Invalid { .. } => "invalid_request".into(),
        ServiceError::NotFound { .. } => "not_found".into(),
        other => format!("{other:?}"),
    }
}

fn pc(n: u8) -> String {
    let id: HostId = format!("machine_id={}", format!("{n:02x}").repeat(16))
        .parse()
        .unwrap();
    PcId::derive("cad", &[id]).unwrap().to_string()
}

#[tokio::test]
async fn a_server_host_id_is_bound_to_its_first_key() {
    let (bo, clock, data) = office().await;
    let victim = bo.create_customer("Victim", None).await.unwrap();
    let attacker = bo.create_customer("Attacker", None).await.unwrap();
    let vk = keys(&bo, &victim.id, vec![policy(LicenseModel::Floating, 5)]).await;
    let ak = keys(&bo, &attacker.id, vec![policy(LicenseModel::Floating, 1)]).await;
    let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let server = SigningKey::generate(&mut rand::rngs::OsRng);
    let rogue = SigningKey::generate(&mut rand::rngs::OsRng);
    bo.activate_server(
        &host,
        &encode_key(&server.public()),
        &[KeyCount {
            key: vk[0].clone(),
            count: 5,
        }],
    )
    .await
    .unwrap();

    // another key for the same host id, even with keys of its own: refused
    let err = bo
        .activate_server(
            &host,
            &encode_key(&rogue.public()),
            &[KeyCount {
                key: ak[0].clone(),
                count: 1,
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "server_key_mismatch");
    // the right key cannot mix in another customer's keys
    let err = bo
        .activate_server(
            &host,
            &encode_key(&server.public()),
            &[KeyCount {
                key: ak[0].clone(),
                count: 1,
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "other_customer");
    // a key-only renewal signed by another key: refused
    let kid = data.producer_key().kid().to_string();
    let renewal = |signer: &SigningKey, jti: &str| {
        RequestClaims {
            jti: jti.into(),
            iat: clock.now(),
            aud: kid.clone(),
            requester_key: String::new(),
            body: RequestBody::Renewal {
                server_hostid: host.clone(),
                usage_report: None,
            },
        }
        .sign(signer)
        .unwrap()
    };
    assert_eq!(
        code(
            bo.offline_respond(&renewal(&rogue, "r1"))
                .await
                .unwrap_err()
        ),
        "server_key_mismatch"
    );
    assert!(bo.offline_respond(&renewal(&server, "r2")).await.is_ok());
    // re-hosting the server frees the host id for a new key
    bo.rehost(&vk[0], Some(&format!("server:{host}")))
        .await
        .unwrap();
    bo.activate_server(
        &host,
        &encode_key(&rogue.public()),
        &[KeyCount {
            key: vk[0].clone(),
            count: 5,
        }],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_id_is_answered_for_its_own_request_only() {
    let (bo, clock, data) = office().await;
    let c = bo.create_customer("ACME", None).await.unwrap();
    let k = keys(
        &bo,
        &c.id,
        vec![
            policy(LicenseModel::NodeLocked, 1),
            policy(LicenseModel::NodeLocked, 1),
        ],
    )
    .await;
    let kid = data.producer_key().kid().to_string();
    let request = |signer: &SigningKey, key: &str, pc_id: String| {
        RequestClaims {
            jti: "same-id".into(),
            iat: clock.now(),
            aud: kid.clone(),
            requester_key: String::new(),
            body: RequestBody::DeviceActivation {
                key: key.into(),
                pc_id,
                product: None,
            },
        }
        .sign(signer)
        .unwrap()
    };
    let a = SigningKey::generate(&mut rand::rngs::OsRng);
    let b = SigningKey::generate(&mut rand::rngs::OsRng);
    let first = bo
        .offline_respond(&request(&a, &k[0], pc(1)))
        .await
        .unwrap();
    assert_eq!(
        bo.offline_respond(&request(&a, &k[0], pc(1)))
            .await
            .unwrap(),
        first,
        "a replay gets the same answer"
    );
    assert_eq!(
        code(
            bo.offline_respond(&request(&b, &k[1], pc(2)))
                .await
                .unwrap_err()
        ),
        "conflict"
    );
}

#[tokio::test]
async fn a_refused_key_leaves_what_the_server_held() {
    let (bo, _clock, _data) = office().await;
    let c = bo.create_customer("ACME", None).await.unwrap();
    let k = keys(
        &bo,
        &c.id,
        vec![
            policy(LicenseModel::Floating, 10),
            policy(LicenseModel::Floating, 3),
        ],
    )
    .await;
    let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let server = encode_key(&SigningKey::generate(&mut rand::rngs::OsRng).public());
    bo.activate_server(
        &host,
        &server,
        &[KeyCount {
            key: k[0].clone(),
            count: 5,
        }],
    )
    .await
    .unwrap();
    let err = bo
        .activate_server(
            &host,
            &server,
            &[
                KeyCount {
                    key: k[0].clone(),
                    count: 8,
                },
                KeyCount {
                    key: k[1].clone(),
                    count: 50,
                },
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "count_exhausted");
    let held: Vec<i64> = bo
        .list_keys(tessera_store::Page {
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap()
        .iter()
        .map(|l| l.used)
        .collect();
    assert!(held.contains(&5) && held.contains(&0), "{held:?}");
}

#[tokio::test]
async fn a_term_runs_from_the_first_activation_even_after_rehosting() {
    let (bo, clock, _data) = office().await;
    let c = bo.create_customer("ACME", None).await.unwrap();
    let mut p = policy(LicenseModel::NodeLocked, 1);
    p.term_days = Some(30);
    let k = keys(&bo, &c.id, vec![p]).await;
    bo.activate_device(&k[0], &pc(1), None).await.unwrap();
    clock.advance(Duration::days(29));
    bo.rehost(&k[0], None).await.unwrap();
    bo.activate_device(&k[0], &pc(2), None).await.unwrap();
    clock.advance(Duration::days(2));
    assert_eq!(
        code(bo.activate_device(&k[0], &pc(2), None).await.unwrap_err()),
        "entitlement_expired"
    );
}

#[tokio::test]
async fn uncounted_lines_activate_and_absurd_terms_are_refused() {
    let (bo, _clock, _data) = office().await;
    let c = bo.create_customer("ACME", None).await.unwrap();
    let k = keys(&bo, &c.id, vec![policy(LicenseModel::Uncounted, 0)]).await;
    let host: HostId = "ethernet=0050569a3b01".parse().unwrap();
    let server = encode_key(&SigningKey::generate(&mut rand::rngs::OsRng).public());
    bo.activate_server(
        &host,
        &server,
        &[KeyCount {
            key: k[0].clone(),
            count: 1,
        }],
    )
    .await
    .unwrap();
    let mut p = policy(LicenseModel::NodeLocked, 1);
    p.term_days = Some(u32::MAX);
    let err = bo
        .create_entitlement(
            &c.id,
            vec![NewLine {
                product: "cad".into(),
                policy: p,
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "invalid_request");
    assert_eq!(
        code(bo.create_customer("X", Some("a@")).await.unwrap_err()),
        "invalid_request"
    );
}

#[tokio::test]
async fn applications_post_usage_reports_signed_with_their_registered_key() {
    use tessera_core::usage::{FeatureUsage, UsageReportClaims};
    let (bo, clock, _data) = office().await;
    let c = bo.create_customer("ACME", None).await.unwrap();
    let k = keys(
        &bo,
        &c.id,
        vec![
            policy(LicenseModel::NodeLocked, 1),
            policy(LicenseModel::Metered, 100),
        ],
    )
    .await;
    let device = SigningKey::generate(&mut rand::rngs::OsRng);
    let pc_id = pc(9);
    let host: HostId = format!("pc_id={pc_id}").parse().unwrap();
    bo.activate_device_with_key(&k[0], &pc_id, None, Some(&encode_key(&device.public())))
        .await
        .unwrap();
    // the metered line is held by the same device (a metered key activated on it)
    let target = format!("device:{host}");
    let line = bo.find_line(&k[1]).await.unwrap();
    tessera_store::BackOfficeStore::activate(
        bo.store(),
        &line.id,
        &target,
        1,
        1,
        "ACT-m",
        clock.now(),
    )
    .await
    .unwrap();
    let report = |signer: &SigningKey, jti: &str, units: u64| {
        UsageReportClaims {
            jti: jti.into(),
            iat: clock.now(),
            server_hostid: host.clone(),
            certificate: String::new(),
            period_start: clock.now(),
            period_end: clock.now(),
            features: vec![FeatureUsage {
                name: "modeler".into(),
                peak: 1,
                in_use: 1,
                metered_units: units,
                overdraft_peak: 0,
            }],
            devices: vec![],
            users: vec![],
        }
        .sign(signer)
        .unwrap()
    };
    let ok = bo.usage_report(&report(&device, "u1", 40)).await.unwrap();
    assert!(ok.recorded && ok.over_use.is_empty() && ok.renewal.is_none());
    let over = bo.usage_report(&report(&device, "u2", 140)).await.unwrap();
    assert_eq!(over.over_use.len(), 1);
    assert_eq!(over.over_use[0].licensed, 100);
    // signed by another key: refused
    let rogue = SigningKey::generate(&mut rand::rngs::OsRng);
    assert!(matches!(
        bo.usage_report(&report(&rogue, "u3", 1)).await,
        Err(ServiceError::BadDocument(_))
    ));
    let listed = bo
        .list_usage(tessera_store::Page {
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|u| u.over_use));
}
