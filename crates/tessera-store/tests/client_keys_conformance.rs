//! Client keys and trusted producer keys on SQLite, and on PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` is set: added, listed, refused twice, deleted, kept apart per
//! instance; the last trusted producer key cannot be removed.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{
    ClientKeyRecord, ClientKeyStore, InstanceId, KeyRemoval, StoreError, TrustedKeyRecord,
};
use time::OffsetDateTime;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn client(id: &str, secs: i64) -> ClientKeyRecord {
    ClientKeyRecord {
        id: id.into(),
        algorithm: "ed25519".into(),
        public_der: format!("der-of-{id}"),
        added_at: at(secs),
        added_by: "admin".into(),
    }
}

fn trusted(kid: &str, secs: i64) -> TrustedKeyRecord {
    TrustedKeyRecord {
        kid: kid.into(),
        public_pem: format!("pem-of-{kid}"),
        added_at: at(secs),
        added_by: "init".into(),
    }
}

async fn story<S: ClientKeyStore>(s: &S, run: &str) {
    let site = InstanceId::new(&format!("site-{run}")).unwrap();
    let other = InstanceId::new(&format!("other-{run}")).unwrap();
    assert!(s.client_keys(&site).await.unwrap().is_empty());
    s.add_client_key(&site, &client("bb", 200)).await.unwrap();
    s.add_client_key(&site, &client("aa", 100)).await.unwrap();
    s.add_client_key(&other, &client("cc", 100)).await.unwrap();
    let listed = s.client_keys(&site).await.unwrap();
    assert_eq!(listed, vec![client("aa", 100), client("bb", 200)]);
    // the same id again is refused, the first kept
    let mut again = client("aa", 300);
    again.public_der = "something else".into();
    assert!(matches!(
        s.add_client_key(&site, &again).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.client_keys(&site).await.unwrap()[0], client("aa", 100));
    assert!(s.delete_client_key(&site, "aa").await.unwrap());
    assert!(!s.delete_client_key(&site, "aa").await.unwrap());
    assert!(
        !s.delete_client_key(&site, "cc").await.unwrap(),
        "another instance's"
    );
    assert_eq!(s.client_keys(&site).await.unwrap(), vec![client("bb", 200)]);
    assert_eq!(
        s.client_keys(&other).await.unwrap(),
        vec![client("cc", 100)]
    );

    // trusted producer keys
    assert!(s.trusted_producer_keys(&site).await.unwrap().is_empty());
    assert!(s
        .add_trusted_producer_key(&site, &trusted("k1", 10))
        .await
        .unwrap());
    assert!(!s
        .add_trusted_producer_key(&site, &trusted("k1", 20))
        .await
        .unwrap());
    assert!(s
        .add_trusted_producer_key(&other, &trusted("k9", 10))
        .await
        .unwrap());
    assert_eq!(
        s.remove_trusted_producer_key(&site, "k1").await.unwrap(),
        KeyRemoval::Last
    );
    assert_eq!(
        s.remove_trusted_producer_key(&site, "nope").await.unwrap(),
        KeyRemoval::NotFound
    );
    assert!(s
        .add_trusted_producer_key(&site, &trusted("k2", 30))
        .await
        .unwrap());
    assert_eq!(
        s.trusted_producer_keys(&site).await.unwrap(),
        vec![trusted("k1", 10), trusted("k2", 30)]
    );
    assert_eq!(
        s.remove_trusted_producer_key(&site, "k1").await.unwrap(),
        KeyRemoval::Removed
    );
    assert_eq!(
        s.remove_trusted_producer_key(&site, "k2").await.unwrap(),
        KeyRemoval::Last
    );
    assert_eq!(
        s.trusted_producer_keys(&site).await.unwrap(),
        vec![trusted("k2", 30)]
    );
    assert_eq!(
        s.trusted_producer_keys(&other).await.unwrap(),
        vec![trusted("k9", 10)]
    );
}

#[tokio::test]
async fn client_keys_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store(), "a").await;
    let any: tessera_store::AnyStore = db.store().clone().into();
    story(&any, "b").await;
}

#[tokio::test]
async fn client_keys_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("client_keys_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store(), "a").await;
    db.cleanup().await.unwrap();
}
