use super::*;
use axum::http::HeaderValue;
use tessera_store::testing::TempSqlite;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-06-01 09:00 UTC);

fn minutes(m: i64) -> time::Duration {
    time::Duration::minutes(m)
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn the_gate_runs_a_few_queues_a_few_and_refuses_the_rest() {
    let gate = Arc::new(HashGate::new(1, 1));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    // the first holds the only turn until released
    let g = gate.clone();
    let first = tokio::spawn(async move {
        g.run(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            1
        })
        .await
    });
    started_rx.await.unwrap();
    // the second waits for it
    let g = gate.clone();
    let second = tokio::spawn(async move { g.run(|| 2).await });
    while gate.waiting.load(Ordering::Acquire) == 0 {
        tokio::task::yield_now().await;
    }
    // the third finds the queue full
    assert_eq!(gate.run(|| 3).await, Err(HashBusy));
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Ok(1));
    assert_eq!(second.await.unwrap(), Ok(2));
    assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    // a turn is free again
    assert_eq!(gate.run(|| 4).await, Ok(4));
}

#[test]
fn throttle_counts_failures_per_account_and_attempts_per_address() {
    let t = LoginThrottle::default();
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    for _ in 0..5 {
        t.attempt("admin", a).unwrap();
    }
    // the account is used up, from any address
    assert!(matches!(
        t.attempt("admin", b),
        Err(Throttled::Account { retry_after }) if (1..=20).contains(&retry_after)
    ));
    // successes do not count against an account
    for _ in 0..9 {
        t.attempt("maria", b).unwrap();
        t.succeeded("maria");
    }
    // the address is used up (10 attempts, of which one above), whatever the account
    assert!(matches!(
        t.attempt("someone", b),
        Err(Throttled::Address { retry_after }) if (1..=6).contains(&retry_after)
    ));
    // an IPv6 /64 is one address
    let c: IpAddr = "2001:db8::1".parse().unwrap();
    let d: IpAddr = "2001:db8::2".parse().unwrap();
    for _ in 0..10 {
        t.attempt(&format!("u{}", rand::random::<u32>()), c)
            .unwrap();
    }
    assert!(matches!(t.attempt("x", d), Err(Throttled::Address { .. })));
}

#[test]
fn roles_order_and_names() {
    assert!(Role::Administrator.allows(Role::ReadOnly));
    assert!(Role::Administrator.allows(Role::Administrator));
    assert!(Role::ReadOnly.allows(Role::ReadOnly));
    assert!(!Role::ReadOnly.allows(Role::Administrator));
    for r in Role::ALL {
        assert_eq!(Role::parse(r.as_str()), Some(r));
    }
    // the back office's users have always been stored as `admin`
    assert_eq!(Role::parse("admin"), Some(Role::Administrator));
    assert_eq!(Role::parse("superuser"), None);
    assert_eq!(Principal::needed_for(&Method::GET), Role::ReadOnly);
    assert_eq!(Principal::needed_for(&Method::POST), Role::Administrator);
    assert_eq!(Principal::needed_for(&Method::DELETE), Role::Administrator);
}

