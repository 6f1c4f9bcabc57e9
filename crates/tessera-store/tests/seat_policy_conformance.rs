//! Seat policy documents on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set:
//! stored, replaced, deleted, and kept apart per instance and per kind.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{InstanceId, PolicyKind, SeatPolicyStore};
use time::OffsetDateTime;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

async fn story<S: SeatPolicyStore>(s: &S) {
    let site = InstanceId::on_site();
    let other = InstanceId::new("acme-1").unwrap();
    assert_eq!(
        s.policy_document(&site, PolicyKind::Reservations)
            .await
            .unwrap(),
        None
    );
    s.set_policy_document(
        &site,
        PolicyKind::Reservations,
        Some("{\"groups\":[]}"),
        at(100),
    )
    .await
    .unwrap();
    s.set_policy_document(&other, PolicyKind::Reservations, Some("other"), at(200))
        .await
        .unwrap();
    s.set_policy_document(
        &site,
        PolicyKind::PoolModel,
        Some("model \"m\" {}"),
        at(300),
    )
    .await
    .unwrap();
    let doc = s
        .policy_document(&site, PolicyKind::Reservations)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.body, "{\"groups\":[]}");
    assert_eq!(doc.updated_at, Some(at(100)));
    // replaced
    s.set_policy_document(&site, PolicyKind::Reservations, Some("two"), at(150))
        .await
        .unwrap();
    let doc = s
        .policy_document(&site, PolicyKind::Reservations)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((doc.body.as_str(), doc.updated_at), ("two", Some(at(150))));
    // deleted: the other kind and the other instance keep theirs
    s.set_policy_document(&site, PolicyKind::Reservations, None, at(160))
        .await
        .unwrap();
    assert_eq!(
        s.policy_document(&site, PolicyKind::Reservations)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.policy_document(&site, PolicyKind::PoolModel)
            .await
            .unwrap()
            .map(|d| d.body),
        Some("model \"m\" {}".to_string())
    );
    assert_eq!(
        s.policy_document(&other, PolicyKind::Reservations)
            .await
            .unwrap()
            .map(|d| d.body),
        Some("other".to_string())
    );
    // deleting what is not there is no error
    s.set_policy_document(&site, PolicyKind::Reservations, None, at(170))
        .await
        .unwrap();
}

#[tokio::test]
async fn seat_policy_documents_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store()).await;
    let any: tessera_store::AnyStore = db.store().clone().into();
    story(&any).await;
}

#[tokio::test]
async fn seat_policy_documents_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("seat_policy_documents_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store()).await;
    db.cleanup().await.unwrap();
}
