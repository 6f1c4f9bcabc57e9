//! The one error type an application sees. Every message can be shown to an end user as it is;
//! every variant carries the data an application needs to say more (days left, feature, dates).

use std::path::PathBuf;

use tessera_core::time::OffsetDateTime;
use tessera_core::time_fmt::display_date;
use tessera_core::unlock::UnlockError;
use tessera_core::{VerifyError, Version};

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
    #[error("your license for {feature} expired on {}", display_date(*.expired_on))]
    FeatureExpired {
        /// The feature.
        feature: String,
        /// When.
        expired_on: OffsetDateTime,
    },
    /// The feature's license starts later.
    #[error("your license for {feature} starts on {}", display_date(*.starts_on))]
    FeatureNotYetValid {
        /// The feature.
        feature: String,
        /// When.
        starts_on: OffsetDateTime,
    },
    /// The trial has ended and the feature is not among the basic ones.
    #[error("the trial ended on {}; {feature} needs a license (still available: {})", display_date(*.ended_on), if .basic_features.is_empty() { "nothing".to_string() } else { .basic_features.join(", ") })]
    TrialExpired {
        /// The feature asked for.
        feature: String,
        /// When the trial ended.
        ended_on: OffsetDateTime,
        /// Features that remain.
        basic_features: Vec<String>,
    },
    /// The last successful validation is older than the grace period.
    #[error("this license could not be checked with the vendor since {} and the {grace_days}-day grace period is over; connect to the internet and start the application again", display_date(*.last_validated))]
    GraceExpired {
        /// When the license was last validated.
        last_validated: OffsetDateTime,
        /// The grace period.
        grace_days: u32,
    },
    /// The system clock was set back.
    #[error("the computer's clock was set back (it reads {}, but this application already ran on {}); correct the date and time", display_date(*.now), display_date(*.last_seen))]
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
    /// The vendor's server refused.
    #[error("{message}")]
    Refused {
        /// Its stable code (`bound_to_another_machine`, `count_exhausted`, …).
        code: String,
        /// Its message.
        message: String,
    },
    /// The vendor's server could not be reached.
    #[error("the licensing server at {url} could not be reached: {detail}")]
    Unreachable {
        /// The server.
        url: String,
        /// What happened.
        detail: String,
    },
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
