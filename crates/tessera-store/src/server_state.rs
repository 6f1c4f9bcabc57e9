//! [`ServerStateStore`]: a license server's own state, one typed record per [`InstanceId`].
//!
//! What a license server remembers about itself besides its seats: the server identity its storage
//! belongs to, the machines the storage is bound to, the license bundle and certificate installed
//! from the back office, the back office it was activated against, and the claim the members of a
//! cluster make on the daily sync. (It was kept in `server.*` settings until migration 14.)
//!
//! The on-site license server is [`InstanceId::on_site`]; the back office keeps one record per
//! hosted instance. An instance with no record reads as [`ServerState::default`] (nothing set).

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{opt_time, unix};
use crate::{dispatch, AnyStore, InstanceId, PgStore, SqliteStore, StoreError};

/// A license server's state as stored. `None` means never set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerState {
    /// The server identity (host id, as text) the storage belongs to: a server with another
    /// identity refuses to serve it (the storage was copied).
    pub hostid: Option<String>,
    /// The host ids of the machines the storage is bound to (stored one a line).
    pub machine_ids: Option<Vec<String>>,
    /// The installed license bundle (armoured), written together with [`ServerState::certificate`].
    pub license: Option<String>,
    /// The server certificate installed with the bundle (armoured).
    pub certificate: Option<String>,
    /// The back office the server was activated against online (its base URL).
    pub backoffice_url: Option<String>,
    /// When a cluster member last claimed the daily sync with the back office.
    pub scheduled_sync_claimed_at: Option<OffsetDateTime>,
    /// When a cluster member last reported the daily sync done.
    pub scheduled_sync_done_at: Option<OffsetDateTime>,
}

