//! The seat policy: who asks ([`Requester`]), what they ask ([`CheckedRequest`], whose limits are
//! stated once, in [`limits`]), and **one decision** over the seat book ([`decide`]) that returns
//! the outcomes, their denial codes and the changes to persist.
//!
//! A license server's seat engine checks a request when it arrives, hands it to its writer, and
//! the writer calls [`decide`] under its book and persists the [`SeatChange`]s it returns before it
//! answers. Everything that says *whether* a seat is given lives here: the per-device lease cap,
//! the borrow limit per device and per user, preview as a dry run, renew and return only by the
//! holder, metering. Reservations and named pools are in the book ([`SeatBook::set_reservations`],
//! [`SeatBook::set_pools`]); the decision finds the requester's pool by the rules of access (its
//! hostid, user, alias and attributes) and the book serves it from there. What is added to the
//! policy later (named users) comes in through [`SeatPolicy`] and the decision, not through the
//! writer.

use std::ops::RangeInclusive;

use time::{Duration, OffsetDateTime};

use crate::capability::{CapabilityRequest, DeniedFeature, Operation};
use crate::hostid::{DeviceType, HostId};
use crate::model::Identity;
use crate::seats::{Denial, Lease, LeaseId, Outcome, PoolRef, SeatBook, Want};

/// The limits of a capability request, stated once: [`CheckedRequest::check`] enforces them and
/// `docs/protocol.md` states the same. Lengths count bytes of UTF-8.
pub mod limits {
    use super::RangeInclusive;

    /// The nonce's length.
    pub const NONCE_LEN: RangeInclusive<usize> = 16..=128;
    /// The request id's length.
    pub const REQUEST_ID_LEN: RangeInclusive<usize> = 1..=128;
    /// Most features one request names.
    pub const MAX_FEATURES: usize = 100;
    /// Most leases one request names.
    pub const MAX_LEASES: usize = 1000;
    /// The longest user name, device alias and attribute value.
    pub const MAX_NAME_LEN: usize = 256;
    /// Most attributes one request carries.
    pub const MAX_ATTRIBUTES: usize = 32;
    /// The longest attribute name.
    pub const MAX_ATTRIBUTE_NAME_LEN: usize = 64;
}

/// Why a capability request was refused before any decision (the answer is a problem, not a
/// signed refusal). The message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The nonce is too short or too long.
    #[error("nonce: {} to {} characters", limits::NONCE_LEN.start(), limits::NONCE_LEN.end())]
    Nonce,
    /// The request id is empty or too long.
    #[error("request_id: {} to {} characters", limits::REQUEST_ID_LEN.start(), limits::REQUEST_ID_LEN.end())]
    RequestId,
    /// The device id is not a host id.
    #[error("device_id: {0}")]
    DeviceId(#[from] crate::hostid::HostIdError),
    /// Too many features or leases.
    #[error(
        "at most {} features and {} leases",
        limits::MAX_FEATURES,
        limits::MAX_LEASES
    )]
    TooMany,
    /// A feature named twice.
    #[error("features[{index}]: {name} is already asked for in features[{first}]; ask for each feature once, with the total count and the highest version needed")]
    FeatureTwice {
        /// The second mention.
        index: usize,
        /// The first.
        first: usize,
        /// The feature.
        name: String,
    },
    /// The device id carries a user.
    #[error("device_id: `|user=` is not part of a host id; send the user in `user`")]
    UserInDeviceId,
    /// The user or alias is too long.
    #[error("user and alias: at most {} characters", limits::MAX_NAME_LEN)]
    NameTooLong,
    /// A borrow for no days or more than the policy allows.
    #[error("borrow_days: 1 to {max}")]
    BorrowDays {
        /// The longest borrow now.
        max: u32,
    },
    /// A text holds control characters.
    #[error("{field}: control characters are not allowed")]
    ControlCharacters {
        /// Which field.
        field: &'static str,
    },
    /// An attribute the request carries breaks a limit.
    #[error("attributes: {detail}")]
    Attribute {
        /// What is wrong, naming the attribute.
        detail: String,
    },
    /// A renew or return names no lease or several.
    #[error("leases: a renew or return names exactly one lease, with its session_proof")]
    OneLease,
    /// A renew or return without its session proof.
    #[error("session_proof: a renew or return of lease {lease} must prove that it holds the lease, with the session key its grant carried (docs/protocol.md)")]
    ProofMissing {
        /// The lease.
        lease: LeaseId,
    },
    /// A session proof on another operation.
    #[error("session_proof goes with a renew or return")]
    ProofNotExpected,
}

