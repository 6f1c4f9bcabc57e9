//! Browser sessions: an opaque random id in a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`,
//! `Secure` when served over TLS), kept server-side only as its SHA-256, ended after
//! [`Sessions::idle`] without use (30 minutes) or [`Sessions::lifetime`] after the login (12
//! hours), whichever comes first.
//!
//! **CSRF**: every session has a CSRF token derived from its id (so nothing more is stored); a
//! page puts it in what it renders (`<meta name="csrf-token">`, htmx's `hx-headers`), and every
//! request that is not a read (not GET, HEAD, OPTIONS) must send it back in `X-CSRF-Token`.
//! A forged cross-site request carries the cookie (were `SameSite` ignored) but cannot read the
//! token. Requests with an API token need none: a browser never adds a bearer header by itself.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};
use tessera_store::{AuthStore, SessionRecord};
use time::OffsetDateTime;

use super::{secret_hash, user_role, AuthError, Credential, Principal, Refused};

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a service's browser sessions work: the cookie's name, how long they last, whether the
/// cookie is for HTTPS only.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// The cookie's name (`tessera_session`).
    pub cookie: String,
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after the login, however busy.
    pub lifetime: Duration,
    /// `Secure` cookies (served over TLS).
    pub secure: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            cookie: "tessera_session".into(),
            idle: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            secure: false,
        }
    }
}

/// A session just started: the `Set-Cookie` value to send, and the CSRF token for the first page.
#[derive(Debug, Clone)]
pub struct StartedSession {
    /// The `Set-Cookie` header value.
    pub set_cookie: HeaderValue,
    /// The session's CSRF token.
    pub csrf: String,
}

/// The CSRF token of the session with this id.
pub fn csrf_token(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tessera-csrf\0");
    h.update(session_id.as_bytes());
    hex::encode(h.finalize())
}

/// Compares two secrets in time that depends on their lengths only.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Sessions {
    /// Starts a session for `user` (after a login the caller checked); its cookie and CSRF token.
    pub async fn start<S: AuthStore>(
        &self,
        store: &S,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<StartedSession, AuthError> {
        let id = super::random_secret("");
        store
            .create_session(SessionRecord {
                id_hash: secret_hash(&id),
                user_name: user.into(),
                created_at: now,
                last_seen_at: now,
            })
            .await?;
        Ok(StartedSession {
            set_cookie: self.cookie_header(&id, self.lifetime)?,
            csrf: csrf_token(&id),
        })
    }

    fn cookie_header(&self, value: &str, max_age: Duration) -> Result<HeaderValue, AuthError> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie,
            max_age.as_secs()
        ))
        .map_err(|_| AuthError::invalid("cookie", "the session cookie's name is not a token"))
    }

    /// The `Set-Cookie` value that removes the cookie from the browser (with [`Sessions::end`]).
    pub fn clear_cookie(&self) -> Result<HeaderValue, AuthError> {
        self.cookie_header("", Duration::ZERO)
    }

    /// The session id in the request's cookies, if any.
    pub fn session_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.trim())
            .filter(|v| !v.is_empty())
    }

    /// The principal of the request's session: `None` without a session cookie; refused when the
    /// session is unknown, expired (it is ended then), its user gone, or the request changes
    /// something without the session's CSRF token. Notes the use (the idle clock starts again).
    pub async fn resume<S: AuthStore>(
        &self,
        store: &S,
        method: &Method,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(id) = self.session_id(headers) else {
            return Ok(None);
        };
        let hash = secret_hash(id);
        let record = store
            .find_session(&hash)
            .await?
            .ok_or(Refused::UnknownSession)?;
        if record.last_seen_at + to_time(self.idle) <= now
            || record.created_at + to_time(self.lifetime) <= now
        {
            store.delete_session(&hash).await?;
            return Err(Refused::ExpiredSession.into());
        }
        let csrf = csrf_token(id);
        if !method.is_safe() {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same(given, &csrf) {
                return Err(Refused::CsrfMismatch.into());
            }
        }
        let role = user_role(store, &record.user_name).await?;
        store.touch_session(&hash, now).await?;
        Ok(Some(Principal {
            user: record.user_name,
            role,
            credential: Credential::Session { csrf },
        }))
    }

    /// Ends the request's session (a logout); whether there was one.
    pub async fn end<S: AuthStore>(
        &self,
        store: &S,
        headers: &HeaderMap,
    ) -> Result<bool, AuthError> {
        match self.session_id(headers) {
            Some(id) => Ok(store.delete_session(&secret_hash(id)).await?),
            None => Ok(false),
        }
    }

    /// Ends every session idle too long or too old at `now` (a periodic sweep; expired sessions
    /// are refused anyway); how many.
    pub async fn sweep<S: AuthStore>(
        &self,
        store: &S,
        now: OffsetDateTime,
    ) -> Result<u64, AuthError> {
        Ok(store
            .delete_stale_sessions(now - to_time(self.idle), now - to_time(self.lifetime))
            .await?)
    }
}
