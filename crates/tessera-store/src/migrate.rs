//! The embedded migrations of both backends, and how their failures are reported.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{PgConnection, SqlitePool};

use crate::StoreError;

/// `migrations/sqlite/`, embedded at build time.
pub(crate) static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// `migrations/postgres/`, embedded at build time.
pub(crate) static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// Applies the SQLite migrations on one connection of the pool.
pub(crate) async fn run_sqlite(pool: &SqlitePool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    SQLITE.run_direct(&mut *conn).await
}

/// Applies the PostgreSQL migrations (under PostgreSQL's advisory lock, so replicas starting
/// together do not race).
///
/// `Migrator::run` is generic over `Acquire<'a>`, and a future that awaits it cannot be proven
/// `Send` inside `tokio::spawn` ("implementation of `Acquire` is not general enough", a known
/// compiler limitation with higher-ranked lifetimes). `run_direct` on a concrete connection is
/// sqlx's own way around that.
pub(crate) async fn run_postgres(conn: &mut PgConnection) -> Result<(), MigrateError> {
    POSTGRES.run_direct(conn).await
}

/// The newest migration version a migrator knows.
pub(crate) fn latest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Turns a migration failure into a [`StoreError`]: an applied migration we do not have means the
/// database was written by a newer Tessera.
pub(crate) fn error(err: MigrateError, migrator: &Migrator) -> StoreError {
    match err {
        MigrateError::VersionMissing(applied_version) => StoreError::NewerSchema {
            applied_version,
            known_version: latest_version(migrator),
        },
        MigrateError::VersionMismatch(version) => StoreError::Migrate {
            detail: format!(
                "migration {version} in the database differs from the one in this Tessera \
                 (a migration was edited after it was applied)"
            ),
        },
        MigrateError::Dirty(version) => StoreError::Migrate {
            detail: format!("migration {version} was left half-applied by an earlier run"),
        },
        other => StoreError::Migrate {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |m: &Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        assert!(SQLITE.iter().next().is_some());
        assert_eq!(names(&SQLITE), names(&POSTGRES));
        assert_eq!(latest_version(&SQLITE), latest_version(&POSTGRES));
    }
}