#[tokio::test]
async fn users_log_in_with_their_password_and_act_within_their_role() {
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    let gate = HashGate::default();
    create_user(
        s,
        "ann",
        Some("ann's long password"),
        Role::Administrator,
        T0,
    )
    .await
    .unwrap();
    create_user(s, "rob", Some("rob's long password"), Role::ReadOnly, T0)
        .await
        .unwrap();
    // refused before anything is stored
    for (name, pw, field) in [
        ("", "long enough password", "name"),
        ("eve\u{1b}]0;x", "long enough password", "name"),
        ("eve", "short", "password"),
    ] {
        match create_user(s, name, Some(pw), Role::ReadOnly, T0).await {
            Err(AuthError::Invalid { field: f, .. }) => assert_eq!(f, field, "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert!(matches!(
        create_user(s, "ann", Some("another long password"), Role::ReadOnly, T0).await,
        Err(AuthError::Conflict { .. })
    ));
    // the password: right, wrong, unknown user, a user without one
    let ann = check_password(s, &gate, "ann", "ann's long password")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.role, "admin");
    assert!(check_password(s, &gate, "ann", "wrong password")
        .await
        .unwrap()
        .is_none());
    assert!(check_password(s, &gate, "nobody", "ann's long password")
        .await
        .unwrap()
        .is_none());
    create_user(s, "robot", None, Role::Administrator, T0)
        .await
        .unwrap();
    assert!(check_password(s, &gate, "robot", NO_PASSWORD)
        .await
        .unwrap()
        .is_none());
    assert!(check_password(s, &gate, "robot", "")
        .await
        .unwrap()
        .is_none());
    // tokens carry the user's role, checked per request
    let rob_token = tokens::create_token(s, "tst_", "rob", "cli", None, T0)
        .await
        .unwrap();
    assert!(rob_token.starts_with("tst_") && rob_token.len() == 4 + 64);
    let p = authenticate(s, None, &Method::GET, &bearer(&rob_token), T0)
        .await
        .unwrap();
    assert_eq!((p.user.as_str(), p.role), ("rob", Role::ReadOnly));
    assert!(p.require(Principal::needed_for(&Method::GET)).is_ok());
    assert_eq!(
        p.require(Principal::needed_for(&Method::POST)),
        Err(Refused::Forbidden {
            needed: Role::Administrator,
            have: Role::ReadOnly
        })
    );
    // a role change applies to the next request
    set_role(s, "rob", Role::Administrator).await.unwrap();
    let p = authenticate(s, None, &Method::POST, &bearer(&rob_token), T0)
        .await
        .unwrap();
    assert!(p.require(Role::Administrator).is_ok());
    assert!(matches!(
        set_role(s, "nobody", Role::ReadOnly).await,
        Err(AuthError::NotFound { .. })
    ));
    // a new password revokes the user's tokens
    assert_eq!(
        reset_password(s, "rob", "rob's new long password", T0)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        authenticate(s, None, &Method::GET, &bearer(&rob_token), T0).await,
        Err(AuthError::Refused(Refused::RevokedToken))
    ));
    assert!(check_password(s, &gate, "rob", "rob's new long password")
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        reset_password(s, "nobody", "a long enough password", T0).await,
        Err(AuthError::NotFound { .. })
    ));
}

#[tokio::test]
async fn tokens_expire_are_revoked_by_id_or_value_and_rotate() {
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    create_user(s, "ann", None, Role::Administrator, T0)
        .await
        .unwrap();
    let day = tokens::create_token(s, "tst_", "ann", "a day", Some(1), T0)
        .await
        .unwrap();
    let h = bearer(&day);
    assert!(authenticate(s, None, &Method::GET, &h, T0).await.is_ok());
    let later = T0 + time::Duration::days(1);
    assert!(matches!(
        authenticate(s, None, &Method::GET, &h, later).await,
        Err(AuthError::Refused(Refused::ExpiredToken { at })) if at == later
    ));
    for bad in [Some(0), Some(tokens::MAX_TOKEN_DAYS + 1)] {
        assert!(matches!(
            tokens::create_token(s, "tst_", "ann", "x", bad, T0).await,
            Err(AuthError::Invalid { .. })
        ));
    }
    assert!(matches!(
        tokens::create_token(s, "tst_", "nobody", "x", None, T0).await,
        Err(AuthError::NotFound { .. })
    ));
    // malformed, unknown and missing credentials
    let mut odd = HeaderMap::new();
    odd.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic YTpi"),
    );
    assert!(matches!(
        authenticate(s, None, &Method::GET, &odd, T0).await,
        Err(AuthError::Refused(Refused::MalformedAuthorization))
    ));
    assert!(matches!(
        authenticate(s, None, &Method::GET, &bearer("tst_00"), T0).await,
        Err(AuthError::Refused(Refused::UnknownToken))
    ));
    assert!(matches!(
        authenticate(s, None, &Method::GET, &HeaderMap::new(), T0).await,
        Err(AuthError::Refused(Refused::NoCredentials))
    ));
    // listed, revoked by id, then by value
    let list = tokens::list_tokens(s, Some("ann"), later).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, "expired");
    let other = tokens::create_token(s, "tst_", "ann", "other", None, T0)
        .await
        .unwrap();
    let id = secret_hash(&other)[..TOKEN_ID_LEN].to_string();
    let v = tokens::revoke_token(s, "tst_", &id, T0).await.unwrap();
    assert_eq!((v.state.as_str(), v.name.as_str()), ("revoked", "other"));
    let v = tokens::revoke_token(s, "tst_", &day, T0).await.unwrap();
    assert_eq!(v.state, "revoked");
    assert!(matches!(
        tokens::revoke_token(s, "tst_", "xyz", T0).await,
        Err(AuthError::Invalid { .. })
    ));
    assert!(matches!(
        tokens::revoke_token(s, "tst_", "0123456789abcdef", T0).await,
        Err(AuthError::NotFound { .. })
    ));
    // rotation: only the newest token of that label works; others of the user are kept
    let keep = tokens::create_token(s, "tst_", "ann", "kept", None, T0)
        .await
        .unwrap();
    let first = tokens::rotate_token(s, "tst_", "ann", "start-up", T0)
        .await
        .unwrap();
    let second = tokens::rotate_token(s, "tst_", "ann", "start-up", T0)
        .await
        .unwrap();
    assert!(authenticate(s, None, &Method::GET, &bearer(&first), T0)
        .await
        .is_err());
    assert!(authenticate(s, None, &Method::GET, &bearer(&second), T0)
        .await
        .is_ok());
    assert!(authenticate(s, None, &Method::GET, &bearer(&keep), T0)
        .await
        .is_ok());
}

