//! Throw-away databases for tests of this and other crates (feature `testing`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tessera_store::StoreError> {
//! use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
//!
//! let sqlite = TempSqlite::new().await?; // deleted when `sqlite` is dropped
//! // ... use sqlite.store() ...
//!
//! if let Some(base) = postgres_test_url_or_skip("my_test").map_err(|why| {
//!     tessera_store::StoreError::InvalidUrl { detail: why }
//! })? {
//!     let pg = TempPostgres::create(&base).await?;
//!     // ... use pg.store() ...
//!     pg.cleanup().await?; // drops the database: there is no async Drop
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use sqlx::{Connection, Executor, PgConnection};

use crate::sqlite::DATABASE_FILE_NAME;
use crate::{sqlite_url_for_data_dir, Backend, PgStore, SqliteStore, StoreError};

/// The environment variable naming a PostgreSQL server for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`. Any existing database on the server will do:
/// tests create their own next to it.
pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// The PostgreSQL server URL for tests, from [`POSTGRES_URL_VAR`] (`None` if unset or empty).
pub fn postgres_test_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Whether this is a CI run (`CI=true` or `CI=1`), where a PostgreSQL run may not be skipped.
pub fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// The PostgreSQL server URL for the test `test`, or what to do without one:
///
/// * `Ok(Some(url))` when [`POSTGRES_URL_VAR`] is set;
/// * `Ok(None)` when it is not, after printing a line that says the PostgreSQL run of `test`
///   was skipped and why (written straight to stderr, so the test harness does not hide it);
/// * `Err(why)` when it is not set but this is CI ([`is_ci`]): there the run must not be skipped.
pub fn postgres_test_url_or_skip(test: &str) -> Result<Option<String>, String> {
    if let Some(url) = postgres_test_url() {
        return Ok(Some(url));
    }
    if is_ci() {
        return Err(format!(
            "{test}: CI=true but {POSTGRES_URL_VAR} is not set: CI must run the PostgreSQL tests \
             (set it to e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        ));
    }
    // Not through `eprintln!`: the harness captures that for passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: PostgreSQL run skipped: {POSTGRES_URL_VAR} is not set \
         (set it to e.g. postgres://postgres@127.0.0.1:5432/postgres to run it)"
    );
    Ok(None)
}

/// An SQLite store in a fresh temporary directory, deleted when this is dropped.
#[derive(Debug)]
pub struct TempSqlite {
    // Field order matters: the store is dropped before the directory.
    store: SqliteStore,
    url: String,
    dir: tempfile::TempDir,
}

impl TempSqlite {
    /// Creates a temporary directory and opens a new store in it (`DIR/tessera.db`).
    pub async fn new() -> Result<Self, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("tessera-store-test-")
            .tempdir()
            .map_err(|e| StoreError::Connect {
                backend: Backend::Sqlite,
                detail: format!("cannot create a temporary directory: {e}"),
            })?;
        let url = sqlite_url_for_data_dir(dir.path());
        let store = SqliteStore::connect(&url).await?;
        Ok(TempSqlite { store, url, dir })
    }

    /// The store.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The database URL, to open the same file again (e.g. from a server under test).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary directory (the data directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(DATABASE_FILE_NAME)
    }
}

/// A fresh PostgreSQL database (`tessera_test_<random hex>`) on a test server, with a store open
/// on it.
///
/// Call [`TempPostgres::cleanup`] at the end of the test to drop the database: dropping needs
/// async work, which `Drop` cannot do. A `TempPostgres` dropped without cleanup (a failed test)
/// prints the name of the database it leaves behind. [`with_temp_postgres`] does the cleanup
/// even when the test panics.
#[derive(Debug)]
pub struct TempPostgres {
    store: PgStore,
    url: String,
    admin_url: String,
    name: String,
    cleaned_up: bool,
}

impl TempPostgres {
    /// Connects to the server at `base_url` (any database on it that the user may connect to),
    /// creates a uniquely named database next to it, and opens a [`PgStore`] on that (which
    /// applies the migrations).
    pub async fn create(base_url: &str) -> Result<Self, StoreError> {
        let name = format!("tessera_test_{:016x}", rand::random::<u64>());
        let url = with_database(base_url, &name)?;
        let mut admin = admin_connection(base_url).await?;
        let created = admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await;
        let _ = admin.close().await;
        created?;
        let store = match PgStore::connect(&url).await {
            Ok(store) => store,
            Err(e) => {
                let _ = drop_database(base_url, &name).await;
                return Err(e);
            }
        };
        Ok(TempPostgres {
            store,
            url,
            admin_url: base_url.to_owned(),
            name,
            cleaned_up: false,
        })
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The URL of the temporary database, to open it again (e.g. from a server under test).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the temporary database.
    pub fn database_name(&self) -> &str {
        &self.name
    }

    /// Ends every connection to this database but those of the backends in `keep`
    /// (`pg_terminate_backend`), as a database restart or a failover ends them, and waits until
    /// they are gone. Returns how many were ended.
    pub async fn terminate_connections(&self, keep: &[i32]) -> Result<usize, StoreError> {
        let mut admin = admin_connection(&self.admin_url).await?;
        // first the list, then the ends: a condition next to pg_terminate_backend in one query
        // may be evaluated after it, and end connections to other databases
        let found: Vec<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> ALL($2) \
             AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .bind(keep)
        .fetch_all(&mut admin)
        .await?;
        let pids: Vec<i32> = found.iter().map(|p| p.0).collect();
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut admin)
                .await?;
        }
        for _ in 0..1000 {
            let (left,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&pids)
                    .fetch_one(&mut admin)
                    .await?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = admin.close().await;
        Ok(pids.len())
    }

