//! `TesseraClient` and what it returns: grants, licenses, the trial's state.

use std::ffi::{c_char, CString};

use tessera_client::{Checkout, Client, Grant, GrantSource, License, OffsetDateTime, TrialStatus};

use crate::config::TesseraConfig;
use crate::seat::TesseraSeat;
use crate::status::{c_string, guard, guard_value, Failure, TesseraStatus};
use crate::{
    arg_opt_str, arg_ref, arg_str, free_handle, into_handle, opt_ptr, write_opt, write_out,
};

/// The licensing client of one application: made once at start from a configuration.
///
/// Thread safety: a client may be used from several threads at once (every function taking a
/// `const TesseraClient *`); it must not be freed while another thread uses it.
#[derive(Debug)]
pub struct TesseraClient {
    pub(crate) inner: Client,
    pc_id: CString,
}

/// Where a feature's right to run comes from.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TesseraSource {
    /// A license file (activated online or installed).
    License = 0,
    /// A seat borrowed from a license server, usable offline until it expires.
    Borrowed = 1,
    /// A typed unlock code.
    UnlockCode = 2,
    /// A floating seat this client holds.
    Seat = 3,
    /// The trial.
    Trial = 4,
    /// A basic feature that stays after the trial.
    Basic = 5,
    /// A source this version of the C API does not know.
    Other = 99,
}

impl From<GrantSource> for TesseraSource {
    fn from(s: GrantSource) -> Self {
        match s {
            GrantSource::License => TesseraSource::License,
            GrantSource::Borrowed => TesseraSource::Borrowed,
            GrantSource::UnlockCode => TesseraSource::UnlockCode,
            GrantSource::Seat => TesseraSource::Seat,
            GrantSource::Trial => TesseraSource::Trial,
            GrantSource::Basic => TesseraSource::Basic,
            _ => TesseraSource::Other,
        }
    }
}

/// Permission to use a feature, with what an About box shows. Made by `tessera_client_check`,
/// freed with `tessera_grant_free`; its strings live as long as it does.
///
/// Thread safety: read it from any thread; it does not change.
#[derive(Debug)]
pub struct TesseraGrant {
    source: TesseraSource,
    days_left: i64,
    expires: i64,
    feature: CString,
    version: Option<CString>,
    licensee: Option<CString>,
    license_id: Option<CString>,
    vendor_string: Option<CString>,
}

impl From<Grant> for TesseraGrant {
    fn from(g: Grant) -> Self {
        TesseraGrant {
            source: g.source.into(),
            days_left: g.days_left.unwrap_or(-1),
            expires: unix(g.expires),
            feature: c_string(&g.feature),
            version: g.version.map(|v| c_string(&v.to_string())),
            licensee: g.licensee.as_deref().map(c_string),
            license_id: g.license_id.as_deref().map(c_string),
            vendor_string: g.vendor_string.as_deref().map(c_string),
        }
    }
}

fn unix(t: Option<OffsetDateTime>) -> i64 {
    t.map_or(-1, |t| t.unix_timestamp())
}

/// A verified license file: who it is for and what it holds. Made by `tessera_client_license`
/// or `tessera_client_activate`, freed with `tessera_license_free`; its strings live as long as
/// it does.
///
/// Thread safety: read it from any thread; it does not change.
#[derive(Debug)]
pub struct TesseraLicense {
    licensee: CString,
    id: CString,
    issuer: CString,
    issued: i64,
    grace_days: i64,
    features: Vec<(CString, CString)>,
}

impl From<&License> for TesseraLicense {
    fn from(l: &License) -> Self {
        let c = l.claims();
        TesseraLicense {
            licensee: c_string(&c.sub),
            id: c_string(&c.jti),
            issuer: c_string(&c.iss),
            issued: c.iat.unix_timestamp(),
            grace_days: c.policy.as_ref().map_or(-1, |p| i64::from(p.grace_days)),
            features: l
                .features()
                .iter()
                .map(|f| (c_string(&f.name), c_string(&f.version.to_string())))
                .collect(),
        }
    }
}

/// The trial's state, as `tessera_client_trial_status` fills it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TesseraTrial {
    /// Whether the trial is running (its features usable); false once it is over.
    pub active: bool,
    /// When it started (unix seconds); -1 when it is over.
    pub started: i64,
    /// When it ends or ended (unix seconds).
    pub ends: i64,
    /// Whole days left (0 when it is over).
    pub days_left: i64,
}

