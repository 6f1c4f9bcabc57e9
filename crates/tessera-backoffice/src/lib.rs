//! # tessera-backoffice
//!
//! The producer's side of Tessera (`tessera backoffice`): products and features, customers,
//! entitlements and their activation keys, activation online, offline and by unlock code, trials,
//! demo keys, renewal and usage reports, and the outbox that delivers mail and webhooks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod daemon;
pub mod http;
pub mod model;
pub mod outbox;
pub mod service;
