//! Floating seats from a real license server (activated from a real back office): checkout up to
//! the count, a clear refusal beyond it, the heartbeat keeping a lease alive past its length, return
//! on drop, a restarted server keeping the seat without a second one, and a fake server refused.

use std::sync::Arc;

use serde_json::json;
use tessera_client::{
    Checkout, Client, ClientConfig, ClientError, GrantSource, ManualClock, RefusalCode, SeatEvent,
    SeatState,
};
use tessera_core::Clock;
use tessera_core::DeviceType;
use tessera_host::{HostIdentity, SystemClock};
use tessera_testkit::{
    machine, producer_key, BackOfficeKit, KeyCount, ServerData, ServerKit, TestBackOffice,
};

/// Waits (boundedly, so a broken heartbeat fails the test instead of hanging it) for an event
/// matching `want`, skipping others.
fn wait_for(
    events: &std::sync::mpsc::Receiver<SeatEvent>,
    want: impl Fn(&SeatEvent) -> bool,
) -> SeatEvent {
    loop {
        let e = events
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("no such seat event");
        if want(&e) {
            return e;
        }
    }
}

struct Env {
    rt: tokio::runtime::Runtime,
    bo: TestBackOffice,
    srv_dir: tempfile::TempDir,
    srv: ServerData,
}

/// A back office with product `cad` (feature `modeler`) and a floating line of 2 seats, and a
/// license server data directory (3-second leases, one borrow per account) trusting it.
fn env() -> Env {
    let rt = tessera_testkit::runtime();
    let bo = rt.block_on(
        BackOfficeKit::new()
            .features(json!([{"name": "modeler"}]))
            .floating(2)
            .start(),
    );
    let srv_dir = tempfile::tempdir().unwrap();
    let srv = rt.block_on(
        ServerKit::new(srv_dir.path(), &bo.producer_pem())
            .lease_seconds(3)
            .config("max_borrows_per_account = 1\n")
            .init(),
    );
    Env {
        rt,
        bo,
        srv_dir,
        srv,
    }
}

impl Env {
    fn producer_pem(&self) -> String {
        self.bo.producer_pem()
    }

    /// Starts the license server; returns its URL and a stopper.
    fn serve(&self, activate: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
        self.serve_at("127.0.0.1:0", activate)
    }

    /// Starts the license server at `addr` (again at the same address after a stop).
    fn serve_at(&self, addr: &str, activate: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
        self.rt.block_on(async {
            let running = if activate {
                self.srv
                    .activate_and_start_at(
                        &self.bo.url,
                        &[KeyCount::new(self.bo.keys[0].clone(), 2)],
                        addr,
                    )
                    .await
            } else {
                self.srv.start_at(addr).await
            };
            running.split()
        })
    }

    fn client(&self, n: u8) -> Client {
        self.client_with(n, Arc::new(SystemClock), |c| c)
    }

    fn client_with(
        &self,
        n: u8,
        clock: Arc<dyn Clock>,
        configure: impl FnOnce(ClientConfig) -> ClientConfig,
    ) -> Client {
        let id = machine(n);
        let dir = self.srv_dir.path().join(format!("app{n}"));
        let cfg = ClientConfig::new("cad", &self.producer_pem())
            .unwrap()
            .state_dirs(dir.join("s"), dir.join("b"));
        Client::with(configure(cfg), clock, id).unwrap()
    }
}

#[test]
fn floating_seats_checkout_heartbeat_return_and_restart() {
    let env = env();
    let (url, stop) = env.serve(true);
    let a = env.client(1).checkout(&url, "modeler", "1.0").unwrap();
    let b = env.client(2).checkout(&url, "modeler", "1.0").unwrap();
    // the count is enforced, with a reason an application can show
    let err = env.client(3).checkout(&url, "modeler", "1.0").unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code, .. } if code == "all_in_use"),
        "{err:?}"
    );
    assert!(err.to_string().contains("in use"), "{err}");
    // the heartbeat keeps the 3-second lease alive well past its length
    std::thread::sleep(std::time::Duration::from_millis(4500));
    assert!(a.renewals() >= 2, "renewed {} times", a.renewals());
    assert!(
        env.client(3).checkout(&url, "modeler", "1.0").is_err(),
        "both seats still held"
    );
    // dropping a seat returns it
    drop(b);
    let c = env.client(3).checkout(&url, "modeler", "1.0").unwrap();
    // a server restart keeps the seats, and no client takes a second one
    let _ = stop.send(());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (url2, _stop2) = env.serve(false);
    assert!(
        env.client(4).checkout(&url2, "modeler", "1.0").is_err(),
        "the two seats survived the restart"
    );
    drop(a);
    drop(c);
}

