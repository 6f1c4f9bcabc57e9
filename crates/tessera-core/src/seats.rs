//! The seat book: which leases hold which feature records' seats, with no I/O.
//!
//! A license server loads its feature records into a [`SeatBook`] and asks it to grant, renew,
//! return and expire leases; the server persists what the book decides. The book keeps, per record,
//! the seats in use (the sum of its leases) and the metered units consumed, and refuses anything
//! that would take a record past its count plus its overdraft.
//!
//! **Which record serves a request.** Among the records with the feature's name, a version that
//! satisfies the request, and that are active now: first those with free seats within their count,
//! then those with overdraft room. Within each group the record that **expires first** wins (its
//! seats are lost soonest if unused; permanent records last), then the **lowest version** (newer
//! versions stay free for requests that need them), then the order the records were loaded in.
//!
//! **Retries never take a second seat.** A grant is keyed by device and request id: the same
//! device repeating a request id gets the lease it already holds, extended, not a new one.
//!
//! **Lease ids are not guessable.** The book counts leases 1, 2, 3, … but hands out each count
//! through a keyed permutation ([`LeaseIds`]): ids are unique (a permutation never repeats) and,
//! without the key, look random. A license server keys it with a secret of its own.
//!
//! **Borrowing is limited per account.** The seats a device has borrowed and the seats a user has
//! borrowed (on any device) are counted apart; a borrow must keep both within the limit, so
//! neither a new user name on one device nor one user on a new device gets a fresh allowance.
//!
//! **Reservations and named pools** ([`SeatBook::set_reservations`], [`SeatBook::set_pools`])
//! carve seats out of the default pool; [`crate::reservations`] and [`crate::pools`] state their
//! rules. They exclude each other: a book holds one or the other.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod sharded;
use sharded::Sharded;

use sha2::{Digest, Sha256};

use time::{Duration, OffsetDateTime};

use crate::feature::{Count, Feature};
use crate::model::{Identity, ResolvedModel};
use crate::named_users::{Assignment, NamedUsers};
use crate::pools::PoolAllocation;
use crate::reservations::{Allocation, EntryStatus, Reservations, Satisfied};
use crate::version::Version;

/// A lease's id, unique within a book.
pub type LeaseId = u64;

/// One feature asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Feature name.
    pub name: String,
    /// Lowest acceptable version.
    pub version: Version,
    /// Seats (or metered units).
    pub count: u32,
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease id the holder renews and returns it by (not guessable: see [`LeaseIds`]).
    pub id: LeaseId,
    /// The device holding it.
    pub device: String,
    /// The request id that created it.
    pub request_id: String,
    /// Index of the feature record in the book.
    pub record: usize,
    /// Seats held (0 for a metered grant, whose units are consumed).
    pub count: u32,
    /// Of those, how many are beyond the record's count (overdraft).
    pub overdraft: u32,
    /// When it runs out unless renewed.
    pub expires: OffsetDateTime,
    /// Taken offline (borrowed): not renewed, runs to its expiry.
    pub borrowed: bool,
}

/// Why a feature was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No record of that name.
    #[error("no license for {name}")]
    NotLicensed {
        /// The feature asked for.
        name: String,
    },
    /// Only older versions.
    #[error("{name} is licensed up to version {have}, version {wanted} was asked for")]
    VersionTooLow {
        /// The feature asked for.
        name: String,
        /// Highest licensed.
        have: Version,
        /// Asked for.
        wanted: Version,
    },
    /// No fitting record is active now.
    #[error("the license for {name} is not active now (expired or not yet started)")]
    NotActive {
        /// The feature asked for.
        name: String,
    },
    /// Every seat (and overdraft seat) is taken.
    #[error("all {total} seats of {name} are in use")]
    AllInUse {
        /// The feature asked for.
        name: String,
        /// Count plus overdraft of the fitting records.
        total: u64,
    },
    /// The feature's seats are for named users, and this user is not one of them.
    #[error("{name} is licensed to named users, and this user is not one of them: the license server's administrator assigns them (tessera server named-users)")]
    NotAuthorised {
        /// The feature asked for.
        name: String,
    },
    /// A count of zero, or more than any record could give.
    #[error("a count of {count} cannot be granted for {name}")]
    BadCount {
        /// The feature asked for.
        name: String,
        /// Asked for.
        count: u32,
    },
}

/// What happened to one feature of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Granted (or, for a repeated request id, the lease already held).
    Granted(Lease),
    /// Refused, with the reason the client is told.
    Denied(Denial),
}

/// One feature record's seats in the book: the record, the seats its leases hold and the metered
/// units consumed. (Not a "pool": named license pools are sets of seats an administrator carves
/// out, a later layer of the policy.)
#[derive(Debug, Clone)]
struct RecordSeats {
    feature: Feature,
    used: u64,
    consumed: u64,
}

impl RecordSeats {
    fn capacity(&self) -> Option<u64> {
        self.feature.count.get().map(u64::from)
    }
}

/// The device part and the user part of a lease's holder (`HOSTID` or `HOSTID|user=USER`, the
/// form [`crate::policy::Requester::holder`] makes and the store keeps).
pub fn holder_parts(device: &str) -> (&str, Option<&str>) {
    match device.split_once("|user=") {
        Some((host, user)) => (host, Some(user)),
        None => (device, None),
    }
}

/// Lease ids from lease counts: a keyed permutation of 62-bit numbers (a four-round Feistel
/// network over two 31-bit halves, SipHash-2-4 as the round function), offset by 2^32 so that no
/// id it makes equals an id below 2^32 (the sequential ids of earlier versions). Invertible, so a
/// book that meets an id (restored from the store, or granted by a cluster peer sharing the key)
/// knows which count it used.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseIds {
    keys: [(u64, u64); 4],
}

impl std::fmt::Debug for LeaseIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseIds(..)")
    }
}

const HALF: u64 = (1 << 31) - 1;
const ID_BASE: u64 = 1 << 32;
const ID_SPACE: u64 = 1 << 62;

impl Default for LeaseIds {
    fn default() -> Self {
        LeaseIds::new(&[0; 32])
    }
}

impl LeaseIds {
    /// The permutation keyed by `secret`.
    pub fn new(secret: &[u8; 32]) -> LeaseIds {
        let mut keys = [(0u64, 0u64); 4];
        for (r, k) in keys.iter_mut().enumerate() {
            let mut h = Sha256::new();
            h.update(b"tessera-lease-ids|");
            h.update([r as u8]);
            h.update(secret);
            let d = h.finalize();
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&d[..8]);
            b.copy_from_slice(&d[8..16]);
            *k = (u64::from_le_bytes(a), u64::from_le_bytes(b));
        }
        LeaseIds { keys }
    }

    fn round(&self, r: usize, half: u64) -> u64 {
        let (k0, k1) = self.keys[r];
        siphash24(k0, k1, half) & HALF
    }

    /// The id of lease count `n` (taken modulo 2^62).
    pub fn id(&self, n: u64) -> LeaseId {
        let n = n % ID_SPACE;
        let (mut l, mut r) = (n >> 31, n & HALF);
        for i in 0..4 {
            (l, r) = (r, l ^ self.round(i, r));
        }
        ID_BASE + ((l << 31) | r)
    }

    /// A keyed 64-bit hash of an account name (`tag` keeps kinds of account apart): cheap enough
    /// for every grant and return, and, keyed, no client can make two accounts meet.
    fn account(&self, tag: u8, name: &str) -> u64 {
        use std::hash::Hasher as _;
        // SipHash-2-4 (std's, deprecated only in favour of a hasher with random keys: these are
        // keyed by the server's secret, and must be the same in every run)
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.keys[0].0, self.keys[0].1);
        h.write_u8(tag);
        h.write(name.as_bytes());
        h.finish()
    }

    /// The number a lease is stored under: the count its id was made from, so that leases are
    /// stored in the order they were granted and a table keyed by this number grows at one end (a
    /// burst of grants writes a few pages, not one page per grant). An id this permutation never
    /// makes (one of an earlier version, or one stored before leases were kept by count) is
    /// stored as `-1 - id`. [`LeaseIds::id_of_stored`] inverts it.
    pub fn stored_key(&self, id: LeaseId) -> i64 {
        match self.count_of(id).and_then(|n| i64::try_from(n).ok()) {
            Some(n) => n,
            None => -1 - i64::try_from(id).unwrap_or(i64::MAX - 1),
        }
    }

    /// The lease id stored under `key` (see [`LeaseIds::stored_key`]).
    pub fn id_of_stored(&self, key: i64) -> LeaseId {
        match u64::try_from(key) {
            Ok(n) => self.id(n),
            Err(_) => u64::try_from(-1 - key).unwrap_or(0),
        }
    }

    /// The count an id was made from; `None` for an id this permutation never makes.
    pub fn count_of(&self, id: LeaseId) -> Option<u64> {
        let x = id.checked_sub(ID_BASE).filter(|x| *x < ID_SPACE)?;
        let (mut l, mut r) = (x >> 31, x & HALF);
        for i in (0..4).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        Some((l << 31) | r)
    }
}

/// SipHash-2-4 of one 64-bit word under the key (k0, k1).
fn siphash24(k0: u64, k1: u64, m: u64) -> u64 {
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;
    let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    };
    // one 8-byte block, then the final block holding the length (8) in its top byte
    for block in [m, 8u64 << 56] {
        v3 ^= block;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= block;
    }
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

fn request_key(device: &str, request_id: &str, feature: &str) -> u128 {
    let mut h = Sha256::new();
    for part in [device, request_id, feature] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// The pool the rules of `model` put a lease of `holder` in, seeing only what the lease keeps:
/// its device's hostid and its user (see [`crate::pools`]).
fn holder_pool(model: &ResolvedModel, holder: &str) -> Option<usize> {
    let (hostid, user) = holder_parts(holder);
    model.pool_index_for(&Identity {
        hostid,
        user,
        alias: None,
        attributes: &[],
    })
}

/// The device of a lease holder (`DEVICE` or `DEVICE|user=USER`).
fn device_part(holder: &str) -> &str {
    holder_parts(holder).0
}

/// The seat book of one license server.
#[derive(Debug, Clone, Default)]
pub struct SeatBook {
    records: Vec<RecordSeats>,
    /// Leases held, under their [`SeatBook::slot`]: the count each id was made from, so a burst of
    /// grants appends at the map's right edge instead of landing on a random leaf at every level
    /// (ids are a keyed permutation, scattered on purpose). Iterated in the order granted.
    leases: BTreeMap<u64, Lease>,
    /// Lease by (device, request id, feature), keyed by a 128-bit digest of the three so a
    /// million leases do not hold a second copy of their strings.
    by_request: Sharded<u128, LeaseId>,
    /// Leases by expiry, so expiring is not a scan of every lease.
    by_expiry: BTreeSet<(OffsetDateTime, LeaseId)>,
    /// Borrowed seats held per account (device, and user; by digest), so the per-account limit
    /// is not a scan.
    borrowed_by: Sharded<u64, u32>,
    /// The count the next lease gets (its id is `ids.id(next)`).
    next: u64,
    ids: LeaseIds,
    /// Leases held per device, all its users together (by digest of the part before `|user=`).
    held_by: Sharded<u64, u32>,
    /// Reservations in force (`None`: none, the default pool alone).
    reserved: Option<Box<Reserved>>,
    /// With named-user records: who may take seats of each named-user feature (`None` when no
    /// record is for named users).
    named_users: Option<HashMap<String, HashSet<String>>>,
    /// Named pools in force (`None`: none).
    pools: Option<Box<Pooled>>,
    /// The named pool each lease drew on when it was granted, by name (leases of the default
    /// pool are absent): kept with the lease when it is stored, so that a restart or another
    /// cluster member counts it in the same pool whatever rule (alias, attribute) sent it there.
    drawn: Sharded<LeaseId, String>,
}

/// A named pool of the model in force in a book, as [`SeatBook::pool_of`] found it for a
/// requester: valid for the book and model it came from (passed on at once to
/// [`SeatBook::request_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRef(usize);

/// Why named pools were not put in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolsError {
    /// Reservations are in force: the two exclude each other.
    #[error("reservations are in force: reservations and named pools exclude each other; delete the reservation groups first (`tessera server reservations clear`)")]
    ReservationsInForce,
}

