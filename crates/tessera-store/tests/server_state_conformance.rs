//! The license server's state on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is
//! set: the typed record, the cluster's claim on the daily sync, and the migration of the
//! `server.*` settings that held it before.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{
    InstanceId, MetaStore, PgStore, ServerState, ServerStateStore, SqliteStore, StoreError,
};
use time::OffsetDateTime;

fn site() -> InstanceId {
    InstanceId::on_site()
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// Every setter changes its own fields and leaves the others as they were.
async fn story<S: ServerStateStore>(s: &S) {
    assert_eq!(
        s.server_state(&site()).await.unwrap(),
        ServerState::default(),
        "nothing set yet"
    );
    let mut want = ServerState::default();

    s.set_server_hostid(&site(), "string=license-server-1")
        .await
        .unwrap();
    want.hostid = Some("string=license-server-1".into());
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    s.set_machine_ids(&site(), &ids(&["machine=abc", "mac=02:00:00:00:00:01"]))
        .await
        .unwrap();
    want.machine_ids = Some(ids(&["machine=abc", "mac=02:00:00:00:00:01"]));
    assert_eq!(s.server_state(&site()).await.unwrap(), want);
    // a host id that would not come back as one line is refused, and nothing changes
    for bad in [vec!["a\nb".to_string()], vec![String::new()]] {
        let err = s.set_machine_ids(&site(), &bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
    }
    assert_eq!(s.server_state(&site()).await.unwrap(), want);
    s.set_machine_ids(&site(), &ids(&["machine=def"]))
        .await
        .unwrap();
    want.machine_ids = Some(ids(&["machine=def"]));
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    s.install_license(&site(), "-----LICENSE 1-----", "-----CERT 1-----")
        .await
        .unwrap();
    want.license = Some("-----LICENSE 1-----".into());
    want.certificate = Some("-----CERT 1-----".into());
    assert_eq!(s.server_state(&site()).await.unwrap(), want);
    // texts are data, whatever they hold
    let odd = "'); DROP TABLE server_state; -- \"quoted\" ünïcödé ✓\nsecond line";
    s.install_license(&site(), odd, "-----CERT 2-----")
        .await
        .unwrap();
    want.license = Some(odd.into());
    want.certificate = Some("-----CERT 2-----".into());
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    s.set_backoffice_url(&site(), "https://backoffice.example")
        .await
        .unwrap();
    want.backoffice_url = Some("https://backoffice.example".into());
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    s.note_scheduled_sync_done(&site(), at(1_700_000_000))
        .await
        .unwrap();
    want.scheduled_sync_done_at = Some(at(1_700_000_000));
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    assert!(s
        .claim_scheduled_sync(&site(), at(1_700_000_100), at(1_700_000_000))
        .await
        .unwrap());
    want.scheduled_sync_claimed_at = Some(at(1_700_000_100));
    assert_eq!(s.server_state(&site()).await.unwrap(), want);

    // set again: replaced
    s.set_server_hostid(&site(), "string=license-server-2")
        .await
        .unwrap();
    s.set_backoffice_url(&site(), "https://other.example")
        .await
        .unwrap();
    want.hostid = Some("string=license-server-2".into());
    want.backoffice_url = Some("https://other.example".into());
    assert_eq!(s.server_state(&site()).await.unwrap(), want);
}

/// The claim on the scheduled sync: set unless a claim at or after the threshold exists.
async fn claims<S: ServerStateStore + Clone + Send + Sync + 'static>(s: &S, instance: &InstanceId) {
    let claimed = || async move {
        s.server_state(instance)
            .await
            .unwrap()
            .scheduled_sync_claimed_at
    };
    // the first claim sets it (also on an instance without a record); a claim inside the window
    // does not; one after it does
    assert!(s
        .claim_scheduled_sync(instance, at(1_000), at(900))
        .await
        .unwrap());
    assert_eq!(claimed().await, Some(at(1_000)));
    assert!(!s
        .claim_scheduled_sync(instance, at(1_050), at(950))
        .await
        .unwrap());
    assert!(!s
        .claim_scheduled_sync(instance, at(1_000), at(1_000))
        .await
        .unwrap());
    assert_eq!(claimed().await, Some(at(1_000)));
    assert!(s
        .claim_scheduled_sync(instance, at(2_000), at(1_900))
        .await
        .unwrap());
    assert_eq!(claimed().await, Some(at(2_000)));
    // numbers of different lengths compare as numbers
    assert!(!s
        .claim_scheduled_sync(instance, at(99), at(10))
        .await
        .unwrap());
    assert!(s
        .claim_scheduled_sync(instance, at(123_456), at(12_345))
        .await
        .unwrap());
    // racing claims for the same window: exactly one wins
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (s, instance) = (s.clone(), instance.clone());
            tokio::spawn(async move {
                s.claim_scheduled_sync(&instance, at(200_000 + i), at(199_900))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += u32::from(task.await.unwrap().unwrap());
    }
    assert_eq!(won, 1, "racing claims: {won} won");
    let v = claimed().await.unwrap().unix_timestamp();
    assert!((200_000..200_012).contains(&v), "{v}");
}

/// Two instances over one store keep their records apart.
async fn instances_are_kept_apart<S: ServerStateStore>(s: &S) {
    let on_site = s.server_state(&site()).await.unwrap();
    let (a, b) = (
        InstanceId::new("hosted-a").unwrap(),
        InstanceId::new("hosted-b").unwrap(),
    );
    s.install_license(&a, "license a", "cert a").await.unwrap();
    s.set_server_hostid(&b, "string=b").await.unwrap();
    let got_a = s.server_state(&a).await.unwrap();
    assert_eq!(
        (got_a.license.as_deref(), got_a.certificate.as_deref()),
        (Some("license a"), Some("cert a"))
    );
    assert_eq!(got_a.hostid, None);
    let got_b = s.server_state(&b).await.unwrap();
    assert_eq!(got_b.hostid.as_deref(), Some("string=b"));
    assert_eq!(got_b.license, None);
    assert_eq!(
        s.server_state(&site()).await.unwrap(),
        on_site,
        "the on-site record is untouched"
    );
}

async fn all<S: ServerStateStore + Clone + Send + Sync + 'static>(s: &S) {
    story(s).await;
    claims(s, &InstanceId::new("claims").unwrap()).await;
    instances_are_kept_apart(s).await;
}

#[tokio::test]
async fn server_state_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    all(db.store()).await;
    let any: tessera_store::AnyStore = db.store().clone().into();
    claims(&any, &InstanceId::new("through-any").unwrap()).await;
}

