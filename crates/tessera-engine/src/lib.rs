//! The seat engine of a running license server: the seat book in memory, every decision written
//! to the store before it is answered.
//!
//! **Group commit.** Request handlers do not touch the store. They hand their request to one
//! writer task, which takes every request waiting (up to [`MAX_BATCH`]), decides them in the seat
//! book one after another, writes all their changes in **one transaction**, and only after the
//! commit hands each handler its answer. The answers are made while the commit runs, by a task on
//! the server's runtime (sealed ones with their lease's session key, the others signed together
//! under one signature), and held until the commit succeeds. If a commit fails, none of its
//! requests is answered as granted (the answers made are dropped) and the book is rebuilt from the
//! store before the next decision.
//!
//! **Signing.** A grant is signed with the server's certified key and carries, per lease, a session
//! key derived from a secret only this server (and its cluster peers, which share its key) knows.
//! Every renewal and return must prove that it holds that session key (so no one renews or returns
//! another device's lease, whatever ids it tries), and is answered with a response sealed (HMAC)
//! with it: a hash, not a signature; or signed, when the client asks for a signature. The session
//! key is sent with the grant only (and with a retry of that grant's request), never with a renewal.
//!
//! **Clusters.** With `cluster = true` (PostgreSQL only) several server processes share one
//! store: each round of the writer runs under one advisory lock across the cluster, first applies
//! what the other members committed since its last round (the lease log), then decides, then
//! writes its changes and appends them to the log. So no member decides on a stale book, and the
//! pool's count holds across all of them.

//! **Built from values.** An engine is made from an [`EngineSetup`]: the instance it serves, the
//! store, the signing key, the feature records, the identity its answers carry, the seat policy
//! and the clock. It needs no directory, lock file, anchor file or host id of the machine: the
//! daemon that hosts it (the on-site license server, or the back office hosting instances) takes
//! care of those, and learns of each commit through [`AfterCommit`]. Several engines over one store
//! keep their seats apart by [`InstanceId`].
//!
//! **Modules.** `book` is the seat book with its digest, `writer` orders, persists and answers (the
//! decision itself is [`tessera_core::policy::decide`]), `answer` signs and seals.
//!
//! A capability request is parsed in the server's HTTP layer, checked by
//! [`tessera_core::policy::CheckedRequest::check`] in [`Engine::handle`], decided by
//! [`tessera_core::policy::decide`] and persisted and answered by the writer (`writer.rs`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod answer;
mod book;
mod writer;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tessera_core::capability::{check_session_proof, CapabilityRequest};
use tessera_core::feature::Feature;
use tessera_core::model::Model;
use tessera_core::named_users::{Assignment, NamedUsers};
use tessera_core::policy::{CheckedRequest, RequestError};
use tessera_core::reservations::{EntryStatus, Reservations};
use tessera_core::seats::{Lease, PoolUse};
use tessera_core::{Clock, HostId, SigningKey};
use tessera_store::{AnyStore, EngineState, LeaseChange, LeaseStore, StoreError};
use tokio::sync::{mpsc, oneshot};

pub use answer::Answer;
pub use tessera_core::policy::{SeatPolicy, DEFAULT_MAX_LEASES_PER_DEVICE};
pub use tessera_store::InstanceId;

use book::Book;
use writer::{spawn_writer, stopped, Inner, Job, Pending};

/// The seat policy under the name the license server's configuration knows it by.
pub type LeasePolicy = SeatPolicy;

/// Most requests decided and committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Why a capability request was not answered (a refusal of a feature is an answer, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is malformed (it breaks a limit of the protocol).
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    /// A renew or return whose session proof does not prove the lease: the caller does not hold it.
    #[error("{0}")]
    NotHolder(String),
    /// The decision could not be stored: nothing was granted.
    #[error("the license server could not store the decision; nothing was granted: {0}")]
    Store(String),
    /// The answer could not be signed.
    #[error("the answer could not be signed: {0}")]
    Sign(String),
}

/// The stable key of a feature record, so leases survive a reload of the license bundle.
pub fn record_key(f: &Feature) -> String {
    format!(
        "{}|{}|{}",
        f.name,
        f.version,
        f.activation_id.as_deref().unwrap_or("")
    )
}

/// Told after every commit of a single-process engine, with the commit's sequence number (the
/// one stored in the instance's [`EngineState`]). The on-site license server moves its restore
/// detector's marks outside the store with it; it must be quick (it runs on the writer).
pub trait AfterCommit: Send + Sync + std::fmt::Debug {
    /// The commit numbered `seq` is durable.
    fn committed(&self, seq: u64);
}

