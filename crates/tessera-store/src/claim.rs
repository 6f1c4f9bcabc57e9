//! A process's claim on a PostgreSQL store: a session advisory lock held on a dedicated, watched
//! connection, and a fence that every lease commit checks in its own transaction.
//!
//! **Why watched.** A session advisory lock lives as long as the connection that took it. A
//! database restart, a failover or `pg_terminate_backend` ends the connection and with it the lock,
//! silently: another process could then take the lock and serve the same seats. So the connection
//! holding the lock is checked every second or so (`SELECT 1`); when it fails, the claim is marked
//! lost at once (the license server grants nothing), and the watcher reconnects and takes the lock
//! again before the claim is marked held. If another process took the lock meanwhile, the claim
//! stays lost and the watcher says so loudly, again every minute, while it keeps trying.
//!
//! **Why a fence.** Between the moment the connection dies and the moment the watcher notices, a
//! commit could still run. So whoever takes the lock also moves a counter in the `settings` table
//! (`lock.NAME`, e.g. `7 exclusive`) under a row lock, and every lease commit (see
//! [`PgStore::check_claim`]) reads that row `FOR SHARE` in its own transaction and refuses to commit
//! unless it still holds the value this process set or saw when it took the lock. A new holder's
//! update waits for commits in flight and makes every later commit of the old holder fail: the new
//! holder reads the leases only after the last commit of the old one. Members of a cluster (shared
//! lock) keep the counter as it is when it is already shared, so they do not fence each other out;
//! an exclusive holder always moves it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

use crate::{PgStore, StoreError};

/// How often the connection holding a claim is checked by default.
pub const CLAIM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a check (or a reconnection) may take before the claim counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the watcher repeats that another process holds the lock.
const REPEAT_WARNING: Duration = Duration::from_secs(60);

/// How a claim is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimMode {
    /// Alone: no other process may claim the name, shared or not.
    Exclusive,
    /// Together with other shared claims (a cluster's members), never with an exclusive one.
    Shared,
}

impl ClaimMode {
    fn word(self) -> &'static str {
        match self {
            ClaimMode::Exclusive => "exclusive",
            ClaimMode::Shared => "shared",
        }
    }

    fn try_lock_sql(self) -> &'static str {
        match self {
            ClaimMode::Exclusive => "SELECT pg_try_advisory_lock($1)",
            ClaimMode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
        }
    }
}

/// Whether this process holds its claim on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimStatus {
    /// Nothing was claimed (an SQLite store, whose data directory's lock file does this job, or a
    /// store opened by a tool).
    Unclaimed,
    /// The claim is held: commits may go on.
    Held,
    /// The claim was lost and is not held again yet; commits are refused.
    Lost {
        /// Why, and what the watcher is doing about it.
        reason: String,
    },
}

/// The PostgreSQL advisory lock key for a claim name (FNV-1a of its bytes).
pub fn advisory_key(name: &str) -> i64 {
    name.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    }) as i64
}

/// The claim state shared by every clone of a [`PgStore`].
#[derive(Debug, Default)]
pub(crate) struct ClaimCell {
    state: Mutex<CellState>,
}

#[derive(Debug, Default)]
struct CellState {
    /// The fence this process set or saw: (setting, value). `None`: nothing claimed.
    fence: Option<(String, String)>,
    /// Why the claim is not held, while it is not.
    lost: Option<String>,
    /// Taken again after a loss, and not yet reported by [`ClaimCell::check`].
    retaken: bool,
}

impl ClaimCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> ClaimStatus {
        let s = self.lock();
        match (&s.fence, &s.lost) {
            (None, _) => ClaimStatus::Unclaimed,
            (Some(_), None) => ClaimStatus::Held,
            (Some(_), Some(reason)) => ClaimStatus::Lost {
                reason: reason.clone(),
            },
        }
    }

    /// `Err` while the claim is lost; `Ok(true)` once after it was taken again (what was read
    /// before may be stale: another process may have written meanwhile).
    pub(crate) fn check(&self) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if let Some(reason) = &s.lost {
            return Err(lock_lost(reason));
        }
        Ok(std::mem::take(&mut s.retaken))
    }

    /// The fence to check in a commit, or the error when the claim is lost, or was lost and taken
    /// again since the decision being committed was made ([`ClaimCell::check`] has not reported
    /// it yet): that decision was made on what another process may have changed meanwhile.
    fn fence(&self) -> Result<Option<(String, String)>, StoreError> {
        let s = self.lock();
        if let Some(reason) = &s.lost {
            return Err(lock_lost(reason));
        }
        if s.retaken {
            return Err(lock_lost(
                "the database lock was lost and taken again while this decision was made: it is decided again on the leases as they are now",
            ));
        }
        Ok(s.fence.clone())
    }

    fn held(&self, fence: (String, String), again: bool) {
        let mut s = self.lock();
        s.fence = Some(fence);
        s.lost = None;
        s.retaken |= again;
    }

    fn lose(&self, reason: String) {
        self.lock().lost = Some(reason);
    }

    fn release(&self) {
        let mut s = self.lock();
        s.fence = None;
        s.lost = None;
    }
}

