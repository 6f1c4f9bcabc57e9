//! Logins, sessions, passwords, users, API tokens and the audit log of the admin API. Access is
//! checked by the extractors of [`super::access`]; every change here is audited.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tessera_core::time::OffsetDateTime;
use tessera_core::Clock as _;
use tessera_service::auth::{self as kit, AuthError, Credential, Role, Throttled};
use tessera_service::problem::ApiError;
use tessera_store::{AuditStore, AuthStore, UserRecord};
use tessera_wire::admin::{
    AuditEntry, AuditPage, LoginAnswer, LoginRequest, NewToken, NewUser, PasswordChange,
    RoleChange, TokenCreated, TokenInfo, TokenLogin, UserCreated, UserView,
};
use utoipa::IntoParams;

use super::access::{record, Admin, AnyUser, Viewer};
use super::{json_problem, problem, AppState, ClientIp, Failure, Shared};
use crate::openapi::Problem;
use crate::token::TOKEN_PREFIX;

/// RFC 3339 in UTC.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    // whole seconds, as the store keeps them (and as a listing shows them again)
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn storage(e: impl std::fmt::Display) -> Response {
    Failure::Storage(
        e.to_string(),
        "the license server could not use its store; nothing was changed; try again",
    )
    .into_response()
}

/// An error of the toolkit as an answer.
fn auth_failure(e: AuthError) -> Response {
    match e {
        AuthError::Invalid { field, detail } => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("{field}: {detail}"),
        ),
        AuthError::NotFound { what } => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} does not exist"),
        ),
        AuthError::Conflict { what } => problem(
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} exists already"),
        ),
        AuthError::Busy(_) => busy(),
        AuthError::Store(e) => storage(e),
        other => Failure::Internal(other.to_string()).into_response(),
    }
}

fn busy() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the license server is checking too many passwords at once; try again in a second",
    )
    .with_retry_after(1)
    .into_response()
}

fn not_a_role(name: &str) -> Response {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        format!("role: `{name}` is not a role; use `admin` (everything) or `read_only` (every view, no change)"),
    )
}

fn user_view(u: &UserRecord) -> UserView {
    UserView {
        name: u.name.clone(),
        role: u.role.clone(),
        must_change_password: u.must_change_password,
        has_password: u.password_hash != kit::NO_PASSWORD,
        created_at: rfc3339(u.created_at),
    }
}

/// Throttles, then checks a user's password: the user, or the answer (429 `login_throttled`, 401
/// `login_failed`, 503), each audited as `what` + `_throttled` / `_failed`.
async fn check_login(
    s: &AppState,
    ip: ClientIp,
    user: &str,
    password: &str,
    what: &str,
) -> Result<UserRecord, Response> {
    if let Err(t) = s.logins.attempt(user, ip.0) {
        let (retry_after, whose) = match t {
            Throttled::Account { retry_after } => (
                retry_after,
                format!(
                    "too many failed logins for this account (at most {} an hour)",
                    s.server.config.login_failures_per_hour
                ),
            ),
            Throttled::Address { retry_after } => {
                (retry_after, "too many logins from your address".to_string())
            }
            _ => (60, "too many logins".to_string()),
        };
        record(
            s,
            user,
            &format!("{what}_throttled"),
            format!("{whose}; refused without checking the password"),
            Some(ip.0),
        )
        .await;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "login_throttled",
            format!("{whose}; try again in {retry_after} s (an operator with the data directory can set a password: `tessera server passwd --data DIR`)"),
        )
        .with_retry_after(retry_after)
        .into_response());
    }
    match kit::check_password(&s.server.store, &s.hashing, user, password).await {
        Ok(Some(u)) => {
            s.logins.succeeded(user);
            Ok(u)
        }
        Ok(None) => {
            record(
                s,
                user,
                &format!("{what}_failed"),
                "wrong user name or password",
                Some(ip.0),
            )
            .await;
            Err(problem(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "wrong user name or password",
            ))
        }
        Err(e) => Err(auth_failure(e)),
    }
}

/// Logs in with a user name and password: starts a browser session (an `HttpOnly`,
/// `SameSite=Strict` cookie) and answers its CSRF token. A session ends after
/// `session_idle_minutes` (30) without a request and `session_max_hours` (12) after the login.
/// When `must_change_password` is true the session may only change the password
/// (`POST /api/v1/admin/password`) or log out. Failed logins are throttled per account
/// (`login_failures_per_hour`, 100) and per address: 429 `login_throttled` with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/admin/login", tag = "access", request_body = LoginRequest,
    responses((status = 200, body = LoginAnswer, description = "logged in; the session cookie is set"),
        (status = 401, body = Problem, description = "login_failed: wrong user name or password"),
        (status = 429, body = Problem, description = "login_throttled; with Retry-After"),
        (status = 503, body = Problem, description = "busy (with Retry-After), storage_unavailable")))]
