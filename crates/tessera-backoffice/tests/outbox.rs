//! The outbox against real servers on loopback: a real SMTP server (Python's `aiosmtpd`, run as a
//! child process) and a real HTTP server (axum) for webhooks. Time moves with a `ManualClock`;
//! nothing sleeps for a back-off.
//!
//! The mail story runs on SQLite always and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set.
//! Without `aiosmtpd` (`python3 -m pip install aiosmtpd`) the SMTP tests print that they were
//! skipped, except under `CI=true`, where they fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tessera_backoffice::outbox::{
    retry_delay, spawn_worker, webhook_signature, DeliveryReport, MailConfig, MailTls, Outbox,
    OutboxError, WebhookConfig, MAX_ATTEMPTS,
};
use tessera_core::{Clock, ManualClock};
use tessera_store::testing::{postgres_test_url_or_skip, with_temp_postgres, TempSqlite};
use tessera_store::{OutboxFilter, OutboxKind, OutboxStore, Page};
use time::macros::datetime;
use time::OffsetDateTime;
use tokio::sync::mpsc;

mod support;
use support::smtp::{free_port, mail_config, SmtpServer, PATIENCE};

const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn report(sent: usize, retried: usize, given_up: usize) -> DeliveryReport {
    DeliveryReport {
        sent,
        retried,
        given_up,
    }
}

// ---------------------------------------------------------------------------------------------
// The mail story: the server is down, then up
// ---------------------------------------------------------------------------------------------

const SUBJECT: &str = "Your unlock code for Acme Studio — Grüße";
const BODY: &str = "Hello,\n\nyour unlock code is 7Q2M-XK4D-99HB-C3PA.\n.\nA line with a leading dot stays.\n..\nGrüße, Acme\n";

/// All ASCII (sent as `7bit`), with lines that SMTP must escape.
const ASCII_BODY: &str = "Your demo key:\n.\n..\n.DEMO-1234\n\nThanks\n";

