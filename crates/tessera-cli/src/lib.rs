//! tessera-cli
