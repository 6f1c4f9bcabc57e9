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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tessera_core::capability::{
    check_session_proof, CapabilityRequest, CapabilityResponseClaims, DeniedFeature, GrantedSeat,
    Operation,
};
use tessera_core::feature::Feature;
use tessera_core::seats::{Denial, Lease, Outcome, SeatBook, Want};
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::{Clock, HostId, SigningKey};
use tessera_store::{
    AnyStore, CatchUp, LeaseChange, LeaseRow, LeaseStore, MetaStore, StoreError,
    LEASES_DIGEST_SETTING,
};
use tokio::sync::{mpsc, oneshot};

/// Most requests decided and committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Why a capability request was not answered (a refusal of a feature is an answer, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
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

/// The restore detector's high-water mark, kept outside the store: after every commit the
/// writer writes `EPOCH.SEQUENCE` (the anchor of this start and the commit's sequence number, which
/// the store holds with the lease digest) over each file, in place, without a sync. A copy of the
/// store taken at any moment, restored later, holds a lower sequence than these files, and the
/// next start refuses it. See [`HighWater::parse`].
#[derive(Debug)]
pub struct HighWater {
    /// The anchor of this start.
    pub epoch: i64,
    /// The files, open for writing.
    pub files: Vec<(std::path::PathBuf, std::fs::File)>,
}

impl HighWater {
    /// The text of a mark (fixed width, so each write covers the one before).
    pub fn format(epoch: i64, seq: u64) -> String {
        format!("{epoch:020}.{seq:020}\n")
    }

    /// Reads a mark: `EPOCH.SEQUENCE`, or `EPOCH` alone (as earlier versions wrote it).
    pub fn parse(text: &str) -> Option<(i64, u64)> {
        let text = text.trim();
        match text.split_once('.') {
            Some((e, s)) => Some((e.parse().ok()?, s.parse().ok()?)),
            None => Some((text.parse().ok()?, 0)),
        }
    }

    fn write(&self, seq: u64) {
        use std::os::unix::fs::FileExt as _;
        let text = HighWater::format(self.epoch, seq);
        for (path, f) in &self.files {
            if let Err(e) = f.write_all_at(text.as_bytes(), 0) {
                tracing::warn!(error = %e, file = %path.display(), "could not move the storage anchor forward");
            }
        }
    }
}

/// Whether an engine has its store to itself.
#[derive(Debug)]
pub enum Sharing {
    /// One process serves the store; the restore detector's mark (if any) moves with each commit.
    Alone(Option<HighWater>),
    /// Several processes share the (PostgreSQL) store and one pool, through the lease log.
    Cluster,
}

/// The lease digest setting's value: the digest, the commit's sequence number and the lease
/// count the next lease is made from, separated by `@`.
pub fn digest_value(digest_hex: &str, seq: u64, next_lease: u64) -> String {
    format!("{digest_hex}@{seq}@{next_lease}")
}

/// A stored lease digest setting, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DigestValue<'a> {
    /// The digest (empty: not checked at the next start).
    pub hex: &'a str,
    /// The sequence number of the commit that wrote it (0 when the value has none, as earlier
    /// versions wrote it).
    pub seq: u64,
    /// The count the next lease is made from (0: unknown).
    pub next_lease: u64,
}

/// Reads a stored lease digest setting (see [`digest_value`]).
pub fn parse_digest_value(value: &str) -> DigestValue<'_> {
    let mut parts = value.split('@');
    let hex = parts.next().unwrap_or_default();
    let mut number = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = number();
    let next_lease = number();
    DigestValue {
        hex,
        seq,
        next_lease,
    }
}

/// Lease timing and limits.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// The longest borrow.
    pub max_borrow_days: u32,
    /// Most borrowed (offline) leases one device and user may hold at once.
    pub max_borrows_per_account: u32,
    /// Most leases one device (all its users together) may hold at once: an uncounted feature
    /// gives as many as asked for, so this bounds what one client can make the server keep.
    pub max_leases_per_device: u32,
}

/// Default [`LeasePolicy::max_leases_per_device`].
pub const DEFAULT_MAX_LEASES_PER_DEVICE: u32 = 1000;

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            lease: Duration::minutes(5),
            max_borrow_days: 7,
            max_borrows_per_account: 3,
            max_leases_per_device: DEFAULT_MAX_LEASES_PER_DEVICE,
        }
    }
}

fn row(l: &Lease, keys: &[String]) -> LeaseRow {
    LeaseRow {
        id: i64::try_from(l.id).unwrap_or(i64::MAX),
        device: l.device.clone(),
        request_id: l.request_id.clone(),
        record_key: keys.get(l.record).cloned().unwrap_or_default(),
        count: i64::from(l.count),
        overdraft: i64::from(l.overdraft),
        expires_at: l.expires,
        borrowed: l.borrowed,
    }
}

