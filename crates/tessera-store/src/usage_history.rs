//! [`UsageHistoryStore`]: seats used and the count of each feature over time, per [`InstanceId`],
//! for the License Server Manager's usage history (and `tessera server usage-history`).
//!
//! The license server records a [`UsageSample`] of every feature each minute
//! ([`Resolution::Minute`]); [`UsageHistoryStore::roll_up_usage`] later folds minutes into hours
//! and hours into days, keeping the most seats used in each period and the count. One row per
//! instance, feature, version, resolution and period: writing a period again (another member of a
//! cluster sampling the same minute, a roll-up run twice) keeps the larger use, so nothing is
//! counted twice.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{time, unix};
use crate::{dispatch, AnyStore, InstanceId, PgStore, SqliteStore, StoreError};

/// How long a period of the usage history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// A minute (what the server samples).
    Minute,
    /// An hour (minutes rolled up).
    Hour,
    /// A UTC day (hours rolled up).
    Day,
}

impl Resolution {
    /// The name stored (and taken by the API): `minute`, `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }

    /// Reads a name written by [`Resolution::as_str`].
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "minute" => Some(Resolution::Minute),
            "hour" => Some(Resolution::Hour),
            "day" => Some(Resolution::Day),
            _ => None,
        }
    }

    /// The period's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
            Resolution::Day => 86_400,
        }
    }

    /// The start of the period that holds `at`.
    pub fn start(self, at: OffsetDateTime) -> OffsetDateTime {
        let t = unix(at);
        let s = t - t.rem_euclid(self.seconds());
        OffsetDateTime::from_unix_timestamp(s).unwrap_or(at)
    }
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feature's use in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSample {
    /// The feature.
    pub feature: String,
    /// The version of its records.
    pub version: String,
    /// The start of the period (a whole minute, hour or UTC day).
    pub at: OffsetDateTime,
    /// The most seats in use seen in the period.
    pub used: i64,
    /// The seats licensed; `None`: uncounted.
    pub count: Option<i64>,
}

