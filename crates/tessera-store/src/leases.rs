//! [`LeaseStore`]: the seat engines' leases and metered units, written in batches.
//!
//! A seat engine decides in memory (the seat book) and writes every decision here before it
//! answers. [`LeaseStore::apply_lease_changes`] takes any number of changes and commits them in one
//! transaction, so a writer can group the changes of many concurrent requests into one commit.
//!
//! Every row belongs to an [`InstanceId`]: one store holds the seats of several engines (the back
//! office hosts license servers as instances) and keeps them apart. The on-site license server is
//! [`InstanceId::on_site`].

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::usage_events::EVENT_COLUMNS;
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// Which seat engine rows belong to: leases, the lease log, metered use and [`EngineState`] are
/// kept per instance. 1 to 64 characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// The name of the on-site license server's instance (rows stored before instances existed
    /// belong to it).
    pub const ON_SITE: &'static str = "on-site";

    /// The on-site license server's instance.
    pub fn on_site() -> InstanceId {
        InstanceId(Self::ON_SITE.to_string())
    }

    /// An instance by name.
    pub fn new(name: &str) -> Result<InstanceId, StoreError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(StoreError::Unsupported {
                detail: format!("instance id {name:?}: 1 to 64 characters, no control characters"),
            });
        }
        Ok(InstanceId(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The advisory lock the members of a cluster serving this instance decide under.
    fn cluster_lock(&self) -> i64 {
        if self.0 == Self::ON_SITE {
            CLUSTER_LOCK
        } else {
            CLUSTER_LOCK ^ crate::claim::advisory_key(&format!("tessera-instance|{}", self.0))
        }
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A seat engine's own state, written with every commit so that it always matches the leases
/// stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineState {
    /// The digest of the leases stored (hex; empty: not checked at the next start).
    pub lease_digest: String,
    /// The sequence number of the commit that wrote it (the restore detector compares it).
    pub commit_seq: u64,
    /// The count the next lease id is made from (0: unknown).
    pub next_lease: u64,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The key the seat engine keeps the lease under: the count its (scattered) id was made
    /// from, so that new rows append (`tessera_core::seats::LeaseIds::stored_key`; a lease stored
    /// before schema 13 is kept under `-1 - id`). The store treats it as an opaque key.
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
    /// The holder device's alias, as the client said when it took the lease (shown to
    /// administrators; not part of the lease digest).
    pub alias: Option<String>,
    /// The holder device's type, as the client said (shown to administrators; not part of the
    /// lease digest).
    pub device_type: tessera_core::DeviceType,
    /// The named pool the lease draws on, by name (`None`: the default pool, or no named pools):
    /// kept so that a restart or another cluster member counts it where it was granted, whatever
    /// rule of access (alias, attribute) sent its holder there.
    pub pool: Option<String>,
}

/// A stored device type (`physical`, `virtual`, `container`; anything else is unknown).
pub(crate) fn device_type(text: &str) -> tessera_core::DeviceType {
    use tessera_core::DeviceType;
    match text {
        "physical" => DeviceType::Physical,
        "virtual" => DeviceType::Virtual,
        "container" => DeviceType::Container,
        _ => DeviceType::Unknown,
    }
}

/// One change to the leases.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseChange {
    /// A new lease (or one replaced whole).
    Put(LeaseRow),
    /// A lease renewed.
    Expiry {
        /// The key it is stored under ([`LeaseRow::id`]).
        id: i64,
        /// New expiry.
        expires_at: OffsetDateTime,
    },
    /// A lease returned or expired.
    Delete {
        /// The key it is stored under ([`LeaseRow::id`]).
        id: i64,
    },
    /// Metered units consumed so far on a record.
    Consumed {
        /// Record key.
        record_key: String,
        /// Units consumed in all.
        units: i64,
    },
    /// The engine's state after this batch, written in the same transaction so it always
    /// matches the leases.
    State(EngineState),
    /// A usage event (a denial, or a grant beyond the count) recorded with the decision that made
    /// it, in the same transaction. Not a change to the seats: a cluster's lease log does not
    /// carry it, and other members do not apply it.
    Event(Box<crate::UsageEvent>),
}

/// The seat engines' leases, each engine's apart (by [`InstanceId`]).
pub trait LeaseStore {
    /// Applies the changes to `instance`'s rows in one transaction: all or none.
    fn apply_lease_changes(
        &self,
        instance: &InstanceId,
        changes: Vec<LeaseChange>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every lease of `instance`.
    fn load_leases(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Vec<LeaseRow>, StoreError>> + Send;
    /// Every lease of `instance`, handed to `each` one by one as it is read (a million leases are
    /// never all in memory twice).
    fn scan_leases<F: FnMut(LeaseRow) + Send>(
        &self,
        instance: &InstanceId,
        each: F,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Metered units `instance` consumed, by record key.
    fn load_consumed(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
    /// `instance`'s engine state, if it ever committed.
    fn engine_state(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Option<EngineState>, StoreError>> + Send;
    /// Replaces `instance`'s engine state (outside a commit: when an administrator accepts the
    /// leases as they are).
    fn put_engine_state(
        &self,
        instance: &InstanceId,
        state: &EngineState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn loaded(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
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

type Row = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    String,
    Option<String>,
);
/// Every lease of one instance ($1), in key order, as [`Row`] reads it (through the pool and
/// through a plain connection alike).
const ALL_LEASES_SQL: &str = "SELECT id, device, request_id, record_key, count, overdraft, expires_at, borrowed, alias, device_type, pool FROM leases \
     WHERE instance = $1 ORDER BY id";

/// A `leases` row as read through the pool.
fn lease_row(r: Row) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        id: r.0,
        device: r.1,
        request_id: r.2,
        record_key: r.3,
        count: r.4,
        overdraft: r.5,
        expires_at: time(r.6, "leases.expires_at")?,
        borrowed: r.7 != 0,
        alias: r.8,
        device_type: device_type(&r.9),
        pool: r.10,
    })
}

type LogRow = (
    String,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

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
/// Usage events are not folded: each is stored, in order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Folded<'a> {
    pub(crate) deletes: Vec<i64>,
    pub(crate) puts: Vec<LeaseRow>,
    pub(crate) expiries: Vec<(i64, OffsetDateTime)>,
    pub(crate) consumed: Vec<(String, i64)>,
    pub(crate) state: Option<EngineState>,
    pub(crate) events: Vec<&'a crate::UsageEvent>,
}

pub(crate) fn fold(changes: &[LeaseChange]) -> Folded<'_> {
    enum Last {
        Put(LeaseRow),
        Expiry(OffsetDateTime),
        Delete,
    }
    let mut last: std::collections::BTreeMap<i64, Last> = std::collections::BTreeMap::new();
    let mut consumed: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut state = None;
    let mut events = Vec::new();
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
            LeaseChange::State(s) => state = Some(s.clone()),
            LeaseChange::Event(e) => events.push(&**e),
        }
    }
    let mut f = Folded {
        state,
        events,
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
        pool,
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
            // the log carries seats (and their pool), not what the client said about the device
            alias: None,
            device_type: tessera_core::DeviceType::Unknown,
            pool,
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
    ($store:ty, $conn:ty, $name:literal, $apply:ident, $scan:ident) => {
        impl $store {
            /// Every lease of `instance` in key order, a page of rows at a time through the pool: one
            /// call per page, and never more than a page in memory.
            async fn scan_leases_paged<F: FnMut(LeaseRow) + Send>(&self, instance: &InstanceId, mut each: F) -> Result<(), StoreError> {
                // pages in key order: one call per page, and never more than a page in memory
                let mut after = i64::MIN;
                loop {
                    let rows: Vec<Row> = sqlx::query_as(
                        "SELECT id, device, request_id, record_key, count, overdraft, expires_at, borrowed, alias, device_type, pool FROM leases \
                         WHERE instance = $1 AND id > $2 ORDER BY id LIMIT 20000",
                    )
                    .bind(instance.as_str())
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                    let Some(last) = rows.last().map(|r| r.0) else {
                        return Ok(());
                    };
                    after = last;
                    for r in rows {
                        each(lease_row(r)?);
                    }
                }
            }

            async fn read_leases(conn: &mut $conn, instance: &InstanceId) -> Result<Vec<LeaseRow>, StoreError> {
                let rows: Vec<Row> = sqlx::query_as(ALL_LEASES_SQL)
                .bind(instance.as_str())
                .fetch_all(&mut *conn)
                .await?;
                rows.into_iter().map(lease_row).collect()
            }

            async fn read_consumed(conn: &mut $conn, instance: &InstanceId) -> Result<Vec<(String, i64)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT record_key, units FROM metered_use WHERE instance = $1 ORDER BY record_key",
                )
                .bind(instance.as_str())
                .fetch_all(&mut *conn)
                .await?)
            }
        }

        impl LeaseStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name, n = changes.len()))]
            async fn apply_lease_changes(&self, instance: &InstanceId, changes: Vec<LeaseChange>) -> Result<(), StoreError> {
                if changes.is_empty() {
                    return Ok(());
                }
                self.$apply(instance, &changes).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_leases(&self, instance: &InstanceId) -> Result<Vec<LeaseRow>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::read_leases(&mut conn, instance).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn scan_leases<F: FnMut(LeaseRow) + Send>(&self, instance: &InstanceId, each: F) -> Result<(), StoreError> {
                self.$scan(instance, each).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn load_consumed(&self, instance: &InstanceId) -> Result<Vec<(String, i64)>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::read_consumed(&mut conn, instance).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn engine_state(&self, instance: &InstanceId) -> Result<Option<EngineState>, StoreError> {
                let row: Option<(String, i64, i64)> = sqlx::query_as(
                    "SELECT lease_digest, commit_seq, next_lease FROM engine_state WHERE instance = $1",
                )
                .bind(instance.as_str())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(lease_digest, seq, next)| EngineState {
                    lease_digest,
                    commit_seq: loaded(seq),
                    next_lease: loaded(next),
                }))
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn put_engine_state(&self, instance: &InstanceId, state: &EngineState) -> Result<(), StoreError> {
                sqlx::query(PUT_STATE_SQL)
                    .bind(instance.as_str())
                    .bind(&state.lease_digest)
                    .bind(stored(state.commit_seq))
                    .bind(stored(state.next_lease))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

/// Writes an instance's [`EngineState`] ($1 instance, $2 digest, $3 sequence, $4 lease counter).
pub(crate) const PUT_STATE_SQL: &str =
    "INSERT INTO engine_state (instance, lease_digest, commit_seq, next_lease) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (instance) DO UPDATE SET lease_digest = excluded.lease_digest, \
     commit_seq = excluded.commit_seq, next_lease = excluded.next_lease";

impl_lease_store!(
    SqliteStore,
    sqlx::SqliteConnection,
    "sqlite",
    apply_as_one_script,
    scan_leases_read
);
impl_lease_store!(
    PgStore,
    sqlx::PgConnection,
    "postgres",
    apply_in_transaction,
    scan_leases_paged
);

/// Rows handed from the reading thread to the caller at a time (see
/// [`SqliteStore::scan_leases_read`]).
const SCAN_BATCH: usize = 4096;

impl SqliteStore {
    /// Every lease of `instance` in key order. A database in a file is read on a thread of its
    /// own through a plain connection, in one read transaction (one snapshot), and handed over in
    /// batches while the caller works on the previous ones: a million leases are read while the
    /// seat book is built from them, rather than page after page through the pool's worker thread
    /// (docs/performance.md, "reload"). An in-memory database is read through the pool.
    async fn scan_leases_read<F: FnMut(LeaseRow) + Send>(
        &self,
        instance: &InstanceId,
        mut each: F,
    ) -> Result<(), StoreError> {
        if self.in_memory {
            return self.scan_leases_paged(instance, each).await;
        }
        let path = self.pool.connect_options().get_filename().to_path_buf();
        let instance = instance.clone();
        // a few batches ahead at most: memory stays bounded whatever the table holds
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<LeaseRow>, StoreError>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            if let Err(e) = read_lease_rows(&path, &instance, &tx) {
                // the caller may have stopped listening; then nobody needs the error
                let _ = tx.blocking_send(Err(e));
            }
        });
        while let Some(batch) = rx.recv().await {
            for row in batch? {
                each(row);
            }
        }
        reader.await.map_err(|e| StoreError::Read {
            detail: format!("the thread reading the leases stopped: {e}"),
        })
    }
}