/// Makes the licensing client for this computer from `config` (which is copied: free it when
/// you like), writing it to `*out`.
///
/// Errors: `TESSERA_STATUS_NO_MACHINE_IDENTITY` when this computer cannot be identified.
///
/// # Safety
/// `config` is NULL or a live configuration not being changed by another thread; `out` is NULL
/// or writable. Free the result with `tessera_client_free`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_new(
    config: *const TesseraConfig,
    out: *mut *mut TesseraClient,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let config = unsafe { arg_ref(config, "config") }?;
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let inner = Client::new(config.inner.clone())?;
        let pc_id = c_string(&inner.pc_id().to_string());
        let handle = into_handle(TesseraClient { inner, pc_id });
        // SAFETY: `out` is writable (the caller's promise).
        unsafe { write_out(out, handle, "out") }
    })
}

/// Frees a client (NULL does nothing). Seats checked out through it stay held until they are
/// released or freed.
///
/// # Safety
/// `client` is NULL or a client not yet freed; it is not used afterwards.
///
/// Thread safety: no other thread may be using `client`.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_free(client: *mut TesseraClient) {
    guard_value((), || {
        // SAFETY: the caller's promise.
        unsafe { free_handle(client) };
        Ok(())
    });
}

/// This computer's PC identifier for the product (what the user types into the activation page,
/// or gives the producer for an unlock code). Belongs to the client; NULL when `client` is NULL.
///
/// # Safety
/// `client` is NULL or a live client.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_pc_id(client: *const TesseraClient) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        Ok(c.pc_id.as_ptr())
    })
}

/// May the application use `feature` at `version` (e.g. `"1.0"`)? Looks at a floating seat this
/// client holds, the license file, a borrowed seat, unlock codes and the trial, in that order.
/// On success, when `out` is not NULL, writes the grant there (free it with
/// `tessera_grant_free`).
///
/// Errors: why not, as a status (`TESSERA_STATUS_TRIAL_EXPIRED`,
/// `TESSERA_STATUS_FEATURE_NOT_LICENSED`, `TESSERA_STATUS_GRACE_EXPIRED`, …) and a message fit
/// to show to the user.
///
/// Offline, except: with a back office configured, a check that reaches the trial registers it
/// there (one request), and a borrowed seat near its end is renewed when its server answers.
///
/// # Safety
/// `client` is NULL or a live client; `feature` and `version` NULL or strings; `out` NULL or
/// writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_check(
    client: *const TesseraClient,
    feature: *const c_char,
    version: *const c_char,
    out: *mut *mut TesseraGrant,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let feature = unsafe { arg_str(feature, "feature") }?;
        // SAFETY: the caller's promise.
        let version = unsafe { arg_str(version, "version") }?;
        let grant = c.inner.check(feature, version)?;
        if !out.is_null() {
            let handle = into_handle(TesseraGrant::from(grant));
            // SAFETY: `out` is writable (the caller's promise).
            unsafe { write_opt(out, handle) };
        }
        Ok(())
    })
}

/// The trial's state, written to `*out`; starts the trial on first use (and registers it with
/// the back office when one is configured).
///
/// Errors: `TESSERA_STATUS_NO_TRIAL` when the configuration has none;
/// `TESSERA_STATUS_CLOCK_ROLLED_BACK`, `TESSERA_STATUS_STATE_TAMPERED`.
///
/// # Safety
/// `client` is NULL or a live client; `out` NULL or writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_trial_status(
    client: *const TesseraClient,
    out: *mut TesseraTrial,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let t = match c.inner.trial_status()? {
            TrialStatus::Active {
                started,
                ends,
                days_left,
            } => TesseraTrial {
                active: true,
                started: started.unix_timestamp(),
                ends: ends.unix_timestamp(),
                days_left,
            },
            TrialStatus::Expired { ended } => TesseraTrial {
                active: false,
                started: -1,
                ends: ended.unix_timestamp(),
                days_left: 0,
            },
        };
        // SAFETY: `out` is writable (the caller's promise).
        unsafe { write_out(out, t, "out") }
    })
}

