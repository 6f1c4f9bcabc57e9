//! The one error type an application sees. Every message can be shown to an end user as it is;
//! every variant carries the data an application needs to say more (days left, feature, dates).

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use tessera_core::time::OffsetDateTime;
use tessera_core::unlock::UnlockError;
use tessera_core::{VerifyError, Version};

/// A date as a person reads it: "31 December 2027" (UTC).
pub fn human_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(tessera_core::time::UtcOffset::UTC);
    format!("{} {} {}", t.day(), t.month(), t.year())
}

fn paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the application may not use a feature, or a licensing step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No license file was found.
    #[error("no license file was found (looked in {}); activate the product or set TESSERA_LICENSE to the license file", paths(.searched))]
    LicenseNotFound {
        /// Where it looked.
        searched: Vec<PathBuf>,
    },
    /// A license file was found but is not valid here.
    #[error("the license file {} is not valid: {reason}", .path.display())]
    InvalidLicense {
        /// The file.
        path: PathBuf,
        /// Why (tampered, expired, for another computer, …).
        reason: VerifyError,
    },
    /// The feature is in no license, unlock code or trial.
    #[error("your license does not include {feature}")]
    FeatureNotLicensed {
        /// The feature.
        feature: String,
    },
    /// Only an older version of the feature is licensed.
    #[error("your license includes {feature} up to version {have}; version {wanted} needs a newer license")]
    VersionTooLow {
        /// The feature.
        feature: String,
        /// The version licensed.
        have: Version,
        /// The version asked for.
        wanted: Version,
    },
    /// The feature's license has expired.
    #[error("your license for {feature} expired on {}", human_date(*.expired_on))]
    FeatureExpired {
        /// The feature.
        feature: String,
        /// When the license expired.
        expired_on: OffsetDateTime,
    },
    /// The feature's license starts later.
    #[error("your license for {feature} starts on {}", human_date(*.starts_on))]
    FeatureNotYetValid {
        /// The feature.
        feature: String,
        /// When the license starts.
        starts_on: OffsetDateTime,
    },
    /// The trial has ended and the feature is not among the basic ones.
    #[error("the trial ended on {}; {feature} needs a license (still available: {})", human_date(*.ended_on), if .basic_features.is_empty() { "nothing".to_string() } else { .basic_features.join(", ") })]
    TrialExpired {
        /// The feature asked for.
        feature: String,
        /// When the trial ended.
        ended_on: OffsetDateTime,
        /// Features that remain.
        basic_features: Vec<String>,
    },
    /// The last successful validation is older than the grace period.
    #[error("this license could not be checked with the vendor since {} and the {grace_days}-day grace period is over; connect to the internet and start the application again", human_date(*.last_validated))]
    GraceExpired {
        /// When the license was last validated.
        last_validated: OffsetDateTime,
        /// The grace period.
        grace_days: u32,
    },
    /// The system clock was set back.
    #[error("the computer's clock was set back (it reads {}, but this application already ran on {}); correct the date and time", human_date(*.now), human_date(*.last_seen))]
    ClockRolledBack {
        /// What the clock says.
        now: OffsetDateTime,
        /// The latest time seen before.
        last_seen: OffsetDateTime,
    },
    /// The local licensing state was changed by hand.
    #[error("the licensing state in {} was changed outside the application; restore it or reinstall and activate again", .path.display())]
    StateTampered {
        /// The file.
        path: PathBuf,
    },
    /// A typed unlock code is wrong.
    #[error("{0}")]
    InvalidUnlockCode(UnlockError),
    /// The activation key has a typo.
    #[error("the license key is not valid: {detail}")]
    InvalidKey {
        /// What is wrong.
        detail: String,
    },
    /// The vendor's server (back office or license server) refused.
    #[error("{message}")]
    Refused {
        /// Its stable code (`all_in_use`, `bound_to_another_machine`, …); see [`RefusalCode`].
        code: RefusalCode,
        /// Its message, fit to show.
        message: String,
        /// How long the server asked the client to wait before trying again (`Retry-After`), if
        /// it said.
        retry_after: Option<StdDuration>,
    },
    /// The vendor's server could not be reached.
    #[error("the licensing server at {url} could not be reached ({detail})")]
    Unreachable {
        /// The server.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The server took the connection but did not answer in time (see
    /// [`crate::ClientConfig::timeout`] and [`crate::ClientConfig::checkout_timeout`]).
    #[error("the licensing server at {url} did not answer within {} seconds", .after.as_secs_f32())]
    TimedOut {
        /// The server.
        url: String,
        /// How long the client waited.
        after: StdDuration,
    },
    /// No license server is configured: none given to the call, none in
    /// [`crate::ClientConfig::servers`], and `TESSERA_SERVER` is not set.
    #[error("no license server is configured; set TESSERA_SERVER to the license server's address (for example http://licenses.example.com:7070)")]
    NoServer,
    /// No back office is configured (activation needs one: [`crate::ClientConfig::backoffice`]).
    #[error(
        "online activation is not available: the application has no activation server configured"
    )]
    NoBackOffice,
    /// A floating seat is no longer held: its lease ran out while the license server could not
    /// be reached (past the tolerance), or the server gave it to someone else.
    #[error("the license for {feature} was lost: the license server no longer holds a seat for this computer; save your work and check the connection to the license server")]
    SeatLost {
        /// The feature.
        feature: String,
    },
    /// The producer's public key embedded in the application does not parse.
    #[error("the application's producer key is not valid ({detail}); the application is damaged, reinstall it")]
    InvalidProducerKey {
        /// What is wrong.
        detail: String,
    },
    /// The client key given to sign capability requests does not read, or is not RSA-2048 or
    /// Ed25519.
    #[error("the client key for signing requests is not usable: {detail}")]
    InvalidClientKey {
        /// What is wrong.
        detail: String,
    },
    /// The unlock-code public key embedded in the application does not parse.
    #[error("the application's unlock key is not valid ({detail}); the application is damaged, reinstall it")]
    InvalidUnlockKey {
        /// What is wrong.
        detail: String,
    },
    /// A CA certificate given to the application does not parse.
    #[error("a certificate authority given for HTTPS is not valid: {detail}")]
    InvalidCaCertificate {
        /// What is wrong.
        detail: String,
    },
    /// A version asked for does not parse (a programming error in the application).
    #[error("\"{version}\" is not a version number ({detail})")]
    InvalidVersion {
        /// The text given.
        version: String,
        /// What is wrong.
        detail: String,
    },
    /// The license file named with [`crate::ClientConfig::license_path`] does not exist.
    #[error("the license file {} does not exist; check the path, or remove the setting to search the usual places", .path.display())]
    LicenseFileMissing {
        /// The file.
        path: PathBuf,
    },
    /// [`crate::Client::trial_status`] in an application that has no trial
    /// ([`crate::ClientConfig::trial`]).
    #[error("this application has no trial")]
    NoTrial,
    /// Unlock codes were typed but the application accepts none
    /// ([`crate::ClientConfig::unlock_codes`]).
    #[error("this application does not accept unlock codes")]
    UnlockCodesNotAccepted,
    /// The vendor's server answered something that does not verify (a fake server, or a replay).
    #[error("the licensing server at {url} answered with something that is not valid: {detail}")]
    BadAnswer {
        /// The server.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// This computer cannot be identified.
    #[error(
        "this computer cannot be identified (no machine id, network card or VM UUID could be read)"
    )]
    NoMachineIdentity,
    /// A file could not be read or written.
    #[error("{}: {detail}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
}

