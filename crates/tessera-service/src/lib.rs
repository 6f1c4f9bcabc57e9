//! # tessera-service
//!
//! The service toolkit: what the back office and the license server both need around their own
//! handlers, written once.
//!
//! * [`problem`]: errors as `application/problem+json` (RFC 9457) with a stable `code`, and body
//!   extractors whose rejections are problems too.
//! * [`serve`]: HTTP/1.1 serving, plain or TLS, with timeouts, a connection limit and a graceful
//!   stop (from `tessera-host`, which owns the edge to the operating system).
//! * [`rate`]: token buckets per client address, the caller's address as an extractor.
//! * [`metrics`]: request counters by route and status, and the Prometheus text format.
//! * [`trace`]: a span per request named by its matched route (low cardinality).
//! * [`auth`]: users with roles, argon2id passwords (hashed a few at a time, logins throttled),
//!   API tokens, browser sessions with CSRF protection, over
//!   [`tessera_store::AuthStore`].
//!
//! Each service keeps its own words: the toolkit's errors are typed, and a service maps them to the
//! answers (and hints) its users see.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod metrics;
pub mod problem;
pub mod rate;
pub mod trace;

/// Serving HTTP: `tessera_host::serve` (listeners, TLS, limits, shutdown, the OpenAPI problem
/// answers), re-exported so a service needs one toolkit.
pub mod serve {
    pub use tessera_host::serve::*;
}

pub use problem::{ApiError, ApiForm, ApiJson, ApiQuery, Problem, TextBody};
pub use rate::{ClientIp, RateLimiter};
