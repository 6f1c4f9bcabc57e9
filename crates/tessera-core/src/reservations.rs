//! Reservations: seats set aside for one device or one user.
//!
//! A license administrator groups reservations (a department, a lab): a [`ReservationGroup`]
//! holds [`Reservation`]s, each for one device host id (`ethernet=…`, `machine_id=…`) or one user
//! (`user=alice`), each holding [`ReservationEntry`]s: a feature, the lowest version that serves it
//! (`a.b`) and a positive count. Reserved seats go only to their holder; the holder may also take
//! shared seats beyond its reservation. A capability request with no features asks for everything
//! reserved for its device and its user.
//!
//! **Which seats are set aside.** [`Reservations::allocate`] walks the entries in order (groups in
//! order, reservations and entries in order) and sets each one's count aside on the counted,
//! unmetered records of its feature at its version or newer, the first to expire first (the rule
//! that picks the record serving a request, docs/protocol.md). An entry is set aside **whole or
//! not at all**: one the records cannot hold after the entries before it is *unsatisfied*, with
//! the reason, and its holder takes shared seats like anyone. Uncounted features need no
//! reservation (every request is served) and metered features consume units rather than hold
//! seats: entries for either are unsatisfied, saying so.
//!
//! **Holding.** A lease of a device (and its user) on a record draws first on the device's
//! reservation of that record, else on the user's: seats it holds up to that reservation are
//! reserved seats, the rest shared. Shared seats of a record are its count less everything set
//! aside on it; overdraft, when the record allows it, only ever extends the shared seats.
//!
//! The JSON form ([`Reservations`]) is the import and export format and what the license server
//! stores; [`Reservations::parse`] refuses a bad file whole, naming the entry that is wrong.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::feature::{Count, Feature};
use crate::hostid::{HostId, HostIdKind};
use crate::version::Version;

/// Every reservation group of a license server: the import and export document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservations {
    /// The groups, in order (earlier entries are set aside first).
    pub groups: Vec<ReservationGroup>,
}

/// A named set of reservations, added and deleted whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationGroup {
    /// The group's name (unique; 1 to 128 characters).
    pub name: String,
    /// Its reservations.
    pub reservations: Vec<Reservation>,
}

/// Seats set aside for one device or one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// Who: a device's host id (`KIND=VALUE`, as clients send it) or a user (`user=NAME`).
    pub holder: String,
    /// What is reserved.
    pub entries: Vec<ReservationEntry>,
}

/// A feature's seats reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationEntry {
    /// The feature.
    pub feature: String,
    /// The lowest version that serves the reservation (`a.b`): records of this version or newer.
    pub version: String,
    /// Seats (at least 1).
    pub count: u32,
}

/// Why a reservations document was refused: the place (`groups[1].reservations[0].entries[2]`)
/// and what is wrong there. Nothing of the document is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReservationError {
    /// Not JSON of the documented shape.
    #[error("not a reservations document: {detail} (docs/reservations.md shows the format)")]
    Malformed {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// A value is wrong at a place.
    #[error("{place}: {detail}")]
    Invalid {
        /// Where, as a JSON path.
        place: String,
        /// What is wrong and what is expected.
        detail: String,
    },
    /// A group with this name exists already.
    #[error(
        "{place}: a group named {name:?} exists already; delete it first, or choose another name"
    )]
    GroupExists {
        /// Where.
        place: String,
        /// The name.
        name: String,
    },
    /// No group of this name.
    #[error("no reservation group is named {name:?}")]
    NoSuchGroup {
        /// The name.
        name: String,
    },
}

/// The longest group name.
pub const MAX_GROUP_NAME_LEN: usize = 128;

/// Most entries in all reservations together.
pub const MAX_ENTRIES: usize = 100_000;

fn invalid(place: String, detail: impl Into<String>) -> ReservationError {
    ReservationError::Invalid {
        place,
        detail: detail.into(),
    }
}

