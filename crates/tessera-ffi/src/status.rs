//! Status codes, the thread-local last error, and the guard every exported function runs in.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use tessera_client::{ClientError, RefusalCode};

/// What a call did. `TESSERA_STATUS_OK` (0) is success; every other value is an error whose
/// message `tessera_last_error` returns. The values are stable: new ones are only added, and a
/// client error this version does not know is `TESSERA_STATUS_ERROR`.
///
/// 1–9: misuse of the C API. 10–49: the client's errors (`tessera_client::ClientError`).
/// 100–199: a server's refusal, by its stable code (`tessera_last_refusal` gives the code's text).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TesseraStatus {
    /// Success.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL (the message names it).
    NullArgument = 1,
    /// A string argument is not valid UTF-8 (the message names it).
    InvalidUtf8 = 2,
    /// An argument is out of its range (the message says which and why).
    InvalidArgument = 3,
    /// The library failed internally (a bug: please report the message); the call had no effect
    /// that can be relied on, and the library remains usable.
    Panic = 4,
    /// An error this version of the C API does not know (a newer client library).
    Error = 9,
    /// No license file was found (the message says where it looked).
    LicenseNotFound = 10,
    /// A license file was found but is not valid here (tampered, expired, another computer).
    InvalidLicense = 11,
    /// The feature is in no license, unlock code or trial.
    FeatureNotLicensed = 12,
    /// Only an older version of the feature is licensed.
    VersionTooLow = 13,
    /// The feature's license has expired.
    FeatureExpired = 14,
    /// The feature's license starts later.
    FeatureNotYetValid = 15,
    /// The trial has ended and the feature is not among the basic ones.
    TrialExpired = 16,
    /// The license could not be validated online within its grace period.
    GraceExpired = 17,
    /// The system clock was set back.
    ClockRolledBack = 18,
    /// The local licensing state was changed by hand.
    StateTampered = 19,
    /// A typed unlock code is wrong (the message names the group with the typo).
    InvalidUnlockCode = 20,
    /// The activation key has a typo.
    InvalidKey = 21,
    /// A server refused with a code this version does not know (`tessera_last_refusal` has it).
    Refused = 22,
    /// The back office or license server could not be reached.
    Unreachable = 23,
    /// The server took the connection but did not answer in time.
    TimedOut = 24,
    /// No license server is configured (none given, none configured, `TESSERA_SERVER` unset).
    NoServer = 25,
    /// No back office is configured (activation needs one).
    NoBackOffice = 26,
    /// A floating seat is no longer held.
    SeatLost = 27,
    /// The producer's public key given to the configuration does not parse.
    InvalidProducerKey = 28,
    /// The unlock-code public key given to the configuration does not parse.
    InvalidUnlockKey = 29,
    /// A CA certificate given to the configuration does not parse.
    InvalidCaCertificate = 30,
    /// A version asked for does not parse ("1.0" is a version).
    InvalidVersion = 31,
    /// The configured license file does not exist.
    LicenseFileMissing = 32,
    /// Trial status asked of an application that has no trial.
    NoTrial = 33,
    /// Unlock codes were typed but the application accepts none.
    UnlockCodesNotAccepted = 34,
    /// A server answered something that does not verify (a fake server, or a replay).
    BadAnswer = 35,
    /// This computer cannot be identified.
    NoMachineIdentity = 36,
    /// A file could not be read or written.
    Io = 37,
    /// Refused `not_licensed`: the license server has no seats of this feature.
    RefusedNotLicensed = 100,
    /// Refused `version_too_low`: only older versions of the feature are licensed.
    RefusedVersionTooLow = 101,
    /// Refused `not_active`: the feature's record has expired or not started.
    RefusedNotActive = 102,
    /// Refused `all_in_use`: every seat is taken.
    RefusedAllInUse = 103,
    /// Refused `bad_count`: the count asked for is not possible.
    RefusedBadCount = 104,
    /// Refused `unknown_lease`: the server no longer holds the lease.
    RefusedUnknownLease = 105,
    /// Refused `not_lease_holder`: the lease belongs to another device or user.
    RefusedNotLeaseHolder = 106,
    /// Refused `borrow_limit`: too many seats borrowed by this device or user.
    RefusedBorrowLimit = 107,
    /// Refused `lease_limit`: this device holds too many leases.
    RefusedLeaseLimit = 108,
    /// Refused `rate_limited`: too many requests (`tessera_last_retry_after` says how long to wait).
    RefusedRateLimited = 109,
    /// Refused `storage_unavailable`: the server could not store the decision; try again.
    RefusedStorageUnavailable = 110,
    /// Refused `lock_lost`: a clustered server does not hold its database lock; try again.
    RefusedLockLost = 111,
    /// Refused `invalid_request`: the server did not accept the request's form.
    RefusedInvalidRequest = 112,
    /// Refused `invalid_key`: the activation key is not valid.
    RefusedInvalidKey = 113,
    /// Refused `unknown_key`: no such activation key.
    RefusedUnknownKey = 114,
    /// Refused `bound_to_another_machine`: the key is used on another computer.
    RefusedBoundToAnotherMachine = 115,
    /// Refused `count_exhausted`: every activation of the key is used.
    RefusedCountExhausted = 116,
    /// Refused `entitlement_expired`: the entitlement behind the key has expired.
    RefusedEntitlementExpired = 117,
    /// Refused `entitlement_not_yet_valid`: the entitlement starts later.
    RefusedEntitlementNotYetValid = 118,
    /// Refused `revoked`: the key was revoked.
    RefusedRevoked = 119,
    /// Refused `wrong_product`: the key is for another product.
    RefusedWrongProduct = 120,
    /// Refused `already_activated`: this computer already has what the key gives.
    RefusedAlreadyActivated = 121,
    /// Refused `not_authorised`: the feature is for named users, and this user is not one of them.
    RefusedNotAuthorised = 122,
}