/// Whether an engine has its instance's rows to itself.
#[derive(Debug)]
pub enum Sharing {
    /// One engine serves the instance; `after_commit` (if any) hears of each commit.
    Alone(Option<Box<dyn AfterCommit>>),
    /// Several processes serve the instance over one (PostgreSQL) store, and its seats together,
    /// through the lease log.
    Cluster,
}

/// Which leases an administrator releases.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Release {
    /// One lease, by its id.
    Lease(u64),
    /// Every lease of one device (its host id as text, `KIND=VALUE`), whatever the user.
    Device(String),
}

impl Release {
    /// Whether the lease `id` held under `holder` (`HOSTID` or `HOSTID|user=USER`) is one of them.
    fn matches(&self, holder: &str, id: u64) -> bool {
        match self {
            Release::Lease(l) => *l == id,
            Release::Device(d) => holder
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("|user=")),
        }
    }
}

/// A lease with the name of its feature (as listed, or as an administrator released it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLease {
    /// The lease as it was held.
    pub lease: Lease,
    /// Its feature's name.
    pub feature: String,
}

/// What an engine is built from: values only.
#[derive(Debug)]
pub struct EngineSetup {
    /// Which instance's rows in the store it serves.
    pub instance: InstanceId,
    /// The feature records of the license bundle served.
    pub records: Vec<Feature>,
    /// The store.
    pub store: AnyStore,
    /// The certified key that signs its answers (session keys and lease ids derive from it).
    pub key: SigningKey,
    /// The identity its answers carry (`server`): the license server's host id.
    pub server: HostId,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The seat policy.
    pub policy: SeatPolicy,
    /// Alone or in a cluster.
    pub sharing: Sharing,
}

/// Why an engine could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored leases do not add up to the digest stored with them: rows were deleted, added
    /// or changed outside the license server.
    #[error("the leases in the store were changed outside the license server (their digest is {found}, the server stored {stored}): refusing to serve, since seats freed by hand would be granted twice. Restore the latest backup of the store, or accept the leases as they are now with `tessera server accept-storage --data DIR`")]
    EditedLeases {
        /// The digest stored with the last commit.
        stored: String,
        /// The digest of the rows found.
        found: String,
    },
}

/// The named pools as [`Engine::pools`] shows them.
#[derive(Debug, Clone)]
pub struct PoolsState {
    /// The model kept (`None`: no named pools).
    pub model: Option<Model>,
    /// Whether its pools are in force now.
    pub in_force: bool,
    /// Why not, when a model is kept but not in force.
    pub not_in_force: Option<String>,
    /// What is legal but probably not meant, and what could not be placed.
    pub warnings: Vec<String>,
    /// Per pool (in the model's order, the default pool last) and record: the seats held there
    /// and in use, with the record.
    pub rows: Vec<(PoolUse, Feature)>,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Requests decided (each in one of those commits).
    pub decisions: u64,
    /// Time spent in those rounds (deciding, writing and committing), in microseconds.
    pub commit_micros: u64,
    /// The part of it spent deciding in memory (single process), in microseconds.
    pub decide_micros: u64,
}

/// The engine. Cheap to share behind an `Arc`; dropping it stops its writer task once the
/// requests already handed to it are done.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    jobs: mpsc::UnboundedSender<Job>,
}

/// The secret lease ids, session keys and the lease digest derive from: the key's, and for an
/// instance other than the on-site one, the instance's too (two instances never share session
/// keys, even under one key).
fn session_secret(key: &SigningKey, instance: &InstanceId) -> Result<[u8; 32], StoreError> {
    let pem = key.to_pkcs8_pem().map_err(|e| StoreError::Corrupt {
        detail: format!("the server key: {e}"),
    })?;
    let mut h = Sha256::new();
    h.update(b"tessera-session-secret|");
    h.update(pem.as_bytes());
    if instance.as_str() != InstanceId::ON_SITE {
        h.update(b"|instance|");
        h.update(instance.as_str().as_bytes());
    }
    Ok(h.finalize().into())
}

