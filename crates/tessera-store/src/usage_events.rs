//! [`UsageEventStore`]: what a license administrator reviews besides the leases, per
//! [`InstanceId`]: each feature a request or borrow was refused ([`UsageEventKind::Denial`]), and
//! each grant that took seats beyond the count ([`UsageEventKind::Overdraft`]).
//!
//! A seat engine writes them with its decisions, in the same transaction, as
//! [`LeaseChange::Event`](crate::LeaseChange::Event); a cluster's lease log never carries them (they
//! are not seats). They are read here, newest first, and pruned after the retention the server is
//! configured with.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::{dispatch, AnyStore, InstanceId, PgStore, SqliteStore, StoreError};

/// What a usage event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageEventKind {
    /// A feature of a request or borrow was refused.
    Denial,
    /// A grant took seats beyond the record's count.
    Overdraft,
}

impl UsageEventKind {
    /// The name stored (and shown): `denial` or `overdraft`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageEventKind::Denial => "denial",
            UsageEventKind::Overdraft => "overdraft",
        }
    }

    fn parse(s: &str) -> Result<UsageEventKind, StoreError> {
        match s {
            "denial" => Ok(UsageEventKind::Denial),
            "overdraft" => Ok(UsageEventKind::Overdraft),
            other => Err(StoreError::corrupt(format!(
                "usage_events.kind holds {other:?}, neither denial nor overdraft"
            ))),
        }
    }
}

impl std::fmt::Display for UsageEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One usage event: who (device, user, alias), what (feature, version, count), when, and why (a
/// denial's code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Denial or overdraft.
    pub kind: UsageEventKind,
    /// When it was decided (whole seconds are stored).
    pub at: OffsetDateTime,
    /// The device's host id (`KIND=VALUE`).
    pub device: String,
    /// Physical, virtual, container or unknown.
    pub device_type: String,
    /// The user on the device, as the client sent it.
    pub user: Option<String>,
    /// The device's alias, as the client sent it.
    pub alias: Option<String>,
    /// The feature.
    pub feature: String,
    /// A denial: the lowest version asked for; an overdraft: the version granted.
    pub version: Option<String>,
    /// A denial: the seats asked for; an overdraft: the seats beyond the count.
    pub count: i64,
    /// A denial's code (`all_in_use`, `not_licensed`, …); `overdraft` for an overdraft.
    pub code: String,
    /// For people.
    pub message: String,
}

/// A usage event as stored, with the id it was stored under (ids grow with time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUsageEvent {
    /// The row's id.
    pub id: i64,
    /// The event.
    pub event: UsageEvent,
}

/// Which usage events to list: all filters together; newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEventFilter {
    /// Only this kind.
    pub kind: Option<UsageEventKind>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events of this feature.
    pub feature: Option<String>,
    /// At most this many (the newest).
    pub limit: u32,
}

impl Default for UsageEventFilter {
    fn default() -> Self {
        UsageEventFilter {
            kind: None,
            since: None,
            feature: None,
            limit: 100,
        }
    }
}