/// One row of the pools view: a pool's seats on one feature record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// The pool (`None`: the default pool).
    pub pool: Option<String>,
    /// The record's index in the book.
    pub record: usize,
    /// Seats the pool holds on the record (for the default pool: the count less every pool's
    /// seats; its overdraft is the record's).
    pub allocated: u64,
    /// Seats of the pool in use.
    pub used: u64,
}

/// Named pools in force in a book: the model, the seats each pool holds on each record, and the
/// seats in use (see [`crate::pools`] for the rule).
#[derive(Debug, Clone)]
struct Pooled {
    model: ResolvedModel,
    alloc: PoolAllocation,
    /// Per pool, per record: seats held by leases of the pool's members.
    held: Vec<Vec<u64>>,
    /// Per record: seats held in the default pool (non-members' seats, and members' seats beyond
    /// their pool's).
    default_used: Vec<u64>,
    /// The pool each lease of a pool's member draws on (leases of the default pool are not here).
    lease_pool: Sharded<LeaseId, usize>,
}

impl Pooled {
    /// Seats pool `q` holds on record `i` that its members do not hold.
    fn free(&self, q: usize, i: usize) -> u64 {
        let held = self
            .held
            .get(q)
            .and_then(|h| h.get(i))
            .copied()
            .unwrap_or(0);
        self.alloc.seats_of(q, i).saturating_sub(held)
    }

    /// Takes (`add`) or gives back `n` seats of record `i` for a lease drawing on pool `q`
    /// (`None`: the default pool).
    fn count(&mut self, q: Option<usize>, i: usize, n: u64, add: bool) {
        let Some(default_used) = self.default_used.get_mut(i) else {
            return;
        };
        let step = |x: u64, d: u64| {
            if add {
                x.saturating_add(d)
            } else {
                x.saturating_sub(d)
            }
        };
        let Some(held) = q
            .and_then(|q| self.held.get_mut(q))
            .and_then(|h| h.get_mut(i))
        else {
            *default_used = step(*default_used, n);
            return;
        };
        let a = q.map_or(0, |q| self.alloc.seats_of(q, i));
        let old = *held;
        *held = step(old, n);
        let (before, after) = (old.saturating_sub(a), held.saturating_sub(a));
        *default_used = default_used.saturating_add(after).saturating_sub(before);
    }
}

/// Reservations in force in a book: the seats set aside, and what holders hold (see
/// [`crate::reservations`] for the rule).
#[derive(Debug, Clone, Default)]
struct Reserved {
    alloc: Allocation,
    /// What a featureless request asks for, by holder key.
    wants: HashMap<String, Vec<Want>>,
    /// Seats held per (holder key, record), by leases drawing on that key's reservation.
    held: HashMap<(String, usize), u64>,
    /// Per record: seats held beyond reservations (shared seats in use).
    shared: Vec<u64>,
}

impl Reserved {
    /// Seats record `i` has set aside for `key` that it does not hold yet.
    fn free_for(&self, key: Option<&str>, i: usize) -> u64 {
        key.map_or(0, |k| {
            let r = self.alloc.reserved_for(k, i);
            let held = self.held.get(&(k.to_string(), i)).copied().unwrap_or(0);
            r.saturating_sub(held)
        })
    }

    /// Takes (`add`) or gives back `n` seats of record `i` for a lease of `device`.
    fn count(&mut self, device: &str, i: usize, n: u64, add: bool) {
        let Some(shared) = self.shared.get_mut(i) else {
            return;
        };
        let Some(key) = self.alloc.key_for(device, i) else {
            *shared = if add {
                shared.saturating_add(n)
            } else {
                shared.saturating_sub(n)
            };
            return;
        };
        let r = self.alloc.reserved_for(&key, i);
        let held = self.held.entry((key, i)).or_insert(0);
        let old = *held;
        *held = if add {
            old.saturating_add(n)
        } else {
            old.saturating_sub(n)
        };
        let (before, after) = (old.saturating_sub(r), held.saturating_sub(r));
        if *held == 0 {
            self.held.retain(|_, h| *h > 0);
        }
        *shared = shared.saturating_add(after).saturating_sub(before);
    }
}

impl SeatBook {
    /// A book over these feature records (in this order).
    pub fn new(records: Vec<Feature>) -> Self {
        // named-user records serve nobody until users are assigned
        let named_users = records.iter().any(|f| f.named_user).then(HashMap::new);
        SeatBook {
            records: records
                .into_iter()
                .map(|feature| RecordSeats {
                    feature,
                    used: 0,
                    consumed: 0,
                })
                .collect(),
            leases: BTreeMap::new(),
            by_request: Sharded::default(),
            by_expiry: BTreeSet::new(),
            borrowed_by: Sharded::default(),
            next: 1,
            ids: LeaseIds::default(),
            held_by: Sharded::default(),
            reserved: None,
            named_users,
            pools: None,
            drawn: Sharded::default(),
        }
    }

    /// The named pool lease `id` drew on (by name), if it drew on one.
    pub fn drawn_pool(&self, id: LeaseId) -> Option<&str> {
        self.drawn.get(&id).map(String::as_str)
    }

    /// Puts the named users in force (replacing those before): each named-user feature serves
    /// only its users, as many as its seats (see [`NamedUsers::assign`]). Returns every named-user
    /// feature's assignment, with who was trimmed. Leases held stay held.
    pub fn set_named_users(&mut self, users: &NamedUsers) -> Vec<Assignment> {
        let records: Vec<Feature> = self.records.iter().map(|p| p.feature.clone()).collect();
        if records.iter().any(|f| f.named_user) {
            self.named_users = Some(users.allowed(&records));
        }
        users.assign(&records)
    }

    /// Puts `reservations` in force (replacing those before): sets their seats aside on the
    /// records (see [`Reservations::allocate`]) and counts the leases held against them. Returns
    /// every entry's status. Leases held stay held, even where they now take seats that are set
    /// aside for someone else (the book is then over its shared seats until they are returned).
    /// Reservations and named pools exclude each other: reservations put in force take the named
    /// pools out of force.
    pub fn set_reservations(&mut self, reservations: &Reservations) -> Vec<EntryStatus> {
        let records: Vec<Feature> = self.records.iter().map(|p| p.feature.clone()).collect();
        let alloc = reservations.allocate(&records);
        let statuses = alloc.statuses.clone();
        if alloc.is_empty() {
            self.reserved = None;
            return statuses;
        }
        let mut wants: HashMap<String, Vec<Want>> = HashMap::new();
        for st in &statuses {
            if let (Satisfied::Yes, Ok(version)) = (&st.status, st.version.parse()) {
                wants.entry(st.holder.clone()).or_default().push(Want {
                    name: st.feature.clone(),
                    version,
                    count: st.count,
                });
            }
        }
        // reservations and named pools exclude each other
        self.pools = None;
        let mut r = Reserved {
            alloc,
            wants,
            held: HashMap::new(),
            shared: vec![0; self.records.len()],
        };
        for l in self.leases.values() {
            if !self.records[l.record].feature.metered {
                r.count(&l.device, l.record, u64::from(l.count), true);
            }
        }
        self.reserved = Some(Box::new(r));
        statuses
    }

    /// What a request with no features asks for on behalf of `device` (`HOSTID` or
    /// `HOSTID|user=USER`): everything set aside for the device and for its user (the device's
    /// entry first where both reserve a feature).
    pub fn reserved_wants(&self, device: &str) -> Vec<Want> {
        let Some(r) = &self.reserved else {
            return Vec::new();
        };
        let (host, user) = holder_parts(device);
        let mut out: Vec<Want> = r.wants.get(host).cloned().unwrap_or_default();
        if let Some(u) = user {
            let key = format!("{}={u}", crate::hostid::HostIdKind::User.as_str());
            for w in r.wants.get(&key).into_iter().flatten() {
                if !out.iter().any(|o| o.name == w.name) {
                    out.push(w.clone());
                }
            }
        }
        out
    }

    /// Seats of record `i` set aside by reservations (0 without reservations).
    pub fn reserved_seats(&self, i: usize) -> u64 {
        self.reserved
            .as_ref()
            .and_then(|r| r.alloc.reserved.get(i).copied())
            .unwrap_or(0)
    }

    /// Counts a lease's seats in (`add`) or out of its record, and of the reservations.
    fn count_seats(&mut self, lease: &Lease, add: bool) {
        let Some(p) = self.records.get_mut(lease.record) else {
            return;
        };
        let n = u64::from(lease.count);
        p.used = if add {
            p.used + n
        } else {
            p.used.saturating_sub(n)
        };
        let metered = p.feature.metered;
        if let (Some(r), false) = (self.reserved.as_mut(), metered) {
            r.count(&lease.device, lease.record, n, add);
        }
        if let (Some(pl), false) = (self.pools.as_mut(), metered) {
            let q = if add {
                pl.lease_pool.get(&lease.id).copied()
            } else {
                pl.lease_pool.remove(&lease.id)
            };
            pl.count(q, lease.record, n, add);
        }
    }