/// The key a reservation is kept under: `user=NAME` for a user, the normalised host id for a device.
fn holder_key(holder: &str) -> Result<String, String> {
    let id: HostId = holder.trim().parse().map_err(|e| {
        format!("{e}; a reservation names a device's host id (KIND=VALUE, e.g. ethernet=0050569a3b01) or a user (user=NAME)")
    })?;
    Ok(id.to_string())
}

/// A reservation's version: `a.b` (numbers), as the reservation view takes it.
fn entry_version(text: &str) -> Result<Version, String> {
    let bad = || format!("version {text:?} is not a version of the form a.b (e.g. 2.0)");
    let mut parts = text.split('.');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

impl Reservations {
    /// Reads and checks a reservations document (the import format).
    pub fn parse(json: &str) -> Result<Reservations, ReservationError> {
        let r: Reservations =
            serde_json::from_str(json).map_err(|e| ReservationError::Malformed {
                detail: e.to_string(),
            })?;
        r.check()?;
        Ok(r)
    }

    /// Checks every group: names present and unique, holders host ids or users, versions `a.b`,
    /// counts positive, each feature once per reservation.
    pub fn check(&self) -> Result<(), ReservationError> {
        let mut names = BTreeSet::new();
        let mut entries = 0usize;
        for (g, group) in self.groups.iter().enumerate() {
            let place = format!("groups[{g}]");
            check_group_name(&group.name, &place)?;
            if !names.insert(group.name.as_str()) {
                return Err(ReservationError::GroupExists {
                    place: format!("{place}.name"),
                    name: group.name.clone(),
                });
            }
            if group.reservations.is_empty() {
                return Err(invalid(place, "a group holds at least one reservation"));
            }
            let mut holders = BTreeSet::new();
            for (r, res) in group.reservations.iter().enumerate() {
                let place = format!("{place}.reservations[{r}]");
                let key =
                    holder_key(&res.holder).map_err(|d| invalid(format!("{place}.holder"), d))?;
                if !holders.insert(key.clone()) {
                    return Err(invalid(
                        format!("{place}.holder"),
                        format!("{key} has a reservation in this group already; put its entries in that one"),
                    ));
                }
                if res.entries.is_empty() {
                    return Err(invalid(place, "a reservation holds at least one entry"));
                }
                let mut features = BTreeSet::new();
                for (e, entry) in res.entries.iter().enumerate() {
                    let place = format!("{place}.entries[{e}]");
                    if entry.feature.trim().is_empty() || entry.feature.len() > 256 {
                        return Err(invalid(
                            format!("{place}.feature"),
                            "a feature name of 1 to 256 characters",
                        ));
                    }
                    if !features.insert(entry.feature.as_str()) {
                        return Err(invalid(
                            format!("{place}.feature"),
                            format!("{} is reserved twice for {key}; reserve it once with the total count", entry.feature),
                        ));
                    }
                    entry_version(&entry.version)
                        .map_err(|d| invalid(format!("{place}.version"), d))?;
                    if entry.count == 0 {
                        return Err(invalid(
                            format!("{place}.count"),
                            "a reservation holds at least 1 seat",
                        ));
                    }
                    entries += 1;
                }
            }
        }
        if entries > MAX_ENTRIES {
            return Err(invalid(
                "groups".into(),
                format!("{entries} entries; at most {MAX_ENTRIES} in all"),
            ));
        }
        Ok(())
    }

    /// These reservations with `groups` added (after the others), checked together.
    pub fn with_added(
        &self,
        groups: Vec<ReservationGroup>,
    ) -> Result<Reservations, ReservationError> {
        let mut next = self.clone();
        for (g, group) in groups.into_iter().enumerate() {
            if next.groups.iter().any(|x| x.name == group.name) {
                return Err(ReservationError::GroupExists {
                    place: format!("groups[{g}].name"),
                    name: group.name,
                });
            }
            next.groups.push(group);
        }
        next.check()?;
        Ok(next)
    }

    /// These reservations with `add` put into the existing group `name` (the manager's "add to a
    /// group"): its entries join the holder's reservation there, or it becomes a new reservation
    /// of the group when the holder has none; checked together. A wrong entry is named within
    /// `add` (`reservation.entries[0].version`); a feature the holder has reserved in the group
    /// already is refused (reserve it once with the total count).
    pub fn with_entries(
        &self,
        name: &str,
        add: Reservation,
    ) -> Result<Reservations, ReservationError> {
        let alone = Reservations {
            groups: vec![ReservationGroup {
                name: name.to_string(),
                reservations: vec![add.clone()],
            }],
        };
        alone.check().map_err(|e| match e {
            ReservationError::Invalid { place, detail } => ReservationError::Invalid {
                place: place.replacen("groups[0].reservations[0]", "reservation", 1),
                detail,
            },
            other => other,
        })?;
        let mut next = self.clone();
        let Some(group) = next.groups.iter_mut().find(|g| g.name == name) else {
            return Err(ReservationError::NoSuchGroup { name: name.into() });
        };
        let key = holder_key(&add.holder).ok();
        match group
            .reservations
            .iter_mut()
            .find(|r| key.is_some() && holder_key(&r.holder).ok() == key)
        {
            Some(r) => r.entries.extend(add.entries),
            None => group.reservations.push(add),
        }
        next.check()?;
        Ok(next)
    }

    /// These reservations without the group `name`.
    pub fn without(&self, name: &str) -> Result<Reservations, ReservationError> {
        let mut next = self.clone();
        let before = next.groups.len();
        next.groups.retain(|g| g.name != name);
        if next.groups.len() == before {
            return Err(ReservationError::NoSuchGroup { name: name.into() });
        }
        Ok(next)
    }

    /// Whether there is no reservation.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Sets each entry's seats aside on `records` (see the module's rule): what each record holds
    /// reserved for each holder, and every entry's status.
    pub fn allocate(&self, records: &[Feature]) -> Allocation {
        let mut free: Vec<u64> = records
            .iter()
            .map(|f| match f.count {
                Count::Counted(c) if !f.metered => u64::from(c),
                _ => 0,
            })
            .collect();
        let mut a = Allocation {
            reserved: vec![0; records.len()],
            ..Allocation::default()
        };
        for group in &self.groups {
            for res in &group.reservations {
                // checked documents only: a holder that does not parse reserves nothing
                let Ok(key) = holder_key(&res.holder) else {
                    continue;
                };
                for entry in &res.entries {
                    let status = allocate_entry(records, &mut free, &mut a, &key, entry);
                    a.statuses.push(EntryStatus {
                        group: group.name.clone(),
                        holder: key.clone(),
                        feature: entry.feature.clone(),
                        version: entry.version.clone(),
                        count: entry.count,
                        status,
                    });
                }
            }
        }
        a
    }
}

fn check_group_name(name: &str, place: &str) -> Result<(), ReservationError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_GROUP_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(invalid(
            format!("{place}.name"),
            format!("a group name of 1 to {MAX_GROUP_NAME_LEN} printable characters"),
        ));
    }
    Ok(())
}

