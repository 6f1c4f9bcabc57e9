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

//! A request's path through the crate: [`http`] (capability, admin and operations endpoints, and
//! the one mapping from errors to problems) → [`engine`] (decide, persist, sign) over the state
//! that [`server`] opened: [`config`] (`server.toml`), [`trust`] (trusted storage: anchors,
//! machine binding, the data directory's lock), [`bundle`] (the license bundle served and its
//! borrow policy), [`link`] (the back office: online activation, sync, offline files) and
//! [`tasks`] (scheduled work the server runs beside serving: the sweep, the daily sync).

pub mod bundle;
pub mod client_keys;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod http;
pub mod link;
pub mod openapi;
pub mod properties;
pub mod seat_policy;
pub mod server;
pub mod tasks;
pub mod token;
pub mod trust;
mod ui;

pub use config::{load_config, Config, DEFAULT_LISTEN};
pub use error::ServerError;
pub use link::LinkError;
pub use server::{
    init, open, open_for_rebind, serve_on, serve_tls_on, Initialised, ServedCertificate, Server,
};
pub use token::{rotate_admin_token, set_user_password};
pub use trust::accept_storage;
