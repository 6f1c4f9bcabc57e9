//! The lease store on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{LeaseChange, LeaseRow, LeaseStore};
use time::macros::datetime;

fn lease(id: i64, device: &str) -> LeaseRow {
    LeaseRow {
        id,
        device: device.into(),
        request_id: format!("r{id}"),
        record_key: "cad|1.0|LIN-1".into(),
        count: 2,
        overdraft: 1,
        expires_at: datetime!(2026-06-01 0:10 UTC),
        borrowed: false,
    }
}

async fn story<S: LeaseStore>(s: &S) {
    s.apply_lease_changes(vec![
        LeaseChange::Put(lease(1, "a")),
        LeaseChange::Put(lease(2, "b")),
        LeaseChange::Consumed {
            record_key: "export|1.0|LIN-2".into(),
            units: 7,
        },
    ])
    .await
    .unwrap();
    s.apply_lease_changes(vec![
        LeaseChange::Expiry {
            id: 1,
            expires_at: datetime!(2026-06-01 0:20 UTC),
        },
        LeaseChange::Delete { id: 2 },
        LeaseChange::Consumed {
            record_key: "export|1.0|LIN-2".into(),
            units: 9,
        },
    ])
    .await
    .unwrap();
    let leases = s.load_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].expires_at, datetime!(2026-06-01 0:20 UTC));
    assert_eq!((leases[0].count, leases[0].overdraft), (2, 1));
    assert_eq!(
        s.load_consumed().await.unwrap(),
        vec![("export|1.0|LIN-2".to_string(), 9)]
    );
    // an empty batch is fine
    s.apply_lease_changes(vec![]).await.unwrap();
    assert_eq!(s.load_leases().await.unwrap().len(), 1);
}

#[tokio::test]
async fn leases_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store()).await;
}

#[tokio::test]
async fn leases_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("leases_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store()).await;
    db.cleanup().await.unwrap();
}
