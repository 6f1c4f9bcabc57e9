//! # tessera-store
//!
//! Persistence for Tessera: embedded migrations and typed queries for **SQLite** (the default: one
//! file in the data directory) and **PostgreSQL**, behind small async traits that services are
//! generic over.
//!
//! * [`open`] picks the backend from the URL scheme (`sqlite://PATH`, `sqlite:PATH`,
//!   `postgres://…`, `postgresql://…`), connects, and applies the embedded migrations. The result
//!   is an [`AnyStore`]; [`SqliteStore`] and [`PgStore`] can also be opened directly.
//! * One trait per concern: [`MetaStore`], [`KeyStore`], [`LicenseStore`],
//!   [`ActivationKeyStore`], [`AuthStore`] (users, API tokens, browser sessions of both services),
//!   [`AuditStore`] (the license server's audit log), [`ClientKeyStore`] (its client keys and
//!   trusted producer keys), [`LeaseStore`], [`ServerStateStore`] and
//!   [`UsageEventStore`] (a seat engine's leases, a license server's own state, and the denials and
//!   overdraft use it recorded, per [`InstanceId`]), [`UsageHistoryStore`] (seats used over time,
//!   per minute, hour and day), …;
//!   [`Store`] is all of them. Services take `S: Store`.
//! * Times are [`time::OffsetDateTime`] stored as whole unix seconds (sub-second parts are
//!   dropped), so both backends hold exactly the same values.
//!
//! ## Adding a table
//!
//! Add a migration with the same version number to both `migrations/sqlite/` and
//! `migrations/postgres/` (a unit test checks that the two lists match), then a module with the
//! trait, its records, and one `macro_rules!` that writes the impl once for both pool types (see
//! [`meta`] for the pattern), plus the [`AnyStore`] delegation. The SQL is shared: `$1`
//! placeholders, `ON CONFLICT`, `RETURNING` and `BIGINT`/`INTEGER` columns read as `i64` work on
//! both. Add the trait to [`Store`] and the story to `tests/conformance.rs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fmt;

pub mod activation_keys;
pub mod audit;
pub mod auth;
pub mod backoffice;
pub mod claim;
pub mod client_keys;
mod codec;
pub mod error;
pub mod keys;
pub mod leases;
pub mod licenses;
pub mod meta;
mod migrate;
pub mod outbox;
pub mod postgres;
pub mod seat_policy;
pub mod server_state;
pub mod sqlite;
pub mod sqlite_writer;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage_events;
pub mod usage_history;

pub use activation_keys::{ActivationKeyRecord, ActivationKeyStore, NewActivationKey};
pub use audit::{AuditEntry, AuditStore, NewAuditEntry};
pub use auth::{AuthStore, SessionRecord, TokenRecord, UserRecord};
pub use backoffice::BackOfficeStore;
pub use claim::{advisory_key, ClaimMode, ClaimStatus, ExclusiveGuard, CLAIM_CHECK_INTERVAL};
pub use client_keys::{ClientKeyRecord, ClientKeyStore, KeyRemoval, TrustedKeyRecord};
pub use error::{StoreError, ACCEPTED_URLS};
pub use keys::{KeyStore, PublicKeyRecord};
pub use leases::{CatchUp, EngineState, InstanceId, LeaseChange, LeaseRow, LeaseStore};
pub use licenses::{IssuedLicense, LicenseStore, Page};
pub use meta::MetaStore;
pub use outbox::{NewOutboxMessage, OutboxFilter, OutboxKind, OutboxMessage, OutboxStore};
pub use postgres::PgStore;
pub use seat_policy::{PolicyDocument, PolicyKind, SeatPolicyStore};
pub use server_state::{ServerState, ServerStateStore};
pub use sqlite::{sqlite_url_for_data_dir, SqliteStore};
pub use sqlite_writer::SqliteLeaseWriter;
pub use usage_events::{
    StoredUsageEvent, UsageEvent, UsageEventFilter, UsageEventKind, UsageEventStore,
};
pub use usage_history::{Resolution, UsageHistoryStore, UsageSample};

