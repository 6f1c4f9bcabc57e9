//! The async API (feature `tokio`) against a real back office and license server: a seat checked
//! out and kept alive by a task on the caller's runtime, then returned; checks without blocking.
#![cfg(feature = "tokio")]

use std::sync::Arc;

use serde_json::json;
use tessera_client::{Client, ClientConfig};
use tessera_core::{DeviceType, HostId};
use tessera_host::{HostIdentity, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_checkout_heartbeat_and_return() {
    use tessera_backoffice::daemon as bo;
    let bo_dir = tempfile::tempdir().unwrap();
    bo::init(bo_dir.path(), None, None, &SystemClock)
        .await
        .unwrap();
    let (office, config) = bo::open(bo_dir.path(), None, Arc::new(SystemClock))
        .await
        .unwrap();
    office
        .create_product(
            "cad",
            "CAD",
            serde_json::from_value(
                json!({"features": [{"name": "modeler"}], "basic_features": []}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let c = office.create_customer("ACME", None).await.unwrap();
    let e = office
        .create_entitlement(
            &c.id,
            vec![serde_json::from_value(
                json!({"product": "cad", "model": "floating", "count": 1}),
            )
            .unwrap()],
        )
        .await
        .unwrap();
    let key = e.lines[0].key.clone().unwrap();
    let state = bo::state(office, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bo_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(bo::serve_on(listener, state, std::future::pending()));

    let srv = tempfile::tempdir().unwrap();
    let pem = std::fs::read_to_string(bo_dir.path().join("keys/producer.pub")).unwrap();
    tessera_server::daemon::init(srv.path(), &pem, None, Some("ethernet=0050569a3b01"))
        .await
        .unwrap();
    let mut cfg = std::fs::read_to_string(srv.path().join("server.toml"))
        .unwrap()
        .replace("lease_seconds = 300", "lease_seconds = 3");
    cfg.push_str(&format!(
        "anchor_dir = \"{}\"\n",
        srv.path().join("anchors").display()
    ));
    std::fs::write(srv.path().join("server.toml"), cfg).unwrap();
    let server = tessera_server::daemon::open(srv.path(), Arc::new(SystemClock))
        .await
        .unwrap();
    server.activate(&bo_url, &[(key, 1)]).await.unwrap();
    let state = tessera_server::http::state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(tessera_server::http::serve_on(
        listener,
        state,
        std::future::pending(),
    ));

    let client = |n: u8| {
        let id = HostIdentity {
            ids: vec![format!("machine_id={}", format!("{n:02x}").repeat(16))
                .parse::<HostId>()
                .unwrap()],
            device_type: DeviceType::Physical,
            evidence: vec![],
        };
        let dir = srv.path().join(format!("app{n}"));
        Client::with(
            ClientConfig::new("cad", &pem)
                .unwrap()
                .state_dirs(dir.join("s"), dir.join("b")),
            Arc::new(SystemClock),
            id,
        )
        .unwrap()
    };
    let seat = client(1)
        .checkout_async(&url, "modeler", "1.0")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert!(
        seat.renewals() >= 2,
        "renewed {} times by the task",
        seat.renewals()
    );
    assert!(
        client(2)
            .checkout_async(&url, "modeler", "1.0")
            .await
            .is_err(),
        "the one seat is still held"
    );
    // the same truth as a Seat: held, with its lease's end, known to check()
    assert!(!seat.is_lost());
    assert_eq!(seat.state(), tessera_client::SeatState::Held);
    assert!(seat.lease_expires() > seat.last_renewal());
    seat.release().await.unwrap();
    let again = client(2)
        .checkout_async(&url, "modeler", "1.0")
        .await
        .unwrap();
    again.release().await.unwrap();
    // dropping an AsyncSeat returns it (from the blocking pool): a client waiting in line gets it
    let c4 = client(4);
    let held = c4.checkout_async(&url, "modeler", "1.0").await.unwrap();
    assert_eq!(
        c4.check_async("modeler", "1.0").await.unwrap().source,
        tessera_client::GrantSource::Seat
    );
    drop(held);
    let next = client(5)
        .checkout_async_with(
            &tessera_client::Checkout::new("modeler", "1.0")
                .server(&url)
                .wait_in_line(std::time::Duration::from_secs(30)),
        )
        .await
        .unwrap();
    next.release().await.unwrap();
    // a check without a license, trial or seat: the error, without blocking the runtime
    assert!(client(3).check_async("modeler", "1.0").await.is_err());
}
