//! The License Server Manager: the license administrator's browser UI, served by the license
//! server itself at `/` (see docs/manager.md).
//!
//! **Every page is a client of the admin API.** A page handler does not reach into the server:
//! it calls the admin API in-process ([`Api`], the same router the command line talks to over
//! HTTP) with the browser's session cookie, and renders what the API answered. So a page shows
//! exactly what `tessera server …` shows, access is checked once (by the API's extractors, with
//! the audit log they keep), and an API refusal (`access_denied`, a bad reservation, a model with
//! a syntax error) is shown with the API's own words.
//!
//! **Sessions and CSRF.** A login starts the API's browser session (an `HttpOnly`,
//! `SameSite=Strict` cookie). Every form carries the session's CSRF token in a hidden `csrf`
//! field; the page handler passes it to the API in `X-CSRF-Token`, where it is checked, so a
//! forged form changes nothing. A session that ended (30 minutes idle) sends the next click to
//! the login page with "your session ended".
//!
//! **No JavaScript needed** for any form; `manager.js` (a few lines, embedded) adds conveniences
//! only: the column chooser, the settings kept in the browser, the +/− rows of the activation
//! form. Assets are embedded in the binary; no request leaves the machine.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use tessera_core::Clock as _;
use tessera_service::auth::session::CSRF_HEADER;
use tessera_service::auth::{AuthError, Credential, Refused, Role};
use tessera_store::AuthStore as _;
use tower::ServiceExt as _;

use crate::http::Shared;

mod admin;
mod auth;
mod backoffice;
mod features;
mod history;
pub(crate) mod openapi;
mod policy;
mod setup;

/// The admin API router (with the server's state), for the pages to call in-process.
#[derive(Clone)]
pub(crate) struct Api(pub Router);

/// The manager's routes (added to the license server's router with [`Api`] as an extension).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(home))
        .route("/ui/manager.css", get(assets::css))
        .route("/ui/manager.js", get(assets::js))
        .route("/ui/logo", get(assets::logo))
        .merge(auth::routes())
        .merge(setup::routes())
        .merge(features::routes())
        .merge(admin::routes())
        .merge(backoffice::routes())
        .merge(policy::routes())
        .merge(history::routes())
}

/// `/`: the features view (the first thing an administrator looks at), or the login page.
async fn home(page: Page) -> Response {
    let _ = page;
    Redirect::to("/features").into_response()
}

mod assets {
    //! The stylesheet, the script and the logo, embedded in the binary.
    use super::*;

    const CSS: &str = include_str!("assets/manager.css");
    const JS: &str = include_str!("assets/manager.js");
    const LOGO: &str = include_str!("assets/logo.svg");

    fn cached(kind: &'static str, body: Body) -> Response {
        (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // an SVG logo opened on its own runs no script
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            body,
        )
            .into_response()
    }

    pub(super) async fn css() -> Response {
        cached("text/css; charset=utf-8", Body::from(CSS))
    }

    pub(super) async fn js() -> Response {
        cached("text/javascript; charset=utf-8", Body::from(JS))
    }

    /// The producer's logo (`[manager] logo` in server.toml), or Tessera's when none is set or
    /// it cannot be read (logged).
    pub(super) async fn logo(axum::extract::State(s): axum::extract::State<Shared>) -> Response {
        if let Some(path) = &s.server.config.manager.logo {
            let path = s.server.data.join(path);
            let kind = match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("png") => Some("image/png"),
                Some("svg") => Some("image/svg+xml"),
                Some("jpg" | "jpeg") => Some("image/jpeg"),
                Some("webp") => Some("image/webp"),
                _ => None,
            };
            match (kind, tokio::fs::read(&path).await) {
                (Some(kind), Ok(bytes)) if bytes.len() <= 256 * 1024 => {
                    return cached(kind, Body::from(bytes))
                }
                (None, _) => {
                    tracing::warn!(path = %path.display(), "[manager] logo: not a PNG, SVG, JPEG or WebP file; showing Tessera's")
                }
                (_, Ok(_)) => {
                    tracing::warn!(path = %path.display(), "[manager] logo: larger than 256 KiB; showing Tessera's")
                }
                (_, Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "[manager] logo: cannot be read; showing Tessera's")
                }
            }
        }
        cached("image/svg+xml", Body::from(LOGO))
    }
}

