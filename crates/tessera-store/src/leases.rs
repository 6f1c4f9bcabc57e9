//! [`LeaseStore`]: the license server's leases and metered units, written in batches.
//!
//! The server decides in memory (the seat book) and writes every decision here before it answers.
//! [`LeaseStore::apply_lease_changes`] takes any number of changes and commits them in one
//! transaction, so a writer can group the changes of many concurrent requests into one commit.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Lease id.
    pub id: i64,
    /// Holder.
    pub device: String,
    /// The request id that created it.
    pub request_id: String,
    /// Which feature record (a stable key the server derives from the record).
    pub record_key: String,
    /// Seats held.
    pub count: i64,
    /// Of those, beyond the count.
    pub overdraft: i64,
    /// When it runs out.
    pub expires_at: OffsetDateTime,
    /// Taken offline.
    pub borrowed: bool,
}

/// One change to the leases.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseChange {
    /// A new lease (or one replaced whole).
    Put(LeaseRow),
    /// A lease renewed.
    Expiry {
        /// Lease id.
        id: i64,
        /// New expiry.
        expires_at: OffsetDateTime,
    },
    /// A lease returned or expired.
    Delete {
        /// Lease id.
        id: i64,
    },
    /// Metered units consumed so far on a record.
    Consumed {
        /// Record key.
        record_key: String,
        /// Units consumed in all.
        units: i64,
    },
}

/// The license server's leases.
pub trait LeaseStore {
    /// Applies the changes in one transaction: all or none.
    fn apply_lease_changes(
        &self,
        changes: Vec<LeaseChange>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every lease stored.
    fn load_leases(&self) -> impl Future<Output = Result<Vec<LeaseRow>, StoreError>> + Send;
    /// Metered units consumed, by record key.
    fn load_consumed(&self) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
}

type Row = (i64, String, String, String, i64, i64, i64, i64);

macro_rules! impl_lease_store {
    ($store:ty, $name:literal) => {
        impl LeaseStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name, n = changes.len()))]
            async fn apply_lease_changes(&self, changes: Vec<LeaseChange>) -> Result<(), StoreError> {
                if changes.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for c in &changes {
                    match c {
                        LeaseChange::Put(l) => {
                            sqlx::query(
                                "INSERT INTO leases (id, device, request_id, record_key, count, overdraft, expires_at, borrowed) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                                 ON CONFLICT (id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                                 record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                                 expires_at = excluded.expires_at, borrowed = excluded.borrowed",
                            )
                            .bind(l.id)
                            .bind(&l.device)
                            .bind(&l.request_id)
                            .bind(&l.record_key)
                            .bind(l.count)
                            .bind(l.overdraft)
                            .bind(unix(l.expires_at))
                            .bind(i64::from(l.borrowed))
                            .execute(&mut *tx)
                            .await?;
                        }
                        LeaseChange::Expiry { id, expires_at } => {
                            sqlx::query("UPDATE leases SET expires_at = $2 WHERE id = $1")
                                .bind(id)
                                .bind(unix(*expires_at))
                                .execute(&mut *tx)
                                .await?;
                        }
                        LeaseChange::Delete { id } => {
                            sqlx::query("DELETE FROM leases WHERE id = $1")
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                        }
                        LeaseChange::Consumed { record_key, units } => {
                            sqlx::query(
                                "INSERT INTO metered_use (record_key, units) VALUES ($1, $2) \
                                 ON CONFLICT (record_key) DO UPDATE SET units = excluded.units",
                            )
                            .bind(record_key)
                            .bind(units)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, device, request_id, record_key, count, overdraft, expires_at, borrowed FROM leases ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(LeaseRow {
                            id: r.0,
                            device: r.1,
                            request_id: r.2,
                            record_key: r.3,
                            count: r.4,
                            overdraft: r.5,
                            expires_at: time(r.6, "leases.expires_at")?,
                            borrowed: r.7 != 0,
                        })
                    })
                    .collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_consumed(&self) -> Result<Vec<(String, i64)>, StoreError> {
                Ok(sqlx::query_as("SELECT record_key, units FROM metered_use ORDER BY record_key")
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}

impl_lease_store!(SqliteStore, "sqlite");
impl_lease_store!(PgStore, "postgres");

impl LeaseStore for AnyStore {
    async fn apply_lease_changes(&self, changes: Vec<LeaseChange>) -> Result<(), StoreError> {
        dispatch!(self, s => s.apply_lease_changes(changes).await)
    }
    async fn load_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        dispatch!(self, s => s.load_leases().await)
    }
    async fn load_consumed(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, s => s.load_consumed().await)
    }
}
