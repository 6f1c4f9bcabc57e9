//! The seat book in memory with what the engine keeps beside it: the record keys, the peaks since
//! the last usage report, and the digest of the leases held.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tessera_core::feature::Feature;
use tessera_core::seats::{Lease, LeaseId, SeatBook};
use tessera_core::time::OffsetDateTime;
use tessera_store::{AnyStore, InstanceId, LeaseChange, LeaseRow, LeaseStore, StoreError};

use crate::record_key;

/// A lease as a row, under its id (the row the digest hashes; stored rows are keyed by
/// [`Book::stored_row`]).
pub(crate) fn row(l: &Lease, keys: &[String]) -> LeaseRow {
    LeaseRow {
        id: i64::try_from(l.id).unwrap_or(i64::MAX),
        device: l.device.clone(),
        request_id: l.request_id.clone(),
        record_key: keys.get(l.record).cloned().unwrap_or_default(),
        count: i64::from(l.count),
        overdraft: i64::from(l.overdraft),
        expires_at: l.expires,
        borrowed: l.borrowed,
        // what the client said about the device: the writer fills it in from the request
        alias: None,
        device_type: tessera_core::DeviceType::Unknown,
    }
}

/// The digest of a set of leases: the sum (mod 2^256) of a keyed hash of each, so adding or
/// removing one lease updates it in constant time and the order does not matter. Stored with every
/// commit; recomputed from the rows at start. A row deleted or changed by hand (other than its
/// expiry, which renewals move all the time) no longer adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SetDigest([u64; 4]);

impl SetDigest {
    pub(crate) fn add(&mut self, h: [u8; 32]) {
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

    pub(crate) fn sub(&mut self, h: [u8; 32]) {
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

    pub(crate) fn hex(&self) -> String {
        self.0.iter().rev().map(|l| format!("{l:016x}")).collect()
    }
}

/// The keyed hash of a stored lease (everything but its expiry).
pub(crate) fn row_hash(secret: &[u8; 32], r: &LeaseRow) -> [u8; 32] {
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
pub(crate) struct Book {
    pub(crate) seats: SeatBook,
    pub(crate) keys: Vec<String>,
    pub(crate) index: HashMap<String, usize>,
    /// Most seats in use at once per record since the last usage report.
    pub(crate) peaks: Vec<u64>,
    /// The digest of the leases held (single process; see [`SetDigest`]).
    pub(crate) digest: SetDigest,
    pub(crate) secret: [u8; 32],
    /// Held leases stored under another key than their id's count (rows stored before leases
    /// were kept by count: migration 13 keeps them under `-1 - id`); empty once they are gone.
    odd_keys: HashMap<LeaseId, i64>,
}

impl Book {
    pub(crate) fn empty(records: Vec<Feature>, secret: [u8; 32]) -> Book {
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
            odd_keys: HashMap::new(),
        }
    }

    /// The key lease `id` is stored under (see [`tessera_core::seats::LeaseIds::stored_key`]).
    pub(crate) fn stored_key(&self, id: LeaseId) -> i64 {
        match self.odd_keys.get(&id) {
            Some(k) => *k,
            None => self.seats.lease_ids().stored_key(id),
        }
    }

    /// The key lease `id` is stored under, for deleting it: the book forgets an odd key.
    pub(crate) fn take_stored_key(&mut self, id: LeaseId) -> i64 {
        match self.odd_keys.remove(&id) {
            Some(k) => k,
            None => self.seats.lease_ids().stored_key(id),
        }
    }

    /// A held lease as it is stored.
    pub(crate) fn stored_row(&self, l: &Lease) -> LeaseRow {
        LeaseRow {
            id: self.stored_key(l.id),
            ..row(l, &self.keys)
        }
    }

    /// The lease id of a stored key; notes an odd key.
    fn id_of_stored(&mut self, key: i64) -> LeaseId {
        let ids = self.seats.lease_ids();
        let id = ids.id_of_stored(key);
        if ids.stored_key(id) != key {
            self.odd_keys.insert(id, key);
        }
        id
    }

    pub(crate) fn hash(&self, l: &Lease) -> [u8; 32] {
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

    /// A book over `records` holding the stored leases (rows as stored, keyed by
    /// [`Book::stored_key`]).
    pub(crate) fn from_rows(
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

    /// A book over `records` holding the leases in the store, read one by one; with the stored
    /// keys of the leases it could not hold (expired, or of a record no longer in the bundle).
    /// Also returns the digest of every stored row (held or not), to compare with the stored one.
    pub(crate) async fn load(
        records: Vec<Feature>,
        secret: [u8; 32],
        store: &AnyStore,
        instance: &InstanceId,
        now: OffsetDateTime,
    ) -> Result<(Book, Vec<i64>, SetDigest), StoreError> {
        let mut book = Book::empty(records, secret);
        let mut stale = Vec::new();
        let mut all = SetDigest::default();
        store
            .scan_leases(instance, |r| book.hold_row(r, now, &mut stale, &mut all))
            .await?;
        book.finish(store.load_consumed(instance).await?);
        Ok((book, stale, all))
    }

    fn hold_row(
        &mut self,
        r: LeaseRow,
        now: OffsetDateTime,
        stale: &mut Vec<i64>,
        all: &mut SetDigest,
    ) {
        let key = r.id;
        let id = self.id_of_stored(key);
        // ids in the store are never handed out again, held here or not
        self.seats.skip_past(id);
        let r = LeaseRow {
            id: i64::try_from(id).unwrap_or(i64::MAX),
            ..r
        };
        let h = row_hash(&self.secret, &r);
        all.add(h);
        let held = self.lease_of(r).is_some_and(|l| self.seats.restore(l, now));
        if held {
            self.digest.add(h);
        } else {
            self.odd_keys.remove(&id);
            stale.push(key);
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

    /// Applies a change another cluster member committed (keyed as stored).
    pub(crate) fn apply_remote(&mut self, c: LeaseChange, now: OffsetDateTime) {
        // an id another member used is never handed out here, whether this member holds it or not
        let id = match &c {
            LeaseChange::Put(LeaseRow { id, .. })
            | LeaseChange::Expiry { id, .. }
            | LeaseChange::Delete { id } => {
                let id = self.id_of_stored(*id);
                self.seats.skip_past(id);
                id
            }
            _ => 0,
        };
        match c {
            LeaseChange::Put(r) => {
                let r = LeaseRow {
                    id: i64::try_from(id).unwrap_or(i64::MAX),
                    ..r
                };
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
            LeaseChange::Expiry { expires_at, .. } => {
                self.seats.set_expiry(id, expires_at);
            }
            LeaseChange::Delete { .. } => {
                self.odd_keys.remove(&id);
                self.seats.release(id);
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

    pub(crate) fn note_peak(&mut self, record: usize) {
        let used = self.seats.used(record);
        if let Some(p) = self.peaks.get_mut(record) {
            *p = (*p).max(used);
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
        later.expires_at = OffsetDateTime::UNIX_EPOCH + tessera_core::time::Duration::days(1);
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