pub(crate) async fn login(
    State(s): State<Shared>,
    ip: ClientIp,
    req: Result<Json<LoginRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let user = match check_login(&s, ip, &req.user, &req.password, "login").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let now = s.server.clock.now();
    let started = match s.sessions.start(&s.server.store, &user.name, now).await {
        Ok(st) => st,
        Err(e) => return auth_failure(e),
    };
    record(
        &s,
        &user.name,
        "login",
        if user.must_change_password {
            "logged in; the password must be changed first".to_string()
        } else {
            "logged in".to_string()
        },
        Some(ip.0),
    )
    .await;
    let lifetime = time::Duration::seconds(
        i64::try_from(s.sessions.lifetime.as_secs()).unwrap_or(i64::MAX / 2),
    );
    let answer = LoginAnswer {
        user: user.name,
        role: user.role,
        csrf_token: started.csrf,
        must_change_password: user.must_change_password,
        idle_timeout_seconds: s.sessions.idle.as_secs(),
        expires_at: rfc3339(now + lifetime),
    };
    ([(header::SET_COOKIE, started.set_cookie)], Json(answer)).into_response()
}

/// Ends the caller's browser session (its cookie is cleared); the session id is refused from then
/// on.
#[utoipa::path(post, path = "/api/v1/admin/logout", tag = "access", security(("token" = []), ("session" = [])),
    responses((status = 204, description = "logged out"),
        (status = 422, body = Problem, description = "not_a_session: the request carries an API token, not a session")))]
pub(crate) async fn logout(
    State(s): State<Shared>,
    AnyUser(caller): AnyUser,
    headers: axum::http::HeaderMap,
) -> Response {
    let Credential::Session { .. } = caller.credential else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_session",
            "logout ends a browser session; an API token is revoked instead (DELETE /api/v1/admin/tokens/{id}, `tessera server tokens revoke`)",
        );
    };
    if let Err(e) = s.sessions.end(&s.server.store, &headers).await {
        return auth_failure(e);
    }
    caller.audit(&s, "logout", "logged out").await;
    match s.sessions.clear_cookie() {
        Ok(c) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, c)]).into_response(),
        Err(_) => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Changes a user's password, given the current one (at the first login, after a session
/// expired, or any time). The new password needs at least 12 characters. Every session of the
/// user ends (log in again); API tokens are kept. Throttled as logins are.
#[utoipa::path(post, path = "/api/v1/admin/password", tag = "access", request_body = PasswordChange,
    responses((status = 204, description = "changed; log in again"),
        (status = 401, body = Problem, description = "login_failed: wrong user name or current password"),
        (status = 422, body = Problem, description = "invalid_request: the new password does not fit the rules"),
        (status = 429, body = Problem, description = "login_throttled; with Retry-After"),
        (status = 503, body = Problem, description = "busy (with Retry-After), storage_unavailable")))]
pub(crate) async fn change_password(
    State(s): State<Shared>,
    ip: ClientIp,
    headers: axum::http::HeaderMap,
    req: Result<Json<PasswordChange>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    if let Err(e) = kit::check_new_password(&req.new_password) {
        return auth_failure(e);
    }
    if req.new_password == req.current_password {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "new_password: choose a password other than the current one",
        );
    }
    let with_current = !req.current_password.is_empty();
    let user = if with_current {
        match check_login(&s, ip, &req.user, &req.current_password, "password_change").await {
            Ok(u) => u,
            Err(r) => return r,
        }
    } else {
        match session_user(&s, &headers, &req.user).await {
            Ok(u) => u,
            Err(r) => return r,
        }
    };
    let store = s.server.store.clone();
    let (name, new) = (user.name.clone(), req.new_password.clone());
    // hashing runs a few at a time on the blocking pool, as the check did
    let hashed = s.hashing.run(move || kit::hash_password(&new)).await;
    let hash = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return auth_failure(e),
        Err(_) => return busy(),
    };
    match store.set_password(&name, &hash, false).await {
        Ok(true) => {}
        Ok(false) => {
            return auth_failure(AuthError::NotFound {
                what: format!("user {name}"),
            })
        }
        Err(e) => return storage(e),
    }
    if let Err(e) = store.delete_user_sessions(&name).await {
        return storage(e);
    }
    record(
        &s,
        &name,
        "password_changed",
        if with_current {
            "changed the password (with the current one); the user's sessions ended"
        } else {
            "changed the password (in a logged-in session); the user's sessions ended"
        },
        Some(ip.0),
    )
    .await;
    StatusCode::NO_CONTENT.into_response()
}

