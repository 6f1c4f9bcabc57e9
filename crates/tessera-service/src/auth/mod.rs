//! Who may use a service, over [`tessera_store::AuthStore`]:
//!
//! * **Users** with a [`Role`] and an argon2id password ([`create_user`], [`check_password`],
//!   [`reset_password`]). Password checks are the expensive part of a login (19 MiB and tens of
//!   milliseconds each): they run on the blocking pool a few at a time ([`HashGate`]), and logins
//!   are throttled per account and per address ([`LoginThrottle`]) before any hash is computed.
//! * **API tokens** ([`tokens`]): random, shown once, kept as SHA-256, optionally expiring,
//!   revocable; sent as `Authorization: Bearer`.
//! * **Browser sessions** ([`session`]): an opaque random id in an `HttpOnly; SameSite=Strict`
//!   cookie, kept server-side as SHA-256, ended after 30 idle minutes; every request that changes
//!   something carries the session's CSRF token in `X-CSRF-Token`.
//!
//! [`authenticate`] takes a request's method and headers and answers the [`Principal`] (a user
//! and role, and how they proved it) or why not ([`Refused`]); [`Principal::require`] checks the
//! role. Each service words the answers to its own users.

pub mod session;
pub mod tokens;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{HeaderMap, Method};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tessera_store::{AuthStore, StoreError, UserRecord};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::rate::Buckets;
pub use session::{Sessions, StartedSession};
pub use tokens::{TokenView, TOKEN_ID_LEN};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Everything: read, change, manage users and tokens. Stored as `admin`.
    #[serde(rename = "admin")]
    Administrator,
    /// Read only: what an administrator sees, changing nothing. Stored as `read_only`.
    ReadOnly,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 2] = [Role::Administrator, Role::ReadOnly];

    /// The name the store keeps (`admin`, `read_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "admin",
            Role::ReadOnly => "read_only",
        }
    }

    /// The role a stored name stands for; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        match self {
            Role::Administrator => true,
            Role::ReadOnly => needed == Role::ReadOnly,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// An API token; `id` names it in lists (the first hex digits of its hash).
    Token {
        /// The token's id.
        id: String,
    },
    /// A browser session.
    Session {
        /// The session's CSRF token (for the pages it renders).
        csrf: String,
    },
}

/// A caller who proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// How they proved it.
    pub credential: Credential,
}

impl Principal {
    /// `Ok` when the caller's role allows what `needed` may do; [`Refused::Forbidden`] otherwise.
    pub fn require(&self, needed: Role) -> Result<(), Refused> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(Refused::Forbidden {
                needed,
                have: self.role,
            })
        }
    }

    /// The role a request of `method` needs: reading (GET, HEAD, OPTIONS) needs
    /// [`Role::ReadOnly`], everything else [`Role::Administrator`].
    pub fn needed_for(method: &Method) -> Role {
        if method.is_safe() {
            Role::ReadOnly
        } else {
            Role::Administrator
        }
    }
}

/// Why a request was not let in. Each service words these for its users (and which hints to
/// give); none of them says whether a user name exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// No `Authorization` header and no session cookie.
    #[error("no credentials were sent")]
    NoCredentials,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header must be 'Bearer <token>'")]
    MalformedAuthorization,
    /// A token this service does not know.
    #[error("the API token is unknown or revoked")]
    UnknownToken,
    /// A token that was revoked.
    #[error("the API token was revoked")]
    RevokedToken,
    /// A token past its expiry.
    #[error("the API token expired")]
    ExpiredToken {
        /// When it expired.
        at: OffsetDateTime,
    },
    /// A session cookie this service does not know (ended, or never started).
    #[error("the session is unknown or ended")]
    UnknownSession,
    /// A session idle too long, or older than its longest life.
    #[error("the session expired")]
    ExpiredSession,
    /// A session request that changes something without the session's CSRF token.
    #[error("the request does not carry the session's CSRF token")]
    CsrfMismatch,
    /// The credential's user is gone, or has a role this version does not know.
    #[error("the user of this credential no longer exists or has no known role")]
    NoSuchUser,
    /// The user's role does not allow this.
    #[error("this needs the {needed} role; the user has {have}")]
    Forbidden {
        /// The role needed.
        needed: Role,
        /// The user's role.
        have: Role,
    },
}

