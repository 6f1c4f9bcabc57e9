//! The writer: one task takes every request waiting, decides them in the seat book one after
//! another (the core's seat policy decides; the writer orders, persists and answers), writes all
//! their changes in one transaction (a cluster round under the cluster's lock), and releases the
//! answers after the commit.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tessera_core::capability::{CapabilityResponseClaims, DeniedFeature, GrantedSeat, Operation};
use tessera_core::feature::Feature;
use tessera_core::model::Model;
use tessera_core::named_users::{Assignment, NamedUsers};
use tessera_core::policy::{self, CheckedRequest, SeatChange, SeatPolicy};
use tessera_core::reservations::{EntryStatus, Reservations};
use tessera_core::seats::Lease;
use tessera_core::time::OffsetDateTime;
use tessera_core::{Clock, SigningKey};
use tessera_store::{
    AnyStore, CatchUp, EngineState, InstanceId, LeaseChange, LeaseStore, StoreError, UsageEvent,
    UsageEventKind,
};
use tokio::sync::{mpsc, oneshot};

use crate::answer::{prepare_answers, Answer};
use crate::book::Book;
use crate::{AfterCommit, EngineError, MAX_BATCH};

/// A request on its way to the writer task, checked and parsed.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) req: CheckedRequest,
    /// Answered sealed with this lease's session key, not signed.
    pub(crate) seal: Option<(u64, [u8; 32])>,
    pub(crate) reply: oneshot::Sender<Result<Answer, EngineError>>,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    Decide(Box<Pending>),
    Sweep(oneshot::Sender<Result<usize, StoreError>>),
    Reload(Vec<Feature>, oneshot::Sender<Result<(), StoreError>>),
    /// Puts named users in force between two decisions; answers every assignment.
    Name(
        NamedUsers,
        oneshot::Sender<Result<Vec<Assignment>, StoreError>>,
    ),
    /// Puts reservations in force between two decisions; answers every entry's status.
    Reserve(
        Reservations,
        oneshot::Sender<Result<Vec<EntryStatus>, StoreError>>,
    ),
    /// Puts a named-pool model in force (or none) between two decisions.
    Pools(Option<Model>, oneshot::Sender<Result<(), StoreError>>),
    /// Returns the seats of the leases the administrator names, between two decisions.
    Release(
        crate::Release,
        oneshot::Sender<Result<Vec<crate::NamedLease>, StoreError>>,
    ),
}

/// The named-pool model the engine keeps in force across books made anew.
#[derive(Debug, Default)]
pub(crate) struct PoolModelState {
    /// The model (`None`: no named pools).
    pub(crate) model: Option<Model>,
    /// Why it is not in force now (it does not fit the records served, or reservations are).
    pub(crate) not_in_force: Option<String>,
    /// What the book could not place of it.
    pub(crate) problems: Vec<String>,
}

/// What the writer task remembers between rounds.
#[derive(Debug, Default)]
struct WriterState {
    /// The book may hold decisions that were not committed: rebuild before deciding.
    broken: bool,
    /// Cluster: the lease log position this book reflects (`None`: reload whole).
    since: Option<i64>,
    sweeps: u64,
}