/// The usage history of seat engines, each instance's apart. See the module documentation.
pub trait UsageHistoryStore {
    /// Records samples at `resolution` (each `at` is the start of its period): a period already
    /// recorded keeps the larger use (and the latest count).
    fn record_usage_samples(
        &self,
        instance: &InstanceId,
        resolution: Resolution,
        samples: &[UsageSample],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Folds `instance`'s rows of resolution `from` in periods before `before` into rows of
    /// resolution `into` (the most used, the largest count), and deletes them; how many rows were
    /// folded. Only whole periods of `into` are folded: `before` is taken back to the start of
    /// its period.
    fn roll_up_usage(
        &self,
        instance: &InstanceId,
        from: Resolution,
        into: Resolution,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// `instance`'s use of `feature` (every version) from `from` up to (not including) `to`, in
    /// periods of `bucket` (finer rows folded into it, coarser ones as they are), by version,
    /// then time.
    fn usage_history(
        &self,
        instance: &InstanceId,
        feature: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        bucket: Resolution,
    ) -> impl Future<Output = Result<Vec<UsageSample>, StoreError>> + Send;
}

/// Folds finer rows into coarser ones ($1 instance, $2 the resolution folded into, $3 its period
/// in seconds, $4 the resolution folded, $5 before). `{GREATEST}` is the backend's two-argument
/// maximum.
const ROLL_UP_SQL: &str = "INSERT INTO usage_history (instance, feature, version, resolution, at, used, count) \
     SELECT instance, feature, version, $2, at - (at % $3), MAX(used), MAX(count) FROM usage_history \
     WHERE instance = $1 AND resolution = $4 AND at < $5 \
     GROUP BY instance, feature, version, at - (at % $3) \
     ON CONFLICT (instance, feature, version, resolution, at) DO UPDATE SET \
     used = {GREATEST}(usage_history.used, excluded.used), \
     count = COALESCE({GREATEST}(usage_history.count, excluded.count), excluded.count, usage_history.count)";

/// Records one sample ($1 instance, $2 feature, $3 version, $4 resolution, $5 at, $6 used, $7
/// count).
const UPSERT_SQL: &str =
    "INSERT INTO usage_history (instance, feature, version, resolution, at, used, count) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (instance, feature, version, resolution, at) DO UPDATE SET \
     used = {GREATEST}(usage_history.used, excluded.used), \
     count = COALESCE(excluded.count, usage_history.count)";

/// Reads a feature's history in buckets ($1 instance, $2 feature, $3 from, $4 to, $5 bucket
/// seconds).
const HISTORY_SQL: &str =
    "SELECT version, at - (at % $5) AS b, MAX(used), MAX(count) FROM usage_history \
     WHERE instance = $1 AND feature = $2 AND at >= $3 AND at < $4 \
     GROUP BY version, at - (at % $5) ORDER BY version, b";

macro_rules! impl_usage_history_store {
    ($store:ty, $name:literal, $greatest:literal) => {
        impl UsageHistoryStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name, n = samples.len()))]
            async fn record_usage_samples(
                &self,
                instance: &InstanceId,
                resolution: Resolution,
                samples: &[UsageSample],
            ) -> Result<(), StoreError> {
                let sql = UPSERT_SQL.replace("{GREATEST}", $greatest);
                let mut tx = self.pool.begin().await?;
                for s in samples {
                    sqlx::query(&sql)
                        .bind(instance.as_str())
                        .bind(&s.feature)
                        .bind(&s.version)
                        .bind(resolution.as_str())
                        .bind(unix(resolution.start(s.at)))
                        .bind(s.used)
                        .bind(s.count)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn roll_up_usage(
                &self,
                instance: &InstanceId,
                from: Resolution,
                into: Resolution,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                if into <= from {
                    return Err(StoreError::Unsupported {
                        detail: format!("usage history rolls up into a longer period, not {from} into {into}"),
                    });
                }
                let before = unix(into.start(before));
                let sql = ROLL_UP_SQL.replace("{GREATEST}", $greatest);
                let mut tx = self.pool.begin().await?;
                sqlx::query(&sql)
                    .bind(instance.as_str())
                    .bind(into.as_str())
                    .bind(into.seconds())
                    .bind(from.as_str())
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                let gone = sqlx::query(
                    "DELETE FROM usage_history WHERE instance = $1 AND resolution = $2 AND at < $3",
                )
                .bind(instance.as_str())
                .bind(from.as_str())
                .bind(before)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(gone.rows_affected())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn usage_history(
                &self,
                instance: &InstanceId,
                feature: &str,
                from: OffsetDateTime,
                to: OffsetDateTime,
                bucket: Resolution,
            ) -> Result<Vec<UsageSample>, StoreError> {
                let rows = sqlx::query_as::<_, (String, i64, i64, Option<i64>)>(HISTORY_SQL)
                    .bind(instance.as_str())
                    .bind(feature)
                    .bind(unix(from))
                    .bind(unix(to))
                    .bind(bucket.seconds())
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(version, at, used, count)| {
                        Ok(UsageSample {
                            feature: feature.to_string(),
                            version,
                            at: time(at, "usage_history.at")?,
                            used,
                            count,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl_usage_history_store!(SqliteStore, "sqlite", "max");
impl_usage_history_store!(PgStore, "postgres", "GREATEST");

impl UsageHistoryStore for AnyStore {
    async fn record_usage_samples(
        &self,
        instance: &InstanceId,
        resolution: Resolution,
        samples: &[UsageSample],
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_usage_samples(instance, resolution, samples).await)
    }

    async fn roll_up_usage(
        &self,
        instance: &InstanceId,
        from: Resolution,
        into: Resolution,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.roll_up_usage(instance, from, into, before).await)
    }

    async fn usage_history(
        &self,
        instance: &InstanceId,
        feature: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        bucket: Resolution,
    ) -> Result<Vec<UsageSample>, StoreError> {
        dispatch!(self, s => s.usage_history(instance, feature, from, to, bucket).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn resolutions_round_trip_and_take_times_to_their_start() {
        for r in [Resolution::Minute, Resolution::Hour, Resolution::Day] {
            assert_eq!(Resolution::parse(r.as_str()), Some(r));
        }
        assert_eq!(Resolution::parse("week"), None);
        let t = datetime!(2026-06-01 08:31:45 UTC);
        assert_eq!(Resolution::Minute.start(t), datetime!(2026-06-01 08:31 UTC));
        assert_eq!(Resolution::Hour.start(t), datetime!(2026-06-01 08:00 UTC));
        assert_eq!(Resolution::Day.start(t), datetime!(2026-06-01 00:00 UTC));
    }
}