/// Checks a request's attributes against [`limits`].
fn check_attributes(
    attributes: &std::collections::BTreeMap<String, String>,
) -> Result<(), RequestError> {
    let bad = |detail: String| Err(RequestError::Attribute { detail });
    if attributes.len() > limits::MAX_ATTRIBUTES {
        return bad(format!(
            "at most {} attributes, {} sent",
            limits::MAX_ATTRIBUTES,
            attributes.len()
        ));
    }
    for (name, value) in attributes {
        let well_formed = !name.is_empty()
            && name.len() <= limits::MAX_ATTRIBUTE_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !well_formed {
            return bad(format!(
                "the name {name:?} is not 1 to {} letters, digits, `_`, `-` or `.`",
                limits::MAX_ATTRIBUTE_NAME_LEN
            ));
        }
        if value.len() > limits::MAX_NAME_LEN {
            return bad(format!(
                "{name}: at most {} characters",
                limits::MAX_NAME_LEN
            ));
        }
        if value.chars().any(char::is_control) {
            return bad(format!("{name}: control characters are not allowed"));
        }
    }
    Ok(())
}

/// The message, for a problem's `detail`.
impl From<RequestError> for String {
    fn from(e: RequestError) -> String {
        e.to_string()
    }
}

/// Who asks for seats: the device (its id with the id's type), the user on it, and what the client
/// says about it (alias, device type). Leases are held by the device and user together
/// ([`Requester::holder`]); the alias and device type are shown to administrators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The device's host id (`KIND=VALUE`).
    pub device: HostId,
    /// The user on the device.
    pub user: Option<String>,
    /// A human-readable name for the device.
    pub alias: Option<String>,
    /// Physical, virtual, container or unknown.
    pub device_type: DeviceType,
    /// What the client says about the device or user, by name (sorted, each name once).
    pub attributes: Vec<(String, String)>,
}

impl Requester {
    /// The holder key of the leases this requester takes: `HOSTID`, or `HOSTID|user=USER` with a
    /// user. The seat book and the store keep leases under it (the form earlier versions stored).
    pub fn holder(&self) -> String {
        match &self.user {
            Some(u) => format!("{}|user={u}", self.device),
            None => self.device.to_string(),
        }
    }
}

/// A renew's or return's proof that the caller holds the lease (see
/// [`crate::capability::session_proof`]); the engine checks it with the lease's session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseProof {
    /// The lease.
    pub lease: LeaseId,
    /// The proof, as sent.
    pub proof: String,
    /// Answer with a signature rather than a seal.
    pub signed: bool,
}

/// A capability request that passed [`CheckedRequest::check`]: within [`limits`], typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The operation.
    pub operation: Operation,
    /// Who asks.
    pub requester: Requester,
    /// [`Requester::holder`], made once.
    pub holder: String,
    /// The client's request id (a retry repeats it).
    pub request_id: String,
    /// The client's nonce, echoed in the answer.
    pub nonce: String,
    /// Features wanted (request, preview, borrow), each named once.
    pub wants: Vec<Want>,
    /// Leases to renew or return.
    pub leases: Vec<LeaseId>,
    /// For a borrow: days asked for (within the policy's longest borrow).
    pub borrow_days: Option<u32>,
    /// For a renew or return: the proof of holding the one lease named.
    pub proof: Option<LeaseProof>,
}

