//! Users (argon2id passwords) and API tokens (random, stored as SHA-256, optionally expiring).
//!
//! Password checks are the expensive part of a login: argon2id with 19 MiB of memory and tens of
//! milliseconds of CPU each. They run on the blocking pool, a few at a time ([`HashGate`]), and
//! logins are throttled per account and per address ([`LoginThrottle`]) before any hash is
//! computed, so a flood of wrong logins is answered with 429/503 instead of growing memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_core::time::OffsetDateTime;
use tessera_store::backoffice::{TokenRecord, UserRecord};
use tessera_store::{BackOfficeStore, StoreError};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use crate::http::token_hash;
use crate::service::ServiceError;

/// The one role so far: full producer administration.
pub const ADMIN_ROLE: &str = "admin";

/// A random password of 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The argon2id PHC string of a password.
pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Sign(format!("password hashing failed: {e}")))
}

/// Creates a user with a password.
pub async fn create_user<S: BackOfficeStore>(
    store: &S,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), ServiceError> {
    if name.trim().is_empty() {
        return Err(ServiceError::Invalid {
            field: "name".into(),
            detail: "a user needs a name".into(),
        });
    }
    crate::service::text_field("name", name, 64)?;
    if password.chars().count() < 12 {
        return Err(ServiceError::Invalid {
            field: "password".into(),
            detail: "a password needs at least 12 characters".into(),
        });
    }
    store
        .create_user(UserRecord {
            name: name.trim().into(),
            password_hash: hash_password(password)?,
            role: ADMIN_ROLE.into(),
            must_change_password: false,
            created_at: now,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ServiceError::Conflict {
                what: format!("user {name}"),
            },
            other => other.into(),
        })
}

/// Password hashes computed at the same time, at most (each holds 19 MiB while it runs).
pub const HASH_CONCURRENCY: usize = 3;

/// Password checks that may wait for a turn; beyond them a login is refused at once
/// ([`HashBusy`], 503 with `Retry-After`).
pub const HASH_QUEUE: usize = 16;

/// Refused: [`HASH_CONCURRENCY`] hashes run and [`HASH_QUEUE`] wait already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again in a second")]
pub struct HashBusy;

/// Runs password hashing on the blocking pool, a few at a time, with a short queue.
#[derive(Debug)]
pub struct HashGate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    refused: AtomicUsize,
}

impl Default for HashGate {
    fn default() -> Self {
        HashGate::new(HASH_CONCURRENCY, HASH_QUEUE)
    }
}

/// Counts a waiter for as long as it waits, however the wait ends (a dropped request included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashGate {
    /// `concurrency` hashes at a time (at least one), `queue` more waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        HashGate {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            refused: AtomicUsize::new(0),
        }
    }

    /// Hashes that could start now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    /// Checks refused so far because the queue was full.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Acquire)
    }

    /// Runs `work` on the blocking pool when a turn comes; [`HashBusy`] at once when the queue is
    /// full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashBusy> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.refused.fetch_add(1, Ordering::AcqRel);
                    return Err(HashBusy);
                }
                let _waiting = Waiting(&self.waiting);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| HashBusy)?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| HashBusy)
    }
}

/// Failed-login budget of one account: this many at once…
pub const ACCOUNT_BURST: f64 = 5.0;
/// …then one more every this many seconds.
pub const ACCOUNT_REFILL_SECS: f64 = 20.0;
/// Login budget of one address (every attempt counts): this many at once…
pub const ADDRESS_BURST: f64 = 10.0;
/// …then one more every this many seconds.
pub const ADDRESS_REFILL_SECS: f64 = 6.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    burst: f64,
    refill_secs: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    fn new(burst: f64, refill_secs: f64) -> Self {
        Buckets {
            burst,
            refill_secs,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; otherwise the whole seconds until one is back.
    fn take(&self, key: K, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // bounded memory: forget buckets that are full again, everything if that is not enough
            let full_after = Duration::from_secs_f64(self.burst * self.refill_secs);
            map.retain(|_, b| now.duration_since(b.at) < full_after);
            if map.len() > 100_000 {
                map.clear();
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() / self.refill_secs;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // at least one second, whole seconds (Retry-After)
            Err(((1.0 - b.tokens) * self.refill_secs).ceil().max(1.0) as u64)
        }
    }

    /// Gives one token back (the attempt succeeded and should not count).
    fn give_back(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }
}

/// Why a login was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failed logins for this account lately; `retry_after` seconds.
    Account {
        /// Seconds until the next attempt is taken.
        retry_after: u64,
    },
    /// Too many logins from this address lately.
    Address {
        /// Seconds until the next attempt is taken.
        retry_after: u64,
    },
}

