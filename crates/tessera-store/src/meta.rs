//! [`MetaStore`]: settings and the restore-detection anchor.
//!
//! This module shows the pattern every store module follows: the trait, one `macro_rules!` that
//! writes the implementation once with SQL both backends accept, invoked for [`SqliteStore`] and
//! [`PgStore`], and the [`AnyStore`] delegation.

use std::future::Future;

use crate::{dispatch, AnyStore, Backend, PgStore, SqliteStore, StoreError};

/// Facts about the store itself: which backend, free-form settings, and the anchor.
pub trait MetaStore {
    /// Which database engine this store runs on.
    fn backend(&self) -> Backend;

    /// The value of a setting, or `None` if it was never set.
    fn get_setting(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Sets a setting, replacing any earlier value.
    fn put_setting(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets the setting `key` to the number `value` unless it already holds a number of at least
    /// `unless_from`; says whether this call set it. Atomic: of callers racing with the same
    /// arguments (several license server processes sharing one store), exactly one gets `true`.
    /// (The license servers of a cluster claim their daily back-office sync with the typed
    /// [`ServerStateStore::claim_scheduled_sync`](crate::ServerStateStore::claim_scheduled_sync).)
    ///
    /// Numbers are stored as 20 zero-padded digits (negative ones count as 0), so the comparison
    /// is one of text on both databases and cannot fail; a value in any other form is replaced.
    fn claim_setting(
        &self,
        key: &str,
        value: i64,
        unless_from: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The current anchor: a counter that only grows, starting at 0 in a new database.
    ///
    /// The license server keeps a copy elsewhere and compares: storage whose anchor is behind
    /// is an older copy that was restored.
    fn anchor(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Adds one to the anchor and returns the new value, atomically: concurrent callers each get
    /// a distinct value.
    fn bump_anchor(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

macro_rules! impl_meta_store {
    ($store:ty, $backend:expr, $name:literal) => {
        impl MetaStore for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(value,)| value))
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn claim_setting(
                &self,
                key: &str,
                value: i64,
                unless_from: i64,
            ) -> Result<bool, StoreError> {
                // an upsert whose update only happens while the stored number is older: the
                // conflicting row is locked, so a racing caller sees the winner's value
                let row: Option<(String,)> = sqlx::query_as(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value \
                     WHERE length(settings.value) <> 20 OR settings.value < $3 \
                        OR settings.value > '99999999999999999999' \
                     RETURNING key",
                )
                .bind(key)
                .bind(claim_digits(value))
                .bind(claim_digits(unless_from))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.is_some())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn anchor(&self) -> Result<i64, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT value FROM anchor WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|(value,)| value).ok_or_else(missing_anchor)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn bump_anchor(&self) -> Result<i64, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "UPDATE anchor SET value = value + 1 WHERE id = 1 RETURNING value",
                )
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(value,)| value).ok_or_else(missing_anchor)
            }
        }
    };
}

impl_meta_store!(SqliteStore, Backend::Sqlite, "sqlite");
impl_meta_store!(PgStore, Backend::Postgres, "postgres");

/// A number as [`MetaStore::claim_setting`] stores it: 20 digits, zero-padded.
fn claim_digits(n: i64) -> String {
    format!("{:020}", n.max(0))
}

/// The anchor row is created by the first migration and never deleted.
fn missing_anchor() -> StoreError {
    StoreError::corrupt("the anchor row is missing")
}

impl MetaStore for AnyStore {
    fn backend(&self) -> Backend {
        dispatch!(self, s => s.backend())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.get_setting(key).await)
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_setting(key, value).await)
    }

    async fn claim_setting(
        &self,
        key: &str,
        value: i64,
        unless_from: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_setting(key, value, unless_from).await)
    }

    async fn anchor(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.anchor().await)
    }

    async fn bump_anchor(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.bump_anchor().await)
    }
}
