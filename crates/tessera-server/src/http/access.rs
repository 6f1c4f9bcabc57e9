//! Who may use the admin API, and the audit log of what they did.
//!
//! **Guarding a route.** A handler takes one extractor before its body:
//!
//! * [`Viewer`] for a read (every `GET`): any user, administrator or read-only;
//! * [`Admin`] for a change (`POST`, `PUT`, `DELETE`): an administrator only; a read-only user
//!   is answered 403 `access_denied` naming what the role may not do.
//!
//! Both take an API token (`Authorization: Bearer`, the start-up token printed by `init` among
//! them) or the session cookie of a login, whose CSRF token must come in `X-CSRF-Token` on every
//! change. A session whose password must still be changed is refused everything but a password
//! change and a logout (403 `password_change_required`). Refusals of a credential that was sent
//! are written to the audit log.
//!
//! **Auditing a change.** After the change, one line: `admin.audit(&s, "action", detail).await`
//! (or [`audit`] with an actor's name). The entry is stored in UTC with the caller's address;
//! a failure to store it is logged and does not fail the request.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_core::Clock as _;
use tessera_service::auth::{authenticate, AuthError, Credential, Refused, Role};
use tessera_store::{AuditStore, AuthStore, NewAuditEntry};

use super::{problem, AppState, Failure, Shared};

/// A caller who proved who they are: the user, their role, how, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// An API token or a browser session.
    pub credential: Credential,
    /// The client's address.
    pub address: IpAddr,
}

impl Caller {
    /// Writes an entry to the audit log as this caller, from their address.
    pub async fn audit(&self, s: &AppState, action: &str, detail: impl Into<String>) {
        record(s, &self.user, action, detail.into(), Some(self.address)).await;
    }
}

/// An administrator: the extractor of every route that changes something.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// Any user, administrator or read-only: the extractor of every route that only reads.
#[derive(Debug, Clone)]
pub struct Viewer(pub Caller);

/// A user whose session may still have to change its password: for the password change and the
/// logout only.
#[derive(Debug, Clone)]
pub(crate) struct AnyUser(pub Caller);

impl std::ops::Deref for Admin {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl std::ops::Deref for Viewer {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl axum::extract::FromRequestParts<Shared> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        caller(s, parts, Role::Administrator, false)
            .await
            .map(Admin)
    }
}

impl axum::extract::FromRequestParts<Shared> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        caller(s, parts, Role::ReadOnly, false).await.map(Viewer)
    }
}

impl axum::extract::FromRequestParts<Shared> for AnyUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        caller(s, parts, Role::ReadOnly, true).await.map(AnyUser)
    }
}

/// Writes an entry to the audit log: `actor` did `action` (a short name such as `activate`), with
/// `detail` in words. For the lead's one line in a new handler: `audit(&s, &admin.user,
/// "reservations_import", detail).await` (or `admin.audit(&s, …)`, which adds the address).
pub async fn audit(s: &AppState, actor: &str, action: &str, detail: impl Into<String>) {
    record(s, actor, action, detail.into(), None).await;
}

/// Appends an entry, pruning the log by age and size every so often.
pub(crate) async fn record(
    s: &AppState,
    actor: &str,
    action: &str,
    detail: impl Into<String>,
    address: Option<IpAddr>,
) {
    let detail: String = detail.into();
    let now = s.server.clock.now();
    let entry = NewAuditEntry {
        at: now,
        actor: printable(actor, 64),
        action: action.into(),
        detail: printable(&detail, 1000),
        address: address.map(|a| a.to_string()),
    };
    if let Err(e) = s.server.store.append_audit(entry).await {
        tracing::warn!(error = %e, action, "the audit log could not be written");
        return;
    }
    if s.audit_appends
        .fetch_add(1, Ordering::AcqRel)
        .is_multiple_of(PRUNE_EVERY)
    {
        let days = i64::from(s.server.config.audit_retention_days);
        let keep = u64::from(s.server.config.audit_max_entries);
        if let Err(e) = s
            .server
            .store
            .prune_audit(now - time::Duration::days(days), keep)
            .await
        {
            tracing::warn!(error = %e, "the audit log could not be pruned");
        }
    }
}

/// Entries written between two prunings of the audit log (the first one prunes too).
const PRUNE_EVERY: u64 = 100;

