//! [`ClientKeyStore`]: per [`InstanceId`], the client keys of a license server (public keys
//! that may sign capability requests, uploaded by its administrator) and the producer keys it
//! trusts for license bundles and server certificates (so the producer can rotate its signing
//! key). The license server checks a key before it stores it; the store keeps what it is given.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::{dispatch, AnyStore, InstanceId, PgStore, SqliteStore, StoreError};

/// A client key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeyRecord {
    /// Its id: the fingerprint of the key (the license server computes it).
    pub id: String,
    /// `rsa-2048` or `ed25519`.
    pub algorithm: String,
    /// The key as SubjectPublicKeyInfo DER, base64.
    pub public_der: String,
    /// When it was added.
    pub added_at: OffsetDateTime,
    /// Who added it (a user name).
    pub added_by: String,
}

/// A trusted producer key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeyRecord {
    /// The key id (`kid`) documents signed with it carry.
    pub kid: String,
    /// The public key, SPKI PEM.
    pub public_pem: String,
    /// When it was trusted.
    pub added_at: OffsetDateTime,
    /// Who added it (a user name, or `init` for the key the server was made with).
    pub added_by: String,
}

/// What removing a trusted producer key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRemoval {
    /// Removed.
    Removed,
    /// No key of that id is trusted.
    NotFound,
    /// It is the only key trusted: kept.
    Last,
}

