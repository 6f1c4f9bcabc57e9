//! Scheduled work: the lease sweep, the usage history (sampled each minute, rolled up hourly), the
//! pruning of usage events past their retention, the daily
//! sync with the back office (and, in a cluster, which member runs it). It belongs to the server, which starts and stops it ([`Server::start_tasks`]);
//! the HTTP layer only serves.

use std::sync::Arc;

use tessera_core::time::Duration;
use tessera_core::time::OffsetDateTime;
use tessera_store::{
    InstanceId, Resolution, ServerStateStore, StoredUsageEvent, UsageEventFilter, UsageEventStore,
    UsageHistoryStore, UsageSample,
};

use crate::config::Config;
use crate::error::ServerError;
use crate::server::Server;

impl Server {
    /// Whether this process runs today's scheduled sync with the back office: a single server
    /// always; in a cluster (one server identity, several processes) only the member that claims
    /// the day first in the shared store, so the back office gets one usage report a day, not one
    /// per member. A claim holds for 12 hours. (A sync an administrator asks for always runs.)
    pub async fn claim_scheduled_sync(&self) -> Result<bool, ServerError> {
        if !self.engine.clustered() {
            return Ok(true);
        }
        // the members claim it in the server's state record (see `ServerStateStore`)
        let now = self.clock.now();
        Ok(self
            .store
            .claim_scheduled_sync(&InstanceId::on_site(), now, now - Duration::hours(12))
            .await?)
    }

    /// In a cluster, an hour after another member claimed the day's scheduled sync: whether this
    /// member runs it after all, because no member has reported it done (the one that claimed it
    /// stopped, or cannot reach the back office). Claims it if so, so only one member takes over.
    pub async fn take_over_scheduled_sync(&self) -> Result<bool, ServerError> {
        if !self.engine.clustered() {
            return Ok(false);
        }
        let now = self.clock.now();
        let site = InstanceId::on_site();
        let done = self.store.server_state(&site).await?.scheduled_sync_done_at;
        if done.is_some_and(|d| d >= now - Duration::hours(12)) {
            return Ok(false);
        }
        Ok(self
            .store
            .claim_scheduled_sync(&site, now, now - Duration::hours(1))
            .await?)
    }

    /// Records (in a cluster) that the day's scheduled sync succeeded.
    pub async fn note_scheduled_sync_done(&self) -> Result<(), ServerError> {
        if self.engine.clustered() {
            self.store
                .note_scheduled_sync_done(&InstanceId::on_site(), self.clock.now())
                .await?;
        }
        Ok(())
    }
}

impl Server {
    /// The denials and overdraft use this server's seat engine recorded that pass `filter`,
    /// newest first.
    pub async fn usage_events(
        &self,
        filter: &UsageEventFilter,
    ) -> Result<Vec<StoredUsageEvent>, ServerError> {
        Ok(self
            .store
            .list_events(self.engine.instance(), filter)
            .await?)
    }

    /// Deletes the usage events older than `usage_event_retention_days` (by the server's clock);
    /// how many. The scheduled work calls it every hour; in a cluster every member may: the
    /// deletes agree.
    pub async fn prune_usage_events(&self) -> Result<u64, ServerError> {
        let before =
            self.clock.now() - Duration::days(i64::from(self.config.usage_event_retention_days));
        Ok(self
            .store
            .prune_events(self.engine.instance(), before)
            .await?)
    }
}

/// How long minutes of the usage history are kept before they are rolled up into hours.
pub const MINUTES_KEPT: Duration = Duration::days(2);
/// How long hours of the usage history are kept before they are rolled up into days.
pub const HOURS_KEPT: Duration = Duration::days(90);

