//! # tessera-server
//!
//! The license server (`tessera server`): activated into by the back office, it keeps the licenses in
//! trusted storage bound to its host id and serves seats to applications as leases through signed
//! capability responses.
//!
//! Built so far: trusted storage (host-id binding and restore detection), online activation, the
//! capability protocol (request, preview, renew, return, borrow) over the core's seat book, with
//! every decision stored before it is answered. Still to come: group commit, offline files, periodic
//! sync, the crash and scale-out tests, and the throughput benchmark.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod daemon;
pub mod engine;
pub mod http;
pub mod openapi;