/// Everything a Tessera service needs from storage. Implemented by every type that implements
/// all the store traits; services are generic over `S: Store`.
pub trait Store:
    MetaStore
    + KeyStore
    + LicenseStore
    + ActivationKeyStore
    + BackOfficeStore
    + AuthStore
    + AuditStore
    + LeaseStore
    + ServerStateStore
    + UsageEventStore
    + UsageHistoryStore
    + SeatPolicyStore
    + ClientKeyStore
    + OutboxStore
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: MetaStore
        + KeyStore
        + LicenseStore
        + ActivationKeyStore
        + BackOfficeStore
        + AuthStore
        + AuditStore
        + LeaseStore
        + ServerStateStore
        + UsageEventStore
        + UsageHistoryStore
        + SeatPolicyStore
        + ClientKeyStore
        + OutboxStore
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// An SQLite file (or an in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// A short lower-case name: `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A store on whichever backend the URL named. Implements every store trait by delegation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// An SQLite store.
    Sqlite(SqliteStore),
    /// A PostgreSQL store.
    Postgres(PgStore),
}

impl AnyStore {
    /// Closes every pooled connection (for SQLite this also checkpoints the WAL). Calls made
    /// afterwards fail.
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

impl AnyStore {
    /// Claims `name` for this process alone on a PostgreSQL store: a session advisory lock held
    /// on a dedicated connection that is watched, and taken again when it is lost (see
    /// [`claim`]); `None` when another process holds it. On SQLite the data directory's lock file
    /// does this job, so this always succeeds.
    pub async fn exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        self.claim(name, ClaimMode::Exclusive, CLAIM_CHECK_INTERVAL)
            .await
    }

    /// Claims `name` together with other processes that claim it shared (a cluster's members),
    /// but never together with one that claims it exclusively; `None` when one does.
    pub async fn shared(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        self.claim(name, ClaimMode::Shared, CLAIM_CHECK_INTERVAL)
            .await
    }

    /// [`AnyStore::exclusive`] or [`AnyStore::shared`], with the connection holding the lock
    /// checked every `every`.
    pub async fn claim(
        &self,
        name: &str,
        mode: ClaimMode,
        every: std::time::Duration,
    ) -> Result<Option<ExclusiveGuard>, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(Some(ExclusiveGuard::none())),
            AnyStore::Postgres(s) => s.claim(name, mode, every).await,
        }
    }

    /// Whether this process holds its claim on the store (always [`ClaimStatus::Unclaimed`] on
    /// SQLite).
    pub fn claim_status(&self) -> ClaimStatus {
        match self {
            AnyStore::Sqlite(_) => ClaimStatus::Unclaimed,
            AnyStore::Postgres(s) => s.claim_status(),
        }
    }

    /// Before a decision: `Err` ([`StoreError::LockLost`]) while this process's claim is lost;
    /// `Ok(true)` once after it was taken again, when what was read before may be stale (another
    /// process may have written meanwhile): read it again.
    pub fn claim_check(&self) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(false),
            AnyStore::Postgres(s) => s.claim_check(),
        }
    }

    /// Whether the database answers (`SELECT 1` on a pooled connection).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => {
                sqlx::query("SELECT 1").execute(&s.pool).await?;
            }
            AnyStore::Postgres(s) => {
                sqlx::query("SELECT 1").execute(&s.pool).await?;
            }
        }
        Ok(())
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        AnyStore::Sqlite(s)
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        AnyStore::Postgres(s)
    }
}

/// Runs `$body` with `$s` bound to the concrete store inside an [`AnyStore`].
macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            $crate::AnyStore::Sqlite($s) => $body,
            $crate::AnyStore::Postgres($s) => $body,
        }
    };
}
pub(crate) use dispatch;

/// Opens the store a database URL names, creating the schema or bringing it up to date.
///
/// * `sqlite://PATH` or `sqlite:PATH` (`sqlite:///abs/path.db`, `sqlite://relative.db`,
///   `sqlite::memory:`): the file is created if its directory exists (first start); a missing
///   directory is [`StoreError::MissingDirectory`]. WAL mode, foreign keys on, a busy timeout.
/// * `postgres://…` or `postgresql://…`: the database must exist.
///
/// Anything else — a bare path, `mysql://`, a typo like `sqllite://` — is
/// [`StoreError::UnknownScheme`], and nothing is created. A database that has a migration this
/// binary does not know is [`StoreError::NewerSchema`].
#[tracing::instrument(skip_all)]
pub async fn open(url: &str) -> Result<AnyStore, StoreError> {
    match backend_for_url(url)? {
        Backend::Sqlite => Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?)),
        Backend::Postgres => Ok(AnyStore::Postgres(PgStore::connect(url).await?)),
    }
}