#[test]
fn a_fake_server_is_refused() {
    let env = env();
    // a license server trusting another producer: its certificate does not verify for this product
    let rogue_bo = tempfile::tempdir().unwrap();
    let rogue_pem = env.rt.block_on(producer_key(rogue_bo.path()));
    let (url, _stop) = env.serve(true);
    let cfg = ClientConfig::new("cad", &rogue_pem).unwrap().state_dirs(
        env.srv_dir.path().join("r/s"),
        env.srv_dir.path().join("r/b"),
    );
    let id = HostIdentity {
        ids: vec!["machine_id=77777777777777777777777777777777"
            .parse()
            .unwrap()],
        device_type: DeviceType::Physical,
        evidence: vec![],
    };
    let client = Client::with(cfg, Arc::new(SystemClock), id).unwrap();
    let err = client.checkout(&url, "modeler", "1.0").unwrap_err();
    assert!(matches!(err, ClientError::BadAnswer { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not from this product's producer"),
        "{err}"
    );
}

#[test]
fn borrowed_seats_work_offline_are_limited_per_account_and_return_early() {
    let env = env();
    let (url, stop) = env.serve(true);
    let client = env.client(5);
    let b = client.borrow(&url, "modeler", "1.0", 2).unwrap();
    assert!(b.expires > SystemClock.now().unix_timestamp() + 86_400);
    // the per-account limit (1 here) is enforced by the server, with a clear refusal
    let err = client.borrow(&url, "modeler", "1.0", 2).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code, .. } if code == "borrow_limit"),
        "{err:?}"
    );
    // the server goes away: the borrowed seat still works, with days left
    let _ = stop.send(());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let g = client.check("modeler", "1.0").unwrap();
    assert_eq!((g.source, g.days_left), (GrantSource::Borrowed, Some(2)));
    // a borrowed grant edited by hand does not verify
    let path = env.srv_dir.path().join("app5/s/borrowed/modeler.json");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace(&format!("\"lease\": {}", b.lease), "\"lease\": 999"),
    )
    .unwrap();
    assert!(client.check("modeler", "1.0").is_err());
    std::fs::write(&path, &good).unwrap();
    // a return while the server cannot be reached fails and keeps the grant usable
    let err = client.return_borrowed("modeler").unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        client.check("modeler", "1.0").unwrap().source,
        GrantSource::Borrowed
    );
    // server back up: a return without the proof of the grant's session key (anyone's curl) is
    // refused, and the seat stays borrowed
    let (url2, _stop2) = env.serve(false);
    let raw = ureq::post(&format!("{url2}/api/v1/capability")).send_json(serde_json::json!({
        "operation": "return", "device_id": format!("machine_id={}", "05".repeat(16)),
        "request_id": "raw", "nonce": "nonce-raw-0123456789", "leases": [b.lease]}));
    assert!(matches!(raw, Err(ureq::Error::Status(422, _))), "{raw:?}");
    env.client(6).borrow(&url2, "modeler", "1.0", 1).unwrap();
    let err = env.client(7).checkout(&url2, "modeler", "1.0").unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code, .. } if code == "all_in_use"),
        "both seats are borrowed: {err:?}"
    );
    // returned early by its holder: the seat is free again and no longer usable offline
    let mut b2 = b.clone();
    b2.server = url2.clone();
    std::fs::write(&path, serde_json::to_string(&b2).unwrap()).unwrap();
    client.return_borrowed("modeler").unwrap();
    assert!(!path.exists(), "the grant is deleted");
    assert!(client.check("modeler", "1.0").is_err());
    assert!(
        client.borrow(&url2, "modeler", "1.0", 1).is_ok(),
        "the limit counts only seats still borrowed"
    );
}

#[test]
fn a_seat_tells_when_its_server_goes_away_and_is_lost_at_lease_expiry() {
    let env = env();
    let (url, stop) = env.serve(true);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let client = env.client_with(10, clock.clone(), |c| {
        c.timeout(std::time::Duration::from_millis(500))
    });
    let seat = client.checkout(&url, "modeler", "1.0").unwrap();
    assert_eq!(seat.state(), SeatState::Held);
    assert!(seat.lease_expires() > seat.last_renewal());
    assert_eq!(seat.count(), 1);
    // the client knows the seat it holds: no license file needed
    let g = client.check("modeler", "1.0").unwrap();
    assert_eq!(g.source, GrantSource::Seat);
    assert_eq!(g.expires, Some(seat.lease_expires()));
    let events = seat.events();
    // the server stops: the next renewal fails and the application is told
    let _ = stop.send(());
    let e = wait_for(&events, |e| matches!(e, SeatEvent::Reconnecting { .. }));
    assert!(
        matches!(
            &e,
            SeatEvent::Reconnecting {
                error: ClientError::Unreachable { .. } | ClientError::TimedOut { .. }
            }
        ),
        "{e:?}"
    );
    assert_eq!(seat.state(), SeatState::Reconnecting);
    assert!(!seat.is_lost(), "still within its lease");
    // time moves past the lease's end: the seat is lost at once (tolerance zero), then told
    clock.advance(seat.lease_expires() - clock.now() + tessera_client::Duration::seconds(1));
    assert!(seat.is_lost());
    assert!(matches!(
        wait_for(&events, |e| matches!(e, SeatEvent::LeaseExpired { .. })),
        SeatEvent::LeaseExpired { .. }
    ));
    let e = wait_for(&events, |e| matches!(e, SeatEvent::Lost { .. }));
    assert!(e.to_string().contains("lost"), "{e}");
    // check no longer counts it; release says it was not held
    let err = client.check("modeler", "1.0").unwrap_err();
    assert!(
        matches!(err, ClientError::LicenseNotFound { .. }),
        "{err:?}"
    );
    let err = seat.release().unwrap_err();
    assert!(
        matches!(&err, ClientError::SeatLost { feature } if feature == "modeler"),
        "{err:?}"
    );
}