impl CheckedRequest {
    /// Checks a request against [`limits`] and the longest borrow now (`max_borrow_days`).
    pub fn check(
        req: CapabilityRequest,
        max_borrow_days: u32,
    ) -> Result<CheckedRequest, RequestError> {
        if !limits::NONCE_LEN.contains(&req.nonce.len()) {
            return Err(RequestError::Nonce);
        }
        if !limits::REQUEST_ID_LEN.contains(&req.request_id.len()) {
            return Err(RequestError::RequestId);
        }
        let device: HostId = req.device_id.parse()?;
        if req.features.len() > limits::MAX_FEATURES || req.leases.len() > limits::MAX_LEASES {
            return Err(RequestError::TooMany);
        }
        // one feature once: a name asked for twice would make one decision look like two (and a
        // retry of it would meet its own lease)
        for (i, f) in req.features.iter().enumerate() {
            if let Some(j) = req.features[..i].iter().position(|g| g.name == f.name) {
                return Err(RequestError::FeatureTwice {
                    index: i,
                    first: j,
                    name: f.name.clone(),
                });
            }
        }
        if req.device_id.contains("|user=") {
            return Err(RequestError::UserInDeviceId);
        }
        if req
            .user
            .as_ref()
            .is_some_and(|u| u.len() > limits::MAX_NAME_LEN)
            || req
                .alias
                .as_ref()
                .is_some_and(|a| a.len() > limits::MAX_NAME_LEN)
        {
            return Err(RequestError::NameTooLong);
        }
        if req.operation == Operation::Borrow {
            let days = req.borrow_days.unwrap_or(max_borrow_days);
            if days == 0 || days > max_borrow_days {
                return Err(RequestError::BorrowDays {
                    max: max_borrow_days,
                });
            }
        }
        for (field, text) in [
            ("request_id", Some(&req.request_id)),
            ("nonce", Some(&req.nonce)),
            ("device_id", Some(&req.device_id)),
            ("user", req.user.as_ref()),
            ("alias", req.alias.as_ref()),
        ] {
            if text.is_some_and(|t| t.chars().any(char::is_control)) {
                return Err(RequestError::ControlCharacters { field });
            }
        }
        check_attributes(&req.attributes)?;
        let proof = match (req.operation, req.session_proof) {
            (Operation::Renew | Operation::Return, proof) => {
                let [lease] = req.leases.as_slice() else {
                    return Err(RequestError::OneLease);
                };
                let Some(proof) = proof else {
                    return Err(RequestError::ProofMissing { lease: *lease });
                };
                Some(LeaseProof {
                    lease: *lease,
                    proof,
                    signed: req.signed,
                })
            }
            (_, Some(_)) => return Err(RequestError::ProofNotExpected),
            (_, None) => None,
        };
        let requester = Requester {
            device,
            user: req.user,
            alias: req.alias,
            device_type: req.device_type,
            attributes: req.attributes.into_iter().collect(),
        };
        Ok(CheckedRequest {
            operation: req.operation,
            holder: requester.holder(),
            requester,
            request_id: req.request_id,
            nonce: req.nonce,
            wants: req
                .features
                .into_iter()
                .map(|f| Want {
                    name: f.name,
                    version: f.version,
                    count: f.count,
                })
                .collect(),
            leases: req.leases,
            borrow_days: req.borrow_days,
            proof,
        })
    }
}

/// The policy a decision is made under. Grows with the policy (reservations, named pools and
/// named users come in here), so it is built with [`SeatPolicy::default`] and its fields set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeatPolicy {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// The longest borrow, in days.
    pub max_borrow_days: u32,
    /// Most seats one device, and one user, may have borrowed at once.
    pub max_borrows_per_account: u32,
    /// Most leases one device (all its users together) may hold at once: an uncounted feature
    /// gives as many as asked for, so this bounds what one client can make the server keep.
    pub max_leases_per_device: u32,
}

/// Default [`SeatPolicy::max_leases_per_device`].
pub const DEFAULT_MAX_LEASES_PER_DEVICE: u32 = 1000;

impl Default for SeatPolicy {
    fn default() -> Self {
        SeatPolicy {
            lease: Duration::minutes(5),
            max_borrow_days: 7,
            max_borrows_per_account: 3,
            max_leases_per_device: DEFAULT_MAX_LEASES_PER_DEVICE,
        }
    }
}

impl SeatPolicy {
    /// How often a client should renew (a third of the lease, at least a second).
    pub fn renew_interval_secs(&self) -> u64 {
        u64::try_from(self.lease.whole_seconds() / 3)
            .unwrap_or(60)
            .max(1)
    }
}

