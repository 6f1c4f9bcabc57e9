//! Usage events (denials and overdraft use) on SQLite, and on PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` is set: written with lease changes in one transaction (the pooled
//! stores and the license server's own SQLite writer), listed newest first through every filter,
//! kept per instance, pruned by age, and never carried by a cluster's lease log.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{
    InstanceId, LeaseChange, LeaseRow, LeaseStore, UsageEvent, UsageEventFilter, UsageEventKind,
    UsageEventStore,
};
use time::macros::datetime;
use time::OffsetDateTime;

fn site() -> InstanceId {
    InstanceId::on_site()
}

fn lease(id: i64) -> LeaseRow {
    LeaseRow {
        id,
        device: "ethernet=0050569a3b01|user=alice".into(),
        request_id: format!("r{id}"),
        record_key: "cad|1.0|LIN-1".into(),
        count: 2,
        overdraft: 1,
        expires_at: datetime!(2026-06-01 0:10 UTC),
        borrowed: false,
        alias: None,
        device_type: tessera_core::DeviceType::Unknown,
    }
}

fn event(kind: UsageEventKind, feature: &str, at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        kind,
        at,
        device: "ethernet=0050569a3b01".into(),
        device_type: "physical".into(),
        user: Some("alice".into()),
        alias: Some("pc-7".into()),
        feature: feature.into(),
        version: Some("2.0".into()),
        count: 3,
        code: match kind {
            UsageEventKind::Denial => "all_in_use".into(),
            UsageEventKind::Overdraft => "overdraft".into(),
        },
        message: "all 3 seats of modeler are in use".into(),
    }
}

fn ev(e: UsageEvent) -> LeaseChange {
    LeaseChange::Event(Box::new(e))
}

fn filter() -> UsageEventFilter {
    UsageEventFilter::default()
}

const T0: OffsetDateTime = datetime!(2026-06-01 8:00 UTC);

/// What every backend does, whichever way the events were written.
async fn read_back<S: UsageEventStore + LeaseStore>(s: &S) {
    let all = s.list_events(&site(), &filter()).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    // newest first
    let times: Vec<OffsetDateTime> = all.iter().map(|e| e.event.at).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    assert_eq!(all[0].event.feature, "viewer");
    // each field as written, the odd text and the missing user included
    let odd = all
        .iter()
        .find(|e| e.event.feature == "odd")
        .expect("the odd event");
    assert_eq!(odd.event.user, None);
    assert_eq!(
        odd.event.alias.as_deref(),
        Some("'); DROP TABLE usage_events; --")
    );
    assert_eq!(odd.event.message, "\"q\" 'ü' ✓ \\ back");
    assert_eq!(odd.event.version, None);
    let full = all
        .iter()
        .find(|e| e.event.feature == "modeler" && e.event.kind == UsageEventKind::Denial)
        .unwrap();
    assert_eq!(full.event, event(UsageEventKind::Denial, "modeler", T0));
    // by kind
    let over = s
        .list_events(
            &site(),
            &UsageEventFilter {
                kind: Some(UsageEventKind::Overdraft),
                ..filter()
            },
        )
        .await
        .unwrap();
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].event.kind, UsageEventKind::Overdraft);
    // by feature, by time (inclusive), by limit
    let modeler = s
        .list_events(
            &site(),
            &UsageEventFilter {
                feature: Some("modeler".into()),
                ..filter()
            },
        )
        .await
        .unwrap();
    assert_eq!(modeler.len(), 2, "{modeler:?}");
    assert!(modeler.iter().all(|e| e.event.feature == "modeler"));
    let since = s
        .list_events(
            &site(),
            &UsageEventFilter {
                since: Some(T0 + time::Duration::hours(1)),
                ..filter()
            },
        )
        .await
        .unwrap();
    assert_eq!(since.len(), 2, "{since:?}");
    let one = s
        .list_events(
            &site(),
            &UsageEventFilter {
                limit: 1,
                kind: Some(UsageEventKind::Denial),
                ..filter()
            },
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].event.feature, "viewer");
    // another instance has none of them, and keeps its own
    let other = InstanceId::new("hosted-1").unwrap();
    assert!(s.list_events(&other, &filter()).await.unwrap().is_empty());
    s.record_events(&other, &[event(UsageEventKind::Denial, "cad", T0)])
        .await
        .unwrap();
    assert_eq!(s.list_events(&other, &filter()).await.unwrap().len(), 1);
    assert_eq!(s.list_events(&site(), &filter()).await.unwrap().len(), 4);
    // pruning removes what is older than the time given, of that instance only
    let gone = s
        .prune_events(&site(), T0 + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(gone, 2);
    let left = s.list_events(&site(), &filter()).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left
        .iter()
        .all(|e| e.event.at >= T0 + time::Duration::hours(1)));
    assert_eq!(s.list_events(&other, &filter()).await.unwrap().len(), 1);
    assert_eq!(
        s.prune_events(&site(), T0 + time::Duration::hours(1))
            .await
            .unwrap(),
        0
    );
}

