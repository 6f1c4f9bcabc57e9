//! [`KeyStore`]: the producer's public keys, by key id, so that signing keys can rotate.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{opt_time, opt_unix, time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// A producer public key. Times are kept to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRecord {
    /// The key id carried in every signed document (`kid`).
    pub kid: String,
    /// The public key, PEM-encoded.
    pub public_pem: String,
    /// When the key was made.
    pub created_at: OffsetDateTime,
    /// When the key stopped signing, if it has.
    pub retired_at: Option<OffsetDateTime>,
}

/// Producer public keys.
pub trait KeyStore {
    /// Stores a public key. Storing the same `kid` with the same PEM again does nothing (the
    /// first record's times stay); the same `kid` with a different PEM (compared byte for byte)
    /// is [`StoreError::Conflict`].
    fn put_public_key(
        &self,
        key: PublicKeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored key, oldest first (by creation time, then key id).
    fn list_public_keys(
        &self,
    ) -> impl Future<Output = Result<Vec<PublicKeyRecord>, StoreError>> + Send;

    /// Marks a key retired at `at`. A key already retired keeps its first retirement time. An
    /// unknown `kid` is [`StoreError::NotFound`].
    fn retire_public_key(
        &self,
        kid: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

type KeyRow = (String, String, i64, Option<i64>);

fn from_row(
    (kid, public_pem, created_at, retired_at): KeyRow,
) -> Result<PublicKeyRecord, StoreError> {
    Ok(PublicKeyRecord {
        created_at: time(created_at, "public_keys.created_at")?,
        retired_at: opt_time(retired_at, "public_keys.retired_at")?,
        kid,
        public_pem,
    })
}

macro_rules! impl_key_store {
    ($store:ty, $name:literal) => {
        impl KeyStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn put_public_key(&self, key: PublicKeyRecord) -> Result<(), StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO public_keys (kid, public_pem, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
                )
                .bind(&key.kid)
                .bind(&key.public_pem)
                .bind(unix(key.created_at))
                .bind(opt_unix(key.retired_at))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(());
                }
                let stored: Option<(String,)> =
                    sqlx::query_as("SELECT public_pem FROM public_keys WHERE kid = $1")
                        .bind(&key.kid)
                        .fetch_optional(&self.pool)
                        .await?;
                match stored {
                    Some((pem,)) if pem == key.public_pem => Ok(()),
                    _ => Err(StoreError::Conflict {
                        what: format!("a different public key with key id {:?}", key.kid),
                    }),
                }
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
                let rows: Vec<KeyRow> = sqlx::query_as(
                    "SELECT kid, public_pem, created_at, retired_at FROM public_keys \
                     ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(from_row).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn retire_public_key(
                &self,
                kid: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let changed = sqlx::query(
                    "UPDATE public_keys SET retired_at = COALESCE(retired_at, $2) WHERE kid = $1",
                )
                .bind(kid)
                .bind(unix(at))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound {
                        what: format!("public key {kid:?}"),
                    });
                }
                Ok(())
            }
        }
    };
}

impl_key_store!(SqliteStore, "sqlite");
impl_key_store!(PgStore, "postgres");

impl KeyStore for AnyStore {
    async fn put_public_key(&self, key: PublicKeyRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_public_key(key).await)
    }

    async fn list_public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
        dispatch!(self, s => s.list_public_keys().await)
    }

    async fn retire_public_key(&self, kid: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.retire_public_key(kid, at).await)
    }
}
