//! The lease store on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{EngineState, InstanceId, LeaseChange, LeaseRow, LeaseStore};

fn site() -> InstanceId {
    InstanceId::on_site()
}
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
        alias: None,
        device_type: tessera_core::DeviceType::Unknown,
        pool: None,
    }
}

async fn story<S: LeaseStore>(s: &S) {
    s.apply_lease_changes(
        &site(),
        vec![
            LeaseChange::Put(lease(1, "a")),
            LeaseChange::Put(lease(2, "b")),
            LeaseChange::Consumed {
                record_key: "export|1.0|LIN-2".into(),
                units: 7,
            },
        ],
    )
    .await
    .unwrap();
    s.apply_lease_changes(
        &site(),
        vec![
            LeaseChange::Expiry {
                id: 1,
                expires_at: datetime!(2026-06-01 0:20 UTC),
            },
            LeaseChange::Delete { id: 2 },
            LeaseChange::Consumed {
                record_key: "export|1.0|LIN-2".into(),
                units: 9,
            },
        ],
    )
    .await
    .unwrap();
    let leases = s.load_leases(&site()).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].expires_at, datetime!(2026-06-01 0:20 UTC));
    assert_eq!((leases[0].count, leases[0].overdraft), (2, 1));
    assert_eq!(leases[0].alias, None);
    assert_eq!(leases[0].device_type, tessera_core::DeviceType::Unknown);
    assert_eq!(
        s.load_consumed(&site()).await.unwrap(),
        vec![("export|1.0|LIN-2".to_string(), 9)]
    );
    // an empty batch is fine
    s.apply_lease_changes(&site(), vec![]).await.unwrap();
    assert_eq!(s.load_leases(&site()).await.unwrap().len(), 1);
    s.apply_lease_changes(&site(), vec![LeaseChange::Delete { id: 1 }])
        .await
        .unwrap();
    batches_match_changes_applied_one_by_one(s).await;
    // texts from clients are data, never SQL, whatever they hold
    let mut odd = lease(999, "string=x'); DROP TABLE leases; --");
    odd.request_id = "\"quoted\" 'single' \\ back; ünïcödé ✓ \u{7f}".into();
    // what the client said about its device is kept with the lease, as data too
    odd.alias = Some("Ann's 'lab' PC'); --".into());
    odd.device_type = tessera_core::DeviceType::Virtual;
    s.apply_lease_changes(&site(), vec![LeaseChange::Put(odd.clone())])
        .await
        .unwrap();
    let back = s.load_leases(&site()).await.unwrap();
    assert!(back.contains(&odd), "{back:?}");
    // reading them one by one gives the same leases in the same order
    let mut scanned = Vec::new();
    s.scan_leases(&site(), |l| scanned.push(l)).await.unwrap();
    assert_eq!(scanned, back);
}

/// Batches of mixed changes (several to one lease in one batch, in every order) leave the store as
/// applying them one by one would: the store folds each batch into a few statements.
async fn batches_match_changes_applied_one_by_one<S: LeaseStore>(s: &S) {
    let mut model: std::collections::BTreeMap<i64, LeaseRow> = std::collections::BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..40 {
        let size = 1 + next(300) as usize;
        let mut batch = Vec::new();
        for _ in 0..size {
            let id = 1 + next(60) as i64;
            let minute = next(59) as u8;
            let t = datetime!(2026-06-01 0:00 UTC) + time::Duration::minutes(i64::from(minute));
            match next(3) {
                0 => {
                    let mut l = lease(id, &format!("d{}", next(5)));
                    l.expires_at = t;
                    model.insert(id, l.clone());
                    batch.push(LeaseChange::Put(l));
                }
                1 => {
                    if let Some(l) = model.get_mut(&id) {
                        l.expires_at = t;
                    }
                    batch.push(LeaseChange::Expiry { id, expires_at: t });
                }
                _ => {
                    model.remove(&id);
                    batch.push(LeaseChange::Delete { id });
                }
            }
        }
        s.apply_lease_changes(&site(), batch).await.unwrap();
        let stored = s.load_leases(&site()).await.unwrap();
        assert_eq!(stored, model.values().cloned().collect::<Vec<_>>());
    }
}