fn denial_code(d: &Denial) -> &'static str {
    match d {
        Denial::NotLicensed { .. } => "not_licensed",
        Denial::VersionTooLow { .. } => "version_too_low",
        Denial::NotActive { .. } => "not_active",
        Denial::AllInUse { .. } => "all_in_use",
        Denial::BadCount { .. } => "bad_count",
        _ => "denied",
    }
}

/// The engine. Cheap to share behind an `Arc`; dropping it stops its writer task once the
/// requests already handed to it are done.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    jobs: mpsc::UnboundedSender<Job>,
}

#[derive(Debug)]
struct Inner {
    book: Mutex<Book>,
    store: AnyStore,
    key: SigningKey,
    /// Derives the per-lease session keys.
    secret: [u8; 32],
    server: HostId,
    clock: Arc<dyn Clock>,
    policy: LeasePolicy,
    borrow_days: AtomicU32,
    borrows_per_account: AtomicU32,
    /// This process's name in the lease log when the store is shared by a cluster.
    node: Option<String>,
    commits: AtomicU64,
    decisions: AtomicU64,
    commit_micros: AtomicU64,
    decide_micros: AtomicU64,
    /// On SQLite, the writer's own connection (see [`tessera_store::SqliteLeaseWriter`]).
    sync_writer: Option<Mutex<tessera_store::SqliteLeaseWriter>>,
    /// The server's runtime, where answers are signed (the writer may run on its own).
    runtime: tokio::runtime::Handle,
    /// The sequence number of the last commit that wrote the lease digest (single process).
    seq: AtomicU64,
    /// Where the writer moves the restore detector's mark after each commit (single process).
    high_water: Option<HighWater>,
}

/// The digest of a set of leases: the sum (mod 2^256) of a keyed hash of each, so adding or
/// removing one lease updates it in constant time and the order does not matter. Stored with every
/// commit; recomputed from the rows at start. A row deleted or changed by hand (other than its
/// expiry, which renewals move all the time) no longer adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SetDigest([u64; 4]);

impl SetDigest {
    fn add(&mut self, h: [u8; 32]) {
        let mut carry = false;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i * 8..i * 8 + 8]);
            let (a, c1) = limb.overflowing_add(u64::from_le_bytes(w));
            let (b, c2) = a.overflowing_add(u64::from(carry));
            *limb = b;
            carry = c1 || c2;
        }
    }

    fn sub(&mut self, h: [u8; 32]) {
        let mut borrow = false;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i * 8..i * 8 + 8]);
            let (a, b1) = limb.overflowing_sub(u64::from_le_bytes(w));
            let (b, b2) = a.overflowing_sub(u64::from(borrow));
            *limb = b;
            borrow = b1 || b2;
        }
    }

    fn hex(&self) -> String {
        self.0.iter().rev().map(|l| format!("{l:016x}")).collect()
    }
}

/// The keyed hash of a stored lease (everything but its expiry).
fn row_hash(secret: &[u8; 32], r: &LeaseRow) -> [u8; 32] {
    lease_hash(
        secret,
        r.id,
        [&r.device, &r.request_id, &r.record_key],
        r.count,
        r.overdraft,
        r.borrowed,
    )
}