/// The stable code of a refusal, as the answer carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenialCode {
    /// No record of that name.
    NotLicensed,
    /// Only older versions.
    VersionTooLow,
    /// No fitting record is active now.
    NotActive,
    /// Every seat is taken.
    AllInUse,
    /// A count of zero, or more than any record could give.
    BadCount,
    /// A renew or return of a lease this holder does not hold.
    UnknownLease,
    /// The borrow would take a device or user past the borrow limit.
    BorrowLimit,
    /// The device holds as many leases as it may.
    LeaseLimit,
    /// The feature is for named users, and this user is not one of them.
    NotAuthorised,
    /// Another refusal.
    Denied,
}

impl DenialCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialCode::NotLicensed => "not_licensed",
            DenialCode::VersionTooLow => "version_too_low",
            DenialCode::NotActive => "not_active",
            DenialCode::AllInUse => "all_in_use",
            DenialCode::BadCount => "bad_count",
            DenialCode::UnknownLease => "unknown_lease",
            DenialCode::BorrowLimit => "borrow_limit",
            DenialCode::LeaseLimit => "lease_limit",
            DenialCode::NotAuthorised => "not_authorised",
            DenialCode::Denied => "denied",
        }
    }
}

impl Denial {
    /// The code this refusal is answered with.
    pub fn code(&self) -> DenialCode {
        match self {
            Denial::NotLicensed { .. } => DenialCode::NotLicensed,
            Denial::VersionTooLow { .. } => DenialCode::VersionTooLow,
            Denial::NotActive { .. } => DenialCode::NotActive,
            Denial::AllInUse { .. } => DenialCode::AllInUse,
            Denial::BadCount { .. } => DenialCode::BadCount,
            Denial::NotAuthorised { .. } => DenialCode::NotAuthorised,
        }
    }
}

fn denied(feature: String, code: DenialCode, message: String) -> DeniedFeature {
    DeniedFeature {
        feature,
        code: code.as_str().into(),
        message,
    }
}

/// A change the decision made to the book, to persist before the answer leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeatChange {
    /// A lease granted: `new`, or one held already (a retry of its request id, extended).
    Granted {
        /// The lease as it is now.
        lease: Lease,
        /// Newly made (not a retry's).
        new: bool,
    },
    /// The metered units consumed on a record now.
    Consumed {
        /// The record's index in the book.
        record: usize,
        /// Units consumed in all.
        units: u64,
    },
    /// A lease renewed.
    Renewed {
        /// The lease.
        id: LeaseId,
        /// Its new expiry.
        expires: OffsetDateTime,
    },
    /// A lease returned.
    Returned(Lease),
}

/// A seat in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The lease (for a preview, the one a request would get).
    pub lease: Lease,
    /// The answer carries the lease's session key (a grant's signed answer, never a renewal's).
    pub with_session_key: bool,
}

/// What [`decide`] decided: the answer's seats and refusals, and the changes to persist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Seats granted, renewed or previewed, in the order of the answer.
    pub granted: Vec<Granted>,
    /// Features or leases refused, with their codes.
    pub denials: Vec<DeniedFeature>,
    /// The changes made to the book (none for a preview or a refusal).
    pub changes: Vec<SeatChange>,
}

/// Decides one checked request over the book at `now` under `policy`: changes the book and says
/// what changed. A preview changes no seat (see [`SeatBook::preview`]). The proof of a renew or
/// return is the caller's to check before (it needs the lease's session key); here a lease is
/// renewed or returned only for the holder it was granted to.
pub fn decide(
    book: &mut SeatBook,
    policy: &SeatPolicy,
    req: &CheckedRequest,
    now: OffsetDateTime,
) -> Decision {
    let mut d = Decision::default();
    let holder = req.holder.as_str();
    match req.operation {
        Operation::Preview => {
            let pool = pool_of(book, req);
            let outcomes = book.preview_in(pool, holder, &req.wants, now, policy.lease);
            collect(&mut d, &req.wants, outcomes);
        }
        Operation::Request | Operation::Borrow => take(book, policy, req, now, &mut d),
        Operation::Renew => {
            for &id in &req.leases {
                let owned = book.lease(id).is_some_and(|l| l.device == holder);
                let renewed = if owned {
                    book.renew(id, now, policy.lease).cloned()
                } else {
                    None
                };
                match renewed {
                    Some(lease) => {
                        d.changes.push(SeatChange::Renewed {
                            id: lease.id,
                            expires: lease.expires,
                        });
                        // the session key went out with the grant, and never again
                        d.granted.push(Granted {
                            lease,
                            with_session_key: false,
                        });
                    }
                    None => d.denials.push(denied(
                        id.to_string(),
                        DenialCode::UnknownLease,
                        format!("lease {id} is not held by this device (returned or expired): request again"),
                    )),
                }
            }
        }
        Operation::Return => {
            for &id in &req.leases {
                let owned = book.lease(id).is_some_and(|l| l.device == holder);
                match owned.then(|| book.release(id)).flatten() {
                    Some(lease) => d.changes.push(SeatChange::Returned(lease)),
                    None => d.denials.push(denied(
                        id.to_string(),
                        DenialCode::UnknownLease,
                        format!("lease {id} is not held by this device"),
                    )),
                }
            }
        }
    }
    d
}