/// Every status with its name in the header, for `tessera_status_name` and the tests.
pub(crate) const STATUSES: &[(TesseraStatus, &str)] = &[
    (TesseraStatus::Ok, "TESSERA_STATUS_OK\0"),
    (
        TesseraStatus::NullArgument,
        "TESSERA_STATUS_NULL_ARGUMENT\0",
    ),
    (TesseraStatus::InvalidUtf8, "TESSERA_STATUS_INVALID_UTF8\0"),
    (
        TesseraStatus::InvalidArgument,
        "TESSERA_STATUS_INVALID_ARGUMENT\0",
    ),
    (TesseraStatus::Panic, "TESSERA_STATUS_PANIC\0"),
    (TesseraStatus::Error, "TESSERA_STATUS_ERROR\0"),
    (
        TesseraStatus::LicenseNotFound,
        "TESSERA_STATUS_LICENSE_NOT_FOUND\0",
    ),
    (
        TesseraStatus::InvalidLicense,
        "TESSERA_STATUS_INVALID_LICENSE\0",
    ),
    (
        TesseraStatus::FeatureNotLicensed,
        "TESSERA_STATUS_FEATURE_NOT_LICENSED\0",
    ),
    (
        TesseraStatus::VersionTooLow,
        "TESSERA_STATUS_VERSION_TOO_LOW\0",
    ),
    (
        TesseraStatus::FeatureExpired,
        "TESSERA_STATUS_FEATURE_EXPIRED\0",
    ),
    (
        TesseraStatus::FeatureNotYetValid,
        "TESSERA_STATUS_FEATURE_NOT_YET_VALID\0",
    ),
    (
        TesseraStatus::TrialExpired,
        "TESSERA_STATUS_TRIAL_EXPIRED\0",
    ),
    (
        TesseraStatus::GraceExpired,
        "TESSERA_STATUS_GRACE_EXPIRED\0",
    ),
    (
        TesseraStatus::ClockRolledBack,
        "TESSERA_STATUS_CLOCK_ROLLED_BACK\0",
    ),
    (
        TesseraStatus::StateTampered,
        "TESSERA_STATUS_STATE_TAMPERED\0",
    ),
    (
        TesseraStatus::InvalidUnlockCode,
        "TESSERA_STATUS_INVALID_UNLOCK_CODE\0",
    ),
    (TesseraStatus::InvalidKey, "TESSERA_STATUS_INVALID_KEY\0"),
    (TesseraStatus::Refused, "TESSERA_STATUS_REFUSED\0"),
    (TesseraStatus::Unreachable, "TESSERA_STATUS_UNREACHABLE\0"),
    (TesseraStatus::TimedOut, "TESSERA_STATUS_TIMED_OUT\0"),
    (TesseraStatus::NoServer, "TESSERA_STATUS_NO_SERVER\0"),
    (
        TesseraStatus::NoBackOffice,
        "TESSERA_STATUS_NO_BACK_OFFICE\0",
    ),
    (TesseraStatus::SeatLost, "TESSERA_STATUS_SEAT_LOST\0"),
    (
        TesseraStatus::InvalidProducerKey,
        "TESSERA_STATUS_INVALID_PRODUCER_KEY\0",
    ),
    (
        TesseraStatus::InvalidUnlockKey,
        "TESSERA_STATUS_INVALID_UNLOCK_KEY\0",
    ),
    (
        TesseraStatus::InvalidCaCertificate,
        "TESSERA_STATUS_INVALID_CA_CERTIFICATE\0",
    ),
    (
        TesseraStatus::InvalidVersion,
        "TESSERA_STATUS_INVALID_VERSION\0",
    ),
    (
        TesseraStatus::LicenseFileMissing,
        "TESSERA_STATUS_LICENSE_FILE_MISSING\0",
    ),
    (TesseraStatus::NoTrial, "TESSERA_STATUS_NO_TRIAL\0"),
    (
        TesseraStatus::UnlockCodesNotAccepted,
        "TESSERA_STATUS_UNLOCK_CODES_NOT_ACCEPTED\0",
    ),
    (TesseraStatus::BadAnswer, "TESSERA_STATUS_BAD_ANSWER\0"),
    (
        TesseraStatus::NoMachineIdentity,
        "TESSERA_STATUS_NO_MACHINE_IDENTITY\0",
    ),
    (TesseraStatus::Io, "TESSERA_STATUS_IO\0"),
    (
        TesseraStatus::RefusedNotLicensed,
        "TESSERA_STATUS_REFUSED_NOT_LICENSED\0",
    ),
    (
        TesseraStatus::RefusedVersionTooLow,
        "TESSERA_STATUS_REFUSED_VERSION_TOO_LOW\0",
    ),
    (
        TesseraStatus::RefusedNotActive,
        "TESSERA_STATUS_REFUSED_NOT_ACTIVE\0",
    ),
    (
        TesseraStatus::RefusedAllInUse,
        "TESSERA_STATUS_REFUSED_ALL_IN_USE\0",
    ),
    (
        TesseraStatus::RefusedBadCount,
        "TESSERA_STATUS_REFUSED_BAD_COUNT\0",
    ),
    (
        TesseraStatus::RefusedUnknownLease,
        "TESSERA_STATUS_REFUSED_UNKNOWN_LEASE\0",
    ),
    (
        TesseraStatus::RefusedNotLeaseHolder,
        "TESSERA_STATUS_REFUSED_NOT_LEASE_HOLDER\0",
    ),
    (
        TesseraStatus::RefusedBorrowLimit,
        "TESSERA_STATUS_REFUSED_BORROW_LIMIT\0",
    ),
    (
        TesseraStatus::RefusedLeaseLimit,
        "TESSERA_STATUS_REFUSED_LEASE_LIMIT\0",
    ),
    (
        TesseraStatus::RefusedRateLimited,
        "TESSERA_STATUS_REFUSED_RATE_LIMITED\0",
    ),
    (
        TesseraStatus::RefusedStorageUnavailable,
        "TESSERA_STATUS_REFUSED_STORAGE_UNAVAILABLE\0",
    ),
    (
        TesseraStatus::RefusedLockLost,
        "TESSERA_STATUS_REFUSED_LOCK_LOST\0",
    ),
    (
        TesseraStatus::RefusedInvalidRequest,
        "TESSERA_STATUS_REFUSED_INVALID_REQUEST\0",
    ),
    (
        TesseraStatus::RefusedInvalidKey,
        "TESSERA_STATUS_REFUSED_INVALID_KEY\0",
    ),
    (
        TesseraStatus::RefusedUnknownKey,
        "TESSERA_STATUS_REFUSED_UNKNOWN_KEY\0",
    ),
    (
        TesseraStatus::RefusedBoundToAnotherMachine,
        "TESSERA_STATUS_REFUSED_BOUND_TO_ANOTHER_MACHINE\0",
    ),
    (
        TesseraStatus::RefusedCountExhausted,
        "TESSERA_STATUS_REFUSED_COUNT_EXHAUSTED\0",
    ),
    (
        TesseraStatus::RefusedEntitlementExpired,
        "TESSERA_STATUS_REFUSED_ENTITLEMENT_EXPIRED\0",
    ),
    (
        TesseraStatus::RefusedEntitlementNotYetValid,
        "TESSERA_STATUS_REFUSED_ENTITLEMENT_NOT_YET_VALID\0",
    ),
    (
        TesseraStatus::RefusedRevoked,
        "TESSERA_STATUS_REFUSED_REVOKED\0",
    ),
    (
        TesseraStatus::RefusedWrongProduct,
        "TESSERA_STATUS_REFUSED_WRONG_PRODUCT\0",
    ),
    (
        TesseraStatus::RefusedAlreadyActivated,
        "TESSERA_STATUS_REFUSED_ALREADY_ACTIVATED\0",
    ),
    (
        TesseraStatus::RefusedNotAuthorised,
        "TESSERA_STATUS_REFUSED_NOT_AUTHORISED\0",
    ),
];