/// [`row_hash`] of the fields themselves (no row built for it).
fn lease_hash(
    secret: &[u8; 32],
    id: i64,
    texts: [&str; 3],
    count: i64,
    overdraft: i64,
    borrowed: bool,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(b"|lease-row|");
    h.update(id.to_le_bytes());
    for text in texts {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.update(count.to_le_bytes());
    h.update(overdraft.to_le_bytes());
    h.update([u8::from(borrowed)]);
    h.finalize().into()
}

#[derive(Debug)]
struct Book {
    seats: SeatBook,
    keys: Vec<String>,
    index: HashMap<String, usize>,
    /// Most seats in use at once per record since the last usage report.
    peaks: Vec<u64>,
    /// The digest of the leases held (single process; see [`SetDigest`]).
    digest: SetDigest,
    secret: [u8; 32],
}

impl Book {
    fn empty(records: Vec<Feature>, secret: [u8; 32]) -> Book {
        let keys: Vec<String> = records.iter().map(record_key).collect();
        let index = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let peaks = vec![0; keys.len()];
        Book {
            seats: SeatBook::new(records).with_id_key(&secret),
            keys,
            index,
            peaks,
            digest: SetDigest::default(),
            secret,
        }
    }

    fn hash(&self, l: &Lease) -> [u8; 32] {
        let key = self.keys.get(l.record).map(String::as_str).unwrap_or("");
        lease_hash(
            &self.secret,
            i64::try_from(l.id).unwrap_or(i64::MAX),
            [&l.device, &l.request_id, key],
            i64::from(l.count),
            i64::from(l.overdraft),
            l.borrowed,
        )
    }

    fn lease_of(&self, r: LeaseRow) -> Option<Lease> {
        let record = *self.index.get(r.record_key.as_str())?;
        Some(Lease {
            id: u64::try_from(r.id).ok()?,
            device: r.device,
            request_id: r.request_id,
            record,
            count: u32::try_from(r.count).ok()?,
            overdraft: u32::try_from(r.overdraft).unwrap_or(0),
            expires: r.expires_at,
            borrowed: r.borrowed,
        })
    }

    /// A book over `records` holding the stored leases; returns it with the ids of stored leases it
    /// could not hold (expired, or of a record no longer in the bundle).
    fn from_rows(
        records: Vec<Feature>,
        secret: [u8; 32],
        leases: Vec<LeaseRow>,
        consumed: Vec<(String, i64)>,
        now: OffsetDateTime,
    ) -> Book {
        let mut book = Book::empty(records, secret);
        let mut stale = Vec::new();
        let mut all = SetDigest::default();
        for r in leases {
            book.hold_row(r, now, &mut stale, &mut all);
        }
        book.finish(consumed);
        book
    }

    /// A book over `records` holding the leases in the store, read one by one; with the ids of
    /// stored leases it could not hold.
    /// Also returns the digest of every stored row (held or not), to compare with the stored one.
    async fn load(
        records: Vec<Feature>,
        secret: [u8; 32],
        store: &AnyStore,
        now: OffsetDateTime,
    ) -> Result<(Book, Vec<i64>, SetDigest), StoreError> {
        let mut book = Book::empty(records, secret);
        let mut stale = Vec::new();
        let mut all = SetDigest::default();
        store
            .scan_leases(|r| book.hold_row(r, now, &mut stale, &mut all))
            .await?;
        book.finish(store.load_consumed().await?);
        Ok((book, stale, all))
    }

    fn hold_row(
        &mut self,
        r: LeaseRow,
        now: OffsetDateTime,
        stale: &mut Vec<i64>,
        all: &mut SetDigest,
    ) {
        let id = r.id;
        // ids in the store are never handed out again, held here or not
        self.seats.skip_past(u64::try_from(id).unwrap_or(0));
        let h = row_hash(&self.secret, &r);
        all.add(h);
        let held = self.lease_of(r).is_some_and(|l| self.seats.restore(l, now));
        if held {
            self.digest.add(h);
        } else {
            stale.push(id);
        }
    }

    fn finish(&mut self, consumed: Vec<(String, i64)>) {
        let book = self;
        for (k, units) in consumed {
            if let Some(&i) = book.index.get(k.as_str()) {
                book.seats
                    .restore_consumed(i, u64::try_from(units).unwrap_or(0));
            }
        }
        book.peaks = (0..book.keys.len()).map(|i| book.seats.used(i)).collect();
    }

    /// Applies a change another cluster member committed.
    fn apply_remote(&mut self, c: LeaseChange, now: OffsetDateTime) {
        // an id another member used is never handed out here, whether this member holds it or not
        if let LeaseChange::Put(LeaseRow { id, .. })
        | LeaseChange::Expiry { id, .. }
        | LeaseChange::Delete { id } = &c
        {
            self.seats.skip_past(u64::try_from(*id).unwrap_or(0));
        }
        match c {
            LeaseChange::Put(r) => {
                let id = u64::try_from(r.id).unwrap_or(0);
                match self.lease_of(r) {
                    Some(l) => {
                        let record = l.record;
                        self.seats.put(l, now);
                        self.note_peak(record);
                    }
                    None => {
                        self.seats.release(id);
                    }
                }
            }
            LeaseChange::Expiry { id, expires_at } => {
                self.seats
                    .set_expiry(u64::try_from(id).unwrap_or(0), expires_at);
            }
            LeaseChange::Delete { id } => {
                self.seats.release(u64::try_from(id).unwrap_or(0));
            }
            LeaseChange::Consumed { record_key, units } => {
                if let Some(&i) = self.index.get(record_key.as_str()) {
                    self.seats
                        .restore_consumed(i, u64::try_from(units).unwrap_or(0));
                }
            }
            _ => {}
        }
    }

    fn note_peak(&mut self, record: usize) {
        let used = self.seats.used(record);
        if let Some(p) = self.peaks.get_mut(record) {
            *p = (*p).max(used);
        }
    }
}

/// A request on its way to the writer task, checked and parsed.
#[derive(Debug)]
struct Pending {
    req: CapabilityRequest,
    device: HostId,
    device_key: String,
    wants: Vec<Want>,
    /// Answered sealed with this lease's session key, not signed.
    seal: Option<(u64, [u8; 32])>,
    reply: oneshot::Sender<Result<Answer, EngineError>>,
}

/// The answer to a capability request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response token: signed (JWS, checked with the server certificate) or sealed (checked
    /// with the lease's session key).
    pub token: String,
    /// Sealed with the lease's session key: the client needs no certificate to check it.
    pub sealed: bool,
    /// The answer refuses at least one feature or lease.
    pub denied: bool,
}

