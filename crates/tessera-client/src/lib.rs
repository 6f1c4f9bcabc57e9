//! # tessera-client
//!
//! What a producer links into its application to check its license. A few lines:
//!
//! ```no_run
//! use tessera_client::{Client, ClientConfig};
//!
//! const PRODUCER_KEY: &str = "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n";
//! # fn main() -> Result<(), tessera_client::ClientError> {
//! let config = ClientConfig::new("cad", PRODUCER_KEY)?.trial(60, &["modeler"]);
//! let client = Client::new(config)?;
//! match client.check("render", "1.0") {
//!     Ok(grant) => { if let Some(days) = grant.days_left { eprintln!("only {days} days left") } }
//!     Err(e) => eprintln!("{e}"), // a message fit for the user
//! }
//! # Ok(()) }
//! ```
//!
//! It checks, in order: a floating seat the client holds, a node-locked license file (found at an
//! explicit path, in `TESSERA_LICENSE`, in the state directory or beside the executable), a
//! borrowed seat, unlock codes the user typed, and the trial (started on first run, remembered by
//! the back office when online, and tamper-evident locally); after the trial, the basic features
//! stay available. Licenses validated at each launch keep working offline for their grace period.
//! Back-office and license-server calls are plain blocking HTTP, each bounded by
//! [`ClientConfig::timeout`]; a checked-out [`Seat`] is renewed by a background thread (with the
//! `tokio` feature, an `AsyncSeat` by a task on the caller's runtime).
//!
//! The guide, with a complete example for each licensing model, is docs/client.md in the
//! repository (its examples are this crate's doc tests).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The guide (docs/client.md), compiled as doc tests so its examples stay true to the code.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/client.md")]
pub struct Guide;

#[cfg(feature = "tokio")]
mod async_api;
mod error;
mod floating;
pub mod signing;
pub mod state;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "tokio")]
pub use async_api::AsyncSeat;
pub use error::{human_date, ClientError, RefusalCode};
pub use floating::{Borrowed, Checkout, Seat, SeatEvent, SeatState};
// the types that appear in this crate's API, so an application needs no other Tessera crate
pub use tessera_core::time::{Duration, OffsetDateTime};
pub use tessera_core::unlock::{UnlockError, UnlockGrant};
pub use tessera_core::{
    Clock, DeviceType, HostId, License, LicenseClaims, ManualClock, PcId, VerifyError, Version,
};
pub use tessera_host::{HostIdentity, SystemClock};

use std::time::Duration as StdDuration;

use tessera_core::feature::Feature;
use tessera_core::license::FeatureError;
use tessera_core::unlock::{UnlockCode, UnlockPublicKey};
use tessera_core::{ActivationKey, Keyring, PublicKey};
use tessera_wire::activation::{
    ActivationResult, DeviceActivationRequest, TrialRequest, TrialResult,
};
use tessera_wire::ErrorAnswer;

use crate::state::{secs, State, StateStore};

/// How far the clock may go back before it counts as rolled back.
pub const DEFAULT_ROLLBACK_TOLERANCE: Duration = Duration::hours(24);

/// Trial settings.
#[derive(Debug, Clone)]
pub struct TrialConfig {
    /// Length in days.
    pub days: u32,
    /// Features that stay after the trial.
    pub basic_features: Vec<String>,
}

/// How the application is licensed. Built once, at start.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    product: String,
    producer_key: PublicKey,
    unlock_key: Option<UnlockPublicKey>,
    product_features: Vec<String>,
    license_path: Option<PathBuf>,
    state_dir: PathBuf,
    backup_dir: PathBuf,
    state_secret: Vec<u8>,
    backoffice_url: Option<String>,
    trial: Option<TrialConfig>,
    rollback_tolerance: Duration,
    refresh_days: u32,
    /// Certificate authorities trusted for HTTPS besides the public roots and the system's.
    ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    servers: Vec<String>,
    timeout: StdDuration,
    checkout_timeout: StdDuration,
    seat_tolerance: Duration,
    /// The device's alias sent with capability requests.
    alias: Option<String>,
    /// Attributes sent with capability requests.
    attributes: std::collections::BTreeMap<String, String>,
    /// Signs capability requests, when the license server requires it.
    signer: Option<std::sync::Arc<signing::RequestSigner>>,
}

/// How long one network request may take by default.
pub const DEFAULT_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// How long a checkout may take by default (every server of the list, every retry).
pub const DEFAULT_CHECKOUT_TIMEOUT: StdDuration = StdDuration::from_secs(15);

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from)
}

