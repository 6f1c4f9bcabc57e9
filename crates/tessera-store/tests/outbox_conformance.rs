//! The outbox story ([`OutboxStore`]), run against every backend like `tests/conformance.rs`.
//!
//! SQLite always; PostgreSQL when `TESSERA_TEST_POSTGRES_URL` names a server (each run creates
//! and drops its own database there). Without it the PostgreSQL runs print that they were
//! skipped, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::time::Duration;

use tessera_store::testing::{postgres_test_url_or_skip, with_temp_postgres, TempSqlite};
use tessera_store::{
    open, AnyStore, NewOutboxMessage, OutboxFilter, OutboxKind, OutboxMessage, OutboxStore, Page,
    PgStore, SqliteStore, Store, StoreError,
};
use time::OffsetDateTime;

/// A whole-second time `secs` after a fixed epoch (stores keep seconds only).
fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
}

fn mail(to: &str, subject: &str, created: i64) -> NewOutboxMessage {
    NewOutboxMessage {
        kind: OutboxKind::Mail,
        recipient: to.to_owned(),
        subject: subject.to_owned(),
        body: format!("Hello {to},\n\nyour unlock code is ABCD-EFGH.\n"),
        redacted_body: None,
        created_at: at(created),
    }
}

fn ids(messages: &[OutboxMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

const LEASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------------

/// Everything every backend must do alike. Expects an empty, freshly migrated store; `second`
/// is another store open on the same database (another replica), or a clone of `s`.
async fn outbox_story<S: Store>(s: &S, second: &S) {
    lifecycle(s).await;
    concurrent_claims_never_share_a_message(s, second).await;
    racing_for_one_message(s, second).await;
}

async fn lifecycle<S: Store>(s: &S) {
    assert_eq!(s.count_pending().await.unwrap(), 0);
    assert_eq!(
        s.list_messages(OutboxFilter::All, Page::first(10))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        s.claim_due_messages(at(1_000), 10, LEASE).await.unwrap(),
        vec![]
    );
    assert_eq!(s.get_message(1).await.unwrap(), None);

    // Queue: a mail, a webhook with a JSON body, a mail with non-ASCII text.
    // m1 carries a secret: once delivered, only its redacted body is kept
    let redacted = "Hello a@example.test,\n\nyour unlock code is [removed after delivery].\n";
    let m1 = s
        .enqueue_message(NewOutboxMessage {
            redacted_body: Some(redacted.into()),
            ..mail("a@example.test", "Your unlock code", 10)
        })
        .await
        .unwrap();
    assert!(
        s.get_message(m1)
            .await
            .unwrap()
            .unwrap()
            .body
            .contains("ABCD-EFGH"),
        "the secret is kept until it is delivered"
    );
    let hook = NewOutboxMessage {
        kind: OutboxKind::Webhook,
        recipient: "https://hooks.example.test/tessera?x=1".into(),
        subject: "license.issued".into(),
        body: r#"{"event":"license.issued","license":"L-1"}"#.into(),
        redacted_body: None,
        created_at: at(20),
    };
    let m2 = s.enqueue_message(hook.clone()).await.unwrap();
    let unicode = NewOutboxMessage {
        body: "Grüße – 東京 ✓\r\nline two\n".into(),
        ..mail("b@example.test", "Démo-Schlüssel", 30)
    };
    let m3 = s.enqueue_message(unicode.clone()).await.unwrap();
    assert!(m1 < m2 && m2 < m3, "ids grow: {m1} {m2} {m3}");
    assert_eq!(s.count_pending().await.unwrap(), 3);

    // A new message is due at its creation time, has no attempts and no outcome.
    let fresh = s.get_message(m2).await.unwrap().unwrap();
    assert_eq!(
        fresh,
        OutboxMessage {
            id: m2,
            kind: OutboxKind::Webhook,
            recipient: hook.recipient.clone(),
            subject: hook.subject.clone(),
            body: hook.body.clone(),
            created_at: at(20),
            attempts: 0,
            next_attempt_at: at(20),
            sent_at: None,
            last_error: None,
            given_up_at: None,
        }
    );
    assert!(fresh.is_pending());
    let stored3 = s.get_message(m3).await.unwrap().unwrap();
    assert_eq!(
        (stored3.subject.as_str(), stored3.body.as_str()),
        ("Démo-Schlüssel", unicode.body.as_str()),
        "text round-trips exactly"
    );

    // Nothing is due before it was queued; a limit of 0 claims nothing.
    assert_eq!(
        s.claim_due_messages(at(9), 10, LEASE).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.claim_due_messages(at(100), 0, LEASE).await.unwrap(),
        vec![]
    );

    // Claim the two longest due; they are leased until now + lease.
    let claimed = s.claim_due_messages(at(100), 2, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![m1, m2]);
    assert!(claimed.iter().all(|m| m.next_attempt_at == at(160)));
    assert!(
        claimed.iter().all(|m| m.attempts == 0),
        "claiming is no attempt"
    );
    // A second claim at the same time gets only the rest, a third nothing.
    assert_eq!(
        ids(&s.claim_due_messages(at(100), 10, LEASE).await.unwrap()),
        vec![m3]
    );
    assert_eq!(
        s.claim_due_messages(at(159), 10, LEASE).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.count_pending().await.unwrap(),
        3,
        "claimed messages stay pending"
    );

    // When the lease runs out without an outcome (the worker died), they are due again.
    let again = s.claim_due_messages(at(160), 10, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![m1, m2, m3]);
    assert!(again.iter().all(|m| m.next_attempt_at == at(220)));

    // m1 sent; a second report keeps the first time.
    s.mark_sent(m1, at(170)).await.unwrap();
    s.mark_sent(m1, at(180)).await.unwrap();
    let sent = s.get_message(m1).await.unwrap().unwrap();
    assert_eq!(sent.sent_at, Some(at(170)));
    assert_eq!(sent.body, redacted, "the secret is gone once delivered");
    assert_eq!((sent.attempts, sent.last_error.as_deref()), (0, None));
    assert!(!sent.is_pending());

    // m2 failed once: retried at 300.
    s.mark_failed(m2, at(170), "connection refused", Some(at(300)))
        .await
        .unwrap();
    let retrying = s.get_message(m2).await.unwrap().unwrap();
    assert_eq!(retrying.attempts, 1);
    assert_eq!(retrying.last_error.as_deref(), Some("connection refused"));
    assert_eq!(retrying.next_attempt_at, at(300));
    assert_eq!((retrying.sent_at, retrying.given_up_at), (None, None));

    // m3 failed for good: given up at the time of the report.
    s.mark_failed(m3, at(175), "HTTP 410 Gone", None)
        .await
        .unwrap();
    let gone = s.get_message(m3).await.unwrap().unwrap();
    assert_eq!(gone.attempts, 1);
    assert_eq!(gone.given_up_at, Some(at(175)));
    assert_eq!(gone.last_error.as_deref(), Some("HTTP 410 Gone"));
    assert_eq!(gone.sent_at, None);
    assert_eq!(
        gone.body, unicode.body,
        "a message without a redacted body keeps its body"
    );
    assert!(!gone.is_pending());

    // Late reports about finished messages change nothing.
    s.mark_failed(m1, at(190), "late", Some(at(400)))
        .await
        .unwrap();
    assert_eq!(s.get_message(m1).await.unwrap().unwrap(), sent);
    s.mark_failed(m3, at(190), "late", Some(at(400)))
        .await
        .unwrap();
    assert_eq!(s.get_message(m3).await.unwrap().unwrap(), gone);

    // Unknown ids.
    for result in [
        s.mark_sent(999_999, at(1)).await,
        s.mark_failed(999_999, at(1), "x", None).await,
    ] {
        match result {
            Err(StoreError::NotFound { what }) => assert!(what.contains("999999"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    // Only m2 is left to do, at its retry time; sent and given-up messages are never claimed.
    assert_eq!(
        s.claim_due_messages(at(299), 10, LEASE).await.unwrap(),
        vec![]
    );
    assert_eq!(
        ids(&s.claim_due_messages(at(10_000), 10, LEASE).await.unwrap()),
        vec![m2]
    );
    s.mark_sent(m2, at(10_001)).await.unwrap();
    assert_eq!(
        s.claim_due_messages(at(100_000), 10, LEASE).await.unwrap(),
        vec![]
    );
    let done = s.get_message(m2).await.unwrap().unwrap();
    assert_eq!(
        (done.attempts, done.sent_at, done.last_error.as_deref()),
        (1, Some(at(10_001)), Some("connection refused")),
        "the history of the failed attempt stays"
    );

    // Listing: newest first, by filter, paged.
    let list =
        |filter| async move { ids(&s.list_messages(filter, Page::first(100)).await.unwrap()) };
    assert_eq!(list(OutboxFilter::All).await, vec![m3, m2, m1]);
    assert_eq!(list(OutboxFilter::Sent).await, vec![m2, m1]);
    assert_eq!(list(OutboxFilter::Failed).await, vec![m3]);
    assert_eq!(list(OutboxFilter::Pending).await, Vec::<i64>::new());
    assert_eq!(s.count_pending().await.unwrap(), 0);
    let m4 = s
        .enqueue_message(mail("c@example.test", "Usage over limit", 40))
        .await
        .unwrap();
    assert_eq!(list(OutboxFilter::Pending).await, vec![m4]);
    assert_eq!(s.count_pending().await.unwrap(), 1);
    assert_eq!(
        ids(&s
            .list_messages(OutboxFilter::All, Page::first(2))
            .await
            .unwrap()),
        vec![m4, m3]
    );
    assert_eq!(
        ids(&s
            .list_messages(OutboxFilter::All, Page::first(2).next())
            .await
            .unwrap()),
        vec![m2, m1]
    );
    assert_eq!(
        ids(&s
            .list_messages(
                OutboxFilter::All,
                Page {
                    offset: -3,
                    limit: 1
                }
            )
            .await
            .unwrap()),
        vec![m4],
        "negative values count as 0"
    );
    // Leave the store with nothing due for the next parts of the story.
    s.mark_sent(m4, at(41)).await.unwrap();
}

/// Many claimers on two stores over one database, each claiming small batches until nothing is
/// due: every message is claimed exactly once.
async fn concurrent_claims_never_share_a_message<S: Store>(s: &S, second: &S) {
    const MESSAGES: usize = 60;
    let mut queued = BTreeSet::new();
    for i in 0..MESSAGES {
        let id = s
            .enqueue_message(mail(&format!("n{i}@example.test"), "bulk", 1_000))
            .await
            .unwrap();
        queued.insert(id);
    }
    let now = at(2_000);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                s.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_due_messages(now, 3, Duration::from_secs(3_600))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(ids(&batch));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "a message was claimed twice: {all:?}"
    );
    assert_eq!(distinct, queued, "every due message was claimed");
    for id in queued {
        s.mark_sent(id, now).await.unwrap();
    }
}

/// One due message, two claimers at once, many rounds: exactly one of them gets it each time.
async fn racing_for_one_message<S: Store>(s: &S, second: &S) {
    for round in 0..20 {
        let id = s
            .enqueue_message(mail("race@example.test", "race", 3_000))
            .await
            .unwrap();
        let now = at(3_001 + round);
        let claim = |store: &S| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due_messages(now, 10, LEASE).await })
        };
        let (a, b) = (claim(s), claim(second));
        let a = ids(&a.await.unwrap().unwrap());
        let b = ids(&b.await.unwrap().unwrap());
        let mut both = a.clone();
        both.extend(&b);
        assert_eq!(both, vec![id], "round {round}: {a:?} and {b:?}");
        s.mark_sent(id, now).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox() {
    let temp = TempSqlite::new().await.unwrap();
    // A second pool on the same file: another process of the back office.
    let second = SqliteStore::connect(temp.url()).await.unwrap();
    outbox_story(temp.store(), &second).await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_store_sqlite_outbox() {
    let temp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", temp.path().join("any.db").display());
    let store = open(&url).await.unwrap();
    let second = open(&url).await.unwrap();
    assert!(matches!(store, AnyStore::Sqlite(_)));
    outbox_story(&store, &second).await;
    store.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_outbox() {
    let store = open("sqlite::memory:").await.unwrap();
    outbox_story(&store, &store.clone()).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// The server URL, `None` (after saying so) when the run is skipped, a failure under CI.
fn postgres(test: &str) -> Option<String> {
    match postgres_test_url_or_skip(test) {
        Ok(url) => url,
        Err(why) => panic!("{why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox() {
    let Some(base) = postgres("postgres_outbox") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        // A second pool on the same database: another replica.
        let second = PgStore::connect(&db.url).await.unwrap();
        outbox_story(&db.store, &second).await;
        second.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_store_postgres_outbox() {
    let Some(base) = postgres("any_store_postgres_outbox") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        let store = open(&db.url).await.unwrap();
        let second = open(&db.url).await.unwrap();
        assert!(matches!(store, AnyStore::Postgres(_)));
        outbox_story(&store, &second).await;
        store.close().await;
        second.close().await;
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Compile-time: the futures of concrete stores can be spawned
// ---------------------------------------------------------------------------------------------

/// Every outbox call on every concrete store type inside `tokio::spawn`, where a non-`Send`
/// future fails to build. Never run: compiling it is the test.
#[allow(dead_code)]
fn outbox_futures_are_send(pg: PgStore, lite: SqliteStore, any: AnyStore) {
    macro_rules! spawn_every_call {
        ($s:expr) => {{
            let s = $s;
            tokio::spawn(async move {
                let _ = s.enqueue_message(mail("a@b.test", "s", 0)).await;
                let _ = s.claim_due_messages(at(0), 1, LEASE).await;
                let _ = s.mark_sent(1, at(0)).await;
                let _ = s.mark_failed(1, at(0), "e", Some(at(1))).await;
                let _ = s.get_message(1).await;
                let _ = s.list_messages(OutboxFilter::Pending, Page::first(1)).await;
                let _ = s.count_pending().await;
            });
        }};
    }
    spawn_every_call!(pg);
    spawn_every_call!(lite);
    spawn_every_call!(any);
}
