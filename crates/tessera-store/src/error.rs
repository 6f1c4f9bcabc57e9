//! [`StoreError`]: everything a store can report, each case with enough words to act on.

use std::path::PathBuf;

use crate::Backend;

/// The URL forms [`open`](crate::open) accepts, as shown in error messages.
pub const ACCEPTED_URLS: &str = "sqlite://PATH, sqlite:PATH, postgres://… or postgresql://…";

/// An error from opening or using a store.
///
/// Messages never contain a database URL (it may carry a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL does not start with a scheme this build understands. Nothing was created.
    #[error("{}", unknown_scheme_message(.url_scheme, *.did_you_mean))]
    UnknownScheme {
        /// The scheme found before the first `:` (empty when the URL has none, e.g. a bare path).
        url_scheme: String,
        /// The accepted scheme the given one looks like a typo of, if any (e.g. `sqlite://`).
        did_you_mean: Option<&'static str>,
    },

    /// The URL has a known scheme but cannot be used as it is (e.g. an empty SQLite path).
    #[error("invalid database URL: {detail}")]
    InvalidUrl {
        /// What is wrong with it.
        detail: String,
    },

    /// The directory that should hold the SQLite file does not exist (or is not a directory).
    /// The store creates the file on first start but never a directory: a missing one is more
    /// likely a mistyped path than a wish.
    #[error(
        "the directory {} for the SQLite database does not exist or is not a directory: \
         create it or choose another data directory",
        .path.display()
    )]
    MissingDirectory {
        /// The directory that was expected.
        path: PathBuf,
    },

    /// The database could not be reached or opened.
    #[error("cannot open the {backend} database: {detail}; {}", .backend.connect_hint())]
    Connect {
        /// Which backend was being opened.
        backend: Backend,
        /// What the driver said.
        detail: String,
    },

    /// Applying the embedded schema migrations failed.
    #[error("cannot bring the database schema up to date: {detail}")]
    Migrate {
        /// What failed.
        detail: String,
    },

    /// The database has a schema migration applied that this binary does not know: it was
    /// written by a newer Tessera. Nothing was changed.
    #[error(
        "the database was written by a newer Tessera (it has schema migration {applied_version}, \
         this Tessera knows migrations up to {known_version}): upgrade Tessera, or restore a \
         backup made by this version"
    )]
    NewerSchema {
        /// The unknown migration version found in the database.
        applied_version: i64,
        /// The newest migration version this binary embeds.
        known_version: i64,
    },

    /// The row to insert already exists (or exists with different content).
    #[error("{what} already exists")]
    Conflict {
        /// What collided, e.g. `license "L-1"`.
        what: String,
    },

    /// The row to change does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `public key "k1"`.
        what: String,
    },

    /// A stored value does not parse (an invalid key hash, a time out of range, a missing row
    /// that the schema guarantees).
    #[error("stored data is corrupt: {detail}")]
    Corrupt {
        /// Which value, and why it does not parse.
        detail: String,
    },

    /// The operation needs another backend (e.g. several license servers over one database need
    /// PostgreSQL).
    #[error("{detail}")]
    Unsupported {
        /// What, and what to use instead.
        detail: String,
    },

    /// A write through the license server's writer connection failed.
    #[error("cannot write to the database: {detail}")]
    Write {
        /// What SQLite said.
        detail: String,
    },

    /// A read through a connection of its own (the license server reads its leases so at start)
    /// failed: the file could not be read, or stayed locked past the busy timeout.
    #[error("cannot read from the database: {detail}")]
    Read {
        /// What SQLite said.
        detail: String,
    },

    /// This process no longer holds its claim on the database (the connection holding its lock
    /// was lost, or another process took the lock over): nothing was committed.
    #[error("this license server process does not hold the database lock: {detail}")]
    LockLost {
        /// Why, and what is being done about it.
        detail: String,
    },

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`] naming `what`, and any
    /// other error as [`From`] does.
    pub(crate) fn unique_as_conflict(err: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        if is_unique_violation(&err) {
            StoreError::Conflict { what: what() }
        } else {
            StoreError::from(err)
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// Unique-constraint violations become [`StoreError::Conflict`] (on both backends), everything
    /// else [`StoreError::Database`].
    fn from(err: sqlx::Error) -> Self {
        if is_unique_violation(&err) {
            let what = match &err {
                sqlx::Error::Database(db) => match db.constraint() {
                    Some(c) => format!("a row with the same key (constraint {c})"),
                    None => "a row with the same key".to_owned(),
                },
                _ => "a row with the same key".to_owned(),
            };
            StoreError::Conflict { what }
        } else {
            StoreError::Database(err)
        }
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn unknown_scheme_message(url_scheme: &str, did_you_mean: Option<&str>) -> String {
    let mut msg = if url_scheme.is_empty() {
        format!("the database URL has no scheme; use {ACCEPTED_URLS}")
    } else {
        format!("unknown database URL scheme \"{url_scheme}:\"; use {ACCEPTED_URLS}")
    };
    if let Some(s) = did_you_mean {
        msg.push_str(&format!(" (did you mean \"{s}\"?)"));
    }
    msg
}

impl Backend {
    /// What to check when this backend cannot be opened.
    fn connect_hint(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "check that the path names a file (not a directory) that this user may read and \
                 write, and that it is an SQLite database"
            }
            Backend::Postgres => {
                "check that the PostgreSQL server is running and reachable at the host and port in \
                 the URL, and that the user, password and database name in it are right"
            }
        }
    }
}