impl Server {
    /// Records each feature's seats in use and count now, in the minute's row of the usage history
    /// (per name and version: the records of a version summed; uncounted when one of them is).
    /// In a cluster every member may sample the same minute: the row keeps the larger use.
    pub async fn sample_usage_history(&self) -> Result<usize, ServerError> {
        let now = self.clock.now();
        let mut by_feature: std::collections::BTreeMap<(String, String), (i64, Option<i64>)> =
            std::collections::BTreeMap::new();
        for (f, used, _) in self.engine.usage().await {
            let e = by_feature
                .entry((f.name.clone(), f.version.to_string()))
                .or_insert((0, Some(0)));
            e.0 = e.0.saturating_add(i64::try_from(used).unwrap_or(i64::MAX));
            e.1 = match (e.1, f.count.get()) {
                (Some(sum), Some(c)) => Some(sum.saturating_add(i64::from(c))),
                _ => None,
            };
        }
        let samples: Vec<UsageSample> = by_feature
            .into_iter()
            .map(|((feature, version), (used, count))| UsageSample {
                feature,
                version,
                at: now,
                used,
                count,
            })
            .collect();
        self.store
            .record_usage_samples(self.engine.instance(), Resolution::Minute, &samples)
            .await?;
        Ok(samples.len())
    }

    /// Rolls the usage history up: minutes older than [`MINUTES_KEPT`] into hours, hours older
    /// than [`HOURS_KEPT`] into days (by the server's clock); how many rows were folded. Safe to
    /// run on every member of a cluster at once: a period folded twice keeps the larger use.
    pub async fn roll_up_usage_history(&self) -> Result<u64, ServerError> {
        let now = self.clock.now();
        let i = self.engine.instance();
        let minutes = self
            .store
            .roll_up_usage(i, Resolution::Minute, Resolution::Hour, now - MINUTES_KEPT)
            .await?;
        let hours = self
            .store
            .roll_up_usage(i, Resolution::Hour, Resolution::Day, now - HOURS_KEPT)
            .await?;
        Ok(minutes + hours)
    }

    /// The usage history of `feature` from `from` to `to` (not included) in periods of `bucket`,
    /// by version then time.
    pub async fn usage_history(
        &self,
        feature: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        bucket: Resolution,
    ) -> Result<Vec<UsageSample>, ServerError> {
        Ok(self
            .store
            .usage_history(self.engine.instance(), feature, from, to, bucket)
            .await?)
    }
}

/// Whether the minute of `now` has not been sampled yet (last sampled at `last`).
fn sample_due(last: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last.is_none_or(|t| Resolution::Minute.start(now) != Resolution::Minute.start(t))
}

/// How often usage events past their retention are pruned (by the server's clock).
const PRUNE_EVERY: Duration = Duration::hours(1);

/// Whether the usage events are due to be pruned at `now`, last pruned at `last`.
fn prune_due(last: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last.is_none_or(|t| now - t >= PRUNE_EVERY || now < t)
}

/// The server's scheduled work while it serves, started by [`Server::start_tasks`]: the lease
/// sweep (and, in a cluster, picking up a bundle another member installed) every few seconds, and
/// the daily sync with the back office.
#[derive(Debug)]
pub struct Tasks {
    sweep: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts the server's scheduled work; it runs until [`Tasks::stop`] (or the runtime ends).
    pub fn start_tasks(self: &Arc<Self>) -> Tasks {
        let (sweep, sync) = background(self);
        Tasks { sweep, sync }
    }
}

impl Tasks {
    /// Stops the scheduled work and waits until it is gone, so the server it holds (its locks on
    /// the data directory and database) is released once every other holder lets go.
    pub async fn stop(self) {
        stop_background(self.sweep, self.sync).await;
    }
}

/// Stops the background tasks and waits until they are gone, so the server they hold (its locks on
/// the data directory and database) is released when serving returns.
async fn stop_background(sweep: tokio::task::JoinHandle<()>, sync: tokio::task::JoinHandle<()>) {
    sweep.abort();
    sync.abort();
    let _ = sweep.await;
    let _ = sync.await;
}