/// Two instances over one store: the same lease ids and record keys, kept apart in the leases,
/// metered use and engine state.
async fn instances_are_kept_apart<S: LeaseStore>(s: &S) {
    let (a, b) = (
        InstanceId::new("hosted-a").unwrap(),
        InstanceId::new("hosted-b").unwrap(),
    );
    let on_site = (
        s.load_leases(&site()).await.unwrap(),
        s.engine_state(&site()).await.unwrap(),
    );
    for (i, who) in [(&a, "in-a"), (&b, "in-b")] {
        s.apply_lease_changes(
            i,
            vec![
                LeaseChange::Put(lease(1, who)),
                LeaseChange::Put(lease(2, who)),
                LeaseChange::Consumed {
                    record_key: "export|1.0|LIN-2".into(),
                    units: if who == "in-a" { 1 } else { 2 },
                },
                LeaseChange::State(EngineState {
                    lease_digest: who.into(),
                    commit_seq: 1,
                    next_lease: 2,
                }),
            ],
        )
        .await
        .unwrap();
    }
    // a returns lease 1 and renews lease 2: b's are untouched
    s.apply_lease_changes(
        &a,
        vec![
            LeaseChange::Delete { id: 1 },
            LeaseChange::Expiry {
                id: 2,
                expires_at: datetime!(2026-06-02 0:00 UTC),
            },
        ],
    )
    .await
    .unwrap();
    let in_a = s.load_leases(&a).await.unwrap();
    assert_eq!(in_a.len(), 1);
    assert_eq!(in_a[0].expires_at, datetime!(2026-06-02 0:00 UTC));
    assert_eq!(
        s.load_leases(&b).await.unwrap(),
        vec![lease(1, "in-b"), lease(2, "in-b")]
    );
    assert_eq!(s.load_consumed(&a).await.unwrap()[0].1, 1);
    assert_eq!(s.load_consumed(&b).await.unwrap()[0].1, 2);
    assert_eq!(
        s.engine_state(&b).await.unwrap().unwrap().lease_digest,
        "in-b"
    );
    assert_eq!(
        (
            s.load_leases(&site()).await.unwrap(),
            s.engine_state(&site()).await.unwrap()
        ),
        on_site,
        "the on-site instance's rows are untouched"
    );
    s.put_engine_state(&a, &EngineState::default())
        .await
        .unwrap();
    assert_eq!(
        s.engine_state(&a).await.unwrap(),
        Some(EngineState::default())
    );
    assert!(InstanceId::new("").is_err());
    assert!(InstanceId::new("a\nb").is_err());
}

/// More leases than one page or batch of a scan: every one comes back, in key order, the same as
/// loaded at once; another instance's leases stay out; a scan of none calls nothing.
async fn many_leases_scan_in_order<S: LeaseStore>(s: &S) {
    let other = InstanceId::new("hosted-2").unwrap();
    let mut none = 0;
    s.scan_leases(&site(), |_| none += 1).await.unwrap();
    assert_eq!(none, 0);
    // ids out of order, and negative ones (rows kept under `-1 - id`)
    let ids: Vec<i64> = (0..25_000i64)
        .map(|i| (i * 7919) % 25_000 - 5_000)
        .collect();
    for chunk in ids.chunks(5_000) {
        let changes = chunk
            .iter()
            .map(|&id| {
                let mut l = lease(id, &format!("string=pc-{id}"));
                l.alias = (id % 3 == 0).then(|| format!("alias {id}"));
                l.device_type = if id % 2 == 0 {
                    tessera_core::DeviceType::Container
                } else {
                    tessera_core::DeviceType::Physical
                };
                LeaseChange::Put(l)
            })
            .collect();
        s.apply_lease_changes(&site(), changes).await.unwrap();
    }
    s.apply_lease_changes(&other, vec![LeaseChange::Put(lease(1, "string=elsewhere"))])
        .await
        .unwrap();
    let mut scanned = Vec::new();
    s.scan_leases(&site(), |l| scanned.push(l)).await.unwrap();
    assert_eq!(scanned.len(), 25_000);
    assert!(scanned.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(scanned.first().map(|l| l.id), Some(-5_000));
    assert_eq!(scanned, s.load_leases(&site()).await.unwrap());
    assert!(scanned.iter().all(|l| l.device != "string=elsewhere"));
}

#[tokio::test]
async fn leases_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store()).await;
    instances_are_kept_apart(db.store()).await;
}