/// Login throttling: every attempt takes one token of its address, and of its account (given
/// back when the password was right, so only failures count against an account). An account or
/// address without a token is refused (429) before any password is hashed.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Buckets<[u8; 32]>,
    addresses: Buckets<IpAddr>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            accounts: Buckets::new(ACCOUNT_BURST, ACCOUNT_REFILL_SECS),
            addresses: Buckets::new(ADDRESS_BURST, ADDRESS_REFILL_SECS),
        }
    }
}

fn account_key(name: &str) -> [u8; 32] {
    // a fixed-size key whatever the length of the name given
    Sha256::digest(name.trim().as_bytes()).into()
}

fn address_key(ip: IpAddr) -> IpAddr {
    // an IPv6 client usually holds a whole /64: count it as one address (an IPv4 client seen by a
    // dual-stack listener as ::ffff:a.b.c.d counts by its IPv4 address)
    tessera_host::serve::client_key(ip)
}

impl LoginThrottle {
    /// Takes an attempt for `name` from `ip`, or says how long to wait.
    pub fn attempt(&self, name: &str, ip: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        self.addresses
            .take(address_key(ip), now)
            .map_err(|retry_after| Throttled::Address { retry_after })?;
        self.accounts
            .take(account_key(name), now)
            .map_err(|retry_after| Throttled::Account { retry_after })
    }

    /// The attempt for `name` succeeded: it does not count against the account.
    pub fn succeeded(&self, name: &str) {
        self.accounts.give_back(&account_key(name));
    }
}