fn lock_lost(reason: &str) -> StoreError {
    StoreError::LockLost {
        detail: reason.to_owned(),
    }
}

/// Held while this process holds a claim (see [`crate::AnyStore::exclusive`]). Dropping it stops
/// the watcher and closes its connection, which lets another process take over.
#[derive(Debug)]
pub struct ExclusiveGuard {
    watcher: Option<(tokio::task::JoinHandle<()>, Arc<ClaimCell>)>,
}

impl ExclusiveGuard {
    pub(crate) fn none() -> ExclusiveGuard {
        ExclusiveGuard { watcher: None }
    }
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        if let Some((task, cell)) = self.watcher.take() {
            task.abort();
            cell.release();
        }
    }
}

impl PgStore {
    /// Claims `name` in `mode` on a connection of its own, watched every `every`; `None` when
    /// another process holds it in a mode that excludes this one.
    pub async fn claim(
        &self,
        name: &str,
        mode: ClaimMode,
        every: Duration,
    ) -> Result<Option<ExclusiveGuard>, StoreError> {
        let options = (*self.pool.connect_options()).clone();
        let mut conn = connect(&options).await?;
        let Some(fence) = take(&mut conn, name, mode).await? else {
            return Ok(None);
        };
        self.claim.held(fence, false);
        let cell = self.claim.clone();
        let watcher = Watcher {
            cell: cell.clone(),
            options,
            name: name.to_owned(),
            mode,
            every: every.max(Duration::from_millis(10)),
        };
        let task = tokio::spawn(watcher.run(conn));
        Ok(Some(ExclusiveGuard {
            watcher: Some((task, cell)),
        }))
    }

    /// Whether this process holds its claim (see [`ClaimStatus`]).
    pub fn claim_status(&self) -> ClaimStatus {
        self.claim.status()
    }

    /// Before a decision: `Err` ([`StoreError::LockLost`]) while the claim is lost; `Ok(true)`
    /// once after it was taken again, when what this process read before may be stale.
    pub fn claim_check(&self) -> Result<bool, StoreError> {
        self.claim.check()
    }

    /// Inside a commit's transaction: fails unless this process still holds its claim, and keeps
    /// a process that takes the claim over from reading before this commit is done (see the
    /// module documentation). Nothing to check when nothing was claimed.
    pub(crate) async fn check_claim(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let Some((setting, value)) = self.claim.fence()? else {
            return Ok(());
        };
        let found: Option<(String,)> =
            sqlx::query_as("SELECT value FROM settings WHERE key = $1 FOR SHARE")
                .bind(&setting)
                .fetch_optional(&mut *conn)
                .await?;
        match found {
            Some((v,)) if v == value => Ok(()),
            found => {
                let reason = format!(
                    "another license server process took the database over (lock generation {} instead of {value}): this process commits nothing more",
                    found.map(|f| f.0).unwrap_or_else(|| "gone".into())
                );
                tracing::error!("{reason}");
                self.claim.lose(reason.clone());
                Err(lock_lost(&reason))
            }
        }
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    let failed = |detail: String| StoreError::Connect {
        backend: crate::Backend::Postgres,
        detail,
    };
    match tokio::time::timeout(CHECK_TIMEOUT, options.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!(
            "no answer within {} seconds",
            CHECK_TIMEOUT.as_secs()
        ))),
    }
}