fn cookie_of(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::COOKIE,
        HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn sessions_need_their_csrf_token_to_change_anything_and_expire_when_idle() {
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    let sessions = Sessions {
        secure: true,
        ..Sessions::default()
    };
    create_user(s, "ann", Some("ann's long password"), Role::ReadOnly, T0)
        .await
        .unwrap();
    let started = sessions.start(s, "ann", T0).await.unwrap();
    let set = started.set_cookie.to_str().unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    let mut h = cookie_of(&started.set_cookie);
    // reading needs no CSRF token
    let p = authenticate(s, Some(&sessions), &Method::GET, &h, T0)
        .await
        .unwrap();
    assert_eq!(p.user, "ann");
    assert_eq!(
        p.credential,
        Credential::Session {
            csrf: started.csrf.clone()
        }
    );
    // changing something does: none, a wrong one, the right one
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::POST, &h, T0).await,
        Err(AuthError::Refused(Refused::CsrfMismatch))
    ));
    h.insert(CSRF_HEADER_NAME, HeaderValue::from_static("0000"));
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::POST, &h, T0).await,
        Err(AuthError::Refused(Refused::CsrfMismatch))
    ));
    h.insert(
        CSRF_HEADER_NAME,
        HeaderValue::from_str(&started.csrf).unwrap(),
    );
    assert!(authenticate(s, Some(&sessions), &Method::POST, &h, T0)
        .await
        .is_ok());
    // without sessions configured, a cookie is no credential
    assert!(matches!(
        authenticate(s, None, &Method::GET, &h, T0).await,
        Err(AuthError::Refused(Refused::NoCredentials))
    ));
    // each use starts the idle clock again: 29 minutes apart, three times
    for m in [29, 58, 87] {
        assert!(
            authenticate(s, Some(&sessions), &Method::GET, &h, T0 + minutes(m))
                .await
                .is_ok(),
            "{m}"
        );
    }
    // 30 minutes idle: ended
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::GET, &h, T0 + minutes(117)).await,
        Err(AuthError::Refused(Refused::ExpiredSession))
    ));
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::GET, &h, T0 + minutes(118)).await,
        Err(AuthError::Refused(Refused::UnknownSession))
    ));
    // a busy session still ends after its lifetime
    let started = sessions.start(s, "ann", T0).await.unwrap();
    let h = cookie_of(&started.set_cookie);
    let mut m = 0;
    while m < 12 * 60 - 20 {
        m += 20;
        assert!(
            authenticate(s, Some(&sessions), &Method::GET, &h, T0 + minutes(m))
                .await
                .is_ok(),
            "{m}"
        );
    }
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::GET, &h, T0 + minutes(12 * 60)).await,
        Err(AuthError::Refused(Refused::ExpiredSession))
    ));
    // a logout ends it; the cookie is cleared
    let started = sessions.start(s, "ann", T0).await.unwrap();
    let h = cookie_of(&started.set_cookie);
    assert!(sessions.end(s, &h).await.unwrap());
    assert!(!sessions.end(s, &h).await.unwrap());
    assert!(matches!(
        authenticate(s, Some(&sessions), &Method::GET, &h, T0).await,
        Err(AuthError::Refused(Refused::UnknownSession))
    ));
    assert!(sessions
        .clear_cookie()
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // a new password ends the user's sessions
    let started = sessions.start(s, "ann", T0).await.unwrap();
    let h = cookie_of(&started.set_cookie);
    reset_password(s, "ann", "ann's new long password", T0)
        .await
        .unwrap();
    assert!(authenticate(s, Some(&sessions), &Method::GET, &h, T0)
        .await
        .is_err());
    // a sweep ends what is stale
    sessions.start(s, "ann", T0).await.unwrap();
    sessions.start(s, "ann", T0 + minutes(20)).await.unwrap();
    assert_eq!(sessions.sweep(s, T0 + minutes(31)).await.unwrap(), 1);
    // a bearer token wins over a cookie
    let token = tokens::create_token(s, "tst_", "ann", "cli", None, T0)
        .await
        .unwrap();
    let mut both = bearer(&token);
    both.insert(
        axum::http::header::COOKIE,
        HeaderValue::from_static("tessera_session=nothing"),
    );
    let p = authenticate(s, Some(&sessions), &Method::POST, &both, T0)
        .await
        .unwrap();
    assert!(matches!(p.credential, Credential::Token { .. }));
}

