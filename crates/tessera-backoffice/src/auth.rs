//! The back office's users and API tokens: `tessera_service::auth` (argon2id passwords hashed a
//! few at a time, logins throttled per account and per address, tokens kept as SHA-256), with the
//! back office's token prefix (`tsr_`) and its errors ([`ServiceError`]).

use tessera_core::time::OffsetDateTime;
use tessera_service::auth::{self as kit, AuthError, Role};
use tessera_store::AuthStore;

pub use tessera_service::auth::tokens::MAX_TOKEN_DAYS;
pub use tessera_service::auth::{
    random_password, HashBusy, HashGate, LoginThrottle, Throttled, TokenView, ACCOUNT_BURST,
    ACCOUNT_REFILL_SECS, ADDRESS_BURST, ADDRESS_REFILL_SECS, HASH_CONCURRENCY, HASH_QUEUE,
    TOKEN_ID_LEN,
};

use crate::service::ServiceError;

/// The role of every user the back office makes so far: full producer administration.
pub const ADMIN_ROLE: &str = "admin";

/// How the back office's API tokens start.
pub const TOKEN_PREFIX: &str = "tsr_";

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid { field, detail } => ServiceError::Invalid { field, detail },
            AuthError::NotFound { what } => ServiceError::NotFound { what },
            AuthError::Conflict { what } => ServiceError::Conflict { what },
            AuthError::Store(e) => ServiceError::Store(e),
            other => ServiceError::Sign(other.to_string()),
        }
    }
}

/// The argon2id PHC string of a password.
pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    Ok(kit::hash_password(password)?)
}

/// Creates an administrator with a password.
pub async fn create_user<S: AuthStore>(
    store: &S,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<(), ServiceError> {
    Ok(kit::create_user(store, name, Some(password), Role::Administrator, now).await?)
}

/// Why a password check gave no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
pub async fn check_password<S: AuthStore>(
    store: &S,
    gate: &HashGate,
    name: &str,
    password: &str,
) -> Result<Option<String>, LoginError> {
    match kit::check_password(store, gate, name, password).await {
        Ok(user) => Ok(user.map(|u| u.name)),
        Err(AuthError::Busy(b)) => Err(LoginError::Busy(b)),
        Err(e) => Err(LoginError::Service(e.into())),
    }
}

/// Gives a user a new password and revokes every API token of the user (whoever had the old
/// password may have made tokens with it). Returns how many tokens were revoked; `NotFound` for
/// an unknown user.
pub async fn reset_password<S: AuthStore>(
    store: &S,
    name: &str,
    password: &str,
    now: OffsetDateTime,
) -> Result<u64, ServiceError> {
    Ok(kit::reset_password(store, name, password, now).await?)
}

/// Creates an API token for a user, expiring after `expires_days` when given; returns the token
/// (shown once; only its hash is kept).
pub async fn create_token<S: AuthStore>(
    store: &S,
    user: &str,
    label: &str,
    expires_days: Option<u32>,
    now: OffsetDateTime,
) -> Result<String, ServiceError> {
    Ok(kit::tokens::create_token(store, TOKEN_PREFIX, user, label, expires_days, now).await?)
}

/// Every API token (of one user when given), newest first.
pub async fn list_tokens<S: AuthStore>(
    store: &S,
    user: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<TokenView>, ServiceError> {
    Ok(kit::tokens::list_tokens(store, user, now).await?)
}

/// Revokes a token named by its id (from [`list_tokens`], at least 8 hex digits of it) or given
/// itself (`tsr_…`). Revoking a revoked token changes nothing.
pub async fn revoke_token<S: AuthStore>(
    store: &S,
    id_or_token: &str,
    now: OffsetDateTime,
) -> Result<TokenView, ServiceError> {
    Ok(kit::tokens::revoke_token(store, TOKEN_PREFIX, id_or_token, now).await?)
}
