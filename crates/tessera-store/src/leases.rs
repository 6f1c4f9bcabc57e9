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
    /// The server's digest of the leases stored after this batch (setting
    /// [`LEASES_DIGEST_SETTING`]), written in the same transaction so it always matches them.
    Digest {
        /// The digest, as the server writes it.
        value: String,
    },
}

/// The setting that holds the license server's digest of its stored leases.
pub const LEASES_DIGEST_SETTING: &str = "server.leases_digest";

/// The license server's leases.
pub trait LeaseStore {
    /// Applies the changes in one transaction: all or none.
    fn apply_lease_changes(
        &self,
        changes: Vec<LeaseChange>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every lease stored.
    fn load_leases(&self) -> impl Future<Output = Result<Vec<LeaseRow>, StoreError>> + Send;
    /// Every lease stored, handed to `each` one by one as it is read (a million leases are never
    /// all in memory twice).
    fn scan_leases<F: FnMut(LeaseRow) + Send>(
        &self,
        each: F,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Metered units consumed, by record key.
    fn load_consumed(&self) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
}

/// What a cluster member applies to its seat book before it decides (see
/// [`AnyStore::cluster_commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// The changes other members committed since the member's last commit, in order.
    Changes(Vec<LeaseChange>),
    /// Everything: the member has no state yet, lost it after a failed commit, or fell behind the
    /// pruned part of the log.
    Full {
        /// Every lease stored.
        leases: Vec<LeaseRow>,
        /// Metered units by record key.
        consumed: Vec<(String, i64)>,
    },
}

type Row = (i64, String, String, String, i64, i64, i64, i64);
type LogRow = (String, i64, String, String, String, i64, i64, i64, i64, i64);

/// `$first, $first+1, …` (`n` of them).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A batch of changes folded to one final change per lease, with the same effect as applying
/// them in order: a later put replaces, a delete wins over what came before it, a new expiry
/// updates a put of the same batch.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Folded {
    pub(crate) deletes: Vec<i64>,
    pub(crate) puts: Vec<LeaseRow>,
    pub(crate) expiries: Vec<(i64, OffsetDateTime)>,
    pub(crate) consumed: Vec<(String, i64)>,
    pub(crate) digest: Option<String>,
}

pub(crate) fn fold(changes: &[LeaseChange]) -> Folded {
    enum Last {
        Put(LeaseRow),
        Expiry(OffsetDateTime),
        Delete,
    }
    let mut last: std::collections::BTreeMap<i64, Last> = std::collections::BTreeMap::new();
    let mut consumed: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut digest = None;
    for c in changes {
        match c {
            LeaseChange::Put(r) => {
                last.insert(r.id, Last::Put(r.clone()));
            }
            LeaseChange::Expiry { id, expires_at } => match last.get_mut(id) {
                Some(Last::Put(r)) => r.expires_at = *expires_at,
                Some(Last::Delete) => {}
                Some(Last::Expiry(t)) => *t = *expires_at,
                None => {
                    last.insert(*id, Last::Expiry(*expires_at));
                }
            },
            LeaseChange::Delete { id } => {
                last.insert(*id, Last::Delete);
            }
            LeaseChange::Consumed { record_key, units } => {
                consumed.insert(record_key.as_str(), *units);
            }
            LeaseChange::Digest { value } => digest = Some(value.clone()),
        }
    }
    let mut f = Folded {
        digest,
        ..Folded::default()
    };
    for (id, l) in last {
        match l {
            Last::Put(r) => f.puts.push(r),
            Last::Expiry(t) => f.expiries.push((id, t)),
            Last::Delete => f.deletes.push(id),
        }
    }
    f.consumed = consumed
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    f
}

/// The advisory lock key all members of a cluster decide under.
const CLUSTER_LOCK: i64 = 0x7e55_e7a0_1ea5_e001;

fn from_log(r: LogRow) -> Result<Option<LeaseChange>, StoreError> {
    let (
        kind,
        lease_id,
        device,
        request_id,
        record_key,
        count,
        overdraft,
        expires_at,
        borrowed,
        units,
    ) = r;
    Ok(Some(match kind.as_str() {
        "put" => LeaseChange::Put(LeaseRow {
            id: lease_id,
            device,
            request_id,
            record_key,
            count,
            overdraft,
            expires_at: time(expires_at, "lease_log.expires_at")?,
            borrowed: borrowed != 0,
        }),
        "expiry" => LeaseChange::Expiry {
            id: lease_id,
            expires_at: time(expires_at, "lease_log.expires_at")?,
        },
        "delete" => LeaseChange::Delete { id: lease_id },
        "consumed" => LeaseChange::Consumed { record_key, units },
        _ => return Ok(None),
    }))
}