    /// Puts the named pools of `model` in force (replacing those before; `None` takes them out
    /// of force): places each pool's seats on the records (see [`crate::pools::allocate`]) and
    /// counts the leases held where the rules put their holders (see [`crate::pools`]). Returns
    /// what could not be placed (nothing for a model that resolved against these records and
    /// holds no metered feature). Refused while reservations are in force.
    pub fn set_pools(&mut self, model: Option<&ResolvedModel>) -> Result<Vec<String>, PoolsError> {
        let Some(model) = model else {
            self.pools = None;
            return Ok(Vec::new());
        };
        if self.reserved.is_some() {
            return Err(PoolsError::ReservationsInForce);
        }
        let records: Vec<Feature> = self.records.iter().map(|p| p.feature.clone()).collect();
        let alloc = crate::pools::allocate(model, &records);
        let problems = alloc.problems.clone();
        let mut pl = Pooled {
            held: vec![vec![0; records.len()]; model.pools().len()],
            default_used: vec![0; records.len()],
            model: model.clone(),
            alloc,
            lease_pool: Sharded::default(),
        };
        for l in self.leases.values() {
            if self.records[l.record].feature.metered {
                continue;
            }
            // the pool it drew on, while the model has one of that name; else where the rules
            // of access put its holder's hostid and user now
            let q = self
                .drawn
                .get(&l.id)
                .and_then(|n| pl.model.pools().iter().position(|p| p.name == *n))
                .or_else(|| holder_pool(&pl.model, &l.device));
            if let Some(q) = q {
                pl.lease_pool.insert(l.id, q);
            }
            pl.count(q, l.record, u64::from(l.count), true);
        }
        self.pools = Some(Box::new(pl));
        Ok(problems)
    }

    /// The resolved model whose pools are in force.
    pub fn pool_model(&self) -> Option<&ResolvedModel> {
        self.pools.as_ref().map(|p| &p.model)
    }

    /// The named pool the rules of the model in force send `who` to; `None` for the default
    /// pool, and at once when no model is in force (nothing is compared or allocated then).
    pub fn pool_of(&self, who: &Identity<'_>) -> Option<PoolRef> {
        let pl = self.pools.as_ref()?;
        pl.model.pool_index_for(who).map(PoolRef)
    }