/// The status of a refusal's stable code; codes this version does not know are
/// [`TesseraStatus::Refused`].
pub(crate) fn refusal_status(code: &RefusalCode) -> TesseraStatus {
    use RefusalCode as R;
    use TesseraStatus as S;
    match code {
        R::NotLicensed => S::RefusedNotLicensed,
        R::VersionTooLow => S::RefusedVersionTooLow,
        R::NotActive => S::RefusedNotActive,
        R::AllInUse => S::RefusedAllInUse,
        R::BadCount => S::RefusedBadCount,
        R::UnknownLease => S::RefusedUnknownLease,
        R::NotLeaseHolder => S::RefusedNotLeaseHolder,
        R::BorrowLimit => S::RefusedBorrowLimit,
        R::LeaseLimit => S::RefusedLeaseLimit,
        R::RateLimited => S::RefusedRateLimited,
        R::StorageUnavailable => S::RefusedStorageUnavailable,
        R::LockLost => S::RefusedLockLost,
        R::InvalidRequest => S::RefusedInvalidRequest,
        R::InvalidKey => S::RefusedInvalidKey,
        R::UnknownKey => S::RefusedUnknownKey,
        R::BoundToAnotherMachine => S::RefusedBoundToAnotherMachine,
        R::CountExhausted => S::RefusedCountExhausted,
        R::EntitlementExpired => S::RefusedEntitlementExpired,
        R::EntitlementNotYetValid => S::RefusedEntitlementNotYetValid,
        R::Revoked => S::RefusedRevoked,
        R::WrongProduct => S::RefusedWrongProduct,
        R::AlreadyActivated => S::RefusedAlreadyActivated,
        R::NotAuthorised => S::RefusedNotAuthorised,
        // `Other` and codes a newer client library adds
        _ => S::Refused,
    }
}

