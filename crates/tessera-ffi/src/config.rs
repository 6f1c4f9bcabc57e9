//! `TesseraConfig`: how the application is licensed (product, keys, trial, servers, directories).

use std::ffi::c_char;
use std::time::Duration as StdDuration;

use tessera_client::{ClientConfig, Duration};

use crate::status::{guard, Failure, TesseraStatus};
use crate::{arg_mut, arg_str, arg_strs, free_handle, into_handle, write_out};

/// How the application is licensed, built once at start and given to `tessera_client_new`.
///
/// Thread safety: a configuration is not shared; use it from one thread at a time.
#[derive(Debug)]
pub struct TesseraConfig {
    pub(crate) inner: ClientConfig,
}

impl TesseraConfig {
    fn update(
        &mut self,
        f: impl FnOnce(ClientConfig) -> Result<ClientConfig, Failure>,
    ) -> Result<(), Failure> {
        self.inner = f(self.inner.clone())?;
        Ok(())
    }
}

/// Makes a configuration for `product` (its id in the back office) with the producer's public
/// key (SPKI PEM text, usually compiled into the application), writing it to `*out`. The state
/// is kept in `~/.local/share/tessera/PRODUCT` unless `tessera_config_state_dirs` says otherwise.
///
/// Errors: `TESSERA_STATUS_INVALID_PRODUCER_KEY` when the key does not parse.
///
/// # Safety
/// `product` and `producer_key_pem` are NULL or NUL-terminated strings; `out` is NULL or
/// writable. Free the result with `tessera_config_free`.
///
/// Thread safety: any thread.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_new(
    product: *const c_char,
    producer_key_pem: *const c_char,
    out: *mut *mut TesseraConfig,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise (see the function's Safety section).
        let product = unsafe { arg_str(product, "product") }?;
        // SAFETY: as above.
        let pem = unsafe { arg_str(producer_key_pem, "producer_key_pem") }?;
        if out.is_null() {
            return Err(Failure::Null("out"));
        }
        let inner = ClientConfig::new(product, pem)?;
        // SAFETY: `out` is writable (the caller's promise).
        unsafe { write_out(out, into_handle(TesseraConfig { inner }), "out") }
    })
}

/// Frees a configuration (NULL does nothing). Clients made from it keep working.
///
/// # Safety
/// `config` is NULL or a configuration not yet freed; it is not used afterwards.
///
/// Thread safety: no other thread may be using `config`.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_free(config: *mut TesseraConfig) {
    crate::status::guard_value((), || {
        // SAFETY: the caller's promise.
        unsafe { free_handle(config) };
        Ok(())
    });
}

/// Accepts unlock codes signed with this key (`unlock.pub`, PEM text) for a product whose
/// features are, in order, the `count` names in `features` (the order of the back office's
/// product: the code's feature bits follow it).
///
/// Errors: `TESSERA_STATUS_INVALID_UNLOCK_KEY` when the key does not parse.
///
/// # Safety
/// `config` is a live configuration; `unlock_key_pem` a string; `features` NULL (when `count`
/// is 0) or `count` strings.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_unlock_codes(
    config: *mut TesseraConfig,
    unlock_key_pem: *const c_char,
    features: *const *const c_char,
    count: usize,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let pem = unsafe { arg_str(unlock_key_pem, "unlock_key_pem") }?;
        // SAFETY: the caller's promise.
        let names = unsafe { arg_strs(features, count, "features") }?;
        c.update(|cfg| Ok(cfg.unlock_codes(pem, &names)?))
    })
}

/// Runs a trial of `days` days on first start; the `count` features in `basic` stay usable
/// after it ends.
///
/// # Safety
/// `config` is a live configuration; `basic` NULL (when `count` is 0) or `count` strings.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_trial(
    config: *mut TesseraConfig,
    days: u32,
    basic: *const *const c_char,
    count: usize,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let names = unsafe { arg_strs(basic, count, "basic") }?;
        c.update(|cfg| Ok(cfg.trial(days, &names)))
    })
}

/// Uses this license file instead of searching the usual places; when it does not exist, a
/// check says so (`TESSERA_STATUS_LICENSE_FILE_MISSING`) instead of falling back to the trial.
///
/// # Safety
/// `config` is a live configuration; `path` a string.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_license_path(
    config: *mut TesseraConfig,
    path: *const c_char,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let path = unsafe { arg_str(path, "path") }?;
        c.update(|cfg| Ok(cfg.license_path(path)))
    })
}