#[tokio::test]
async fn server_state_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("server_state_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    all(db.store()).await;
    let any: tessera_store::AnyStore = db.store().clone().into();
    claims(&any, &InstanceId::new("through-any").unwrap()).await;
    db.cleanup().await.unwrap();
}

/// The settings that held the server's state before migration 14.
const OLD_KEYS: [&str; 7] = [
    "server.hostid",
    "server.machine_ids",
    "server.license",
    "server.certificate",
    "server.backoffice_url",
    "server.scheduled_sync_claimed_at",
    "server.scheduled_sync_done_at",
];

/// One store as an earlier Tessera left it (`old` settings, `None` for absent), and the state
/// migration 14 must make of it.
struct Case {
    old: [Option<&'static str>; 7],
    want: ServerState,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            old: [
                Some("string=srv-1"),
                Some("machine=abc\nmac=02:00:00:00:00:01"),
                Some("-----BEGIN TESSERA LICENSE-----\nabc\n-----END TESSERA LICENSE-----"),
                Some("-----BEGIN TESSERA CERTIFICATE-----"),
                Some("https://backoffice.example"),
                Some("00000000001700000000"),
                Some("1700000500"),
            ],
            want: ServerState {
                hostid: Some("string=srv-1".into()),
                machine_ids: Some(ids(&["machine=abc", "mac=02:00:00:00:00:01"])),
                license: Some(
                    "-----BEGIN TESSERA LICENSE-----\nabc\n-----END TESSERA LICENSE-----".into(),
                ),
                certificate: Some("-----BEGIN TESSERA CERTIFICATE-----".into()),
                backoffice_url: Some("https://backoffice.example".into()),
                scheduled_sync_claimed_at: Some(at(1_700_000_000)),
                scheduled_sync_done_at: Some(at(1_700_000_500)),
            },
        },
        // malformed times read as never; the migration does not fail on them
        Case {
            old: [
                Some("string=srv-2"),
                None,
                None,
                None,
                None,
                Some("99999999999999999999"),
                Some("yesterday"),
            ],
            want: ServerState {
                hostid: Some("string=srv-2".into()),
                ..ServerState::default()
            },
        },
        Case {
            old: [
                None,
                None,
                None,
                None,
                None,
                Some("-5"),
                Some(" 1700000001 "),
            ],
            want: ServerState {
                scheduled_sync_done_at: Some(at(1_700_000_001)),
                ..ServerState::default()
            },
        },
        Case {
            old: [
                None,
                None,
                None,
                None,
                None,
                Some(""),
                Some("00000000000000000000"),
            ],
            want: ServerState::default(),
        },
    ]
}

