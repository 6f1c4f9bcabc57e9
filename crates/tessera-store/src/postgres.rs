//! The PostgreSQL backend, for several license-server replicas or a large back office.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{migrate, Backend, StoreError};

/// How long the first connection may take before [`PgStore::connect`] gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 10;

/// A store in a PostgreSQL database.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// This process's claim on the database, shared by every clone (see [`crate::claim`]).
    pub(crate) claim: std::sync::Arc<crate::claim::ClaimCell>,
}

impl PgStore {
    /// Connects to the database at a `postgres://` or `postgresql://` URL (it must exist) and
    /// applies the embedded migrations (under PostgreSQL's advisory lock, so replicas starting
    /// together do not race).
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        match crate::backend_for_url(url)? {
            Backend::Postgres => {}
            _ => {
                return Err(StoreError::InvalidUrl {
                    detail: "a PostgreSQL URL starts with postgres:// or postgresql://".to_owned(),
                })
            }
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            detail: e.to_string(),
        })?;
        let connect_error = |detail: String| StoreError::Connect {
            backend: Backend::Postgres,
            detail,
        };

        // One plain connection first: a pool retries a refused connection until its timeout,
        // which would turn "server not running" into a slow, vague "pool timed out".
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_error(e.to_string())),
            Err(_) => {
                return Err(connect_error(format!(
                    "no answer within {} seconds",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let migrated = migrate::run_postgres(&mut conn).await;
        close_quietly(conn).await;
        migrated.map_err(|e| migrate::error(e, &migrate::POSTGRES))?;

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        tracing::debug!("opened PostgreSQL store");
        Ok(PgStore {
            pool,
            claim: Default::default(),
        })
    }

    /// The underlying connection pool, for diagnostics and tests. Services should use the store
    /// traits.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection. Calls made afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Closes a connection, ignoring errors (the work on it is already done or already failed).
async fn close_quietly(conn: PgConnection) {
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
}