impl ClientConfig {
    /// The product id and the producer's public key (SPKI PEM, usually embedded with
    /// `include_str!`).
    pub fn new(product: &str, producer_key_pem: &str) -> Result<Self, ClientError> {
        let producer_key = PublicKey::from_spki_pem(producer_key_pem).map_err(|e| {
            ClientError::InvalidProducerKey {
                detail: e.to_string(),
            }
        })?;
        let base = std::env::var_os("XDG_DATA_HOME")
            .map_or_else(|| home().join(".local/share"), PathBuf::from);
        Ok(ClientConfig {
            product: product.to_string(),
            producer_key,
            unlock_key: None,
            product_features: Vec::new(),
            license_path: None,
            state_dir: base.join("tessera").join(product),
            backup_dir: home().join(".config").join(".tessera"),
            state_secret: Vec::new(),
            backoffice_url: None,
            trial: None,
            rollback_tolerance: DEFAULT_ROLLBACK_TOLERANCE,
            refresh_days: 14,
            ca_certs: Vec::new(),
            servers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            checkout_timeout: DEFAULT_CHECKOUT_TIMEOUT,
            seat_tolerance: Duration::ZERO,
            alias: None,
            attributes: std::collections::BTreeMap::new(),
            signer: None,
        })
    }

    /// Accept unlock codes signed with this key (unlock.pub), for a product whose features are, in
    /// order, `features`.
    pub fn unlock_codes(
        mut self,
        unlock_key_pem: &str,
        features: &[&str],
    ) -> Result<Self, ClientError> {
        self.unlock_key = Some(UnlockPublicKey::from_pem(unlock_key_pem).map_err(|e| {
            ClientError::InvalidUnlockKey {
                detail: e.to_string(),
            }
        })?);
        self.product_features = features.iter().map(|s| s.to_string()).collect();
        Ok(self)
    }

    /// Run a trial of `days` days on first start; `basic` features stay afterwards.
    pub fn trial(mut self, days: u32, basic: &[&str]) -> Self {
        self.trial = Some(TrialConfig {
            days,
            basic_features: basic.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// The license file to use instead of searching. When it does not exist, `check` says so
    /// ([`ClientError::LicenseFileMissing`]) rather than falling back to the trial.
    pub fn license_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.license_path = Some(path.into());
        self
    }

    /// Where the licensing state and validated licenses are kept (default
    /// `~/.local/share/tessera/PRODUCT`), and the backup copy of the state (default
    /// `~/.config/.tessera`). Both must be outside the install directory.
    pub fn state_dirs(mut self, state: impl Into<PathBuf>, backup: impl Into<PathBuf>) -> Self {
        self.state_dir = state.into();
        self.backup_dir = backup.into();
        self
    }

    /// A secret of the application's own mixed into the state's MAC.
    pub fn state_secret(mut self, secret: &[u8]) -> Self {
        self.state_secret = secret.to_vec();
        self
    }

    /// The back office, for trial registration and validation at launch.
    pub fn backoffice(mut self, url: &str) -> Self {
        self.backoffice_url = Some(url.trim_end_matches('/').to_string());
        self
    }

    /// How many days before a borrowed seat expires `check` renews it when the server can be
    /// reached (default 14).
    pub fn refresh_days(mut self, days: u32) -> Self {
        self.refresh_days = days;
        self
    }

    /// Also trust the certificate authorities in this PEM text for HTTPS (an on-site license server
    /// or back office with a certificate from a private CA). The public roots and the system's
    /// certificate store are always trusted.
    pub fn ca_certs_pem(mut self, pem: &str) -> Result<Self, ClientError> {
        let certs =
            tls::parse_pem(pem).map_err(|detail| ClientError::InvalidCaCertificate { detail })?;
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// How far the clock may go back before it counts as rolled back (default 24 hours).
    pub fn rollback_tolerance(mut self, d: Duration) -> Self {
        self.rollback_tolerance = d;
        self
    }

    /// The license servers for floating seats, tried in order with the same request id (a lost
    /// answer never takes a second seat). `TESSERA_SERVER` (addresses separated by commas or
    /// spaces), when set, replaces this list: an administrator points an installed application at
    /// another server without a new build. [`Checkout::server`] replaces both for one checkout.
    pub fn servers(mut self, urls: &[&str]) -> Self {
        self.servers = urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        self
    }

    /// Signs every capability request with this client key (PKCS#8, DER or PEM: RSA-2048, signed
    /// with RSASSA-PSS SHA-256, or Ed25519), for a license server that requires signed requests
    /// (`require_signed_requests = true`) and whose administrator registered its public half
    /// ([`signing::RequestSigner::public_key_der`], `tessera server client-keys add`). Without it
    /// requests go unsigned, as before.
    pub fn signing_key(mut self, pkcs8: &[u8]) -> Result<Self, ClientError> {
        self.signer = Some(std::sync::Arc::new(signing::RequestSigner::from_pkcs8(
            pkcs8,
        )?));
        Ok(self)
    }

    /// [`ClientConfig::signing_key`] with a signer made beforehand (to sign an RSA key's
    /// requests with PKCS#1 v1.5: [`signing::RequestSigner::pkcs1_v15`]).
    pub fn request_signer(mut self, signer: signing::RequestSigner) -> Self {
        self.signer = Some(std::sync::Arc::new(signer));
        self
    }

    /// A human-readable name for this device (its host name, a desk number), sent with every
    /// capability request so that the license server's administrator sees it beside the host id
    /// and may match rules of access on it. At most 256 characters, no control characters (the
    /// server refuses requests that break that).
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_string());
        self
    }

    /// An attribute sent with every capability request (`department` = `sales`): the license
    /// server's rules of access (named license pools) may match on it. Names are letters, digits,
    /// `_`, `-` and `.` (at most 64), values at most 256 characters, at most 32 attributes; the
    /// server refuses requests that break that. Setting a name again replaces its value.
    pub fn attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes.insert(name.to_string(), value.to_string());
        self
    }