/// The usage events of seat engines, each instance's apart. See the module documentation.
pub trait UsageEventStore {
    /// Stores events outside a decision (a seat engine writes its own with its lease changes).
    fn record_events(
        &self,
        instance: &InstanceId,
        events: &[UsageEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `instance`'s events that pass `filter`, newest first.
    fn list_events(
        &self,
        instance: &InstanceId,
        filter: &UsageEventFilter,
    ) -> impl Future<Output = Result<Vec<StoredUsageEvent>, StoreError>> + Send;

    /// Deletes `instance`'s events from before `before`; how many.
    fn prune_events(
        &self,
        instance: &InstanceId,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Stores one event ($1 instance, $2 kind, $3 at, $4 device, $5 device type, $6 user, $7 alias, $8
/// feature, $9 version, $10 count, $11 code, $12 message).
pub(crate) const INSERT_EVENT_SQL: &str =
    "INSERT INTO usage_events (instance, kind, at, device, device_type, user_name, alias, feature, version, count, code, message) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The column list of an insert, for the multi-row forms.
pub(crate) const EVENT_COLUMNS: &str =
    "instance, kind, at, device, device_type, user_name, alias, feature, version, count, code, message";

type Row = (
    i64,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
    String,
    String,
);

fn from_row(r: Row) -> Result<StoredUsageEvent, StoreError> {
    let (id, kind, at, device, device_type, user, alias, feature, version, count, code, message) =
        r;
    Ok(StoredUsageEvent {
        id,
        event: UsageEvent {
            kind: UsageEventKind::parse(&kind)?,
            at: time(at, "usage_events.at")?,
            device,
            device_type,
            user,
            alias,
            feature,
            version,
            count,
            code,
            message,
        },
    })
}

/// The SELECT for `filter` (with its placeholders numbered in the order [`list`] binds them).
fn select(filter: &UsageEventFilter) -> String {
    let mut sql = String::from(
        "SELECT id, kind, at, device, device_type, user_name, alias, feature, version, count, code, message \
         FROM usage_events WHERE instance = $1",
    );
    let mut n = 1;
    let mut cond = |sql: &mut String, what: &str| {
        n += 1;
        sql.push_str(&format!(" AND {what} ${n}"));
    };
    if filter.kind.is_some() {
        cond(&mut sql, "kind =");
    }
    if filter.since.is_some() {
        cond(&mut sql, "at >=");
    }
    if filter.feature.is_some() {
        cond(&mut sql, "feature =");
    }
    sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${}", n + 1));
    sql
}

macro_rules! impl_usage_event_store {
    ($store:ty, $name:literal) => {
        impl UsageEventStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name, n = events.len()))]
            async fn record_events(&self, instance: &InstanceId, events: &[UsageEvent]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for e in events {
                    sqlx::query(INSERT_EVENT_SQL)
                        .bind(instance.as_str())
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
                        .bind(&e.message)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_events(
                &self,
                instance: &InstanceId,
                filter: &UsageEventFilter,
            ) -> Result<Vec<StoredUsageEvent>, StoreError> {
                let sql = select(filter);
                let mut q = sqlx::query_as::<_, Row>(&sql).bind(instance.as_str());
                if let Some(k) = filter.kind {
                    q = q.bind(k.as_str());
                }
                if let Some(t) = filter.since {
                    q = q.bind(unix(t));
                }
                if let Some(f) = &filter.feature {
                    q = q.bind(f.as_str());
                }
                let rows = q.bind(i64::from(filter.limit)).fetch_all(&self.pool).await?;
                rows.into_iter().map(from_row).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn prune_events(&self, instance: &InstanceId, before: OffsetDateTime) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM usage_events WHERE instance = $1 AND at < $2")
                    .bind(instance.as_str())
                    .bind(unix(before))
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }
        }
    };
}

impl_usage_event_store!(SqliteStore, "sqlite");
impl_usage_event_store!(PgStore, "postgres");

impl UsageEventStore for AnyStore {
    async fn record_events(
        &self,
        instance: &InstanceId,
        events: &[UsageEvent],
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_events(instance, events).await)
    }

    async fn list_events(
        &self,
        instance: &InstanceId,
        filter: &UsageEventFilter,
    ) -> Result<Vec<StoredUsageEvent>, StoreError> {
        dispatch!(self, s => s.list_events(instance, filter).await)
    }

    async fn prune_events(
        &self,
        instance: &InstanceId,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_events(instance, before).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_select_numbers_its_placeholders_in_binding_order() {
        assert!(select(&UsageEventFilter::default())
            .ends_with("WHERE instance = $1 ORDER BY at DESC, id DESC LIMIT $2"));
        let all = UsageEventFilter {
            kind: Some(UsageEventKind::Denial),
            since: Some(OffsetDateTime::UNIX_EPOCH),
            feature: Some("cad".into()),
            limit: 5,
        };
        assert!(select(&all).ends_with(
            "WHERE instance = $1 AND kind = $2 AND at >= $3 AND feature = $4 ORDER BY at DESC, id DESC LIMIT $5"
        ));
        let some = UsageEventFilter {
            feature: Some("cad".into()),
            ..UsageEventFilter::default()
        };
        assert!(select(&some).ends_with("AND feature = $2 ORDER BY at DESC, id DESC LIMIT $3"));
    }

    #[test]
    fn kinds_round_trip_and_an_unknown_one_is_corrupt() {
        for k in [UsageEventKind::Denial, UsageEventKind::Overdraft] {
            assert_eq!(UsageEventKind::parse(k.as_str()).unwrap(), k);
        }
        assert!(matches!(
            UsageEventKind::parse("grant"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