/// The user of a password change without the current password: the request's browser session
/// (with its CSRF token) must be this user's, and its password must not be due for a change
/// (a first login gives the current password).
async fn session_user(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    user: &str,
) -> Result<UserRecord, Response> {
    let needed = || {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "current_password: give the current password (it may be left out only in a logged-in browser session of this user)",
        )
    };
    let now = s.server.clock.now();
    let principal = match s
        .sessions
        .resume(&s.server.store, &axum::http::Method::POST, headers, now)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => return Err(needed()),
        Err(AuthError::Refused(r)) => {
            return Err(problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("the session cannot change the password: {r}; log in again"),
            ))
        }
        Err(e) => return Err(auth_failure(e)),
    };
    if principal.user != user {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "access_denied",
            "a session changes only its own user's password without the current one",
        ));
    }
    match s.server.store.get_user(user).await {
        Ok(Some(u)) if !u.must_change_password => Ok(u),
        Ok(Some(_)) => Err(needed()),
        Ok(None) => Err(auth_failure(AuthError::NotFound {
            what: format!("user {user}"),
        })),
        Err(e) => Err(storage(e)),
    }
}

/// Exchanges a user name and password for an API token acting as that user with the user's role
/// (for scripts and `tessera server login`): shown once. Throttled as logins are; refused while
/// the password must still be changed.
#[utoipa::path(post, path = "/api/v1/admin/login/token", tag = "access", request_body = TokenLogin,
    responses((status = 201, body = TokenCreated, description = "the token, shown once"),
        (status = 401, body = Problem, description = "login_failed: wrong user name or password"),
        (status = 403, body = Problem, description = "password_change_required"),
        (status = 429, body = Problem, description = "login_throttled; with Retry-After"),
        (status = 503, body = Problem, description = "busy (with Retry-After), storage_unavailable")))]
pub(crate) async fn login_token(
    State(s): State<Shared>,
    ip: ClientIp,
    req: Result<Json<TokenLogin>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let user = match check_login(&s, ip, &req.user, &req.password, "login").await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.must_change_password {
        record(
            &s,
            &user.name,
            "login_failed",
            "an API token was asked for while the password must still be changed",
            Some(ip.0),
        )
        .await;
        return problem(
            StatusCode::FORBIDDEN,
            "password_change_required",
            format!("user {} must change the password first (`tessera server passwd`, POST /api/v1/admin/password)", user.name),
        );
    }
    let label = req.name.as_deref().unwrap_or("cli");
    let answer = make_token(&s, &user.name, label, req.expires_days).await;
    if answer.status().is_success() {
        record(
            &s,
            &user.name,
            "token_created",
            format!("logged in for an API token labelled {label:?}"),
            Some(ip.0),
        )
        .await;
    }
    answer
}

async fn make_token(s: &AppState, user: &str, label: &str, expires_days: Option<u32>) -> Response {
    let now = s.server.clock.now();
    let token = match kit::tokens::create_token(
        &s.server.store,
        TOKEN_PREFIX,
        user,
        label,
        expires_days,
        now,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => return auth_failure(e),
    };
    let id = kit::secret_hash(&token)
        .chars()
        .take(kit::TOKEN_ID_LEN)
        .collect();
    let expires_at = expires_days.map(|d| rfc3339(now + time::Duration::days(i64::from(d))));
    (
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            id,
            user: user.to_string(),
            expires_at,
        }),
    )
        .into_response()
}

/// Lists the users (administrators only).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "access", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<UserView>),
        (status = 403, body = Problem, description = "access_denied: users are managed by administrators")))]
pub(crate) async fn list_users(State(s): State<Shared>, _admin: Admin) -> Response {
    match s.server.store.list_users().await {
        Ok(users) => Json(users.iter().map(user_view).collect::<Vec<_>>()).into_response(),
        Err(e) => storage(e),
    }
}

/// Creates a user with a role; the first password (given, or made and answered once) must be
/// changed at the user's first login.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "access", security(("token" = []), ("session" = [])), request_body = NewUser,
    responses((status = 201, body = UserCreated),
        (status = 403, body = Problem, description = "access_denied"),
        (status = 409, body = Problem, description = "conflict: the user exists")))]