/// A refusal's stable code, as the back office or the license server sent it. Codes a newer
/// server sends that this version does not know are [`RefusalCode::Other`]. Which operation can
/// meet which code is listed in docs/client.md ("Refusal codes").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalCode {
    // --- license server (capability protocol) ---
    /// `not_licensed`: the server has no seats of this feature.
    NotLicensed,
    /// `version_too_low`: only older versions of the feature are licensed.
    VersionTooLow,
    /// `not_active`: the feature's record has expired or not started.
    NotActive,
    /// `all_in_use`: every seat is taken (see [`crate::Checkout::wait_in_line`]).
    AllInUse,
    /// `bad_count`: the count asked for is not possible.
    BadCount,
    /// `unknown_lease`: the server no longer holds the lease (returned or expired).
    UnknownLease,
    /// `not_lease_holder`: the lease belongs to another device or user.
    NotLeaseHolder,
    /// `borrow_limit`: too many seats borrowed by this device or user.
    BorrowLimit,
    /// `lease_limit`: this device holds too many leases.
    LeaseLimit,
    /// `not_authorised`: the feature is for named users, and this user is not one of them.
    NotAuthorised,
    /// `rate_limited`: too many requests; see `retry_after`.
    RateLimited,
    /// `storage_unavailable`: the server could not store the decision; retried.
    StorageUnavailable,
    /// `lock_lost`: a clustered server does not hold its database lock; retried.
    LockLost,
    /// `invalid_request`: the server did not accept the request's form.
    InvalidRequest,
    // --- back office (activation, trials) ---
    /// `invalid_key`: the activation key is not valid.
    InvalidKey,
    /// `unknown_key`: no such activation key.
    UnknownKey,
    /// `bound_to_another_machine`: the key is used on another computer.
    BoundToAnotherMachine,
    /// `count_exhausted`: every activation of the key is used.
    CountExhausted,
    /// `entitlement_expired`: the entitlement behind the key has expired.
    EntitlementExpired,
    /// `entitlement_not_yet_valid`: the entitlement starts later.
    EntitlementNotYetValid,
    /// `revoked`: the key was revoked.
    Revoked,
    /// `wrong_product`: the key is for another product.
    WrongProduct,
    /// `already_activated`: this computer already has what the key gives.
    AlreadyActivated,
    /// A code this version of the library does not know.
    Other(String),
}

