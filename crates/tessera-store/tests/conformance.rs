//! The store conformance suite: one story, run against every backend.
//!
//! SQLite always; PostgreSQL when `TESSERA_TEST_POSTGRES_URL` names a server (each run creates
//! and drops its own database there). Without it the PostgreSQL runs print that they were
//! skipped, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::Path;

use rand::SeedableRng;
use tessera_core::{ActivationKey, KeyHash};
use tessera_store::testing::{postgres_test_url_or_skip, with_temp_postgres, TempSqlite};
use tessera_store::{
    open, ActivationKeyRecord, ActivationKeyStore, AnyStore, Backend, IssuedLicense, KeyStore,
    LicenseStore, MetaStore, NewActivationKey, Page, PgStore, PublicKeyRecord, SqliteStore, Store,
    StoreError,
};
use time::OffsetDateTime;

/// A whole-second time `secs` after a fixed epoch (stores keep seconds only).
fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
}

fn key_hash(seed: u64) -> KeyHash {
    ActivationKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed)).hash()
}

// ---------------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------------

/// Everything every backend must do alike. Expects an empty, freshly migrated store.
async fn conformance<S: Store>(s: &S, backend: Backend) {
    assert_eq!(s.backend(), backend);
    settings(s).await;
    anchor(s).await;
    concurrent_anchor_bumps(s).await;
    claimed_settings(s).await;
    public_keys(s).await;
    licenses(s).await;
    activation_keys(s).await;
    api_tokens(s).await;
    users_and_roles(s).await;
    sessions(s).await;
    deleted_users(s).await;
    audit_log(s).await;
    server_confirmations(s).await;
}

/// A bound license server's confirmation is recorded (the latest wins); an unbound host id's is
/// not, and unbinding forgets it.
async fn server_confirmations<S: Store>(s: &S) {
    let host = "ethernet=0050569a3b01";
    assert!(!s.confirm_server(host, "LIC-1", at(10)).await.unwrap());
    assert_eq!(s.server_confirmation(host).await.unwrap(), None);
    s.bind_server(host, "key-a", "CUS-1", at(0)).await.unwrap();
    assert_eq!(s.server_confirmation(host).await.unwrap(), None);
    assert!(s.confirm_server(host, "LIC-1", at(10)).await.unwrap());
    assert!(s.confirm_server(host, "LIC-2", at(20)).await.unwrap());
    assert_eq!(
        s.server_confirmation(host).await.unwrap(),
        Some(("LIC-2".to_string(), at(20)))
    );
    assert!(s.unbind_server(host).await.unwrap());
    assert_eq!(s.server_confirmation(host).await.unwrap(), None);
}

