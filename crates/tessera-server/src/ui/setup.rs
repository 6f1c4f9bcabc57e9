//! The manager's own Settings (kept in the browser, usable without logging in: the page size, and
//! the license server to open) and About (version, build, system, browser).

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::{done, render, Base, Visitor};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/settings", get(settings).post(save_settings))
        .route("/about", get(about))
}

/// The frame of a page anyone may open: with the menu when the visitor is logged in.
async fn open_base(v: &Visitor, headers: &HeaderMap, title: &str, section: &'static str) -> Base {
    let mut base = Base::visitor(&v.state, title, v.flash.clone());
    if let Some((user, csrf, admin)) = v.session(headers).await {
        base.user = Some(user);
        base.csrf = csrf;
        base.admin = admin;
        base.section = section;
    }
    base
}

#[derive(Template)]
#[template(path = "ui/settings.html")]
struct SettingsPage {
    base: Base,
    page_size: u32,
    listen_port: String,
}

async fn settings(v: Visitor, headers: HeaderMap) -> Response {
    let base = open_base(&v, &headers, "Settings", "settings").await;
    let listen_port = v
        .state
        .server
        .config
        .listen
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "7070".into());
    let t = SettingsPage {
        base,
        page_size: super::page_size_of(&headers),
        listen_port,
    };
    render(&t, &t.base)
}

#[derive(Debug, Deserialize)]
pub(super) struct SettingsForm {
    page_size: String,
}

/// Keeps the page size in a cookie (a year); the other settings are kept by the page's script in
/// the browser's storage.
async fn save_settings(Form(f): Form<SettingsForm>) -> Response {
    let Some(size) = f
        .page_size
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=500).contains(n))
    else {
        return done(
            "/settings",
            "Page size: give a number of rows from 1 to 500. Nothing was saved.",
        );
    };
    let mut r = done("/settings", &format!("Saved: {size} records per page."));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "page_size={size}; Path=/; SameSite=Strict; Max-Age=31536000"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r.into_response()
}

#[derive(Template)]
#[template(path = "ui/about.html")]
struct AboutPage {
    base: Base,
    version: &'static str,
    build: &'static str,
    system: String,
    hostid: String,
    store: &'static str,
    browser: String,
}

async fn about(v: Visitor, headers: HeaderMap) -> Response {
    let base = open_base(&v, &headers, "About", "about").await;
    let browser = headers
        .get(header::USER_AGENT)
        .and_then(|u| u.to_str().ok())
        .unwrap_or("not said by the browser")
        .to_string();
    let server = &v.state.server;
    let t = AboutPage {
        base,
        version: env!("CARGO_PKG_VERSION"),
        build: if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        },
        system: format!(
            "{} on {} ({} cores)",
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        hostid: server.hostid.to_string(),
        store: if server.config.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite (embedded)"
        },
        browser,
    };
    render(&t, &t.base)
}