/// The batches a seat engine writes: events with lease changes, and events alone.
fn batches() -> Vec<Vec<LeaseChange>> {
    let mut odd = event(
        UsageEventKind::Denial,
        "odd",
        T0 + time::Duration::minutes(30),
    );
    odd.user = None;
    odd.version = None;
    odd.alias = Some("'); DROP TABLE usage_events; --".into());
    odd.message = "\"q\" 'ü' ✓ \\ back".into();
    vec![
        vec![
            LeaseChange::Put(lease(1)),
            ev(event(UsageEventKind::Denial, "modeler", T0)),
            ev(odd),
        ],
        vec![
            LeaseChange::Put(lease(2)),
            ev(event(
                UsageEventKind::Overdraft,
                "modeler",
                T0 + time::Duration::hours(1),
            )),
        ],
        // a batch of refusals only
        vec![ev(event(
            UsageEventKind::Denial,
            "viewer",
            T0 + time::Duration::hours(2),
        ))],
    ]
}

async fn story<S: UsageEventStore + LeaseStore>(s: &S) {
    for b in batches() {
        s.apply_lease_changes(&site(), b).await.unwrap();
    }
    // the leases of the same batches are there too
    assert_eq!(s.load_leases(&site()).await.unwrap().len(), 2);
    read_back(s).await;
}

#[tokio::test]
async fn usage_events_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store()).await;
}

/// The license server's own SQLite writer connection stores them as the pooled store does.
#[tokio::test]
async fn usage_events_through_the_sqlite_writer_connection() {
    let db = TempSqlite::new().await.unwrap();
    let mut w = db.store().lease_writer(&site()).unwrap();
    for b in batches() {
        w.apply(&b).unwrap();
    }
    assert_eq!(db.store().load_leases(&site()).await.unwrap().len(), 2);
    read_back(db.store()).await;
}

/// A batch whose write fails stores none of its events and none of its leases (one
/// transaction), through the pooled store and the writer connection alike.
#[tokio::test]
async fn a_failed_batch_stores_nothing() {
    let db = TempSqlite::new().await.unwrap();
    // the second event of the batch is refused by the database, after the first was written
    rusqlite::Connection::open(db.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON usage_events WHEN NEW.feature = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();
    let batch = vec![
        LeaseChange::Put(lease(1)),
        ev(event(UsageEventKind::Denial, "modeler", T0)),
        ev(event(UsageEventKind::Denial, "boom", T0)),
    ];
    let mut w = db.store().lease_writer(&site()).unwrap();
    let err = w.apply(&batch).unwrap_err();
    assert!(err.to_string().contains("boom refused"), "{err}");
    let r = db.store().apply_lease_changes(&site(), batch).await;
    assert!(r.is_err());
    assert!(db
        .store()
        .list_events(&site(), &filter())
        .await
        .unwrap()
        .is_empty());
    assert!(db.store().load_leases(&site()).await.unwrap().is_empty());
}

#[tokio::test]
async fn usage_events_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("usage_events_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store()).await;
    db.cleanup().await.unwrap();
}

/// A cluster round stores its events with its leases, but the lease log does not carry them: the
/// other members catch up on the leases only.
#[tokio::test]
async fn cluster_rounds_store_events_but_do_not_log_them() {
    use tessera_store::CatchUp;
    let Some(base) =
        postgres_test_url_or_skip("cluster_rounds_store_events_but_do_not_log_them").unwrap()
    else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    let s: tessera_store::AnyStore = db.store().clone().into();
    let (b_seq, _) = s
        .cluster_commit(&site(), "b", None, |_| (vec![], ()))
        .await
        .unwrap();
    s.cluster_commit(&site(), "a", None, |_| {
        (
            vec![
                LeaseChange::Put(lease(1)),
                ev(event(UsageEventKind::Overdraft, "modeler", T0)),
            ],
            (),
        )
    })
    .await
    .unwrap();
    // refusals alone write nothing to the log either
    s.cluster_commit(&site(), "a", None, |_| {
        (vec![ev(event(UsageEventKind::Denial, "viewer", T0))], ())
    })
    .await
    .unwrap();
    let (_, seen) = s
        .cluster_commit(&site(), "b", Some(b_seq), |c| (vec![], c))
        .await
        .unwrap();
    assert_eq!(seen, CatchUp::Changes(vec![LeaseChange::Put(lease(1))]));
    let events = s.list_events(&site(), &filter()).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    db.cleanup().await.unwrap();
}