    /// How long one network request (to the back office or a license server) may take, connecting
    /// included (default 5 seconds). A server that takes the connection and never answers is
    /// [`ClientError::TimedOut`] after this.
    pub fn timeout(mut self, d: StdDuration) -> Self {
        self.timeout = d;
        self
    }

    /// How long a checkout may take in all: every server of the list, every retry (default
    /// 15 seconds; waiting in line, [`Checkout::wait_in_line`], comes on top).
    pub fn checkout_timeout(mut self, d: StdDuration) -> Self {
        self.checkout_timeout = d;
        self
    }

    /// How long a floating seat still counts as held after its lease ran out while the license
    /// server could not be reached (default zero: lost when the lease runs out). Never longer:
    /// the seat is lost at lease expiry + tolerance at the latest, and at once when the server,
    /// reachable again, has given the seat to someone else. Keep it short: meanwhile the server
    /// may have given the seat to another user.
    pub fn seat_tolerance(mut self, d: Duration) -> Self {
        self.seat_tolerance = d.max(Duration::ZERO);
        self
    }
}

/// Where a feature's right to run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantSource {
    /// A license file.
    License,
    /// A seat borrowed from a license server (taken offline until its expiry).
    Borrowed,
    /// A typed unlock code.
    UnlockCode,
    /// A floating seat this client holds ([`Client::checkout`]).
    Seat,
    /// The trial.
    Trial,
    /// The basic features that remain after the trial.
    Basic,
}

/// Permission to use a feature, with what an About box shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The feature.
    pub feature: String,
    /// Where it comes from.
    pub source: GrantSource,
    /// Whole days left before it stops (the trial's end, the license's expiry, or the end of the
    /// grace period, whichever is first), or `None` when it does not end.
    pub days_left: Option<i64>,
    /// When it stops (as `days_left`), or `None` when it does not end. For a floating seat, the
    /// lease's end (renewed in the background).
    pub expires: Option<OffsetDateTime>,
    /// The version granted (the license record's or the seat's), when the source has one.
    pub version: Option<Version>,
    /// Who the license is for (a license file's licensee), when known.
    pub licensee: Option<String>,
    /// The license's id (a license file's), when known.
    pub license_id: Option<String>,
    /// The producer's vendor string of the feature record, when it has one.
    pub vendor_string: Option<String>,
}

impl Grant {
    fn new(
        feature: &str,
        source: GrantSource,
        now: OffsetDateTime,
        ends: Option<OffsetDateTime>,
    ) -> Self {
        Grant {
            feature: feature.to_string(),
            source,
            days_left: ends.map(|e| days_until(now, e)),
            expires: ends,
            version: None,
            licensee: None,
            license_id: None,
            vendor_string: None,
        }
    }
}

/// The trial's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialStatus {
    /// The trial is running: its features are usable until it ends.
    Active {
        /// When it started.
        started: OffsetDateTime,
        /// When it ends.
        ends: OffsetDateTime,
        /// Whole days left.
        days_left: i64,
    },
    /// Over: only the basic features remain.
    Expired {
        /// When it ended.
        ended: OffsetDateTime,
    },
}

/// The licensing client of one application.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
    clock: Arc<dyn Clock>,
    identity: HostIdentity,
    pc_id: PcId,
    state: StateStore,
    /// The HTTP agent, made at the first request (reading the system's certificates once).
    agent: Arc<std::sync::OnceLock<ureq::Agent>>,
    /// The floating seats it holds.
    held: floating::HeldSeats,
}

fn days_until(now: OffsetDateTime, t: OffsetDateTime) -> i64 {
    let secs = (t - now).whole_seconds();
    // whole days, rounding up a started day: "1 day left" until the last second
    (secs + 86_399).div_euclid(86_400).max(0)
}

