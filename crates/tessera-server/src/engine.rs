//! The seat engine of a running license server: the seat book in memory, every decision written
//! to the store before it is answered, every answer signed.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_core::capability::{
    CapabilityRequest, CapabilityResponseClaims, DeniedFeature, GrantedSeat, Operation,
};
use tessera_core::feature::Feature;
use tessera_core::seats::{Denial, Lease, Outcome, SeatBook, Want};
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::{Clock, HostId, SigningKey};
use tessera_store::{AnyStore, LeaseChange, LeaseRow, LeaseStore, StoreError};
use tokio::sync::Mutex;

/// Why a capability request was not answered (a refusal of a feature is an answer, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The decision could not be stored: nothing was granted.
    #[error("the license server could not store the decision; nothing was granted: {0}")]
    Store(#[from] StoreError),
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

/// Lease timing and limits.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// The longest borrow.
    pub max_borrow_days: u32,
    /// Most borrowed (offline) leases one device and user may hold at once.
    pub max_borrows_per_account: u32,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            lease: Duration::minutes(5),
            max_borrow_days: 7,
            max_borrows_per_account: 3,
        }
    }
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    book: Mutex<Book>,
    store: AnyStore,
    key: SigningKey,
    server: HostId,
    clock: Arc<dyn Clock>,
    policy: LeasePolicy,
    borrow_days: std::sync::atomic::AtomicU32,
    borrows_per_account: std::sync::atomic::AtomicU32,
}

#[derive(Debug)]
struct Book {
    seats: SeatBook,
    keys: Vec<String>,
    /// Most seats in use at once per record since the last usage report.
    peaks: Vec<u64>,
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

impl Engine {
    /// An engine over the feature records of the current license bundle, with the leases and
    /// metered use found in the store (expired leases are dropped and deleted).
    pub async fn load(
        records: Vec<Feature>,
        store: AnyStore,
        key: SigningKey,
        server: HostId,
        clock: Arc<dyn Clock>,
        policy: LeasePolicy,
    ) -> Result<Engine, StoreError> {
        let book = Self::build(records, &store, clock.now()).await?;
        Ok(Engine {
            book: Mutex::new(book),
            store,
            key,
            server,
            clock,
            borrow_days: std::sync::atomic::AtomicU32::new(policy.max_borrow_days),
            borrows_per_account: std::sync::atomic::AtomicU32::new(policy.max_borrows_per_account),
            policy,
        })
    }

    /// Sets the longest borrow and the most borrowed seats per account (from the producer's
    /// offline policy, or the administrator's limits).
    pub fn set_borrow_limits(&self, days: u32, per_account: u32) {
        use std::sync::atomic::Ordering;
        self.borrow_days
            .store(days.clamp(1, 3650), Ordering::SeqCst);
        self.borrows_per_account
            .store(per_account.clamp(1, 100_000), Ordering::SeqCst);
    }

    async fn build(
        records: Vec<Feature>,
        store: &AnyStore,
        now: OffsetDateTime,
    ) -> Result<Book, StoreError> {
        let keys: Vec<String> = records.iter().map(record_key).collect();
        let index: BTreeMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut seats = SeatBook::new(records);
        let mut stale = Vec::new();
        for r in store.load_leases().await? {
            let restored = index.get(r.record_key.as_str()).is_some_and(|&record| {
                seats.restore(
                    Lease {
                        id: u64::try_from(r.id).unwrap_or(0),
                        device: r.device.clone(),
                        request_id: r.request_id.clone(),
                        record,
                        count: u32::try_from(r.count).unwrap_or(0),
                        overdraft: u32::try_from(r.overdraft).unwrap_or(0),
                        expires: r.expires_at,
                        borrowed: r.borrowed,
                    },
                    now,
                )
            });
            if !restored {
                stale.push(LeaseChange::Delete { id: r.id });
            }
        }
        for (k, units) in store.load_consumed().await? {
            if let Some(&i) = index.get(k.as_str()) {
                seats.restore_consumed(i, u64::try_from(units).unwrap_or(0));
            }
        }
        store.apply_lease_changes(stale).await?;
        let peaks = (0..keys.len()).map(|i| seats.used(i)).collect();
        Ok(Book { seats, keys, peaks })
    }

    /// Replaces the feature records (after an activation or a renewal), keeping the leases.
    pub async fn reload(&self, records: Vec<Feature>) -> Result<(), StoreError> {
        let mut book = self.book.lock().await;
        *book = Self::build(records, &self.store, self.clock.now()).await?;
        Ok(())
    }

    /// Seats in use and metered units, per feature record: (record, used, consumed).
    pub async fn usage(&self) -> Vec<(Feature, u64, u64)> {
        let book = self.book.lock().await;
        book.seats
            .records()
            .enumerate()
            .map(|(i, f)| (f.clone(), book.seats.used(i), book.seats.consumed(i)))
            .collect()
    }

    /// Per record: (record, peak seats since the last report, seats in use, metered units,
    /// peak overdraft); `reset` starts a new reporting period.
    pub async fn report(&self, reset: bool) -> Vec<(Feature, u64, u64, u64, u64)> {
        let mut book = self.book.lock().await;
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
        self.book.lock().await.seats.leases().cloned().collect()
    }