const CSRF_HEADER_NAME: &str = session::CSRF_HEADER;

#[tokio::test]
async fn a_first_password_must_be_changed_set_keeps_tokens_and_delete_takes_everything() {
    let db = TempSqlite::new().await.unwrap();
    let s = db.store();
    let gate = HashGate::default();
    create_user_with(
        s,
        "ann",
        Some("first long password"),
        Role::ReadOnly,
        true,
        T0,
    )
    .await
    .unwrap();
    // without a password there is nothing to change
    create_user_with(s, "bot", None, Role::ReadOnly, true, T0)
        .await
        .unwrap();
    assert!(
        s.get_user("ann")
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
    assert!(
        !s.get_user("bot")
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
    let token = tokens::create_token(s, "tst_", "ann", "t", None, T0)
        .await
        .unwrap();
    let sessions = Sessions::default();
    sessions.start(s, "ann", T0).await.unwrap();
    assert!(matches!(
        set_password(s, "ann", "short", false).await,
        Err(AuthError::Invalid { .. })
    ));
    set_password(s, "ann", "second long password", false)
        .await
        .unwrap();
    let ann = s.get_user("ann").await.unwrap().unwrap();
    assert!(!ann.must_change_password);
    assert!(check_password(s, &gate, "ann", "second long password")
        .await
        .unwrap()
        .is_some());
    assert!(check_password(s, &gate, "ann", "first long password")
        .await
        .unwrap()
        .is_none());
    // sessions ended, the token kept
    assert_eq!(s.delete_user_sessions("ann").await.unwrap(), 0);
    assert!(tokens::authenticate_token(s, &token, T0).await.is_ok());
    assert!(matches!(
        set_password(s, "nobody", "a long password", false).await,
        Err(AuthError::NotFound { .. })
    ));
    delete_user(s, "ann").await.unwrap();
    assert!(matches!(
        tokens::authenticate_token(s, &token, T0).await,
        Err(AuthError::Refused(Refused::UnknownToken))
    ));
    assert!(matches!(
        delete_user(s, "ann").await,
        Err(AuthError::NotFound { .. })
    ));
}

#[test]
fn a_throttle_can_take_the_license_servers_limits() {
    // three failures an hour per account, five attempts per address
    let t = LoginThrottle::new(3.0, 1200.0, 5.0, 12.0);
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    for _ in 0..3 {
        t.attempt("ann", ip).unwrap();
    }
    match t.attempt("ann", ip) {
        Err(Throttled::Account { retry_after }) => assert!((1..=1200).contains(&retry_after)),
        other => panic!("{other:?}"),
    }
    t.attempt("bob", ip).unwrap();
    assert!(matches!(
        t.attempt("carl", ip),
        Err(Throttled::Address { .. })
    ));
}