/// The engine's state, shared by its handle and its writer.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) book: Mutex<Book>,
    pub(crate) store: AnyStore,
    /// Which instance's rows.
    pub(crate) instance: InstanceId,
    pub(crate) key: SigningKey,
    /// Derives the per-lease session keys.
    pub(crate) secret: [u8; 32],
    /// This server's host id as every answer names it (written once, not for every answer).
    pub(crate) server_name: String,
    pub(crate) clock: Arc<dyn Clock>,
    /// The policy; its borrow limits are the two below (the administrator may change them).
    pub(crate) policy: SeatPolicy,
    pub(crate) borrow_days: AtomicU32,
    pub(crate) borrows_per_account: AtomicU32,
    /// The lease length in seconds and the most leases per device (the administrator may change
    /// them while serving).
    pub(crate) lease_seconds: AtomicU32,
    pub(crate) leases_per_device: AtomicU32,
    /// This process's name in the lease log when the store is shared by a cluster.
    pub(crate) node: Option<String>,
    pub(crate) commits: AtomicU64,
    pub(crate) decisions: AtomicU64,
    pub(crate) commit_micros: AtomicU64,
    pub(crate) decide_micros: AtomicU64,
    /// On SQLite, the writer's own connection (see [`tessera_store::SqliteLeaseWriter`]).
    pub(crate) sync_writer: Option<Mutex<tessera_store::SqliteLeaseWriter>>,
    /// The server's runtime, where answers are signed (the writer may run on its own).
    pub(crate) runtime: tokio::runtime::Handle,
    /// The sequence number of the last commit that wrote the engine state (single process).
    pub(crate) seq: AtomicU64,
    /// Told after each commit (single process).
    pub(crate) after_commit: Option<Box<dyn AfterCommit>>,
    /// The reservations in force, put back in every book made anew.
    pub(crate) reservations: Mutex<Reservations>,
    /// The named users in force, put back in every book made anew.
    pub(crate) named_users: Mutex<NamedUsers>,
    /// The named-pool model, resolved again and put back in every book made anew.
    pub(crate) pools: Mutex<PoolModelState>,
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Unsupported {
        detail: "the license server is shutting down".into(),
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Book> {
        // a panic elsewhere cannot leave the book half-changed: decisions do not panic
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reservations in force.
    pub(crate) fn reservations(&self) -> Reservations {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The named-pool model's state.
    pub(crate) fn pool_state(&self) -> MutexGuard<'_, PoolModelState> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The named users in force.
    pub(crate) fn named_users(&self) -> NamedUsers {
        self.named_users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts the reservations, named users and named pools in force in a book made anew.
    fn reserve_in(&self, book: &mut Book) {
        let r = self.reservations();
        if !r.is_empty() {
            book.seats.set_reservations(&r);
        }
        book.seats.set_named_users(&self.named_users());
        self.pools_in(book);
    }

    /// Resolves the named-pool model against the book's records and puts it in force; when it
    /// no longer fits (or reservations are in force), the book serves without named pools and
    /// the state says why.
    fn pools_in(&self, book: &mut Book) {
        let mut st = self.pool_state();
        let outcome = match &st.model {
            None => {
                // taking pools out of force cannot fail
                let _ = book.seats.set_pools(None);
                st.not_in_force = None;
                st.problems.clear();
                return;
            }
            Some(model) => {
                let records: Vec<Feature> = book.seats.records().cloned().collect();
                model
                    .resolve(&records)
                    .map_err(|e| format!("the pool model does not fit the licenses served now ({e}); serving without named pools until a model that fits is uploaded or the licenses change"))
                    .and_then(|r| book.seats.set_pools(Some(&r)).map_err(|e| format!("the pool model is not in force: {e}")))
            }
        };
        match outcome {
            Ok(problems) => {
                for p in &problems {
                    tracing::warn!("named pools: {p}");
                }
                st.not_in_force = None;
                st.problems = problems;
            }
            Err(why) => {
                tracing::error!("{why}");
                let _ = book.seats.set_pools(None);
                st.not_in_force = Some(why);
                st.problems.clear();
            }
        }
    }

    /// The engine state change of the next commit (single process), with its sequence number.
    fn state_change(&self, book: &Book) -> LeaseChange {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        LeaseChange::State(EngineState {
            lease_digest: book.digest.hex(),
            commit_seq: seq,
            next_lease: book.seats.next_count(),
        })
    }

    /// After a commit: tells the daemon the sequence number committed.
    fn committed(&self) {
        if let Some(hook) = &self.after_commit {
            hook.committed(self.seq.load(Ordering::SeqCst));
        }
    }

    /// The policy now (with the borrow limits as last set).
    fn policy(&self) -> SeatPolicy {
        let mut p = self.policy;
        p.max_borrow_days = self.borrow_days.load(Ordering::SeqCst);
        p.max_borrows_per_account = self.borrows_per_account.load(Ordering::SeqCst);
        p.lease = tessera_core::time::Duration::seconds(i64::from(
            self.lease_seconds.load(Ordering::SeqCst),
        ));
        p.max_leases_per_device = self.leases_per_device.load(Ordering::SeqCst);
        p
    }

    /// The session key of `lease` for its holder `device_key`: SHA-256 of the secret and
    /// `|lease|ID|HOLDER` (hashed in pieces, with no string made for every grant).
    pub(crate) fn session_key(&self, lease: u64, device_key: &str) -> [u8; 32] {
        session_key(&self.secret, lease, device_key)
    }

    /// One round: (cluster) catches up, runs `work` on the book, commits the changes it made.
    async fn round<R: Send>(
        &self,
        st: &mut WriterState,
        work: impl FnOnce(&Inner, &mut Book, OffsetDateTime) -> (Vec<LeaseChange>, R) + Send,
    ) -> Result<R, StoreError> {
        let started = std::time::Instant::now();
        let r = self.round_inner(st, work).await;
        self.commit_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        r
    }

    async fn round_inner<R: Send>(
        &self,
        st: &mut WriterState,
        work: impl FnOnce(&Inner, &mut Book, OffsetDateTime) -> (Vec<LeaseChange>, R) + Send,
    ) -> Result<R, StoreError> {
        // nothing is decided without the database lock; once taken again, the book is read anew
        if self.store.claim_check()? {
            (st.broken, st.since) = (true, None);
        }
        if let Some(node) = &self.node {
            let since = st.since;
            let r = self
                .store
                .cluster_commit(&self.instance, node, since, |catch_up| {
                    let now = self.clock.now();
                    let mut book = self.lock();
                    match catch_up {
                        CatchUp::Changes(changes) => {
                            for c in changes {
                                book.apply_remote(c, now);
                            }
                        }
                        CatchUp::Full { leases, consumed } => {
                            let records: Vec<Feature> = book.seats.records().cloned().collect();
                            let peaks = std::mem::take(&mut book.peaks);
                            let next = book.seats.next_count();
                            // leases of records this member does not have stay stored: another
                            // member with a newer bundle may hold them
                            *book = Book::from_rows(records, self.secret, leases, consumed, now);
                            self.reserve_in(&mut book);
                            book.seats.skip_to_count(next);
                            for (p, old) in book.peaks.iter_mut().zip(peaks) {
                                *p = (*p).max(old);
                            }
                        }
                    }
                    work(self, &mut book, now)
                })
                .await;
            self.commits.fetch_add(1, Ordering::Relaxed);
            return match r {
                Ok((seq, out)) => {
                    st.since = Some(seq);
                    Ok(out)
                }
                Err(e) => {
                    // the book may hold what was not committed: the next round reloads it whole
                    st.since = None;
                    Err(e)
                }
            };
        }
        if st.broken {
            self.rebuild(None).await?;
            st.broken = false;
        }
        let deciding = std::time::Instant::now();
        let (changes, out, wrote) = {
            let now = self.clock.now();
            let mut book = self.lock();
            let (mut changes, out) = work(self, &mut book, now);
            // usage events alone change no seat: no new engine state (nor storage mark) for them
            let seats_changed = changes.iter().any(|c| !matches!(c, LeaseChange::Event(_)));
            if seats_changed {
                changes.push(self.state_change(&book));
            }
            (changes, out, seats_changed)
        };
        self.decide_micros.fetch_add(
            u64::try_from(deciding.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let applied = match &self.sync_writer {
            Some(w) => w.lock().unwrap_or_else(|e| e.into_inner()).apply(&changes),
            None => {
                self.store
                    .apply_lease_changes(&self.instance, changes)
                    .await
            }
        };
        if applied.is_ok() && wrote {
            self.committed();
        }
        if let Err(e) = applied {
            st.broken = true;
            match self.rebuild(None).await {
                Ok(()) => st.broken = false,
                Err(e2) => {
                    tracing::error!(error = %e2, "could not rebuild the seat book; will try again before the next decision")
                }
            }
            return Err(e);
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Rebuilds the book from the store (single process), over `records` or the current ones.
    pub(crate) async fn rebuild(&self, records: Option<Vec<Feature>>) -> Result<(), StoreError> {
        let (records, next) = {
            let book = self.lock();
            let records = records.unwrap_or_else(|| book.seats.records().cloned().collect());
            (records, book.seats.next_count())
        };
        let (mut fresh, stale, _) = Book::load(
            records,
            self.secret,
            &self.store,
            &self.instance,
            self.clock.now(),
        )
        .await?;
        // lease ids handed out before (and returned since) are not handed out again
        fresh.seats.skip_to_count(next);
        let mut changes: Vec<LeaseChange> = stale
            .into_iter()
            .map(|id| LeaseChange::Delete { id })
            .collect();
        if self.node.is_none() {
            changes.push(self.state_change(&fresh));
        }
        self.store
            .apply_lease_changes(&self.instance, changes)
            .await?;
        self.committed();
        self.reserve_in(&mut fresh);
        let mut book = self.lock();
        let peaks = std::mem::take(&mut book.peaks);
        *book = fresh;
        if book.peaks.len() == peaks.len() {
            for (p, old) in book.peaks.iter_mut().zip(peaks) {
                *p = (*p).max(old);
            }
        }
        Ok(())
    }

    async fn decide_batch(&self, st: &mut WriterState, batch: Vec<Pending>) {
        let n = batch.len();
        match self.commit_group(st, &batch).await {
            Ok(committed) => Self::answer(batch, committed),
            Err(e) if n > 1 && !matches!(e, StoreError::LockLost { .. }) => {
                // one request the store refuses must not fail the others: the book was rebuilt
                // (or will be, in a cluster), so decide them again one by one
                tracing::warn!(error = %e, requests = n, "a group commit failed; deciding its requests one by one");
                for p in batch {
                    match self.commit_group(st, std::slice::from_ref(&p)).await {
                        Ok(committed) => Self::answer(vec![p], committed),
                        Err(e) => {
                            tracing::error!(error = %e, "a decision could not be stored; nothing granted");
                            let _ = p.reply.send(Err(EngineError::Store(e.to_string())));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a decision could not be stored; nothing granted");
                for p in batch {
                    let _ = p.reply.send(Err(EngineError::Store(e.to_string())));
                }
            }
        }
    }

    /// Decides `batch` and commits its changes in one round. The answers are made meanwhile, on
    /// the server's runtime (see [`prepare_answers`]); the sender returned releases them.
    async fn commit_group(
        &self,
        st: &mut WriterState,
        batch: &[Pending],
    ) -> Result<oneshot::Sender<Vec<Pending>>, StoreError> {
        let r = self
            .round(st, |inner, book, now| {
                let mut changes = Vec::new();
                let policy = inner.policy();
                let claims = batch
                    .iter()
                    .map(|p| inner.decide(book, &policy, p, now, &mut changes))
                    .collect();
                let seals = batch.iter().map(|p| p.seal).collect();
                let (committed, answers_wait) = oneshot::channel();
                inner.runtime.spawn(prepare_answers(
                    claims,
                    seals,
                    inner.key.clone(),
                    answers_wait,
                ));
                (changes, committed)
            })
            .await;
        self.decisions
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        r
    }

    /// Releases the answers of a committed batch (made while it committed) to its handlers. The
    /// requests go with them and are freed on the runtime, where they were made.
    fn answer(batch: Vec<Pending>, committed: oneshot::Sender<Vec<Pending>>) {
        let _ = committed.send(batch);
    }

    async fn control(&self, st: &mut WriterState, job: Job) {
        match job {
            Job::Decide(p) => self.decide_batch(st, vec![*p]).await,
            Job::Sweep(reply) => {
                let r = self
                    .round(st, |_, book, now| {
                        let gone = book.seats.expire(now);
                        for l in &gone {
                            let h = book.hash(l);
                            book.digest.sub(h);
                        }
                        let changes: Vec<LeaseChange> = gone
                            .iter()
                            .map(|l| LeaseChange::Delete {
                                id: book.take_stored_key(l.id),
                            })
                            .collect();
                        (changes, gone.len())
                    })
                    .await;
                st.sweeps += 1;
                if self.node.is_some() && st.sweeps.is_multiple_of(60) {
                    if let Err(e) = self.store.prune_lease_log(&self.instance, 100_000).await {
                        tracing::warn!(error = %e, "could not prune the lease log");
                    }
                }
                let _ = reply.send(r);
            }
            Job::Release(which, reply) => {
                let r = self
                    .round(st, |_, book, _| {
                        let ids: Vec<u64> = book
                            .seats
                            .leases()
                            .filter(|l| which.matches(&l.device, l.id))
                            .map(|l| l.id)
                            .collect();
                        let mut changes = Vec::new();
                        let mut released = Vec::new();
                        for id in ids {
                            let Some(lease) = book.seats.release(id) else {
                                continue;
                            };
                            let h = book.hash(&lease);
                            book.digest.sub(h);
                            changes.push(LeaseChange::Delete {
                                id: book.take_stored_key(lease.id),
                            });
                            let feature = book
                                .seats
                                .record(lease.record)
                                .map(|f| f.name.clone())
                                .unwrap_or_default();
                            released.push(crate::NamedLease { lease, feature });
                        }
                        (changes, released)
                    })
                    .await;
                let _ = reply.send(r);
            }
            Job::Name(n, reply) => {
                let assigned = self.lock().seats.set_named_users(&n);
                *self.named_users.lock().unwrap_or_else(|e| e.into_inner()) = n;
                let _ = reply.send(Ok(assigned));
            }
            Job::Reserve(r, reply) => {
                let mut book = self.lock();
                let statuses = book.seats.set_reservations(&r);
                let empty = r.is_empty();
                *self.reservations.lock().unwrap_or_else(|e| e.into_inner()) = r;
                // reservations take named pools out of force; without them a model comes back
                if !empty || self.pool_state().model.is_some() {
                    self.pools_in(&mut book);
                }
                drop(book);
                let _ = reply.send(Ok(statuses));
            }
            Job::Pools(model, reply) => {
                let mut book = self.lock();
                self.pool_state().model = model;
                self.pools_in(&mut book);
                drop(book);
                let _ = reply.send(Ok(()));
            }
            Job::Reload(records, reply) => {
                let r = if self.node.is_some() {
                    {
                        let mut book = self.lock();
                        let next = book.seats.next_count();
                        *book = Book::empty(records, self.secret);
                        self.reserve_in(&mut book);
                        book.seats.skip_to_count(next);
                    }
                    st.since = None;
                    self.round(st, |_, _, _| (Vec::new(), ())).await
                } else {
                    self.rebuild(Some(records)).await
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Decides one request in the book under `policy` (the core's decision), appending the
    /// changes to store; returns the answer's claims.
    fn decide(
        &self,
        book: &mut Book,
        policy: &SeatPolicy,
        p: &Pending,
        now: OffsetDateTime,
        changes: &mut Vec<LeaseChange>,
    ) -> CapabilityResponseClaims {
        let req = &p.req;
        let decision = policy::decide(&mut book.seats, policy, req, now);
        for c in decision.changes {
            match c {
                SeatChange::Granted { lease, new } => {
                    book.note_peak(lease.record);
                    if new {
                        // a new lease (a retry returns the one already counted)
                        let h = book.hash(&lease);
                        book.digest.add(h);
                    }
                    // with what the client said about the device, in the same row (no
                    // extra statement): shown in the administrator's views
                    let mut row = book.stored_row(&lease);
                    row.alias.clone_from(&req.requester.alias);
                    row.device_type = req.requester.device_type;
                    changes.push(LeaseChange::Put(row));
                    if new && lease.overdraft > 0 {
                        changes.push(overdraft_event(book, req, &lease, now));
                    }
                }
                SeatChange::Consumed { record, units } => changes.push(LeaseChange::Consumed {
                    record_key: book.keys.get(record).cloned().unwrap_or_default(),
                    units: i64::try_from(units).unwrap_or(i64::MAX),
                }),
                SeatChange::Renewed { id, expires } => changes.push(LeaseChange::Expiry {
                    id: book.stored_key(id),
                    expires_at: expires,
                }),
                SeatChange::Returned(lease) => {
                    let h = book.hash(&lease);
                    book.digest.sub(h);
                    changes.push(LeaseChange::Delete {
                        id: book.take_stored_key(lease.id),
                    });
                }
                // a change this writer does not know cannot be persisted: the policy and the
                // writer are built together
                _ => {}
            }
        }
        // the refusals of what would have taken seats are recorded (a preview takes nothing, and a
        // renew or return names leases, not features); nothing to do when nothing was refused
        if !decision.denials.is_empty()
            && matches!(req.operation, Operation::Request | Operation::Borrow)
        {
            for d in &decision.denials {
                changes.push(denial_event(req, d, now));
            }
        }
        let grants = decision
            .granted
            .iter()
            .map(|g| self.seat(&g.lease, book, g.with_session_key.then_some(req)))
            .collect();
        CapabilityResponseClaims {
            nonce: req.nonce.clone(),
            request_id: req.request_id.clone(),
            device_id: req.requester.device.to_string(),
            operation: req.operation,
            server: self.server_name.clone(),
            iat: now,
            grants,
            denials: decision.denials,
            renew_interval_secs: policy.renew_interval_secs(),
        }
    }

    /// A lease as the answer shows it; with its session key for `holder`'s grant.
    fn seat(&self, l: &Lease, book: &Book, session_for: Option<&CheckedRequest>) -> GrantedSeat {
        let rec = book.seats.record(l.record);
        GrantedSeat {
            lease: l.id,
            feature: rec.map(|f| f.name.clone()).unwrap_or_default(),
            version: rec.map(|f| f.version.to_string()).unwrap_or_default(),
            count: l.count,
            overdraft: l.overdraft,
            expires: l.expires,
            borrowed: l.borrowed,
            session_key: session_for
                .map(|r| URL_SAFE_NO_PAD.encode(self.session_key(l.id, &r.holder))),
        }
    }
}

/// SHA-256 of `secret` and `|lease|LEASE|HOLDER`: see [`Inner::session_key`].
fn session_key(secret: &[u8; 32], lease: u64, device_key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(b"|lease|");
    h.update(itoa::Buffer::new().format(lease));
    h.update(b"|");
    h.update(device_key.as_bytes());
    h.finalize().into()
}

/// A usage event of `req`'s requester (device, user, alias), at `now`.
fn usage_event(
    req: &CheckedRequest,
    kind: UsageEventKind,
    what: (String, Option<String>, i64),
    why: (String, String),
    now: OffsetDateTime,
) -> LeaseChange {
    let who = &req.requester;
    let (feature, version, count) = what;
    let (code, message) = why;
    LeaseChange::Event(Box::new(UsageEvent {
        kind,
        at: now,
        device: who.device.to_string(),
        device_type: who.device_type.as_str().to_string(),
        user: who.user.clone(),
        alias: who.alias.clone(),
        feature,
        version,
        count,
        code,
        message,
    }))
}

/// The record of a refused feature: what was asked (version, seats) and why it was refused.
fn denial_event(req: &CheckedRequest, d: &DeniedFeature, now: OffsetDateTime) -> LeaseChange {
    let want = req.wants.iter().find(|w| w.name == d.feature);
    usage_event(
        req,
        UsageEventKind::Denial,
        (
            d.feature.clone(),
            want.map(|w| w.version.to_string()),
            want.map_or(0, |w| i64::from(w.count)),
        ),
        (d.code.clone(), d.message.clone()),
        now,
    )
}

/// The record of a new grant that took seats beyond the count: the seats beyond it.
fn overdraft_event(
    book: &Book,
    req: &CheckedRequest,
    lease: &Lease,
    now: OffsetDateTime,
) -> LeaseChange {
    let rec = book.seats.record(lease.record);
    let name = rec.map(|f| f.name.clone()).unwrap_or_default();
    let version = rec.map(|f| f.version.to_string());
    let of_count = rec
        .and_then(|f| f.count.get())
        .map_or(String::new(), |c| format!(" of {c}"));
    let message = format!(
        "granted {} seat(s) of {name}, {} beyond its count{of_count} (overdraft)",
        lease.count, lease.overdraft
    );
    usage_event(
        req,
        UsageEventKind::Overdraft,
        (name, version, i64::from(lease.overdraft)),
        ("overdraft".to_string(), message),
        now,
    )
}

/// Starts the writer: with SQLite's own writer connection, on a thread of its own (its commits
/// block that thread, and nothing else); otherwise as a task on the server's runtime.
pub(crate) fn spawn_writer(
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<Job>,
) -> Result<(), StoreError> {
    if inner.sync_writer.is_none() {
        tokio::spawn(writer(inner, rx));
        return Ok(());
    }
    let failed = |e: std::io::Error| StoreError::Write {
        detail: format!("cannot start the seat book's writer: {e}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    std::thread::Builder::new()
        .name("tessera-writer".into())
        .spawn(move || rt.block_on(writer(inner, rx)))
        .map_err(failed)?;
    Ok(())
}

/// The writer task: takes every decision waiting, commits them together, answers.
async fn writer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut st = WriterState::default();
    while let Some(job) = rx.recv().await {
        let Job::Decide(first) = job else {
            inner.control(&mut st, job).await;
            continue;
        };
        let mut batch = Vec::with_capacity((rx.len() + 1).min(MAX_BATCH));
        batch.push(*first);
        let mut next = None;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Decide(p)) => batch.push(*p),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        inner.decide_batch(&mut st, batch).await;
        if let Some(job) = next {
            inner.control(&mut st, job).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_derived_as_before_from_the_lease_in_decimal() {
        // the derivation leases granted before a restart were answered with
        let secret = [7u8; 32];
        for (lease, holder) in [
            (0, "string=a"),
            (7, "string=b"),
            (1_000_000_007, "string=c|user=bo"),
            (4_611_686_018_427_387_904, "ethernet=0050569a3b03|user=ann"),
            (u64::MAX, ""),
        ] {
            let mut h = Sha256::new();
            h.update(secret);
            h.update(format!("|lease|{lease}|{holder}").as_bytes());
            let before: [u8; 32] = h.finalize().into();
            assert_eq!(session_key(&secret, lease, holder), before);
        }
    }
}