/// The named pool the rules of access send the requester to (its hostid, user, alias and
/// attributes); `None` at once when no model is in force.
fn pool_of(book: &SeatBook, req: &CheckedRequest) -> Option<PoolRef> {
    book.pool_model()?;
    let r = &req.requester;
    book.pool_of(&Identity {
        // the holder starts with the device's hostid in normalised form
        hostid: crate::seats::holder_parts(&req.holder).0,
        user: r.user.as_deref(),
        alias: r.alias.as_deref(),
        attributes: &r.attributes,
    })
}

/// A request or borrow: the device's lease cap, the borrow limit, then the book.
fn take(
    book: &mut SeatBook,
    policy: &SeatPolicy,
    req: &CheckedRequest,
    now: OffsetDateTime,
    d: &mut Decision,
) {
    let holder = req.holder.as_str();
    // a request with no features asks for everything reserved for its device and its user
    let reserved;
    let wants = if req.wants.is_empty() {
        reserved = book.reserved_wants(holder);
        &reserved
    } else {
        &req.wants
    };
    // the leases a retry of this request id would return are counted already
    let retried: Vec<Option<LeaseId>> = wants
        .iter()
        .map(|w| book.retry_of(holder, &req.request_id, &w.name))
        .collect();
    // a device (all its users together) holds at most `max_leases_per_device` leases: uncounted
    // features cannot make one client fill the store
    let new_leases = retried.iter().filter(|r| r.is_none()).count();
    let held_leases = book.held_by(holder);
    let max_leases = policy.max_leases_per_device;
    if u64::from(held_leases).saturating_add(new_leases as u64) > u64::from(max_leases) {
        for w in wants {
            d.denials.push(denied(
                w.name.clone(),
                DenialCode::LeaseLimit,
                format!(
                    "this device holds {held_leases} leases, and a device may hold at most {max_leases} (max_leases_per_device in server.toml): return some first"
                ),
            ));
        }
        return;
    }
    let borrow_until = if req.operation == Operation::Borrow {
        let max_days = policy.max_borrow_days;
        let max_active = policy.max_borrows_per_account;
        let days = req
            .borrow_days
            .unwrap_or(max_days)
            .clamp(1, max_days.max(1));
        // seats, counted per device and per user (docs/protocol.md, "Borrowing")
        let held = book.borrowed_by(holder);
        let asked = wants
            .iter()
            .zip(&retried)
            .filter(|(_, r)| r.is_none())
            .fold(0u64, |n, (w, _)| n.saturating_add(u64::from(w.count)));
        if u64::from(held).saturating_add(asked) > u64::from(max_active) {
            // the issuer enforces the per-account limit: nothing is borrowed
            for w in wants {
                d.denials.push(denied(
                    w.name.clone(),
                    DenialCode::BorrowLimit,
                    format!(
                        "at most {max_active} seats may be borrowed at once per device and per user; {held} already are and {asked} more were asked for: return one first"
                    ),
                ));
            }
            return;
        }
        Some(now + Duration::days(i64::from(days)))
    } else {
        None
    };
    let pool = pool_of(book, req);
    let outcomes = book.request_in(
        pool,
        holder,
        &req.request_id,
        wants,
        now,
        policy.lease,
        borrow_until,
    );
    let mut granted = Vec::new();
    for (i, (w, o)) in wants.iter().zip(outcomes).enumerate() {
        match o {
            Outcome::Granted(lease) => {
                // a new lease, or the one a retry of the request id returns (counted already)
                let new = retried.get(i).is_some_and(|r| r.is_none());
                granted.push((lease, new));
            }
            Outcome::Denied(x) => d
                .denials
                .push(denied(w.name.clone(), x.code(), x.to_string())),
        }
    }
    for (lease, new) in granted {
        if book.record(lease.record).is_some_and(|f| f.metered) {
            d.changes.push(SeatChange::Consumed {
                record: lease.record,
                units: book.consumed(lease.record),
            });
        }
        d.changes.push(SeatChange::Granted {
            lease: lease.clone(),
            new,
        });
        d.granted.push(Granted {
            lease,
            with_session_key: true,
        });
    }
}

