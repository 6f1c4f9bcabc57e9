//! Shared test support.
pub mod smtp;
