//! Time as a parameter.
//!
//! Nothing in `tessera-core` reads the system clock (clippy's `disallowed-methods` enforces it). Code
//! that needs "now" takes an `OffsetDateTime` argument; services hold a [`Clock`] and read it once at
//! the edge of each request. Tests use a [`ManualClock`] to jump to day 61 of a 60-day trial without
//! sleeping. The wall clock lives in `tessera-host::SystemClock`.

use std::fmt;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock to `t` (backwards too, to test clock-rollback detection).
    pub fn set(&self, t: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Moves the clock by `d`.
    pub fn advance(&self, d: Duration) {
        let mut g = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(datetime!(2026-01-01 0:00 UTC));
        assert_eq!(c.now(), datetime!(2026-01-01 0:00 UTC));
        c.advance(Duration::days(61));
        assert_eq!(c.now(), datetime!(2026-03-03 0:00 UTC));
        c.set(datetime!(2025-12-25 0:00 UTC));
        assert_eq!(c.now(), datetime!(2025-12-25 0:00 UTC));
    }
}