/// Client keys and trusted producer keys of license servers, each instance's apart.
pub trait ClientKeyStore {
    /// `instance`'s client keys, oldest first.
    fn client_keys(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Vec<ClientKeyRecord>, StoreError>> + Send;

    /// Adds a client key; a key of the same id already there is [`StoreError::Conflict`].
    fn add_client_key(
        &self,
        instance: &InstanceId,
        key: &ClientKeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a client key; says whether there was one.
    fn delete_client_key(
        &self,
        instance: &InstanceId,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `instance`'s trusted producer keys, oldest first.
    fn trusted_producer_keys(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Vec<TrustedKeyRecord>, StoreError>> + Send;

    /// Trusts a producer key; says whether it was added (`false`: that key id was trusted
    /// already, and is kept as it was).
    fn add_trusted_producer_key(
        &self,
        instance: &InstanceId,
        key: &TrustedKeyRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stops trusting a producer key, unless it is the only one (atomically: of two removals at
    /// once, one keeps the last key).
    fn remove_trusted_producer_key(
        &self,
        instance: &InstanceId,
        kid: &str,
    ) -> impl Future<Output = Result<KeyRemoval, StoreError>> + Send;
}

type ClientRow = (String, String, String, i64, String);
type TrustedRow = (String, String, i64, String);

macro_rules! impl_client_key_store {
    ($store:ty, $name:literal, $lock:literal) => {
        impl ClientKeyStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn client_keys(
                &self,
                instance: &InstanceId,
            ) -> Result<Vec<ClientKeyRecord>, StoreError> {
                let rows: Vec<ClientRow> = sqlx::query_as(
                    "SELECT id, algorithm, public_der, added_at, added_by FROM client_keys \
                     WHERE instance = $1 ORDER BY added_at, id",
                )
                .bind(instance.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, algorithm, public_der, at, added_by)| {
                        Ok(ClientKeyRecord {
                            id,
                            algorithm,
                            public_der,
                            added_at: time(at, "client_keys.added_at")?,
                            added_by,
                        })
                    })
                    .collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn add_client_key(
                &self,
                instance: &InstanceId,
                key: &ClientKeyRecord,
            ) -> Result<(), StoreError> {
                let added = sqlx::query(
                    "INSERT INTO client_keys (instance, id, algorithm, public_der, added_at, added_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance, id) DO NOTHING",
                )
                .bind(instance.as_str())
                .bind(&key.id)
                .bind(&key.algorithm)
                .bind(&key.public_der)
                .bind(unix(key.added_at))
                .bind(&key.added_by)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if added == 0 {
                    return Err(StoreError::Conflict {
                        what: format!("client key {}", key.id),
                    });
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn delete_client_key(
                &self,
                instance: &InstanceId,
                id: &str,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query("DELETE FROM client_keys WHERE instance = $1 AND id = $2")
                    .bind(instance.as_str())
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn trusted_producer_keys(
                &self,
                instance: &InstanceId,
            ) -> Result<Vec<TrustedKeyRecord>, StoreError> {
                let rows: Vec<TrustedRow> = sqlx::query_as(
                    "SELECT kid, public_pem, added_at, added_by FROM trusted_producer_keys \
                     WHERE instance = $1 ORDER BY added_at, kid",
                )
                .bind(instance.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(kid, public_pem, at, added_by)| {
                        Ok(TrustedKeyRecord {
                            kid,
                            public_pem,
                            added_at: time(at, "trusted_producer_keys.added_at")?,
                            added_by,
                        })
                    })
                    .collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn add_trusted_producer_key(
                &self,
                instance: &InstanceId,
                key: &TrustedKeyRecord,
            ) -> Result<bool, StoreError> {
                let added = sqlx::query(
                    "INSERT INTO trusted_producer_keys (instance, kid, public_pem, added_at, added_by) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance, kid) DO NOTHING",
                )
                .bind(instance.as_str())
                .bind(&key.kid)
                .bind(&key.public_pem)
                .bind(unix(key.added_at))
                .bind(&key.added_by)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(added > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn remove_trusted_producer_key(
                &self,
                instance: &InstanceId,
                kid: &str,
            ) -> Result<KeyRemoval, StoreError> {
                // two removals at once (cluster members) must not both see two keys left
                let mut tx = self.pool.begin().await?;
                sqlx::query($lock).execute(&mut *tx).await?;
                let n = sqlx::query(
                    "DELETE FROM trusted_producer_keys WHERE instance = $1 AND kid = $2 \
                     AND (SELECT COUNT(*) FROM trusted_producer_keys WHERE instance = $1) > 1",
                )
                .bind(instance.as_str())
                .bind(kid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                if n > 0 {
                    return Ok(KeyRemoval::Removed);
                }
                let there: Option<(String,)> = sqlx::query_as(
                    "SELECT kid FROM trusted_producer_keys WHERE instance = $1 AND kid = $2",
                )
                .bind(instance.as_str())
                .bind(kid)
                .fetch_optional(&self.pool)
                .await?;
                Ok(if there.is_some() {
                    KeyRemoval::Last
                } else {
                    KeyRemoval::NotFound
                })
            }
        }
    };
}

// SQLite has one writer at a time (the DELETE is one statement); PostgreSQL takes a table lock
// that conflicts with itself, for the transaction.
impl_client_key_store!(SqliteStore, "sqlite", "SELECT 1");
impl_client_key_store!(
    PgStore,
    "postgres",
    "LOCK TABLE trusted_producer_keys IN SHARE ROW EXCLUSIVE MODE"
);

impl ClientKeyStore for AnyStore {
    async fn client_keys(&self, instance: &InstanceId) -> Result<Vec<ClientKeyRecord>, StoreError> {
        dispatch!(self, s => s.client_keys(instance).await)
    }
    async fn add_client_key(
        &self,
        instance: &InstanceId,
        key: &ClientKeyRecord,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.add_client_key(instance, key).await)
    }
    async fn delete_client_key(&self, instance: &InstanceId, id: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_client_key(instance, id).await)
    }
    async fn trusted_producer_keys(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<TrustedKeyRecord>, StoreError> {
        dispatch!(self, s => s.trusted_producer_keys(instance).await)
    }
    async fn add_trusted_producer_key(
        &self,
        instance: &InstanceId,
        key: &TrustedKeyRecord,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.add_trusted_producer_key(instance, key).await)
    }
    async fn remove_trusted_producer_key(
        &self,
        instance: &InstanceId,
        kid: &str,
    ) -> Result<KeyRemoval, StoreError> {
        dispatch!(self, s => s.remove_trusted_producer_key(instance, kid).await)
    }
}
