//! Login, logout and Reset Password. The password page works in the seed's three cases: at the
//! first login (or without a session) it asks for the user, the current password and the new one
//! twice; while logged in it asks for the new one only; after a session timed out the user logs
//! in again first (or gives the current password).

use askama::Template;
use axum::extract::Query;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use tessera_wire::admin::LoginAnswer;

use super::{
    done, failure_of, failure_page, render, render_status, ApiFailure, Base, Send, Visitor,
};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/password", get(password_page).post(password))
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    base: Base,
    user: String,
    next: String,
    error: Option<String>,
    ended: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    ended: Option<String>,
}

/// Where to go after the login: a path on this server only.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .filter(|n| !n.starts_with("/login") && !n.starts_with("/logout"))
        .unwrap_or("/")
        .to_string()
}

async fn login_page(v: Visitor, Query(q): Query<LoginQuery>) -> Response {
    let t = LoginPage {
        base: Base::visitor(&v.state, "Log in", v.flash),
        user: String::new(),
        next: safe_next(q.next.as_deref()),
        error: None,
        ended: q.ended.is_some(),
    };
    render(&t, &t.base)
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(v: Visitor, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let r = v
        .api
        .raw(
            Method::POST,
            "/api/v1/admin/login",
            Send::Json(json!({"user": f.user, "password": f.password})),
            None,
        )
        .await;
    if r.status().is_success() {
        let cookie = r.headers().get(header::SET_COOKIE).cloned();
        let answer: Option<LoginAnswer> = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let to = match answer {
            Some(a) if a.must_change_password => "/password?first=1".to_string(),
            _ => next,
        };
        let mut resp = Redirect::to(&to).into_response();
        if let Some(c) = cookie {
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        return resp;
    }
    let ApiFailure { status, detail, .. } = failure_of(r).await;
    let t = LoginPage {
        base: Base::visitor(&v.state, "Log in", None),
        user: f.user,
        next,
        error: Some(detail),
        ended: false,
    };
    render_status(status, &t, &t.base)
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(v: Visitor, Form(f): Form<CsrfForm>) -> Response {
    let r = v
        .api
        .raw(
            Method::POST,
            "/api/v1/admin/logout",
            Send::Empty,
            Some(&f.csrf),
        )
        .await;
    let status = r.status();
    // a session that had already ended (401) is logged out all the same
    if !(status.is_success() || status == StatusCode::UNAUTHORIZED) {
        let f = failure_of(r).await;
        return super::error_page(status, "You are still logged in", &f.detail);
    }
    let mut resp = done("/login", "You are logged out.");
    if let Some(c) = r.headers().get(header::SET_COOKIE).cloned() {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Template)]
#[template(path = "ui/password.html")]
struct PasswordPage {
    base: Base,
    /// The user of the logged-in session (the user name is fixed, no current password asked).
    session_user: Option<String>,
    user: String,
    first: bool,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PasswordQuery {
    #[serde(default)]
    first: Option<String>,
}

/// The logged-in user whose password need not change (the second case): the user and the
/// session's CSRF token; none otherwise.
async fn logged_in(v: &Visitor, headers: &axum::http::HeaderMap) -> Option<(String, String, bool)> {
    v.session(headers).await
}

async fn password_page(
    v: Visitor,
    headers: axum::http::HeaderMap,
    Query(q): Query<PasswordQuery>,
) -> Response {
    let session = logged_in(&v, &headers).await;
    let mut base = Base::visitor(&v.state, "Reset password", v.flash.clone());
    if let Some((user, csrf, admin)) = &session {
        base.user = Some(user.clone());
        base.csrf = csrf.clone();
        base.section = "password";
        base.admin = *admin;
    }
    let t = PasswordPage {
        user: session.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
        session_user: session.map(|s| s.0),
        first: q.first.is_some(),
        error: None,
        base,
    };
    render(&t, &t.base)
}

#[derive(Debug, Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    current: String,
    new: String,
    confirm: String,
    #[serde(default)]
    csrf: String,
}

async fn password(
    v: Visitor,
    headers: axum::http::HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let session = logged_in(&v, &headers).await;
    let user = match &session {
        Some((u, _, _)) => u.clone(),
        None => f.user.trim().to_string(),
    };
    let again = |error: String, status: StatusCode| {
        let mut base = Base::visitor(&v.state, "Reset password", None);
        if let Some((u, csrf, admin)) = &session {
            base.user = Some(u.clone());
            base.csrf = csrf.clone();
            base.section = "password";
            base.admin = *admin;
        }
        let t = PasswordPage {
            base,
            session_user: session.as_ref().map(|s| s.0.clone()),
            user: user.clone(),
            first: session.is_none(),
            error: Some(error),
        };
        render_status(status, &t, &t.base)
    };
    if f.new != f.confirm {
        return again(
            "The new password and its confirmation differ; type them again.".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if session.is_none() && (user.is_empty() || f.current.is_empty()) {
        return again(
            "Give your user name and current password (or log in first).".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let current = if session.is_some() {
        String::new()
    } else {
        f.current
    };
    let r = v
        .api
        .call::<()>(
            Method::POST,
            "/api/v1/admin/password",
            Send::Json(json!({"user": user, "current_password": current, "new_password": f.new})),
            session.as_ref().map(|_| f.csrf.as_str()),
        )
        .await;
    match r {
        Ok(()) => done(
            "/login",
            "Your password was changed. Log in with the new password.",
        ),
        Err(e) if e.status == StatusCode::UNAUTHORIZED && session.is_some() => failure_page(e),
        Err(e) => again(e.detail, e.status),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn the_login_returns_only_to_a_path_on_this_server() {
        assert_eq!(safe_next(Some("/devices?page=2")), "/devices?page=2");
        for evil in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil",
            "/logout",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