/// Why a password check gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The hashing queue is full.
    #[error(transparent)]
    Busy(#[from] HashBusy),
    /// The store failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The user's name when the password is right; `None` for an unknown user or a wrong password
/// (indistinguishable to the caller). The hash runs through `gate`.
pub async fn check_password<S: BackOfficeStore>(
    store: &S,
    gate: &HashGate,
    name: &str,
    password: &str,
) -> Result<Option<String>, LoginError> {
    let given = password.to_string();
    let Some(user) = store.get_user(name).await.map_err(ServiceError::from)? else {
        // spend the same time as a real check so user names cannot be probed by timing
        gate.run(move || {
            let _ = hash_password(&given);
        })
        .await?;
        return Ok(None);
    };
    let stored = user.password_hash.clone();
    let ok = gate
        .run(move || {
            PasswordHash::new(&stored)
                .map(|h| {
                    Argon2::default()
                        .verify_password(given.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await?;
    Ok(ok.then_some(user.name))
}

/// Gives a user a new password and revokes every API token of the user (whoever had the old
/// password may have made tokens with it). Returns how many tokens were revoked; `NotFound` for
/// an unknown user.
pub async fn reset_password<S: BackOfficeStore>(
    store: &S,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<u64, ServiceError> {
    let hash = hash_password(password)?;
    if !store.set_password(name, &hash, false).await? {
        return Err(ServiceError::NotFound {
            what: format!("user {name}"),
        });
    }
    Ok(store.revoke_user_tokens(name, now).await?)
}

/// Longest lifetime given to a token at creation, in days (ten years).
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Creates an API token for a user, expiring after `expires_days` when given; returns the token
/// (shown once; only its hash is kept).
pub async fn create_token<S: BackOfficeStore>(
    store: &S,
    user: &str,
    label: &str,
    expires_days: Option<u32>,
    now: OffsetDateTime,
) -> Result<String, ServiceError> {
    if matches!(expires_days, Some(d) if d == 0 || d > MAX_TOKEN_DAYS) {
        return Err(ServiceError::Invalid {
            field: "expires_days".into(),
            detail: format!(
                "a token lasts 1 to {MAX_TOKEN_DAYS} days (leave it out for no expiry)"
            ),
        });
    }
    if label.chars().count() > 200 || label.chars().any(char::is_control) {
        return Err(ServiceError::Invalid {
            field: "name".into(),
            detail: "a token label has at most 200 characters and no control characters".into(),
        });
    }
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("tsr_{}", hex::encode(bytes));
    store
        .create_token(TokenRecord {
            hash: token_hash(&token),
            name: label.into(),
            user_name: user.into(),
            created_at: now,
            revoked_at: None,
            expires_at: expires_days
                .map(|d| now + tessera_core::time::Duration::days(i64::from(d))),
        })
        .await?;
    Ok(token)
}

/// Characters of a token's hash that name it in lists and revocations.
pub const TOKEN_ID_LEN: usize = 16;

/// An API token as lists show it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The token's id: the first 16 hex digits of its SHA-256.
    pub id: String,
    /// Its label.
    pub name: String,
    /// The user it acts as.
    pub user: String,
    /// Created (unix seconds).
    pub created_at: i64,
    /// When it stops working (unix seconds), if it expires.
    pub expires_at: Option<i64>,
    /// When it was revoked (unix seconds).
    pub revoked_at: Option<i64>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

fn token_view(t: &TokenRecord, now: OffsetDateTime) -> TokenView {
    let state = if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    TokenView {
        id: t.hash.chars().take(TOKEN_ID_LEN).collect(),
        name: t.name.clone(),
        user: t.user_name.clone(),
        created_at: t.created_at.unix_timestamp(),
        expires_at: t.expires_at.map(OffsetDateTime::unix_timestamp),
        revoked_at: t.revoked_at.map(OffsetDateTime::unix_timestamp),
        state: state.into(),
    }
}

/// Every API token (of one user when given), newest first.
pub async fn list_tokens<S: BackOfficeStore>(
    store: &S,
    user: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<TokenView>, ServiceError> {
    Ok(store
        .list_tokens(user)
        .await?
        .iter()
        .map(|t| token_view(t, now))
        .collect())
}

/// Revokes a token named by its id (from [`list_tokens`], at least 8 hex digits of it) or given
/// itself (`tsr_…`). Revoking a revoked token changes nothing.
pub async fn revoke_token<S: BackOfficeStore>(
    store: &S,
    id_or_token: &str,
    now: OffsetDateTime,
) -> Result<TokenView, ServiceError> {
    let given = id_or_token.trim();
    let record = if given.starts_with("tsr_") {
        store.find_token(&token_hash(given)).await?
    } else {
        let id = given.to_ascii_lowercase();
        if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ServiceError::Invalid {
                field: "id".into(),
                detail: "name the token by its id as `token list` shows it (16 hex digits), or give the token itself".into(),
            });
        }
        let mut found: Vec<TokenRecord> = store
            .list_tokens(None)
            .await?
            .into_iter()
            .filter(|t| t.hash.starts_with(&id))
            .collect();
        if found.len() > 1 {
            return Err(ServiceError::Invalid {
                field: "id".into(),
                detail: format!("{id} names more than one token: give more of its digits"),
            });
        }
        found.pop()
    };
    let mut record = record.ok_or_else(|| ServiceError::NotFound {
        what: format!("API token {given}"),
    })?;
    if store.revoke_token(&record.hash, now).await? {
        record.revoked_at = Some(now);
    }
    Ok(token_view(&record, now))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