async fn mail_story<S>(store: S)
where
    S: OutboxStore + Clone + Send + Sync + 'static,
{
    let port = free_port();
    let clock = ManualClock::new(T0);
    let outbox = Outbox::new(store.clone(), Some(mail_config(port)), None).unwrap();

    // Queued while no SMTP server listens: the attempt fails and is rescheduled.
    let id = outbox
        .queue_mail("customer@example.test", SUBJECT, BODY, clock.now())
        .await
        .unwrap();
    assert_eq!(store.count_pending().await.unwrap(), 1);
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 1, 0)
    );
    let failed = store.get_message(id).await.unwrap().unwrap();
    assert!(failed.is_pending());
    assert_eq!(failed.kind, OutboxKind::Mail);
    assert_eq!(failed.recipient, "customer@example.test");
    assert_eq!(failed.attempts, 1);
    let error = failed.last_error.clone().unwrap();
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert_eq!(failed.next_attempt_at, T0 + time::Duration::seconds(30));
    assert_eq!(store.count_pending().await.unwrap(), 1);

    // Not due again before the back-off has passed.
    clock.advance(time::Duration::seconds(29));
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 0)
    );

    // The mail server comes up on that port; time passes the back-off: delivered.
    let mut smtp = SmtpServer::start(port, false).await;
    clock.advance(time::Duration::seconds(1));
    let delivered_at = clock.now();
    assert_eq!(
        outbox.deliver_due(delivered_at).await.unwrap(),
        report(1, 0, 0)
    );
    let mail = smtp.next_mail().await;
    assert_eq!(mail["mail_from"], "licensing@acme.example");
    assert_eq!(mail["rcpt_tos"], json!(["customer@example.test"]));
    assert_eq!(mail["from"], "Acme Licensing <licensing@acme.example>");
    assert_eq!(mail["to"], "customer@example.test");
    assert_eq!(mail["subject"], SUBJECT);
    assert_eq!(mail["body"], BODY);
    assert_eq!(mail["content_type"], "text/plain");
    assert_eq!(mail["charset"], "utf-8");
    assert_eq!(mail["login"], Value::Null);
    // Date is when it was queued; Message-ID is made from the outbox id (the same on a retry).
    assert_eq!(mail["date"], "Mon, 02 Mar 2026 09:00:00 +0000");
    assert_eq!(
        mail["message_id"],
        format!("<tessera-outbox-{id}-{}@acme.example>", T0.unix_timestamp())
    );

    let sent = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(sent.sent_at, Some(delivered_at));
    assert_eq!(sent.attempts, 1, "the failed attempt is still counted");
    assert_eq!(sent.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(store.count_pending().await.unwrap(), 0);
    let listed = store
        .list_messages(OutboxFilter::Sent, Page::first(10))
        .await
        .unwrap();
    assert_eq!(listed, vec![sent]);

    // Delivering again sends nothing, now or much later.
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 0)
    );
    clock.advance(time::Duration::days(2));
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 0)
    );
    // ...and no duplicate reached the server: the next mail it receives is a new one.
    let second = outbox
        .queue_mail(
            "second@example.test",
            "Your demo key",
            ASCII_BODY,
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(1, 0, 0)
    );
    let next = smtp.next_mail().await;
    assert_eq!(
        (next["subject"].as_str(), next["rcpt_tos"].clone()),
        (Some("Your demo key"), json!(["second@example.test"]))
    );
    assert_eq!(
        next["body"], ASCII_BODY,
        "a 7bit body, dot-stuffed on the wire"
    );
    let second = store.get_message(second).await.unwrap().unwrap();
    assert_eq!((second.attempts, second.last_error), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mail_is_retried_until_the_server_is_up() {
    if !SmtpServer::available("sqlite_mail_is_retried_until_the_server_is_up") {
        return;
    }
    let temp = TempSqlite::new().await.unwrap();
    mail_story(temp.store().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mail_is_retried_until_the_server_is_up() {
    let test = "postgres_mail_is_retried_until_the_server_is_up";
    if !SmtpServer::available(test) {
        return;
    }
    let base = match postgres_test_url_or_skip(test) {
        Ok(Some(url)) => url,
        Ok(None) => return,
        Err(why) => panic!("{why}"),
    };
    with_temp_postgres(&base, |db| async move {
        mail_story(db.store.clone()).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_logs_in_when_credentials_are_configured() {
    if !SmtpServer::available("mail_logs_in_when_credentials_are_configured") {
        return;
    }
    let temp = TempSqlite::new().await.unwrap();
    let port = free_port();
    let mut smtp = SmtpServer::start(port, true).await;

    // A wrong password is refused by the server: a failed attempt, rescheduled.
    let wrong = Outbox::new(
        temp.store().clone(),
        Some(MailConfig {
            username: Some("tessera".into()),
            password: Some("wrong".into()),
            ..mail_config(port)
        }),
        None,
    )
    .unwrap();
    let id = wrong
        .queue_mail("a@example.test", "Hi", "Hello\n", T0)
        .await
        .unwrap();
    assert_eq!(wrong.deliver_due(T0).await.unwrap(), report(0, 1, 0));
    let error = temp
        .store()
        .get_message(id)
        .await
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains("wrong"), "the password leaked: {error}");

    // With the right one the same message goes out.
    let right = Outbox::new(
        temp.store().clone(),
        Some(MailConfig {
            username: Some("tessera".into()),
            password: Some("s3cret".into()),
            ..mail_config(port)
        }),
        None,
    )
    .unwrap();
    let later = T0 + time::Duration::seconds(30);
    assert_eq!(right.deliver_due(later).await.unwrap(), report(1, 0, 0));
    let mail = smtp.next_mail().await;
    assert_eq!(mail["login"], "tessera");
    assert_eq!(mail["subject"], "Hi");
}

// ---------------------------------------------------------------------------------------------
// Giving up
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_is_given_up_after_twenty_failed_attempts() {
    let temp = TempSqlite::new().await.unwrap();
    let store = temp.store().clone();
    let outbox = Outbox::new(store.clone(), Some(mail_config(free_port())), None).unwrap();
    let clock = ManualClock::new(T0);
    let id = outbox
        .queue_mail(
            "customer@example.test",
            "Over-use notice",
            "…\n",
            clock.now(),
        )
        .await
        .unwrap();

    let mut waits = Vec::new();
    for attempt in 1..MAX_ATTEMPTS {
        assert_eq!(
            outbox.deliver_due(clock.now()).await.unwrap(),
            report(0, 1, 0),
            "attempt {attempt}"
        );
        let m = store.get_message(id).await.unwrap().unwrap();
        assert_eq!(m.attempts, attempt);
        let wait = m.next_attempt_at - clock.now();
        assert_eq!(
            wait.unsigned_abs(),
            retry_delay(attempt),
            "attempt {attempt}"
        );
        waits.push(wait.whole_seconds());
        clock.set(m.next_attempt_at);
    }
    assert_eq!(
        waits[..9],
        [30, 60, 120, 240, 480, 960, 1920, 3600, 3600],
        "30 s, doubling, at most an hour"
    );

    // The twentieth failure is the last.
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 1)
    );
    let gone = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(gone.attempts, MAX_ATTEMPTS);
    assert_eq!(gone.given_up_at, Some(clock.now()));
    assert_eq!(gone.sent_at, None);
    assert!(gone
        .last_error
        .as_deref()
        .is_some_and(|e| e.to_lowercase().contains("connection refused")));
    assert_eq!(store.count_pending().await.unwrap(), 0);
    assert_eq!(
        store
            .list_messages(OutboxFilter::Failed, Page::first(10))
            .await
            .unwrap(),
        vec![gone]
    );
    clock.advance(time::Duration::days(30));
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks: a real axum server on port 0
// ---------------------------------------------------------------------------------------------

/// What the webhook receiver saw of one call.
#[derive(Debug)]
struct Call {
    headers: HeaderMap,
    body: String,
}

#[derive(Clone)]
struct Receiver {
    calls: mpsc::UnboundedSender<Call>,
    /// Calls answered so far; the first is answered 500.
    answered: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let _ = r.calls.send(Call { headers, body });
    if r.answered.fetch_add(1, Ordering::SeqCst) == 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts the receiver; returns its URL and the calls it gets.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<Call>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hooks/tessera", post(receive))
        .with_state(Receiver {
            calls: tx,
            answered: Arc::new(AtomicUsize::new(0)),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/tessera", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn header<'a>(call: &'a Call, name: &str) -> Option<&'a str> {
    call.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_retried() {
    let temp = TempSqlite::new().await.unwrap();
    let store = temp.store().clone();
    let (url, mut calls) = webhook_receiver().await;
    let outbox = Outbox::new(
        store.clone(),
        None,
        Some(WebhookConfig {
            url: url.clone(),
            secret: Some("whsec-test".into()),
        }),
    )
    .unwrap();
    let clock = ManualClock::new(T0);

    let event = json!({"event": "license.issued", "license": "L-1"});
    let id = outbox
        .queue_webhook(&event, clock.now())
        .await
        .unwrap()
        .unwrap();
    let queued = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(
        (
            queued.kind,
            queued.recipient.as_str(),
            queued.subject.as_str()
        ),
        (OutboxKind::Webhook, url.as_str(), "license.issued")
    );

    // The receiver answers 500 the first time: retried after 30 s.
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 1, 0)
    );
    let first = calls.recv().await.unwrap();
    let failed = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(failed.attempts, 1);
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{failed:?}"
    );
    clock.advance(time::Duration::seconds(30));
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(1, 0, 0)
    );
    let second = calls.recv().await.unwrap();
    assert_eq!(
        store.get_message(id).await.unwrap().unwrap().sent_at,
        Some(clock.now())
    );

    for call in [&first, &second] {
        assert_eq!(call.body, r#"{"event":"license.issued","license":"L-1"}"#);
        assert_eq!(serde_json::from_str::<Value>(&call.body).unwrap(), event);
        // HMAC-SHA256 of the body keyed with "whsec-test", as computed by Python's hmac module.
        assert_eq!(
            header(call, "x-tessera-signature"),
            Some("sha256=b18c04bc2d0819685882bbfae670d91848b4ae2b349ed7caa8d548e2548ebae6")
        );
        assert_eq!(
            header(call, "x-tessera-signature").map(str::to_owned),
            Some(webhook_signature(b"whsec-test", call.body.as_bytes()))
        );
        assert_eq!(header(call, "x-tessera-event"), Some("license.issued"));
        assert_eq!(
            header(call, "x-tessera-delivery"),
            Some(id.to_string().as_str())
        );
        assert_eq!(header(call, "content-type"), Some("application/json"));
    }
    assert_eq!(
        outbox.deliver_due(clock.now()).await.unwrap(),
        report(0, 0, 0)
    );
    assert!(calls.try_recv().is_err(), "no further call");

    // Without a secret the call is not signed.
    let unsigned = Outbox::new(
        store.clone(),
        None,
        Some(WebhookConfig { url, secret: None }),
    )
    .unwrap();
    unsigned
        .queue_webhook(&json!({"event": "usage.over_limit"}), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unsigned.deliver_due(clock.now()).await.unwrap(),
        report(1, 0, 0)
    );
    let call = calls.recv().await.unwrap();
    assert_eq!(header(&call, "x-tessera-signature"), None);
    assert_eq!(header(&call, "x-tessera-event"), Some("usage.over_limit"));
}

#[tokio::test]
async fn webhook_calls_without_a_webhook_are_a_no_op() {
    let temp = TempSqlite::new().await.unwrap();
    let outbox = Outbox::new(temp.store().clone(), None, None).unwrap();
    assert!(!outbox.webhook_configured());
    assert_eq!(
        outbox
            .queue_webhook(&json!({"event": "license.issued"}), T0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(temp.store().count_pending().await.unwrap(), 0);

    let (url, _calls) = webhook_receiver().await;
    let configured = Outbox::new(
        temp.store().clone(),
        None,
        Some(WebhookConfig { url, secret: None }),
    )
    .unwrap();
    for bad in [
        json!("license.issued"),
        json!({"license": "L-1"}),
        json!({"event": 7}),
    ] {
        assert!(
            matches!(
                configured.queue_webhook(&bad, T0).await,
                Err(OutboxError::InvalidWebhookEvent)
            ),
            "{bad}"
        );
    }
    assert_eq!(temp.store().count_pending().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// What is refused at queue time and at start
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_addresses_are_refused_when_queueing() {
    let temp = TempSqlite::new().await.unwrap();
    let outbox = Outbox::new(temp.store().clone(), Some(mail_config(free_port())), None).unwrap();
    for bad in [
        "",
        "not-an-address",
        "customer@",
        "@example.test",
        "two@@example.test",
        "a b@example.test",
        "Customer <customer@example.test>",
        "customer@example.test\r\nBcc: everyone@example.test",
    ] {
        match outbox.queue_mail(bad, "Hi", "Hello", T0).await {
            Err(err @ OutboxError::InvalidAddress { .. }) => {
                let msg = err.to_string();
                assert!(msg.contains("not a valid e-mail address"), "{msg}");
            }
            other => panic!("{bad:?}: expected InvalidAddress, got {other:?}"),
        }
    }
    assert!(matches!(
        outbox
            .queue_mail("a@example.test", "Hi\r\nBcc: x@example.test", "Hello", T0)
            .await,
        Err(OutboxError::InvalidSubject)
    ));
    assert_eq!(
        temp.store().count_pending().await.unwrap(),
        0,
        "nothing queued"
    );

    // Surrounding white space is dropped.
    let id = outbox
        .queue_mail("  customer@example.test\n", "Hi", "Hello", T0)
        .await
        .unwrap();
    let m = temp.store().get_message(id).await.unwrap().unwrap();
    assert_eq!(m.recipient, "customer@example.test");

    // Without a [mail] section nothing can be queued.
    let no_mail = Outbox::new(temp.store().clone(), None, None).unwrap();
    assert!(!no_mail.mail_configured());
    assert!(matches!(
        no_mail
            .queue_mail("customer@example.test", "Hi", "Hello", T0)
            .await,
        Err(OutboxError::MailNotConfigured)
    ));
}

#[tokio::test]
async fn bad_configuration_is_refused_at_start() {
    let temp = TempSqlite::new().await.unwrap();
    let store = temp.store().clone();
    let mail = |change: fn(&mut MailConfig)| {
        let mut config = mail_config(2525);
        change(&mut config);
        Outbox::new(store.clone(), Some(config), None).map(|_| ())
    };
    for (what, result) in [
        ("from", mail(|c| c.from = "licensing".into())),
        ("host", mail(|c| c.host = " ".into())),
        ("password", mail(|c| c.username = Some("licensing".into()))),
        ("username", mail(|c| c.password = Some("hunter2".into()))),
    ] {
        match result {
            Err(err @ OutboxError::InvalidMailConfig { .. }) => {
                let msg = err.to_string();
                assert!(msg.contains(what), "{msg}");
                assert!(!msg.contains("hunter2"), "{msg}");
            }
            other => panic!("{what}: expected InvalidMailConfig, got {other:?}"),
        }
    }
    let hook = |url: &str, secret: Option<&str>| {
        Outbox::new(
            store.clone(),
            None,
            Some(WebhookConfig {
                url: url.into(),
                secret: secret.map(str::to_owned),
            }),
        )
        .map(|_| ())
    };
    for result in [
        hook("ftp://hooks.example.test/x", None),
        hook("hooks.example.test/x", None),
        hook("https://hooks.example.test/x", Some("")),
    ] {
        assert!(
            matches!(result, Err(OutboxError::InvalidWebhookConfig { .. })),
            "{result:?}"
        );
    }
    // STARTTLS and TLS need no connection to set up.
    for tls in [MailTls::StartTls, MailTls::Tls] {
        assert!(mail_with_tls(&store, tls).is_ok());
    }
}

fn mail_with_tls<S: OutboxStore + Clone>(
    store: &S,
    tls: MailTls,
) -> Result<Outbox<S>, OutboxError> {
    Outbox::new(
        store.clone(),
        Some(MailConfig {
            host: "smtp.example.test".into(),
            tls,
            ..mail_config(587)
        }),
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_sends_at_start_and_as_soon_as_something_is_queued() {
    if !SmtpServer::available("the_worker_sends_at_start_and_as_soon_as_something_is_queued") {
        return;
    }
    let temp = TempSqlite::new().await.unwrap();
    let port = free_port();
    let mut smtp = SmtpServer::start(port, false).await;
    let clock = Arc::new(ManualClock::new(T0));
    let outbox =
        Arc::new(Outbox::new(temp.store().clone(), Some(mail_config(port)), None).unwrap());

    // Queued before the worker starts: its first run sends it.
    outbox
        .queue_mail("early@example.test", "Queued before start", "1\n", T0)
        .await
        .unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // An hour between runs and a clock that stands still: only the wake-up can send the second.
    let worker = spawn_worker(
        outbox.clone(),
        clock.clone(),
        Duration::from_secs(3_600),
        shutdown,
    );
    assert_eq!(smtp.next_mail().await["subject"], "Queued before start");

    outbox
        .queue_mail(
            "late@example.test",
            "Queued while running",
            "2\n",
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(smtp.next_mail().await["subject"], "Queued while running");

    // Told to stop, the worker finishes its run (recording the delivery) and ends.
    stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, worker)
        .await
        .expect("the worker stops when told")
        .unwrap();
    let sent = temp
        .store()
        .list_messages(OutboxFilter::Sent, Page::first(10))
        .await
        .unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|m| m.sent_at == Some(T0)));
    assert_eq!(temp.store().count_pending().await.unwrap(), 0);
}

#[tokio::test]
async fn the_worker_stops_when_the_shutdown_sender_is_dropped() {
    let temp = TempSqlite::new().await.unwrap();
    let outbox = Arc::new(Outbox::new(temp.store().clone(), None, None).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = spawn_worker(outbox, clock, Duration::from_secs(3_600), shutdown);
    drop(stop);
    tokio::time::timeout(PATIENCE, worker)
        .await
        .expect("the worker stops")
        .unwrap();
}
