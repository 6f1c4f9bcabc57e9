//! Why the server cannot start or act: one typed error that callers (the CLI, the HTTP layer) match
//! on by variant, never by its text.

use std::path::Path;

/// Why the server cannot start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Not initialised.
    #[error("{0} is not a license server data directory: run `tessera server init --data {0} --producer-key producer.pub` first")]
    NotInitialised(String),
    /// Already initialised.
    #[error("{0} already holds a license server")]
    AlreadyInitialised(String),
    /// The storage belongs to another host.
    #[error("this storage belongs to license server {stored}, but this server is {current}: it was copied from another server. Refusing to serve (it could double seats). Activate this server afresh with its own data directory")]
    CopiedStorage {
        /// The host id in the storage.
        stored: String,
        /// This server's host id.
        current: String,
    },
    /// An older copy of the storage was restored.
    #[error("the storage is older than the last one this server used (its mark is {stored}, the server had reached {seen}): an older copy was restored. Refusing to serve (leases granted since could be granted twice). Restore the latest copy, or remove {marker} (and DATA/anchor) to accept this one and re-validate with the back office (`tessera server sync`)")]
    RestoredOlderCopy {
        /// Anchor and commit sequence in the store (`ANCHOR.SEQUENCE`).
        stored: String,
        /// The mark seen before.
        seen: String,
        /// The anchor file.
        marker: String,
    },
    /// The storage is bound to another machine: it was copied or restored there.
    #[error("this license server's storage is bound to the machine with host ids {bound}, but this machine is {current}: it was copied or restored onto another machine. Refusing to serve (both copies could grant the same seats). If this machine replaces that one, re-validate with the back office: `tessera server rebind --data {data}` (online), or `tessera server rebind --data {data} --response FILE` with a fresh offline response")]
    OtherMachine {
        /// The host ids the storage is bound to.
        bound: String,
        /// This machine's host ids.
        current: String,
        /// The data directory.
        data: String,
    },
    /// The store was changed by hand: its license bundle or its leases no longer verify.
    #[error("{0}")]
    EditedStorage(String),
    /// A file problem.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What happened.
        detail: String,
    },
    /// The configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tessera_store::StoreError),
    /// Another server process runs on this data directory (it holds the directory's lock file).
    #[error("another license server process is running on {data}: stop it first")]
    Running {
        /// The data directory.
        data: String,
    },
    /// Another server process serves this database (it holds the database's lock).
    #[error("{}", if *cluster {
        "a license server process without `cluster = true` serves this database: stop it, or set `cluster = true` (and the same `hostid`) in its server.toml too"
    } else {
        "another license server process serves this database: stop it first, or set `cluster = true` (and the same `hostid`) in the server.toml of every process sharing it"
    })]
    DatabaseInUse {
        /// Whether this process is a member of a cluster (and the other one is not).
        cluster: bool,
    },
    /// A document could not be signed with the server's key: a fault inside the server.
    #[error("a document could not be signed: {0}")]
    Sign(#[from] tessera_core::document::SignError),
    /// The back office refused or could not be reached, or what it sent (online or as an offline
    /// response file) is not valid for this server.
    #[error(transparent)]
    BackOffice(#[from] crate::link::LinkError),
}

/// A file problem at `p`.
pub(crate) fn file_err(p: &Path, e: impl std::fmt::Display) -> ServerError {
    ServerError::File {
        path: p.display().to_string(),
        detail: e.to_string(),
    }
}

/// Writes a file atomically with `mode`.
pub(crate) fn write(p: &Path, content: &[u8], mode: u32) -> Result<(), ServerError> {
    tessera_host::write_atomic(p, content, mode).map_err(|e| file_err(p, e))
}
