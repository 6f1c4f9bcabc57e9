//! Two seat engine instances in one process over one store, on SQLite and on PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` is set: each grants its full count, and the returns, renewals and
//! restarts of one never touch the other's seats.

mod support;

use std::sync::Arc;

use support::{take, touch};
use tessera_core::capability::Operation;
use tessera_core::feature::{Count, Feature};
use tessera_core::{HostId, ManualClock, SigningKey};
use tessera_engine::{
    Engine, EngineError, EngineSetup, InstanceId, LoadError, SeatPolicy, Sharing,
};
use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{AnyStore, LeaseStore};

const SEATS: u32 = 3;

fn records() -> Vec<Feature> {
    vec![Feature::new(
        "modeler",
        "2.0".parse().unwrap(),
        Count::Counted(SEATS),
    )]
}

async fn engine(
    store: &AnyStore,
    instance: &str,
    key: &SigningKey,
    clock: &Arc<ManualClock>,
) -> Result<Engine, LoadError> {
    Engine::load(EngineSetup {
        instance: InstanceId::new(instance).unwrap(),
        records: records(),
        store: store.clone(),
        key: key.clone(),
        server: "string=license-server".parse::<HostId>().unwrap(),
        clock: clock.clone(),
        policy: SeatPolicy::default(),
        sharing: Sharing::Alone(None),
    })
    .await
}

fn used(usage: &[(Feature, u64, u64)]) -> u64 {
    usage.iter().map(|(_, used, _)| used).sum()
}

async fn two_instances_keep_their_seats_apart(store: AnyStore) {
    let key = SigningKey::from_seed(&[5; 32]);
    let clock = Arc::new(ManualClock::new(
        tessera_core::time::OffsetDateTime::now_utc(),
    ));
    // the on-site server's instance and a hosted one, under the same key and over one store
    let first = engine(&store, InstanceId::ON_SITE, &key, &clock)
        .await
        .unwrap();
    let second = engine(&store, "hosted-acme", &key, &clock).await.unwrap();
    assert_eq!(second.instance().as_str(), "hosted-acme");

    // each grants its full count, whatever the other holds
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..SEATS {
        a.push(
            take(&first, &key, &format!("string=a-{i}"), i)
                .await
                .unwrap(),
        );
        b.push(
            take(&second, &key, &format!("string=b-{i}"), 100 + i)
                .await
                .unwrap(),
        );
    }
    assert!(
        take(&first, &key, "string=a-more", 50).await.is_none(),
        "the first is full"
    );
    assert!(
        take(&second, &key, "string=b-more", 150).await.is_none(),
        "the second is full"
    );
    assert_eq!(used(&first.usage().await), u64::from(SEATS));
    assert_eq!(used(&second.usage().await), u64::from(SEATS));

    // a seat of one cannot be renewed or returned through the other, even with its proof
    let r = second
        .handle(touch(Operation::Return, "string=a-0", &a[0], 200))
        .await;
    assert!(matches!(r, Err(EngineError::NotHolder(_))), "{r:?}");
    let r = second
        .handle(touch(Operation::Renew, "string=a-0", &a[0], 201))
        .await;
    assert!(matches!(r, Err(EngineError::NotHolder(_))), "{r:?}");

    // returns and renewals in the first leave the second as it was
    clock.advance(tessera_core::time::Duration::minutes(1));
    first
        .handle(touch(Operation::Return, "string=a-0", &a[0], 300))
        .await
        .unwrap();
    let renewed = first
        .handle(touch(Operation::Renew, "string=a-1", &a[1], 301))
        .await
        .unwrap();
    assert!(renewed.sealed && !renewed.denied);
    assert_eq!(used(&first.usage().await), u64::from(SEATS - 1));
    assert_eq!(used(&second.usage().await), u64::from(SEATS));
    assert!(
        take(&second, &key, "string=b-more", 151).await.is_none(),
        "the second is still full"
    );
    assert!(
        take(&first, &key, "string=a-more", 51).await.is_some(),
        "the freed seat is the first's"
    );

    // in the store too: each instance's rows apart
    let in_first = store.load_leases(&InstanceId::on_site()).await.unwrap();
    let in_second = store
        .load_leases(&InstanceId::new("hosted-acme").unwrap())
        .await
        .unwrap();
    assert_eq!(in_first.len(), SEATS as usize);
    assert_eq!(in_second.len(), SEATS as usize);
    assert!(in_second.iter().all(|l| l.device.starts_with("string=b-")));
    let renewed_row = in_first
        .iter()
        .find(|l| l.id == first.stored_key(a[1].lease))
        .unwrap();
    assert!(renewed_row.expires_at > a[1].expires);
    let b1 = in_second
        .iter()
        .find(|l| l.id == second.stored_key(b[1].lease))
        .unwrap();
    assert_eq!(b1.expires_at, b[1].expires);
    // rows are kept by the count each id was made from: in the order granted, so a table of many
    // grants grows at one end, whatever the (scattered) ids
    let keys: Vec<i64> = b.iter().map(|s| second.stored_key(s.lease)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    assert!(keys.iter().all(|k| (1..=100).contains(k)), "{keys:?}");
    assert!(b.iter().all(|s| s.lease > 1 << 32), "ids stay scattered");

    // the second restarts (its digest checks out) and holds what it held; the first goes on
    drop(second);
    let second = engine(&store, "hosted-acme", &key, &clock).await.unwrap();
    let mut held: Vec<u64> = second.leases().await.iter().map(|l| l.id).collect();
    held.sort_unstable();
    let mut granted: Vec<u64> = b.iter().map(|s| s.lease).collect();
    granted.sort_unstable();
    assert_eq!(held, granted);
    second
        .handle(touch(Operation::Return, "string=b-2", &b[2], 400))
        .await
        .unwrap();
    assert_eq!(used(&second.usage().await), u64::from(SEATS - 1));
    assert_eq!(used(&first.usage().await), u64::from(SEATS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_beside_the_first_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    two_instances_keep_their_seats_apart(db.store().clone().into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_beside_the_first_on_postgres() {
    let Some(base) =
        postgres_test_url_or_skip("a_second_instance_beside_the_first_on_postgres").unwrap()
    else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    two_instances_keep_their_seats_apart(db.store().clone().into()).await;
    db.cleanup().await.unwrap();
}