/// Accepts an unlock code the user typed for activation key `key` on this computer and remembers
/// it. Case, spaces and hyphens do not matter. When `expires` is not NULL, writes the last day
/// the code is valid there (unix seconds of that day's end), or -1 for a permanent code.
///
/// Errors: `TESSERA_STATUS_INVALID_UNLOCK_CODE` (the message names the group with the typo),
/// `TESSERA_STATUS_INVALID_KEY`, `TESSERA_STATUS_UNLOCK_CODES_NOT_ACCEPTED`.
///
/// # Safety
/// `client` is NULL or a live client; `key` and `code` NULL or strings; `expires` NULL or
/// writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_apply_unlock_code(
    client: *const TesseraClient,
    key: *const c_char,
    code: *const c_char,
    expires: *mut i64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let key = unsafe { arg_str(key, "key") }?;
        // SAFETY: the caller's promise.
        let code = unsafe { arg_str(code, "code") }?;
        let grant = c.inner.apply_unlock_code(key, code)?;
        let end = grant.expires.map_or(-1, |d| {
            d.next_day()
                .unwrap_or(d)
                .midnight()
                .assume_utc()
                .unix_timestamp()
        });
        // SAFETY: `expires` is NULL or writable (the caller's promise).
        unsafe { write_opt(expires, end) };
        Ok(())
    })
}

/// Activates activation key `key` online with the back office (or validates it again: call it
/// at each launch) and stores the license it returns. When `out` is not NULL, writes the
/// license there (free it with `tessera_license_free`). Without a connection the stored license
/// keeps working for its grace period: `tessera_client_check` says how many days are left.
///
/// Errors: `TESSERA_STATUS_INVALID_KEY` (a typo, caught before the network),
/// `TESSERA_STATUS_NO_BACK_OFFICE`, `TESSERA_STATUS_UNREACHABLE`, `TESSERA_STATUS_TIMED_OUT`,
/// refusals (`TESSERA_STATUS_REFUSED_BOUND_TO_ANOTHER_MACHINE`, …).
///
/// # Safety
/// `client` is NULL or a live client; `key` NULL or a string; `out` NULL or writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_activate(
    client: *const TesseraClient,
    key: *const c_char,
    out: *mut *mut TesseraLicense,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let key = unsafe { arg_str(key, "key") }?;
        let lic = c.inner.activate(key)?;
        if !out.is_null() {
            let handle = into_handle(TesseraLicense::from(&lic));
            // SAFETY: `out` is writable (the caller's promise).
            unsafe { write_opt(out, handle) };
        }
        Ok(())
    })
}

/// Finds and verifies the license file (the configured path, `TESSERA_LICENSE`, the state
/// directory, then beside the executable), offline, writing it to `*out` (free it with
/// `tessera_license_free`).
///
/// Errors: `TESSERA_STATUS_LICENSE_NOT_FOUND` (the message says where it looked),
/// `TESSERA_STATUS_LICENSE_FILE_MISSING`, `TESSERA_STATUS_INVALID_LICENSE` (tampered, expired,
/// for another computer).
///
/// # Safety
/// `client` is NULL or a live client; `out` NULL or writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_license(
    client: *const TesseraClient,
    out: *mut *mut TesseraLicense,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let (_, lic) = c.inner.license()?;
        let handle = into_handle(TesseraLicense::from(&lic));
        // SAFETY: `out` is writable (the caller's promise).
        unsafe { write_out(out, handle, "out") }
    })
}

/// Checks `count` floating seats (1 for one user) of `feature` at `version` or newer out of a
/// license server, writing the held seat to `*out`. `server` is the server's URL, or NULL for
/// the configured servers (`tessera_config_servers`, `TESSERA_SERVER`). When every seat is in use
/// and `wait_seconds` is more than 0, waits in line up to that long. A background thread renews
/// the lease until the seat is released (`tessera_seat_release`) or freed (`tessera_seat_free`);
/// while it is held, `tessera_client_check` grants the feature from it.
///
/// Errors: `TESSERA_STATUS_REFUSED_ALL_IN_USE`, `TESSERA_STATUS_REFUSED_NOT_LICENSED`,
/// `TESSERA_STATUS_NO_SERVER`, `TESSERA_STATUS_UNREACHABLE`, `TESSERA_STATUS_BAD_ANSWER` (a
/// server not trusted for this product), ….
///
/// # Safety
/// `client` is NULL or a live client; `server` NULL or a string; `feature`, `version` strings;
/// `out` NULL or writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_checkout(
    client: *const TesseraClient,
    server: *const c_char,
    feature: *const c_char,
    version: *const c_char,
    count: u32,
    wait_seconds: u32,
    out: *mut *mut TesseraSeat,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let server = unsafe { arg_opt_str(server, "server") }?;
        // SAFETY: the caller's promise.
        let feature = unsafe { arg_str(feature, "feature") }?;
        // SAFETY: the caller's promise.
        let version = unsafe { arg_str(version, "version") }?;
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        if count == 0 {
            return Err(Failure::Invalid(
                "count is 0; ask for at least one seat".into(),
            ));
        }
        let mut want = Checkout::new(feature, version).count(count);
        if wait_seconds > 0 {
            want = want.wait_in_line(std::time::Duration::from_secs(u64::from(wait_seconds)));
        }
        if let Some(url) = server {
            want = want.server(url);
        }
        let seat = c.inner.checkout_with(&want)?;
        let handle = into_handle(TesseraSeat::new(seat));
        // SAFETY: `out` is writable (the caller's promise).
        unsafe { write_out(out, handle, "out") }
    })
}