fn allocate_entry(
    records: &[Feature],
    free: &mut [u64],
    a: &mut Allocation,
    key: &str,
    entry: &ReservationEntry,
) -> Satisfied {
    let Ok(version) = entry_version(&entry.version) else {
        return Satisfied::No {
            reason: format!("version {:?} is not a.b", entry.version),
        };
    };
    let named: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].name == entry.feature)
        .collect();
    if named.is_empty() {
        return Satisfied::No {
            reason: format!("this server holds no license for {}", entry.feature),
        };
    }
    let mut fitting: Vec<usize> = named
        .iter()
        .copied()
        .filter(|&i| records[i].version.satisfies(&version))
        .collect();
    if fitting.is_empty() {
        return Satisfied::No {
            reason: format!(
                "this server holds {} only in versions older than {}",
                entry.feature, entry.version
            ),
        };
    }
    if fitting
        .iter()
        .all(|&i| matches!(records[i].count, Count::Uncounted))
    {
        return Satisfied::No {
            reason: format!(
                "{} is uncounted: every request is served without a reservation",
                entry.feature
            ),
        };
    }
    fitting.retain(|&i| matches!(records[i].count, Count::Counted(_)) && !records[i].metered);
    if fitting.is_empty() {
        return Satisfied::No {
            reason: format!(
                "{} is metered: its units are consumed, not reserved",
                entry.feature
            ),
        };
    }
    fitting.sort_by(|&x, &y| {
        let (fx, fy) = (&records[x], &records[y]);
        fx.expiry
            .sort_key()
            .cmp(&fy.expiry.sort_key())
            .then_with(|| fx.version.cmp(&fy.version))
            .then_with(|| x.cmp(&y))
    });
    let want = u64::from(entry.count);
    let available: u64 = fitting.iter().map(|&i| free[i]).sum();
    if available < want {
        let total: u64 = fitting
            .iter()
            .filter_map(|&i| records[i].count.get().map(u64::from))
            .sum();
        return Satisfied::No {
            reason: format!(
                "{want} seats reserved, but {} {} or newer has {total} seats and {available} are not reserved already",
                entry.feature, entry.version
            ),
        };
    }
    let mut left = want;
    for &i in &fitting {
        let take = left.min(free[i]);
        if take == 0 {
            continue;
        }
        free[i] -= take;
        a.reserved[i] += take;
        *a.for_holder
            .entry(key.to_string())
            .or_default()
            .entry(i)
            .or_insert(0) += take;
        left -= take;
        if left == 0 {
            break;
        }
    }
    Satisfied::Yes
}

