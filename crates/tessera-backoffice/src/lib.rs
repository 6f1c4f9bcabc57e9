//! tessera-backoffice
