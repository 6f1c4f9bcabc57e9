//! [`ActivationKeyStore`]: activation keys, stored only as their [`KeyHash`].
//!
//! The store never sees a key: every method takes a [`KeyHash`], which only
//! [`ActivationKey::hash`](tessera_core::ActivationKey::hash) (or parsing a stored hash) makes.
//! Hashes are kept as 64 lower-case hex characters.

use std::future::Future;

use tessera_core::KeyHash;
use time::OffsetDateTime;

use crate::codec::{opt_time, time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// An activation key to store. Times are kept to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivationKey {
    /// The hash of the key.
    pub hash: KeyHash,
    /// What the key is for (e.g. the order or customer it was made for).
    pub label: String,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// A stored activation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationKeyRecord {
    /// The hash of the key.
    pub hash: KeyHash,
    /// What the key is for.
    pub label: String,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Activation keys, by hash.
pub trait ActivationKeyStore {
    /// Stores a new key. A hash already stored is [`StoreError::Conflict`].
    fn insert_activation_key(
        &self,
        key: NewActivationKey,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The key with this hash, if stored (revoked or not).
    fn find_activation_key(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<ActivationKeyRecord>, StoreError>> + Send;

    /// Revokes a key at `at`; `false` if no key has this hash. Revoking a revoked key returns
    /// `true` and keeps the first revocation time.
    fn revoke_activation_key(
        &self,
        hash: &KeyHash,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

type KeyRow = (String, String, i64, Option<i64>);

fn from_row(
    (hash, label, created_at, revoked_at): KeyRow,
) -> Result<ActivationKeyRecord, StoreError> {
    let Some(parsed) = KeyHash::from_hex(&hash) else {
        return Err(StoreError::corrupt(format!(
            "activation_keys.hash holds {hash:?}, which is not 64 hex characters"
        )));
    };
    Ok(ActivationKeyRecord {
        hash: parsed,
        label,
        created_at: time(created_at, "activation_keys.created_at")?,
        revoked_at: opt_time(revoked_at, "activation_keys.revoked_at")?,
    })
}

macro_rules! impl_activation_key_store {
    ($store:ty, $name:literal) => {
        impl ActivationKeyStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn insert_activation_key(&self, key: NewActivationKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO activation_keys (hash, label, created_at, revoked_at) \
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(key.hash.to_hex())
                .bind(&key.label)
                .bind(unix(key.created_at))
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::unique_as_conflict(e, || format!("activation key {:?}", key.hash))
                })?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn find_activation_key(
                &self,
                hash: &KeyHash,
            ) -> Result<Option<ActivationKeyRecord>, StoreError> {
                let row: Option<KeyRow> = sqlx::query_as(
                    "SELECT hash, label, created_at, revoked_at FROM activation_keys \
                     WHERE hash = $1",
                )
                .bind(hash.to_hex())
                .fetch_optional(&self.pool)
                .await?;
                row.map(from_row).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn revoke_activation_key(
                &self,
                hash: &KeyHash,
                at: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let changed = sqlx::query(
                    "UPDATE activation_keys SET revoked_at = COALESCE(revoked_at, $2) \
                     WHERE hash = $1",
                )
                .bind(hash.to_hex())
                .bind(unix(at))
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(changed > 0)
            }
        }
    };
}

impl_activation_key_store!(SqliteStore, "sqlite");
impl_activation_key_store!(PgStore, "postgres");

impl ActivationKeyStore for AnyStore {
    async fn insert_activation_key(&self, key: NewActivationKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_activation_key(key).await)
    }

    async fn find_activation_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<ActivationKeyRecord>, StoreError> {
        dispatch!(self, s => s.find_activation_key(hash).await)
    }

    async fn revoke_activation_key(
        &self,
        hash: &KeyHash,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.revoke_activation_key(hash, at).await)
    }
}