    /// Answers a capability request with a signed response token. The decision is stored before
    /// this returns; if storing fails, nothing is granted and the book is rebuilt from the store.
    pub async fn handle(&self, req: &CapabilityRequest) -> Result<String, EngineError> {
        let now = self.clock.now();
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
        let device_key = match &req.user {
            Some(u) => format!("{device}|user={u}"),
            None => device.to_string(),
        };
        let wants: Vec<Want> = req
            .features
            .iter()
            .map(|f| Want {
                name: f.name.clone(),
                version: f.version.clone(),
                count: f.count,
            })
            .collect();
        let mut grants = Vec::new();
        let mut denials = Vec::new();
        let mut changes = Vec::new();
        let mut book = self.book.lock().await;
        let seat = |l: &Lease, book: &Book| GrantedSeat {
            lease: l.id,
            feature: book
                .seats
                .records()
                .nth(l.record)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
            version: book
                .seats
                .records()
                .nth(l.record)
                .map(|f| f.version.to_string())
                .unwrap_or_default(),
            count: l.count,
            overdraft: l.overdraft,
            expires: l.expires,
            borrowed: l.borrowed,
        };
        match req.operation {
            Operation::Request | Operation::Borrow | Operation::Preview => {
                let borrow_until = match req.operation {
                    Operation::Borrow => {
                        let max_days = self.borrow_days.load(std::sync::atomic::Ordering::SeqCst);
                        let max_active = self
                            .borrows_per_account
                            .load(std::sync::atomic::Ordering::SeqCst);
                        let days = req.borrow_days.unwrap_or(max_days);
                        if days == 0 || days > max_days {
                            return Err(EngineError::BadRequest(format!(
                                "borrow_days: 1 to {}",
                                max_days
                            )));
                        }
                        let held = book
                            .seats
                            .leases()
                            .filter(|l| l.device == device_key && l.borrowed && l.expires > now)
                            .count();
                        let new_ones = wants.len();
                        if held + new_ones > max_active as usize {
                            // the issuer enforces the per-account limit: nothing is borrowed
                            for w in &wants {
                                denials.push(DeniedFeature {
                                    feature: w.name.clone(),
                                    code: "borrow_limit".into(),
                                    message: format!(
                                        "at most {} seats may be borrowed at once per account and {held} already are; return one first",
                                        max_active
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
                let refused_all = req.operation == Operation::Borrow && borrow_until.is_none();
                let preview = req.operation == Operation::Preview;
                let mut scratch;
                let seats = if preview {
                    scratch = book.seats.clone();
                    &mut scratch
                } else {
                    &mut book.seats
                };
                let outcomes = if refused_all {
                    Vec::new()
                } else {
                    seats.request(
                        &device_key,
                        &req.request_id,
                        &wants,
                        now,
                        self.policy.lease,
                        borrow_until,
                    )
                };
                let mut granted_leases = Vec::new();
                for (w, o) in wants.iter().zip(outcomes) {
                    match o {
                        Outcome::Granted(l) => granted_leases.push(l),
                        Outcome::Denied(d) => denials.push(DeniedFeature {
                            feature: w.name.clone(),
                            code: denial_code(&d).into(),
                            message: d.to_string(),
                        }),
                    }
                }
                if !preview {
                    for l in &granted_leases {
                        let used = book.seats.used(l.record);
                        if let Some(p) = book.peaks.get_mut(l.record) {
                            *p = (*p).max(used);
                        }
                    }
                }
                for l in &granted_leases {
                    if !preview {
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
                        changes.push(LeaseChange::Put(row(l, &book.keys)));
                    }
                    grants.push(seat(l, &book));
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
                            grants.push(seat(&l, &book));
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
                        Some(l) => changes.push(LeaseChange::Delete {
                            id: i64::try_from(l.id).unwrap_or(i64::MAX),
                        }),
                        None => denials.push(DeniedFeature {
                            feature: id.to_string(),
                            code: "unknown_lease".into(),
                            message: format!("lease {id} is not held by this device"),
                        }),
                    }
                }
            }
        }
        // durable before answered
        if let Err(e) = self.store.apply_lease_changes(changes).await {
            let records: Vec<Feature> = book.seats.records().cloned().collect();
            match Self::build(records, &self.store, now).await {
                Ok(fresh) => *book = fresh,
                Err(e2) => tracing::error!(error = %e2, "could not rebuild the seat book"),
            }
            return Err(e.into());
        }
        drop(book);
        let claims = CapabilityResponseClaims {
            nonce: req.nonce.clone(),
            request_id: req.request_id.clone(),
            device_id: device.to_string(),
            operation: req.operation,
            server: self.server.to_string(),
            iat: now,
            grants,
            denials,
            renew_interval_secs: u64::try_from(self.policy.lease.whole_seconds() / 3)
                .unwrap_or(60)
                .max(1),
        };
        claims
            .sign(&self.key)
            .map_err(|e| EngineError::Sign(e.to_string()))
    }

    /// Returns the seats of expired leases and deletes them from the store.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut book = self.book.lock().await;
        let gone = book.seats.expire(now);
        let changes: Vec<LeaseChange> = gone
            .iter()
            .map(|l| LeaseChange::Delete {
                id: i64::try_from(l.id).unwrap_or(i64::MAX),
            })
            .collect();
        self.store.apply_lease_changes(changes).await?;
        Ok(gone.len())
    }
}