impl Engine {
    /// An engine over the feature records of the current license bundle, with the instance's
    /// leases and metered use found in the store (expired leases are dropped and deleted). In a
    /// [`Sharing::Cluster`] (PostgreSQL only) the instance is shared with other server processes
    /// through the lease log.
    pub async fn load(setup: EngineSetup) -> Result<Engine, LoadError> {
        let EngineSetup {
            instance,
            records,
            store,
            key,
            server,
            clock,
            policy,
            sharing,
        } = setup;
        let (cluster, after_commit) = match sharing {
            Sharing::Alone(hook) => (false, hook),
            Sharing::Cluster => (true, None),
        };
        let secret = session_secret(&key, &instance)?;
        let node = if cluster {
            if matches!(store, AnyStore::Sqlite(_)) {
                return Err(StoreError::Unsupported {
                    detail: "`cluster = true` needs a PostgreSQL database (`database = \"postgres://…\"` in server.toml): an SQLite store serves one process".into(),
                }
                .into());
            }
            let mut b = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            Some(format!("{}-{}", std::process::id(), hex::encode(b)))
        } else {
            None
        };
        let sync_writer = match &store {
            AnyStore::Sqlite(s) if !cluster => s.lease_writer(&instance).ok().map(Mutex::new),
            _ => None,
        };
        let mut seq = 0;
        let book = if cluster {
            Book::empty(records, secret)
        } else {
            let (mut book, stale, all) =
                Book::load(records, secret, &store, &instance, clock.now()).await?;
            // the leases must add up to the digest the last commit stored with them
            if let Some(stored) = store.engine_state(&instance).await? {
                seq = stored.commit_seq;
                // ids of leases returned before the restart are not handed out again
                book.seats.skip_to_count(stored.next_lease);
                if !stored.lease_digest.is_empty() && stored.lease_digest != all.hex() {
                    return Err(LoadError::EditedLeases {
                        stored: stored.lease_digest,
                        found: all.hex(),
                    });
                }
            }
            let mut changes: Vec<LeaseChange> = stale
                .into_iter()
                .map(|id| LeaseChange::Delete { id })
                .collect();
            seq += 1;
            changes.push(LeaseChange::State(EngineState {
                lease_digest: book.digest.hex(),
                commit_seq: seq,
                next_lease: book.seats.next_count(),
            }));
            store.apply_lease_changes(&instance, changes).await?;
            if let Some(hook) = &after_commit {
                hook.committed(seq);
            }
            book
        };
        let inner = Arc::new(Inner {
            book: Mutex::new(book),
            store,
            instance,
            key,
            secret,
            server_name: server.to_string(),
            clock,
            borrow_days: AtomicU32::new(policy.max_borrow_days),
            borrows_per_account: AtomicU32::new(policy.max_borrows_per_account),
            lease_seconds: AtomicU32::new(
                u32::try_from(policy.lease.whole_seconds().clamp(1, i64::from(u32::MAX)))
                    .unwrap_or(300),
            ),
            leases_per_device: AtomicU32::new(policy.max_leases_per_device),
            policy,
            node,
            commits: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            decide_micros: AtomicU64::new(0),
            sync_writer,
            runtime: tokio::runtime::Handle::current(),
            seq: AtomicU64::new(seq),
            after_commit: if cluster { None } else { after_commit },
            reservations: Mutex::new(Reservations::default()),
            named_users: Mutex::new(NamedUsers::default()),
            pools: Mutex::new(writer::PoolModelState::default()),
        });
        let (jobs, rx) = mpsc::unbounded_channel();
        spawn_writer(inner.clone(), rx)?;
        let engine = Engine { inner, jobs };
        if cluster {
            // the first round reads the whole shared state
            engine.sweep().await?;
        }
        Ok(engine)
    }

    /// The instance this engine serves.
    pub fn instance(&self) -> &InstanceId {
        &self.inner.instance
    }

    /// Sets the longest borrow and the most borrowed seats per account (from the producer's
    /// offline policy, or the administrator's limits).
    pub fn set_borrow_limits(&self, days: u32, per_account: u32) {
        self.inner
            .borrow_days
            .store(days.clamp(1, 3650), Ordering::SeqCst);
        self.inner
            .borrows_per_account
            .store(per_account.clamp(1, 100_000), Ordering::SeqCst);
    }

    /// Sets the lease length (3 s to a day) and the most leases one device may hold (at least 1),
    /// for the decisions from now on; leases granted before keep their expiry.
    pub fn set_lease_limits(&self, lease_seconds: u32, max_leases_per_device: u32) {
        self.inner
            .lease_seconds
            .store(lease_seconds.clamp(3, 86_400), Ordering::SeqCst);
        self.inner
            .leases_per_device
            .store(max_leases_per_device.max(1), Ordering::SeqCst);
    }