#[test]
fn a_tolerance_keeps_the_seat_until_lease_plus_tolerance_and_a_reacquired_seat_is_held_again() {
    let env = env();
    let (url, stop) = env.serve(true);
    let addr = url.trim_start_matches("http://").to_string();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let tolerance = tessera_client::Duration::seconds(60);
    let client = env.client_with(11, clock.clone(), |c| {
        c.timeout(std::time::Duration::from_millis(500))
            .seat_tolerance(tolerance)
    });
    let seat = client
        .checkout_with(&Checkout::new("modeler", "1.0").server(&url))
        .unwrap();
    let version = seat.granted_version();
    let events = seat.events();
    let _ = stop.send(());
    wait_for(&events, |e| matches!(e, SeatEvent::Reconnecting { .. }));
    // past the lease, within the tolerance: told the lease expired, still held
    let expires = seat.lease_expires();
    clock.advance(expires - clock.now() + tessera_client::Duration::seconds(30));
    wait_for(&events, |e| matches!(e, SeatEvent::LeaseExpired { .. }));
    assert!(!seat.is_lost());
    assert_eq!(
        client.check("modeler", "1.0").unwrap().source,
        GrantSource::Seat
    );
    // never past lease + tolerance
    clock.advance(tessera_client::Duration::seconds(31));
    assert!(clock.now() > expires + tolerance);
    assert!(seat.is_lost());
    wait_for(&events, |e| matches!(e, SeatEvent::Lost { .. }));
    // the server comes back at the same address: the seat is held again, at the version asked
    let (_url2, _stop2) = env.serve_at(&addr, false);
    wait_for(&events, |e| matches!(e, SeatEvent::Reconnected));
    assert!(!seat.is_lost(), "lost resets after the seat is held again");
    assert_eq!(seat.state(), SeatState::Held);
    assert_eq!(seat.granted_version(), version);
    assert!(seat.lease_expires() > clock.now());
    seat.release().unwrap();
}

#[test]
fn a_server_that_never_answers_is_a_timeout_and_the_next_server_of_the_list_is_tried() {
    // takes connections and never answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let env = env();
    let client = env.client_with(12, Arc::new(SystemClock), |c| {
        c.timeout(std::time::Duration::from_millis(300))
            .checkout_timeout(std::time::Duration::from_secs(1))
    });
    let err = client.checkout(&silent_url, "modeler", "1.0").unwrap_err();
    assert!(matches!(err, ClientError::TimedOut { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    // a list: the silent server first, then the real one (same request id)
    let (url, _stop) = env.serve(true);
    let client = env.client_with(13, Arc::new(SystemClock), |c| {
        c.timeout(std::time::Duration::from_millis(300))
            .servers(&[&silent_url, &url])
    });
    let seat = client
        .checkout_with(
            &Checkout::new("modeler", "1.0")
                .server(&silent_url)
                .server(&url),
        )
        .unwrap();
    assert_eq!(seat.server(), url);
    seat.release().unwrap();
    // an unreachable server's message names it once
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = client.checkout(&closed, "modeler", "1.0").unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string().matches(&closed).count(), 1, "{err}");
}

#[test]
fn several_seats_in_one_checkout_and_waiting_in_line() {
    let env = env();
    let (url, _stop) = env.serve(true);
    let both = env
        .client(20)
        .checkout_with(&Checkout::new("modeler", "1.0").server(&url).count(2))
        .unwrap();
    assert_eq!(both.count(), 2);
    let err = env.client(21).checkout(&url, "modeler", "1.0").unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Refused {
                code: RefusalCode::AllInUse,
                ..
            }
        ),
        "{err:?}"
    );
    // waiting in line: the seat comes free while waiting
    let waiter = env.client(22);
    let u = url.clone();
    let waiting = std::thread::spawn(move || {
        waiter.checkout_with(
            &Checkout::new("modeler", "1.0")
                .server(&u)
                .wait_in_line(std::time::Duration::from_secs(60)),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    both.release().unwrap();
    let seat = waiting.join().unwrap().unwrap();
    assert_eq!(seat.count(), 1);
}