/// What the API answered when it did not answer what the page asked for.
#[derive(Debug, Clone)]
pub(crate) struct ApiFailure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The problem's `code` (`access_denied`, `invalid_model`, …).
    pub code: String,
    /// The problem's `detail`, in the API's words.
    pub detail: String,
}

impl ApiFailure {
    /// The problem an answer that is not a success carried (its status, `code` and `detail`).
    pub(crate) fn of_problem(status: StatusCode, body: &[u8]) -> ApiFailure {
        let problem: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        ApiFailure {
            status,
            code: problem["code"].as_str().unwrap_or("failed").to_string(),
            detail: problem["detail"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the admin API answered {status}")),
        }
    }
}

/// What a raw answer of the API that is not a success carried.
pub(crate) async fn failure_of(r: Response) -> ApiFailure {
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    ApiFailure::of_problem(status, &body)
}

/// A call of the admin API on behalf of the browser of a request: its cookie, its address and
/// (for a change) the CSRF token its form carried.
#[derive(Clone)]
pub(crate) struct Caller {
    api: Router,
    cookie: Option<HeaderValue>,
    address: Option<ConnectInfo<SocketAddr>>,
}

/// A body for the API.
#[allow(dead_code)] // the pages that send text and bytes come with their views
pub(crate) enum Send {
    /// No body.
    Empty,
    /// A JSON body.
    Json(serde_json::Value),
    /// A text body (a model, a reservations file).
    Text(String),
    /// Bytes (`application/octet-stream`: a DER key, an offline response).
    Bytes(Vec<u8>),
}

impl Caller {
    /// Calls the API: the raw answer (for a download the page passes on).
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Send,
        csrf: Option<&str>,
    ) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c.clone());
        }
        if let Some(t) = csrf {
            req = req.header(CSRF_HEADER, t);
        }
        let (kind, body) = match body {
            Send::Empty => (None, Body::empty()),
            Send::Json(v) => (Some("application/json"), Body::from(v.to_string())),
            Send::Text(t) => (Some("text/plain; charset=utf-8"), Body::from(t)),
            Send::Bytes(b) => (Some("application/octet-stream"), Body::from(b)),
        };
        if let Some(k) = kind {
            req = req.header(header::CONTENT_TYPE, k);
        }
        let mut req = match req.body(body) {
            Ok(r) => r,
            Err(e) => return internal(&format!("a request to the admin API: {e}")),
        };
        if let Some(a) = self.address {
            req.extensions_mut().insert(a);
        }
        match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// Calls the API and reads its JSON answer as `T`; an answer that is not a success is the
    /// problem it carried.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Send,
        csrf: Option<&str>,
    ) -> Result<T, ApiFailure> {
        let r = self.raw(method, path, body, csrf).await;
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024 * 1024)
            .await
            .map_err(|e| ApiFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal".into(),
                detail: format!("the admin API's answer could not be read: {e}"),
            })?;
        if status.is_success() {
            // 204: no body; `()` and `Option` read it as null
            let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(bytes).map_err(|e| ApiFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal".into(),
                detail: format!("the admin API answered what this page cannot read: {e}"),
            });
        }
        Err(ApiFailure::of_problem(status, &bytes))
    }

    /// `GET path` as `T`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.call(Method::GET, path, Send::Empty, None).await
    }
}

/// The Cookie header of a request, for the API call.
fn cookie_of(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(header::COOKIE).cloned()
}

/// The visitor of a page who may not be logged in (the login and password pages).
pub(crate) struct Visitor {
    /// Calls the API for them.
    pub api: Caller,
    /// The state.
    pub state: Shared,
    /// The flash message a redirect left, if any.
    pub flash: Option<String>,
}

