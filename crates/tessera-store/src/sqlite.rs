//! The SQLite backend: one file in the data directory, the default.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{migrate, Backend, StoreError};

/// The file name of the database in a data directory.
pub const DATABASE_FILE_NAME: &str = "tessera.db";

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool. SQLite has one writer at a time; more connections serve readers
/// (WAL mode lets them read while a write is in progress).
const MAX_CONNECTIONS: u32 = 8;

/// The default database URL for a data directory: `sqlite://DIR/tessera.db`.
///
/// `%`, `?` and `#` in the path are percent-encoded so the URL reads back as the same path. A
/// path that is not valid UTF-8 is converted lossily.
pub fn sqlite_url_for_data_dir(dir: &Path) -> String {
    let path = dir.join(DATABASE_FILE_NAME);
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    url
}

/// A store in an SQLite database: WAL journal, `synchronous = FULL` (a committed transaction
/// survives a power cut), foreign keys enforced, a [`BUSY_TIMEOUT`] on locks.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The database lives in memory (no other connection can open it).
    pub(crate) in_memory: bool,
}

impl SqliteStore {
    /// Opens (creating the file if its directory exists) the database at an `sqlite:` URL and
    /// applies the embedded migrations. See [`open`](crate::open) for the accepted forms.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let in_memory = match crate::backend_for_url(url)? {
            Backend::Sqlite => check_location(url).await?,
            _ => {
                return Err(StoreError::InvalidUrl {
                    detail: "an SQLite URL starts with sqlite:// or sqlite:".to_owned(),
                })
            }
        };
        let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            detail: e.to_string(),
        })?;
        if !in_memory {
            make_private(options.get_filename()).map_err(|e| StoreError::Connect {
                backend: Backend::Sqlite,
                detail: format!(
                    "cannot make {} private to this user: {e}",
                    options.get_filename().display()
                ),
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool_options = if in_memory {
            // An in-memory database lives as long as its last connection: keep exactly one.
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connect {
                backend: Backend::Sqlite,
                detail: e.to_string(),
            })?;
        if let Err(err) = migrate::run_sqlite(&pool).await {
            pool.close().await;
            return Err(migrate::error(err, &migrate::SQLITE));
        }
        tracing::debug!(in_memory, "opened SQLite store");
        Ok(SqliteStore { pool, in_memory })
    }

    /// The underlying connection pool, for diagnostics and tests. Services should use the store
    /// traits.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection; the last one checkpoints the WAL into the database file. Calls
    /// made afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file readable by this user only (0600, whatever the umask) and makes an
/// existing one, its write-ahead log and shared-memory index private too. SQLite creates its `-wal`
/// and `-shm` files with the database file's mode, so they stay private.
fn make_private(file: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
        {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Checks that the file of an `sqlite:` URL can be created: its directory must exist. Returns
/// whether the URL names an in-memory database (which has no directory).
async fn check_location(url: &str) -> Result<bool, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = match rest.split_once('?') {
        Some((d, p)) => (d, p),
        None => (rest, ""),
    };
    if database == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
        return Ok(true);
    }
    if database.is_empty() {
        return Err(StoreError::InvalidUrl {
            detail: "the SQLite URL names no file; write sqlite://PATH".to_owned(),
        });
    }
    // Parse as sqlx will (it percent-decodes the path) so we check the same directory.
    let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
        detail: e.to_string(),
    })?;
    let file = options.get_filename();
    let dir: PathBuf = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match tokio::fs::metadata(&dir).await {
        Ok(meta) if meta.is_dir() => Ok(false),
        _ => Err(StoreError::MissingDirectory { path: dir }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_url() {
        assert_eq!(
            sqlite_url_for_data_dir(Path::new("/var/lib/tessera")),
            "sqlite:///var/lib/tessera/tessera.db"
        );
        assert_eq!(
            sqlite_url_for_data_dir(Path::new("data")),
            "sqlite://data/tessera.db"
        );
        let odd = sqlite_url_for_data_dir(Path::new("/tmp/a?b%c #d"));
        let parsed = SqliteConnectOptions::from_str(&odd).unwrap();
        assert_eq!(parsed.get_filename(), Path::new("/tmp/a?b%c #d/tessera.db"));
    }
}