/// The sweeper (expired leases, the minute's usage sample, the hourly roll-up of the usage
/// history, usage events past their retention, and in a cluster a newer bundle) and the daily
/// sync.
fn background(server: &Arc<Server>) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let sweeper = server.clone();
    let sweep = tokio::spawn(async move {
        let mut pruned: Option<OffsetDateTime> = None;
        let mut sampled: Option<OffsetDateTime> = None;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            if let Err(e) = sweeper.engine.sweep().await {
                tracing::warn!(error = %e, "lease sweep failed; will try again");
            }
            let now = sweeper.clock.now();
            if sample_due(sampled, now) {
                match sweeper.sample_usage_history().await {
                    Ok(_) => sampled = Some(now),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the minute's usage history; will try again")
                    }
                }
            }
            if prune_due(pruned, now) {
                match sweeper.roll_up_usage_history().await {
                    Ok(n) if n > 0 => {
                        tracing::debug!(rows = n, "rolled the usage history up")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not roll the usage history up; will try again")
                    }
                }
                match sweeper.prune_usage_events().await {
                    Ok(n) => {
                        pruned = Some(now);
                        if n > 0 {
                            tracing::info!(
                                events = n,
                                "pruned denials and overdraft use past their retention"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prune old usage events; will try again")
                    }
                }
            }
            if sweeper.engine.clustered() {
                // another member may have changed the reservations or the pool model
                match sweeper.refresh_policy().await {
                    Ok(true) => {
                        tracing::info!("serving the seat policy (reservations, pool model) another cluster member stored")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not check for a changed seat policy")
                    }
                }
                // … or the client keys or trusted producer keys
                if let Err(e) = sweeper.refresh_keys().await {
                    tracing::warn!(error = %e, "could not check for changed client or producer keys")
                }
                match sweeper.refresh_from_store().await {
                    Ok(true) => tracing::info!(
                        "serving the license bundle another cluster member installed"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not check for a newer license bundle")
                    }
                }
            }
        }
    });
    let syncer = server.clone();
    let sync = tokio::spawn(async move { periodic_sync(syncer).await });
    (sweep, sync)
}

/// Seconds until the next `hour`:00 in `zone` after `now`; an hour that a daylight-saving change
/// skips is taken as the instant the clocks jump.
fn until_local_hour(
    now: tessera_core::time::OffsetDateTime,
    hour: u8,
    zone: &jiff::tz::TimeZone,
) -> u64 {
    let local = |ts: jiff::Timestamp, days: i64| -> Option<jiff::Timestamp> {
        let date = ts.to_zoned(zone.clone()).date();
        let day = date.checked_add(jiff::Span::new().days(days)).ok()?;
        let at = day.at(i8::try_from(hour.min(23)).ok()?, 0, 0, 0);
        // an hour the clocks skip becomes the instant they jump
        Some(at.to_zoned(zone.clone()).ok()?.timestamp())
    };
    let Ok(ts) = jiff::Timestamp::from_second(now.unix_timestamp()) else {
        return until_hour(now, hour);
    };
    let next = [0, 1, 2]
        .into_iter()
        .filter_map(|d| local(ts, d))
        .find(|t| *t > ts);
    match next {
        Some(t) => u64::try_from(t.as_second() - ts.as_second())
            .unwrap_or(3600)
            .max(1),
        None => until_hour(now, hour),
    }
}

/// When the daily sync is next due: at `sync_hour_utc` UTC when set, else at `sync_hour` in the
/// machine's time zone (UTC when it has none that can be read).
fn until_sync(now: tessera_core::time::OffsetDateTime, config: &Config) -> u64 {
    match config.sync_hour_utc {
        Some(h) => until_hour(now, h),
        None => until_local_hour(now, config.sync_hour, &jiff::tz::TimeZone::system()),
    }
}

/// Seconds until the next `hour`:00 UTC after `now`.
fn until_hour(now: tessera_core::time::OffsetDateTime, hour: u8) -> u64 {
    let today = now
        .date()
        .with_hms(hour.min(23), 0, 0)
        .map(|t| t.assume_utc())
        .unwrap_or(now);
    let next = if today > now {
        today
    } else {
        today + tessera_core::time::Duration::days(1)
    };
    u64::try_from((next - now).whole_seconds())
        .unwrap_or(3600)
        .max(1)
}