/// An auth operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A field does not fit (the message says why).
    #[error("{field}: {detail}")]
    Invalid {
        /// The field.
        field: String,
        /// Why the value is refused.
        detail: String,
    },
    /// A user or token that does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// The user or token looked for.
        what: String,
    },
    /// A user that exists already.
    #[error("{what} exists already")]
    Conflict {
        /// The user that exists.
        what: String,
    },
    /// The request was not let in.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The password hashing queue is full.
    #[error(transparent)]
    Busy(#[from] HashBusy),
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The store failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

impl AuthError {
    fn invalid(field: &str, detail: impl Into<String>) -> AuthError {
        AuthError::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// The stored password hash of a user who cannot log in with a password (one who only has API
/// tokens, such as the license server's first administrator). No password matches it.
pub const NO_PASSWORD: &str = "!";

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

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
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Whether `password` matches a stored PHC string (never for [`NO_PASSWORD`] or anything that is
/// not a PHC string).
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// SHA-256 hex of a secret (an API token, a session id): what the store keeps.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A random secret: `prefix` and 64 hex digits (256 bits).
pub(crate) fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Refuses control characters, the invisible marks that reorder text, and over-long names.
fn check_name(name: &str) -> Result<(), AuthError> {
    if name.trim().is_empty() {
        return Err(AuthError::invalid("name", "a user needs a name"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::invalid(
            "name",
            format!("at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(AuthError::invalid(
            "name",
            format!(
                "control characters are not allowed (found U+{:04X}): use printable text on one line",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

fn check_password_rules(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::invalid(
            "password",
            format!("a password needs at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Creates a user with a role and a password (at least [`MIN_PASSWORD_CHARS`] characters), or
/// with no password ([`None`]: the user signs in with API tokens only).
pub async fn create_user<S: AuthStore>(
    store: &S,
    name: &str,
    password: Option<&str>,
    role: Role,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    create_user_with(store, name, password, role, false, now).await
}

/// As [`create_user`], and with `must_change_password` the user's first login must set a new
/// password (a password someone else chose, or one printed at a service's first start).
pub async fn create_user_with<S: AuthStore>(
    store: &S,
    name: &str,
    password: Option<&str>,
    role: Role,
    must_change_password: bool,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    check_name(name)?;
    let password_hash = match password {
        Some(p) => {
            check_password_rules(p)?;
            hash_password(p)?
        }
        None => NO_PASSWORD.to_owned(),
    };
    store
        .create_user(UserRecord {
            name: name.trim().into(),
            password_hash,
            role: role.as_str().into(),
            must_change_password: must_change_password && password.is_some(),
            created_at: now,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => AuthError::Conflict {
                what: format!("user {name}"),
            },
            other => other.into(),
        })
}

/// Gives a user another role, ending their browser sessions (a page rendered for the old role
/// should not go on working); `NotFound` for an unknown user.
pub async fn set_role<S: AuthStore>(store: &S, name: &str, role: Role) -> Result<(), AuthError> {
    if !store.set_role(name, role.as_str()).await? {
        return Err(AuthError::NotFound {
            what: format!("user {name}"),
        });
    }
    store.delete_user_sessions(name).await?;
    Ok(())
}

/// Gives a user a new password, and revokes every API token and ends every session of the user
/// (whoever had the old password may have made tokens or sessions with it). Returns how many
/// tokens were revoked; `NotFound` for an unknown user.
pub async fn reset_password<S: AuthStore>(
    store: &S,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<u64, AuthError> {
    check_password_rules(password)?;
    let hash = hash_password(password)?;
    if !store.set_password(name, &hash, false).await? {
        return Err(AuthError::NotFound {
            what: format!("user {name}"),
        });
    }
    store.delete_user_sessions(name).await?;
    Ok(store.revoke_user_tokens(name, now).await?)
}

/// Removes a user with their API tokens and sessions; `NotFound` for an unknown user.
pub async fn delete_user<S: AuthStore>(store: &S, name: &str) -> Result<(), AuthError> {
    if !store.delete_user(name).await? {
        return Err(AuthError::NotFound {
            what: format!("user {name}"),
        });
    }
    Ok(())
}

/// Sets a user's password (at least [`MIN_PASSWORD_CHARS`] characters) and whether the next
/// login must change it, and ends the user's sessions; API tokens are kept (the user proved the
/// old password, or an operator with the data directory set it). `NotFound` for an unknown user.
pub async fn set_password<S: AuthStore>(
    store: &S,
    name: &str,
    password: &str,
    must_change: bool,
) -> Result<(), AuthError> {
    check_password_rules(password)?;
    let hash = hash_password(password)?;
    if !store.set_password(name, &hash, must_change).await? {
        return Err(AuthError::NotFound {
            what: format!("user {name}"),
        });
    }
    store.delete_user_sessions(name).await?;
    Ok(())
}

/// Checks the rules a new password must meet (length), without storing anything.
pub fn check_new_password(password: &str) -> Result<(), AuthError> {
    check_password_rules(password)
}

/// The user when the password is right; `None` for an unknown user, a user without a password or
/// a wrong password (indistinguishable to the caller, in time too). The hash runs through `gate`.
pub async fn check_password<S: AuthStore>(
    store: &S,
    gate: &HashGate,
    name: &str,
    password: &str,
) -> Result<Option<UserRecord>, AuthError> {
    let given = password.to_string();
    let Some(user) = store.get_user(name).await? else {
        // spend the same time as a real check so user names cannot be probed by timing
        gate.run(move || {
            let _ = hash_password(&given);
        })
        .await?;
        return Ok(None);
    };
    let stored = user.password_hash.clone();
    let ok = gate.run(move || verify_password(&stored, &given)).await?;
    Ok(ok.then_some(user))
}

/// The principal a request proves: an `Authorization: Bearer` token first, else the session
/// cookie of `sessions` (when given), whose CSRF token must come along in `X-CSRF-Token` unless
/// the method only reads. The role is not checked here: see [`Principal::require`].
pub async fn authenticate<S: AuthStore>(
    store: &S,
    sessions: Option<&Sessions>,
    method: &Method,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    if let Some(token) = tokens::bearer(headers)? {
        return tokens::authenticate_token(store, token, now).await;
    }
    if let Some(sessions) = sessions {
        if let Some(p) = sessions.resume(store, method, headers, now).await? {
            return Ok(p);
        }
    }
    Err(Refused::NoCredentials.into())
}

/// The user named, with their role; [`Refused::NoSuchUser`] when gone or of an unknown role.
pub(crate) async fn user_role<S: AuthStore>(store: &S, name: &str) -> Result<Role, AuthError> {
    let user = store.get_user(name).await?.ok_or(Refused::NoSuchUser)?;
    Ok(Role::parse(&user.role).ok_or(Refused::NoSuchUser)?)
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

/// Why a login was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Throttled {
    /// Too many failed logins for this account lately.
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

impl LoginThrottle {
    /// A throttle that lets an account fail `account_burst` logins at once and one more every
    /// `account_refill_secs`, and an address try `address_burst` logins at once and one more every
    /// `address_refill_secs` (the license server: 100 failures an hour per account).
    pub fn new(
        account_burst: f64,
        account_refill_secs: f64,
        address_burst: f64,
        address_refill_secs: f64,
    ) -> Self {
        LoginThrottle {
            accounts: Buckets::new(account_burst, account_refill_secs),
            addresses: Buckets::new(address_burst, address_refill_secs),
        }
    }

    /// Takes an attempt for `name` from `ip`, or says how long to wait.
    pub fn attempt(&self, name: &str, ip: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        self.addresses
            .take(crate::rate::client_key(ip), now)
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

#[cfg(test)]
mod tests;