pub(crate) async fn create_user(
    State(s): State<Shared>,
    admin: Admin,
    req: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let Some(role) = Role::parse(&req.role) else {
        return not_a_role(&req.role);
    };
    let made = req.password.is_none().then(kit::random_password);
    let Some(password) = req.password.clone().or_else(|| made.clone()) else {
        return Failure::Internal("no password".into()).into_response();
    };
    let now = s.server.clock.now();
    let store = &s.server.store;
    if let Err(e) = kit::create_user_with(store, &req.name, Some(&password), role, true, now).await
    {
        return auth_failure(e);
    }
    let user = match store.get_user(req.name.trim()).await {
        Ok(Some(u)) => u,
        Ok(None) => return Failure::Internal("a user just made is gone".into()).into_response(),
        Err(e) => return storage(e),
    };
    admin
        .audit(
            &s,
            "user_created",
            format!("created user {} with role {role}", user.name),
        )
        .await;
    (
        StatusCode::CREATED,
        Json(UserCreated {
            user: user_view(&user),
            password: made,
        }),
    )
        .into_response()
}

/// How many administrators there are besides `name`.
async fn other_admins(s: &AppState, name: &str) -> Result<usize, Response> {
    let users = s.server.store.list_users().await.map_err(storage)?;
    Ok(users
        .iter()
        .filter(|u| u.name != name && Role::parse(&u.role) == Some(Role::Administrator))
        .count())
}

/// Deletes a user with their API tokens and sessions. The last administrator cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/admin/users/{name}", tag = "access", security(("token" = []), ("session" = [])),
    params(("name" = String, Path, description = "the user name")),
    responses((status = 204, description = "deleted"),
        (status = 403, body = Problem, description = "access_denied"),
        (status = 404, body = Problem, description = "not_found"),
        (status = 409, body = Problem, description = "last_administrator: the license server would have no administrator left")))]
pub(crate) async fn delete_user(
    State(s): State<Shared>,
    admin: Admin,
    Path(name): Path<String>,
) -> Response {
    match other_admins(&s, &name).await {
        Ok(0) if is_admin(&s, &name).await => {
            return problem(
                StatusCode::CONFLICT,
                "last_administrator",
                format!(
                    "{name} is the last administrator: make another user an administrator first"
                ),
            )
        }
        Ok(_) => {}
        Err(r) => return r,
    }
    if let Err(e) = kit::delete_user(&s.server.store, &name).await {
        return auth_failure(e);
    }
    admin
        .audit(
            &s,
            "user_deleted",
            format!("deleted user {name} with their API tokens and sessions"),
        )
        .await;
    StatusCode::NO_CONTENT.into_response()
}

async fn is_admin(s: &AppState, name: &str) -> bool {
    matches!(
        s.server.store.get_user(name).await,
        Ok(Some(u)) if Role::parse(&u.role) == Some(Role::Administrator)
    )
}

/// Gives a user another role; their browser sessions end. The last administrator keeps the role.
#[utoipa::path(put, path = "/api/v1/admin/users/{name}/role", tag = "access", security(("token" = []), ("session" = [])),
    params(("name" = String, Path, description = "the user name")), request_body = RoleChange,
    responses((status = 200, body = UserView),
        (status = 403, body = Problem, description = "access_denied"),
        (status = 404, body = Problem, description = "not_found"),
        (status = 409, body = Problem, description = "last_administrator")))]
pub(crate) async fn set_role(
    State(s): State<Shared>,
    admin: Admin,
    Path(name): Path<String>,
    req: Result<Json<RoleChange>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let Some(role) = Role::parse(&req.role) else {
        return not_a_role(&req.role);
    };
    if role != Role::Administrator {
        match other_admins(&s, &name).await {
            Ok(0) if is_admin(&s, &name).await => {
                return problem(
                    StatusCode::CONFLICT,
                    "last_administrator",
                    format!(
                    "{name} is the last administrator: make another user an administrator first"
                ),
                )
            }
            Ok(_) => {}
            Err(r) => return r,
        }
    }
    if let Err(e) = kit::set_role(&s.server.store, &name, role).await {
        return auth_failure(e);
    }
    admin
        .audit(
            &s,
            "role_changed",
            format!("gave user {name} the role {role}"),
        )
        .await;
    match s.server.store.get_user(&name).await {
        Ok(Some(u)) => Json(user_view(&u)).into_response(),
        Ok(None) => auth_failure(AuthError::NotFound {
            what: format!("user {name}"),
        }),
        Err(e) => storage(e),
    }
}

