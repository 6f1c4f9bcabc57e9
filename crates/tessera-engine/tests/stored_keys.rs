//! Leases stored before schema 13 (keyed by their id) keep working after it (keyed by `-1 - id`):
//! an engine over such a store holds them, its digest still adds up, and they renew and return;
//! new leases are stored by count beside them. On SQLite, and on PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` is set.

mod support;

use std::sync::Arc;

use support::{take, touch};
use tessera_core::capability::Operation;
use tessera_core::feature::{Count, Feature};
use tessera_core::{HostId, ManualClock, SigningKey};
use tessera_engine::{Engine, EngineSetup, InstanceId, SeatPolicy, Sharing};
use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{AnyStore, LeaseStore};

async fn engine(store: &AnyStore, key: &SigningKey, clock: &Arc<ManualClock>) -> Engine {
    Engine::load(EngineSetup {
        instance: InstanceId::on_site(),
        records: vec![Feature::new(
            "modeler",
            "2.0".parse().unwrap(),
            Count::Counted(4),
        )],
        store: store.clone(),
        key: key.clone(),
        server: "string=license-server".parse::<HostId>().unwrap(),
        clock: clock.clone(),
        policy: SeatPolicy::default(),
        sharing: Sharing::Alone(None),
    })
    .await
    .unwrap()
}

/// Runs SQL on the store (to make rows the way an earlier version stored them).
async fn sql(store: &AnyStore, statement: &str) {
    match store {
        AnyStore::Sqlite(s) => {
            sqlx::query(statement).execute(s.pool()).await.unwrap();
        }
        AnyStore::Postgres(p) => {
            sqlx::query(statement).execute(p.pool()).await.unwrap();
        }
        _ => panic!("a store this test cannot run SQL on"),
    }
}

/// `open` opens the store again (running the migrations that are not applied).
async fn leases_stored_by_id_keep_working<F, Fut>(store: AnyStore, open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = AnyStore>,
{
    let key = SigningKey::from_seed(&[9; 32]);
    let clock = Arc::new(ManualClock::new(
        tessera_core::time::OffsetDateTime::now_utc(),
    ));
    let e = engine(&store, &key, &clock).await;
    let a = take(&e, &key, "string=ws-a", 1).await.unwrap();
    let b = take(&e, &key, "string=ws-b", 2).await.unwrap();
    let keys = [e.stored_key(a.lease), e.stored_key(b.lease)];
    drop(e);

    // as schema 12 stored them: keyed by the id itself; and schema 13 not yet applied
    for (seat, k) in [&a, &b].iter().zip(keys) {
        sql(
            &store,
            &format!(
                "UPDATE leases SET id = {} WHERE instance = 'on-site' AND id = {k}",
                seat.lease
            ),
        )
        .await;
    }
    sql(&store, "DELETE FROM _sqlx_migrations WHERE version = 13").await;
    drop(store);
    let store = open().await;
    let rows = store.load_leases(&InstanceId::on_site()).await.unwrap();
    let mut stored: Vec<i64> = rows.iter().map(|r| r.id).collect();
    stored.sort_unstable();
    let mut expected = vec![-1 - a.lease as i64, -1 - b.lease as i64];
    expected.sort_unstable();
    assert_eq!(
        stored, expected,
        "migration 13 keeps old rows under -1 - id"
    );

    // the engine holds them (the digest of the last commit still adds up) under their ids
    let e = engine(&store, &key, &clock).await;
    let mut held: Vec<u64> = e.leases().await.iter().map(|l| l.id).collect();
    held.sort_unstable();
    let mut granted = vec![a.lease, b.lease];
    granted.sort_unstable();
    assert_eq!(held, granted);
    assert_eq!(e.lease_count(), 2, "the count needs no copy of the leases");
    assert_eq!(e.stored_key(a.lease), -1 - a.lease as i64);

    // renewed in place, returned from its old key; a new lease is stored by count beside them
    clock.advance(tessera_core::time::Duration::minutes(1));
    let r = e
        .handle(touch(Operation::Renew, "string=ws-a", &a, 10))
        .await
        .unwrap();
    assert!(r.sealed && !r.denied);
    e.handle(touch(Operation::Return, "string=ws-b", &b, 11))
        .await
        .unwrap();
    let c = take(&e, &key, "string=ws-c", 12).await.unwrap();
    let rows = store.load_leases(&InstanceId::on_site()).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let old = rows.iter().find(|r| r.id == -1 - a.lease as i64).unwrap();
    assert!(
        old.expires_at > a.expires,
        "the renewal reached the old row"
    );
    let new = rows.iter().find(|r| r.device == "string=ws-c").unwrap();
    assert_eq!(new.id, e.stored_key(c.lease));
    assert!(new.id > 0);

    // and after a restart the same three facts hold
    drop(e);
    let e = engine(&store, &key, &clock).await;
    let mut held: Vec<u64> = e.leases().await.iter().map(|l| l.id).collect();
    held.sort_unstable();
    let mut expected = vec![a.lease, c.lease];
    expected.sort_unstable();
    assert_eq!(held, expected);
    e.handle(touch(Operation::Return, "string=ws-a", &a, 20))
        .await
        .unwrap();
    assert_eq!(
        store
            .load_leases(&InstanceId::on_site())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_stored_by_id_keep_working_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    let url = db.url().to_string();
    leases_stored_by_id_keep_working(db.store().clone().into(), || async {
        tessera_store::open(&url).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_stored_by_id_keep_working_on_postgres() {
    let Some(base) =
        postgres_test_url_or_skip("leases_stored_by_id_keep_working_on_postgres").unwrap()
    else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    let url = db.url().to_string();
    leases_stored_by_id_keep_working(db.store().clone().into(), || async {
        tessera_store::open(&url).await.unwrap()
    })
    .await;
    db.cleanup().await.unwrap();
}
