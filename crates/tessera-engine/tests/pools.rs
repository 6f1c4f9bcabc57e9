//! A named-pool model in an engine: in force between two decisions, kept across a new license
//! bundle (resolved again: out of force while it does not fit, back when it does), out of force
//! while reservations are, and the leases held counted back into their pools after a rebuild.

mod support;

use std::sync::Arc;

use support::{take, touch};
use tessera_core::capability::Operation;
use tessera_core::feature::{Count, Feature};
use tessera_core::model::Model;
use tessera_core::reservations::Reservations;
use tessera_core::{HostId, ManualClock, SigningKey};
use tessera_engine::{Engine, EngineSetup, InstanceId, PoolsState, SeatPolicy, Sharing};
use tessera_store::testing::TempSqlite;

fn records(seats: u32) -> Vec<Feature> {
    vec![Feature::new(
        "modeler",
        "2.0".parse().unwrap(),
        Count::Counted(seats),
    )]
}

/// (allocated, used) of `pool` (`None`: the default pool).
fn row(p: &PoolsState, pool: Option<&str>) -> (u64, u64) {
    p.rows
        .iter()
        .find(|(u, _)| u.pool.as_deref() == pool)
        .map(|(u, _)| (u.allocated, u.used))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_model_stays_in_force_across_new_bundles_while_it_fits() {
    let db = TempSqlite::new().await.unwrap();
    let key = SigningKey::from_seed(&[7; 32]);
    let clock = Arc::new(ManualClock::new(
        tessera_core::time::OffsetDateTime::now_utc(),
    ));
    let e = Engine::load(EngineSetup {
        instance: InstanceId::new(InstanceId::ON_SITE).unwrap(),
        records: records(4),
        store: db.store().clone().into(),
        key: key.clone(),
        server: "string=license-server".parse::<HostId>().unwrap(),
        clock: clock.clone(),
        policy: SeatPolicy::default(),
        sharing: Sharing::Alone(None),
    })
    .await
    .unwrap();
    assert!(e.pools().model.is_none() && e.pools().rows.is_empty());

    let model = Model::parse(
        r#"model "m" { partitions { partition "pune" { "modeler" 2.0 2 } } rules { hostid "string=p*" => "pune" } }"#,
    )
    .unwrap();
    e.set_pool_model(Some(model.clone())).await.unwrap();
    let p = e.pools();
    assert!(p.in_force && p.not_in_force.is_none(), "{p:?}");
    assert_eq!((row(&p, Some("pune")), row(&p, None)), ((2, 0), (2, 0)));

    // strangers take the default pool's 2; the third is refused while pune's seats are free
    assert!(take(&e, &key, "string=s1", 1).await.is_some());
    assert!(take(&e, &key, "string=s2", 2).await.is_some());
    assert!(take(&e, &key, "string=s3", 3).await.is_none());
    let p1 = take(&e, &key, "string=p1", 4).await.unwrap();
    assert!(take(&e, &key, "string=p2", 5).await.is_some());
    assert_eq!(row(&e.pools(), Some("pune")), (2, 2));

    // a bundle of 1 seat: the model no longer fits; served without it, saying why
    e.reload(records(1)).await.unwrap();
    let p = e.pools();
    assert!(!p.in_force && p.model.is_some(), "{p:?}");
    assert!(
        p.not_in_force.as_deref().unwrap().contains("does not fit"),
        "{p:?}"
    );
    assert!(p.rows.is_empty());

    // 4 seats again: back in force, the leases held (rebuilt from the store) counted where the
    // rules put their holders
    e.reload(records(4)).await.unwrap();
    let p = e.pools();
    assert!(p.in_force, "{p:?}");
    assert_eq!((row(&p, Some("pune")), row(&p, None)), ((2, 2), (2, 2)));
    // a pool seat returned is pune's again: a stranger is still refused
    e.handle(touch(Operation::Return, "string=p1", &p1, 6))
        .await
        .unwrap();
    assert_eq!(row(&e.pools(), Some("pune")), (2, 1));
    assert!(take(&e, &key, "string=s4", 7).await.is_none());

    // reservations take the pools out of force; without them the model is back
    let r = Reservations::parse(
        r#"{"groups": [{"name": "Lab", "reservations": [{"holder": "string=x", "entries": [{"feature": "modeler", "version": "2.0", "count": 1}]}]}]}"#,
    )
    .unwrap();
    e.set_reservations(r).await.unwrap();
    let p = e.pools();
    assert!(!p.in_force, "{p:?}");
    assert!(p.not_in_force.as_deref().unwrap().contains("reservations"));
    e.set_reservations(Reservations::default()).await.unwrap();
    assert!(e.pools().in_force);

    // deleted: one default pool again
    e.set_pool_model(None).await.unwrap();
    let p = e.pools();
    assert!(p.model.is_none() && !p.in_force && p.rows.is_empty());
}
