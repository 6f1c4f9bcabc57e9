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
    s.apply_lease_changes(vec![LeaseChange::Delete { id: 1 }])
        .await
        .unwrap();
    batches_match_changes_applied_one_by_one(s).await;
    // texts from clients are data, never SQL, whatever they hold
    let mut odd = lease(999, "string=x'); DROP TABLE leases; --");
    odd.request_id = "\"quoted\" 'single' \\ back; ünïcödé ✓ \u{7f}".into();
    s.apply_lease_changes(vec![LeaseChange::Put(odd.clone())])
        .await
        .unwrap();
    let back = s.load_leases().await.unwrap();
    assert!(back.contains(&odd), "{back:?}");
    // reading them one by one gives the same leases in the same order
    let mut scanned = Vec::new();
    s.scan_leases(|l| scanned.push(l)).await.unwrap();
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
        s.apply_lease_changes(batch).await.unwrap();
        let stored = s.load_leases().await.unwrap();
        assert_eq!(stored, model.values().cloned().collect::<Vec<_>>());
    }
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
        .cluster_commit("a", None, |c| {
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
    let (b_seq, seen) = s.cluster_commit("b", None, |c| (vec![], c)).await.unwrap();
    let CatchUp::Full { leases, .. } = seen else {
        panic!("{seen:?}")
    };
    assert_eq!(leases.len(), 2);
    assert_eq!(b_seq, a_seq);
    // b returns one; a's next round sees exactly that
    let (b_seq, _) = s
        .cluster_commit("b", Some(b_seq), |_| {
            (vec![LeaseChange::Delete { id: 1 }], ())
        })
        .await
        .unwrap();
    let (a_seq, seen) = s
        .cluster_commit("a", Some(a_seq), |c| (vec![], c))
        .await
        .unwrap();
    assert_eq!(seen, CatchUp::Changes(vec![LeaseChange::Delete { id: 1 }]));
    assert_eq!(a_seq, b_seq);
    // nothing new: nothing to apply
    let (_, seen) = s
        .cluster_commit("a", Some(a_seq), |c| (vec![], c))
        .await
        .unwrap();
    assert_eq!(seen, CatchUp::Changes(vec![]));
    // the log pruned past a member's position: it reloads whole
    for i in 10..20 {
        s.cluster_commit("b", None, |_| (vec![LeaseChange::Put(lease(i, "z"))], ()))
            .await
            .unwrap();
    }
    s.prune_lease_log(3).await.unwrap();
    let (_, seen) = s
        .cluster_commit("a", Some(a_seq), |c| (vec![], c))
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
        lite.cluster_commit("c", None, |_| (vec![], ())).await,
        Err(tessera_store::StoreError::Unsupported { .. })
    ));
    db.cleanup().await.unwrap();
}

/// The license server's own SQLite writer connection writes what the pooled store reads back,
/// batches folded as the pooled store folds them, the digest setting included.
#[tokio::test]
async fn the_sqlite_writer_connection_matches_the_store() {
    use tessera_store::MetaStore;
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    let mut w = s.lease_writer().unwrap();
    let mut odd = lease(7, "string=x'); DROP TABLE leases; --");
    odd.request_id = "\"q\" 'ü' ✓".into();
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
        LeaseChange::Digest {
            value: "abc".into(),
        },
    ])
    .unwrap();
    let back = s.load_leases().await.unwrap();
    let mut one = lease(1, "a");
    one.expires_at = datetime!(2026-06-01 0:30 UTC);
    assert_eq!(back, vec![one, odd]);
    assert_eq!(
        s.load_consumed().await.unwrap(),
        vec![("export|1.0|LIN-2".to_string(), 4)]
    );
    assert_eq!(
        s.get_setting(tessera_store::LEASES_DIGEST_SETTING)
            .await
            .unwrap()
            .as_deref(),
        Some("abc")
    );
    // nothing to do is fine
    w.apply(&[]).unwrap();
}
