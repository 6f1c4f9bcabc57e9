//! Named license pools in force: which feature records hold each pool's seats, and the rule the
//! seat book serves requests by (the model language itself is [`crate::model`]).
//!
//! **Which seats a pool holds.** [`allocate`] places every allocation of a resolved model (a
//! pool's seats of a feature at a minimum version) on the counted, unmetered records of that
//! feature at that version or newer, the **first to expire first** (then the lowest version, then
//! the order the records were loaded in: the rule that picks the record serving a request). The
//! allocations with the **highest minimum version are placed first** (they fit fewer records), so
//! every model that resolves fits whole: resolving checked that, at each minimum version, the
//! pools take no more than the records of that version or newer hold. An allocation that still
//! does not fit (its records are metered, which resolving counts but a pool cannot hold) is
//! placed as far as it goes and reported.
//!
//! **Who draws from which pool.** A request is served for the pool the rules of access send its
//! requester to ([`crate::model::ResolvedModel::pool_for`]):
//!
//! - a requester whose rule names a pool draws from that pool's seats first, then from the
//!   default pool when its pool has no seat left;
//! - a requester sent to the default pool (a `default` rule, or no rule matching) draws only from
//!   the default pool;
//! - the **default pool** of a record is its count less every pool's seats on it; **overdraft
//!   only ever extends the default pool** (a pool's seats are never overdrawn).
//!
//! So pooled seats are kept for their pool's members, and a member is never refused while the
//! default pool has room.
//!
//! **Which pool a lease counts in.** A lease counts in the pool it drew from (its seats up to the
//! pool's seats on the record are pool seats, the rest default seats). When the book is made anew
//! (a restart, a new license bundle, a new model, a lease another cluster member granted), a
//! lease held is counted where the rules put its **holder**: its device's hostid and its user, as
//! the lease keeps them. Rules on a device alias or an attribute see neither then (the lease does
//! not keep them), so a lease granted by such a rule counts in the default pool until it is
//! returned. A lease counted where its pool is full leaves the book over that pool (or over the
//! default pool) until seats come back; the record's count and overdraft are never exceeded.

use crate::feature::{Count, Feature};
use crate::model::ResolvedModel;

/// The seats each pool of a model holds on each record (see the module's rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolAllocation {
    /// Per pool (in the model's order), per record (by index): seats held.
    pub seats: Vec<Vec<u64>>,
    /// Per record: seats held by all pools together.
    pub pooled: Vec<u64>,
    /// Allocations that could not be placed whole: what was missing, for the pools view.
    pub problems: Vec<String>,
}

impl PoolAllocation {
    /// Seats pool `pool` holds on record `i`.
    pub fn seats_of(&self, pool: usize, i: usize) -> u64 {
        self.seats
            .get(pool)
            .and_then(|s| s.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Seats of record `i` held by all pools together.
    pub fn pooled_on(&self, i: usize) -> u64 {
        self.pooled.get(i).copied().unwrap_or(0)
    }
}

/// Places every pool's seats on `records` (see the module's rule).
pub fn allocate(model: &ResolvedModel, records: &[Feature]) -> PoolAllocation {
    let mut free: Vec<u64> = records
        .iter()
        .map(|f| match f.count {
            Count::Counted(c) if !f.metered => u64::from(c),
            _ => 0,
        })
        .collect();
    let mut a = PoolAllocation {
        seats: vec![vec![0; records.len()]; model.pools().len()],
        pooled: vec![0; records.len()],
        problems: Vec::new(),
    };
    // (pool, allocation) in the order written, then the highest minimum version first
    let mut order: Vec<(usize, usize)> = model
        .pools()
        .iter()
        .enumerate()
        .flat_map(|(p, pool)| (0..pool.allocations.len()).map(move |k| (p, k)))
        .collect();
    order.sort_by(|&(p, k), &(q, l)| {
        let (x, y) = (
            &model.pools()[p].allocations[k],
            &model.pools()[q].allocations[l],
        );
        y.min_version.cmp(&x.min_version)
    });
    for (p, k) in order {
        let pool = &model.pools()[p];
        let want = &pool.allocations[k];
        let mut fitting: Vec<usize> = (0..records.len())
            .filter(|&i| {
                let r = &records[i];
                r.name == want.feature
                    && r.version.satisfies(&want.min_version)
                    && matches!(r.count, Count::Counted(_))
                    && !r.metered
            })
            .collect();
        fitting.sort_by(|&x, &y| {
            let (fx, fy) = (&records[x], &records[y]);
            fx.expiry
                .sort_key()
                .cmp(&fy.expiry.sort_key())
                .then_with(|| fx.version.cmp(&fy.version))
                .then_with(|| x.cmp(&y))
        });
        let mut left = want.count;
        for i in fitting {
            let take = left.min(free[i]);
            free[i] -= take;
            a.seats[p][i] += take;
            a.pooled[i] += take;
            left -= take;
            if left == 0 {
                break;
            }
        }
        if left > 0 {
            a.problems.push(format!(
                "pool \"{}\" holds {} of its {} seats of \"{}\" {} or later: the other records of that feature are metered or uncounted, and a pool holds only counted seats",
                pool.name,
                want.count - left,
                want.count,
                want.feature,
                want.min_version
            ));
        }
    }
    a
}