impl FromRequestParts<Shared> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        let Some(Api(api)) = parts.extensions.get::<Api>().cloned() else {
            return Err(internal(
                "the manager's routes were served without the admin API",
            ));
        };
        Ok(Visitor {
            api: Caller {
                api,
                cookie: cookie_of(&parts.headers),
                address: parts.extensions.get::<ConnectInfo<SocketAddr>>().copied(),
            },
            state: s.clone(),
            flash: flash_of(&parts.headers),
        })
    }
}

impl Visitor {
    /// The visitor's session when they are logged in and need not change their password: the
    /// user, the session's CSRF token, and whether they are an administrator.
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Option<(String, String, bool)> {
        let s = &self.state;
        let p = s
            .sessions
            .resume(&s.server.store, &Method::GET, headers, s.server.clock.now())
            .await
            .ok()??;
        let Credential::Session { csrf } = p.credential else {
            return None;
        };
        match s.server.store.get_user(&p.user).await {
            Ok(Some(u)) if !u.must_change_password => {
                Some((p.user, csrf, p.role.allows(Role::Administrator)))
            }
            _ => None,
        }
    }
}

/// A logged-in user's page: who they are, their session's CSRF token, and how to call the API
/// for them. Without a session the request goes to the login page; after a session ended, to the
/// login page saying so; while the password must be changed, to the password page.
pub(crate) struct Page {
    /// Calls the API for the user.
    pub api: Caller,
    /// The state.
    pub state: Shared,
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// The session's CSRF token (every form's hidden `csrf`).
    pub csrf: String,
    /// The flash message a redirect left, if any.
    pub flash: Option<String>,
    /// Rows per page (the browser's setting, `page_size` cookie; 50 by default).
    pub page_size: u32,
}

impl FromRequestParts<Shared> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> Result<Self, Response> {
        let visitor = Visitor::from_request_parts(parts, s).await?;
        let store = &s.server.store;
        let now = s.server.clock.now();
        // a read: the CSRF token is checked where the change is made (by the API)
        let principal = match s
            .sessions
            .resume(store, &Method::GET, &parts.headers, now)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => return Err(to_login(parts, false)),
            Err(AuthError::Refused(Refused::ExpiredSession | Refused::UnknownSession)) => {
                return Err(to_login(parts, true))
            }
            Err(AuthError::Refused(_)) => return Err(to_login(parts, false)),
            Err(e) => {
                return Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The license server could not read its store",
                    &format!("{e}; try again in a moment"),
                ))
            }
        };
        let Credential::Session { csrf } = principal.credential else {
            return Err(to_login(parts, false));
        };
        match store.get_user(&principal.user).await {
            Ok(Some(u)) if u.must_change_password => {
                return Err(Redirect::to("/password?first=1").into_response())
            }
            Ok(_) => {}
            Err(e) => {
                return Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The license server could not read its store",
                    &format!("{e}; try again in a moment"),
                ))
            }
        }
        Ok(Page {
            page_size: page_size_of(&parts.headers),
            api: visitor.api,
            state: visitor.state,
            flash: visitor.flash,
            user: principal.user,
            role: principal.role,
            csrf,
        })
    }
}

impl Page {
    /// The frame of a page titled `title`, under the menu entry `section`.
    pub(crate) async fn base(&self, title: &str, section: &'static str) -> Base {
        Base {
            title: title.to_string(),
            section,
            user: Some(self.user.clone()),
            admin: self.role.allows(Role::Administrator),
            csrf: self.csrf.clone(),
            brand: Brand::of(&self.state),
            flash: self.flash.clone(),
            banners: banners::for_page(self).await,
        }
    }

    /// Sends a change to the API with the form's CSRF token, reading the answer as `T`.
    #[allow(dead_code)] // used by the views that change things
    pub(crate) async fn change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Send,
        form_csrf: &str,
    ) -> Result<T, ApiFailure> {
        self.api.call(method, path, body, Some(form_csrf)).await
    }
}

