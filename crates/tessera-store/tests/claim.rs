//! A process's claim on a PostgreSQL store (its advisory lock) survives the loss of the connection
//! holding it only as a fence: commits stop while it is lost, the watcher takes it again, and a
//! process that took it over meanwhile fences the old holder out. Runs when
//! `TESSERA_TEST_POSTGRES_URL` is set (each test on a database of its own).

use std::time::Duration;

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres};
use tessera_store::{
    AnyStore, ClaimMode, ClaimStatus, LeaseChange, LeaseRow, LeaseStore, StoreError,
};

const NAME: &str = "tessera-license-server";

fn lease(id: i64) -> LeaseChange {
    LeaseChange::Put(LeaseRow {
        id,
        device: format!("string=ws-{id}"),
        request_id: "r".into(),
        record_key: "modeler|2.0|".into(),
        count: 1,
        overdraft: 0,
        expires_at: time::OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap(),
        borrowed: false,
        alias: None,
        device_type: tessera_core::DeviceType::Unknown,
    })
}

async fn ids(store: &AnyStore) -> Vec<i64> {
    store
        .load_leases(&tessera_store::InstanceId::on_site())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Waits (at most 30 s) until `store`'s claim is in the state `want` says.
async fn until(store: &AnyStore, want: impl Fn(&ClaimStatus) -> bool) -> ClaimStatus {
    for _ in 0..3000 {
        let s = store.claim_status();
        if want(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the claim never got there: {:?}", store.claim_status());
}

/// A process whose lock connection died, but which has not noticed yet (its watcher checks once an
/// hour here), cannot commit once another process has taken the lock: exclusive or shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_over_fences_the_old_holder_out() {
    let Some(base) =
        postgres_test_url_or_skip("a_claim_taken_over_fences_the_old_holder_out").unwrap()
    else {
        return;
    };
    for mode in [ClaimMode::Exclusive, ClaimMode::Shared] {
        let db = TempPostgres::create(&base).await.unwrap();
        let old = tessera_store::open(db.url()).await.unwrap();
        let hour = Duration::from_secs(3600);
        let guard = old.claim(NAME, mode, hour).await.unwrap().unwrap();
        assert_eq!(old.claim_status(), ClaimStatus::Held);
        old.apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(1)])
            .await
            .unwrap();
        if mode == ClaimMode::Shared {
            // a cluster member's round checks the claim too
            old.cluster_commit(&tessera_store::InstanceId::on_site(), "m1", None, |_| {
                (vec![lease(2)], ())
            })
            .await
            .unwrap();
        }
        // the connection holding the lock dies (so do the pooled ones: they reconnect)
        db.terminate_connections(&[]).await.unwrap();
        let new = tessera_store::open(db.url()).await.unwrap();
        let mut taken = None;
        for _ in 0..3000 {
            taken = new.exclusive(NAME).await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _new_guard = taken.expect("the lock is free once its connection is gone");
        // the old holder has not noticed, but its commits are refused, in their transaction
        assert_eq!(old.claim_status(), ClaimStatus::Held);
        let err = old
            .apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(3)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LockLost { .. }), "{err}");
        assert!(err.to_string().contains("took the database over"), "{err}");
        if mode == ClaimMode::Shared {
            let err = old
                .cluster_commit(&tessera_store::InstanceId::on_site(), "m1", None, |_| {
                    (vec![lease(4)], ())
                })
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::LockLost { .. }), "{err}");
        }
        // and from now on it knows
        assert!(matches!(old.claim_status(), ClaimStatus::Lost { .. }));
        assert!(old.claim_check().is_err());
        new.apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(5)])
            .await
            .unwrap();
        let mut want = vec![1, 5];
        if mode == ClaimMode::Shared {
            want.insert(1, 2);
        }
        assert_eq!(ids(&new).await, want, "{mode:?}");
        drop(guard);
        new.close().await;
        old.close().await;
        db.cleanup().await.unwrap();
    }
}

/// The watcher notices a lost lock, refuses commits while another session holds it, and takes it
/// again (reporting once that what was read before may be stale) when it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_claim_is_noticed_and_taken_again() {
    let Some(base) = postgres_test_url_or_skip("a_lost_claim_is_noticed_and_taken_again").unwrap()
    else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    let store = tessera_store::open(db.url()).await.unwrap();
    let _guard = store
        .claim(NAME, ClaimMode::Exclusive, Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    assert!(!store.claim_check().unwrap());
    store
        .apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(1)])
        .await
        .unwrap();
    // a session queues for the lock, then every other connection dies: the lock goes to it
    let waiter = db.queue_for_lock(NAME).await.unwrap();
    db.terminate_connections(&[waiter.pid()]).await.unwrap();
    let blocker = waiter.held().await.unwrap();
    let lost = until(&store, |s| matches!(s, ClaimStatus::Lost { .. })).await;
    // the watcher keeps trying and finds the lock taken
    let lost = match lost {
        ClaimStatus::Lost { .. } => {
            until(&store, |s| {
                matches!(s, ClaimStatus::Lost { reason } if reason.contains("another license server process"))
            })
            .await
        }
        s => s,
    };
    let ClaimStatus::Lost { reason } = lost else {
        unreachable!()
    };
    assert!(reason.contains("grants nothing"), "{reason}");
    let err = store
        .apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(2)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LockLost { .. }), "{err}");
    assert!(store.claim_check().is_err());
    // nobody else gets it either
    let other = tessera_store::open(db.url()).await.unwrap();
    assert!(other.exclusive(NAME).await.unwrap().is_none());
    // released: taken again
    blocker.release().await.unwrap();
    until(&store, |s| *s == ClaimStatus::Held).await;
    assert!(store.claim_check().unwrap(), "read again after a loss");
    assert!(!store.claim_check().unwrap(), "once");
    store
        .apply_lease_changes(&tessera_store::InstanceId::on_site(), vec![lease(3)])
        .await
        .unwrap();
    assert_eq!(ids(&store).await, vec![1, 3]);
    assert!(other.exclusive(NAME).await.unwrap().is_none());
    other.close().await;
    store.close().await;
    db.cleanup().await.unwrap();
}
