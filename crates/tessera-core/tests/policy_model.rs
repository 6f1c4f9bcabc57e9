//! A model-based property test of the whole seat policy through [`policy::decide`]: the default
//! pool with overdraft, reservations (for a device and for a user) or named pools (the two exclude
//! each other, so each case runs one of them), a named-user feature, borrowing with its per-device
//! and per-user limits, renewals, returns by the holder only, and expiry with the sweep.
//!
//! A reference model keeps the leases the decisions handed out. After every step the book must
//! hold exactly those leases, and the rules hold on them (safety): never past a count and its
//! overdraft, reserved and pooled seats only for their holders and members, named-user seats only
//! for assigned users, borrows within both limits, nothing past its expiry after a sweep. Where the
//! reference says seats are certainly free for a requester (its own reservation or pool, or room
//! that nobody else's holding can have taken), the request must be granted (liveness).

use proptest::prelude::*;
use serde_json::json;
use tessera_core::capability::CapabilityRequest;
use tessera_core::feature::{Count, Feature};
use tessera_core::named_users::NamedUsers;
use tessera_core::policy::{self, CheckedRequest, SeatPolicy};
use tessera_core::reservations::Reservations;
use tessera_core::seats::SeatBook;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);
const CAD_COUNT: u64 = 5;
const CAD_OVERDRAFT: u64 = 1;
const NU_COUNT: u64 = 2;
const BORROW_LIMIT: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `string=d0` reserves 2 cad seats, user `u0` reserves 1: 2 shared seats (+1 overdraft).
    Reservations,
    /// Devices d0 and d1 draw from pool "lab" (3 cad seats): 2 in the default pool (+1).
    Pools,
}

#[derive(Debug, Clone)]
enum Op {
    Request {
        device: u8,
        user: u8,
        nu: bool,
        count: u32,
        rid: u8,
        borrow: bool,
    },
    Renew {
        lease: usize,
    },
    Return {
        lease: usize,
        by_holder: bool,
    },
    Advance {
        minutes: i64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..5, 0u8..4, prop::bool::weighted(0.25), 1u32..4, 0u8..4, prop::bool::weighted(0.2))
            .prop_map(|(device, user, nu, count, rid, borrow)| Op::Request { device, user, nu, count, rid, borrow }),
        1 => (0usize..12).prop_map(|lease| Op::Renew { lease }),
        2 => (0usize..12, prop::bool::weighted(0.8)).prop_map(|(lease, by_holder)| Op::Return { lease, by_holder }),
        1 => (1i64..8).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::Sweep),
    ]
}

/// A lease as the reference keeps it.
#[derive(Debug, Clone)]
struct Held {
    id: u64,
    holder: String,
    device: u8,
    user: Option<u8>,
    nu: bool,
    rid: u8,
    count: u64,
    overdraft: u64,
    expires: OffsetDateTime,
    borrowed: bool,
}

fn records() -> Vec<Feature> {
    let mut cad = Feature::new("cad", "1.0".parse().unwrap(), Count::Counted(5));
    cad.overdraft = 1;
    let mut nu = Feature::new("nu", "1.0".parse().unwrap(), Count::Counted(2));
    nu.named_user = true;
    vec![cad, nu]
}

fn book(mode: Mode) -> SeatBook {
    let mut b = SeatBook::new(records());
    match mode {
        Mode::Reservations => {
            let r: Reservations = serde_json::from_value(json!({"groups": [{"name": "lab", "reservations": [
                {"holder": "string=d0", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]},
                {"holder": "user=u0", "entries": [{"feature": "cad", "version": "1.0", "count": 1}]}]}]}))
            .unwrap();
            b.set_reservations(&r);
        }
        Mode::Pools => {
            let model = tessera_core::model::Model::parse(
                r#"model "m" { partitions { partition "lab" { "cad" 1.0 3 } }
                   rules { hostid "string=d0" => "lab" hostid "string=d1" => "lab" } }"#,
            )
            .unwrap()
            .resolve(&records())
            .unwrap();
            assert_eq!(b.set_pools(Some(&model)), Ok(Vec::new()));
        }
    }
    let mut users = NamedUsers::default();
    users
        .features
        .insert("nu".into(), vec!["u0".into(), "u1".into()]);
    b.set_named_users(&users);
    b
}

fn checked(v: serde_json::Value) -> CheckedRequest {
    let req: CapabilityRequest = serde_json::from_value(v).unwrap();
    CheckedRequest::check(req, 7).unwrap()
}

fn user_name(u: Option<u8>) -> Option<String> {
    u.map(|u| format!("u{u}"))
}

/// The cad seats held by leases for which `pick` holds.
fn cad_seats(held: &[Held], pick: impl Fn(&Held) -> bool) -> u64 {
    held.iter()
        .filter(|h| !h.nu && pick(h))
        .map(|h| h.count)
        .sum()
}