/// Whether the server holds the seats an entry reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "satisfied", rename_all = "snake_case")]
pub enum Satisfied {
    /// Set aside whole.
    Yes,
    /// Not set aside: why.
    No {
        /// What is missing.
        reason: String,
    },
}

/// One entry with its status (the reservations view's row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryStatus {
    /// The group.
    pub group: String,
    /// The holder (normalised: `user=NAME` or the device's host id).
    pub holder: String,
    /// The feature.
    pub feature: String,
    /// The lowest version.
    pub version: String,
    /// Seats reserved.
    pub count: u32,
    /// Whether they are set aside.
    #[serde(flatten)]
    pub status: Satisfied,
}

impl EntryStatus {
    /// The holder's id type: `user` or the device id's kind (`ethernet`, `machine_id`, …).
    pub fn id_type(&self) -> &str {
        self.holder.split_once('=').map_or("", |(k, _)| k)
    }
}

/// The seats set aside on each record (see [`Reservations::allocate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Per record (by index): seats set aside in all.
    pub reserved: Vec<u64>,
    /// Per holder key (`user=NAME` or a device's host id): per record, seats set aside for it.
    pub for_holder: std::collections::HashMap<String, std::collections::HashMap<usize, u64>>,
    /// Every entry, in order, with its status.
    pub statuses: Vec<EntryStatus>,
}

impl Allocation {
    /// Whether anything is set aside.
    pub fn is_empty(&self) -> bool {
        self.for_holder.is_empty()
    }

    /// The holder key whose reservation a lease of `device` (`HOSTID` or `HOSTID|user=USER`) on
    /// record `i` draws on: the device's if it has seats set aside there, else the user's.
    pub fn key_for(&self, device: &str, i: usize) -> Option<String> {
        let (host, user) = crate::seats::holder_parts(device);
        if self
            .for_holder
            .get(host)
            .is_some_and(|m| m.contains_key(&i))
        {
            return Some(host.to_string());
        }
        let user = format!("{}={}", HostIdKind::User.as_str(), user?);
        self.for_holder
            .get(&user)
            .is_some_and(|m| m.contains_key(&i))
            .then_some(user)
    }