/// Reads `instance`'s leases from the database file at `path` and sends them in batches of
/// [`SCAN_BATCH`]; stops early when the receiver is gone.
fn read_lease_rows(
    path: &std::path::Path,
    instance: &InstanceId,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<LeaseRow>, StoreError>>,
) -> Result<(), StoreError> {
    // a value of the wrong type is a corrupt row; anything else is the file or its lock
    let failed = |e: rusqlite::Error| match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt {
            detail: format!("a lease row does not read: {e}"),
        },
        e => StoreError::Read {
            detail: format!("cannot read the leases: {e}"),
        },
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Connect {
        backend: crate::Backend::Sqlite,
        detail: format!("cannot open {} to read the leases: {e}", path.display()),
    })?;
    conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT)
        .map_err(failed)?;
    let mut stmt = conn.prepare(ALL_LEASES_SQL).map_err(failed)?;
    let mut rows = stmt.query([instance.as_str()]).map_err(failed)?;
    let mut batch = Vec::with_capacity(SCAN_BATCH);
    while let Some(r) = rows.next().map_err(failed)? {
        let kind = device_type(r.get_ref(9).map_err(failed)?.as_str().map_err(|e| {
            StoreError::Corrupt {
                detail: format!("leases.device_type does not read: {e}"),
            }
        })?);
        batch.push(LeaseRow {
            id: r.get(0).map_err(failed)?,
            device: r.get(1).map_err(failed)?,
            request_id: r.get(2).map_err(failed)?,
            record_key: r.get(3).map_err(failed)?,
            count: r.get(4).map_err(failed)?,
            overdraft: r.get(5).map_err(failed)?,
            expires_at: time(r.get(6).map_err(failed)?, "leases.expires_at")?,
            borrowed: r.get::<_, i64>(7).map_err(failed)? != 0,
            alias: r.get(8).map_err(failed)?,
            device_type: kind,
            pool: r.get(10).map_err(failed)?,
        });
        if batch.len() == SCAN_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(SCAN_BATCH));
            if tx.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