/// Where the licensing state and validated licenses are kept, and its backup copy. Both must be
/// outside the install directory (a reinstall must not erase the trial's start).
///
/// # Safety
/// `config` is a live configuration; `state_dir` and `backup_dir` strings.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_state_dirs(
    config: *mut TesseraConfig,
    state_dir: *const c_char,
    backup_dir: *const c_char,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let state = unsafe { arg_str(state_dir, "state_dir") }?;
        // SAFETY: the caller's promise.
        let backup = unsafe { arg_str(backup_dir, "backup_dir") }?;
        c.update(|cfg| Ok(cfg.state_dirs(state, backup)))
    })
}

/// Mixes a secret of the application's own (`len` bytes at `secret`) into the state's MAC.
///
/// # Safety
/// `config` is a live configuration; `secret` NULL (when `len` is 0) or `len` readable bytes.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_state_secret(
    config: *mut TesseraConfig,
    secret: *const u8,
    len: usize,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if secret.is_null() {
            return Err(Failure::Null("secret"));
        } else {
            // SAFETY: not NULL, `len` readable bytes (the caller's promise).
            unsafe { std::slice::from_raw_parts(secret, len) }
        };
        c.update(|cfg| Ok(cfg.state_secret(bytes)))
    })
}

/// The back office (`http://…` or `https://…`), for trial registration, online activation and
/// validation at launch.
///
/// # Safety
/// `config` is a live configuration; `url` a string.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_backoffice(
    config: *mut TesseraConfig,
    url: *const c_char,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let url = unsafe { arg_str(url, "url") }?;
        c.update(|cfg| Ok(cfg.backoffice(url)))
    })
}

/// The license servers for floating seats (`count` URLs, tried in order). `TESSERA_SERVER`, when
/// set in the environment, replaces this list.
///
/// # Safety
/// `config` is a live configuration; `urls` NULL (when `count` is 0) or `count` strings.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_servers(
    config: *mut TesseraConfig,
    urls: *const *const c_char,
    count: usize,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let urls = unsafe { arg_strs(urls, count, "urls") }?;
        c.update(|cfg| Ok(cfg.servers(&urls)))
    })
}

/// Also trusts the certificate authorities in this PEM text for HTTPS (a server with a
/// certificate from a private CA). The public roots and the system's store are always trusted.
///
/// Errors: `TESSERA_STATUS_INVALID_CA_CERTIFICATE`.
///
/// # Safety
/// `config` is a live configuration; `pem` a string.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_ca_certs_pem(
    config: *mut TesseraConfig,
    pem: *const c_char,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        // SAFETY: the caller's promise.
        let pem = unsafe { arg_str(pem, "pem") }?;
        c.update(|cfg| Ok(cfg.ca_certs_pem(pem)?))
    })
}

/// How long one network request may take, in milliseconds (default 5000).
///
/// # Safety
/// `config` is a live configuration.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_timeout_ms(
    config: *mut TesseraConfig,
    ms: u64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        c.update(|cfg| Ok(cfg.timeout(StdDuration::from_millis(ms))))
    })
}

/// How long a checkout may take in all, in milliseconds: every server, every retry (default
/// 15000; waiting in line comes on top).
///
/// # Safety
/// `config` is a live configuration.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_checkout_timeout_ms(
    config: *mut TesseraConfig,
    ms: u64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        c.update(|cfg| Ok(cfg.checkout_timeout(StdDuration::from_millis(ms))))
    })
}

fn seconds(s: u64, what: &str) -> Result<Duration, Failure> {
    i64::try_from(s)
        .ok()
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(|| {
            Failure::Invalid(format!(
                "{what} of {s} seconds is too long; give at most 100 years"
            ))
        })
}

/// How long a floating seat still counts as held after its lease ran out while the license
/// server could not be reached, in seconds (default 0).
///
/// # Safety
/// `config` is a live configuration.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_seat_tolerance_seconds(
    config: *mut TesseraConfig,
    seconds_: u64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        let d = seconds(seconds_, "a seat tolerance")?;
        c.update(|cfg| Ok(cfg.seat_tolerance(d)))
    })
}

/// How far the clock may go back before it counts as rolled back, in seconds (default 86400).
///
/// # Safety
/// `config` is a live configuration.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_rollback_tolerance_seconds(
    config: *mut TesseraConfig,
    seconds_: u64,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        let d = seconds(seconds_, "a rollback tolerance")?;
        c.update(|cfg| Ok(cfg.rollback_tolerance(d)))
    })
}

/// How many days before a borrowed seat expires a check renews it when its server can be
/// reached (default 14).
///
/// # Safety
/// `config` is a live configuration.
///
/// Thread safety: one thread at a time per configuration.
#[no_mangle]
pub unsafe extern "C" fn tessera_config_refresh_days(
    config: *mut TesseraConfig,
    days: u32,
) -> TesseraStatus {
    guard(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg_mut(config, "config") }?;
        c.update(|cfg| Ok(cfg.refresh_days(days)))
    })
}