async fn put_old_settings<S: MetaStore>(s: &S, case: &Case) {
    for (key, value) in OLD_KEYS.iter().zip(case.old) {
        if let Some(value) = value {
            s.put_setting(key, value).await.unwrap();
        }
    }
    // a setting the migration leaves alone
    s.put_setting("server.admin_token_sha256", "kept")
        .await
        .unwrap();
}

async fn check_migrated<S: MetaStore + ServerStateStore>(s: &S, case: &Case) {
    assert_eq!(s.server_state(&site()).await.unwrap(), case.want);
    for key in OLD_KEYS {
        assert_eq!(s.get_setting(key).await.unwrap(), None, "{key} is left");
    }
    assert_eq!(
        s.get_setting("server.admin_token_sha256")
            .await
            .unwrap()
            .as_deref(),
        Some("kept")
    );
}

/// A store written before migration 14: its `server.*` settings become the on-site record.
#[tokio::test]
async fn settings_migrate_to_the_on_site_record_on_sqlite() {
    for case in cases() {
        let db = TempSqlite::new().await.unwrap();
        put_old_settings(db.store(), &case).await;
        // back to before migration 14
        sqlx::query("DROP TABLE server_state")
            .execute(db.store().pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 14")
            .execute(db.store().pool())
            .await
            .unwrap();
        let again = SqliteStore::connect(db.url()).await.unwrap();
        check_migrated(&again, &case).await;
        again.close().await;
    }
}

/// As [`settings_migrate_to_the_on_site_record_on_sqlite`], on PostgreSQL.
#[tokio::test]
async fn settings_migrate_to_the_on_site_record_on_postgres() {
    let Some(base) =
        postgres_test_url_or_skip("settings_migrate_to_the_on_site_record_on_postgres").unwrap()
    else {
        return;
    };
    for case in cases() {
        let db = TempPostgres::create(&base).await.unwrap();
        put_old_settings(db.store(), &case).await;
        sqlx::query("DROP TABLE server_state")
            .execute(db.store().pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 14")
            .execute(db.store().pool())
            .await
            .unwrap();
        let again = PgStore::connect(db.url()).await.unwrap();
        check_migrated(&again, &case).await;
        again.close().await;
        db.cleanup().await.unwrap();
    }
}

/// A store with none of the old settings gets no record (the instance reads as nothing set).
#[tokio::test]
async fn no_old_settings_no_record() {
    let db = TempSqlite::new().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM server_state")
        .fetch_one(db.store().pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        db.store().server_state(&site()).await.unwrap(),
        ServerState::default()
    );
}