macro_rules! impl_lease_store {
    ($store:ty, $conn:ty, $name:literal, $apply:ident) => {
        impl $store {
            async fn read_leases(conn: &mut $conn) -> Result<Vec<LeaseRow>, StoreError> {
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, device, request_id, record_key, count, overdraft, expires_at, borrowed FROM leases ORDER BY id",
                )
                .fetch_all(&mut *conn)
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

            async fn read_consumed(conn: &mut $conn) -> Result<Vec<(String, i64)>, StoreError> {
                Ok(sqlx::query_as("SELECT record_key, units FROM metered_use ORDER BY record_key")
                    .fetch_all(&mut *conn)
                    .await?)
            }
        }

        impl LeaseStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name, n = changes.len()))]
            async fn apply_lease_changes(&self, changes: Vec<LeaseChange>) -> Result<(), StoreError> {
                if changes.is_empty() {
                    return Ok(());
                }
                self.$apply(&changes).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::read_leases(&mut conn).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn scan_leases<F: FnMut(LeaseRow) + Send>(&self, mut each: F) -> Result<(), StoreError> {
                // pages in key order: one call per page, and never more than a page in memory
                let mut after = i64::MIN;
                loop {
                    let rows: Vec<Row> = sqlx::query_as(
                        "SELECT id, device, request_id, record_key, count, overdraft, expires_at, borrowed FROM leases \
                         WHERE id > $1 ORDER BY id LIMIT 20000",
                    )
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                    let Some(last) = rows.last().map(|r| r.0) else {
                        return Ok(());
                    };
                    after = last;
                    for r in rows {
                        each(LeaseRow {
                            id: r.0,
                            device: r.1,
                            request_id: r.2,
                            record_key: r.3,
                            count: r.4,
                            overdraft: r.5,
                            expires_at: time(r.6, "leases.expires_at")?,
                            borrowed: r.7 != 0,
                        });
                    }
                }
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_consumed(&self) -> Result<Vec<(String, i64)>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::read_consumed(&mut conn).await
            }
        }
    };
}

impl_lease_store!(
    SqliteStore,
    sqlx::SqliteConnection,
    "sqlite",
    apply_as_one_script
);
impl_lease_store!(
    PgStore,
    sqlx::PgConnection,
    "postgres",
    apply_in_transaction
);