fn run(mode: Mode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut b = book(mode);
    let policy = SeatPolicy::default();
    let mut held: Vec<Held> = Vec::new();
    let mut now = T0;
    let mut n = 0u32;
    for op in ops {
        n += 1;
        match op {
            Op::Request {
                device,
                user,
                nu,
                count,
                rid,
                borrow,
            } => {
                // users 0..3 are u0..u2; 3 is no user. In the reservations case d0 is never used by
                // u0, so each lease draws on one holder's reservation only.
                let mut user = (user < 3).then_some(user);
                if mode == Mode::Reservations && device == 0 && user == Some(0) {
                    user = None;
                }
                let feature = if nu { "nu" } else { "cad" };
                let mut body = json!({"operation": if borrow { "borrow" } else { "request" },
                    "device_id": format!("string=d{device}"), "user": user_name(user),
                    "request_id": format!("r{rid}"), "nonce": format!("nonce-{n}-0123456789"),
                    "features": [{"name": feature, "version": "1.0", "count": count}]});
                if borrow {
                    body["borrow_days"] = json!(2);
                }
                let req = checked(body);
                let retry = held
                    .iter()
                    .any(|h| h.holder == req.holder && h.rid == rid && h.nu == nu);
                let c = u64::from(count);
                // what the reference says is certainly free for this requester
                let all_cad = cad_seats(&held, |_| true);
                let certainly_free = if nu {
                    matches!(user, Some(0 | 1))
                        && held.iter().filter(|h| h.nu).map(|h| h.count).sum::<u64>() + c
                            <= NU_COUNT
                } else {
                    let own = match mode {
                        Mode::Reservations if device == 0 => {
                            cad_seats(&held, |h| h.device == 0) + c <= 2
                        }
                        Mode::Reservations if user == Some(0) => {
                            cad_seats(&held, |h| h.user == Some(0) && h.device != 0) + c <= 1
                        }
                        Mode::Pools if device < 2 => cad_seats(&held, |h| h.device < 2) + c <= 3,
                        _ => false,
                    };
                    // nobody's holding can have taken shared room beyond all seats held
                    own || all_cad + c <= (CAD_COUNT - 3) + CAD_OVERDRAFT
                };
                let borrow_ok = !borrow || {
                    let by_device: u64 = held
                        .iter()
                        .filter(|h| h.borrowed && h.device == device)
                        .map(|h| h.count)
                        .sum();
                    let by_user: u64 = user.map_or(0, |u| {
                        held.iter()
                            .filter(|h| h.borrowed && h.user == Some(u))
                            .map(|h| h.count)
                            .sum()
                    });
                    by_device + c <= BORROW_LIMIT && by_user + c <= BORROW_LIMIT
                };
                let before_cad = all_cad;
                let d = policy::decide(&mut b, &policy, &req, now);
                match (d.granted.first(), d.denials.first()) {
                    (Some(g), None) => {
                        let l = &g.lease;
                        if retry {
                            let h = held.iter_mut().find(|h| h.id == l.id);
                            prop_assert!(h.is_some(), "a retry returns the lease it made");
                            if let Some(h) = h {
                                h.expires = l.expires;
                            }
                        } else {
                            prop_assert_eq!(u64::from(l.count), c);
                            prop_assert!(
                                !held.iter().any(|h| h.id == l.id),
                                "an id handed out twice"
                            );
                            if nu {
                                prop_assert!(
                                    matches!(user, Some(0 | 1)),
                                    "named-user seat to {:?}",
                                    user
                                );
                            }
                            // overdraft only when the count cannot give the seats
                            if !nu && l.overdraft > 0 {
                                prop_assert!(
                                    !(mode == Mode::Pools
                                        && device >= 2
                                        && before_cad + c <= CAD_COUNT - 3),
                                    "overdraft with {} of {} used",
                                    before_cad,
                                    CAD_COUNT
                                );
                                prop_assert!(l.overdraft <= l.count);
                            }
                            if borrow {
                                prop_assert!(l.borrowed);
                                prop_assert!(borrow_ok, "a borrow past the limit");
                                prop_assert_eq!(l.expires, now + Duration::days(2));
                            }
                            held.push(Held {
                                id: l.id,
                                holder: req.holder.clone(),
                                device,
                                user,
                                nu,
                                rid,
                                count: c,
                                overdraft: u64::from(l.overdraft),
                                expires: l.expires,
                                borrowed: l.borrowed,
                            });
                        }
                    }
                    (None, Some(denial)) => {
                        prop_assert!(!retry, "a retry is never refused: {:?}", denial);
                        // the borrow limit is checked first; then a stranger to a named-user feature
                        if !borrow_ok {
                            prop_assert_eq!(denial.code.as_str(), "borrow_limit");
                        } else if nu && !matches!(user, Some(0 | 1)) {
                            prop_assert_eq!(denial.code.as_str(), "not_authorised");
                        }
                        if certainly_free && borrow_ok {
                            prop_assert!(
                                false,
                                "{:?} {:?} refused with seats free: {:?} (held {:?})",
                                mode,
                                req.holder,
                                denial,
                                held
                            );
                        }
                    }
                    other => prop_assert!(false, "one feature, one outcome: {:?}", other),
                }
            }
            Op::Renew { lease } => {
                if let Some(h) = held.get(lease).cloned() {
                    let req = checked(
                        json!({"operation": "renew", "device_id": format!("string=d{}", h.device),
                        "user": user_name(h.user), "request_id": format!("renew-{n}"),
                        "nonce": format!("nonce-{n}-0123456789"), "leases": [h.id], "session_proof": "p"}),
                    );
                    let d = policy::decide(&mut b, &policy, &req, now);
                    // a lease not run out is renewed (a borrow keeps its own end)
                    if h.expires > now && !h.borrowed {
                        prop_assert_eq!(d.granted.len(), 1, "{:?}", d.denials);
                        if let Some(x) = held.iter_mut().find(|x| x.id == h.id) {
                            x.expires = d.granted[0].lease.expires;
                        }
                    }
                }
            }
            Op::Return { lease, by_holder } => {
                if let Some(h) = held.get(lease).cloned() {
                    let device = if by_holder {
                        h.device
                    } else {
                        (h.device + 1) % 5
                    };
                    let req = checked(
                        json!({"operation": "return", "device_id": format!("string=d{device}"),
                        "user": user_name(h.user), "request_id": format!("ret-{n}"),
                        "nonce": format!("nonce-{n}-0123456789"), "leases": [h.id], "session_proof": "p"}),
                    );
                    let d = policy::decide(&mut b, &policy, &req, now);
                    if by_holder {
                        prop_assert!(d.denials.is_empty(), "{:?}", d.denials);
                        held.retain(|x| x.id != h.id);
                    } else {
                        prop_assert_eq!(d.denials.len(), 1, "returned by another device");
                        prop_assert!(b.lease(h.id).is_some());
                    }
                }
            }
            Op::Advance { minutes } => now += Duration::minutes(minutes),
            Op::Sweep => {
                for gone in b.expire(now) {
                    prop_assert!(gone.expires <= now, "swept before its end");
                    held.retain(|h| h.id != gone.id);
                }
                prop_assert!(
                    held.iter().all(|h| h.expires > now),
                    "a lease past its end after a sweep"
                );
            }
        }
        // the book holds exactly the reference's leases
        let mut in_book: Vec<(u64, u32)> = b.leases().map(|l| (l.id, l.count)).collect();
        let mut in_ref: Vec<(u64, u32)> = held.iter().map(|h| (h.id, h.count as u32)).collect();
        in_book.sort_unstable();
        in_ref.sort_unstable();
        prop_assert_eq!(in_book, in_ref);
        // safety on what is held
        let all = cad_seats(&held, |_| true);
        prop_assert!(all <= CAD_COUNT + CAD_OVERDRAFT, "cad {} held", all);
        let within: u64 = held
            .iter()
            .filter(|h| !h.nu)
            .map(|h| h.count - h.overdraft)
            .sum();
        prop_assert!(
            within <= CAD_COUNT,
            "{} seats within the count of {}",
            within,
            CAD_COUNT
        );
        let nu: u64 = held.iter().filter(|h| h.nu).map(|h| h.count).sum();
        prop_assert!(nu <= NU_COUNT);
        prop_assert!(held
            .iter()
            .filter(|h| h.nu)
            .all(|h| matches!(h.user, Some(0 | 1))));
        let strangers = match mode {
            Mode::Reservations => cad_seats(&held, |h| h.device != 0 && h.user != Some(0)),
            Mode::Pools => cad_seats(&held, |h| h.device >= 2),
        };
        prop_assert!(
            strangers <= (CAD_COUNT - 3) + CAD_OVERDRAFT,
            "{:?}: {} seats to those without a reservation or pool",
            mode,
            strangers
        );
        for d in 0..5u8 {
            let borrowed: u64 = held
                .iter()
                .filter(|h| h.borrowed && h.device == d)
                .map(|h| h.count)
                .sum();
            prop_assert!(borrowed <= BORROW_LIMIT);
        }
        for u in 0..3u8 {
            let borrowed: u64 = held
                .iter()
                .filter(|h| h.borrowed && h.user == Some(u))
                .map(|h| h.count)
                .sum();
            prop_assert!(borrowed <= BORROW_LIMIT);
        }
        prop_assert!(b.check_invariants().is_ok(), "{:?}", b.check_invariants());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_policy_with_reservations_keeps_its_rules(ops in prop::collection::vec(op(), 1..80)) {
        run(Mode::Reservations, ops)?;
    }

    #[test]
    fn the_policy_with_named_pools_keeps_its_rules(ops in prop::collection::vec(op(), 1..80)) {
        run(Mode::Pools, ops)?;
    }
}