/// Makes the answers to a decided batch while its commit runs (sealed ones with their lease's
/// session key, the others signed together under one signature), and hands them to their handlers
/// only when the writer sends the batch back after the commit. If the commit fails the batch never
/// comes and the answers are dropped unsent.
async fn prepare_answers(
    claims: Vec<CapabilityResponseClaims>,
    seals: Vec<Option<(u64, [u8; 32])>>,
    key: SigningKey,
    committed: oneshot::Receiver<Vec<Pending>>,
) {
    let sign_failed = |e: tessera_core::document::SignError| EngineError::Sign(e.to_string());
    let mut answers: Vec<Option<Result<Answer, EngineError>>> = Vec::with_capacity(claims.len());
    let mut to_sign = Vec::new();
    let mut signed_at = Vec::new();
    for (i, (c, seal)) in claims.into_iter().zip(seals).enumerate() {
        let denied = !c.denials.is_empty();
        match seal {
            Some((lease, k)) => {
                answers.push(Some(c.seal(&k, lease).map_err(sign_failed).map(|token| {
                    Answer {
                        token,
                        sealed: true,
                        denied,
                    }
                })))
            }
            None => {
                answers.push(None);
                signed_at.push((i, denied));
                to_sign.push(c);
            }
        }
    }
    if !to_sign.is_empty() {
        match CapabilityResponseClaims::sign_batch(&to_sign, &key) {
            Ok(tokens) => {
                for ((i, denied), token) in signed_at.into_iter().zip(tokens) {
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(Ok(Answer {
                            token,
                            sealed: false,
                            denied,
                        }));
                    }
                }
            }
            Err(e) => {
                for (i, _) in signed_at {
                    if let Some(a) = answers.get_mut(i) {
                        *a = Some(Err(EngineError::Sign(e.to_string())));
                    }
                }
            }
        }
    }
    // nothing leaves before the decisions are committed
    let Ok(batch) = committed.await else {
        return;
    };
    for (p, a) in batch.into_iter().zip(answers) {
        let a = a.unwrap_or_else(|| Err(EngineError::Sign("no answer was made".into())));
        let _ = p.reply.send(a);
    }
}