/// A preview's outcomes: the seats a request would get (no session key: nothing is held), and
/// the refusals.
fn collect(d: &mut Decision, wants: &[Want], outcomes: Vec<Outcome>) {
    for (w, o) in wants.iter().zip(outcomes) {
        match o {
            Outcome::Granted(lease) => d.granted.push(Granted {
                lease,
                with_session_key: false,
            }),
            Outcome::Denied(x) => d
                .denials
                .push(denied(w.name.clone(), x.code(), x.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{Count, Feature};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

    fn ask(v: serde_json::Value) -> CapabilityRequest {
        serde_json::from_value(v).unwrap()
    }

    fn checked(v: serde_json::Value) -> CheckedRequest {
        CheckedRequest::check(ask(v), 7).unwrap()
    }

    fn book() -> SeatBook {
        let mut m = Feature::new("export", "1.0".parse().unwrap(), Count::Counted(10));
        m.metered = true;
        SeatBook::new(vec![
            Feature::new("cad", "1.0".parse().unwrap(), Count::Counted(5)),
            m,
        ])
    }

    #[test]
    fn attributes_are_kept_on_the_requester_within_their_limits() {
        let with = |attrs: serde_json::Value| {
            CheckedRequest::check(
                ask(
                    serde_json::json!({"operation": "request", "device_id": "string=a",
                    "request_id": "r", "nonce": "0123456789abcdef", "alias": "desk-7",
                    "device_type": "virtual", "attributes": attrs}),
                ),
                7,
            )
        };
        let r = with(serde_json::json!({"site": "pune", "department": "design"})).unwrap();
        assert_eq!(
            r.requester.attributes,
            vec![
                ("department".to_string(), "design".to_string()),
                ("site".to_string(), "pune".to_string())
            ]
        );
        assert_eq!(r.requester.alias.as_deref(), Some("desk-7"));
        assert_eq!(r.requester.device_type, DeviceType::Virtual);
        let refused = |attrs: serde_json::Value, says: &str| match with(attrs) {
            Err(RequestError::Attribute { detail }) => {
                assert!(detail.contains(says), "{detail} should say {says}")
            }
            other => panic!("expected an attribute error, got {other:?}"),
        };
        refused(serde_json::json!({"": "x"}), "\"\"");
        refused(serde_json::json!({"dep art": "x"}), "dep art");
        refused(serde_json::json!({"n".repeat(65): "x"}), "64");
        refused(
            serde_json::json!({"site": "x".repeat(257)}),
            "site: at most 256",
        );
        refused(
            serde_json::json!({"site": "a\nb"}),
            "site: control characters",
        );
        let many: serde_json::Map<String, serde_json::Value> = (0..33)
            .map(|i| (format!("a{i}"), serde_json::Value::from("x")))
            .collect();
        refused(
            serde_json::Value::Object(many),
            "at most 32 attributes, 33 sent",
        );
        // a name of the longest length and a value of the longest length pass
        assert!(with(serde_json::json!({"n".repeat(64): "x".repeat(256)})).is_ok());
    }

    #[test]
    fn the_limits_are_the_ones_the_wire_accepts() {
        let with_nonce = |n: usize| {
            CheckedRequest::check(
                ask(
                    serde_json::json!({"operation": "request", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(n)}),
                ),
                7,
            )
        };
        assert!(with_nonce(16).is_ok());
        assert!(with_nonce(128).is_ok());
        assert_eq!(with_nonce(15), Err(RequestError::Nonce));
        assert_eq!(with_nonce(129), Err(RequestError::Nonce));
        assert_eq!(
            RequestError::Nonce.to_string(),
            "nonce: 16 to 128 characters"
        );
        let r = CheckedRequest::check(
            ask(
                serde_json::json!({"operation": "borrow", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(16), "borrow_days": 8}),
            ),
            7,
        );
        assert_eq!(r, Err(RequestError::BorrowDays { max: 7 }));
        let r = CheckedRequest::check(
            ask(
                serde_json::json!({"operation": "renew", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(16), "leases": [1, 2]}),
            ),
            7,
        );
        assert_eq!(r, Err(RequestError::OneLease));
        let r = CheckedRequest::check(
            ask(
                serde_json::json!({"operation": "request", "device_id": "string=a|user=b", "request_id": "r", "nonce": "n".repeat(16)}),
            ),
            7,
        );
        assert!(matches!(
            r,
            Err(RequestError::UserInDeviceId | RequestError::DeviceId(_))
        ));
    }

    #[test]
    fn the_requester_keeps_what_the_client_says_and_holds_by_device_and_user() {
        let r = checked(
            serde_json::json!({"operation": "request", "device_id": "string=ws-1", "user": "ann", "alias": "Ann's laptop", "device_type": "virtual", "request_id": "r", "nonce": "n".repeat(16)}),
        );
        assert_eq!(r.holder, "string=ws-1|user=ann");
        assert_eq!(r.requester.alias.as_deref(), Some("Ann's laptop"));
        assert_eq!(r.requester.device_type, DeviceType::Virtual);
        assert_eq!(
            crate::seats::holder_parts(&r.holder),
            ("string=ws-1", Some("ann"))
        );
    }

    #[test]
    fn a_preview_is_a_dry_run() {
        let mut b = book();
        let policy = SeatPolicy::default();
        let req = checked(
            serde_json::json!({"operation": "preview", "device_id": "string=a", "request_id": "p", "nonce": "n".repeat(16), "features": [{"name": "cad", "count": 2}, {"name": "export", "count": 3}, {"name": "nope"}]}),
        );
        for _ in 0..3 {
            let d = decide(&mut b, &policy, &req, T0);
            assert_eq!(d.granted.len(), 2);
            assert!(d.granted.iter().all(|g| !g.with_session_key));
            assert_eq!(d.denials.len(), 1);
            assert_eq!(d.denials[0].code, "not_licensed");
            assert!(d.changes.is_empty());
            assert_eq!((b.used(0), b.consumed(1), b.lease_count()), (0, 0, 0));
        }
        // the ids a preview showed are never granted
        let shown = decide(&mut b, &policy, &req, T0).granted[0].lease.id;
        let take = checked(
            serde_json::json!({"operation": "request", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(16), "features": [{"name": "cad"}]}),
        );
        let d = decide(&mut b, &policy, &take, T0);
        assert_ne!(d.granted[0].lease.id, shown);
        b.check_invariants().unwrap();
    }

    #[test]
    fn a_request_with_no_features_takes_what_is_reserved_for_the_device_and_its_user() {
        let mut b = book();
        let r: crate::reservations::Reservations = serde_json::from_value(serde_json::json!({"groups": [
            {"name": "Lab", "reservations": [
                {"holder": "string=a", "entries": [{"feature": "cad", "version": "1.0", "count": 2}]},
                {"holder": "user=bob", "entries": [{"feature": "cad", "version": "1.0", "count": 1}]}]}]}))
        .unwrap();
        b.set_reservations(&r);
        let policy = SeatPolicy::default();
        let ask = |device: &str, user: Option<&str>, id: &str| {
            checked(
                serde_json::json!({"operation": "request", "device_id": device, "user": user,
                "request_id": id, "nonce": "n".repeat(16)}),
            )
        };
        let d = decide(&mut b, &policy, &ask("string=a", Some("bob"), "r1"), T0);
        // the device's reservation of cad (2) comes first; bob's of cad is not asked for twice
        assert_eq!(d.granted.len(), 1, "{d:?}");
        assert_eq!(
            (d.granted[0].lease.count, d.granted[0].lease.overdraft),
            (2, 0)
        );
        assert!(d.denials.is_empty());
        // a retry takes nothing more
        let again = decide(&mut b, &policy, &ask("string=a", Some("bob"), "r1"), T0);
        assert_eq!(again.granted[0].lease.id, d.granted[0].lease.id);
        assert_eq!(b.used(0), 2);
        // bob elsewhere: his one seat
        let d = decide(&mut b, &policy, &ask("string=z", Some("bob"), "r2"), T0);
        assert_eq!(d.granted.len(), 1);
        assert_eq!(d.granted[0].lease.count, 1);
        // nobody's: an empty answer
        let d = decide(&mut b, &policy, &ask("string=q", None, "r3"), T0);
        assert!(d.granted.is_empty() && d.denials.is_empty() && d.changes.is_empty());
        b.check_invariants().unwrap();
    }

    #[test]
    fn grants_returns_and_renewals_say_what_to_persist() {
        let mut b = book();
        let policy = SeatPolicy::default();
        let take = checked(
            serde_json::json!({"operation": "request", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(16), "features": [{"name": "cad"}, {"name": "export", "count": 4}]}),
        );
        let d = decide(&mut b, &policy, &take, T0);
        assert_eq!(d.granted.len(), 2);
        assert!(d.granted.iter().all(|g| g.with_session_key));
        assert!(matches!(
            &d.changes[..],
            [
                SeatChange::Granted { new: true, .. },
                SeatChange::Consumed {
                    record: 1,
                    units: 4
                },
                SeatChange::Granted { new: true, .. }
            ]
        ));
        // a retry returns the same leases, not new ones
        let again = decide(&mut b, &policy, &take, T0);
        assert!(again
            .changes
            .iter()
            .any(|c| matches!(c, SeatChange::Granted { new: false, .. })));
        assert_eq!(b.used(0), 1);
        let id = d.granted[0].lease.id;
        // only the holder renews or returns
        let renew = |device: &str| {
            checked(
                serde_json::json!({"operation": "renew", "device_id": device, "request_id": "x", "nonce": "n".repeat(16), "leases": [id], "session_proof": "p"}),
            )
        };
        let other = decide(&mut b, &policy, &renew("string=b"), T0);
        assert_eq!(
            (other.denials[0].code.as_str(), other.changes.len()),
            ("unknown_lease", 0)
        );
        let mine = decide(
            &mut b,
            &policy,
            &renew("string=a"),
            T0 + Duration::minutes(1),
        );
        assert!(matches!(mine.changes[..], [SeatChange::Renewed { .. }]));
        assert!(!mine.granted[0].with_session_key);
        let ret = checked(
            serde_json::json!({"operation": "return", "device_id": "string=a", "request_id": "y", "nonce": "n".repeat(16), "leases": [id], "session_proof": "p"}),
        );
        let back = decide(&mut b, &policy, &ret, T0);
        assert!(matches!(&back.changes[..], [SeatChange::Returned(l)] if l.id == id));
        assert_eq!(b.used(0), 0);
        b.check_invariants().unwrap();
    }

    #[test]
    fn the_lease_cap_and_the_borrow_limit_refuse_everything_asked() {
        let mut b = book();
        let mut policy = SeatPolicy {
            max_leases_per_device: 1,
            max_borrows_per_account: 2,
            ..SeatPolicy::default()
        };
        let two = checked(
            serde_json::json!({"operation": "request", "device_id": "string=a", "request_id": "r", "nonce": "n".repeat(16), "features": [{"name": "cad"}, {"name": "export"}]}),
        );
        let d = decide(&mut b, &policy, &two, T0);
        assert!(d.granted.is_empty() && d.changes.is_empty());
        assert!(d.denials.iter().all(|x| x.code == "lease_limit"));
        policy.max_leases_per_device = 10;
        let borrow = |user: &str, count: u32| {
            checked(
                serde_json::json!({"operation": "borrow", "device_id": "string=a", "user": user, "request_id": format!("b-{user}-{count}"), "nonce": "n".repeat(16), "features": [{"name": "cad", "count": count}], "borrow_days": 2}),
            )
        };
        let d = decide(&mut b, &policy, &borrow("ann", 2), T0);
        assert!(d.granted[0].lease.borrowed);
        assert_eq!(d.granted[0].lease.expires, T0 + Duration::days(2));
        // the device has borrowed two: another user on it borrows nothing
        let d = decide(&mut b, &policy, &borrow("bob", 1), T0);
        assert_eq!(
            (d.denials[0].code.as_str(), d.changes.len()),
            ("borrow_limit", 0)
        );
        b.check_invariants().unwrap();
    }
}