impl PgStore {
    /// Writes the changes on `conn` (inside the caller's transaction): first folded to one
    /// final change per lease (see [`fold`]), then a few multi-row statements, so a commit
    /// of many decisions costs a handful of statements, not one per decision.
    async fn write_lease_changes(
        conn: &mut sqlx::PgConnection,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        let f = fold(changes);
        for ids in f.deletes.chunks(500) {
            let sql = format!(
                "DELETE FROM leases WHERE id IN ({})",
                placeholders(1, ids.len())
            );
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
        for rows in f.puts.chunks(100) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| format!("({})", placeholders(i * 8 + 1, 8)))
                .collect();
            let sql = format!(
                "INSERT INTO leases (id, device, request_id, record_key, count, overdraft, expires_at, borrowed) \
                 VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                 record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                 expires_at = excluded.expires_at, borrowed = excluded.borrowed",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for l in rows {
                q = q
                    .bind(l.id)
                    .bind(&l.device)
                    .bind(&l.request_id)
                    .bind(&l.record_key)
                    .bind(l.count)
                    .bind(l.overdraft)
                    .bind(unix(l.expires_at))
                    .bind(i64::from(l.borrowed));
            }
            q.execute(&mut *conn).await?;
        }
        for rows in f.expiries.chunks(200) {
            let cases: Vec<String> = (0..rows.len())
                .map(|i| format!("WHEN ${} THEN ${}", i * 2 + 1, i * 2 + 2))
                .collect();
            let sql = format!(
                "UPDATE leases SET expires_at = CASE id {} ELSE expires_at END WHERE id IN ({})",
                cases.join(" "),
                placeholders(rows.len() * 2 + 1, rows.len())
            );
            let mut q = sqlx::query(&sql);
            for (id, t) in rows {
                q = q.bind(*id).bind(unix(*t));
            }
            for (id, _) in rows {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
        for (record_key, units) in &f.consumed {
            sqlx::query(
                "INSERT INTO metered_use (record_key, units) VALUES ($1, $2) \
                 ON CONFLICT (record_key) DO UPDATE SET units = excluded.units",
            )
            .bind(record_key)
            .bind(units)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(d) = &f.digest {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(LEASES_DIGEST_SETTING)
            .bind(d)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn apply_in_transaction(&self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_claim(&mut tx).await?;
        Self::write_lease_changes(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A text as an SQLite expression that cannot be anything but that text, whatever it holds.
fn sqlite_text(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(s.len() * 2 + 20);
    out.push_str("CAST(X'");
    for b in s.bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out.push_str("' AS TEXT)");
    out
}

impl SqliteStore {
    /// The whole transaction as one script, run in one call to SQLite's worker thread: a commit of
    /// many decisions costs one hand-off, not one per statement. Values are inlined as integers
    /// and hex literals (never as quoted text), so nothing in them can change the statements.
    async fn apply_as_one_script(&self, changes: &[LeaseChange]) -> Result<(), StoreError> {
        use std::fmt::Write as _;
        let f = fold(changes);
        let mut sql = String::from("BEGIN IMMEDIATE;\n");
        for ids in f.deletes.chunks(500) {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let _ = writeln!(sql, "DELETE FROM leases WHERE id IN ({});", list.join(","));
        }
        for rows in f.puts.chunks(500) {
            let values: Vec<String> = rows
                .iter()
                .map(|l| {
                    format!(
                        "({}, {}, {}, {}, {}, {}, {}, {})",
                        l.id,
                        sqlite_text(&l.device),
                        sqlite_text(&l.request_id),
                        sqlite_text(&l.record_key),
                        l.count,
                        l.overdraft,
                        unix(l.expires_at),
                        i64::from(l.borrowed)
                    )
                })
                .collect();
            let _ = writeln!(
                sql,
                "INSERT INTO leases (id, device, request_id, record_key, count, overdraft, expires_at, borrowed) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                 record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                 expires_at = excluded.expires_at, borrowed = excluded.borrowed;",
                values.join(", ")
            );
        }
        for rows in f.expiries.chunks(500) {
            let cases: Vec<String> = rows
                .iter()
                .map(|(id, t)| format!("WHEN {id} THEN {}", unix(*t)))
                .collect();
            let ids: Vec<String> = rows.iter().map(|(id, _)| id.to_string()).collect();
            let _ = writeln!(
                sql,
                "UPDATE leases SET expires_at = CASE id {} ELSE expires_at END WHERE id IN ({});",
                cases.join(" "),
                ids.join(",")
            );
        }
        for (record_key, units) in &f.consumed {
            let _ = writeln!(
                sql,
                "INSERT INTO metered_use (record_key, units) VALUES ({}, {units}) \
                 ON CONFLICT (record_key) DO UPDATE SET units = excluded.units;",
                sqlite_text(record_key)
            );
        }
        if let Some(d) = &f.digest {
            let _ = writeln!(
                sql,
                "INSERT INTO settings (key, value) VALUES ({}, {}) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
                sqlite_text(LEASES_DIGEST_SETTING),
                sqlite_text(d)
            );
        }
        sql.push_str("COMMIT;");
        let mut conn = self.pool.acquire().await?;
        // each script is different: not worth a place in the prepared-statement cache
        match sqlx::query(&sql)
            .persistent(false)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // whatever ran of it is undone: all or nothing
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e.into())
            }
        }
    }
}

impl PgStore {
    /// Appends the changes to the lease log on `conn`, in order.
    async fn log_lease_changes(
        conn: &mut sqlx::PgConnection,
        node: &str,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        // the digest is each member's own business: not logged
        let logged: Vec<&LeaseChange> = changes
            .iter()
            .filter(|c| !matches!(c, LeaseChange::Digest { .. }))
            .collect();
        for chunk in logged.chunks(500) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, {})", placeholders(i * 10 + 2, 10)))
                .collect();
            let sql = format!(
                "INSERT INTO lease_log (node, kind, lease_id, device, request_id, record_key, count, overdraft, expires_at, borrowed, units) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(node);
            for c in chunk {
                let (
                    kind,
                    id,
                    device,
                    request_id,
                    record_key,
                    count,
                    overdraft,
                    expires,
                    borrowed,
                    units,
                ) = match c {
                    LeaseChange::Put(l) => (
                        "put",
                        l.id,
                        l.device.as_str(),
                        l.request_id.as_str(),
                        l.record_key.as_str(),
                        l.count,
                        l.overdraft,
                        unix(l.expires_at),
                        i64::from(l.borrowed),
                        0,
                    ),
                    LeaseChange::Expiry { id, expires_at } => {
                        ("expiry", *id, "", "", "", 0, 0, unix(*expires_at), 0, 0)
                    }
                    LeaseChange::Delete { id } => ("delete", *id, "", "", "", 0, 0, 0, 0, 0),
                    LeaseChange::Digest { .. } => continue,
                    LeaseChange::Consumed { record_key, units } => (
                        "consumed",
                        0,
                        "",
                        "",
                        record_key.as_str(),
                        0,
                        0,
                        0,
                        0,
                        *units,
                    ),
                };
                q = q
                    .bind(kind)
                    .bind(id)
                    .bind(device)
                    .bind(request_id)
                    .bind(record_key)
                    .bind(count)
                    .bind(overdraft)
                    .bind(expires)
                    .bind(borrowed)
                    .bind(units);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// One decision round of a cluster member, in one transaction under the cluster's advisory
    /// lock: reads what other members committed since `since` (or everything, when `since` is
    /// `None` or the log was pruned past it), lets `work` apply that and decide, writes the changes
    /// it returns to the leases and the log, and commits. Returns the log position to pass next
    /// time with what `work` returned. Nothing is written when it fails.
    #[tracing::instrument(level = "debug", skip_all, fields(backend = "postgres"))]
    pub async fn cluster_commit<R, F>(
        &self,
        node: &str,
        since: Option<i64>,
        work: F,
    ) -> Result<(i64, R), StoreError>
    where
        F: FnOnce(CatchUp) -> (Vec<LeaseChange>, R) + Send,
        R: Send,
    {
        let mut tx = self.pool.begin().await?;
        self.check_claim(&mut tx).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLUSTER_LOCK)
            .execute(&mut *tx)
            .await?;
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM lease_log")
                .fetch_one(&mut *tx)
                .await?;
        let catch_up = match since {
            Some(s) if first.is_none_or(|f| s >= f - 1) => {
                let rows: Vec<LogRow> = sqlx::query_as(
                    "SELECT kind, lease_id, device, request_id, record_key, count, overdraft, expires_at, borrowed, units \
                     FROM lease_log WHERE seq > $1 ORDER BY seq",
                )
                .bind(s)
                .fetch_all(&mut *tx)
                .await?;
                let mut changes = Vec::with_capacity(rows.len());
                for r in rows {
                    if let Some(c) = from_log(r)? {
                        changes.push(c);
                    }
                }
                CatchUp::Changes(changes)
            }
            _ => CatchUp::Full {
                leases: Self::read_leases(&mut tx).await?,
                consumed: Self::read_consumed(&mut tx).await?,
            },
        };
        let (changes, out) = work(catch_up);
        Self::write_lease_changes(&mut tx, &changes).await?;
        Self::log_lease_changes(&mut tx, node, &changes).await?;
        let (now_last,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM lease_log")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((now_last.or(last).unwrap_or(0), out))
    }

    /// Drops log entries older than the newest `keep`; members behind them reload whole.
    pub async fn prune_lease_log(&self, keep: i64) -> Result<u64, StoreError> {
        // under the cluster's lock: a member's catch-up never sees the log shrink mid-read
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLUSTER_LOCK)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "DELETE FROM lease_log WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM lease_log) - $1",
        )
        .bind(keep.max(1))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}

impl AnyStore {
    /// See [`PgStore::cluster_commit`]; an SQLite store cannot be shared by several servers.
    pub async fn cluster_commit<R, F>(
        &self,
        node: &str,
        since: Option<i64>,
        work: F,
    ) -> Result<(i64, R), StoreError>
    where
        F: FnOnce(CatchUp) -> (Vec<LeaseChange>, R) + Send,
        R: Send,
    {
        match self {
            AnyStore::Postgres(s) => s.cluster_commit(node, since, work).await,
            AnyStore::Sqlite(_) => Err(cluster_needs_postgres()),
        }
    }

    /// See [`PgStore::prune_lease_log`]; nothing to do on SQLite.
    pub async fn prune_lease_log(&self, keep: i64) -> Result<u64, StoreError> {
        match self {
            AnyStore::Postgres(s) => s.prune_lease_log(keep).await,
            AnyStore::Sqlite(_) => Ok(0),
        }
    }
}

fn cluster_needs_postgres() -> StoreError {
    StoreError::Unsupported {
        detail: "several license server processes over one database need PostgreSQL (`database = \"postgres://…\"` in server.toml); an SQLite store serves one process".into(),
    }
}

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
    async fn scan_leases<F: FnMut(LeaseRow) + Send>(&self, each: F) -> Result<(), StoreError> {
        dispatch!(self, s => s.scan_leases(each).await)
    }
}