/// The daily sync (renewal and usage report), retried with back-off when the back office cannot
/// be reached: 1 minute, doubling, at most 1 hour.
async fn periodic_sync(s: Arc<Server>) {
    loop {
        let wait = until_sync(s.clock.now(), &s.config);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        let mine = match s.claim_scheduled_sync().await {
            Ok(mine) => mine,
            Err(e) => {
                // better a second usage report than none
                tracing::warn!(error = %e, "could not claim today's sync in the shared store; syncing anyway");
                true
            }
        };
        if !mine {
            tracing::info!(
                "another member of the cluster runs today's sync; checking in an hour that it did"
            );
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            match s.take_over_scheduled_sync().await {
                Ok(true) => {
                    tracing::warn!("no member of the cluster has reported today's sync done; syncing from this one");
                }
                Ok(false) => {
                    // the report covered the whole pool: the next one starts from here on every
                    // member
                    let _ = s.engine.report(true).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not check today's sync in the shared store");
                    continue;
                }
            }
        }
        let mut backoff = 60u64;
        loop {
            match s.sync().await {
                Ok(over) => {
                    tracing::info!(over_use = ?over, "synced with the back office");
                    if let Err(e) = s.note_scheduled_sync_done().await {
                        tracing::warn!(error = %e, "could not record today's sync in the shared store");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_secs = backoff, "sync with the back office failed");
                    tokio::time::sleep(std::time::Duration::from_secs(backoff)).await;
                    backoff = (backoff * 2).min(3600);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::time::macros::datetime;

    #[test]
    fn usage_events_are_pruned_at_start_then_hourly() {
        let t = datetime!(2026-06-01 12:00 UTC);
        assert!(prune_due(None, t));
        assert!(!prune_due(Some(t), t + Duration::minutes(59)));
        assert!(prune_due(Some(t), t + Duration::hours(1)));
        // a clock set back does not stop the pruning
        assert!(prune_due(Some(t), t - Duration::minutes(1)));
    }

    #[test]
    fn usage_is_sampled_once_a_minute() {
        let t = datetime!(2026-06-01 12:00:10 UTC);
        assert!(sample_due(None, t));
        assert!(!sample_due(Some(t), t + Duration::seconds(45)));
        assert!(sample_due(Some(t), t + Duration::seconds(50)));
        assert!(sample_due(Some(t), t - Duration::minutes(5)));
    }

    #[test]
    fn next_sync_time() {
        assert_eq!(until_hour(datetime!(2026-06-01 23:00 UTC), 0), 3600);
        assert_eq!(until_hour(datetime!(2026-06-01 00:00 UTC), 0), 86_400);
        assert_eq!(until_hour(datetime!(2026-06-01 01:30 UTC), 2), 1800);
    }

    #[test]
    fn next_sync_time_in_local_time() {
        // zones from their POSIX rules: the test needs no time-zone database on the machine
        let zone = |rule: &str| jiff::tz::TimeZone::posix(rule).unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let berlin = zone("CET-1CEST,M3.5.0,M10.5.0/3");
        let ny = zone("EST5EDT,M3.2.0,M11.1.0");
        let cases = [
            (datetime!(2026-06-01 23:00 UTC), 0, &utc, 3600, "UTC"),
            // Berlin is UTC+2 in June: local midnight is 22:00 UTC
            (
                datetime!(2026-06-01 21:00 UTC),
                0,
                &berlin,
                3600,
                "Berlin, summer",
            ),
            (
                datetime!(2026-06-01 22:00 UTC),
                0,
                &berlin,
                86_400,
                "Berlin, at midnight",
            ),
            // and UTC+1 in January
            (
                datetime!(2026-01-15 22:30 UTC),
                0,
                &berlin,
                1800,
                "Berlin, winter",
            ),
            // New York (UTC-4 in June): 02:00 local is 06:00 UTC
            (
                datetime!(2026-06-01 05:00 UTC),
                2,
                &ny,
                3600,
                "New York, summer",
            ),
            // the night clocks go forward (2026-03-08) there is no 02:00: the sync runs at the
            // jump (07:00 UTC, 03:00 local), 24 hours after 02:00 the day before
            (
                datetime!(2026-03-07 07:00 UTC),
                2,
                &ny,
                86_400,
                "a skipped hour",
            ),
            // 03:00 local comes one hour after 01:00 local that night
            (
                datetime!(2026-03-08 06:00 UTC),
                3,
                &ny,
                3600,
                "the hour after the jump",
            ),
            // the night clocks go back (2026-11-01) the day has 25 hours
            (
                datetime!(2026-10-31 06:00 UTC),
                2,
                &ny,
                86_400 + 3600,
                "a 25-hour day",
            ),
        ];
        for (now, hour, tz, want, what) in cases {
            assert_eq!(until_local_hour(now, hour, tz), want, "{what}");
        }
    }
}
