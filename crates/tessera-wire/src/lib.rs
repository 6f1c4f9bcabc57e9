//! # tessera-wire
//!
//! What crosses the wire between Tessera's programs, as serde types that both sides use: the
//! license server, the back office, the client library and the `tessera` command line. Nothing
//! that goes over HTTP between them is written or read as hand-built JSON.
//!
//! - [`capability`]: the capability request an application sends to a license server, and the
//!   answer envelope around the signed response.
//! - [`admin`]: the license server's admin API (status, online and offline activation, sync).
//! - [`activation`]: what the back office takes and answers to license servers and devices
//!   (activation, trials, usage reports and the renewal they get).
//! - [`signing`]: the header a client signs its capability requests with.
//! - [`problem`]: the body of every error answer (RFC 9457 `application/problem+json`), and
//!   [`ErrorAnswer`], how a caller reads one.
//!
//! With the `openapi` feature the types derive their OpenAPI schemas (utoipa), for the services
//! that document them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod activation;
pub mod admin;
pub mod capability;
pub mod problem;
pub mod signing;
pub mod views;

pub use activation::KeyCount;
pub use problem::{ErrorAnswer, Problem};
