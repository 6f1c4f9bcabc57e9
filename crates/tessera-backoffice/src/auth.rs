//! Users (argon2id passwords) and API tokens (random, stored as SHA-256).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use tessera_core::time::OffsetDateTime;
use tessera_store::backoffice::{TokenRecord, UserRecord};
use tessera_store::{BackOfficeStore, StoreError};

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

/// The user's name when the password is right; `None` for an unknown user or a wrong password
/// (indistinguishable to the caller).
pub async fn check_password<S: BackOfficeStore>(
    store: &S,
    name: &str,
    password: &str,
) -> Result<Option<String>, ServiceError> {
    let Some(user) = store.get_user(name).await? else {
        // spend the same time as a real check so user names cannot be probed by timing
        let _ = hash_password(password);
        return Ok(None);
    };
    // argon2 takes tens of milliseconds of CPU: off the async workers
    let stored = user.password_hash.clone();
    let given = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(given.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    Ok(ok.then_some(user.name))
}

/// Creates an API token for a user; returns the token (shown once; only its hash is kept).
pub async fn create_token<S: BackOfficeStore>(
    store: &S,
    user: &str,
    label: &str,
    now: OffsetDateTime,
) -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "tsr_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    store
        .create_token(TokenRecord {
            hash: token_hash(&token),
            name: label.into(),
            user_name: user.into(),
            created_at: now,
            revoked_at: None,
        })
        .await?;
    Ok(token)
}
