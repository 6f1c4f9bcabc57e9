//! API tokens: `<prefix><64 hex digits>`, shown once, kept as SHA-256 ([`super::secret_hash`]),
//! optionally expiring, revocable. A service picks its prefix (`tsr_` for the back office, `tss_`
//! for the license server), so a token pasted in the wrong place is recognised for what it is.

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use tessera_store::{AuthStore, TokenRecord};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{secret_hash, user_role, AuthError, Credential, Principal, Refused};

/// Longest lifetime given to a token at creation, in days (ten years).
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Characters of a token's hash that name it in lists and revocations.
pub const TOKEN_ID_LEN: usize = 16;

/// The token of an `Authorization: Bearer <token>` header; `None` without the header,
/// [`Refused::MalformedAuthorization`] for any other form.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Refused> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(Refused::MalformedAuthorization)
}

/// Creates an API token for a user, expiring after `expires_days` when given; returns the token
/// (show it once: only its hash is kept). `prefix` starts it.
pub async fn create_token<S: AuthStore>(
    store: &S,
    prefix: &str,
    user: &str,
    label: &str,
    expires_days: Option<u32>,
    now: OffsetDateTime,
) -> Result<String, AuthError> {
    if matches!(expires_days, Some(d) if d == 0 || d > MAX_TOKEN_DAYS) {
        return Err(AuthError::invalid(
            "expires_days",
            format!("a token lasts 1 to {MAX_TOKEN_DAYS} days (leave it out for no expiry)"),
        ));
    }
    if label.chars().count() > 200 || label.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            "name",
            "a token label has at most 200 characters and no control characters",
        ));
    }
    if store.get_user(user).await?.is_none() {
        return Err(AuthError::NotFound {
            what: format!("user {user}"),
        });
    }
    let token = super::random_secret(prefix);
    store
        .create_token(TokenRecord {
            hash: secret_hash(&token),
            name: label.into(),
            user_name: user.into(),
            created_at: now,
            revoked_at: None,
            expires_at: expires_days.map(|d| now + time::Duration::days(i64::from(d))),
        })
        .await?;
    Ok(token)
}

/// The principal a token proves at `now`: known, not revoked, not expired, its user still there.
pub async fn authenticate_token<S: AuthStore>(
    store: &S,
    token: &str,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    let record = store
        .find_token(&secret_hash(token))
        .await?
        .ok_or(Refused::UnknownToken)?;
    if record.revoked_at.is_some() {
        return Err(Refused::RevokedToken.into());
    }
    if let Some(at) = record.expires_at.filter(|e| *e <= now) {
        return Err(Refused::ExpiredToken { at }.into());
    }
    let role = user_role(store, &record.user_name).await?;
    Ok(Principal {
        user: record.user_name,
        role,
        credential: Credential::Token {
            id: record.hash.chars().take(TOKEN_ID_LEN).collect(),
        },
    })
}

/// An API token as lists show it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// How a token looks in lists at `now`.
pub fn token_view(t: &TokenRecord, now: OffsetDateTime) -> TokenView {
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
pub async fn list_tokens<S: AuthStore>(
    store: &S,
    user: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<TokenView>, AuthError> {
    Ok(store
        .list_tokens(user)
        .await?
        .iter()
        .map(|t| token_view(t, now))
        .collect())
}

/// Revokes a token named by its id (from [`list_tokens`], at least 8 hex digits of it) or given
/// itself (starting with `prefix`). Revoking a revoked token changes nothing.
pub async fn revoke_token<S: AuthStore>(
    store: &S,
    prefix: &str,
    id_or_token: &str,
    now: OffsetDateTime,
) -> Result<TokenView, AuthError> {
    let given = id_or_token.trim();
    let record = if given.starts_with(prefix) {
        store.find_token(&secret_hash(given)).await?
    } else {
        let id = given.to_ascii_lowercase();
        if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(AuthError::invalid(
                "id",
                "name the token by its id as `token list` shows it (16 hex digits), or give the token itself",
            ));
        }
        let mut found: Vec<TokenRecord> = store
            .list_tokens(None)
            .await?
            .into_iter()
            .filter(|t| t.hash.starts_with(&id))
            .collect();
        if found.len() > 1 {
            return Err(AuthError::invalid(
                "id",
                format!("{id} names more than one token: give more of its digits"),
            ));
        }
        found.pop()
    };
    let mut record = record.ok_or_else(|| AuthError::NotFound {
        what: format!("API token {given}"),
    })?;
    if store.revoke_token(&record.hash, now).await? {
        record.revoked_at = Some(now);
    }
    Ok(token_view(&record, now))
}

/// Replaces the tokens of `user` labelled `label` with a new one, returned (show it once): every
/// earlier one with that label is revoked at `now`. For a service's start-up token
/// (`tessera server token rotate`).
pub async fn rotate_token<S: AuthStore>(
    store: &S,
    prefix: &str,
    user: &str,
    label: &str,
    now: OffsetDateTime,
) -> Result<String, AuthError> {
    for t in store.list_tokens(Some(user)).await? {
        if t.name == label && t.revoked_at.is_none() {
            store.revoke_token(&t.hash, now).await?;
        }
    }
    create_token(store, prefix, user, label, None, now).await
}