fn token_info(t: &kit::TokenView) -> TokenInfo {
    let at = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map(rfc3339)
            .unwrap_or_else(|_| secs.to_string())
    };
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        user: t.user.clone(),
        created_at: at(t.created_at),
        expires_at: t.expires_at.map(at),
        revoked_at: t.revoked_at.map(at),
        state: t.state.clone(),
    }
}

/// Lists API tokens (never the tokens themselves): an administrator sees every user's, a
/// read-only user their own.
#[utoipa::path(get, path = "/api/v1/admin/tokens", tag = "access", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<TokenInfo>)))]
pub(crate) async fn list_tokens(State(s): State<Shared>, viewer: Viewer) -> Response {
    let only = (viewer.role != Role::Administrator).then_some(viewer.user.as_str());
    match kit::tokens::list_tokens(&s.server.store, only, s.server.clock.now()).await {
        Ok(list) => Json(list.iter().map(token_info).collect::<Vec<_>>()).into_response(),
        Err(e) => auth_failure(e),
    }
}

/// Creates an API token (shown once) for the caller, or for another user when `user` is given.
#[utoipa::path(post, path = "/api/v1/admin/tokens", tag = "access", security(("token" = []), ("session" = [])), request_body = NewToken,
    responses((status = 201, body = TokenCreated, description = "the token, shown once"),
        (status = 403, body = Problem, description = "access_denied"),
        (status = 404, body = Problem, description = "not_found: no such user")))]
pub(crate) async fn create_token(
    State(s): State<Shared>,
    admin: Admin,
    req: Result<Json<NewToken>, JsonRejection>,
) -> Response {
    let Json(req) = match req {
        Ok(r) => r,
        Err(e) => return json_problem(e),
    };
    let user = req.user.clone().unwrap_or_else(|| admin.user.clone());
    let label = req.name.as_deref().unwrap_or("api");
    let answer = make_token(&s, &user, label, req.expires_days).await;
    if answer.status().is_success() {
        admin
            .audit(
                &s,
                "token_created",
                format!("created an API token labelled {label:?} for user {user}"),
            )
            .await;
    }
    answer
}

/// Revokes an API token by its id (as listed; at least 8 hex digits) or by the token itself; it
/// stops working at once.
#[utoipa::path(delete, path = "/api/v1/admin/tokens/{id}", tag = "access", security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "the token's id (16 hex digits, as listed) or the token")),
    responses((status = 200, body = TokenInfo),
        (status = 403, body = Problem, description = "access_denied"),
        (status = 404, body = Problem, description = "not_found"),
        (status = 422, body = Problem, description = "invalid_request: not an id")))]
pub(crate) async fn revoke_token(
    State(s): State<Shared>,
    admin: Admin,
    Path(id): Path<String>,
) -> Response {
    match kit::tokens::revoke_token(&s.server.store, TOKEN_PREFIX, &id, s.server.clock.now()).await
    {
        Ok(t) => {
            admin
                .audit(
                    &s,
                    "token_revoked",
                    format!(
                        "revoked API token {} ({:?}) of user {}",
                        t.id, t.name, t.user
                    ),
                )
                .await;
            Json(token_info(&t)).into_response()
        }
        Err(e) => auth_failure(e),
    }
}

/// Which page of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries per page (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only entries older than this id (the `next_before` of the page before).
    #[serde(default)]
    pub before: Option<i64>,
}

/// The audit log, newest first, a page at a time: logins, failed logins, logouts, password, user
/// and token changes, refused credentials and roles, and every administrative change. Kept
/// `audit_retention_days` (365) and at most `audit_max_entries` (100000).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "access", security(("token" = []), ("session" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage),
        (status = 400, body = Problem, description = "invalid_query")))]
pub(crate) async fn audit_log(
    State(s): State<Shared>,
    _viewer: Viewer,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("{}: use ?limit=1..1000&before=ID", e.body_text()),
            )
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit: between 1 and 1000",
        );
    }
    let rows = match s.server.store.list_audit(q.before, limit).await {
        Ok(r) => r,
        Err(e) => return storage(e),
    };
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Json(AuditPage {
        entries: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: rfc3339(r.entry.at),
                actor: r.entry.actor,
                action: r.entry.action,
                detail: r.entry.detail,
                address: r.entry.address,
            })
            .collect(),
        next_before,
    })
    .into_response()
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;

    #[test]
    fn times_are_written_in_whole_seconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_423_912_987_654_321)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(rfc3339(t), "2025-11-29T13:45:12Z");
    }
}
