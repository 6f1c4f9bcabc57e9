//! The async API (feature `tokio`) against a real back office and license server: a seat checked
//! out and kept alive by a task on the caller's runtime, then returned; checks without blocking.
#![cfg(feature = "tokio")]

use std::sync::Arc;

use serde_json::json;
use tessera_client::{Client, ClientConfig};
use tessera_host::SystemClock;
use tessera_testkit::{machine, BackOfficeKit, KeyCount, ServerKit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_checkout_heartbeat_and_return() {
    let bo = BackOfficeKit::new()
        .product(json!({"features": [{"name": "modeler"}], "basic_features": []}))
        .floating(1)
        .start()
        .await;
    let pem = bo.producer_pem();
    let srv = tempfile::tempdir().unwrap();
    let running = ServerKit::new(srv.path(), &pem)
        .lease_seconds(3)
        .init()
        .await
        .activate_and_start_at(
            &bo.url,
            &[KeyCount::new(bo.keys[0].clone(), 1)],
            "127.0.0.1:0",
        )
        .await;
    let url = running.url.clone();

    let client = |n: u8| {
        let id = machine(n);
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