const CODES: &[(&str, RefusalCode)] = &[
    ("not_licensed", RefusalCode::NotLicensed),
    ("version_too_low", RefusalCode::VersionTooLow),
    ("not_active", RefusalCode::NotActive),
    ("all_in_use", RefusalCode::AllInUse),
    ("bad_count", RefusalCode::BadCount),
    ("unknown_lease", RefusalCode::UnknownLease),
    ("not_lease_holder", RefusalCode::NotLeaseHolder),
    ("borrow_limit", RefusalCode::BorrowLimit),
    ("lease_limit", RefusalCode::LeaseLimit),
    ("not_authorised", RefusalCode::NotAuthorised),
    ("rate_limited", RefusalCode::RateLimited),
    ("storage_unavailable", RefusalCode::StorageUnavailable),
    ("lock_lost", RefusalCode::LockLost),
    ("invalid_request", RefusalCode::InvalidRequest),
    ("invalid_key", RefusalCode::InvalidKey),
    ("unknown_key", RefusalCode::UnknownKey),
    (
        "bound_to_another_machine",
        RefusalCode::BoundToAnotherMachine,
    ),
    ("count_exhausted", RefusalCode::CountExhausted),
    ("entitlement_expired", RefusalCode::EntitlementExpired),
    (
        "entitlement_not_yet_valid",
        RefusalCode::EntitlementNotYetValid,
    ),
    ("revoked", RefusalCode::Revoked),
    ("wrong_product", RefusalCode::WrongProduct),
    ("already_activated", RefusalCode::AlreadyActivated),
];

impl RefusalCode {
    /// The code as sent on the wire (`all_in_use`, …).
    pub fn as_str(&self) -> &str {
        match self {
            RefusalCode::Other(s) => s,
            known => CODES
                .iter()
                .find(|(_, c)| c == known)
                .map_or("refused", |(s, _)| s),
        }
    }

    /// Whether trying again with the same request id may succeed (the server was busy or could
    /// not store its decision).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RefusalCode::RateLimited | RefusalCode::StorageUnavailable | RefusalCode::LockLost
        )
    }
}

impl From<&str> for RefusalCode {
    fn from(s: &str) -> Self {
        CODES
            .iter()
            .find(|(k, _)| *k == s)
            .map_or_else(|| RefusalCode::Other(s.to_string()), |(_, c)| c.clone())
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for RefusalCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RefusalCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A network error's text without the URL (the error's message names the server already), and
/// without the same words twice ("Network Error: Network Error").
pub(crate) fn transport_error(url: &str, e: &ureq::Transport, after: StdDuration) -> ClientError {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return ClientError::TimedOut {
                    url: url.to_string(),
                    after,
                };
            }
        }
        source = s.source();
    }
    let kind = match e.kind() {
        ureq::ErrorKind::Dns => "the server name could not be resolved".to_string(),
        ureq::ErrorKind::ConnectionFailed => "the connection failed".to_string(),
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            "the address is not a valid URL".to_string()
        }
        other => other.to_string().to_lowercase(),
    };
    let mut parts = vec![kind];
    for extra in [
        e.message().map(str::to_string),
        e.source().map(|s| s.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        let lower = extra.to_lowercase();
        if !parts.iter().any(|p| p.to_lowercase() == lower) && !extra.contains(url) {
            parts.push(extra);
        }
    }
    ClientError::Unreachable {
        url: url.to_string(),
        detail: parts.join(": "),
    }
}