impl PgStore {
    /// Writes the changes on `conn` (inside the caller's transaction): first folded to one
    /// final change per lease (see [`fold`]), then a few multi-row statements, so a commit
    /// of many decisions costs a handful of statements, not one per decision.
    async fn write_lease_changes(
        conn: &mut sqlx::PgConnection,
        instance: &InstanceId,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        let f = fold(changes);
        for ids in f.deletes.chunks(500) {
            let sql = format!(
                "DELETE FROM leases WHERE instance = $1 AND id IN ({})",
                placeholders(2, ids.len())
            );
            let mut q = sqlx::query(&sql).bind(instance.as_str());
            for id in ids {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
        for rows in f.puts.chunks(100) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| format!("($1, {})", placeholders(i * 11 + 2, 11)))
                .collect();
            let sql = format!(
                "INSERT INTO leases (instance, id, device, request_id, record_key, count, overdraft, expires_at, borrowed, alias, device_type, pool) \
                 VALUES {} \
                 ON CONFLICT (instance, id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                 record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                 expires_at = excluded.expires_at, borrowed = excluded.borrowed, alias = excluded.alias, \
                 device_type = excluded.device_type, pool = excluded.pool",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(instance.as_str());
            for l in rows {
                q = q
                    .bind(l.id)
                    .bind(&l.device)
                    .bind(&l.request_id)
                    .bind(&l.record_key)
                    .bind(l.count)
                    .bind(l.overdraft)
                    .bind(unix(l.expires_at))
                    .bind(i64::from(l.borrowed))
                    .bind(&l.alias)
                    .bind(l.device_type.as_str())
                    .bind(&l.pool);
            }
            q.execute(&mut *conn).await?;
        }
        for rows in f.expiries.chunks(200) {
            let cases: Vec<String> = (0..rows.len())
                .map(|i| format!("WHEN ${} THEN ${}", i * 2 + 2, i * 2 + 3))
                .collect();
            let sql = format!(
                "UPDATE leases SET expires_at = CASE id {} ELSE expires_at END WHERE instance = $1 AND id IN ({})",
                cases.join(" "),
                placeholders(rows.len() * 2 + 2, rows.len())
            );
            let mut q = sqlx::query(&sql).bind(instance.as_str());
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
                "INSERT INTO metered_use (instance, record_key, units) VALUES ($1, $2, $3) \
                 ON CONFLICT (instance, record_key) DO UPDATE SET units = excluded.units",
            )
            .bind(instance.as_str())
            .bind(record_key)
            .bind(units)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(st) = &f.state {
            sqlx::query(PUT_STATE_SQL)
                .bind(instance.as_str())
                .bind(&st.lease_digest)
                .bind(stored(st.commit_seq))
                .bind(stored(st.next_lease))
                .execute(&mut *conn)
                .await?;
        }
        for rows in f.events.chunks(100) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| format!("($1, {})", placeholders(i * 11 + 2, 11)))
                .collect();
            let sql = format!(
                "INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(instance.as_str());
            for e in rows {
                q = q
                    .bind(e.kind.as_str())
                    .bind(unix(e.at))
                    .bind(&e.device)
                    .bind(&e.device_type)
                    .bind(&e.user)
                    .bind(&e.alias)
                    .bind(&e.feature)
                    .bind(&e.version)
                    .bind(e.count)
                    .bind(&e.code)
                    .bind(&e.message);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn apply_in_transaction(
        &self,
        instance: &InstanceId,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_claim(&mut tx).await?;
        Self::write_lease_changes(&mut tx, instance, changes).await?;
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
    async fn apply_as_one_script(
        &self,
        instance: &InstanceId,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        use std::fmt::Write as _;
        let f = fold(changes);
        let inst = sqlite_text(instance.as_str());
        let mut sql = String::from("BEGIN IMMEDIATE;\n");
        for ids in f.deletes.chunks(500) {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let _ = writeln!(
                sql,
                "DELETE FROM leases WHERE instance = {inst} AND id IN ({});",
                list.join(",")
            );
        }
        for rows in f.puts.chunks(500) {
            let values: Vec<String> = rows
                .iter()
                .map(|l| {
                    format!(
                        "({inst}, {}, {}, {}, {}, {}, {}, {}, {}, {}, '{}', {})",
                        l.id,
                        sqlite_text(&l.device),
                        sqlite_text(&l.request_id),
                        sqlite_text(&l.record_key),
                        l.count,
                        l.overdraft,
                        unix(l.expires_at),
                        i64::from(l.borrowed),
                        l.alias.as_deref().map_or("NULL".to_string(), sqlite_text),
                        // one of four fixed lower-case words: nothing to escape
                        l.device_type.as_str(),
                        l.pool.as_deref().map_or("NULL".to_string(), sqlite_text)
                    )
                })
                .collect();
            let _ = writeln!(
                sql,
                "INSERT INTO leases (instance, id, device, request_id, record_key, count, overdraft, expires_at, borrowed, alias, device_type, pool) VALUES {} \
                 ON CONFLICT (instance, id) DO UPDATE SET device = excluded.device, request_id = excluded.request_id, \
                 record_key = excluded.record_key, count = excluded.count, overdraft = excluded.overdraft, \
                 expires_at = excluded.expires_at, borrowed = excluded.borrowed, alias = excluded.alias, \
                 device_type = excluded.device_type, pool = excluded.pool;",
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
                "UPDATE leases SET expires_at = CASE id {} ELSE expires_at END WHERE instance = {inst} AND id IN ({});",
                cases.join(" "),
                ids.join(",")
            );
        }
        for (record_key, units) in &f.consumed {
            let _ = writeln!(
                sql,
                "INSERT INTO metered_use (instance, record_key, units) VALUES ({inst}, {}, {units}) \
                 ON CONFLICT (instance, record_key) DO UPDATE SET units = excluded.units;",
                sqlite_text(record_key)
            );
        }
        if let Some(st) = &f.state {
            let _ = writeln!(
                sql,
                "INSERT INTO engine_state (instance, lease_digest, commit_seq, next_lease) VALUES ({inst}, {}, {}, {}) \
                 ON CONFLICT (instance) DO UPDATE SET lease_digest = excluded.lease_digest, \
                 commit_seq = excluded.commit_seq, next_lease = excluded.next_lease;",
                sqlite_text(&st.lease_digest),
                stored(st.commit_seq),
                stored(st.next_lease)
            );
        }
        let opt = |t: &Option<String>| t.as_deref().map_or("NULL".to_string(), sqlite_text);
        for rows in f.events.chunks(500) {
            let values: Vec<String> = rows
                .iter()
                .map(|e| {
                    format!(
                        "({inst}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                        sqlite_text(e.kind.as_str()),
                        unix(e.at),
                        sqlite_text(&e.device),
                        sqlite_text(&e.device_type),
                        opt(&e.user),
                        opt(&e.alias),
                        sqlite_text(&e.feature),
                        opt(&e.version),
                        e.count,
                        sqlite_text(&e.code),
                        sqlite_text(&e.message)
                    )
                })
                .collect();
            let _ = writeln!(
                sql,
                "INSERT INTO usage_events ({EVENT_COLUMNS}) VALUES {};",
                values.join(", ")
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
        instance: &InstanceId,
        node: &str,
        changes: &[LeaseChange],
    ) -> Result<(), StoreError> {
        // the engine's state is each member's own business, and usage events are not seats: not
        // logged (the events are stored with the leases, once)
        let logged: Vec<&LeaseChange> = changes
            .iter()
            .filter(|c| !matches!(c, LeaseChange::State(_) | LeaseChange::Event(_)))
            .collect();
        for chunk in logged.chunks(500) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("($1, $2, {})", placeholders(i * 11 + 3, 11)))
                .collect();
            let sql = format!(
                "INSERT INTO lease_log (instance, node, kind, lease_id, device, request_id, record_key, count, overdraft, expires_at, borrowed, units, pool) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(instance.as_str()).bind(node);
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
                    pool,
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
                        l.pool.as_deref(),
                    ),
                    LeaseChange::Expiry { id, expires_at } => (
                        "expiry",
                        *id,
                        "",
                        "",
                        "",
                        0,
                        0,
                        unix(*expires_at),
                        0,
                        0,
                        None,
                    ),
                    LeaseChange::Delete { id } => ("delete", *id, "", "", "", 0, 0, 0, 0, 0, None),
                    LeaseChange::State(_) | LeaseChange::Event(_) => continue,
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
                        None,
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
                    .bind(units)
                    .bind(pool);
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
        instance: &InstanceId,
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
            .bind(instance.cluster_lock())
            .execute(&mut *tx)
            .await?;
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM lease_log WHERE instance = $1")
                .bind(instance.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let catch_up = match since {
            Some(s) if first.is_none_or(|f| s >= f - 1) => {
                let rows: Vec<LogRow> = sqlx::query_as(
                    "SELECT kind, lease_id, device, request_id, record_key, count, overdraft, expires_at, borrowed, units, pool \
                     FROM lease_log WHERE instance = $1 AND seq > $2 ORDER BY seq",
                )
                .bind(instance.as_str())
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
                leases: Self::read_leases(&mut tx, instance).await?,
                consumed: Self::read_consumed(&mut tx, instance).await?,
            },
        };
        let (changes, out) = work(catch_up);
        Self::write_lease_changes(&mut tx, instance, &changes).await?;
        Self::log_lease_changes(&mut tx, instance, node, &changes).await?;
        let (now_last,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM lease_log WHERE instance = $1")
                .bind(instance.as_str())
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((now_last.or(last).unwrap_or(0), out))
    }

    /// Drops `instance`'s log entries older than its newest `keep`; members behind them reload
    /// whole.
    pub async fn prune_lease_log(
        &self,
        instance: &InstanceId,
        keep: i64,
    ) -> Result<u64, StoreError> {
        // under the cluster's lock: a member's catch-up never sees the log shrink mid-read
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(instance.cluster_lock())
            .execute(&mut *tx)
            .await?;
        // the newest `keep` entries of this instance stay (the sequence is shared by all)
        let r = sqlx::query(
            "DELETE FROM lease_log WHERE instance = $1 AND seq < COALESCE((SELECT seq FROM lease_log \
             WHERE instance = $1 ORDER BY seq DESC OFFSET $2 - 1 LIMIT 1), 0)",
        )
        .bind(instance.as_str())
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
        instance: &InstanceId,
        node: &str,
        since: Option<i64>,
        work: F,
    ) -> Result<(i64, R), StoreError>
    where
        F: FnOnce(CatchUp) -> (Vec<LeaseChange>, R) + Send,
        R: Send,
    {
        match self {
            AnyStore::Postgres(s) => s.cluster_commit(instance, node, since, work).await,
            AnyStore::Sqlite(_) => Err(cluster_needs_postgres()),
        }
    }

    /// See [`PgStore::prune_lease_log`]; nothing to do on SQLite.
    pub async fn prune_lease_log(
        &self,
        instance: &InstanceId,
        keep: i64,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Postgres(s) => s.prune_lease_log(instance, keep).await,
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
    async fn apply_lease_changes(
        &self,
        instance: &InstanceId,
        changes: Vec<LeaseChange>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.apply_lease_changes(instance, changes).await)
    }
    async fn load_leases(&self, instance: &InstanceId) -> Result<Vec<LeaseRow>, StoreError> {
        dispatch!(self, s => s.load_leases(instance).await)
    }
    async fn load_consumed(&self, instance: &InstanceId) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, s => s.load_consumed(instance).await)
    }
    async fn scan_leases<F: FnMut(LeaseRow) + Send>(
        &self,
        instance: &InstanceId,
        each: F,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.scan_leases(instance, each).await)
    }
    async fn engine_state(&self, instance: &InstanceId) -> Result<Option<EngineState>, StoreError> {
        dispatch!(self, s => s.engine_state(instance).await)
    }
    async fn put_engine_state(
        &self,
        instance: &InstanceId,
        state: &EngineState,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_engine_state(instance, state).await)
    }
}