/// The status of a client error; variants a newer client library adds are
/// [`TesseraStatus::Error`].
pub(crate) fn client_status(e: &ClientError) -> TesseraStatus {
    use ClientError as E;
    use TesseraStatus as S;
    match e {
        E::LicenseNotFound { .. } => S::LicenseNotFound,
        E::InvalidLicense { .. } => S::InvalidLicense,
        E::FeatureNotLicensed { .. } => S::FeatureNotLicensed,
        E::VersionTooLow { .. } => S::VersionTooLow,
        E::FeatureExpired { .. } => S::FeatureExpired,
        E::FeatureNotYetValid { .. } => S::FeatureNotYetValid,
        E::TrialExpired { .. } => S::TrialExpired,
        E::GraceExpired { .. } => S::GraceExpired,
        E::ClockRolledBack { .. } => S::ClockRolledBack,
        E::StateTampered { .. } => S::StateTampered,
        E::InvalidUnlockCode(_) => S::InvalidUnlockCode,
        E::InvalidKey { .. } => S::InvalidKey,
        E::Refused { code, .. } => refusal_status(code),
        E::Unreachable { .. } => S::Unreachable,
        E::TimedOut { .. } => S::TimedOut,
        E::NoServer => S::NoServer,
        E::NoBackOffice => S::NoBackOffice,
        E::SeatLost { .. } => S::SeatLost,
        E::InvalidProducerKey { .. } => S::InvalidProducerKey,
        E::InvalidUnlockKey { .. } => S::InvalidUnlockKey,
        E::InvalidCaCertificate { .. } => S::InvalidCaCertificate,
        E::InvalidVersion { .. } => S::InvalidVersion,
        E::LicenseFileMissing { .. } => S::LicenseFileMissing,
        E::NoTrial => S::NoTrial,
        E::UnlockCodesNotAccepted => S::UnlockCodesNotAccepted,
        E::BadAnswer { .. } => S::BadAnswer,
        E::NoMachineIdentity => S::NoMachineIdentity,
        E::Io { .. } => S::Io,
        _ => S::Error,
    }
}