    /// Seats set aside on record `i` for holder key `key`.
    pub fn reserved_for(&self, key: &str, i: usize) -> u64 {
        self.for_holder
            .get(key)
            .and_then(|m| m.get(&i))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, ver: &str, count: u32) -> Feature {
        Feature::new(name, ver.parse().unwrap(), Count::Counted(count))
    }

    fn doc(json: serde_json::Value) -> Result<Reservations, ReservationError> {
        Reservations::parse(&json.to_string())
    }

    #[test]
    fn a_bad_document_is_refused_whole_naming_the_entry() {
        let entry = |feature: &str, version: &str, count: u32| serde_json::json!({"feature": feature, "version": version, "count": count});
        let one = |holder: &str, e: serde_json::Value| serde_json::json!({"groups": [{"name": "Lab", "reservations": [{"holder": holder, "entries": [entry("cad", "1.0", 1), e]}]}]});
        let says = |r: Result<Reservations, ReservationError>, place: &str, what: &str| {
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with(place), "{e} should start with {place}");
            assert!(e.contains(what), "{e} should say {what}");
        };
        says(
            doc(one("ethernet=0050569a3b01", entry("cam", "2", 1))),
            "groups[0].reservations[0].entries[1].version",
            "a.b",
        );
        says(
            doc(one("ethernet=0050569a3b01", entry("cam", "2.x", 1))),
            "groups[0].reservations[0].entries[1].version",
            "a.b",
        );
        says(
            doc(one("ethernet=0050569a3b01", entry("cam", "2.0", 0))),
            "groups[0].reservations[0].entries[1].count",
            "at least 1",
        );
        says(
            doc(one("ethernet=0050569a3b01", entry("cad", "2.0", 1))),
            "groups[0].reservations[0].entries[1].feature",
            "reserved twice",
        );
        says(
            doc(one("floppy=1", entry("cam", "2.0", 1))),
            "groups[0].reservations[0].holder",
            "KIND=VALUE",
        );
        says(
            doc(serde_json::json!({"groups": [
                {"name": "Lab", "reservations": [{"holder": "user=a", "entries": [entry("cad", "1.0", 1)]}]},
                {"name": "Lab", "reservations": [{"holder": "user=b", "entries": [entry("cad", "1.0", 1)]}]}]})),
            "groups[1].name",
            "exists already",
        );
        assert!(matches!(
            doc(serde_json::json!({"groups": [{"name": "Lab", "reservations": [], "extra": 1}]})),
            Err(ReservationError::Malformed { .. })
        ));
        let ok = doc(one("ETHERNET=00-50-56-9A-3B-01", entry("cam", "2.0", 3))).unwrap();
        assert_eq!(ok.groups[0].reservations[0].entries[1].count, 3);
    }

    #[test]
    fn entries_join_an_existing_group_and_a_bad_one_is_named_within_the_reservation() {
        let r = doc(serde_json::json!({"groups": [
            {"name": "Lab", "reservations": [{"holder": "user=ann", "entries": [{"feature": "cad", "version": "1.0", "count": 1}]}]}]}))
        .unwrap();
        let res = |holder: &str, feature: &str, version: &str| Reservation {
            holder: holder.into(),
            entries: vec![ReservationEntry {
                feature: feature.into(),
                version: version.into(),
                count: 2,
            }],
        };
        // the same holder: the entry joins its reservation
        let next = r
            .with_entries("Lab", res("USER=ann", "cam", "2.0"))
            .unwrap();
        assert_eq!(next.groups.len(), 1);
        assert_eq!(next.groups[0].reservations.len(), 1);
        assert_eq!(next.groups[0].reservations[0].entries.len(), 2);
        // another holder: a new reservation of the group
        let next = next
            .with_entries("Lab", res("ethernet=0050569a3b01", "cad", "1.0"))
            .unwrap();
        assert_eq!(next.groups[0].reservations.len(), 2);
        // refused: a bad version (named within the reservation), a feature twice, no such group
        let e = r
            .with_entries("Lab", res("user=bob", "cad", "1"))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("reservation.entries[0].version"),
            "{e}"
        );
        let e = r
            .with_entries("Lab", res("user=ann", "cad", "2.0"))
            .unwrap_err();
        assert!(e.to_string().contains("reserved twice"), "{e}");
        assert!(matches!(
            r.with_entries("Nope", res("user=bob", "cad", "1.0")),
            Err(ReservationError::NoSuchGroup { .. })
        ));
        assert_eq!(r.groups[0].reservations[0].entries.len(), 1, "unchanged");
    }

    #[test]
    fn entries_are_set_aside_whole_in_order_on_the_first_to_expire() {
        let records = vec![
            rec("cad", "2.0", 3),
            rec("cad", "3.0", 2),
            rec("cam", "1.0", 1),
        ];
        let r = doc(serde_json::json!({"groups": [
            {"name": "A", "reservations": [
                {"holder": "ethernet=0050569a3b01", "entries": [
                    {"feature": "cad", "version": "2.0", "count": 4},
                    {"feature": "cam", "version": "1.0", "count": 1}]},
                {"holder": "user=alice", "entries": [
                    {"feature": "cad", "version": "3.0", "count": 1},
                    {"feature": "cam", "version": "1.0", "count": 1},
                    {"feature": "vr", "version": "1.0", "count": 1}]},
                {"holder": "user=carol", "entries": [
                    {"feature": "cad", "version": "4.0", "count": 1}]}]}]}))
        .unwrap();
        let a = r.allocate(&records);
        // 4 of cad >= 2.0: record 0's 3 and one of record 1's (same expiry: the older version first)
        assert_eq!(a.reserved, vec![3, 2, 1]);
        assert_eq!(a.reserved_for("ethernet=0050569a3b01", 0), 3);
        assert_eq!(a.reserved_for("ethernet=0050569a3b01", 1), 1);
        assert_eq!(a.reserved_for("user=alice", 1), 1);
        let st: Vec<&Satisfied> = a.statuses.iter().map(|s| &s.status).collect();
        assert_eq!(st[0], &Satisfied::Yes);
        assert_eq!(st[1], &Satisfied::Yes);
        assert_eq!(st[2], &Satisfied::Yes);
        // cam's one seat went to the device first
        assert!(
            matches!(st[3], Satisfied::No { reason } if reason.contains("1 seats and 0 are not reserved"))
        );
        assert!(matches!(st[4], Satisfied::No { reason } if reason.contains("no license for vr")));
        assert!(matches!(st[5], Satisfied::No { reason } if reason.contains("older than 4.0")));
        assert_eq!(a.statuses[3].id_type(), "user");
        // the device's lease draws on the device's reservation, a user elsewhere on the user's
        assert_eq!(
            a.key_for("ethernet=0050569a3b01|user=alice", 1).as_deref(),
            Some("ethernet=0050569a3b01")
        );
        assert_eq!(
            a.key_for("string=other|user=alice", 1).as_deref(),
            Some("user=alice")
        );
        assert_eq!(a.key_for("string=other|user=alice", 0), None);
        assert_eq!(a.key_for("string=other", 1), None);
    }

    #[test]
    fn groups_are_added_and_deleted_whole() {
        let g = |name: &str| ReservationGroup {
            name: name.into(),
            reservations: vec![Reservation {
                holder: "user=bob".into(),
                entries: vec![ReservationEntry {
                    feature: "cad".into(),
                    version: "1.0".into(),
                    count: 1,
                }],
            }],
        };
        let r = Reservations::default()
            .with_added(vec![g("A"), g("B")])
            .unwrap();
        assert!(matches!(
            r.with_added(vec![g("B")]),
            Err(ReservationError::GroupExists { name, .. }) if name == "B"
        ));
        let r = r.without("A").unwrap();
        assert_eq!(r.groups.len(), 1);
        assert!(matches!(
            r.without("A"),
            Err(ReservationError::NoSuchGroup { .. })
        ));
    }
}