/// Which backend a database URL names, without touching anything.
pub fn backend_for_url(url: &str) -> Result<Backend, StoreError> {
    let scheme = url_scheme(url);
    match scheme {
        "sqlite" => Ok(Backend::Sqlite),
        "postgres" | "postgresql" => {
            if url[scheme.len()..].starts_with("://") {
                Ok(Backend::Postgres)
            } else {
                Err(StoreError::InvalidUrl {
                    detail: format!("a PostgreSQL URL starts with {scheme}://"),
                })
            }
        }
        other => Err(StoreError::UnknownScheme {
            url_scheme: other.to_owned(),
            did_you_mean: did_you_mean(other),
        }),
    }
}

/// The scheme of a URL: the text before the first `:` if it is a well-formed scheme, else "".
/// Never more than that, so an error message cannot carry a user name or password.
fn url_scheme(url: &str) -> &str {
    let Some((scheme, _)) = url.split_once(':') else {
        return "";
    };
    let well_formed = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.len() <= 32;
    if well_formed {
        scheme
    } else {
        ""
    }
}

/// The accepted scheme a mistyped one is closest to, if it is close.
fn did_you_mean(scheme: &str) -> Option<&'static str> {
    if scheme.is_empty() {
        return Some("sqlite://");
    }
    let lower = scheme.to_ascii_lowercase();
    if matches!(lower.as_str(), "pg" | "psql" | "pgsql") {
        return Some("postgres://");
    }
    [
        ("sqlite", "sqlite://"),
        ("postgres", "postgres://"),
        ("postgresql", "postgresql://"),
    ]
    .into_iter()
    .map(|(name, url)| (edit_distance(&lower, name), url))
    .filter(|(d, _)| *d <= 2)
    .min_by_key(|(d, _)| *d)
    .map(|(_, url)| url)
}

/// Levenshtein distance over bytes (schemes are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme_error(url: &str) -> (String, Option<&'static str>) {
        match backend_for_url(url) {
            Err(StoreError::UnknownScheme {
                url_scheme,
                did_you_mean,
            }) => (url_scheme, did_you_mean),
            other => panic!("{url}: expected UnknownScheme, got {other:?}"),
        }
    }

    #[test]
    fn known_schemes() {
        assert_eq!(
            backend_for_url("sqlite:///x/y.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(backend_for_url("sqlite:y.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_for_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(
            backend_for_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            backend_for_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(matches!(
            backend_for_url("postgres:db"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn unknown_schemes_suggest_the_close_one() {
        assert_eq!(
            scheme_error("sqllite:///x.db"),
            ("sqllite".into(), Some("sqlite://"))
        );
        assert_eq!(
            scheme_error("sqlite3:///x.db"),
            ("sqlite3".into(), Some("sqlite://"))
        );
        assert_eq!(
            scheme_error("SQLITE:///x.db"),
            ("SQLITE".into(), Some("sqlite://"))
        );
        assert_eq!(
            scheme_error("postgre://h/db"),
            ("postgre".into(), Some("postgres://"))
        );
        assert_eq!(
            scheme_error("pg://h/db"),
            ("pg".into(), Some("postgres://"))
        );
        assert_eq!(scheme_error("mysql://h/db"), ("mysql".into(), None));
        assert_eq!(
            scheme_error("/var/lib/tessera.db"),
            ("".into(), Some("sqlite://"))
        );
        assert_eq!(scheme_error(""), ("".into(), Some("sqlite://")));
    }

    #[test]
    fn scheme_never_carries_credentials() {
        let (scheme, _) = scheme_error("postgres//admin:hunter2@db/x");
        assert_eq!(scheme, "");
        let err = backend_for_url("postgres//admin:hunter2@db/x").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn unknown_scheme_message_lists_accepted_schemes() {
        let msg = backend_for_url("mysql://h/db").unwrap_err().to_string();
        for s in [
            "sqlite://",
            "sqlite:PATH",
            "postgres://",
            "postgresql://",
            "\"mysql:\"",
        ] {
            assert!(msg.contains(s), "{msg}");
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("sqlite", "sqlite"), 0);
        assert_eq!(edit_distance("sqllite", "sqlite"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