/// Why a call failed, before it becomes a status and a message.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A NULL pointer where one is required: the argument's name.
    Null(&'static str),
    /// A string that is not UTF-8: the argument's name.
    Utf8(&'static str),
    /// An argument out of range: what is wrong.
    Invalid(String),
    /// The client library's error.
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// The last error of this thread.
#[derive(Debug, Default)]
struct LastError {
    message: Option<CString>,
    refusal: Option<CString>,
    retry_after: Option<u64>,
}

thread_local! {
    static LAST: RefCell<LastError> = RefCell::new(LastError::default());
}

/// Text for C: interior NUL bytes (never expected) are dropped rather than failing.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn record(message: String, refusal: Option<&RefusalCode>, retry: Option<u64>) {
    LAST.with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = LastError {
                message: Some(c_string(&message)),
                refusal: refusal.map(|r| c_string(r.as_str())),
                retry_after: retry,
            };
        }
    });
}

/// Records `f` as this thread's last error and returns its status.
pub(crate) fn fail(f: Failure) -> TesseraStatus {
    match f {
        Failure::Null(name) => {
            record(format!("{name} is NULL; pass a valid pointer"), None, None);
            TesseraStatus::NullArgument
        }
        Failure::Utf8(name) => {
            record(
                format!("{name} is not valid UTF-8 text; pass UTF-8 encoded strings"),
                None,
                None,
            );
            TesseraStatus::InvalidUtf8
        }
        Failure::Invalid(message) => {
            record(message, None, None);
            TesseraStatus::InvalidArgument
        }
        Failure::Client(e) => {
            let status = client_status(&e);
            let (refusal, retry) = match &e {
                ClientError::Refused {
                    code, retry_after, ..
                } => (Some(code), retry_after.map(|d| d.as_secs())),
                _ => (None, None),
            };
            record(e.to_string(), refusal, retry);
            status
        }
    }
}

fn clear() {
    LAST.with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = LastError::default();
        }
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error in the Tessera library ({what}); please report it")
}

/// Runs the body of an exported function that returns a status: clears this thread's last
/// error, turns a failure into its status and message, and a panic into
/// [`TesseraStatus::Panic`] (never unwinding into the caller).
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> TesseraStatus {
    clear();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TesseraStatus::Ok,
        Ok(Err(failure)) => fail(failure),
        Err(payload) => {
            record(panic_message(payload.as_ref()), None, None);
            TesseraStatus::Panic
        }
    }
}