/// A deleted user takes their tokens and sessions along; an unknown name is `false`.
async fn deleted_users<S: Store>(s: &S) {
    use tessera_store::{SessionRecord, TokenRecord, UserRecord};
    s.create_user(UserRecord {
        name: "gone".into(),
        password_hash: "!".into(),
        role: "read_only".into(),
        must_change_password: true,
        created_at: at(10),
    })
    .await
    .unwrap();
    s.create_token(TokenRecord {
        hash: "gone-token".into(),
        name: "t".into(),
        user_name: "gone".into(),
        created_at: at(11),
        revoked_at: None,
        expires_at: None,
    })
    .await
    .unwrap();
    s.create_session(SessionRecord {
        id_hash: "gone-session".into(),
        user_name: "gone".into(),
        created_at: at(12),
        last_seen_at: at(12),
    })
    .await
    .unwrap();
    assert!(
        s.get_user("gone")
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
    assert!(s.delete_user("gone").await.unwrap());
    assert!(!s.delete_user("gone").await.unwrap());
    assert_eq!(s.get_user("gone").await.unwrap(), None);
    assert_eq!(s.find_token("gone-token").await.unwrap(), None);
    assert_eq!(s.find_session("gone-session").await.unwrap(), None);
}

/// The audit log: newest first, paged by id, pruned by age and by count.
async fn audit_log<S: Store>(s: &S) {
    use tessera_store::NewAuditEntry;
    let e = |t: i64, action: &str| NewAuditEntry {
        at: at(t),
        actor: "ann".into(),
        action: action.into(),
        detail: format!("did {action}"),
        address: (t % 2 == 0).then(|| "192.0.2.1".to_string()),
    };
    let mut ids = Vec::new();
    for (t, a) in [
        (100, "login"),
        (200, "activate"),
        (300, "sync"),
        (400, "logout"),
    ] {
        ids.push(s.append_audit(e(t, a)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let page = s.list_audit(None, 2).await.unwrap();
    let actions: Vec<&str> = page.iter().map(|p| p.entry.action.as_str()).collect();
    assert_eq!(actions, ["logout", "sync"]);
    assert_eq!(page[0].entry, e(400, "logout"));
    let next = s.list_audit(Some(page[1].id), 10).await.unwrap();
    let actions: Vec<&str> = next.iter().map(|p| p.entry.action.as_str()).collect();
    assert_eq!(actions, ["activate", "login"]);
    // older than 150 goes (login), then all but the newest two (activate)
    assert_eq!(s.prune_audit(at(150), 2).await.unwrap(), 2);
    let left: Vec<String> = s
        .list_audit(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.entry.action)
        .collect();
    assert_eq!(left, ["logout", "sync"]);
    assert_eq!(s.prune_audit(at(0), 10).await.unwrap(), 0);
}

/// Users: listed by name, roles changed, unknown names answered `false`.
async fn users_and_roles<S: Store>(s: &S) {
    use tessera_store::UserRecord;
    let u = |name: &str, role: &str| UserRecord {
        name: name.into(),
        password_hash: "!".into(),
        role: role.into(),
        must_change_password: false,
        created_at: at(5),
    };
    s.create_user(u("carol", "read_only")).await.unwrap();
    assert!(matches!(
        s.create_user(u("carol", "admin")).await,
        Err(StoreError::Conflict { .. })
    ));
    let names: Vec<String> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann", "bob", "carol"]);
    assert!(s.set_role("carol", "admin").await.unwrap());
    assert!(!s.set_role("nobody", "admin").await.unwrap());
    assert_eq!(s.get_user("carol").await.unwrap().unwrap().role, "admin");
    assert!(s.set_password("carol", "$argon2id$y", true).await.unwrap());
    let carol = s.get_user("carol").await.unwrap().unwrap();
    assert_eq!(
        (carol.password_hash.as_str(), carol.must_change_password),
        ("$argon2id$y", true)
    );
}

/// Browser sessions: found by hash, touched forward only, ended one by one, per user, and when
/// stale.
async fn sessions<S: Store>(s: &S) {
    use tessera_store::SessionRecord;
    let session = |id: &str, user: &str, created: i64| SessionRecord {
        id_hash: id.into(),
        user_name: user.into(),
        created_at: at(created),
        last_seen_at: at(created),
    };
    s.create_session(session("s1", "ann", 100)).await.unwrap();
    s.create_session(session("s2", "ann", 110)).await.unwrap();
    s.create_session(session("s3", "bob", 120)).await.unwrap();
    assert!(matches!(
        s.create_session(session("s1", "bob", 130)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.find_session("s1").await.unwrap(),
        Some(session("s1", "ann", 100))
    );
    assert_eq!(s.find_session("none").await.unwrap(), None);
    // touched: the later time is kept; an earlier one changes nothing
    assert!(s.touch_session("s1", at(200)).await.unwrap());
    assert!(s.touch_session("s1", at(150)).await.unwrap());
    assert!(s.touch_session("s1", at(200)).await.unwrap());
    assert!(!s.touch_session("none", at(200)).await.unwrap());
    let s1 = s.find_session("s1").await.unwrap().unwrap();
    assert_eq!((s1.created_at, s1.last_seen_at), (at(100), at(200)));
    // stale: s2 idle since 110 (before 115); s1 (200) and s3 (120) not
    assert_eq!(s.delete_stale_sessions(at(115), at(0)).await.unwrap(), 1);
    assert_eq!(s.find_session("s2").await.unwrap(), None);
    // too old, however recently used: s1 started at 100
    assert_eq!(s.delete_stale_sessions(at(0), at(105)).await.unwrap(), 1);
    assert_eq!(s.find_session("s1").await.unwrap(), None);
    s.create_session(session("s4", "bob", 140)).await.unwrap();
    assert_eq!(s.delete_user_sessions("bob").await.unwrap(), 2);
    assert_eq!(s.delete_user_sessions("bob").await.unwrap(), 0);
    s.create_session(session("s5", "ann", 150)).await.unwrap();
    assert!(s.delete_session("s5").await.unwrap());
    assert!(!s.delete_session("s5").await.unwrap());
}

/// API tokens: expiry kept, listed per user newest first, revoked once, revoked per user.
async fn api_tokens<S: Store>(s: &S) {
    use tessera_store::backoffice::{TokenRecord, UserRecord};
    for name in ["ann", "bob"] {
        s.create_user(UserRecord {
            name: name.into(),
            password_hash: "$argon2id$x".into(),
            role: "admin".into(),
            must_change_password: false,
            created_at: at(0),
        })
        .await
        .unwrap();
    }
    let token = |hash: &str, user: &str, created: i64, expires: Option<i64>| TokenRecord {
        hash: hash.into(),
        name: format!("label {hash}"),
        user_name: user.into(),
        created_at: at(created),
        revoked_at: None,
        expires_at: expires.map(at),
    };
    s.create_token(token("aa01", "ann", 10, Some(100)))
        .await
        .unwrap();
    s.create_token(token("aa02", "ann", 20, None))
        .await
        .unwrap();
    s.create_token(token("bb01", "bob", 30, None))
        .await
        .unwrap();
    assert_eq!(
        s.find_token("aa01").await.unwrap(),
        Some(token("aa01", "ann", 10, Some(100)))
    );
    let hashes = |v: Vec<TokenRecord>| v.into_iter().map(|t| t.hash).collect::<Vec<_>>();
    assert_eq!(
        hashes(s.list_tokens(None).await.unwrap()),
        ["bb01", "aa02", "aa01"]
    );
    assert_eq!(
        hashes(s.list_tokens(Some("ann")).await.unwrap()),
        ["aa02", "aa01"]
    );
    assert!(s.list_tokens(Some("nobody")).await.unwrap().is_empty());
    // revoked once: the first time is kept
    assert!(s.revoke_token("aa01", at(50)).await.unwrap());
    assert!(!s.revoke_token("aa01", at(60)).await.unwrap());
    assert!(!s.revoke_token("none", at(60)).await.unwrap());
    assert_eq!(
        s.find_token("aa01").await.unwrap().unwrap().revoked_at,
        Some(at(50))
    );
    // every token of a user not yet revoked
    assert_eq!(s.revoke_user_tokens("ann", at(70)).await.unwrap(), 1);
    assert_eq!(
        s.find_token("aa02").await.unwrap().unwrap().revoked_at,
        Some(at(70))
    );
    assert_eq!(
        s.find_token("aa01").await.unwrap().unwrap().revoked_at,
        Some(at(50))
    );
    assert_eq!(
        s.find_token("bb01").await.unwrap().unwrap().revoked_at,
        None
    );
}

async fn settings<S: Store>(s: &S) {
    assert_eq!(s.get_setting("instance.name").await.unwrap(), None);
    s.put_setting("instance.name", "first").await.unwrap();
    assert_eq!(
        s.get_setting("instance.name").await.unwrap().as_deref(),
        Some("first")
    );
    s.put_setting("instance.name", "second").await.unwrap();
    assert_eq!(
        s.get_setting("instance.name").await.unwrap().as_deref(),
        Some("second")
    );
    // Empty and non-ASCII values round-trip; other keys are untouched.
    s.put_setting("empty", "").await.unwrap();
    s.put_setting("unicode", "Grüße – 東京 ✓").await.unwrap();
    assert_eq!(s.get_setting("empty").await.unwrap().as_deref(), Some(""));
    assert_eq!(
        s.get_setting("unicode").await.unwrap().as_deref(),
        Some("Grüße – 東京 ✓")
    );
    assert_eq!(
        s.get_setting("instance.name").await.unwrap().as_deref(),
        Some("second")
    );
    assert_eq!(
        s.get_setting("Instance.Name").await.unwrap(),
        None,
        "keys are case-sensitive"
    );
}

async fn anchor<S: Store>(s: &S) {
    assert_eq!(s.anchor().await.unwrap(), 0, "a new store starts at 0");
    assert_eq!(s.bump_anchor().await.unwrap(), 1);
    assert_eq!(s.anchor().await.unwrap(), 1);
    assert_eq!(s.bump_anchor().await.unwrap(), 2);
    assert_eq!(s.bump_anchor().await.unwrap(), 3);
    assert_eq!(s.anchor().await.unwrap(), 3, "reading does not bump");
}

async fn claimed_settings<S: Store>(s: &S) {
    let claimed = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
    // the first claim sets it; a claim inside the window does not; one after it does
    assert!(s.claim_setting("daily", 1_000, 900).await.unwrap());
    assert_eq!(claimed(s.get_setting("daily").await.unwrap()), Some(1000));
    assert!(!s.claim_setting("daily", 1_050, 950).await.unwrap());
    assert!(!s.claim_setting("daily", 1_000, 1_000).await.unwrap());
    assert_eq!(claimed(s.get_setting("daily").await.unwrap()), Some(1000));
    assert!(s.claim_setting("daily", 2_000, 1_900).await.unwrap());
    assert_eq!(claimed(s.get_setting("daily").await.unwrap()), Some(2000));
    // numbers of different lengths compare as numbers
    assert!(!s.claim_setting("daily", 99, 10).await.unwrap());
    assert!(s.claim_setting("daily", 123_456, 12_345).await.unwrap());
    // a value in another form (written by hand, say) never blocks a claim
    for odd in ["", "soon", "12", "ZZZZZZZZZZZZZZZZZZZZ"] {
        s.put_setting("odd", odd).await.unwrap();
        assert!(s.claim_setting("odd", 5, 5).await.unwrap(), "{odd:?}");
    }
    // racing claims for the same window: exactly one wins
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_setting("daily", 200_000 + i, 199_900).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += u32::from(task.await.unwrap().unwrap());
    }
    assert_eq!(won, 1, "racing claims: {won} won");
    let v = claimed(s.get_setting("daily").await.unwrap()).unwrap();
    assert!((200_000..200_012).contains(&v), "{v}");
}

async fn concurrent_anchor_bumps<S: Store>(s: &S) {
    let before = s.anchor().await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.bump_anchor().await })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.unwrap().unwrap());
    }
    let distinct: BTreeSet<i64> = values.iter().copied().collect();
    assert_eq!(distinct.len(), 16, "16 bumps gave duplicates: {values:?}");
    assert_eq!(
        distinct,
        (before + 1..=before + 16).collect::<BTreeSet<_>>()
    );
    assert_eq!(s.anchor().await.unwrap(), before + 16);
}

fn public_key(kid: &str, pem: &str, created: i64) -> PublicKeyRecord {
    PublicKeyRecord {
        kid: kid.to_owned(),
        public_pem: pem.to_owned(),
        created_at: at(created),
        retired_at: None,
    }
}

async fn public_keys<S: Store>(s: &S) {
    assert_eq!(s.list_public_keys().await.unwrap(), vec![]);

    let k2 = public_key(
        "k2",
        "-----BEGIN PUBLIC KEY-----\nBBBB\n-----END PUBLIC KEY-----\n",
        20,
    );
    let k1 = public_key(
        "k1",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        10,
    );
    s.put_public_key(k2.clone()).await.unwrap();
    s.put_public_key(k1.clone()).await.unwrap();
    assert_eq!(
        s.list_public_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()],
        "oldest first"
    );

    // Same kid and PEM again: idempotent, first record kept.
    let mut again = k1.clone();
    again.created_at = at(99);
    s.put_public_key(again).await.unwrap();
    assert_eq!(
        s.list_public_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );

    // Same kid, other PEM: conflict, nothing changed.
    let mut other = k1.clone();
    other.public_pem = "-----BEGIN PUBLIC KEY-----\nCCCC\n-----END PUBLIC KEY-----\n".into();
    match s.put_public_key(other).await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("k1"), "{what}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.list_public_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );

    // Retire: the first retirement time sticks; unknown kids are NotFound.
    s.retire_public_key("k1", at(30)).await.unwrap();
    s.retire_public_key("k1", at(40)).await.unwrap();
    let listed = s.list_public_keys().await.unwrap();
    assert_eq!(listed[0].retired_at, Some(at(30)));
    assert_eq!(listed[1], k2, "other keys untouched");
    match s.retire_public_key("nope", at(30)).await {
        Err(StoreError::NotFound { what }) => assert!(what.contains("nope"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // A key stored already retired keeps that.
    let k0 = PublicKeyRecord {
        retired_at: Some(at(6)),
        ..public_key("k0", "pem-0", 5)
    };
    s.put_public_key(k0.clone()).await.unwrap();
    assert_eq!(s.list_public_keys().await.unwrap()[0], k0);
}

fn license(id: &str, issued: i64, hostids: &[&str]) -> IssuedLicense {
    IssuedLicense {
        id: id.to_owned(),
        kid: "k1".to_owned(),
        licensee: format!("Licensee of {id}"),
        issued_at: at(issued),
        expires_at: None,
        hostids: hostids.iter().map(|h| h.to_string()).collect(),
        token: format!("-----BEGIN TESSERA LICENSE-----\n{id}.payload.signature\n-----END TESSERA LICENSE-----\n"),
    }
}

async fn licenses<S: Store>(s: &S) {
    assert_eq!(s.get_license("L-1").await.unwrap(), None);
    assert_eq!(s.list_licenses(Page::first(10)).await.unwrap(), vec![]);

    let l1 = license(
        "L-1",
        100,
        &[
            "ether=00:11:22:33:44:55",
            "disk=ABCD",
            "ether=00:11:22:33:44:55",
        ],
    );
    let l2 = IssuedLicense {
        expires_at: Some(at(10_000)),
        ..license("L-2", 200, &[])
    };
    let l3 = license("L-3", 300, &["hostname=build-7"]);
    // Same issue time as L-2: ties are broken by id, descending.
    let l2b = license("L-2b", 200, &["any"]);
    for l in [&l1, &l3, &l2, &l2b] {
        s.record_license(l.clone()).await.unwrap();
    }

    assert_eq!(
        s.get_license("L-1").await.unwrap().as_ref(),
        Some(&l1),
        "host ids keep order and repeats"
    );
    assert_eq!(s.get_license("L-2").await.unwrap().as_ref(), Some(&l2));
    assert_eq!(
        s.get_license("l-1").await.unwrap(),
        None,
        "ids are case-sensitive"
    );

    // Duplicate id: conflict, and the stored license (with its host ids) is unchanged.
    let dup = IssuedLicense {
        licensee: "someone else".into(),
        ..license("L-1", 999, &["other"])
    };
    match s.record_license(dup).await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("L-1"), "{what}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get_license("L-1").await.unwrap().as_ref(), Some(&l1));

    // Newest first, paged.
    let page1 = s.list_licenses(Page::first(2)).await.unwrap();
    assert_eq!(page1, vec![l3.clone(), l2b.clone()]);
    let page2 = s.list_licenses(Page::first(2).next()).await.unwrap();
    assert_eq!(page2, vec![l2.clone(), l1.clone()]);
    let page3 = s.list_licenses(Page::first(2).next().next()).await.unwrap();
    assert_eq!(page3, vec![]);
    let all = s.list_licenses(Page::first(100)).await.unwrap();
    assert_eq!(all, vec![l3.clone(), l2b.clone(), l2.clone(), l1.clone()]);
    let middle = s
        .list_licenses(Page {
            offset: 1,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(middle, vec![l2b.clone(), l2.clone()]);
    assert_eq!(s.list_licenses(Page::first(0)).await.unwrap(), vec![]);
    // Negative values count as 0 on both backends.
    assert_eq!(
        s.list_licenses(Page {
            offset: 0,
            limit: -1
        })
        .await
        .unwrap(),
        vec![]
    );
    assert_eq!(
        s.list_licenses(Page {
            offset: -5,
            limit: 1
        })
        .await
        .unwrap(),
        vec![l3.clone()]
    );
}

async fn activation_keys<S: Store>(s: &S) {
    let h1 = key_hash(1);
    let h2 = key_hash(2);
    assert_ne!(h1, h2);
    assert_eq!(s.find_activation_key(&h1).await.unwrap(), None);
    assert!(
        !s.revoke_activation_key(&h1, at(5)).await.unwrap(),
        "unknown key: false"
    );

    s.insert_activation_key(NewActivationKey {
        hash: h1,
        label: "order 1001".into(),
        created_at: at(1),
    })
    .await
    .unwrap();
    let fresh = ActivationKeyRecord {
        hash: h1,
        label: "order 1001".into(),
        created_at: at(1),
        revoked_at: None,
    };
    assert_eq!(
        s.find_activation_key(&h1).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(s.find_activation_key(&h2).await.unwrap(), None);

    // Duplicate hash: conflict, original kept.
    match s
        .insert_activation_key(NewActivationKey {
            hash: h1,
            label: "again".into(),
            created_at: at(2),
        })
        .await
    {
        Err(StoreError::Conflict { what }) => assert!(what.contains("activation key"), "{what}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.find_activation_key(&h1).await.unwrap(),
        Some(fresh.clone())
    );

    s.insert_activation_key(NewActivationKey {
        hash: h2,
        label: "order 1002".into(),
        created_at: at(3),
    })
    .await
    .unwrap();

    // Revoke: true, the time sticks, a second revoke keeps the first time, others untouched.
    assert!(s.revoke_activation_key(&h1, at(10)).await.unwrap());
    assert!(s.revoke_activation_key(&h1, at(20)).await.unwrap());
    let revoked = s.find_activation_key(&h1).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(10)));
    assert_eq!(revoked.label, "order 1001");
    assert_eq!(
        s.find_activation_key(&h2)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    let temp = TempSqlite::new().await.unwrap();
    conformance(temp.store(), Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_store_sqlite_conformance() {
    let temp = tempfile::tempdir().unwrap();
    let store = open(&format!("sqlite:{}", temp.path().join("any.db").display()))
        .await
        .unwrap();
    assert!(matches!(store, AnyStore::Sqlite(_)));
    conformance(&store, Backend::Sqlite).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_conformance() {
    let store = open("sqlite::memory:").await.unwrap();
    conformance(&store, Backend::Sqlite).await;
}

fn assert_dir_empty(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(entries.is_empty(), "files were created: {entries:?}");
}

#[tokio::test]
async fn unknown_schemes_are_refused_and_create_no_file() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("tessera.db");
    let file = file.display();
    for (url, scheme, suggestion) in [
        (format!("{file}"), "", Some("sqlite://")),
        (format!("sqllite://{file}"), "sqllite", Some("sqlite://")),
        (format!("sqlite3://{file}"), "sqlite3", Some("sqlite://")),
        (format!("file:{file}"), "file", None),
        ("mysql://root@127.0.0.1/tessera".to_owned(), "mysql", None),
        (
            "postgress://postgres@127.0.0.1/x".to_owned(),
            "postgress",
            Some("postgres://"),
        ),
        (String::new(), "", Some("sqlite://")),
    ] {
        let err = open(&url).await.unwrap_err();
        match &err {
            StoreError::UnknownScheme {
                url_scheme,
                did_you_mean,
            } => {
                assert_eq!(url_scheme, scheme, "{url}");
                assert_eq!(*did_you_mean, suggestion, "{url}");
            }
            other => panic!("{url}: expected UnknownScheme, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("sqlite://") && msg.contains("postgres://"),
            "{msg}"
        );
        assert_dir_empty(temp.path());
    }
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("no-such-dir");
    let url = format!("sqlite://{}/tessera.db", missing.display());
    let err = open(&url).await.unwrap_err();
    match &err {
        StoreError::MissingDirectory { path } => assert_eq!(path, &missing),
        other => panic!("expected MissingDirectory, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&missing.display().to_string()) && msg.contains("does not exist"),
        "{msg}"
    );
    assert_dir_empty(temp.path());

    // A file where the directory should be is the same error.
    std::fs::write(temp.path().join("file"), b"").unwrap();
    let err = open(&format!(
        "sqlite://{}/file/tessera.db",
        temp.path().display()
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDirectory { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_directory_instead_of_a_file_is_a_connect_error() {
    let temp = tempfile::tempdir().unwrap();
    let err = open(&format!("sqlite://{}", temp.path().display()))
        .await
        .unwrap_err();
    match &err {
        StoreError::Connect {
            backend: Backend::Sqlite,
            ..
        } => {}
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(err.to_string().contains("check that"), "{err}");
}

#[tokio::test]
async fn not_an_sqlite_file_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("tessera.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Connect { .. } | StoreError::Migrate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_data_dir_url_creates_the_file_on_first_start() {
    let temp = tempfile::tempdir().unwrap();
    // Characters that mean something in a URL survive the round trip.
    let dir = temp.path().join("data dir?#%");
    std::fs::create_dir(&dir).unwrap();
    let url = tessera_store::sqlite_url_for_data_dir(&dir);
    assert!(
        url.starts_with("sqlite://") && url.ends_with("/tessera.db"),
        "{url}"
    );
    let store = open(&url).await.unwrap();
    store.put_setting("k", "v").await.unwrap();
    store.close().await;
    assert!(dir.join("tessera.db").is_file());
}

#[tokio::test]
async fn reopening_an_sqlite_file_keeps_the_data() {
    let temp = TempSqlite::new().await.unwrap();
    let url = temp.url().to_owned();
    {
        let s = open(&url).await.unwrap();
        s.put_setting("instance.name", "kept").await.unwrap();
        s.bump_anchor().await.unwrap();
        s.bump_anchor().await.unwrap();
        s.record_license(license("L-kept", 1, &["h1", "h2"]))
            .await
            .unwrap();
        s.insert_activation_key(NewActivationKey {
            hash: key_hash(7),
            label: "kept".into(),
            created_at: at(1),
        })
        .await
        .unwrap();
        s.put_public_key(public_key("k1", "pem", 1)).await.unwrap();
        s.close().await;
    }
    temp.store().close().await;

    let s = open(&url).await.unwrap();
    assert_eq!(
        s.get_setting("instance.name").await.unwrap().as_deref(),
        Some("kept")
    );
    assert_eq!(s.anchor().await.unwrap(), 2);
    assert_eq!(
        s.bump_anchor().await.unwrap(),
        3,
        "the anchor keeps counting"
    );
    assert_eq!(
        s.get_license("L-kept").await.unwrap(),
        Some(license("L-kept", 1, &["h1", "h2"]))
    );
    assert_eq!(
        s.find_activation_key(&key_hash(7))
            .await
            .unwrap()
            .unwrap()
            .label,
        "kept"
    );
    assert_eq!(
        s.list_public_keys().await.unwrap(),
        vec![public_key("k1", "pem", 1)]
    );
    s.close().await;
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout() {
    let temp = TempSqlite::new().await.unwrap();
    let pool = temp.store().pool();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let (busy,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(busy >= 1000, "busy_timeout = {busy}");
    let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");

    // Foreign keys are enforced: a host id for no license is refused.
    let err = sqlx::query(
        "INSERT INTO license_hostids (license_id, position, hostid) VALUES ('none', 0, 'h')",
    )
    .execute(pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("foreign key"),
        "{err}"
    );

    // The WAL file exists next to the database.
    temp.store().put_setting("k", "v").await.unwrap();
    assert!(temp.dir().join("tessera.db-wal").exists());
}

#[tokio::test]
async fn sqlite_written_by_a_newer_tessera_is_refused() {
    let temp = TempSqlite::new().await.unwrap();
    add_future_migration_sqlite(temp.store()).await;
    temp.store().close().await;
    assert_newer_schema(open(temp.url()).await);
}

#[tokio::test]
async fn sqlite_corrupt_values_are_reported() {
    let temp = TempSqlite::new().await.unwrap();
    corrupt_time(temp.store().pool()).await;
    assert_corrupt(temp.store()).await;
}

async fn add_future_migration_sqlite(store: &SqliteStore) {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, X'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
}

async fn corrupt_time(pool: &sqlx::SqlitePool) {
    sqlx::query("INSERT INTO activation_keys (hash, label, created_at) VALUES ($1, 'bad', $2)")
        .bind(key_hash(99).to_hex())
        .bind(i64::MAX)
        .execute(pool)
        .await
        .unwrap();
}

async fn assert_corrupt<S: Store>(s: &S) {
    match s.find_activation_key(&key_hash(99)).await {
        Err(StoreError::Corrupt { detail }) => {
            assert!(detail.contains("activation_keys.created_at"), "{detail}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn assert_newer_schema(result: Result<AnyStore, StoreError>) {
    match result {
        Err(err @ StoreError::NewerSchema { .. }) => {
            let StoreError::NewerSchema {
                applied_version,
                known_version,
            } = &err
            else {
                unreachable!()
            };
            assert_eq!(*applied_version, 99990101000000);
            assert!(*known_version >= 1);
            assert!(err.to_string().contains("newer Tessera"), "{err}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// The server URL, `None` (after saying so) when the run is skipped, a failure under CI.
fn postgres(test: &str) -> Option<String> {
    match postgres_test_url_or_skip(test) {
        Ok(url) => url,
        Err(why) => panic!("{why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some(base) = postgres("postgres_conformance") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        conformance(&db.store, Backend::Postgres).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_store_postgres_conformance() {
    let Some(base) = postgres("any_store_postgres_conformance") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        // `postgresql://` is accepted as well as `postgres://`.
        let url = db.url.replacen("postgres://", "postgresql://", 1);
        let store = open(&url).await.unwrap();
        assert!(matches!(store, AnyStore::Postgres(_)));
        conformance(&store, Backend::Postgres).await;
        store.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn postgres_reopen_keeps_the_data() {
    let Some(base) = postgres("postgres_reopen_keeps_the_data") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        db.store.put_setting("k", "v").await.unwrap();
        db.store.bump_anchor().await.unwrap();
        db.store.close().await;
        let again = PgStore::connect(&db.url).await.unwrap();
        assert_eq!(again.get_setting("k").await.unwrap().as_deref(), Some("v"));
        assert_eq!(again.anchor().await.unwrap(), 1);
        again.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn postgres_written_by_a_newer_tessera_is_refused() {
    let Some(base) = postgres("postgres_written_by_a_newer_tessera_is_refused") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', TRUE, '\\x00'::bytea, 0)",
        )
        .execute(db.store.pool())
        .await
        .unwrap();
        assert_newer_schema(open(&db.url).await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn postgres_corrupt_values_are_reported() {
    let Some(base) = postgres("postgres_corrupt_values_are_reported") else {
        return;
    };
    with_temp_postgres(&base, |db| async move {
        sqlx::query("INSERT INTO activation_keys (hash, label, created_at) VALUES ($1, 'bad', $2)")
            .bind(key_hash(99).to_hex())
            .bind(i64::MAX)
            .execute(db.store.pool())
            .await
            .unwrap();
        assert_corrupt(&db.store).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_quick_clear_error() {
    // Nothing listens on port 1: the connection is refused at once (no server needed).
    let started = std::time::Instant::now();
    let err = open("postgres://tessera:secret-password@127.0.0.1:1/tessera")
        .await
        .unwrap_err();
    match &err {
        StoreError::Connect {
            backend: Backend::Postgres,
            ..
        } => {}
        other => panic!("expected Connect, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("PostgreSQL") && msg.contains("check that"),
        "{msg}"
    );
    assert!(
        !msg.contains("secret-password"),
        "the password leaked: {msg}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_postgres_database_is_a_clear_error() {
    let Some(base) = postgres("a_missing_postgres_database_is_a_clear_error") else {
        return;
    };
    let (before_db, _) = base.rsplit_once('/').unwrap();
    let err = open(&format!("{before_db}/tessera_no_such_database"))
        .await
        .unwrap_err();
    match &err {
        StoreError::Connect {
            backend: Backend::Postgres,
            detail,
        } => {
            assert!(detail.contains("tessera_no_such_database"), "{detail}")
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Compile-time: the futures of concrete stores can be spawned
// ---------------------------------------------------------------------------------------------

/// Every call on every concrete store type inside `tokio::spawn`, where a non-`Send` future (or
/// one the compiler cannot prove `Send`, as happened with sqlx's `Migrator::run`) fails to build.
/// Never run: compiling it is the test.
#[allow(dead_code)]
fn concrete_store_futures_are_send(url: String, pg: PgStore, lite: SqliteStore, any: AnyStore) {
    macro_rules! spawn_every_call {
        ($s:expr) => {{
            let s = $s;
            tokio::spawn(async move {
                let h = key_hash(1);
                let _ = s.backend();
                let _ = s.get_setting("k").await;
                let _ = s.put_setting("k", "v").await;
                let _ = s.anchor().await;
                let _ = s.bump_anchor().await;
                let _ = s.put_public_key(public_key("k", "p", 0)).await;
                let _ = s.list_public_keys().await;
                let _ = s.retire_public_key("k", at(0)).await;
                let _ = s.record_license(license("L", 0, &[])).await;
                let _ = s.get_license("L").await;
                let _ = s.list_licenses(Page::first(1)).await;
                let _ = s
                    .insert_activation_key(NewActivationKey {
                        hash: h,
                        label: String::new(),
                        created_at: at(0),
                    })
                    .await;
                let _ = s.find_activation_key(&h).await;
                let _ = s.revoke_activation_key(&h, at(0)).await;
                s.close().await;
            });
        }};
    }
    spawn_every_call!(pg);
    spawn_every_call!(lite);
    spawn_every_call!(any);
    tokio::spawn(async move {
        let _ = open(&url).await;
        let _ = SqliteStore::connect(&url).await;
        let _ = PgStore::connect(&url).await;
        if let Ok(t) = TempSqlite::new().await {
            let _ = t.store().get_setting("k").await;
        }
        if let Ok(t) = tessera_store::testing::TempPostgres::create(&url).await {
            let _ = t.store().get_setting("k").await;
            let _ = t.cleanup().await;
        }
    });
}