/// Takes the advisory lock on `conn` and moves the fence; the fence, or `None` when the lock is
/// held by another process.
async fn take(
    conn: &mut PgConnection,
    name: &str,
    mode: ClaimMode,
) -> Result<Option<(String, String)>, StoreError> {
    let (got,): (bool,) = sqlx::query_as(mode.try_lock_sql())
        .bind(advisory_key(name))
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        return Ok(None);
    }
    let setting = format!("lock.{name}");
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, '0 shared') ON CONFLICT (key) DO NOTHING",
    )
    .bind(&setting)
    .execute(&mut *conn)
    .await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let (current,): (String,) =
        sqlx::query_as("SELECT value FROM settings WHERE key = $1 FOR UPDATE")
            .bind(&setting)
            .fetch_one(&mut *tx)
            .await?;
    let (n, current_mode) = current.split_once(' ').unwrap_or((&current, ""));
    let n: u64 = n.parse().unwrap_or(0);
    let value = if mode == ClaimMode::Shared && current_mode == "shared" {
        current.clone()
    } else {
        format!("{} {}", n.wrapping_add(1), mode.word())
    };
    if value != current {
        sqlx::query("UPDATE settings SET value = $2 WHERE key = $1")
            .bind(&setting)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some((setting, value)))
}

/// Watches the connection holding a claim, and takes the claim again when it is lost.
struct Watcher {
    cell: Arc<ClaimCell>,
    options: PgConnectOptions,
    name: String,
    mode: ClaimMode,
    every: Duration,
}

impl Watcher {
    async fn run(self, conn: PgConnection) {
        let mut conn = Some(conn);
        let mut holding = true;
        let mut said: Option<(String, Instant)> = None;
        loop {
            tokio::time::sleep(self.every).await;
            if holding {
                let Some(c) = conn.as_mut() else {
                    holding = false;
                    continue;
                };
                let checked =
                    tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *c))
                        .await;
                let reason = match checked {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => format!("the connection holding the database lock failed ({e})"),
                    Err(_) => format!(
                        "the connection holding the database lock did not answer within {} seconds",
                        CHECK_TIMEOUT.as_secs()
                    ),
                };
                // dropping the connection releases whatever it still holds
                conn = None;
                holding = false;
                tracing::error!(
                    lock = %self.name,
                    "{reason}: granting nothing until this process holds the lock again; reconnecting"
                );
                self.cell.lose(format!(
                    "{reason}; taking it again, granting nothing until then"
                ));
            }
            // not holding: (re)connect and take the lock again
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match connect(&self.options).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        let reason = format!("the database cannot be reached ({e})");
                        self.note_lost(reason, &mut said, false);
                        continue;
                    }
                },
            };
            match take(c, &self.name, self.mode).await {
                Ok(Some(fence)) => {
                    holding = true;
                    said = None;
                    tracing::warn!(lock = %self.name, fence = %fence.1, "took the database lock again: granting again");
                    self.cell.held(fence, true);
                }
                Ok(None) => {
                    let reason = match self.mode {
                        ClaimMode::Exclusive => "another license server process took the database lock while this one's connection was down: this process grants nothing while that one runs (stop one of them; several processes over one database need `cluster = true` on every one)",
                        ClaimMode::Shared => "a license server process without `cluster = true` took the database lock while this member's connection was down: this member grants nothing while that one runs (stop it, or set `cluster = true` in its server.toml)",
                    };
                    self.note_lost(reason.to_owned(), &mut said, true);
                }
                Err(e) => {
                    conn = None;
                    let reason = format!("the database lock could not be taken again ({e})");
                    self.note_lost(reason, &mut said, false);
                }
            }
        }
    }

    /// Marks the claim lost for `reason`, and logs it when it is new or a minute old.
    fn note_lost(&self, reason: String, said: &mut Option<(String, Instant)>, loud: bool) {
        let repeat = said
            .as_ref()
            .is_none_or(|(r, at)| *r != reason || at.elapsed() >= REPEAT_WARNING);
        if repeat {
            if loud {
                tracing::error!(lock = %self.name, "{reason}");
            } else {
                tracing::warn!(lock = %self.name, "{reason}; trying again");
            }
            *said = Some((reason.clone(), Instant::now()));
        }
        self.cell.lose(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_taken_again_fences_the_commit_of_a_decision_made_before() {
        let cell = ClaimCell::default();
        let fence = ("lock.x".to_string(), "1 exclusive".to_string());
        cell.held(fence.clone(), false);
        assert!(!cell.check().unwrap());
        assert_eq!(cell.fence().unwrap(), Some(fence.clone()));
        // lost and taken again between a decision and its commit: that commit fails
        cell.lose("gone".into());
        assert!(cell.fence().is_err());
        cell.held(("lock.x".into(), "3 exclusive".into()), true);
        assert!(matches!(cell.fence(), Err(StoreError::LockLost { .. })));
        // the next decision is told (and reads the leases anew); its commit passes
        assert!(cell.check().unwrap());
        assert!(cell.fence().unwrap().is_some());
    }
}