/// Runs the body of an exported function that returns a value (an accessor): `fallback` on a
/// failure or a panic, whose message becomes this thread's last error.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> Result<T, Failure>) -> T {
    clear();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(failure)) => {
            fail(failure);
            fallback
        }
        Err(payload) => {
            record(panic_message(payload.as_ref()), None, None);
            fallback
        }
    }
}

/// This thread's last error message, or `""`; the pointer stays valid until the next Tessera
/// call on this thread.
pub(crate) fn last_message() -> *const c_char {
    LAST.with(|l| match l.try_borrow() {
        Ok(l) => l.message.as_ref().map_or(EMPTY, |m| m.as_ptr()),
        Err(_) => EMPTY,
    })
}

/// This thread's last refusal code (`all_in_use`, …), or `""`.
pub(crate) fn last_refusal() -> *const c_char {
    LAST.with(|l| match l.try_borrow() {
        Ok(l) => l.refusal.as_ref().map_or(EMPTY, |m| m.as_ptr()),
        Err(_) => EMPTY,
    })
}

/// This thread's last `Retry-After` in seconds, or -1.
pub(crate) fn last_retry_after() -> i64 {
    LAST.with(|l| match l.try_borrow() {
        Ok(l) => l
            .retry_after
            .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        Err(_) => -1,
    })
}

/// An empty C string with a static lifetime.
pub(crate) const EMPTY: *const c_char = c"".as_ptr();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_code_has_its_own_status_named_after_it() {
        let codes = [
            "not_licensed",
            "version_too_low",
            "not_active",
            "all_in_use",
            "bad_count",
            "unknown_lease",
            "not_lease_holder",
            "borrow_limit",
            "lease_limit",
            "rate_limited",
            "storage_unavailable",
            "lock_lost",
            "invalid_request",
            "invalid_key",
            "unknown_key",
            "bound_to_another_machine",
            "count_exhausted",
            "entitlement_expired",
            "entitlement_not_yet_valid",
            "revoked",
            "wrong_product",
            "already_activated",
            "not_authorised",
        ];
        let mut seen = std::collections::HashSet::new();
        for code in codes {
            let status = refusal_status(&RefusalCode::from(code));
            let name = STATUSES
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, n)| n.trim_end_matches('\0'))
                .unwrap_or_default();
            assert_eq!(
                name,
                format!("TESSERA_STATUS_REFUSED_{}", code.to_uppercase())
            );
            assert!(seen.insert(status), "{code} shares its status");
        }
        assert_eq!(
            refusal_status(&RefusalCode::from("a_new_code")),
            TesseraStatus::Refused
        );
    }

    #[test]
    fn every_status_has_one_name() {
        let mut values: Vec<i32> = STATUSES.iter().map(|(s, _)| *s as i32).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), STATUSES.len());
        for (_, name) in STATUSES {
            assert!(name.ends_with('\0') && name.starts_with("TESSERA_STATUS_"));
        }
    }

    #[test]
    fn a_panic_becomes_a_status_with_a_message_and_the_next_call_clears_it() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, TesseraStatus::Panic);
        let msg = LAST
            .with(|l| l.borrow().message.clone())
            .unwrap_or_default();
        assert!(msg.to_string_lossy().contains("boom"), "{msg:?}");
        assert_eq!(guard(|| Ok(())), TesseraStatus::Ok);
        assert!(LAST.with(|l| l.borrow().message.is_none()));
    }

    #[test]
    fn a_refusal_keeps_its_code_and_retry_after() {
        let s = fail(Failure::Client(ClientError::Refused {
            code: RefusalCode::RateLimited,
            message: "slow down".into(),
            retry_after: Some(std::time::Duration::from_secs(7)),
        }));
        assert_eq!(s, TesseraStatus::RefusedRateLimited);
        assert_eq!(last_retry_after(), 7);
        let code = LAST
            .with(|l| l.borrow().refusal.clone())
            .unwrap_or_default();
        assert_eq!(code.to_str().unwrap_or_default(), "rate_limited");
    }
}