    /// Per pool (in the model's order, the default pool last) and record: the seats the pool
    /// holds there and those in use. Empty when no model is in force. The default pool is shown
    /// on the counted, unmetered records of every feature some pool holds.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        let Some(pl) = &self.pools else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (q, pool) in pl.model.pools().iter().enumerate() {
            for i in 0..self.records.len() {
                let allocated = pl.alloc.seats_of(q, i);
                if allocated == 0 {
                    continue;
                }
                let held = pl.held.get(q).and_then(|h| h.get(i)).copied().unwrap_or(0);
                out.push(PoolUse {
                    pool: Some(pool.name.clone()),
                    record: i,
                    allocated,
                    used: held.min(allocated),
                });
            }
        }
        for (i, p) in self.records.iter().enumerate() {
            let (Some(cap), false) = (p.capacity(), p.feature.metered) else {
                continue;
            };
            if pl.model.feature(&p.feature.name).is_none() {
                continue;
            }
            out.push(PoolUse {
                pool: None,
                record: i,
                allocated: cap.saturating_sub(pl.alloc.pooled_on(i)),
                used: pl.default_used.get(i).copied().unwrap_or(0),
            });
        }
        out
    }

    /// The same book handing out lease ids through the permutation keyed by `secret`.
    pub fn with_id_key(mut self, secret: &[u8; 32]) -> Self {
        self.ids = LeaseIds::new(secret);
        // leases already held move to their slots under this permutation
        let held = std::mem::take(&mut self.leases);
        for l in held.into_values() {
            self.leases.insert(self.slot(l.id), l);
        }
        self
    }

    /// The permutation this book makes lease ids with.
    pub fn lease_ids(&self) -> &LeaseIds {
        &self.ids
    }

    /// The feature records.
    pub fn records(&self) -> impl Iterator<Item = &Feature> {
        self.records.iter().map(|p| &p.feature)
    }

    /// Record `i`.
    pub fn record(&self, i: usize) -> Option<&Feature> {
        self.records.get(i).map(|p| &p.feature)
    }

    /// Seats in use of record `i` (including overdraft).
    pub fn used(&self, i: usize) -> u64 {
        self.records.get(i).map_or(0, |p| p.used)
    }

    /// Metered units consumed of record `i`.
    pub fn consumed(&self, i: usize) -> u64 {
        self.records.get(i).map_or(0, |p| p.consumed)
    }

    /// Every lease held, in the order granted (by the count each id was made from; leases with
    /// ids of an earlier version last).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The accounts a holder's borrowed seats count against: its device, and its user if any.
    fn borrow_accounts(&self, device: &str) -> [Option<u64>; 2] {
        let (host, user) = holder_parts(device);
        [
            Some(self.ids.account(1, host)),
            user.map(|u| self.ids.account(2, u)),
        ]
    }

    /// How many seats the accounts of holder `device` (`HOSTID` or `HOSTID|user=USER`) have
    /// borrowed: the larger of the device's and the user's (on any device). Expired borrows count
    /// until they are expired.
    pub fn borrowed_by(&self, device: &str) -> u32 {
        self.borrow_accounts(device)
            .into_iter()
            .flatten()
            .map(|k| self.borrowed_by.get(&k).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// How many leases `device` holds, whichever users it named (expired ones count until they are
    /// expired).
    pub fn held_by(&self, device: &str) -> u32 {
        self.held_by
            .get(&self.ids.account(0, device_part(device)))
            .copied()
            .unwrap_or(0)
    }

    fn count_borrowed(&mut self, lease: &Lease, add: bool) {
        let key = self.ids.account(0, device_part(&lease.device));
        let n = self.held_by.get_or_insert_with(key, || 0);
        *n = if add {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if *n == 0 {
            self.held_by.remove(&key);
        }
        if !lease.borrowed {
            return;
        }
        for key in self.borrow_accounts(&lease.device).into_iter().flatten() {
            let n = self.borrowed_by.get_or_insert_with(key, || 0);
            *n = if add {
                n.saturating_add(lease.count)
            } else {
                n.saturating_sub(lease.count)
            };
            if *n == 0 {
                self.borrowed_by.remove(&key);
            }
        }
    }

    /// The lease a repeated request would return: the one `device` holds under `request_id` for
    /// feature `name`, if any.
    pub fn retry_of(&self, device: &str, request_id: &str, name: &str) -> Option<LeaseId> {
        self.by_request
            .get(&request_key(device, request_id, name))
            .copied()
            .filter(|id| self.leases.contains_key(&self.slot(*id)))
    }

    /// How many leases are held.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Where lease `id` is kept in the map: the count it was made from (see [`LeaseIds`]), or,
    /// for an id the permutation never makes (an earlier version's sequential id, below 2^32, or
    /// one above its range), a number no count reaches. One to one.
    fn slot(&self, id: LeaseId) -> u64 {
        match self.ids.count_of(id) {
            Some(n) => n,
            None if id < ID_BASE => ID_SPACE + id,
            None => id,
        }
    }

    /// A lease by id.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&self.slot(id))
    }

    /// Grants each wanted feature to `device` under `request_id`, for `duration` from `now` (or
    /// until `borrow_until`, capped by the record's expiry, when borrowing). Features are decided
    /// one by one; a denial of one does not undo the others. With named pools in force, the
    /// requester draws from the pool the rules give its hostid and user (see
    /// [`SeatBook::request_in`] to name the pool found with everything the request carries).
    pub fn request(
        &mut self,
        device: &str,
        request_id: &str,
        wants: &[Want],
        now: OffsetDateTime,
        duration: Duration,
        borrow_until: Option<OffsetDateTime>,
    ) -> Vec<Outcome> {
        let pool = self
            .pools
            .as_ref()
            .and_then(|pl| holder_pool(&pl.model, device))
            .map(PoolRef);
        self.request_in(pool, device, request_id, wants, now, duration, borrow_until)
    }

    /// [`SeatBook::request`] for a requester the rules of access send to `pool` (found with
    /// [`SeatBook::pool_of`]; `None`: the default pool): it draws from that pool's seats first,
    /// then from the default pool (see [`crate::pools`]).
    #[allow(clippy::too_many_arguments)]
    pub fn request_in(
        &mut self,
        pool: Option<PoolRef>,
        device: &str,
        request_id: &str,
        wants: &[Want],
        now: OffsetDateTime,
        duration: Duration,
        borrow_until: Option<OffsetDateTime>,
    ) -> Vec<Outcome> {
        let pool = self.checked_pool(pool);
        wants
            .iter()
            .map(|w| self.request_one(pool, device, request_id, w, now, duration, borrow_until))
            .collect()
    }

    /// `pool` if it is a pool of the model in force.
    fn checked_pool(&self, pool: Option<PoolRef>) -> Option<usize> {
        let q = pool?.0;
        self.pools
            .as_ref()
            .filter(|pl| q < pl.model.pools().len())
            .map(|_| q)
    }

    #[allow(clippy::too_many_arguments)]
    fn request_one(
        &mut self,
        pool: Option<usize>,
        device: &str,
        request_id: &str,
        want: &Want,
        now: OffsetDateTime,
        duration: Duration,
        borrow_until: Option<OffsetDateTime>,
    ) -> Outcome {
        let key = request_key(device, request_id, &want.name);
        if let Some(id) = self.by_request.get(&key).copied() {
            let slot = self.slot(id);
            let record_end = self.leases.get(&slot).and_then(|l| {
                match self.records.get(l.record).map(|p| p.feature.expiry) {
                    Some(crate::feature::Expiry::At(t)) => Some(t),
                    _ => None,
                }
            });
            if let Some(lease) = self.leases.get_mut(&slot) {
                // extended like a renewal: never past its record's end, never once run out
                if !lease.borrowed && lease.expires > now {
                    let old = lease.expires;
                    let mut until = now + duration;
                    if let Some(end) = record_end {
                        until = until.min(end);
                    }
                    lease.expires = lease.expires.max(until);
                    if lease.expires != old {
                        self.by_expiry.remove(&(old, id));
                        self.by_expiry.insert((lease.expires, id));
                    }
                }
                return Outcome::Granted(lease.clone());
            }
        }
        let i = match self.choose(want, device, pool, now) {
            Ok(i) => i,
            Err(d) => return Outcome::Denied(d),
        };
        // the new lease's id is made from this count: its slot, without inverting the id
        let slot = self.next % ID_SPACE;
        let lease = self.lease_from(
            i,
            device,
            pool,
            request_id,
            want,
            now,
            duration,
            borrow_until,
        );
        let seats = &mut self.records[i];
        if seats.feature.metered {
            seats.consumed += u64::from(want.count);
        } else {
            if let (Some(pl), Some(q)) = (self.pools.as_mut(), pool) {
                pl.lease_pool.insert(lease.id, q);
                if let Some(p) = pl.model.pools().get(q) {
                    self.drawn.insert(lease.id, p.name.clone());
                }
            }
            self.count_seats(&lease, true);
        }
        self.next += 1;
        self.by_request.insert(key, lease.id);
        self.by_expiry.insert((lease.expires, lease.id));
        self.count_borrowed(&lease, true);
        debug_assert_eq!(slot, self.slot(lease.id));
        self.leases.insert(slot, lease.clone());
        Outcome::Granted(lease)
    }

    /// What a request would get, taking nothing: each wanted feature decided as
    /// [`SeatBook::request`] would decide it for a request id never seen, without a seat taken, a
    /// unit consumed or an index changed. Features are decided apart (a request names each
    /// feature once, and each record serves one name), so the answer is the one a request would
    /// get now. The leases shown carry the ids the next leases would get, and those ids are then
    /// skipped (no lease granted later has an id a preview showed): the only change it makes.
    pub fn preview(
        &mut self,
        device: &str,
        wants: &[Want],
        now: OffsetDateTime,
        duration: Duration,
    ) -> Vec<Outcome> {
        let pool = self
            .pools
            .as_ref()
            .and_then(|pl| holder_pool(&pl.model, device))
            .map(PoolRef);
        self.preview_in(pool, device, wants, now, duration)
    }

    /// [`SeatBook::preview`] for a requester the rules of access send to `pool` (see
    /// [`SeatBook::request_in`]).
    pub fn preview_in(
        &mut self,
        pool: Option<PoolRef>,
        device: &str,
        wants: &[Want],
        now: OffsetDateTime,
        duration: Duration,
    ) -> Vec<Outcome> {
        let pool = self.checked_pool(pool);
        wants
            .iter()
            .map(|w| match self.choose(w, device, pool, now) {
                Ok(i) => {
                    let lease = self.lease_from(i, device, pool, "", w, now, duration, None);
                    self.next += 1;
                    Outcome::Granted(lease)
                }
                Err(d) => Outcome::Denied(d),
            })
            .collect()
    }

    /// The record that serves `want` for `device` now (see the module's rule), or why none does.
    /// Changes nothing.
    fn choose(
        &self,
        want: &Want,
        device: &str,
        pool: Option<usize>,
        now: OffsetDateTime,
    ) -> Result<usize, Denial> {
        if want.count == 0 {
            return Err(Denial::BadCount {
                name: want.name.clone(),
                count: 0,
            });
        }
        let mut named: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].feature.name == want.name)
            .collect();
        if named.is_empty() {
            return Err(Denial::NotLicensed {
                name: want.name.clone(),
            });
        }
        // named-user records serve only the users assigned to the feature
        if let Some(allowed) = &self.named_users {
            if named.iter().any(|&i| self.records[i].feature.named_user) {
                let user = holder_parts(device).1;
                let assigned = user.is_some_and(|u| {
                    allowed
                        .get(&want.name)
                        .is_some_and(|users| users.contains(u))
                });
                if !assigned {
                    named.retain(|&i| !self.records[i].feature.named_user);
                    if named.is_empty() {
                        return Err(Denial::NotAuthorised {
                            name: want.name.clone(),
                        });
                    }
                }
            }
        }
        let fitting: Vec<usize> = named
            .iter()
            .copied()
            .filter(|&i| self.records[i].feature.version.satisfies(&want.version))
            .collect();
        if fitting.is_empty() {
            let have = named
                .iter()
                .map(|&i| self.records[i].feature.version.clone())
                .max()
                .unwrap_or_default();
            return Err(Denial::VersionTooLow {
                name: want.name.clone(),
                have,
                wanted: want.version.clone(),
            });
        }
        let mut active: Vec<usize> = fitting
            .iter()
            .copied()
            .filter(|&i| self.records[i].feature.is_active(now))
            .collect();
        if active.is_empty() {
            return Err(Denial::NotActive {
                name: want.name.clone(),
            });
        }
        active.sort_by(|&a, &b| {
            let (fa, fb) = (&self.records[a].feature, &self.records[b].feature);
            fa.expiry
                .sort_key()
                .cmp(&fb.expiry.sort_key())
                .then_with(|| fa.version.cmp(&fb.version))
                .then_with(|| a.cmp(&b))
        });
        let n = u64::from(want.count);
        // a pool's member: a record whose pool seats suffice first; then within the count, then
        // into overdraft
        let pick = pool
            .and_then(|q| active.iter().copied().find(|&i| self.pool_room(i, q) >= n))
            .or_else(|| {
                active
                    .iter()
                    .copied()
                    .find(|&i| self.room(i, device, pool, false) >= n)
            })
            .or_else(|| {
                active
                    .iter()
                    .copied()
                    .find(|&i| self.room(i, device, pool, true) >= n)
            });
        pick.ok_or_else(|| {
            let total = active
                .iter()
                .map(|&i| {
                    self.records[i].capacity().map_or(u64::MAX, |c| {
                        c + u64::from(self.records[i].feature.overdraft)
                    })
                })
                .fold(0u64, u64::saturating_add);
            Denial::AllInUse {
                name: want.name.clone(),
                total,
            }
        })
    }

    /// The lease record `i` would give for `want` now (with the next id), taking nothing.
    #[allow(clippy::too_many_arguments)]
    fn lease_from(
        &self,
        i: usize,
        device: &str,
        pool: Option<usize>,
        request_id: &str,
        want: &Want,
        now: OffsetDateTime,
        duration: Duration,
        borrow_until: Option<OffsetDateTime>,
    ) -> Lease {
        let seats = &self.records[i];
        let n = u64::from(want.count);
        let (count, overdraft) = if seats.feature.metered {
            let over = seats.capacity().map_or(0, |c| {
                (seats.consumed + n).saturating_sub(c.max(seats.consumed))
            });
            (0, u32::try_from(over).unwrap_or(u32::MAX))
        } else if let (Some(r), Some(c)) = (&self.reserved, seats.capacity()) {
            // reserved seats first; only the shared part can go into overdraft
            let key = r.alloc.key_for(device, i);
            let shared_need = n.saturating_sub(r.free_for(key.as_deref(), i));
            let shared_cap = c.saturating_sub(r.alloc.reserved.get(i).copied().unwrap_or(0));
            let shared = r.shared.get(i).copied().unwrap_or(0);
            let over = (shared + shared_need).saturating_sub(shared_cap.max(shared));
            (want.count, u32::try_from(over).unwrap_or(u32::MAX))
        } else if let (Some(pl), Some(c)) = (&self.pools, seats.capacity()) {
            // the pool's seats first; only the default pool's part can go into overdraft
            let from_pool = pool.map_or(0, |q| pl.free(q, i)).min(n);
            let default_need = n - from_pool;
            let default_cap = c.saturating_sub(pl.alloc.pooled_on(i));
            let default_used = pl.default_used.get(i).copied().unwrap_or(0);
            let over = (default_used + default_need).saturating_sub(default_cap.max(default_used));
            (want.count, u32::try_from(over).unwrap_or(u32::MAX))
        } else {
            let over = seats
                .capacity()
                .map_or(0, |c| (seats.used + n).saturating_sub(c.max(seats.used)));
            (want.count, u32::try_from(over).unwrap_or(u32::MAX))
        };
        let mut expires = borrow_until.unwrap_or(now + duration);
        if let crate::feature::Expiry::At(end) = seats.feature.expiry {
            expires = expires.min(end);
        }
        Lease {
            id: self.ids.id(self.next),
            device: device.to_string(),
            request_id: request_id.to_string(),
            record: i,
            count,
            overdraft,
            expires,
            borrowed: borrow_until.is_some(),
        }
    }

    /// Seats of pool `q` free on record `i` (never past the record's count: leases counted
    /// elsewhere may hold them).
    fn pool_room(&self, i: usize, q: usize) -> u64 {
        let (Some(pl), Some(p)) = (&self.pools, self.records.get(i)) else {
            return 0;
        };
        let Some(cap) = p.capacity() else {
            return 0;
        };
        if p.feature.metered {
            return 0;
        }
        pl.free(q, i).min(cap.saturating_sub(p.used))
    }

    /// Seats record `i` can still give `device` (of pool `pool`), within its count or including
    /// its overdraft: with reservations, what is set aside for it and not held, and the shared
    /// seats free; with named pools, its pool's seats free and the default pool's.
    fn room(&self, i: usize, device: &str, pool: Option<usize>, with_overdraft: bool) -> u64 {
        let p = &self.records[i];
        let Some(cap) = p.capacity() else {
            return u64::MAX;
        };
        let over = if with_overdraft {
            u64::from(p.feature.overdraft)
        } else {
            0
        };
        if let (Some(r), false) = (&self.reserved, p.feature.metered) {
            let key = r.alloc.key_for(device, i);
            let shared_cap = cap.saturating_sub(r.alloc.reserved.get(i).copied().unwrap_or(0));
            let shared = r.shared.get(i).copied().unwrap_or(0);
            let room = r.free_for(key.as_deref(), i) + (shared_cap + over).saturating_sub(shared);
            // never past the record's count and overdraft (leases held before the reservations
            // may hold seats set aside since)
            let limit = cap + u64::from(p.feature.overdraft);
            return room.min(limit.saturating_sub(p.used));
        }
        if let (Some(pl), false) = (&self.pools, p.feature.metered) {
            let default_cap = cap.saturating_sub(pl.alloc.pooled_on(i));
            let default_used = pl.default_used.get(i).copied().unwrap_or(0);
            let room = pool.map_or(0, |q| pl.free(q, i))
                + (default_cap + over).saturating_sub(default_used);
            // never past the record's count and overdraft (leases counted where the rules put
            // them now may hold seats of another pool)
            let limit = cap + u64::from(p.feature.overdraft);
            return room.min(limit.saturating_sub(p.used));
        }
        let cap = cap + over;
        let taken = if p.feature.metered {
            p.consumed
        } else {
            p.used
        };
        cap.saturating_sub(taken)
    }

    /// Extends a lease to `now + duration`. `None` when the lease is unknown (returned or
    /// expired): the client must request again.
    pub fn renew(
        &mut self,
        id: LeaseId,
        now: OffsetDateTime,
        duration: Duration,
    ) -> Option<&Lease> {
        let lease = self.leases.get_mut(&self.slot(id))?;
        if lease.expires <= now {
            return None;
        }
        if !lease.borrowed {
            let cap = match self.records.get(lease.record).map(|p| p.feature.expiry) {
                Some(crate::feature::Expiry::At(t)) => t,
                _ => now + duration,
            };
            self.by_expiry.remove(&(lease.expires, id));
            lease.expires = (now + duration).min(cap);
            self.by_expiry.insert((lease.expires, id));
        }
        Some(lease)
    }

    /// Returns a lease's seats (metered units stay consumed). `None` when unknown.
    pub fn release(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.leases.remove(&self.slot(id))?;
        self.count_borrowed(&lease, false);
        self.by_expiry.remove(&(lease.expires, id));
        if let Some(p) = self.records.get(lease.record) {
            let key = request_key(&lease.device, &lease.request_id, &p.feature.name);
            if self.by_request.get(&key) == Some(&id) {
                self.by_request.remove(&key);
            }
        }
        self.count_seats(&lease, false);
        self.drawn.remove(&id);
        Some(lease)
    }

    /// Returns the seats of every lease that has run out at `now`; returns those leases.
    pub fn expire(&mut self, now: OffsetDateTime) -> Vec<Lease> {
        let gone: Vec<LeaseId> = self
            .by_expiry
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|&(_, id)| id)
            .collect();
        gone.into_iter().filter_map(|id| self.release(id)).collect()
    }

    /// Puts back a lease loaded from storage (on restart), counting its seats. A lease already
    /// expired at `now` is not restored.
    pub fn restore(&mut self, lease: Lease, now: OffsetDateTime) -> bool {
        self.restore_in(lease, now, None)
    }

    /// [`SeatBook::restore`] of a lease stored with the named pool it drew on (`drawn`, by name;
    /// `None`: the default pool, or not known): counted in that pool while the model has one of
    /// that name, else where the rules put its holder's hostid and user.
    pub fn restore_in(&mut self, lease: Lease, now: OffsetDateTime, drawn: Option<&str>) -> bool {
        if lease.expires <= now || lease.record >= self.records.len() {
            return false;
        }
        // a lease with this id already held is replaced
        self.release(lease.id);
        if let Some(name) = drawn {
            self.drawn.insert(lease.id, name.to_string());
        }
        let metered = self.records[lease.record].feature.metered;
        if let (Some(pl), false) = (self.pools.as_mut(), metered) {
            let q = drawn
                .and_then(|n| pl.model.pools().iter().position(|p| p.name == n))
                .or_else(|| holder_pool(&pl.model, &lease.device));
            if let Some(q) = q {
                pl.lease_pool.insert(lease.id, q);
            }
        }
        self.count_seats(&lease, true);
        self.skip_past(lease.id);
        self.by_request.insert(
            request_key(
                &lease.device,
                &lease.request_id,
                &self.records[lease.record].feature.name,
            ),
            lease.id,
        );
        self.by_expiry.insert((lease.expires, lease.id));
        self.count_borrowed(&lease, true);
        self.leases.insert(self.slot(lease.id), lease);
        true
    }

    /// Puts a lease as another license server sharing the store decided it (a cluster member's
    /// grant or renewal), replacing one with the same id. Returns whether it is held now.
    pub fn put(&mut self, lease: Lease, now: OffsetDateTime) -> bool {
        self.put_in(lease, now, None)
    }

    /// [`SeatBook::put`] of a lease with the named pool it drew on (see
    /// [`SeatBook::restore_in`]).
    pub fn put_in(&mut self, lease: Lease, now: OffsetDateTime, drawn: Option<&str>) -> bool {
        let id = lease.id;
        let held = self.restore_in(lease, now, drawn);
        if !held {
            // expired (or of an unknown record) as decided there: not held here either
            self.release(id);
        }
        held
    }

    /// Sets a lease's expiry as another license server decided it; `false` when unknown.
    pub fn set_expiry(&mut self, id: LeaseId, expires: OffsetDateTime) -> bool {
        let Some(lease) = self.leases.get_mut(&self.slot(id)) else {
            return false;
        };
        self.by_expiry.remove(&(lease.expires, id));
        lease.expires = expires;
        self.by_expiry.insert((expires, id));
        true
    }

    /// The id the next lease will get.
    pub fn next_id(&self) -> LeaseId {
        self.ids.id(self.next)
    }

    /// Makes sure no lease granted from now on gets `id` (an id stored before, or one another
    /// license server sharing the store and the id key has used): the count it was made from, and
    /// every lower one, are not used again. Ids this book's permutation never makes (those of
    /// earlier versions) cannot meet a new one and change nothing.
    pub fn skip_past(&mut self, id: LeaseId) {
        if let Some(n) = self.ids.count_of(id) {
            self.next = self.next.max(n.saturating_add(1));
        }
    }

    /// The count the next lease will be made from (see [`LeaseIds`]): stored with each commit,
    /// so that ids of leases returned before a restart are not handed out again after it.
    pub fn next_count(&self) -> u64 {
        self.next
    }

    /// Makes sure no lease granted from now on is made from a count below `n`.
    pub fn skip_to_count(&mut self, n: u64) {
        self.next = self.next.max(n);
    }

    /// Counts metered units consumed before a restart.
    pub fn restore_consumed(&mut self, record: usize, units: u64) {
        if let Some(p) = self.records.get_mut(record) {
            p.consumed = units;
        }
    }

    /// Checks the book's own invariant: each record's seats in use equal its leases' seats and
    /// stay within count plus overdraft. For tests and assertions in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.by_expiry.len() != self.leases.len() || self.by_request.len() > self.leases.len() {
            return Err(format!(
                "indexes out of step: {} leases, {} by expiry, {} by request",
                self.leases.len(),
                self.by_expiry.len(),
                self.by_request.len()
            ));
        }
        let mut borrowed: Sharded<u64, u32> = Sharded::default();
        for l in self.leases.values().filter(|l| l.borrowed && l.count > 0) {
            for k in self.borrow_accounts(&l.device).into_iter().flatten() {
                *borrowed.get_or_insert_with(k, || 0) += l.count;
            }
        }
        if borrowed != self.borrowed_by {
            return Err("borrowed counts per device out of step".into());
        }
        let mut sums = vec![0u64; self.records.len()];
        for l in self.leases.values() {
            if !self.by_expiry.contains(&(l.expires, l.id)) {
                return Err(format!("lease {} missing from the expiry index", l.id));
            }
            if let Some(s) = sums.get_mut(l.record) {
                *s += u64::from(l.count);
            }
        }
        if let Some(r) = &self.reserved {
            let mut again = Reserved {
                alloc: r.alloc.clone(),
                wants: HashMap::new(),
                held: HashMap::new(),
                shared: vec![0; self.records.len()],
            };
            for l in self.leases.values() {
                if !self.records[l.record].feature.metered {
                    again.count(&l.device, l.record, u64::from(l.count), true);
                }
            }
            if again.held != r.held || again.shared != r.shared {
                return Err(format!(
                    "reserved seats out of step: held {:?} shared {:?}, leases say {:?} {:?}",
                    r.held, r.shared, again.held, again.shared
                ));
            }
        }
        if let Some(pl) = &self.pools {
            let mut held = vec![vec![0u64; self.records.len()]; pl.model.pools().len()];
            let mut default_used = vec![0u64; self.records.len()];
            for l in self.leases.values() {
                if self.records[l.record].feature.metered {
                    continue;
                }
                let n = u64::from(l.count);
                match pl
                    .lease_pool
                    .get(&l.id)
                    .and_then(|&q| held.get_mut(q))
                    .and_then(|h| h.get_mut(l.record))
                {
                    Some(h) => *h += n,
                    None => default_used[l.record] += n,
                }
            }
            for (q, h) in held.iter().enumerate() {
                for (i, n) in h.iter().enumerate() {
                    default_used[i] += n.saturating_sub(pl.alloc.seats_of(q, i));
                }
            }
            if held != pl.held || default_used != pl.default_used {
                return Err(format!(
                    "pool seats out of step: held {:?} default {:?}, leases say {:?} {:?}",
                    pl.held, pl.default_used, held, default_used
                ));
            }
            if pl
                .lease_pool
                .keys()
                .any(|id| !self.leases.contains_key(&self.slot(*id)))
            {
                return Err("a lease returned is still counted in its pool".into());
            }
        }
        for (i, p) in self.records.iter().enumerate() {
            if p.used != sums[i] {
                return Err(format!(
                    "record {i}: used {} but leases hold {}",
                    p.used, sums[i]
                ));
            }
            if let Count::Counted(c) = p.feature.count {
                let limit = u64::from(c) + u64::from(p.feature.overdraft);
                let taken = if p.feature.metered {
                    p.consumed
                } else {
                    p.used
                };
                if taken > limit {
                    return Err(format!("record {i}: {taken} taken of {limit}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::Expiry;
    use crate::model::Identity;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);
    const LEASE: Duration = Duration::minutes(10);

    fn rec(name: &str, ver: &str, count: Count, overdraft: u32) -> Feature {
        let mut f = Feature::new(name, ver.parse().unwrap(), count);
        f.overdraft = overdraft;
        f
    }

    fn want(name: &str, ver: &str, count: u32) -> Want {
        Want {
            name: name.into(),
            version: ver.parse().unwrap(),
            count,
        }
    }

    fn granted(o: &Outcome) -> &Lease {
        match o {
            Outcome::Granted(l) => l,
            Outcome::Denied(d) => panic!("denied: {d}"),
        }
    }

    #[test]
    fn count_overdraft_and_denial() {
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(2), 1)]);
        for r in ["a", "b"] {
            assert_eq!(
                granted(&b.request(r, "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).overdraft,
                0
            );
        }
        assert_eq!(
            granted(&b.request("c", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).overdraft,
            1
        );
        assert_eq!(
            b.request("d", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0],
            Outcome::Denied(Denial::AllInUse {
                name: "cad".into(),
                total: 3
            })
        );
        b.check_invariants().unwrap();
    }

    #[test]
    fn leases_of_every_id_kind_are_found_renewed_and_returned_and_listed_in_grant_order() {
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(10), 0)]);
        let first = granted(&b.request("a", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).id;
        let second = granted(&b.request("b", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).id;
        // an earlier version's sequential id (below 2^32), and one above the permutation's range
        let lease = |id: LeaseId, device: &str| Lease {
            id,
            device: device.into(),
            request_id: "old".into(),
            record: 0,
            count: 1,
            overdraft: 0,
            expires: T0 + LEASE,
            borrowed: false,
        };
        let low: LeaseId = 7;
        let high: LeaseId = ID_BASE + ID_SPACE + 7;
        assert!(b.restore(lease(low, "c"), T0));
        assert!(b.restore(lease(high, "d"), T0));
        assert_eq!(b.lease_count(), 4);
        assert_eq!(b.used(0), 4);
        for id in [first, second, low, high] {
            assert_eq!(b.lease(id).map(|l| l.id), Some(id));
            assert!(b.renew(id, T0 + Duration::minutes(1), LEASE).is_some());
        }
        // granted ones in the order granted, then the others
        let order: Vec<LeaseId> = b.leases().map(|l| l.id).collect();
        assert_eq!(order, vec![first, second, low, high]);
        // keyed anew, the book still finds every lease it holds
        let mut b = b.with_id_key(&[9; 32]);
        for id in [first, second, low, high] {
            assert_eq!(b.lease(id).map(|l| l.id), Some(id));
        }
        assert_eq!(b.release(low).map(|l| l.device), Some("c".to_string()));
        assert_eq!(b.release(high).map(|l| l.device), Some("d".to_string()));
        assert!(b.lease(low).is_none() && b.lease(high).is_none());
        assert_eq!(b.lease_count(), 2);
        b.check_invariants().unwrap();
    }

    #[test]
    fn newer_serves_older_and_the_rule_picks_the_first_to_expire() {
        let mut soon = rec("cad", "2.0", Count::Counted(1), 0);
        soon.expiry = Expiry::At(T0 + Duration::days(10));
        let later = rec("cad", "3.0", Count::Counted(1), 0);
        let mut b = SeatBook::new(vec![later, soon]);
        // a 1.0 request: both fit, the one expiring first (index 1) serves
        let first =
            granted(&b.request("a", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).clone();
        assert_eq!(first.record, 1);
        // a 3.0 request can only take the 3.0 record
        assert_eq!(
            granted(&b.request("b", "1", &[want("cad", "3.0", 1)], T0, LEASE, None)[0]).record,
            0
        );
        // a 4.0 request: too new
        assert!(matches!(
            b.request("c", "1", &[want("cad", "4.0", 1)], T0, LEASE, None)[0],
            Outcome::Denied(Denial::VersionTooLow { .. })
        ));
        // the lease never outlives its record
        assert_eq!(b.lease(first.id).unwrap().expires, T0 + LEASE);
    }

    #[test]
    fn a_retried_request_never_takes_a_second_seat() {
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(1), 0)]);
        let first =
            granted(&b.request("a", "req-7", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).clone();
        // the reconnect after a missed heartbeat repeats the request id
        let again = granted(
            &b.request(
                "a",
                "req-7",
                &[want("cad", "1.0", 1)],
                T0 + Duration::minutes(5),
                LEASE,
                None,
            )[0],
        )
        .clone();
        assert_eq!(first.id, again.id);
        assert_eq!(b.used(0), 1);
        assert_eq!(again.expires, T0 + Duration::minutes(15));
        b.check_invariants().unwrap();
    }

    #[test]
    fn metered_units_are_consumed_not_returned() {
        let mut m = rec("export", "1.0", Count::Counted(10), 0);
        m.metered = true;
        let mut b = SeatBook::new(vec![m]);
        let l =
            granted(&b.request("a", "1", &[want("export", "1.0", 7)], T0, LEASE, None)[0]).clone();
        b.release(l.id);
        assert_eq!(b.consumed(0), 7);
        assert!(matches!(
            b.request("a", "2", &[want("export", "1.0", 4)], T0, LEASE, None)[0],
            Outcome::Denied(_)
        ));
        granted(&b.request("a", "3", &[want("export", "1.0", 3)], T0, LEASE, None)[0]);
    }

    #[test]
    fn leases_expire_and_borrowing_runs_to_its_end() {
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(2), 0)]);
        let l = granted(&b.request("a", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).clone();
        let borrowed = granted(
            &b.request(
                "b",
                "1",
                &[want("cad", "1.0", 1)],
                T0,
                LEASE,
                Some(T0 + Duration::days(7)),
            )[0],
        )
        .clone();
        assert_eq!((b.borrowed_by("b"), b.borrowed_by("a")), (1, 0));
        b.check_invariants().unwrap();
        assert!(b.renew(l.id, T0 + Duration::minutes(5), LEASE).is_some());
        let gone = b.expire(T0 + Duration::minutes(16));
        assert_eq!(gone.len(), 1);
        assert_eq!(b.used(0), 1, "the borrowed seat stays");
        assert!(b.renew(l.id, T0 + Duration::minutes(16), LEASE).is_none());
        assert_eq!(b.expire(T0 + Duration::days(7)).len(), 1);
        assert_eq!(b.used(0), 0);
        assert_eq!(b.borrowed_by("b"), 0, "an expired borrow no longer counts");
        b.check_invariants().unwrap();
        let _ = borrowed;
    }

    #[test]
    fn uncounted_always_grants() {
        let mut b = SeatBook::new(vec![rec("viewer", "1.0", Count::Uncounted, 0)]);
        for i in 0..100 {
            granted(
                &b.request(
                    &format!("d{i}"),
                    "1",
                    &[want("viewer", "1.0", 1)],
                    T0,
                    LEASE,
                    None,
                )[0],
            );
        }
        b.check_invariants().unwrap();
    }

    #[test]
    fn a_retry_never_extends_a_lease_past_its_record_or_revives_one_run_out() {
        let mut r = rec("cad", "1.0", Count::Counted(1), 0);
        r.expiry = Expiry::At(T0 + Duration::minutes(15));
        let mut b = SeatBook::new(vec![r]);
        let ask = |b: &mut SeatBook, at| {
            granted(&b.request("a", "r", &[want("cad", "1.0", 1)], at, LEASE, None)[0]).clone()
        };
        assert_eq!(ask(&mut b, T0).expires, T0 + LEASE);
        // retried every few minutes, across the record's end
        assert_eq!(
            ask(&mut b, T0 + Duration::minutes(8)).expires,
            T0 + Duration::minutes(15)
        );
        assert_eq!(
            ask(&mut b, T0 + Duration::minutes(14)).expires,
            T0 + Duration::minutes(15)
        );
        let late = ask(&mut b, T0 + Duration::minutes(16));
        assert!(late.expires <= T0 + Duration::minutes(16), "{late:?}");
        assert_eq!(b.expire(T0 + Duration::minutes(16)).len(), 1);
        b.check_invariants().unwrap();
    }

    #[test]
    fn lease_ids_are_a_keyed_permutation() {
        let a = LeaseIds::new(&[1; 32]);
        let b = LeaseIds::new(&[2; 32]);
        let mut seen = std::collections::HashSet::new();
        for n in 1..5000u64 {
            let id = a.id(n);
            assert!((1 << 32..(1 << 62) + (1 << 32)).contains(&id), "{id}");
            assert!(i64::try_from(id).is_ok());
            assert_eq!(a.count_of(id), Some(n));
            assert!(seen.insert(id), "id {id} made twice");
            assert_ne!(id, b.id(n), "another key, other ids");
        }
        // consecutive counts do not give neighbouring ids
        let gaps = (1..100u64)
            .filter(|n| a.id(n + 1).abs_diff(a.id(*n)) < 1 << 20)
            .count();
        assert!(gaps < 3, "{gaps} close neighbours");
        // stored by count: in the order granted, and back to the same id
        for n in [1u64, 2, 1000, (1 << 62) - 1] {
            let id = a.id(n);
            assert_eq!(a.stored_key(id), i64::try_from(n).unwrap());
            assert_eq!(a.id_of_stored(a.stored_key(id)), id);
        }
        // ids it never makes are stored below zero, and come back too
        for id in [
            0u64,
            7,
            (1 << 32) - 1,
            (1 << 62) + (1 << 32),
            i64::MAX as u64,
        ] {
            let key = a.stored_key(id);
            assert!(key < 0, "{id} stored as {key}");
            assert_eq!(a.id_of_stored(key), id);
        }
        // the ids of earlier versions are never made
        assert_eq!(a.count_of(7), None);
        assert_eq!(a.count_of(u64::MAX), None);
        // SipHash-2-4 test vector (the reference paper's key 00..0f over the bytes 00..07)
        assert_eq!(
            siphash24(
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908,
                0x0706_0504_0302_0100
            ),
            0x93f5_f579_9a93_2462
        );
    }

    #[test]
    fn a_restored_book_never_hands_out_a_stored_id_again() {
        let key = [9; 32];
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(10), 0)]).with_id_key(&key);
        let ids: Vec<u64> = (0..5)
            .map(|i| {
                granted(
                    &b.request(
                        &format!("d{i}"),
                        "1",
                        &[want("cad", "1.0", 1)],
                        T0,
                        LEASE,
                        None,
                    )[0],
                )
                .id
            })
            .collect();
        // a new book that restores only the last lease (the others were returned)
        let mut c = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(10), 0)]).with_id_key(&key);
        let last = b.lease(ids[4]).unwrap().clone();
        assert!(c.restore(last, T0));
        let next = granted(&c.request("x", "1", &[want("cad", "1.0", 1)], T0, LEASE, None)[0]).id;
        assert!(!ids.contains(&next));
        // an old sequential id restored changes nothing
        let mut old = b.lease(ids[0]).unwrap().clone();
        old.id = 3;
        assert!(c.restore(old, T0));
        c.check_invariants().unwrap();
    }

    #[test]
    fn named_user_seats_go_only_to_the_users_assigned() {
        let mut f = rec("cad", "2.0", Count::Counted(2), 0);
        f.named_user = true;
        let mut b = SeatBook::new(vec![f, rec("cam", "1.0", Count::Counted(5), 0)]);
        let take = |b: &mut SeatBook, who: &str, r: &str, name: &str| {
            b.request(who, r, &[want(name, "1.0", 1)], T0, LEASE, None)
                .remove(0)
        };
        // nobody assigned yet: nobody served
        assert!(
            matches!(take(&mut b, "string=a|user=ann", "r1", "cad"), Outcome::Denied(Denial::NotAuthorised { name }) if name == "cad")
        );
        let mut n = NamedUsers::default();
        n.features.insert(
            "cad".into(),
            ["ann", "bob", "cy"].map(String::from).to_vec(),
        );
        let a = b.set_named_users(&n);
        assert_eq!(a[0].trimmed, vec!["cy"]);
        assert!(matches!(
            take(&mut b, "string=a|user=ann", "r2", "cad"),
            Outcome::Granted(_)
        ));
        assert!(matches!(
            take(&mut b, "string=b|user=bob", "r3", "cad"),
            Outcome::Granted(_)
        ));
        // trimmed, a stranger, a device without a user: refused, naming the feature
        for who in ["string=c|user=cy", "string=d|user=dan", "string=e"] {
            let o = take(&mut b, who, "r4", "cad");
            assert!(
                matches!(&o, Outcome::Denied(Denial::NotAuthorised { .. })),
                "{who}: {o:?}"
            );
            assert_eq!(
                Denial::NotAuthorised { name: "cad".into() }
                    .to_string()
                    .split(' ')
                    .next(),
                Some("cad")
            );
        }
        // other features are not affected
        assert!(matches!(
            take(&mut b, "string=e", "r5", "cam"),
            Outcome::Granted(_)
        ));
        b.check_invariants().unwrap();
    }

    fn reservations(json: serde_json::Value) -> Reservations {
        Reservations::parse(&json.to_string()).unwrap()
    }

    #[test]
    fn reserved_seats_go_only_to_their_holder_who_may_also_take_shared_ones() {
        // 5 seats, 1 of overdraft: 2 reserved for device A, 1 for user bob
        let mut b = SeatBook::new(vec![rec("cad", "2.0", Count::Counted(5), 1)]);
        let st = b.set_reservations(&reservations(serde_json::json!({"groups": [
            {"name": "Lab", "reservations": [
                {"holder": "string=A", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]},
                {"holder": "user=bob", "entries": [{"feature": "cad", "version": "2.0", "count": 1}]}]}]})));
        assert!(st.iter().all(|s| s.status == Satisfied::Yes), "{st:?}");
        assert_eq!(b.reserved_seats(0), 3);
        let take = |b: &mut SeatBook, who: &str, r: &str, n: u32| {
            b.request(who, r, &[want("cad", "1.0", n)], T0, LEASE, None)
                .remove(0)
        };
        // the shared seats (2) and the overdraft seat go to others; then nothing
        assert!(
            matches!(take(&mut b, "string=C", "c1", 2), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(
            matches!(take(&mut b, "string=D", "d1", 1), Outcome::Granted(l) if l.overdraft == 1)
        );
        assert!(matches!(
            take(&mut b, "string=E", "e1", 1),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        // the holders still get theirs, within their reservation, never in overdraft
        let a = take(&mut b, "string=A", "a1", 2);
        assert!(matches!(&a, Outcome::Granted(l) if l.overdraft == 0 && l.count == 2));
        assert!(matches!(
            take(&mut b, "string=A", "a2", 1),
            Outcome::Denied(_)
        ));
        assert!(
            matches!(take(&mut b, "string=X|user=bob", "b1", 1), Outcome::Granted(l) if l.overdraft == 0)
        );
        b.check_invariants().unwrap();
        // a shared seat returned: A may take it beyond its reservation
        let Outcome::Granted(c) = b
            .request("string=C", "c1", &[want("cad", "1.0", 2)], T0, LEASE, None)
            .remove(0)
        else {
            panic!("retry")
        };
        b.release(c.id).unwrap();
        assert!(
            matches!(take(&mut b, "string=A", "a3", 1), Outcome::Granted(l) if l.overdraft == 0)
        );
        b.check_invariants().unwrap();
        // A returns its reserved seats: they are A's again, not E's
        let Outcome::Granted(a) = a else { panic!() };
        b.release(a.id).unwrap();
        // (shared: D's 1 of 2, and 1 of overdraft; A's a3 is within its reservation now)
        assert!(matches!(
            take(&mut b, "string=E", "e2", 3),
            Outcome::Denied(_)
        ));
        assert!(
            matches!(take(&mut b, "string=E", "e3", 1), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(
            matches!(take(&mut b, "string=A", "a4", 1), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(
            matches!(take(&mut b, "string=A", "a5", 1), Outcome::Granted(l) if l.overdraft == 1)
        );
        b.check_invariants().unwrap();
    }

    #[test]
    fn a_featureless_request_asks_for_what_is_reserved_for_the_device_and_its_user() {
        let mut b = SeatBook::new(vec![
            rec("cad", "2.0", Count::Counted(5), 0),
            rec("cam", "1.0", Count::Counted(5), 0),
        ]);
        b.set_reservations(&reservations(serde_json::json!({"groups": [
            {"name": "Lab", "reservations": [
                {"holder": "string=A", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]},
                {"holder": "user=bob", "entries": [
                    {"feature": "cad", "version": "2.0", "count": 1},
                    {"feature": "cam", "version": "1.0", "count": 3}]}]}]})));
        let w = b.reserved_wants("string=A|user=bob");
        let names: Vec<(&str, u32)> = w.iter().map(|w| (w.name.as_str(), w.count)).collect();
        assert_eq!(names, vec![("cad", 2), ("cam", 3)]);
        assert!(b.reserved_wants("string=Z").is_empty());
        // without reservations: nothing
        let mut plain = b.clone();
        plain.set_reservations(&Reservations::default());
        assert!(plain.reserved_wants("string=A").is_empty());
        assert_eq!(plain.reserved_seats(0), 0);
    }

    #[test]
    fn leases_held_before_reservations_are_counted_against_them() {
        let mut b = SeatBook::new(vec![rec("cad", "2.0", Count::Counted(3), 0)]);
        let held = b.request("string=A", "a1", &[want("cad", "1.0", 1)], T0, LEASE, None);
        let other = b.request("string=C", "c1", &[want("cad", "1.0", 2)], T0, LEASE, None);
        assert!(matches!(held[0], Outcome::Granted(_)) && matches!(other[0], Outcome::Granted(_)));
        // two reserved for A: A holds one of them; C's two leases are over the one shared seat
        b.set_reservations(&reservations(serde_json::json!({"groups": [{"name": "Lab", "reservations": [
            {"holder": "string=A", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]}]}]})));
        b.check_invariants().unwrap();
        let take = |b: &mut SeatBook, who: &str, r: &str| {
            b.request(who, r, &[want("cad", "1.0", 1)], T0, LEASE, None)
                .remove(0)
        };
        // every seat is held: A's second reserved seat waits for C's to come back
        assert!(matches!(
            take(&mut b, "string=A", "a2"),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        let Outcome::Granted(c) = &other[0] else {
            panic!()
        };
        b.release(c.id).unwrap();
        assert!(matches!(take(&mut b, "string=A", "a2"), Outcome::Granted(l) if l.overdraft == 0));
        // the one shared seat is free again; then none
        assert!(matches!(
            take(&mut b, "string=D", "d1"),
            Outcome::Granted(_)
        ));
        assert!(matches!(
            take(&mut b, "string=E", "e1"),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        b.check_invariants().unwrap();
    }

    #[test]
    fn borrowed_seats_count_per_device_and_per_user() {
        let mut b = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(20), 0)]);
        let until = Some(T0 + Duration::days(3));
        granted(
            &b.request(
                "string=pc1|user=ann",
                "1",
                &[want("cad", "1.0", 2)],
                T0,
                LEASE,
                until,
            )[0],
        );
        // seats, not leases; the device counts whoever the user
        assert_eq!(b.borrowed_by("string=pc1|user=ann"), 2);
        assert_eq!(b.borrowed_by("string=pc1|user=bob"), 2);
        assert_eq!(b.borrowed_by("string=pc1"), 2);
        // and the user counts on any device
        assert_eq!(b.borrowed_by("string=pc2|user=ann"), 2);
        assert_eq!(b.borrowed_by("string=pc2"), 0);
        granted(
            &b.request(
                "string=pc2|user=ann",
                "1",
                &[want("cad", "1.0", 3)],
                T0,
                LEASE,
                until,
            )[0],
        );
        assert_eq!(b.borrowed_by("string=pc2"), 3);
        assert_eq!(b.borrowed_by("string=pc3|user=ann"), 5);
        b.check_invariants().unwrap();
        b.expire(T0 + Duration::days(3));
        assert_eq!(b.borrowed_by("string=pc3|user=ann"), 0);
        b.check_invariants().unwrap();
    }

    // ---- named pools ----------------------------------------------------------------------

    /// 8 seats of cad 2.0 (1 of overdraft): 3 for pune (devices `string=p…`), 2 for kassel (the
    /// attribute site=kassel), 3 left in the default pool.
    fn pooled_book() -> SeatBook {
        let mut b = SeatBook::new(vec![rec("cad", "2.0", Count::Counted(8), 1)]);
        let model = crate::model::Model::parse(
            r#"model "sites" {
                 partitions {
                   partition "pune" { "cad" 2.0 3 }
                   partition "kassel" { "cad" 1.0 2 }
                 }
                 rules {
                   hostid "string=p*" => "pune"
                   attribute "site" = "kassel" => "kassel"
                 }
               }"#,
        )
        .unwrap();
        let resolved = model
            .resolve(&[rec("cad", "2.0", Count::Counted(8), 1)])
            .unwrap();
        assert_eq!(b.set_pools(Some(&resolved)), Ok(Vec::new()));
        b
    }

    fn pool_row(b: &SeatBook, pool: Option<&str>) -> (u64, u64) {
        let r = b
            .pool_use()
            .into_iter()
            .find(|u| u.pool.as_deref() == pool)
            .unwrap();
        (r.allocated, r.used)
    }

    fn kassel_attrs() -> Vec<(String, String)> {
        vec![("site".to_string(), "kassel".to_string())]
    }

    #[test]
    fn a_pool_member_draws_from_its_pool_first_and_others_cannot_take_pool_seats() {
        let mut b = pooled_book();
        assert_eq!(pool_row(&b, Some("pune")), (3, 0));
        assert_eq!(pool_row(&b, Some("kassel")), (2, 0));
        assert_eq!(pool_row(&b, None), (3, 0));
        let take = |b: &mut SeatBook, who: &str, r: &str, n: u32| {
            b.request(who, r, &[want("cad", "2.0", n)], T0, LEASE, None)
                .remove(0)
        };
        // strangers: the default pool's 3 and its overdraft seat; then nothing, 5 pool seats free
        assert!(
            matches!(take(&mut b, "string=d1", "1", 3), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(
            matches!(take(&mut b, "string=d2", "1", 1), Outcome::Granted(l) if l.overdraft == 1)
        );
        assert!(matches!(
            take(&mut b, "string=d3", "1", 1),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        assert_eq!(pool_row(&b, None), (3, 4));
        // pune's devices: their 3 seats, never in overdraft; then nothing (the default is full)
        assert!(
            matches!(take(&mut b, "string=p1", "1", 2), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(
            matches!(take(&mut b, "string=p2", "1", 1), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert!(matches!(
            take(&mut b, "string=p3", "1", 1),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        assert_eq!(pool_row(&b, Some("pune")), (3, 3));
        // kassel by its attribute (the hostid alone sends it to the default pool, which is full)
        let k = kassel_attrs();
        let who = Identity {
            hostid: "string=k1",
            user: None,
            alias: None,
            attributes: &k,
        };
        let pool = b.pool_of(&who);
        assert!(pool.is_some());
        assert!(matches!(
            take(&mut b, "string=k1", "0", 1),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        let got = b
            .request_in(
                pool,
                "string=k1",
                "1",
                &[want("cad", "2.0", 2)],
                T0,
                LEASE,
                None,
            )
            .remove(0);
        assert!(matches!(got, Outcome::Granted(l) if l.overdraft == 0));
        assert_eq!(pool_row(&b, Some("kassel")), (2, 2));
        assert_eq!(b.used(0), 9);
        b.check_invariants().unwrap();

        // d1 returns its 3 default seats: pune, whose pool is full, falls back on them
        let Outcome::Granted(d1) = take(&mut b, "string=d1", "1", 3) else {
            panic!("retry")
        };
        b.release(d1.id).unwrap();
        assert_eq!(pool_row(&b, None), (3, 1));
        assert!(
            matches!(take(&mut b, "string=p3", "2", 2), Outcome::Granted(l) if l.overdraft == 0)
        );
        assert_eq!(pool_row(&b, Some("pune")), (3, 3));
        assert_eq!(pool_row(&b, None), (3, 3));
        // the default pool's overdraft seat, then nothing
        assert!(
            matches!(take(&mut b, "string=d3", "1", 1), Outcome::Granted(l) if l.overdraft == 1)
        );
        assert!(matches!(
            take(&mut b, "string=d5", "1", 1),
            Outcome::Denied(Denial::AllInUse { .. })
        ));
        b.check_invariants().unwrap();
        // a pune seat returned: p3's seat beyond the pool is a pool seat now, one default seat
        // is free again, and a stranger takes it
        let Outcome::Granted(p2) = take(&mut b, "string=p2", "1", 1) else {
            panic!("retry")
        };
        b.release(p2.id).unwrap();
        assert_eq!(pool_row(&b, Some("pune")), (3, 3));
        assert_eq!(pool_row(&b, None), (3, 3));
        assert!(matches!(
            take(&mut b, "string=d5", "2", 1),
            Outcome::Granted(_)
        ));
        assert_eq!(b.used(0), 9);
        b.check_invariants().unwrap();
    }

    #[test]
    fn leases_held_are_counted_where_the_rules_put_their_holders() {
        // leases granted before the model: p1 (pune by hostid) and a kassel device (by attribute,
        // which the lease does not keep)
        let mut b = SeatBook::new(vec![rec("cad", "2.0", Count::Counted(8), 1)]);
        let p1 =
            granted(&b.request("string=p1", "1", &[want("cad", "2.0", 2)], T0, LEASE, None)[0])
                .clone();
        let k1 =
            granted(&b.request("string=k1", "1", &[want("cad", "2.0", 1)], T0, LEASE, None)[0])
                .clone();
        let pooled = pooled_book();
        let model = pooled.pool_model().unwrap().clone();
        b.set_pools(Some(&model)).unwrap();
        assert_eq!(pool_row(&b, Some("pune")), (3, 2));
        assert_eq!(pool_row(&b, Some("kassel")), (2, 0));
        assert_eq!(pool_row(&b, None), (3, 1));
        b.check_invariants().unwrap();
        // restored into a new book: the same
        let mut c = pooled_book();
        assert!(c.restore(p1.clone(), T0));
        assert!(c.restore(k1.clone(), T0));
        assert_eq!(c.pool_use(), b.pool_use());
        c.check_invariants().unwrap();
        // returned: out of their pools
        c.release(p1.id).unwrap();
        c.release(k1.id).unwrap();
        assert_eq!(pool_row(&c, Some("pune")), (3, 0));
        assert_eq!(pool_row(&c, None), (3, 0));
        c.check_invariants().unwrap();
        // the model taken out of force: one default pool again, nothing shown
        b.set_pools(None).unwrap();
        assert!(b.pool_use().is_empty());
        assert!(b.pool_model().is_none());
        b.check_invariants().unwrap();
    }

    #[test]
    fn reservations_and_pools_exclude_each_other_in_the_book() {
        let mut b = pooled_book();
        let model = b.pool_model().unwrap().clone();
        b.set_reservations(&reservations(serde_json::json!({"groups": [{"name": "Lab", "reservations": [
            {"holder": "string=A", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]}]}]})));
        assert!(
            b.pool_model().is_none(),
            "reservations take the pools out of force"
        );
        assert_eq!(
            b.set_pools(Some(&model)),
            Err(PoolsError::ReservationsInForce)
        );
        assert_eq!(b.reserved_seats(0), 2);
        b.set_reservations(&Reservations::default());
        assert_eq!(b.set_pools(Some(&model)), Ok(Vec::new()));
        b.check_invariants().unwrap();
    }

    #[test]
    fn higher_minimum_versions_are_placed_first_and_metered_seats_are_reported() {
        // cad 1.0 expires first: pune's 1.0 seats must not take the only 2.0 seats kassel needs
        let mut old = rec("cad", "1.0", Count::Counted(3), 0);
        old.expiry = Expiry::At(T0 + Duration::days(30));
        let records = vec![old, rec("cad", "2.0", Count::Counted(2), 0)];
        let model = crate::model::Model::parse(
            r#"model "m" { partitions { partition "pune" { "cad" 1.0 3 } partition "kassel" { "cad" 2.0 2 } } rules { any => "pune" } }"#,
        )
        .unwrap()
        .resolve(&records)
        .unwrap();
        let a = crate::pools::allocate(&model, &records);
        assert_eq!(a.seats, vec![vec![3, 0], vec![0, 2]]);
        assert!(a.problems.is_empty());
        // a metered record resolves (it is counted) but holds no pool seat: reported
        let mut m = rec("gen", "1.0", Count::Counted(4), 0);
        m.metered = true;
        let model = crate::model::Model::parse(
            r#"model "m" { partitions { partition "p" { "gen" 1.0 2 } } rules { any => "p" } }"#,
        )
        .unwrap()
        .resolve(std::slice::from_ref(&m))
        .unwrap();
        let mut b = SeatBook::new(vec![m]);
        let problems = b.set_pools(Some(&model)).unwrap();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("holds 0 of its 2 seats"),
            "{problems:?}"
        );
        // metered units are consumed as without pools
        assert!(matches!(
            b.request("string=x", "1", &[want("gen", "1.0", 4)], T0, LEASE, None)[0],
            Outcome::Granted(_)
        ));
        b.check_invariants().unwrap();
    }

    #[derive(Debug, Clone)]
    enum PoolOp {
        /// who: 0..2 pune, 2..4 kassel (by attribute), 4..6 strangers
        Request {
            who: u8,
            request: u8,
            count: u32,
        },
        Release {
            lease: usize,
        },
    }

    fn pool_op() -> impl Strategy<Value = PoolOp> {
        prop_oneof![
            3 => (0u8..6, 0u8..3, 1u32..3).prop_map(|(who, request, count)| PoolOp::Request { who, request, count }),
            1 => (0usize..20).prop_map(|lease| PoolOp::Release { lease }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn pools_hold_their_seats_for_their_members(ops in prop::collection::vec(pool_op(), 1..60)) {
            let mut b = pooled_book();
            let k = kassel_attrs();
            let mut held: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    PoolOp::Request { who, request, count } => {
                        let device = match who {
                            0 | 1 => format!("string=p{who}"),
                            2 | 3 => format!("string=k{who}"),
                            _ => format!("string=d{who}"),
                        };
                        let attrs: &[(String, String)] = if (2..4).contains(&who) { &k } else { &[] };
                        let pool = b.pool_of(&Identity { hostid: &device, user: None, alias: None, attributes: attrs });
                        let name = match who { 0 | 1 => Some("pune"), 2 | 3 => Some("kassel"), _ => None };
                        prop_assert_eq!(pool.is_some(), name.is_some());
                        let retry = b.retry_of(&device, &format!("r{request}"), "cad").is_some();
                        let before_pool = name.map(|n| pool_row(&b, Some(n)));
                        let before_default = pool_row(&b, None);
                        let out = b.request_in(pool, &device, &format!("r{request}"), &[want("cad", "2.0", count)], T0, LEASE, None).remove(0);
                        match out {
                            Outcome::Granted(l) => {
                                if !retry { held.push(l.id); }
                            }
                            Outcome::Denied(Denial::AllInUse { .. }) => {
                                // refused only when its pool and the default pool (with its
                                // overdraft seat) together cannot give the seats
                                let pool_free = before_pool.map_or(0, |(a, u)| a - u);
                                let default_free = (before_default.0 + 1).saturating_sub(before_default.1);
                                prop_assert!(pool_free + default_free < u64::from(count), "{:?} {:?}", before_pool, before_default);
                            }
                            Outcome::Denied(d) => prop_assert!(false, "{}", d),
                        }
                    }
                    PoolOp::Release { lease } => {
                        if lease < held.len() {
                            let id = held.remove(lease);
                            prop_assert!(b.release(id).is_some());
                        }
                    }
                }
                prop_assert!(b.check_invariants().is_ok(), "{:?}", b.check_invariants());
                // strangers never hold pool seats: the default pool stays within its count and
                // overdraft, and the record within its own
                let (a, u) = pool_row(&b, None);
                prop_assert!(u <= a + 1, "default {} of {}", u, a);
                prop_assert!(b.used(0) <= 9);
            }
        }
    }

    // ---- model-based property test --------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Request { device: u8, request: u8, count: u32 },
        Renew { lease: u64 },
        Release { lease: u64 },
        Advance { minutes: i64 },
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0u8..4, 1u32..4).prop_map(|(device, request, count)| Op::Request { device, request, count }),
            2 => (0u64..30).prop_map(|lease| Op::Renew { lease }),
            2 => (0u64..30).prop_map(|lease| Op::Release { lease }),
            1 => (1i64..15).prop_map(|minutes| Op::Advance { minutes }),
            1 => Just(Op::Expire),
        ]
    }

    /// The reference: a list of (id, device, request, count, expires); capacity 5 + 2 overdraft.
    #[derive(Default)]
    struct Model {
        leases: Vec<(u64, u8, u8, u32, OffsetDateTime)>,
    }

    impl Model {
        fn used(&self) -> u64 {
            self.leases.iter().map(|l| u64::from(l.3)).sum()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_book_matches_a_simple_model(ops in prop::collection::vec(op(), 1..80)) {
            let mut book = SeatBook::new(vec![rec("cad", "1.0", Count::Counted(5), 2)]);
            let mut model = Model::default();
            let mut granted_ids: Vec<u64> = Vec::new();
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Request { device, request, count } => {
                        let out = book.request(&format!("d{device}"), &format!("r{request}"), &[want("cad", "1.0", count)], now, LEASE, None);
                        match model.leases.iter_mut().find(|l| l.1 == device && l.2 == request) {
                            Some(existing) => {
                                // a retry: same lease, no new seat
                                let l = granted(&out[0]);
                                prop_assert_eq!(l.id, existing.0);
                                // a lease run out (not yet swept) is not revived
                                if existing.4 > now {
                                    existing.4 = existing.4.max(now + LEASE);
                                }
                            }
                            None => {
                                if model.used() + u64::from(count) <= 7 {
                                    let l = granted(&out[0]);
                                    prop_assert!(!granted_ids.contains(&l.id), "an id handed out twice");
                                    granted_ids.push(l.id);
                                    model.leases.push((l.id, device, request, count, now + LEASE));
                                } else {
                                    prop_assert!(matches!(out[0], Outcome::Denied(Denial::AllInUse { .. })), "{:?}", out);
                                }
                            }
                        }
                    }
                    Op::Renew { lease } => {
                        // the n-th lease granted so far (ids are not sequential), or one never granted
                        let lease = granted_ids.get(lease as usize).copied().unwrap_or(lease);
                        let ok = book.renew(lease, now, LEASE).is_some();
                        let m = model.leases.iter_mut().find(|l| l.0 == lease && l.4 > now);
                        prop_assert_eq!(ok, m.is_some());
                        if let Some(m) = m { m.4 = now + LEASE; }
                    }
                    Op::Release { lease } => {
                        let lease = granted_ids.get(lease as usize).copied().unwrap_or(lease);
                        let ok = book.release(lease).is_some();
                        let before = model.leases.len();
                        model.leases.retain(|l| l.0 != lease);
                        prop_assert_eq!(ok, model.leases.len() < before);
                    }
                    Op::Advance { minutes } => now += Duration::minutes(minutes),
                    Op::Expire => {
                        book.expire(now);
                        model.leases.retain(|l| l.4 > now);
                    }
                }
                prop_assert!(book.check_invariants().is_ok(), "{:?}", book.check_invariants());
                prop_assert_eq!(book.used(0), model.used());
                prop_assert!(book.used(0) <= 7);
            }
        }
    }
}
