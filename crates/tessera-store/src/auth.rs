//! [`AuthStore`]: who may use a service. Users (a name, an argon2id password hash, a role), their
//! API tokens (only a token's SHA-256 is kept) and browser sessions (only a session id's SHA-256 is
//! kept). Both services keep their users here: the back office its producer staff, the license
//! server its administrators. What the values mean (role names, hashing, expiry) is
//! `tessera-service`'s business; this module only stores them.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{opt_time, opt_unix, time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// A user of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// The argon2id PHC string (a string that is not one, such as `!`, matches no password).
    pub password_hash: String,
    /// Role name (`tessera_service::auth::Role` gives them meaning).
    pub role: String,
    /// Whether the next login must change the password.
    pub must_change_password: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// An API token (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// A label.
    pub name: String,
    /// The user it acts as.
    pub user_name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// When it stops working, if it expires.
    pub expires_at: Option<OffsetDateTime>,
}

/// A browser session (only the hash of its id is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id (the cookie's value), hex.
    pub id_hash: String,
    /// The user it acts as.
    pub user_name: String,
    /// When it was started (a login).
    pub created_at: OffsetDateTime,
    /// When it was last used.
    pub last_seen_at: OffsetDateTime,
}

/// Users, API tokens and browser sessions. See the module documentation.
pub trait AuthStore {
    /// Adds a user; an existing name is [`StoreError::Conflict`].
    fn create_user(&self, u: UserRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A user by name.
    fn get_user(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
    /// Every user, by name.
    fn list_users(&self) -> impl Future<Output = Result<Vec<UserRecord>, StoreError>> + Send;
    /// Replaces a user's password hash and the must-change flag; false if unknown.
    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        must_change: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes a user with their API tokens and sessions (one transaction); false if unknown.
    fn delete_user(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives a user another role; false if unknown.
    fn set_role(
        &self,
        name: &str,
        role: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds an API token; a hash stored already is [`StoreError::Conflict`].
    fn create_token(&self, t: TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A token by hash.
    fn find_token(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;
    /// Every token (of one user when `user` is given), newest first.
    fn list_tokens(
        &self,
        user: Option<&str>,
    ) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;
    /// Revokes the token with this hash at `at`; false when there is none or it was already
    /// revoked (its first revocation time is kept).
    fn revoke_token(
        &self,
        hash: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Revokes every token of `user` not yet revoked; returns how many.
    fn revoke_user_tokens(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Adds a session; a hash stored already is [`StoreError::Conflict`].
    fn create_session(
        &self,
        s: SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A session by the hash of its id.
    fn find_session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;
    /// Notes that the session was used at `at` (a later time only); false when there is none.
    fn touch_session(
        &self,
        id_hash: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends a session (a logout); false when there was none.
    fn delete_session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends every session of `user` (a new password, a lost role); returns how many.
    fn delete_user_sessions(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Ends every session last used before `before`, or started before `started_before`;
    /// returns how many.
    fn delete_stale_sessions(
        &self,
        before: OffsetDateTime,
        started_before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

type UserRow = (String, String, String, i64, i64);
type TokenRow = (String, String, String, i64, Option<i64>, Option<i64>);
type SessionRow = (String, String, i64, i64);

fn user(r: UserRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        name: r.0,
        password_hash: r.1,
        role: r.2,
        must_change_password: r.3 != 0,
        created_at: time(r.4, "users.created_at")?,
    })
}

fn token(r: TokenRow) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        hash: r.0,
        name: r.1,
        user_name: r.2,
        created_at: time(r.3, "api_tokens.created_at")?,
        revoked_at: opt_time(r.4, "api_tokens.revoked_at")?,
        expires_at: opt_time(r.5, "api_tokens.expires_at")?,
    })
}

fn session(r: SessionRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: r.0,
        user_name: r.1,
        created_at: time(r.2, "sessions.created_at")?,
        last_seen_at: time(r.3, "sessions.last_seen_at")?,
    })
}

const USER_COLUMNS: &str = "name, password_hash, role, must_change_password, created_at";
const TOKEN_COLUMNS: &str = "hash, name, user_name, created_at, revoked_at, expires_at";
const SESSION_COLUMNS: &str = "id_hash, user_name, created_at, last_seen_at";

macro_rules! impl_auth_store {
    ($store:ty, $name:literal) => {
        impl AuthStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_user(&self, u: UserRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO users (name, password_hash, role, must_change_password, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&u.name)
                .bind(&u.password_hash)
                .bind(&u.role)
                .bind(i64::from(u.must_change_password))
                .bind(unix(u.created_at))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::unique_as_conflict(e, || format!("user {}", u.name)))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
                let row: Option<UserRow> =
                    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(user).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
                let rows: Vec<UserRow> =
                    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(user).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_password(&self, name: &str, password_hash: &str, must_change: bool) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $2, must_change_password = $3 WHERE name = $1",
                )
                .bind(name)
                .bind(password_hash)
                .bind(i64::from(must_change))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM sessions WHERE user_name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM api_tokens WHERE user_name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM users WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_role(&self, name: &str, role: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE users SET role = $2 WHERE name = $1")
                    .bind(name)
                    .bind(role)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_token(&self, t: TokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_tokens (hash, name, user_name, created_at, revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.hash)
                .bind(&t.name)
                .bind(&t.user_name)
                .bind(unix(t.created_at))
                .bind(opt_unix(t.revoked_at))
                .bind(opt_unix(t.expires_at))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::unique_as_conflict(e, || format!("API token {}", t.name)))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
                let row: Option<TokenRow> = sqlx::query_as(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(token).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
                let rows: Vec<TokenRow> = sqlx::query_as(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens \
                     WHERE $1 IS NULL OR user_name = $1 ORDER BY created_at DESC, hash"
                ))
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(token).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn revoke_token(&self, hash: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL",
                )
                .bind(hash)
                .bind(unix(at))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn revoke_user_tokens(&self, user: &str, at: OffsetDateTime) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE user_name = $1 AND revoked_at IS NULL",
                )
                .bind(user)
                .bind(unix(at))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_name, created_at, last_seen_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&s.id_hash)
                .bind(&s.user_name)
                .bind(unix(s.created_at))
                .bind(unix(s.last_seen_at))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::unique_as_conflict(e, || format!("session of {}", s.user_name)))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn find_session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
                let row: Option<SessionRow> = sqlx::query_as(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1"
                ))
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(session).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn touch_session(&self, id_hash: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2",
                )
                .bind(id_hash)
                .bind(unix(at))
                .execute(&self.pool)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(true);
                }
                // used again within the same second, or not there at all
                let row: Option<(i64,)> = sqlx::query_as("SELECT last_seen_at FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn delete_user_sessions(&self, user: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE user_name = $1")
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn delete_stale_sessions(&self, before: OffsetDateTime, started_before: OffsetDateTime) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
                    .bind(unix(before))
                    .bind(unix(started_before))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

impl_auth_store!(SqliteStore, "sqlite");
impl_auth_store!(PgStore, "postgres");

impl AuthStore for AnyStore {
    async fn create_user(&self, u: UserRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_user(u).await)
    }
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        dispatch!(self, s => s.get_user(name).await)
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        dispatch!(self, s => s.list_users().await)
    }
    async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_password(name, password_hash, must_change).await)
    }
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_user(name).await)
    }
    async fn set_role(&self, name: &str, role: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_role(name, role).await)
    }
    async fn create_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_token(t).await)
    }
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, s => s.find_token(hash).await)
    }
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, s => s.list_tokens(user).await)
    }
    async fn revoke_token(&self, hash: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        dispatch!(self, s => s.revoke_token(hash, at).await)
    }
    async fn revoke_user_tokens(&self, user: &str, at: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self, s => s.revoke_user_tokens(user, at).await)
    }
    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        dispatch!(self, st => st.create_session(s).await)
    }
    async fn find_session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self, s => s.find_session(id_hash).await)
    }
    async fn touch_session(&self, id_hash: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        dispatch!(self, s => s.touch_session(id_hash, at).await)
    }
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_session(id_hash).await)
    }
    async fn delete_user_sessions(&self, user: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_user_sessions(user).await)
    }
    async fn delete_stale_sessions(
        &self,
        before: OffsetDateTime,
        started_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_stale_sessions(before, started_before).await)
    }
}