#[tokio::test]
async fn many_leases_scan_in_order_on_sqlite_in_a_file_and_in_memory() {
    let db = TempSqlite::new().await.unwrap();
    many_leases_scan_in_order(db.store()).await;
    let memory = tessera_store::SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap();
    many_leases_scan_in_order(&memory).await;
}

/// A store written before instances existed: its leases, metered use and lease digest setting
/// belong to the on-site instance after the migration.
#[tokio::test]
async fn rows_from_before_instances_migrate_to_the_on_site_instance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // the schema as migration 8 left it, with a row in each table
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE settings (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL) STRICT;
             CREATE TABLE anchor (id INTEGER NOT NULL PRIMARY KEY, value INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        for m in ["0005_leases.sql", "0006_lease_log.sql"] {
            let sql = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("migrations/sqlite")
                    .join(m),
            )
            .unwrap();
            c.execute_batch(&sql).unwrap();
        }
        c.execute_batch(
            "INSERT INTO leases VALUES (5, 'string=ws|user=ann', 'r', 'cad|1.0|', 1, 0, 1780000000, 0);
             INSERT INTO metered_use VALUES ('export|1.0|', 4);
             INSERT INTO settings VALUES ('server.leases_digest', 'abcdef@12@34');",
        )
        .unwrap();
        let migration = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite/0009_instances.sql"),
        )
        .unwrap();
        c.execute_batch(&migration).unwrap();
        let state: (String, String, i64, i64) = c
            .query_row(
                "SELECT instance, lease_digest, commit_seq, next_lease FROM engine_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(state, ("on-site".into(), "abcdef".into(), 12, 34));
        let left: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM settings WHERE key = 'server.leases_digest'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let lease: (String, i64, String) = c
            .query_row("SELECT instance, id, device FROM leases", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(lease, ("on-site".into(), 5, "string=ws|user=ann".into()));
        let units: (String, i64) = c
            .query_row("SELECT instance, units FROM metered_use", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(units, ("on-site".into(), 4));
    }
    // and the short forms earlier versions wrote
    for (old, want) in [
        ("abc", ("abc", 0, 0)),
        ("abc@7", ("abc", 7, 0)),
        ("@x@5", ("", 0, 5)),
    ] {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE settings (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL) STRICT;
             CREATE TABLE leases (id INTEGER PRIMARY KEY, device TEXT, request_id TEXT, record_key TEXT, count INTEGER, overdraft INTEGER, expires_at INTEGER, borrowed INTEGER);
             CREATE TABLE metered_use (record_key TEXT PRIMARY KEY, units INTEGER);
             CREATE TABLE lease_log (seq INTEGER PRIMARY KEY);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO settings VALUES ('server.leases_digest', ?1)",
            [old],
        )
        .unwrap();
        let migration = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite/0009_instances.sql"),
        )
        .unwrap();
        c.execute_batch(&migration).unwrap();
        let got: (String, i64, i64) = c
            .query_row(
                "SELECT lease_digest, commit_seq, next_lease FROM engine_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(got, (want.0.to_string(), want.1, want.2), "{old}");
    }
}

#[tokio::test]
async fn leases_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("leases_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store()).await;
    instances_are_kept_apart(db.store()).await;
    db.cleanup().await.unwrap();
    let db = TempPostgres::create(&base).await.unwrap();
    many_leases_scan_in_order(db.store()).await;
    db.cleanup().await.unwrap();
}

