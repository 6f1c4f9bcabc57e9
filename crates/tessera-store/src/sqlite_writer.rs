//! [`SqliteLeaseWriter`]: the license server's lease writes on a connection of their own, called
//! synchronously from the writer's thread.
//!
//! The pooled SQLite store runs every statement on a worker thread and hands the result back: two
//! thread switches a statement, which on a busy machine cost more than the statement. The license
//! server's writer commits a batch of decisions at a time from one thread that does nothing else,
//! so it owns a plain connection to the same file (WAL, `synchronous = FULL`, the same durability)
//! and writes with cached prepared statements: one fsync and no hand-off per commit.

use std::path::Path;

use crate::codec::unix;
use crate::leases::{fold, PUT_STATE_SQL};
use crate::usage_events::INSERT_EVENT_SQL;
use crate::{InstanceId, LeaseChange, SqliteStore, StoreError};

/// A connection that writes one instance's lease changes, one transaction per call.
#[derive(Debug)]
pub struct SqliteLeaseWriter {
    conn: rusqlite::Connection,
    instance: InstanceId,
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Write {
        detail: e.to_string(),
    }
}

impl SqliteStore {
    /// A writer connection to this store's file for `instance`'s leases (not for in-memory
    /// stores).
    pub fn lease_writer(&self, instance: &InstanceId) -> Result<SqliteLeaseWriter, StoreError> {
        let path = self.pool.connect_options().get_filename().to_path_buf();
        SqliteLeaseWriter::open(&path, instance.clone())
    }
}

impl SqliteLeaseWriter {
    fn open(path: &Path, instance: InstanceId) -> Result<SqliteLeaseWriter, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        Ok(SqliteLeaseWriter { conn, instance })
    }

    /// Applies the changes in one transaction: all or none (folded first, as the pooled store
    /// does, so the effect is that of applying them in order).
    pub fn apply(&mut self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let f = fold(changes);
        let instance = self.instance.as_str();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM leases WHERE instance = ?1 AND id = ?2")
                .map_err(err)?;
            for id in &f.deletes {
                delete
                    .execute(rusqlite::params![instance, id])
                    .map_err(err)?;
            }
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO leases (instance, id, device, request_id, record_key, count, overdraft, expires_at, borrowed, alias, device_type) \
                     VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?11) \
                     ON CONFLICT (instance, id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                     record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                     expires_at = excluded.expires_at, borrowed = excluded.borrowed, alias = excluded.alias, \
                     device_type = excluded.device_type",
                )
                .map_err(err)?;
            for l in &f.puts {
                put.execute(rusqlite::params![
                    l.id,
                    l.device,
                    l.request_id,
                    l.record_key,
                    l.count,
                    l.overdraft,
                    unix(l.expires_at),
                    i64::from(l.borrowed),
                    instance,
                    l.alias,
                    l.device_type.as_str()
                ])
                .map_err(err)?;
            }
            let mut expiry = tx
                .prepare_cached("UPDATE leases SET expires_at = ?2 WHERE instance = ?3 AND id = ?1")
                .map_err(err)?;
            for (id, t) in &f.expiries {
                expiry
                    .execute(rusqlite::params![id, unix(*t), instance])
                    .map_err(err)?;
            }
            let mut consumed = tx
                .prepare_cached(
                    "INSERT INTO metered_use (instance, record_key, units) VALUES (?3, ?1, ?2) \
                     ON CONFLICT (instance, record_key) DO UPDATE SET units = excluded.units",
                )
                .map_err(err)?;
            for (k, units) in &f.consumed {
                consumed
                    .execute(rusqlite::params![k, units, instance])
                    .map_err(err)?;
            }
            if let Some(st) = &f.state {
                tx.prepare_cached(PUT_STATE_SQL)
                    .map_err(err)?
                    .execute(rusqlite::params![
                        instance,
                        st.lease_digest,
                        i64::try_from(st.commit_seq).unwrap_or(i64::MAX),
                        i64::try_from(st.next_lease).unwrap_or(i64::MAX)
                    ])
                    .map_err(err)?;
            }
            if !f.events.is_empty() {
                let mut event = tx.prepare_cached(INSERT_EVENT_SQL).map_err(err)?;
                for e in &f.events {
                    event
                        .execute(rusqlite::params![
                            instance,
                            e.kind.as_str(),
                            unix(e.at),
                            e.device,
                            e.device_type,
                            e.user,
                            e.alias,
                            e.feature,
                            e.version,
                            e.count,
                            e.code,
                            e.message
                        ])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }
}