    /// The lease length and the most leases per device in force (see
    /// [`Engine::set_lease_limits`]), and the borrow limits (days, seats per account).
    pub fn limits(&self) -> (u32, u32, u32, u32) {
        let i = &self.inner;
        (
            i.lease_seconds.load(Ordering::SeqCst),
            i.leases_per_device.load(Ordering::SeqCst),
            i.borrow_days.load(Ordering::SeqCst),
            i.borrows_per_account.load(Ordering::SeqCst),
        )
    }

    /// Whether this engine shares its store with other server processes.
    pub fn clustered(&self) -> bool {
        self.inner.node.is_some()
    }

    /// Commit and decision counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            commits: self.inner.commits.load(Ordering::Relaxed),
            decisions: self.inner.decisions.load(Ordering::Relaxed),
            commit_micros: self.inner.commit_micros.load(Ordering::Relaxed),
            decide_micros: self.inner.decide_micros.load(Ordering::Relaxed),
        }
    }

    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Replaces the feature records (after an activation or a renewal), keeping the leases.
    pub async fn reload(&self, records: Vec<Feature>) -> Result<(), StoreError> {
        self.ask(|tx| Job::Reload(records, tx)).await
    }

    /// Puts `reservations` in force (replacing those before), between two decisions: their seats
    /// are set aside from the next decision on (see [`tessera_core::reservations`]). Returns every
    /// entry's status. The caller stores them (they are the administrator's, not the engine's).
    pub async fn set_reservations(
        &self,
        reservations: Reservations,
    ) -> Result<Vec<EntryStatus>, StoreError> {
        self.ask(|tx| Job::Reserve(reservations, tx)).await
    }

    /// Puts the named users in force (replacing those before), between two decisions: each
    /// named-user feature serves only its users from the next decision on (see
    /// [`tessera_core::named_users`]). Returns every named-user feature's assignment.
    pub async fn set_named_users(&self, users: NamedUsers) -> Result<Vec<Assignment>, StoreError> {
        self.ask(|tx| Job::Name(users, tx)).await
    }

    /// The named users in force.
    pub fn named_users(&self) -> NamedUsers {
        self.inner.named_users()
    }

    /// Every named-user feature of the records served now, with its users and who is trimmed.
    pub fn named_user_assignments(&self) -> Vec<Assignment> {
        let n = self.inner.named_users();
        let records: Vec<Feature> = self.inner.lock().seats.records().cloned().collect();
        n.assign(&records)
    }

    /// The reservations in force.
    pub fn reservations(&self) -> Reservations {
        self.inner.reservations()
    }

    /// Every reservation entry with its status against the records served now.
    pub fn reservation_statuses(&self) -> Vec<EntryStatus> {
        let r = self.inner.reservations();
        let records: Vec<Feature> = self.inner.lock().seats.records().cloned().collect();
        r.allocate(&records).statuses
    }

    /// Puts a named-pool model in force (`None`: no named pools), between two decisions: its
    /// pools hold their seats from the next decision on (see [`tessera_core::pools`]). The engine
    /// keeps it across books made anew (a new license bundle, a rebuild), resolving it again
    /// against the records then: a model that no longer fits is kept out of force, and
    /// [`Engine::pools`] says why. The caller checks it first and stores it.
    pub async fn set_pool_model(&self, model: Option<Model>) -> Result<(), StoreError> {
        self.ask(|tx| Job::Pools(model, tx)).await
    }

    /// The named-pool model kept (in force or not).
    pub fn pool_model(&self) -> Option<Model> {
        self.inner.pool_state().model.clone()
    }

    /// The named pools: the model, whether it is in force, its warnings, and per pool and record
    /// the seats held and in use.
    pub fn pools(&self) -> PoolsState {
        let (model, not_in_force, problems) = {
            let st = self.inner.pool_state();
            (
                st.model.clone(),
                st.not_in_force.clone(),
                st.problems.clone(),
            )
        };
        let book = self.inner.lock();
        let mut warnings: Vec<String> = book
            .seats
            .pool_model()
            .map(|m| m.warnings().iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        warnings.extend(problems);
        let rows = book
            .seats
            .pool_use()
            .into_iter()
            .filter_map(|u| book.seats.record(u.record).cloned().map(|f| (u, f)))
            .collect();
        PoolsState {
            in_force: book.seats.pool_model().is_some(),
            model,
            not_in_force,
            warnings,
            rows,
        }
    }

    /// The feature records served now.
    pub fn records(&self) -> Vec<Feature> {
        self.inner.lock().seats.records().cloned().collect()
    }

    /// Returns the seats of expired leases and deletes them from the store (in a cluster, also
    /// brings this member's book up to date with the others').
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.ask(Job::Sweep).await
    }

    /// Returns the seats of the leases `which` names (an administrator's release of a stuck
    /// seat), through the writer: stored before this returns, and in a cluster decided on the
    /// book brought up to date with the other members'. Returns the leases released (none when
    /// nothing matched).
    pub async fn release(&self, which: Release) -> Result<Vec<NamedLease>, StoreError> {
        self.ask(|tx| Job::Release(which, tx)).await
    }

    /// Seats in use and metered units, per feature record: (record, used, consumed).
    pub async fn usage(&self) -> Vec<(Feature, u64, u64)> {
        let book = self.inner.lock();
        book.seats
            .records()
            .enumerate()
            .map(|(i, f)| (f.clone(), book.seats.used(i), book.seats.consumed(i)))
            .collect()
    }

    /// Per record: (record, peak seats since the last report, seats in use, metered units,
    /// peak overdraft); `reset` starts a new reporting period.
    pub async fn report(&self, reset: bool) -> Vec<(Feature, u64, u64, u64, u64)> {
        let mut book = self.inner.lock();
        let mut out = Vec::new();
        for (i, f) in book.seats.records().enumerate() {
            let used = book.seats.used(i);
            let peak = book.peaks.get(i).copied().unwrap_or(used).max(used);
            let over = f
                .count
                .get()
                .map_or(0, |c| peak.saturating_sub(u64::from(c)));
            out.push((f.clone(), peak, used, book.seats.consumed(i), over));
        }
        if reset {
            let now: Vec<u64> = (0..book.keys.len()).map(|i| book.seats.used(i)).collect();
            book.peaks = now;
        }
        out
    }

    /// Every lease held.
    pub async fn leases(&self) -> Vec<Lease> {
        self.inner.lock().seats.leases().cloned().collect()
    }

    /// Every lease held, with its feature's name (read at one moment).
    pub fn named_leases(&self) -> Vec<NamedLease> {
        let book = self.inner.lock();
        book.seats
            .leases()
            .map(|l| NamedLease {
                lease: l.clone(),
                feature: book
                    .seats
                    .record(l.record)
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The key lease `id` is stored under in this instance's rows of the store: the count its id
    /// was made from, so new leases append (see [`tessera_core::seats::LeaseIds::stored_key`]), or,
    /// for a lease stored before schema 13, `-1 - id`.
    pub fn stored_key(&self, id: u64) -> i64 {
        self.inner.lock().stored_key(id)
    }

    /// How many leases are held.
    pub fn lease_count(&self) -> usize {
        self.inner.lock().seats.lease_count()
    }

    /// Answers a capability request with a response token: signed with the server's key, or, for
    /// a renew or return carrying a valid session proof, sealed with the lease's session key. The
    /// decision is stored before this returns; if storing fails, nothing is granted.
    pub async fn handle(&self, req: CapabilityRequest) -> Result<Answer, EngineError> {
        let req = CheckedRequest::check(req, self.inner.borrow_days.load(Ordering::SeqCst))?;
        // a renew or return proves that the caller holds the lease: only the device it was granted
        // to received its session key (in the signed grant, and never again)
        let seal = match &req.proof {
            Some(p) => {
                let key = self.inner.session_key(p.lease, &req.holder);
                if !check_session_proof(
                    &key,
                    req.operation,
                    &req.nonce,
                    &req.request_id,
                    p.lease,
                    &p.proof,
                ) {
                    return Err(EngineError::NotHolder(format!(
                        "session_proof does not prove lease {} for this device and user: use the session key of the grant that lease came with",
                        p.lease
                    )));
                }
                (!p.signed).then_some((p.lease, key))
            }
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            req,
            seal,
            reply: tx,
        };
        self.jobs
            .send(Job::Decide(Box::new(pending)))
            .map_err(|_| EngineError::Store(stopped().to_string()))?;
        rx.await.map_err(|_| {
            EngineError::Store(
                "the decision could not be committed (the server log says why)".into(),
            )
        })?
    }
}