/// Borrows a seat of `feature` at `version` from the license server at `server` for `days`
/// days, to use offline: `tessera_client_check` grants the feature from it until it expires.
/// When `expires` is not NULL, writes when it must be back (unix seconds).
///
/// Errors: `TESSERA_STATUS_REFUSED_BORROW_LIMIT`, `TESSERA_STATUS_REFUSED_ALL_IN_USE`,
/// `TESSERA_STATUS_UNREACHABLE`, ….
///
/// # Safety
/// `client` is NULL or a live client; `server`, `feature`, `version` NULL or strings; `expires`
/// NULL or writable.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_borrow(
    client: *const TesseraClient,
    server: *const c_char,
    feature: *const c_char,
    version: *const c_char,
    days: u32,
    expires: *mut i64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let server = unsafe { arg_str(server, "server") }?;
        // SAFETY: the caller's promise.
        let feature = unsafe { arg_str(feature, "feature") }?;
        // SAFETY: the caller's promise.
        let version = unsafe { arg_str(version, "version") }?;
        let b = c.inner.borrow(server, feature, version, days)?;
        // SAFETY: `expires` is NULL or writable (the caller's promise).
        unsafe { write_opt(expires, b.expires) };
        Ok(())
    })
}

/// Gives the borrowed seat of `feature` back early. When the server cannot be reached the seat
/// stays borrowed (and usable) and the error says why.
///
/// Errors: `TESSERA_STATUS_FEATURE_NOT_LICENSED` when nothing of the feature is borrowed,
/// `TESSERA_STATUS_UNREACHABLE`, ….
///
/// # Safety
/// `client` is NULL or a live client; `feature` NULL or a string.
///
/// Thread safety: any thread, concurrently with other calls on the same client.
#[no_mangle]
pub unsafe extern "C" fn tessera_client_return_borrowed(
    client: *const TesseraClient,
    feature: *const c_char,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_ref(client, "client") }?;
        // SAFETY: the caller's promise.
        let feature = unsafe { arg_str(feature, "feature") }?;
        Ok(c.inner.return_borrowed(feature)?)
    })
}

/// Frees a grant (NULL does nothing).
///
/// # Safety
/// `grant` is NULL or a grant not yet freed; it (and its strings) are not used afterwards.
///
/// Thread safety: no other thread may be using `grant`.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_free(grant: *mut TesseraGrant) {
    guard_value((), || {
        // SAFETY: the caller's promise.
        unsafe { free_handle(grant) };
        Ok(())
    });
}

/// Reads a field of a grant; `fallback` when `grant` is NULL.
///
/// # Safety
/// `grant` is NULL or a live grant.
unsafe fn grant_field<T>(
    grant: *const TesseraGrant,
    fallback: T,
    f: impl FnOnce(&TesseraGrant) -> T,
) -> T {
    guard_value(fallback, || {
        // SAFETY: the caller's promise.
        let g = unsafe { arg_ref(grant, "grant") }?;
        Ok(f(g))
    })
}

/// Where the grant comes from (`TESSERA_SOURCE_OTHER` when `grant` is NULL).
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_source(grant: *const TesseraGrant) -> TesseraSource {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, TesseraSource::Other, |g| g.source) }
}

/// Whole days left before the grant stops (the trial's end, the license's expiry or the end of
/// its grace period, a borrowed seat's return), or -1 when it does not end (or `grant` is NULL).
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_days_left(grant: *const TesseraGrant) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, -1, |g| g.days_left) }
}

/// When the grant stops (unix seconds), or -1 when it does not end (or `grant` is NULL). For a
/// floating seat, the lease's end (renewed in the background).
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_expires(grant: *const TesseraGrant) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, -1, |g| g.expires) }
}