impl Client {
    /// A client for this machine, reading the system clock.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Self::with(
            config,
            Arc::new(SystemClock),
            tessera_host::this_machine().identify(),
        )
    }

    /// A client with a given clock and machine identity (tests, other platforms).
    pub fn with(
        config: ClientConfig,
        clock: Arc<dyn Clock>,
        identity: HostIdentity,
    ) -> Result<Self, ClientError> {
        let pc_id = identity
            .pc_id(&config.product)
            .ok_or(ClientError::NoMachineIdentity)?;
        let state = StateStore::new(
            &config.state_dir,
            &config.backup_dir,
            &config.product,
            &pc_id.to_string(),
            &config.state_secret,
        );
        Ok(Client {
            config,
            clock,
            identity,
            pc_id,
            state,
            agent: Arc::new(std::sync::OnceLock::new()),
            held: floating::HeldSeats::default(),
        })
    }

    /// This machine's PC identifier for the product (what the user types into the activation page).
    pub fn pc_id(&self) -> &PcId {
        &self.pc_id
    }

    fn presented(&self) -> Vec<HostId> {
        self.identity
            .ids_for_products([self.config.product.as_str()])
    }

    /// Where the license file is looked for, in order: the configured path, `TESSERA_LICENSE`,
    /// the state directory's `license.lic`, then `PRODUCT.lic` and `license.lic` beside the
    /// executable.
    pub fn license_locations(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(p) = &self.config.license_path {
            out.push(p.clone());
        }
        if let Some(p) = std::env::var_os("TESSERA_LICENSE") {
            out.push(PathBuf::from(p));
        }
        out.push(self.config.state_dir.join("license.lic"));
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            out.push(dir.join(format!("{}.lic", self.config.product)));
            out.push(dir.join("license.lic"));
        }
        out
    }

    /// Finds and verifies the node-locked license file, offline. A configured
    /// [`ClientConfig::license_path`] that does not exist is [`ClientError::LicenseFileMissing`];
    /// no file anywhere is [`ClientError::LicenseNotFound`], naming where it looked.
    pub fn license(&self) -> Result<(PathBuf, License), ClientError> {
        if let Some(p) = &self.config.license_path {
            if !p.exists() {
                return Err(ClientError::LicenseFileMissing { path: p.clone() });
            }
        }
        let searched = self.license_locations();
        for path in &searched {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ClientError::Io {
                        path: path.clone(),
                        detail: e.to_string(),
                    })
                }
            };
            let lic =
                self.verify_license_text(&text)
                    .map_err(|reason| ClientError::InvalidLicense {
                        path: path.clone(),
                        reason,
                    })?;
            return Ok((path.clone(), lic));
        }
        Err(ClientError::LicenseNotFound { searched })
    }

    /// Verifies license text against the producer key, this machine and the clock.
    pub fn verify_license_text(&self, text: &str) -> Result<License, tessera_core::VerifyError> {
        License::verify(
            text,
            &Keyring::with(self.config.producer_key.clone()),
            self.clock.now(),
            &self.presented(),
        )
    }

    /// Reads the state, checks the clock against the latest time seen, and records now.
    fn touch_state(&self) -> Result<(State, OffsetDateTime), ClientError> {
        let now = self.clock.now();
        let mut state = self.state.load()?;
        if let Some(last) = state
            .last_seen
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        {
            if now + self.config.rollback_tolerance < last {
                return Err(ClientError::ClockRolledBack {
                    now,
                    last_seen: last,
                });
            }
        }
        if state.last_seen.is_none_or(|s| s < secs(now)) {
            state.last_seen = Some(secs(now));
            self.state.save(&state)?;
        }
        Ok((state, now))
    }

    /// May the application use `feature` at version `version` (e.g. `"1.0"`)?
    ///
    /// Looks, in order, at a floating seat this client holds, the license file, a borrowed seat,
    /// unlock codes and the trial. Offline except: with a back office configured, every check
    /// that reaches the trial registers it there (one request, bounded by
    /// [`ClientConfig::timeout`]); a borrowed seat near its end is renewed when its server can
    /// be reached.
    pub fn check(&self, feature: &str, version: &str) -> Result<Grant, ClientError> {
        let wanted: Version =
            version
                .parse::<Version>()
                .map_err(|e| ClientError::InvalidVersion {
                    version: version.to_string(),
                    detail: e.to_string(),
                })?;
        let (state, now) = self.touch_state()?;
        // 0. a floating seat held by this client
        if let Some(seat) = self.held.find(feature, &wanted) {
            let mut g = Grant::new(feature, GrantSource::Seat, now, Some(seat.lease_expires()));
            g.version = seat.granted_version().parse().ok();
            return Ok(g);
        }
        let refusal: Option<ClientError>;
        // 1. a license file
        match self.license() {
            Ok((_, lic)) => match lic.feature(feature, &wanted, now) {
                Ok(f) => return self.license_grant(&lic, f, now),
                Err(e) => refusal = Some(feature_error(e)),
            },
            Err(e @ ClientError::LicenseNotFound { .. }) => refusal = Some(e),
            // an expired (or not yet valid) license leaves the trial and the basic features
            Err(
                e @ ClientError::InvalidLicense {
                    reason:
                        tessera_core::VerifyError::Expired { .. }
                        | tessera_core::VerifyError::NotYetValid { .. },
                    ..
                },
            ) => refusal = Some(e),
            // a tampered license, or one for another machine, is said at once
            Err(e) => return Err(e),
        }
        // 2. a borrowed seat (refreshed when online within the refresh window)
        if let Some(b) = self.borrowed(feature) {
            let device = HostId::from(&self.pc_id).to_string();
            if let Some(mut expires) = b.verify(&self.config.producer_key, &device, now) {
                if expires - now < Duration::days(i64::from(self.config.refresh_days)) {
                    let length = ((b.expires - b.response_issued(now)) / 86_400).max(1);
                    let days = u32::try_from(length).unwrap_or(1);
                    if let Ok(fresh) =
                        floating::borrow(&self.link(&b.server), feature, version, days)
                    {
                        if self.save_borrowed(&fresh).is_ok() {
                            expires = OffsetDateTime::from_unix_timestamp(fresh.expires)
                                .unwrap_or(expires);
                            // the old grant is gone from here (replaced): give its seat back
                            let _ = self.link(&b.server).call_session(
                                tessera_core::capability::Operation::Return,
                                &format!("{}-return", b.request_id),
                                b.lease,
                                b.session_key().as_deref(),
                                false,
                            );
                        }
                    }
                }
                return Ok(Grant::new(
                    feature,
                    GrantSource::Borrowed,
                    now,
                    Some(expires),
                ));
            }
        }
        // 3. unlock codes
        if let Some(pk) = &self.config.unlock_key {
            for (key, code) in &state.unlocks {
                let (Ok(key), Ok(code)) = (ActivationKey::parse(key), UnlockCode::parse(code))
                else {
                    continue;
                };
                if let Ok(grant) =
                    code.verify(pk, &self.config.product, &key, &self.pc_id, now.date())
                {
                    if grant
                        .features
                        .allows(&self.config.product_features, feature)
                    {
                        let ends = grant
                            .expires
                            .map(|d| d.next_day().unwrap_or(d).midnight().assume_utc());
                        return Ok(Grant::new(feature, GrantSource::UnlockCode, now, ends));
                    }
                }
            }
        }
        // 4. the trial, then the basic features
        if let Some(trial) = &self.config.trial {
            match self.trial_status_at(&state, now)? {
                TrialStatus::Active { ends, .. } => {
                    return Ok(Grant::new(feature, GrantSource::Trial, now, Some(ends)))
                }
                TrialStatus::Expired { ended } => {
                    if trial.basic_features.iter().any(|b| b == feature) {
                        return Ok(Grant::new(feature, GrantSource::Basic, now, None));
                    }
                    // a license that does not allow it says why; no license at all: the trial
                    let refusal =
                        refusal.filter(|r| !matches!(r, ClientError::LicenseNotFound { .. }));
                    return Err(refusal.unwrap_or(ClientError::TrialExpired {
                        feature: feature.into(),
                        ended_on: ended,
                        basic_features: trial.basic_features.clone(),
                    }));
                }
            }
        }
        Err(refusal.unwrap_or(ClientError::FeatureNotLicensed {
            feature: feature.into(),
        }))
    }

    fn license_grant(
        &self,
        lic: &License,
        f: &Feature,
        now: OffsetDateTime,
    ) -> Result<Grant, ClientError> {
        let mut ends: Option<OffsetDateTime> = match f.expiry {
            tessera_core::feature::Expiry::At(t) => Some(t),
            tessera_core::feature::Expiry::Permanent => None,
        };
        // a license validated online at each launch works for its grace period after its issue
        if let Some(policy) = &lic.claims().policy {
            if self.config.backoffice_url.is_some() {
                let grace_end = lic.claims().iat + Duration::days(i64::from(policy.grace_days));
                if now >= grace_end {
                    return Err(ClientError::GraceExpired {
                        last_validated: lic.claims().iat,
                        grace_days: policy.grace_days,
                    });
                }
                ends = Some(ends.map_or(grace_end, |e| e.min(grace_end)));
            }
        }
        let mut g = Grant::new(&f.name, GrantSource::License, now, ends);
        g.version = Some(f.version.clone());
        g.licensee = Some(lic.claims().sub.clone());
        g.license_id = Some(lic.claims().jti.clone());
        g.vendor_string = f.vendor_string.clone();
        Ok(g)
    }

    fn trial_status_at(
        &self,
        state: &State,
        now: OffsetDateTime,
    ) -> Result<TrialStatus, ClientError> {
        let Some(trial) = &self.config.trial else {
            return Err(ClientError::NoTrial);
        };
        let mut state = state.clone();
        let mut started = state.trial_started;
        // registered with the back office when online: it remembers the first start
        if let Some(url) = &self.config.backoffice_url {
            if let Ok(remote) = self.register_trial(url) {
                started = Some(started.map_or(remote, |s| s.min(remote)));
            }
        }
        let started = started.unwrap_or(secs(now));
        if state.trial_started != Some(started) {
            state.trial_started = Some(started);
            self.state.save(&state)?;
        }
        let started = OffsetDateTime::from_unix_timestamp(started).unwrap_or(now);
        let ends = started + Duration::days(i64::from(trial.days));
        Ok(if now < ends {
            TrialStatus::Active {
                started,
                ends,
                days_left: days_until(now, ends),
            }
        } else {
            TrialStatus::Expired { ended: ends }
        })
    }

    /// The trial's state (starting it on first use); [`ClientError::NoTrial`] when the
    /// application has none. With a back office configured, registers the trial there (one
    /// request).
    pub fn trial_status(&self) -> Result<TrialStatus, ClientError> {
        let (state, now) = self.touch_state()?;
        self.trial_status_at(&state, now)
    }

    fn post<B: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &B,
    ) -> Result<A, ClientError> {
        http_post(
            &self.agent(),
            url,
            path,
            body,
            self.config.timeout,
            "the licensing server refused",
        )
    }

    /// Registers the trial; returns the recorded start (unix seconds), checked through the signed
    /// trial license the back office sends with it.
    fn register_trial(&self, url: &str) -> Result<i64, ClientError> {
        let v: TrialResult = self.post(
            url,
            "/api/v1/trials",
            &TrialRequest {
                product: self.config.product.clone(),
                pc_id: self.pc_id.to_string(),
            },
        )?;
        let started = v.started_at;
        // the start must agree with the producer-signed trial license (a fake server cannot move it)
        if let Some(text) = Some(v.license.as_str()).filter(|t| !t.is_empty()) {
            let lic = self
                .verify_license_text(text)
                .map_err(|e| ClientError::BadAnswer {
                    url: url.into(),
                    detail: e.to_string(),
                })?;
            let ends = lic.features().iter().find_map(|f| match f.expiry {
                tessera_core::feature::Expiry::At(t) => Some(t),
                _ => None,
            });
            let claimed_end = Some(v.expires_at);
            if ends.map(|e| e.unix_timestamp()) != claimed_end {
                return Err(ClientError::BadAnswer {
                    url: url.into(),
                    detail: "the trial dates do not match the signed trial license".into(),
                });
            }
        }
        Ok(started)
    }

    /// Activates a node-locked key online (or re-validates it: call it at each launch) and stores
    /// the license it returns in the state directory. Without a connection, the stored license
    /// keeps working for its grace period.
    pub fn activate(&self, key: &str) -> Result<License, ClientError> {
        let url = self
            .config
            .backoffice_url
            .clone()
            .ok_or(ClientError::NoBackOffice)?;
        ActivationKey::parse(key).map_err(|e| ClientError::InvalidKey {
            detail: e.to_string(),
        })?;
        let v: ActivationResult = self.post(
            &url,
            "/api/v1/activate/device",
            &DeviceActivationRequest {
                key: key.to_string(),
                pc_id: self.pc_id.to_string(),
                product: Some(self.config.product.clone()),
                device_key: None,
            },
        )?;
        let text = v.license.as_str();
        let lic = self
            .verify_license_text(text)
            .map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        state::write_atomic(&self.config.state_dir.join("license.lic"), text.as_bytes())?;
        Ok(lic)
    }

    /// Checks a floating seat of `feature` (at `version` or newer) out of the license server at
    /// `server_url`: [`Client::checkout_with`] with [`Checkout::server`].
    pub fn checkout(
        &self,
        server_url: &str,
        feature: &str,
        version: &str,
    ) -> Result<Seat, ClientError> {
        self.checkout_with(&Checkout::new(feature, version).server(server_url))
    }

    /// Checks floating seats out as `want` says (feature, version, count, waiting in line,
    /// servers), from the configured servers or `TESSERA_SERVER` unless `want` names some.
    /// Bounded by [`ClientConfig::checkout_timeout`] (plus the wait in line). Starts a
    /// background thread that renews the lease; keep the [`Seat`] alive while the feature is in
    /// use, and watch [`Seat::events`] or [`Seat::is_lost`].
    pub fn checkout_with(&self, want: &Checkout) -> Result<Seat, ClientError> {
        let shared = floating::Shared::checkout(self.links(want)?, want, self.limits())?;
        self.held.add(&shared);
        Seat::start(shared)
    }

    pub(crate) fn limits(&self) -> floating::Limits {
        floating::Limits {
            checkout_timeout: self.config.checkout_timeout,
            tolerance: self.config.seat_tolerance,
        }
    }

    /// The license servers to ask, in order.
    pub fn servers(&self) -> Vec<String> {
        match std::env::var("TESSERA_SERVER") {
            Ok(v) if !v.trim().is_empty() => v
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_end_matches('/').to_string())
                .collect(),
            _ => self.config.servers.clone(),
        }
    }

    pub(crate) fn links(&self, want: &Checkout) -> Result<Vec<floating::ServerLink>, ClientError> {
        let urls = if want.servers.is_empty() {
            self.servers()
        } else {
            want.servers.clone()
        };
        if urls.is_empty() {
            return Err(ClientError::NoServer);
        }
        Ok(urls.iter().map(|u| self.link(u)).collect())
    }

    /// Borrows a seat of `feature` for `days` (at most the server's longest borrow): the signed
    /// grant is kept in the state directory and [`Client::check`] accepts it offline until it
    /// expires. Refreshed by `check` when online within `refresh_days` of its expiry; the server
    /// limits how many one account may borrow (`borrow_limit`).
    pub fn borrow(
        &self,
        server_url: &str,
        feature: &str,
        version: &str,
        days: u32,
    ) -> Result<Borrowed, ClientError> {
        let b = floating::borrow(&self.link(server_url), feature, version, days)?;
        self.save_borrowed(&b)?;
        Ok(b)
    }

    /// Gives a borrowed seat back early. The signed grant is set aside first (from then on
    /// [`Client::check`] no longer accepts it), then the return is sent with the proof of the
    /// grant's session key; the server frees the seat only for that proof. When the server cannot
    /// be reached (or refuses), the grant is put back and stays usable; when the server no longer
    /// holds the lease, the grant is deleted all the same.
    pub fn return_borrowed(&self, feature: &str) -> Result<(), ClientError> {
        let Some(b) = self.borrowed(feature) else {
            return Err(ClientError::FeatureNotLicensed {
                feature: format!("{feature} (nothing of it is borrowed)"),
            });
        };
        let path = self.borrowed_path(feature);
        let aside = path.with_extension("returning");
        let io = |p: &std::path::Path, e: std::io::Error| ClientError::Io {
            path: p.to_path_buf(),
            detail: e.to_string(),
        };
        std::fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
        let link = self.link(&b.server);
        let answer = link.call_session(
            tessera_core::capability::Operation::Return,
            &format!("{}-return", b.request_id),
            b.lease,
            b.session_key().as_deref(),
            false,
        );
        let gone = match &answer {
            // returned, or refused as a lease the server no longer holds (returned or expired)
            Ok(_) => true,
            Err(ClientError::Refused { code, .. }) => *code == RefusalCode::UnknownLease,
            Err(_) => false,
        };
        if !gone {
            std::fs::rename(&aside, &path).map_err(|e| io(&aside, e))?;
            return answer.map(|_| ());
        }
        std::fs::remove_file(&aside).map_err(|e| io(&aside, e))
    }

    fn borrowed_path(&self, feature: &str) -> PathBuf {
        let safe: String = feature
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.config
            .state_dir
            .join("borrowed")
            .join(format!("{safe}.json"))
    }

    fn save_borrowed(&self, b: &Borrowed) -> Result<(), ClientError> {
        let text = serde_json::to_vec_pretty(b).map_err(|e| ClientError::Io {
            path: self.borrowed_path(&b.feature),
            detail: e.to_string(),
        })?;
        state::write_atomic(&self.borrowed_path(&b.feature), &text)
    }

    /// The borrowed seat of `feature` kept here, if any (not checked).
    pub fn borrowed(&self, feature: &str) -> Option<Borrowed> {
        let text = std::fs::read_to_string(self.borrowed_path(feature)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn agent(&self) -> ureq::Agent {
        self.agent
            .get_or_init(|| tls::agent(&self.config.ca_certs))
            .clone()
    }

    fn link(&self, server_url: &str) -> floating::ServerLink {
        floating::ServerLink {
            agent: self.agent(),
            url: server_url.trim_end_matches('/').to_string(),
            producer: self.config.producer_key.clone(),
            device_id: HostId::from(&self.pc_id).to_string(),
            user: self
                .identity
                .ids
                .iter()
                .find(|i| i.kind().is_user())
                .map(|i| i.value().to_string()),
            alias: self.config.alias.clone(),
            device_type: self.identity.device_type,
            attributes: self.config.attributes.clone(),
            clock: self.clock.clone(),
            timeout: self.config.timeout,
            signer: self.config.signer.clone(),
        }
    }

    /// Accepts a typed unlock code for `key` on this machine and remembers it. Case, spaces and
    /// hyphens do not matter; a typo names its group.
    pub fn apply_unlock_code(&self, key: &str, code: &str) -> Result<UnlockGrant, ClientError> {
        let pk = self
            .config
            .unlock_key
            .as_ref()
            .ok_or(ClientError::UnlockCodesNotAccepted)?;
        let key = ActivationKey::parse(key).map_err(|e| ClientError::InvalidKey {
            detail: e.to_string(),
        })?;
        let parsed = UnlockCode::parse(code).map_err(ClientError::InvalidUnlockCode)?;
        let (mut state, now) = self.touch_state()?;
        let grant = parsed
            .verify(pk, &self.config.product, &key, &self.pc_id, now.date())
            .map_err(ClientError::InvalidUnlockCode)?;
        let entry = (key.to_string(), parsed.to_string());
        if !state.unlocks.contains(&entry) {
            state.unlocks.push(entry);
            self.state.save(&state)?;
        }
        Ok(grant)
    }
}

fn feature_error(e: FeatureError) -> ClientError {
    match e {
        FeatureError::NotLicensed { name } => ClientError::FeatureNotLicensed { feature: name },
        FeatureError::VersionTooLow { name, have, wanted } => ClientError::VersionTooLow {
            feature: name,
            have,
            wanted,
        },
        FeatureError::Expired { name, expired_at } => ClientError::FeatureExpired {
            feature: name,
            expired_on: expired_at,
        },
        FeatureError::NotYetStarted { name, starts_at } => ClientError::FeatureNotYetValid {
            feature: name,
            starts_on: starts_at,
        },
        other => ClientError::FeatureNotLicensed {
            feature: other.to_string(),
        },
    }
}

/// The most of an error answer's body that is read (a problem is a few hundred bytes).
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// POSTs `body` as JSON to `url` + `path` within `timeout` and reads the answer as `A`; a refusal
/// (a problem, read as [`ErrorAnswer`]) with its stable code and the server's `Retry-After`, a
/// network error without the URL twice, a timeout as [`ClientError::TimedOut`].
pub(crate) fn http_post<B: serde::Serialize, A: serde::de::DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    path: &str,
    body: &B,
    timeout: StdDuration,
    refused: &str,
) -> Result<A, ClientError> {
    let sent = agent
        .post(&format!("{url}{path}"))
        .timeout(timeout)
        .send_json(body);
    http_answer(sent, url, timeout, refused)
}