/// What every page's frame shows: the title, the menu (with the current entry marked), the user,
/// the product's name and logo, a flash message and the banners.
pub(crate) struct Base {
    /// The page's title.
    pub title: String,
    /// The menu entry the page is under.
    pub section: &'static str,
    /// The user logged in (none on the login pages).
    pub user: Option<String>,
    /// The user may change things.
    pub admin: bool,
    /// The session's CSRF token.
    pub csrf: String,
    /// The product's name, logo and menu labels.
    pub brand: Brand,
    /// The message a redirect left.
    pub flash: Option<String>,
    /// The warnings shown on every page.
    pub banners: Vec<banners::Banner>,
}

impl Base {
    /// The frame of a page for a visitor who is not logged in.
    pub(crate) fn visitor(state: &Shared, title: &str, flash: Option<String>) -> Base {
        Base {
            title: title.to_string(),
            section: "",
            user: None,
            admin: false,
            csrf: String::new(),
            brand: Brand::of(state),
            flash,
            banners: Vec::new(),
        }
    }

    /// The menu: its groups, each with its entries, labels as the producer named them.
    pub(crate) fn menu(&self) -> Vec<MenuGroup> {
        MENU.iter()
            .map(|(group, entries)| MenuGroup {
                label: self.brand.label(group, group),
                entries: entries
                    .iter()
                    .map(|(section, path, label)| MenuEntry {
                        path,
                        label: self.brand.label(section, label),
                        current: *section == self.section,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A group of the menu.
pub(crate) struct MenuGroup {
    /// Its heading.
    pub label: String,
    /// Its entries.
    pub entries: Vec<MenuEntry>,
}

/// An entry of the menu.
pub(crate) struct MenuEntry {
    /// Where it leads.
    pub path: &'static str,
    /// What it says.
    pub label: String,
    /// It is the page shown.
    pub current: bool,
}

/// A menu entry's section key, path and default label.
type Entry = (&'static str, &'static str, &'static str);

/// The menu: groups, and in each (section key, path, default label).
const MENU: &[(&str, &[Entry])] = &[
    (
        "Licenses",
        &[
            ("features", "/features", "Features"),
            ("devices", "/devices", "Devices"),
            ("usage", "/usage", "Usage history"),
            ("denials", "/denials", "Denials"),
        ],
    ),
    (
        "Seat policy",
        &[
            ("reservations", "/reservations", "Reservations"),
            ("pools", "/pools", "Named license pools"),
            ("named-users", "/named-users", "Named users"),
        ],
    ),
    (
        "Back office",
        &[
            ("online", "/updates/online", "Online server updates"),
            ("offline", "/updates/offline", "Offline server updates"),
            ("client-keys", "/client-keys", "Client key operations"),
        ],
    ),
    (
        "License server setup",
        &[
            ("properties", "/properties", "Properties"),
            ("users", "/users", "Users and roles"),
            ("tokens", "/tokens", "API tokens"),
            ("audit", "/audit", "Audit log"),
            ("password", "/password", "Reset password"),
        ],
    ),
    (
        "Manager",
        &[
            ("settings", "/settings", "Settings"),
            ("about", "/about", "About"),
        ],
    ),
];

/// The producer's branding (`[manager]` in server.toml): the product's name, its logo, and menu
/// labels by section key.
#[derive(Debug, Clone)]
pub(crate) struct Brand {
    /// The product's name, in the title and the header.
    pub product: String,
    /// Labels by section key (`features = "Licenses"`).
    labels: std::collections::BTreeMap<String, String>,
}

impl Brand {
    fn of(s: &Shared) -> Brand {
        let m = &s.server.config.manager;
        Brand {
            product: m.product_name.clone(),
            labels: m.labels.clone(),
        }
    }

    /// The label of a menu entry: the producer's, or `default`.
    pub(crate) fn label(&self, key: &str, default: &str) -> String {
        self.labels
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

pub(crate) mod banners {
    //! The warnings on every page: seats used beyond the license (over-use), the server's own
    //! license near its expiry, no sync with the back office for a week.
    use super::*;
    use tessera_core::time::format_description::well_known::Rfc3339;
    use tessera_core::time::{Duration, OffsetDateTime};
    use tessera_wire::admin::Status;

    /// A warning.
    pub(crate) struct Banner {
        /// `warn` or `alert`.
        pub level: &'static str,
        /// What is wrong and what to do.
        pub text: String,
    }

    /// The banners for a page, from the API's status (none when it cannot be read: the page says
    /// what failed itself).
    pub(crate) async fn for_page(page: &Page) -> Vec<Banner> {
        let Ok(status) = page.api.get::<Status>("/api/v1/admin/status").await else {
            return Vec::new();
        };
        of(&status)
    }

    /// A bundle expiring within this is warned about (unless it was renewed lately).
    pub(crate) const EXPIRY_WARNING: Duration = Duration::days(30);
    /// A sync older than this is warned about (and a bundle not renewed for this long).
    pub(crate) const SYNC_WARNING: Duration = Duration::days(7);

    /// How a time is shown in a banner (the day, UTC).
    fn day(t: OffsetDateTime) -> String {
        format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    }

    /// The banners a status calls for: over-use, a bundle that expired or expires within 30 days
    /// without having been renewed for 7 (a bundle the daily sync renews is not warned about), no
    /// sync with the back office for 7 days (or none ever, for a server activated online), no
    /// licenses yet.
    pub(crate) fn of(status: &Status) -> Vec<Banner> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        let now = parse(&status.server_time);
        let mut out = Vec::new();
        for f in &status.features {
            if let Some(count) = f.count {
                if f.used > u64::from(count) {
                    out.push(Banner {
                        level: "alert",
                        text: format!(
                            "Over-use: {} {} has {} seats in use for a license of {} ({} overdraft). Ask your producer for more seats or return some.",
                            f.name, f.version, f.used, count, f.used - u64::from(count)
                        ),
                    });
                }
            }
        }
        if let (Some(now), Some(exp)) = (now, parse(&status.bundle_expires)) {
            let renewed = parse(&status.bundle_issued).is_some_and(|iat| now - iat < SYNC_WARNING);
            if exp <= now {
                out.push(Banner {
                    level: "alert",
                    text: format!(
                        "This server's license expired on {}: it grants no seats until it is renewed. Sync with the back office (Back office → Online server updates) or apply an offline update response.",
                        day(exp)
                    ),
                });
            } else if exp - now < EXPIRY_WARNING && !renewed {
                out.push(Banner {
                    level: "warn",
                    text: format!(
                        "This server's license expires on {} (in {} days) and has not been renewed for {} days: sync with the back office, or apply an offline update response, before then.",
                        day(exp),
                        (exp - now).whole_days(),
                        parse(&status.bundle_issued).map_or(0, |iat| (now - iat).whole_days())
                    ),
                });
            }
        }
        if status.online {
            match (now, parse(&status.last_sync)) {
                (_, None) => out.push(Banner {
                    level: "warn",
                    text: "This server has never synced with its back office: sync now (Back office → Online server updates) so its license is renewed and its use reported.".into(),
                }),
                (Some(now), Some(last)) if now - last > SYNC_WARNING => out.push(Banner {
                    level: "warn",
                    text: format!(
                        "The last successful sync with the back office was {} days ago ({}): check that the server can reach it, then sync now (Back office → Online server updates).",
                        (now - last).whole_days(),
                        day(last)
                    ),
                }),
                _ => {}
            }
        }
        if !status.activated {
            out.push(Banner {
                level: "warn",
                text: "This license server has no licenses yet: activate them under Back office → Online server updates (or offline).".into(),
            });
        }
        out
    }
}

/// The templates' own filters.
pub(crate) mod filters {
    /// Seats in use beyond a record's count (`{% if f.used|over(f.count) %}`); never when
    /// uncounted.
    pub(crate) fn over(used: &u64, count: &Option<u32>) -> askama::Result<bool> {
        Ok(count.is_some_and(|c| *used > u64::from(c)))
    }
}

/// The flash message a redirect left (the `tessera_flash` cookie), if any.
fn flash_of(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, FLASH_COOKIE).and_then(|v| {
        let bytes = hex::decode(v).ok()?;
        String::from_utf8(bytes).ok()
    })
}

fn page_size_of(headers: &HeaderMap) -> u32 {
    cookie_value(headers, "page_size")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (1..=500).contains(n))
        .unwrap_or(50)
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

const FLASH_COOKIE: &str = "tessera_flash";

/// A redirect to `to` (after a change: post, redirect, get) that shows `message` on the next page.
pub(crate) fn done(to: &str, message: &str) -> Response {
    let cookie = format!(
        "{FLASH_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60",
        hex::encode(message.as_bytes())
    );
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The login page, saying the session ended when it did; back to where the user was after.
fn to_login(parts: &Parts, ended: bool) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/");
    let mut to = format!("/login?next={}", urlencode(next));
    if ended {
        to.push_str("&ended=1");
    }
    Redirect::to(&to).into_response()
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A rendered page (200), with its flash cookie cleared when it showed one.
pub(crate) fn render(t: &impl Template, base: &Base) -> Response {
    render_status(StatusCode::OK, t, base)
}

/// A rendered page with a status (422 for a form shown again with the API's refusal).
pub(crate) fn render_status(status: StatusCode, t: &impl Template, base: &Base) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, no_store(), Html(html)).into_response();
            if base.flash.is_some() {
                let clear =
                    format!("{FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
                if let Ok(v) = HeaderValue::from_str(&clear) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => internal(&format!("a page could not be rendered: {e}")),
    }
}

/// Pages are not cached (they show live state and a CSRF token) nor framed.
fn no_store() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    ]
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    base: Base,
    heading: String,
    detail: String,
}

/// A page that says what went wrong (no menu: it may be shown before a login).
pub(crate) fn error_page(status: StatusCode, heading: &str, detail: &str) -> Response {
    let base = Base {
        title: heading.to_string(),
        section: "",
        user: None,
        admin: false,
        csrf: String::new(),
        brand: Brand {
            product: "Tessera License Server".into(),
            labels: Default::default(),
        },
        flash: None,
        banners: Vec::new(),
    };
    let t = ErrorPage {
        heading: heading.to_string(),
        detail: detail.to_string(),
        base,
    };
    match t.render() {
        Ok(html) => (status, no_store(), Html(html)).into_response(),
        Err(_) => (status, format!("{heading}: {detail}")).into_response(),
    }
}

/// A fault inside the server, logged with an id the page names.
fn internal(what: &str) -> Response {
    let id = hex::encode(rand::random::<[u8; 6]>());
    tracing::error!(error_id = %id, "{what}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong inside the license server",
        &format!("It is logged with id {id}; tell your administrator the id."),
    )
}

/// How a page shows an API refusal it cannot show beside a form: access denied gets its own
/// page; a session that ended goes to the login page; the rest is an error page with the API's
/// words.
pub(crate) fn failed(page: &Page, f: ApiFailure) -> Response {
    let _ = page;
    failure_page(f)
}

/// As [`failed`], without a page.
pub(crate) fn failure_page(f: ApiFailure) -> Response {
    match (f.status, f.code.as_str()) {
        (StatusCode::UNAUTHORIZED, _) => Redirect::to("/login?ended=1").into_response(),
        (_, "password_change_required") => Redirect::to("/password?first=1").into_response(),
        (StatusCode::FORBIDDEN, "access_denied") => {
            error_page(StatusCode::FORBIDDEN, "Access denied", &f.detail)
        }
        (status, _) => error_page(status, "The license server refused", &f.detail),
    }
}

/// The pager under a list: the total and links to the pages around this one.
pub(crate) struct Pager {
    /// Rows matching, on every page.
    pub total: u64,
    /// This page, from 1.
    pub page: u32,
    /// The last page (at least 1).
    pub last: u32,
    /// The link to a page, but for its number (`/features?q=x&page=`).
    pub base_href: String,
}

impl Pager {
    /// A pager for `total` rows of `page_size`, linked by `href` (ending in `page=`).
    pub(crate) fn new(total: u64, page: u32, page_size: u32, base_href: String) -> Pager {
        let size = u64::from(page_size.max(1));
        let last = u32::try_from(total.div_ceil(size).max(1)).unwrap_or(u32::MAX);
        Pager {
            total,
            page,
            last,
            base_href,
        }
    }

    /// The page numbers to link: the first, the last, and two on each side of this one.
    pub(crate) fn numbers(&self) -> Vec<u32> {
        let mut v: Vec<u32> = (self.page.saturating_sub(2).max(1)
            ..=self.page.saturating_add(2).min(self.last))
            .collect();
        if !v.contains(&1) {
            v.insert(0, 1);
        }
        if !v.contains(&self.last) {
            v.push(self.last);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_links_the_ends_and_the_neighbours() {
        let p = Pager::new(1000, 10, 50, "/x?page=".into());
        assert_eq!(p.last, 20);
        assert_eq!(p.numbers(), vec![1, 8, 9, 10, 11, 12, 20]);
        let p = Pager::new(0, 1, 50, String::new());
        assert_eq!((p.last, p.numbers()), (1, vec![1]));
    }

    #[test]
    fn banners_warn_of_expiry_and_of_no_sync() {
        use tessera_wire::admin::Status;
        let status = |issued: &str, expires: &str, online: bool, last: Option<&str>| Status {
            hostid: "ethernet=00".into(),
            activated: true,
            features: vec![],
            leases: 0,
            server_time: Some("2026-06-20T12:00:00Z".into()),
            bundle_issued: Some(issued.into()),
            bundle_expires: Some(expires.into()),
            online,
            last_sync: last.map(str::to_string),
            backoffice_url: online.then(|| "http://bo.example".to_string()),
        };
        let texts =
            |s: &Status| -> Vec<String> { banners::of(s).into_iter().map(|b| b.text).collect() };
        // renewed yesterday for 30 days, synced yesterday: nothing to say
        let fine = status(
            "2026-06-19T12:00:00Z",
            "2026-07-19T12:00:00Z",
            true,
            Some("2026-06-19T12:00:00Z"),
        );
        assert!(texts(&fine).is_empty(), "{:?}", texts(&fine));
        // not renewed for 10 days, 20 days left, no sync for 10 days: both warnings
        let stale = status(
            "2026-06-10T12:00:00Z",
            "2026-07-10T12:00:00Z",
            true,
            Some("2026-06-10T12:00:00Z"),
        );
        let t = texts(&stale);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].contains("expires on 2026-07-10 (in 20 days)"), "{t:?}");
        assert!(t[1].contains("10 days ago (2026-06-10)"), "{t:?}");
        // a year's bundle in its last month warns even when it was issued … a year ago
        let ending = status("2025-07-01T00:00:00Z", "2026-07-01T00:00:00Z", false, None);
        assert!(texts(&ending)[0].contains("expires on 2026-07-01"));
        // expired: an alert
        let gone = status("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z", false, None);
        let b = banners::of(&gone);
        assert_eq!(b[0].level, "alert");
        assert!(b[0].text.contains("expired on 2026-06-01"), "{}", b[0].text);
        // online but never synced; offline servers are not asked to sync
        let never = status("2026-06-19T12:00:00Z", "2026-07-19T12:00:00Z", true, None);
        assert!(texts(&never)[0].contains("never synced"));
        let offline = status("2026-06-19T12:00:00Z", "2026-07-19T12:00:00Z", false, None);
        assert!(texts(&offline).is_empty());
        // an older server's status (no times) shows no such banner
        let older = Status {
            server_time: None,
            ..stale
        };
        assert!(texts(&older).is_empty(), "{:?}", texts(&older));
    }

    #[test]
    fn a_query_value_is_encoded() {
        assert_eq!(urlencode("/features?q=a b&x"), "/features%3Fq%3Da%20b%26x");
    }

    #[test]
    fn flash_and_page_size_are_read_from_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "a=1; {FLASH_COOKIE}={}; page_size=25",
                hex::encode("Saved.")
            ))
            .unwrap(),
        );
        assert_eq!(flash_of(&h).as_deref(), Some("Saved."));
        assert_eq!(page_size_of(&h), 25);
        h.insert(header::COOKIE, HeaderValue::from_static("page_size=9999"));
        assert_eq!(page_size_of(&h), 50);
    }
}
