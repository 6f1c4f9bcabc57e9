//! [`AuditStore`]: the license server's audit log. Each entry says when (UTC, whole seconds), who
//! (a user name, or what the caller claimed to be), what (a short action name such as `login` or
//! `activate`), a detail in words, and the client's address when known. Entries are only added
//! and, past the retention the service chooses, pruned; never changed.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// An entry to add to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// When it happened.
    pub at: OffsetDateTime,
    /// Who did it (a user name; for a refused request, what it claimed or `-`).
    pub actor: String,
    /// What was done, a short name (`login`, `login_failed`, `activate`, …).
    pub action: String,
    /// The detail, in words.
    pub detail: String,
    /// The client's address, when known.
    pub address: Option<String>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its number: later entries have larger numbers.
    pub id: i64,
    /// The entry itself.
    pub entry: NewAuditEntry,
}

/// The audit log. See the module documentation.
pub trait AuditStore {
    /// Adds an entry; returns its id.
    fn append_audit(
        &self,
        e: NewAuditEntry,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// At most `limit` entries, newest first, only those older than entry `before` when given
    /// (the next page: `before` is the last id of the page before).
    fn list_audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
    /// Removes the entries made before `older_than`, and all but the newest `keep` entries;
    /// returns how many were removed.
    fn prune_audit(
        &self,
        older_than: OffsetDateTime,
        keep: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

type AuditRow = (i64, i64, String, String, String, Option<String>);

fn entry(r: AuditRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: r.0,
        entry: NewAuditEntry {
            at: time(r.1, "audit_log.at")?,
            actor: r.2,
            action: r.3,
            detail: r.4,
            address: r.5,
        },
    })
}

macro_rules! impl_audit_store {
    ($store:ty, $name:literal) => {
        impl AuditStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn append_audit(&self, e: NewAuditEntry) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO audit_log (at, actor, action, detail, address) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(unix(e.at))
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.detail)
                .bind(&e.address)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_audit(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, actor, action, detail, address FROM audit_log \
                     WHERE $1 IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(entry).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn prune_audit(&self, older_than: OffsetDateTime, keep: u64) -> Result<u64, StoreError> {
                let old = sqlx::query("DELETE FROM audit_log WHERE at < $1")
                    .bind(unix(older_than))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                let over = sqlx::query(
                    "DELETE FROM audit_log WHERE id <= (SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET $1)",
                )
                .bind(keep)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(old + over)
            }
        }
    };
}

impl_audit_store!(SqliteStore, "sqlite");
impl_audit_store!(PgStore, "postgres");

impl AuditStore for AnyStore {
    async fn append_audit(&self, e: NewAuditEntry) -> Result<i64, StoreError> {
        dispatch!(self, s => s.append_audit(e).await)
    }
    async fn list_audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self, s => s.list_audit(before, limit).await)
    }
    async fn prune_audit(&self, older_than: OffsetDateTime, keep: u64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_audit(older_than, keep).await)
    }
}