/// POSTs a JSON body given as bytes, with one more header (a request's signature).
pub(crate) fn http_post_bytes<A: serde::de::DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    path: &str,
    body: &[u8],
    header: (&str, &str),
    timeout: StdDuration,
    refused: &str,
) -> Result<A, ClientError> {
    let sent = agent
        .post(&format!("{url}{path}"))
        .timeout(timeout)
        .set("Content-Type", "application/json")
        .set(header.0, header.1)
        .send_bytes(body);
    http_answer(sent, url, timeout, refused)
}

/// The answer to a POST as `A`, or the error it is.
fn http_answer<A: serde::de::DeserializeOwned>(
    sent: Result<ureq::Response, ureq::Error>,
    url: &str,
    timeout: StdDuration,
    refused: &str,
) -> Result<A, ClientError> {
    match sent {
        Ok(resp) => resp.into_json().map_err(|e| ClientError::BadAnswer {
            url: url.into(),
            detail: e.to_string(),
        }),
        Err(ureq::Error::Status(status, resp)) => {
            let retry_after = resp
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(StdDuration::from_secs);
            let mut bytes = Vec::new();
            // an unreadable body says nothing of the problem: the status and `refused` stand in
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(resp.into_reader(), ERROR_BODY_LIMIT),
                &mut bytes,
            );
            let answer = ErrorAnswer::read(status, &bytes);
            let fallback = format!("{refused} (HTTP {status})");
            Err(ClientError::Refused {
                code: RefusalCode::from(answer.code.as_deref().unwrap_or("refused")),
                message: answer.detail.or(answer.title).unwrap_or(fallback),
                retry_after,
            })
        }
        Err(ureq::Error::Transport(t)) => Err(error::transport_error(url, &t, timeout)),
    }
}