/// The feature granted. Belongs to the grant; NULL when `grant` is NULL.
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_feature(grant: *const TesseraGrant) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, std::ptr::null(), |g| g.feature.as_ptr()) }
}

/// The version granted (the license record's or the seat's), or NULL when the source has none.
/// Belongs to the grant.
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_version(grant: *const TesseraGrant) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, std::ptr::null(), |g| opt_ptr(&g.version)) }
}

/// Who the license is for (a license file's licensee), or NULL when not known. Belongs to the
/// grant.
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_licensee(grant: *const TesseraGrant) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, std::ptr::null(), |g| opt_ptr(&g.licensee)) }
}

/// The license's id (a license file's), or NULL when not known. Belongs to the grant.
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_license_id(grant: *const TesseraGrant) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, std::ptr::null(), |g| opt_ptr(&g.license_id)) }
}

/// The producer's vendor string of the feature record, or NULL when it has none. Belongs to the
/// grant.
///
/// # Safety
/// `grant` is NULL or a live grant. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_grant_vendor_string(grant: *const TesseraGrant) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { grant_field(grant, std::ptr::null(), |g| opt_ptr(&g.vendor_string)) }
}

/// Frees a license (NULL does nothing).
///
/// # Safety
/// `license` is NULL or a license not yet freed; it (and its strings) are not used afterwards.
///
/// Thread safety: no other thread may be using `license`.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_free(license: *mut TesseraLicense) {
    guard_value((), || {
        // SAFETY: the caller's promise.
        unsafe { free_handle(license) };
        Ok(())
    });
}

/// Reads a field of a license; `fallback` when `license` is NULL.
///
/// # Safety
/// `license` is NULL or a live license.
unsafe fn license_field<T>(
    license: *const TesseraLicense,
    fallback: T,
    f: impl FnOnce(&TesseraLicense) -> Result<T, Failure>,
) -> T {
    guard_value(fallback, || {
        // SAFETY: the caller's promise.
        let l = unsafe { arg_ref(license, "license") }?;
        f(l)
    })
}

/// Who the license is for. Belongs to the license; NULL when `license` is NULL.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_licensee(license: *const TesseraLicense) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, std::ptr::null(), |l| Ok(l.licensee.as_ptr())) }
}

/// The license's id. Belongs to the license; NULL when `license` is NULL.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_id(license: *const TesseraLicense) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, std::ptr::null(), |l| Ok(l.id.as_ptr())) }
}

/// Who issued the license (the producer). Belongs to the license; NULL when `license` is NULL.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_issuer(license: *const TesseraLicense) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, std::ptr::null(), |l| Ok(l.issuer.as_ptr())) }
}

/// When the license was issued (unix seconds), or -1 when `license` is NULL.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_issued(license: *const TesseraLicense) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, -1, |l| Ok(l.issued)) }
}

/// The grace period in days of a license validated online at each launch, or -1 when it has
/// none (a license file that never needs the network).
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_grace_days(license: *const TesseraLicense) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, -1, |l| Ok(l.grace_days)) }
}

/// How many feature records the license holds (0 when `license` is NULL).
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_feature_count(license: *const TesseraLicense) -> usize {
    // SAFETY: the caller's promise.
    unsafe { license_field(license, 0, |l| Ok(l.features.len())) }
}

fn feature_at(l: &TesseraLicense, index: usize) -> Result<&(CString, CString), Failure> {
    l.features.get(index).ok_or_else(|| {
        Failure::Invalid(format!(
            "feature index {index} is out of range; the license has {} feature records",
            l.features.len()
        ))
    })
}

/// The name of feature record `index` (from 0). Belongs to the license; NULL when `license` is
/// NULL or `index` is out of range.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_feature_name(
    license: *const TesseraLicense,
    index: usize,
) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe {
        license_field(license, std::ptr::null(), |l| {
            Ok(feature_at(l, index)?.0.as_ptr())
        })
    }
}

/// The version of feature record `index` (from 0). Belongs to the license; NULL when `license`
/// is NULL or `index` is out of range.
///
/// # Safety
/// `license` is NULL or a live license. Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_license_feature_version(
    license: *const TesseraLicense,
    index: usize,
) -> *const c_char {
    // SAFETY: the caller's promise.
    unsafe {
        license_field(license, std::ptr::null(), |l| {
            Ok(feature_at(l, index)?.1.as_ptr())
        })
    }
}