    /// A session of its own that queues for the exclusive advisory lock of the claim `name` (see
    /// [`crate::AnyStore::exclusive`]); returns once it waits for the lock or holds it. When the
    /// holder's connection ends, PostgreSQL hands the lock to this session before anyone who
    /// merely tries to take it: a test can keep a lock lost for as long as it likes.
    pub async fn queue_for_lock(&self, name: &str) -> Result<LockWaiter, StoreError> {
        let mut conn = admin_connection(&self.url).await?;
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        let key = crate::advisory_key(name);
        let task = tokio::spawn(async move {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut conn)
                .await?;
            Ok(conn)
        });
        let mut admin = admin_connection(&self.admin_url).await?;
        for _ in 0..1000 {
            let (queued,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'",
            )
            .bind(pid)
            .fetch_one(&mut admin)
            .await?;
            if queued > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = admin.close().await;
        Ok(LockWaiter { pid, key, task })
    }

    /// Closes the store and drops the database (forcibly closing any connection still open on
    /// it, e.g. from a clone of the store or another store opened on [`TempPostgres::url`]).
    pub async fn cleanup(mut self) -> Result<(), StoreError> {
        self.store.close().await;
        drop_database(&self.admin_url, &self.name).await?;
        self.cleaned_up = true;
        Ok(())
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if !self.cleaned_up {
            let _ = writeln!(
                std::io::stderr(),
                "TempPostgres: database {} was not dropped (no cleanup().await); \
                 drop it with: DROP DATABASE \"{}\" WITH (FORCE)",
                self.name,
                self.name
            );
        }
    }
}

/// A session queued for a claim's advisory lock (see [`TempPostgres::queue_for_lock`]).
#[derive(Debug)]
pub struct LockWaiter {
    pid: i32,
    key: i64,
    task: tokio::task::JoinHandle<Result<PgConnection, StoreError>>,
}

impl LockWaiter {
    /// The backend pid of the session (to keep it when ending the others).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the session holds the lock (at most 30 seconds).
    pub async fn held(self) -> Result<HeldLock, StoreError> {
        let failed = |detail: String| StoreError::Connect {
            backend: Backend::Postgres,
            detail,
        };
        match tokio::time::timeout(std::time::Duration::from_secs(30), self.task).await {
            Ok(Ok(Ok(conn))) => Ok(HeldLock {
                conn,
                key: self.key,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(failed(format!("the waiting session failed: {e}"))),
            Err(_) => Err(failed(
                "the lock was not handed over within 30 seconds".into(),
            )),
        }
    }
}

/// A claim's advisory lock held by a test's own session.
#[derive(Debug)]
pub struct HeldLock {
    conn: PgConnection,
    key: i64,
}

impl HeldLock {
    /// Releases the lock and closes the session.
    pub async fn release(mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await?;
        let _ = self.conn.close().await;
        Ok(())
    }
}

/// Runs `test` with a store on a fresh PostgreSQL database on the server at `base_url`, then
/// drops the database, also when `test` panics (the panic is then resumed).
pub async fn with_temp_postgres<F, Fut>(base_url: &str, test: F) -> Result<(), StoreError>
where
    F: FnOnce(TempPostgresHandle) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let temp = TempPostgres::create(base_url).await?;
    let handle = TempPostgresHandle {
        store: temp.store.clone(),
        url: temp.url.clone(),
    };
    let outcome = tokio::spawn(test(handle)).await;
    temp.cleanup().await?;
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(StoreError::Database(sqlx::Error::Io(
                std::io::Error::other(format!("the test task did not finish: {e}")),
            ))),
        },
    }
}

/// What [`with_temp_postgres`] hands the test: the store and the database URL.
#[derive(Debug, Clone)]
pub struct TempPostgresHandle {
    /// A store open on the temporary database.
    pub store: PgStore,
    /// The URL of the temporary database.
    pub url: String,
}

async fn admin_connection(base_url: &str) -> Result<PgConnection, StoreError> {
    PgConnection::connect(base_url)
        .await
        .map_err(|e| StoreError::Connect {
            backend: Backend::Postgres,
            detail: e.to_string(),
        })
}

async fn drop_database(base_url: &str, name: &str) -> Result<(), StoreError> {
    let mut admin = admin_connection(base_url).await?;
    let dropped = admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await;
    let _ = admin.close().await;
    dropped?;
    Ok(())
}

/// `base_url` with its database (the URL path) replaced by `name`; user, password, host, port
/// and query parameters stay.
fn with_database(base_url: &str, name: &str) -> Result<String, StoreError> {
    let (before_query, query) = match base_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base_url, None),
    };
    let Some(scheme_end) = before_query.find("://").map(|i| i + 3) else {
        return Err(StoreError::InvalidUrl {
            detail: "the PostgreSQL test URL must look like postgres://user@host:port/db"
                .to_owned(),
        });
    };
    let (scheme, rest) = before_query.split_at(scheme_end);
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut url = format!("{scheme}{authority}/{name}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test", "x").unwrap(),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgresql://h", "x").unwrap(),
            "postgresql://h/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
        assert!(with_database("h/db", "x").is_err());
    }
}