/// `text` without control characters (each shown as `?`), at most `max` characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What a route does, for a refusal: `POST /api/v1/admin/sync`.
fn what(parts: &Parts) -> String {
    format!("{} {}", parts.method, parts.uri.path())
}

fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// 401 `unauthorized` with the detail, and `WWW-Authenticate: Bearer`.
pub(crate) fn unauthorized(detail: impl Into<String>) -> Response {
    let mut r = problem(StatusCode::UNAUTHORIZED, "unauthorized", detail);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The refusal of a credential, in the license server's words.
fn refused_answer(r: &Refused) -> Response {
    match r {
        Refused::NoCredentials => unauthorized(
            "this needs credentials: an API token (Authorization: Bearer <token>; the admin token printed by `tessera server init` is one) or the session cookie of a login (POST /api/v1/admin/login)",
        ),
        Refused::MalformedAuthorization => {
            unauthorized("the Authorization header must be 'Bearer <token>'")
        }
        Refused::UnknownToken | Refused::RevokedToken => unauthorized(
            "the API token is unknown or revoked: use the admin token printed by `tessera server init` (or the last `tessera server token rotate`), or make a new one (`tessera server login`)",
        ),
        Refused::ExpiredToken { at } => unauthorized(format!(
            "the API token expired at {}: make a new one (`tessera server login`)",
            tessera_core::time_fmt::display_time(*at)
        )),
        Refused::UnknownSession => unauthorized(
            "the session is unknown or was logged out: log in again (POST /api/v1/admin/login)",
        ),
        Refused::ExpiredSession => unauthorized(
            "the session expired (30 minutes without a request, or its longest life): log in again (POST /api/v1/admin/login)",
        ),
        Refused::CsrfMismatch => problem(
            StatusCode::FORBIDDEN,
            "csrf_token_missing",
            "a change made with a session cookie must carry the session's CSRF token (the login's `csrf_token`) in the X-CSRF-Token header; nothing was changed",
        ),
        Refused::NoSuchUser => unauthorized(
            "the user of this credential no longer exists or has no known role: ask an administrator",
        ),
        Refused::Forbidden { needed, have } => problem(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!("access denied: this needs the {needed} role; the user has {have}"),
        ),
        _ => unauthorized("the credentials were refused"),
    }
}

/// The caller of a request, allowed `needed`; with `any_password` also a session whose password
/// must still be changed.
async fn caller(
    s: &AppState,
    parts: &Parts,
    needed: Role,
    any_password: bool,
) -> Result<Caller, Response> {
    let store = &s.server.store;
    let now = s.server.clock.now();
    let address = client_address(parts);
    let principal =
        match authenticate(store, Some(&s.sessions), &parts.method, &parts.headers, now).await {
            Ok(p) => p,
            Err(AuthError::Refused(r)) => {
                if !matches!(r, Refused::NoCredentials) {
                    record(
                        s,
                        "-",
                        "credential_refused",
                        format!("{}: {r}", what(parts)),
                        Some(address),
                    )
                    .await;
                }
                return Err(refused_answer(&r));
            }
            Err(e) => return Err(Failure::Storage(
                e.to_string(),
                "the license server could not read its store to check the credentials; try again",
            )
            .into_response()),
        };
    let caller = Caller {
        user: principal.user,
        role: principal.role,
        credential: principal.credential,
        address,
    };
    if !any_password && matches!(caller.credential, Credential::Session { .. }) {
        let must_change = match store.get_user(&caller.user).await {
            Ok(u) => u.is_some_and(|u| u.must_change_password),
            Err(e) => return Err(Failure::Storage(
                e.to_string(),
                "the license server could not read its store to check the credentials; try again",
            )
            .into_response()),
        };
        if must_change {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "password_change_required",
                format!(
                    "user {} must change the password before anything else: POST /api/v1/admin/password with the current and the new password (`tessera server passwd`), then log in again",
                    caller.user
                ),
            ));
        }
    }
    if !caller.role.allows(needed) {
        let detail = format!(
            "access denied: the {} role may view but not change anything, so it may not {}; that needs the {} role",
            caller.role,
            what(parts),
            Role::Administrator
        );
        caller.audit(s, "access_denied", detail.clone()).await;
        return Err(problem(StatusCode::FORBIDDEN, "access_denied", detail));
    }
    Ok(caller)
}