/// Cluster members over one PostgreSQL: each round sees what the others committed since its last.
#[tokio::test]
async fn cluster_rounds_catch_up_on_postgres() {
    use tessera_store::CatchUp;
    let Some(base) = postgres_test_url_or_skip("cluster_rounds_catch_up_on_postgres").unwrap()
    else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    let s: tessera_store::AnyStore = db.store().clone().into();
    // a's first round reads everything (nothing yet) and writes two leases
    let (a_seq, first) = s
        .cluster_commit(&site(), "a", None, |c| {
            (
                vec![
                    LeaseChange::Put(lease(1, "x")),
                    LeaseChange::Put(lease(2, "y")),
                ],
                c,
            )
        })
        .await
        .unwrap();
    assert_eq!(
        first,
        CatchUp::Full {
            leases: vec![],
            consumed: vec![]
        }
    );
    // b starts: whole state
    let (b_seq, seen) = s
        .cluster_commit(&site(), "b", None, |c| (vec![], c))
        .await
        .unwrap();
    let CatchUp::Full { leases, .. } = seen else {
        panic!("{seen:?}")
    };
    assert_eq!(leases.len(), 2);
    assert_eq!(b_seq, a_seq);
    // b returns one; a's next round sees exactly that
    let (b_seq, _) = s
        .cluster_commit(&site(), "b", Some(b_seq), |_| {
            (vec![LeaseChange::Delete { id: 1 }], ())
        })
        .await
        .unwrap();
    let (a_seq, seen) = s
        .cluster_commit(&site(), "a", Some(a_seq), |c| (vec![], c))
        .await
        .unwrap();
    assert_eq!(seen, CatchUp::Changes(vec![LeaseChange::Delete { id: 1 }]));
    assert_eq!(a_seq, b_seq);
    // nothing new: nothing to apply
    let (_, seen) = s
        .cluster_commit(&site(), "a", Some(a_seq), |c| (vec![], c))
        .await
        .unwrap();
    assert_eq!(seen, CatchUp::Changes(vec![]));
    // the log pruned past a member's position: it reloads whole
    for i in 10..20 {
        s.cluster_commit(&site(), "b", None, |_| {
            (vec![LeaseChange::Put(lease(i, "z"))], ())
        })
        .await
        .unwrap();
    }
    s.prune_lease_log(&site(), 3).await.unwrap();
    let (_, seen) = s
        .cluster_commit(&site(), "a", Some(a_seq), |c| (vec![], c))
        .await
        .unwrap();
    let CatchUp::Full { leases, .. } = seen else {
        panic!("{seen:?}")
    };
    assert_eq!(leases.len(), 11);
    // SQLite cannot be shared by a cluster: said plainly
    let lite = tessera_store::testing::TempSqlite::new().await.unwrap();
    let lite: tessera_store::AnyStore = lite.store().clone().into();
    assert!(matches!(
        lite.cluster_commit(&site(), "c", None, |_| (vec![], ()))
            .await,
        Err(tessera_store::StoreError::Unsupported { .. })
    ));
    db.cleanup().await.unwrap();
}

/// The license server's own SQLite writer connection writes what the pooled store reads back,
/// batches folded as the pooled store folds them, the digest setting included.
#[tokio::test]
async fn the_sqlite_writer_connection_matches_the_store() {
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    let mut w = s.lease_writer(&site()).unwrap();
    let mut odd = lease(7, "string=x'); DROP TABLE leases; --");
    odd.request_id = "\"q\" 'ü' ✓".into();
    odd.alias = Some("Ann's PC".into());
    odd.device_type = tessera_core::DeviceType::Container;
    w.apply(&[
        LeaseChange::Put(lease(1, "a")),
        LeaseChange::Put(lease(2, "b")),
        LeaseChange::Put(odd.clone()),
        LeaseChange::Expiry {
            id: 1,
            expires_at: datetime!(2026-06-01 0:30 UTC),
        },
        LeaseChange::Delete { id: 2 },
        LeaseChange::Consumed {
            record_key: "export|1.0|LIN-2".into(),
            units: 4,
        },
        LeaseChange::State(EngineState {
            lease_digest: "abc".into(),
            commit_seq: 3,
            next_lease: 9,
        }),
    ])
    .unwrap();
    let back = s.load_leases(&site()).await.unwrap();
    let mut one = lease(1, "a");
    one.expires_at = datetime!(2026-06-01 0:30 UTC);
    assert_eq!(back, vec![one, odd]);
    assert_eq!(
        s.load_consumed(&site()).await.unwrap(),
        vec![("export|1.0|LIN-2".to_string(), 4)]
    );
    assert_eq!(
        s.engine_state(&site()).await.unwrap(),
        Some(EngineState {
            lease_digest: "abc".into(),
            commit_seq: 3,
            next_lease: 9,
        })
    );
    // nothing to do is fine
    w.apply(&[]).unwrap();
}
