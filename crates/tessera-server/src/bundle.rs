//! The license bundle the server serves: its feature records, and the borrow policy it carries as
//! the administrator may narrow it.

use tessera_core::feature::Feature;
use tessera_core::{HostId, Keyring, License};

use crate::config::Config;
use crate::engine::Engine;

/// The producer's offline policy as the administrator may narrow it: each of `max_borrow_days`
/// and `max_borrows_per_account` in server.toml is taken only when it is lower than the producer's
/// (from the license bundle, else the defaults, 7 days and 3 seats); a higher one is ignored with a
/// warning. Returns (days, seats per account).
pub fn borrow_limits(config: &Config, producer: Option<(u32, u32)>) -> (u32, u32) {
    let (days, seats) = producer.unwrap_or((7, 3));
    let narrow = |mine: Option<u32>, theirs: u32, what: &str| match mine {
        Some(m) if m > theirs => {
            tracing::warn!(
                "server.toml sets {what} = {m}, above the producer's {theirs}: the administrator may only lower it; using {theirs}"
            );
            theirs
        }
        Some(m) => m,
        None => theirs,
    };
    (
        narrow(config.max_borrow_days, days, "max_borrow_days"),
        narrow(
            config.max_borrows_per_account,
            seats,
            "max_borrows_per_account",
        ),
    )
}

/// The feature records of the stored license bundle, if it verifies for this server now (signed
/// by one of the trusted producer keys).
pub(crate) fn bundle_records(
    text: Option<&str>,
    producers: &Keyring,
    host: &HostId,
    now: tessera_core::time::OffsetDateTime,
) -> Vec<Feature> {
    text.and_then(|t| License::verify(t, producers, now, std::slice::from_ref(host)).ok())
        .map(|l| l.features().to_vec())
        .unwrap_or_default()
}

/// The settings the producer locked in the stored license bundle, if it verifies for this
/// server now (none otherwise).
pub(crate) fn producer_locks(
    text: Option<&str>,
    producers: &Keyring,
    host: &HostId,
    now: tessera_core::time::OffsetDateTime,
) -> std::collections::BTreeMap<String, tessera_core::license::LockedValue> {
    text.and_then(|t| License::verify(t, producers, now, std::slice::from_ref(host)).ok())
        .and_then(|l| l.claims().policy.clone())
        .map(|p| p.server_locks)
        .unwrap_or_default()
}

/// Sets the engine's borrow limits: the administrator's, else the producer's offline policy from
/// the bundle.
pub(crate) fn apply_borrow_policy(
    engine: &Engine,
    config: &Config,
    license: Option<&str>,
    producers: &Keyring,
    host: &HostId,
    now: tessera_core::time::OffsetDateTime,
) {
    let policy = license
        .and_then(|t| License::verify(t, producers, now, std::slice::from_ref(host)).ok())
        .and_then(|l| l.claims().policy.clone());
    let (days, active) = borrow_limits(
        config,
        policy.map(|p| (p.offline_max_days, p.offline_max_active)),
    );
    engine.set_borrow_limits(days, active);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(extra).unwrap()
    }

    #[test]
    fn server_toml_only_narrows_the_producers_offline_policy() {
        let producer = Some((2, 3));
        assert_eq!(borrow_limits(&config(""), producer), (2, 3));
        assert_eq!(
            borrow_limits(
                &config("max_borrow_days = 25\nmax_borrows_per_account = 6"),
                producer
            ),
            (2, 3),
            "higher values are ignored"
        );
        assert_eq!(
            borrow_limits(
                &config("max_borrow_days = 1\nmax_borrows_per_account = 2"),
                producer
            ),
            (1, 2),
            "lower ones apply"
        );
        // a bundle without a policy: the defaults are the ceiling
        assert_eq!(borrow_limits(&config("max_borrow_days = 25"), None), (7, 3));
        assert_eq!(borrow_limits(&config("max_borrow_days = 5"), None), (5, 3));
    }
}