#[derive(Debug)]
enum Job {
    Decide(Box<Pending>),
    Sweep(oneshot::Sender<Result<usize, StoreError>>),
    Reload(Vec<Feature>, oneshot::Sender<Result<(), StoreError>>),
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

impl Engine {
    /// An engine over the feature records of the current license bundle, with the leases and
    /// metered use found in the store (expired leases are dropped and deleted). In a
    /// [`Sharing::Cluster`] (PostgreSQL only) the store is shared with other server processes
    /// through the lease log.
    pub async fn load(
        records: Vec<Feature>,
        store: AnyStore,
        key: SigningKey,
        server: HostId,
        clock: Arc<dyn Clock>,
        policy: LeasePolicy,
        sharing: Sharing,
    ) -> Result<Engine, LoadError> {
        let (cluster, high_water) = match sharing {
            Sharing::Alone(marks) => (false, marks),
            Sharing::Cluster => (true, None),
        };
        let secret: [u8; 32] = {
            let pem = key.to_pkcs8_pem().map_err(|e| StoreError::Corrupt {
                detail: format!("the server key: {e}"),
            })?;
            let mut h = Sha256::new();
            h.update(b"tessera-session-secret|");
            h.update(pem.as_bytes());
            h.finalize().into()
        };
        let node = if cluster {
            if matches!(store, AnyStore::Sqlite(_)) {
                return Err(StoreError::Unsupported {
                    detail: "`cluster = true` needs a PostgreSQL database (`database = \"postgres://…\"` in server.toml): an SQLite store serves one process".into(),
                }
                .into());
            }
            let mut b = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            Some(format!(
                "{}-{}",
                std::process::id(),
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ))
        } else {
            None
        };
        let sync_writer = match &store {
            AnyStore::Sqlite(s) if !cluster => s.lease_writer().ok().map(Mutex::new),
            _ => None,
        };
        let mut seq = 0;
        let book = if cluster {
            Book::empty(records, secret)
        } else {
            let (mut book, stale, all) = Book::load(records, secret, &store, clock.now()).await?;
            // the leases must add up to the digest the last commit stored with them
            if let Some(stored) = store.get_setting(LEASES_DIGEST_SETTING).await? {
                let stored = parse_digest_value(&stored);
                seq = stored.seq;
                // ids of leases returned before the restart are not handed out again
                book.seats.skip_to_count(stored.next_lease);
                if !stored.hex.is_empty() && stored.hex != all.hex() {
                    return Err(LoadError::EditedLeases {
                        stored: stored.hex.to_string(),
                        found: all.hex(),
                    });
                }
            }
            let mut changes: Vec<LeaseChange> = stale
                .into_iter()
                .map(|id| LeaseChange::Delete { id })
                .collect();
            seq += 1;
            changes.push(LeaseChange::Digest {
                value: digest_value(&book.digest.hex(), seq, book.seats.next_count()),
            });
            store.apply_lease_changes(changes).await?;
            if let Some(hw) = &high_water {
                hw.write(seq);
            }
            book
        };
        let inner = Arc::new(Inner {
            book: Mutex::new(book),
            store,
            key,
            secret,
            server,
            clock,
            borrow_days: AtomicU32::new(policy.max_borrow_days),
            borrows_per_account: AtomicU32::new(policy.max_borrows_per_account),
            policy,
            node,
            commits: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            decide_micros: AtomicU64::new(0),
            sync_writer,
            runtime: tokio::runtime::Handle::current(),
            seq: AtomicU64::new(seq),
            high_water: if cluster { None } else { high_water },
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

    /// Returns the seats of expired leases and deletes them from the store (in a cluster, also
    /// brings this member's book up to date with the others').
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.ask(Job::Sweep).await
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

    /// How many leases are held.
    pub fn lease_count(&self) -> usize {
        self.inner.lock().seats.lease_count()
    }

    /// Answers a capability request with a response token: signed with the server's key, or, for
    /// a renew or return carrying a valid session proof, sealed with the lease's session key. The
    /// decision is stored before this returns; if storing fails, nothing is granted.
    pub async fn handle(&self, mut req: CapabilityRequest) -> Result<Answer, EngineError> {
        if req.nonce.len() < 16 || req.nonce.len() > 128 {
            return Err(EngineError::BadRequest(
                "nonce: 16 to 128 characters".into(),
            ));
        }
        if req.request_id.is_empty() || req.request_id.len() > 128 {
            return Err(EngineError::BadRequest(
                "request_id: 1 to 128 characters".into(),
            ));
        }
        let device: HostId = req
            .device_id
            .parse()
            .map_err(|e| EngineError::BadRequest(format!("device_id: {e}")))?;
        if req.features.len() > 100 || req.leases.len() > 1000 {
            return Err(EngineError::BadRequest(
                "at most 100 features and 1000 leases".into(),
            ));
        }
        // one feature once: a name asked for twice would make one decision look like two (and a
        // retry of it would meet its own lease)
        for (i, f) in req.features.iter().enumerate() {
            if let Some(j) = req.features[..i].iter().position(|g| g.name == f.name) {
                return Err(EngineError::BadRequest(format!(
                    "features[{i}]: {} is already asked for in features[{j}]; ask for each feature once, with the total count and the highest version needed",
                    f.name
                )));
            }
        }
        if req.device_id.contains("|user=") {
            return Err(EngineError::BadRequest(
                "device_id: `|user=` is not part of a host id; send the user in `user`".into(),
            ));
        }
        if req.user.as_ref().is_some_and(|u| u.len() > 256)
            || req.alias.as_ref().is_some_and(|a| a.len() > 256)
        {
            return Err(EngineError::BadRequest(
                "user and alias: at most 256 characters".into(),
            ));
        }
        if req.operation == Operation::Borrow {
            let max_days = self.inner.borrow_days.load(Ordering::SeqCst);
            let days = req.borrow_days.unwrap_or(max_days);
            if days == 0 || days > max_days {
                return Err(EngineError::BadRequest(format!(
                    "borrow_days: 1 to {max_days}"
                )));
            }
        }
        for (name, text) in [
            ("request_id", Some(&req.request_id)),
            ("nonce", Some(&req.nonce)),
            ("device_id", Some(&req.device_id)),
            ("user", req.user.as_ref()),
            ("alias", req.alias.as_ref()),
        ] {
            if text.is_some_and(|t| t.chars().any(char::is_control)) {
                return Err(EngineError::BadRequest(format!(
                    "{name}: control characters are not allowed"
                )));
            }
        }
        let device_key = match &req.user {
            Some(u) => format!("{device}|user={u}"),
            None => device.to_string(),
        };
        // a renew or return proves that the caller holds the lease: only the device it was granted
        // to received its session key (in the signed grant, and never again)
        let seal = match (req.operation, req.session_proof.as_deref()) {
            (Operation::Renew | Operation::Return, proof) => {
                let [lease] = req.leases.as_slice() else {
                    return Err(EngineError::BadRequest(
                        "leases: a renew or return names exactly one lease, with its session_proof"
                            .into(),
                    ));
                };
                let Some(proof) = proof else {
                    return Err(EngineError::BadRequest(format!(
                        "session_proof: a renew or return of lease {lease} must prove that it holds the lease, with the session key its grant carried (docs/protocol.md)"
                    )));
                };
                let key = self.inner.session_key(*lease, &device_key);
                if !check_session_proof(
                    &key,
                    req.operation,
                    &req.nonce,
                    &req.request_id,
                    *lease,
                    proof,
                ) {
                    return Err(EngineError::NotHolder(format!(
                        "session_proof does not prove lease {lease} for this device and user: use the session key of the grant that lease came with"
                    )));
                }
                (!req.signed).then_some((*lease, key))
            }
            (_, Some(_)) => {
                return Err(EngineError::BadRequest(
                    "session_proof goes with a renew or return".into(),
                ))
            }
            (_, None) => None,
        };
        let wants: Vec<Want> = std::mem::take(&mut req.features)
            .into_iter()
            .map(|f| Want {
                name: f.name,
                version: f.version,
                count: f.count,
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            req,
            device,
            device_key,
            wants,
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

fn stopped() -> StoreError {
    StoreError::Unsupported {
        detail: "the license server is shutting down".into(),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // a panic elsewhere cannot leave the book half-changed: decisions do not panic
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease digest change of the next commit (single process), with its sequence number.
    fn digest_change(&self, book: &Book) -> LeaseChange {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        LeaseChange::Digest {
            value: digest_value(&book.digest.hex(), seq, book.seats.next_count()),
        }
    }

    /// After a commit: moves the restore detector's mark to the sequence number committed.
    fn committed(&self) {
        if let Some(hw) = &self.high_water {
            hw.write(self.seq.load(Ordering::SeqCst));
        }
    }

    fn session_key(&self, lease: u64, device_key: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(format!("|lease|{lease}|{device_key}").as_bytes());
        h.finalize().into()
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
                .cluster_commit(node, since, |catch_up| {
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
        let (changes, out) = {
            let now = self.clock.now();
            let mut book = self.lock();
            let (mut changes, out) = work(self, &mut book, now);
            if !changes.is_empty() {
                changes.push(self.digest_change(&book));
            }
            (changes, out)
        };
        self.decide_micros.fetch_add(
            u64::try_from(deciding.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let wrote = !changes.is_empty();
        let applied = match &self.sync_writer {
            Some(w) => w.lock().unwrap_or_else(|e| e.into_inner()).apply(&changes),
            None => self.store.apply_lease_changes(changes).await,
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
    async fn rebuild(&self, records: Option<Vec<Feature>>) -> Result<(), StoreError> {
        let (records, next) = {
            let book = self.lock();
            let records = records.unwrap_or_else(|| book.seats.records().cloned().collect());
            (records, book.seats.next_count())
        };
        let (mut fresh, stale, _) =
            Book::load(records, self.secret, &self.store, self.clock.now()).await?;
        // lease ids handed out before (and returned since) are not handed out again
        fresh.seats.skip_to_count(next);
        let mut changes: Vec<LeaseChange> = stale
            .into_iter()
            .map(|id| LeaseChange::Delete { id })
            .collect();
        if self.node.is_none() {
            changes.push(self.digest_change(&fresh));
        }
        self.store.apply_lease_changes(changes).await?;
        self.committed();
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
                let claims = batch
                    .iter()
                    .map(|p| inner.decide(book, p, now, &mut changes))
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
                                id: i64::try_from(l.id).unwrap_or(i64::MAX),
                            })
                            .collect();
                        (changes, gone.len())
                    })
                    .await;
                st.sweeps += 1;
                if self.node.is_some() && st.sweeps.is_multiple_of(60) {
                    if let Err(e) = self.store.prune_lease_log(100_000).await {
                        tracing::warn!(error = %e, "could not prune the lease log");
                    }
                }
                let _ = reply.send(r);
            }
            Job::Reload(records, reply) => {
                let r = if self.node.is_some() {
                    {
                        let mut book = self.lock();
                        let next = book.seats.next_count();
                        *book = Book::empty(records, self.secret);
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

    /// Decides one request in the book, appending the changes to store.
    fn decide(
        &self,
        book: &mut Book,
        p: &Pending,
        now: OffsetDateTime,
        changes: &mut Vec<LeaseChange>,
    ) -> CapabilityResponseClaims {
        let req = &p.req;
        let device_key = p.device_key.as_str();
        let wants = &p.wants;
        let mut grants = Vec::new();
        let mut denials = Vec::new();
        let session = |l: &Lease| Some(URL_SAFE_NO_PAD.encode(self.session_key(l.id, device_key)));
        let seat = |l: &Lease, book: &Book, with_session: bool| {
            let rec = book.seats.records().nth(l.record);
            GrantedSeat {
                lease: l.id,
                feature: rec.map(|f| f.name.clone()).unwrap_or_default(),
                version: rec.map(|f| f.version.to_string()).unwrap_or_default(),
                count: l.count,
                overdraft: l.overdraft,
                expires: l.expires,
                borrowed: l.borrowed,
                session_key: if with_session { session(l) } else { None },
            }
        };
        match req.operation {
            Operation::Request | Operation::Borrow | Operation::Preview => {
                let preview = req.operation == Operation::Preview;
                // the leases a retry of this request id would return are counted already
                let retried: Vec<Option<u64>> = if preview {
                    Vec::new()
                } else {
                    wants
                        .iter()
                        .map(|w| book.seats.retry_of(device_key, &req.request_id, &w.name))
                        .collect()
                };
                // a device (all its users together) holds at most `max_leases_per_device` leases:
                // uncounted features cannot make one client fill the store
                let new_leases = retried.iter().filter(|r| r.is_none()).count();
                let held_leases = book.seats.held_by(device_key);
                let max_leases = self.policy.max_leases_per_device;
                let over_cap = !preview
                    && u64::from(held_leases).saturating_add(new_leases as u64)
                        > u64::from(max_leases);
                if over_cap {
                    for w in wants {
                        denials.push(DeniedFeature {
                            feature: w.name.clone(),
                            code: "lease_limit".into(),
                            message: format!(
                                "this device holds {held_leases} leases, and a device may hold at most {max_leases} (max_leases_per_device in server.toml): return some first"
                            ),
                        });
                    }
                }
                let borrow_until = match req.operation {
                    _ if over_cap => None,
                    Operation::Borrow => {
                        let max_days = self.borrow_days.load(Ordering::SeqCst);
                        let max_active = self.borrows_per_account.load(Ordering::SeqCst);
                        let days = req
                            .borrow_days
                            .unwrap_or(max_days)
                            .clamp(1, max_days.max(1));
                        // seats, counted per device and per user (docs/protocol.md, "Borrowing")
                        let held = book.seats.borrowed_by(device_key);
                        let asked = wants
                            .iter()
                            .zip(&retried)
                            .filter(|(_, r)| r.is_none())
                            .fold(0u64, |n, (w, _)| n.saturating_add(u64::from(w.count)));
                        if u64::from(held).saturating_add(asked) > u64::from(max_active) {
                            // the issuer enforces the per-account limit: nothing is borrowed
                            for w in wants {
                                denials.push(DeniedFeature {
                                    feature: w.name.clone(),
                                    code: "borrow_limit".into(),
                                    message: format!(
                                        "at most {max_active} seats may be borrowed at once per device and per user; {held} already are and {asked} more were asked for: return one first"
                                    ),
                                });
                            }
                            None
                        } else {
                            Some(now + Duration::days(i64::from(days)))
                        }
                    }
                    _ => None,
                };
                let refused_all =
                    over_cap || (req.operation == Operation::Borrow && borrow_until.is_none());
                let seats = &mut book.seats;
                // a preview decides in the book and then undoes it (cheaper than a copy of a
                // million leases); under a request id no client can send, so it never meets a
                // lease a retry would return
                let consumed_before: Vec<u64> = if preview {
                    (0..seats.records().count())
                        .map(|i| seats.consumed(i))
                        .collect()
                } else {
                    Vec::new()
                };
                let outcomes = if refused_all {
                    Vec::new()
                } else {
                    seats.request(
                        device_key,
                        if preview {
                            "\u{0}preview"
                        } else {
                            &req.request_id
                        },
                        wants,
                        now,
                        self.policy.lease,
                        borrow_until,
                    )
                };
                if preview {
                    for o in &outcomes {
                        if let Outcome::Granted(l) = o {
                            seats.release(l.id);
                        }
                    }
                    for (i, c) in consumed_before.into_iter().enumerate() {
                        seats.restore_consumed(i, c);
                    }
                }
                let mut granted = Vec::new();
                for (i, (w, o)) in wants.iter().zip(outcomes).enumerate() {
                    match o {
                        Outcome::Granted(l) => {
                            let new = retried.get(i).is_some_and(|r| r.is_none());
                            granted.push((l, new));
                        }
                        Outcome::Denied(d) => denials.push(DeniedFeature {
                            feature: w.name.clone(),
                            code: denial_code(&d).into(),
                            message: d.to_string(),
                        }),
                    }
                }
                for (l, new) in &granted {
                    if !preview {
                        book.note_peak(l.record);
                        let metered = book
                            .seats
                            .records()
                            .nth(l.record)
                            .is_some_and(|f| f.metered);
                        if metered {
                            changes.push(LeaseChange::Consumed {
                                record_key: book.keys.get(l.record).cloned().unwrap_or_default(),
                                units: i64::try_from(book.seats.consumed(l.record))
                                    .unwrap_or(i64::MAX),
                            });
                        }
                        let r = row(l, &book.keys);
                        if *new {
                            // a new lease (a retry returns the one already counted)
                            book.digest.add(row_hash(&book.secret, &r));
                        }
                        changes.push(LeaseChange::Put(r));
                    }
                    grants.push(seat(l, book, !preview));
                }
            }
            Operation::Renew => {
                for &id in &req.leases {
                    let owned = book.seats.lease(id).is_some_and(|l| l.device == device_key);
                    let renewed = if owned {
                        book.seats.renew(id, now, self.policy.lease).cloned()
                    } else {
                        None
                    };
                    match renewed {
                        Some(l) => {
                            changes.push(LeaseChange::Expiry {
                                id: i64::try_from(l.id).unwrap_or(i64::MAX),
                                expires_at: l.expires,
                            });
                            // the session key went out with the grant, and never again
                            grants.push(seat(&l, book, false));
                        }
                        None => denials.push(DeniedFeature {
                            feature: id.to_string(),
                            code: "unknown_lease".into(),
                            message: format!("lease {id} is not held by this device (returned or expired): request again"),
                        }),
                    }
                }
            }
            Operation::Return => {
                for &id in &req.leases {
                    let owned = book.seats.lease(id).is_some_and(|l| l.device == device_key);
                    match owned.then(|| book.seats.release(id)).flatten() {
                        Some(l) => {
                            let h = book.hash(&l);
                            book.digest.sub(h);
                            changes.push(LeaseChange::Delete {
                                id: i64::try_from(l.id).unwrap_or(i64::MAX),
                            });
                        }
                        None => denials.push(DeniedFeature {
                            feature: id.to_string(),
                            code: "unknown_lease".into(),
                            message: format!("lease {id} is not held by this device"),
                        }),
                    }
                }
            }
        }
        CapabilityResponseClaims {
            nonce: req.nonce.clone(),
            request_id: req.request_id.clone(),
            device_id: p.device.to_string(),
            operation: req.operation,
            server: self.server.to_string(),
            iat: now,
            grants,
            denials,
            renew_interval_secs: u64::try_from(self.policy.lease.whole_seconds() / 3)
                .unwrap_or(60)
                .max(1),
        }
    }
}

/// Starts the writer: with SQLite's own writer connection, on a thread of its own (its commits
/// block that thread, and nothing else); otherwise as a task on the server's runtime.
fn spawn_writer(inner: Arc<Inner>, rx: mpsc::UnboundedReceiver<Job>) -> Result<(), StoreError> {
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
    fn a_lease_hashes_as_its_stored_row() {
        let mut book = Book::empty(Vec::new(), [7; 32]);
        book.keys = vec!["modeler|2.0|a".into(), "viewer|1.0|b".into()];
        let lease = Lease {
            id: 42,
            device: "string=ws-1|user=ann".into(),
            request_id: "r-9".into(),
            record: 1,
            count: 3,
            overdraft: 1,
            expires: OffsetDateTime::UNIX_EPOCH,
            borrowed: true,
        };
        let stored = row(&lease, &book.keys);
        assert_eq!(book.hash(&lease), row_hash(&book.secret, &stored));
        // every field but the expiry counts
        let mut other = stored.clone();
        other.count = 2;
        assert_ne!(
            row_hash(&book.secret, &other),
            row_hash(&book.secret, &stored)
        );
        let mut later = stored.clone();
        later.expires_at = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        assert_eq!(
            row_hash(&book.secret, &later),
            row_hash(&book.secret, &stored)
        );
        // texts are length-prefixed: moving a character from one to the next changes the hash
        let mut moved = stored.clone();
        moved.device = "string=ws-1|user=an".into();
        moved.request_id = "nr-9".into();
        assert_ne!(
            row_hash(&book.secret, &moved),
            row_hash(&book.secret, &stored)
        );
    }
}