/// License servers' state, each instance's apart. See the module documentation.
pub trait ServerStateStore {
    /// `instance`'s state ([`ServerState::default`] when nothing was ever set).
    fn server_state(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<ServerState, StoreError>> + Send;

    /// Records the server identity the storage belongs to, replacing any earlier one.
    fn set_server_hostid(
        &self,
        instance: &InstanceId,
        hostid: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Binds the storage to these machines (host ids), replacing those bound before. A host id
    /// that is empty or holds a line break is [`StoreError::Unsupported`] (they are stored one a
    /// line).
    fn set_machine_ids(
        &self,
        instance: &InstanceId,
        ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Installs a license bundle and its server certificate together, in one statement: a reader
    /// sees both old or both new, never one of each.
    fn install_license(
        &self,
        instance: &InstanceId,
        license: &str,
        certificate: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records the back office the server was activated against.
    fn set_backoffice_url(
        &self,
        instance: &InstanceId,
        url: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Claims the scheduled sync at `at` unless it was already claimed at or after
    /// `unless_claimed_since`; says whether this call claimed it. Atomic: of callers racing with
    /// the same arguments (the members of a cluster over one PostgreSQL database), exactly one gets
    /// `true`.
    fn claim_scheduled_sync(
        &self,
        instance: &InstanceId,
        at: OffsetDateTime,
        unless_claimed_since: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the scheduled sync was done at `at`.
    fn note_scheduled_sync_done(
        &self,
        instance: &InstanceId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

type Row = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn from_row(r: Row) -> Result<ServerState, StoreError> {
    let (hostid, machine_ids, license, certificate, backoffice_url, claimed, done) = r;
    Ok(ServerState {
        hostid,
        machine_ids: machine_ids.map(|ids| ids.lines().map(str::to_string).collect()),
        license,
        certificate,
        backoffice_url,
        scheduled_sync_claimed_at: opt_time(claimed, "server_state.scheduled_sync_claimed_at")?,
        scheduled_sync_done_at: opt_time(done, "server_state.scheduled_sync_done_at")?,
    })
}

/// The machine ids as stored: one a line.
fn machine_lines(ids: &[String]) -> Result<String, StoreError> {
    if let Some(bad) = ids
        .iter()
        .find(|id| id.is_empty() || id.contains(['\n', '\r']))
    {
        return Err(StoreError::Unsupported {
            detail: format!("machine id {bad:?}: a host id is not empty and has no line break"),
        });
    }
    Ok(ids.join("\n"))
}

/// Sets the columns after `$2` of `instance`'s row ($1), creating the row if there is none.
fn upsert(columns: &[&str]) -> String {
    let values: Vec<String> = (0..columns.len()).map(|i| format!("${}", i + 2)).collect();
    let sets: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO server_state (instance, {}) VALUES ($1, {}) ON CONFLICT (instance) DO UPDATE SET {}",
        columns.join(", "),
        values.join(", "),
        sets.join(", ")
    )
}

macro_rules! impl_server_state_store {
    ($store:ty, $name:literal) => {
        impl ServerStateStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn server_state(&self, instance: &InstanceId) -> Result<ServerState, StoreError> {
                let row: Option<Row> = sqlx::query_as(
                    "SELECT hostid, machine_ids, license, certificate, backoffice_url, \
                     scheduled_sync_claimed_at, scheduled_sync_done_at FROM server_state WHERE instance = $1",
                )
                .bind(instance.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map_or_else(|| Ok(ServerState::default()), from_row)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_server_hostid(&self, instance: &InstanceId, hostid: &str) -> Result<(), StoreError> {
                sqlx::query(&upsert(&["hostid"]))
                    .bind(instance.as_str())
                    .bind(hostid)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_machine_ids(&self, instance: &InstanceId, ids: &[String]) -> Result<(), StoreError> {
                let lines = machine_lines(ids)?;
                sqlx::query(&upsert(&["machine_ids"]))
                    .bind(instance.as_str())
                    .bind(lines)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn install_license(
                &self,
                instance: &InstanceId,
                license: &str,
                certificate: &str,
            ) -> Result<(), StoreError> {
                // one statement is one transaction: both columns or neither
                sqlx::query(&upsert(&["license", "certificate"]))
                    .bind(instance.as_str())
                    .bind(license)
                    .bind(certificate)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_backoffice_url(&self, instance: &InstanceId, url: &str) -> Result<(), StoreError> {
                sqlx::query(&upsert(&["backoffice_url"]))
                    .bind(instance.as_str())
                    .bind(url)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn claim_scheduled_sync(
                &self,
                instance: &InstanceId,
                at: OffsetDateTime,
                unless_claimed_since: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                // an upsert whose update only happens while the claim stored is older: the
                // conflicting row is locked, so a racing caller sees the winner's claim
                let row: Option<(String,)> = sqlx::query_as(
                    "INSERT INTO server_state (instance, scheduled_sync_claimed_at) VALUES ($1, $2) \
                     ON CONFLICT (instance) DO UPDATE SET scheduled_sync_claimed_at = excluded.scheduled_sync_claimed_at \
                     WHERE server_state.scheduled_sync_claimed_at IS NULL \
                        OR server_state.scheduled_sync_claimed_at < $3 \
                     RETURNING instance",
                )
                .bind(instance.as_str())
                .bind(unix(at))
                .bind(unix(unless_claimed_since))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.is_some())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn note_scheduled_sync_done(&self, instance: &InstanceId, at: OffsetDateTime) -> Result<(), StoreError> {
                sqlx::query(&upsert(&["scheduled_sync_done_at"]))
                    .bind(instance.as_str())
                    .bind(unix(at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_server_state_store!(SqliteStore, "sqlite");
impl_server_state_store!(PgStore, "postgres");

impl ServerStateStore for AnyStore {
    async fn server_state(&self, instance: &InstanceId) -> Result<ServerState, StoreError> {
        dispatch!(self, s => s.server_state(instance).await)
    }

    async fn set_server_hostid(
        &self,
        instance: &InstanceId,
        hostid: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_server_hostid(instance, hostid).await)
    }

    async fn set_machine_ids(
        &self,
        instance: &InstanceId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_machine_ids(instance, ids).await)
    }

    async fn install_license(
        &self,
        instance: &InstanceId,
        license: &str,
        certificate: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.install_license(instance, license, certificate).await)
    }

    async fn set_backoffice_url(&self, instance: &InstanceId, url: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_backoffice_url(instance, url).await)
    }

    async fn claim_scheduled_sync(
        &self,
        instance: &InstanceId,
        at: OffsetDateTime,
        unless_claimed_since: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_scheduled_sync(instance, at, unless_claimed_since).await)
    }

    async fn note_scheduled_sync_done(
        &self,
        instance: &InstanceId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.note_scheduled_sync_done(instance, at).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_name_their_columns() {
        assert_eq!(
            upsert(&["license", "certificate"]),
            "INSERT INTO server_state (instance, license, certificate) VALUES ($1, $2, $3) \
             ON CONFLICT (instance) DO UPDATE SET license = excluded.license, certificate = excluded.certificate"
        );
    }

    #[test]
    fn machine_ids_are_one_a_line() {
        let ids = vec!["machine=a".to_string(), "mac=b".to_string()];
        assert_eq!(machine_lines(&ids).unwrap(), "machine=a\nmac=b");
        for bad in ["", "a\nb", "a\r"] {
            let err = machine_lines(&[bad.to_string()]).unwrap_err();
            assert!(matches!(err, StoreError::Unsupported { .. }), "{bad:?}");
        }
    }
}
