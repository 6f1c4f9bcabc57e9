//! The license server setup views: Properties (every setting by group, one form whose Save sends
//! only what changed), Users and roles, API tokens and the Audit log. Each is a client of the
//! admin API (`/api/v1/admin/properties`, `/users`, `/tokens`, `/audit`).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tessera_wire::admin::{AuditPage, TokenCreated, TokenInfo, UserCreated, UserView};

use super::{done, failed, render, render_status, urlencode, ApiFailure, Base, Page, Send};
use crate::http::Shared;
use crate::properties::{PropertiesChanged, PropertiesView, PropertyView};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/properties", get(properties).post(save_properties))
        .route("/users", get(users).post(create_user))
        .route("/users/{name}/role", post(set_role))
        .route("/users/{name}/delete", post(delete_user))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/tokens/rotate-startup", post(rotate_startup_token))
        .route("/audit", get(audit))
}

/// Whether a failure is one a page cannot show beside its form (access denied, a session that
/// ended): those get [`failed`].
fn not_for_the_form(e: &ApiFailure) -> bool {
    matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED)
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A property as the form shows it.
pub(crate) struct PropRow {
    /// Its key in `server.toml`.
    pub key: String,
    /// What it is.
    pub label: String,
    /// What it does.
    pub description: String,
    /// `number`, `switch`, `text`, `path` or `hour`.
    pub kind: String,
    /// The range of a number.
    pub min: Option<u64>,
    /// The range of a number.
    pub max: Option<u64>,
    /// Whether it may be left empty (unset).
    pub optional: bool,
    /// The value the running server uses.
    pub in_force: String,
    /// What `server.toml` says (empty: not set).
    pub configured: String,
    /// The default (empty: none).
    pub default: String,
    /// `at once`, `at the next start` or `read-only`.
    pub applies: &'static str,
    /// Whether the form may change it.
    pub editable: bool,
    /// Why not (locked by the producer, or read-only and how to change it instead).
    pub reason: Option<String>,
    /// Locked by the producer.
    pub locked: bool,
    /// `server.toml` says something the running server uses only after a restart.
    pub restart_pending: bool,
    /// What the field holds (the value as typed after a refusal).
    pub value: String,
    /// What the field held when the page was made (to send only what changed).
    pub original: String,
}

/// A group of properties as shown.
pub(crate) struct GroupRows {
    /// Its id (the section's anchor).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its properties.
    pub rows: Vec<PropRow>,
}

/// The Properties view: every setting by group, in one form.
#[derive(Template)]
#[template(path = "ui/properties.html")]
struct PropertiesPage {
    base: Base,
    groups: Vec<GroupRows>,
    file: String,
    error: Option<String>,
    pending: usize,
}

/// A JSON value as a field shows it.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// What a property's field holds at first: what `server.toml` says, or the default when it says
/// nothing and the property may not be unset.
fn field_value(p: &PropertyView) -> String {
    if !p.configured.is_null() || p.optional {
        text_of(&p.configured)
    } else {
        text_of(&p.default)
    }
}

/// The rows of every group, with the values typed (`typed`, by key) in place of the stored ones.
fn rows_of(view: &PropertiesView, typed: &BTreeMap<String, String>) -> Vec<GroupRows> {
    view.groups
        .iter()
        .map(|g| GroupRows {
            id: g.id.clone(),
            title: g.title.clone(),
            rows: g
                .properties
                .iter()
                .map(|p| {
                    let original = field_value(p);
                    PropRow {
                        key: p.key.clone(),
                        label: p.label.clone(),
                        description: p.description.clone(),
                        kind: p.kind.clone(),
                        min: p.min,
                        max: p.max,
                        optional: p.optional,
                        in_force: text_of(&p.in_force),
                        configured: text_of(&p.configured),
                        default: text_of(&p.default),
                        applies: match p.applies.as_str() {
                            _ if p.locked.is_some() => "fixed by the producer",
                            "live" => "at once",
                            "restart" => "at the next start",
                            _ => "read-only",
                        },
                        editable: p.editable,
                        reason: p.read_only_reason.clone(),
                        locked: p.locked.is_some(),
                        restart_pending: p.restart_pending,
                        value: typed
                            .get(&p.key)
                            .cloned()
                            .unwrap_or_else(|| original.clone()),
                        original,
                    }
                })
                .collect(),
        })
        .collect()
}

async fn properties_page(
    page: &Page,
    typed: &BTreeMap<String, String>,
    error: Option<ApiFailure>,
) -> Response {
    let view = match page
        .api
        .get::<PropertiesView>("/api/v1/admin/properties")
        .await
    {
        Ok(v) => v,
        Err(e) => return failed(page, e),
    };
    let pending = view
        .groups
        .iter()
        .flat_map(|g| &g.properties)
        .filter(|p| p.restart_pending)
        .count();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let t = PropertiesPage {
        base: page.base("Properties", "properties").await,
        groups: rows_of(&view, typed),
        file: view.file.clone(),
        error: error.map(|e| e.detail),
        pending,
    };
    render_status(status, &t, &t.base)
}

async fn properties(page: Page) -> Response {
    properties_page(&page, &BTreeMap::new(), None).await
}

/// The value to send for what was typed into a property's field: by its kind; empty unsets it.
/// Text that is not a number is sent as it is, for the API to say what is wrong with it.
fn typed_value(kind: &str, text: &str) -> Value {
    let text = text.trim();
    if text.is_empty() {
        return Value::Null;
    }
    match kind {
        "number" | "hour" => text
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        "switch" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_string()),
        },
        _ => Value::String(text.to_string()),
    }
}

/// The fields of the properties form: values typed (`v.KEY`), values shown (`o.KEY`), the token.
fn read_properties_form(
    fields: &[(String, String)],
) -> (BTreeMap<String, String>, BTreeMap<String, String>, String) {
    let (mut typed, mut shown, mut csrf) = (BTreeMap::new(), BTreeMap::new(), String::new());
    for (name, value) in fields {
        if let Some(k) = name.strip_prefix("v.") {
            typed.insert(k.to_string(), value.clone());
        } else if let Some(k) = name.strip_prefix("o.") {
            shown.insert(k.to_string(), value.clone());
        } else if name == "csrf" {
            csrf.clone_from(value);
        }
    }
    (typed, shown, csrf)
}

/// The changes of a properties form: each property whose field differs from what it showed.
fn changes(
    view: &PropertiesView,
    typed: &BTreeMap<String, String>,
    shown: &BTreeMap<String, String>,
) -> BTreeMap<String, Value> {
    let kinds: BTreeMap<&str, &str> = view
        .groups
        .iter()
        .flat_map(|g| &g.properties)
        .map(|p| (p.key.as_str(), p.kind.as_str()))
        .collect();
    typed
        .iter()
        .filter(|(k, v)| shown.get(*k).map(|s| s.trim()) != Some(v.trim()))
        .map(|(k, v)| {
            let kind = kinds.get(k.as_str()).copied().unwrap_or("text");
            (k.clone(), typed_value(kind, v))
        })
        .collect()
}

async fn save_properties(page: Page, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let (typed, shown, csrf) = read_properties_form(&fields);
    let view = match page
        .api
        .get::<PropertiesView>("/api/v1/admin/properties")
        .await
    {
        Ok(v) => v,
        Err(e) => return failed(&page, e),
    };
    let values = changes(&view, &typed, &shown);
    if values.is_empty() {
        return done(
            "/properties",
            "Nothing was saved: no value differs from what the page showed.",
        );
    }
    match page
        .change::<PropertiesChanged>(
            Method::PUT,
            "/api/v1/admin/properties",
            Send::Json(json!({ "values": values })),
            &csrf,
        )
        .await
    {
        Ok(c) => done("/properties", &saved_message(&c)),
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(mut e) => {
            e.detail = format!("Nothing was saved: {}", e.detail);
            properties_page(&page, &typed, Some(e)).await
        }
    }
}

/// What a save did, in words: which changes apply now and which at the next start.
fn saved_message(c: &PropertiesChanged) -> String {
    let mut parts = vec!["Saved to server.toml.".to_string()];
    if !c.applied_now.is_empty() {
        parts.push(format!("In force at once: {}.", c.applied_now.join(", ")));
    }
    if !c.after_restart.is_empty() {
        parts.push(format!(
            "Restart the license server for these to take effect: {}.",
            c.after_restart.join(", ")
        ));
    }
    if c.applied_now.is_empty() && c.after_restart.is_empty() {
        parts = vec!["Nothing changed: every value given was the one in server.toml.".into()];
    }
    parts.join(" ")
}

// ---------------------------------------------------------------------------------------------
// Users and roles

/// The Users and roles view (with a user just created and their first password, once).
#[derive(Template)]
#[template(path = "ui/users.html")]
struct UsersPage {
    base: Base,
    users: Vec<UserView>,
    /// A user just created and their first password, shown once.
    created: Option<(String, String, Option<String>)>,
    error: Option<String>,
    name: String,
}

async fn users_page(
    page: &Page,
    created: Option<(String, String, Option<String>)>,
    error: Option<ApiFailure>,
    name: String,
    ok: StatusCode,
) -> Response {
    let users = match page.api.get::<Vec<UserView>>("/api/v1/admin/users").await {
        Ok(u) => u,
        Err(e) => return failed(page, e),
    };
    let status = error.as_ref().map_or(ok, |e| e.status);
    let t = UsersPage {
        base: page.base("Users and roles", "users").await,
        users,
        created,
        error: error.map(|e| e.detail),
        name,
    };
    render_status(status, &t, &t.base)
}

async fn users(page: Page) -> Response {
    users_page(&page, None, None, String::new(), StatusCode::OK).await
}

/// The new user form.
#[derive(Debug, Deserialize)]
pub(super) struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    csrf: String,
}

async fn create_user(page: Page, Form(f): Form<NewUserForm>) -> Response {
    let name = f.name.trim().to_string();
    if name.is_empty() {
        let e = ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_request".into(),
            detail: "Give the new user's name.".into(),
        };
        return users_page(&page, None, Some(e), name, StatusCode::OK).await;
    }
    match page
        .change::<UserCreated>(
            Method::POST,
            "/api/v1/admin/users",
            Send::Json(json!({"name": name, "role": f.role})),
            &f.csrf,
        )
        .await
    {
        // shown here, once: not kept in a redirect's cookie
        Ok(c) => {
            let role = role_label(&c.user.role).to_string();
            let created = Some((c.user.name.clone(), role, c.password));
            users_page(&page, created, None, String::new(), StatusCode::CREATED).await
        }
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => users_page(&page, None, Some(e), name, StatusCode::OK).await,
    }
}

/// A role change.
#[derive(Debug, Deserialize)]
pub(super) struct RoleForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    csrf: String,
}

async fn set_role(page: Page, Path(name): Path<String>, Form(f): Form<RoleForm>) -> Response {
    match page
        .change::<UserView>(
            Method::PUT,
            &format!("/api/v1/admin/users/{}/role", urlencode(&name)),
            Send::Json(json!({"role": f.role})),
            &f.csrf,
        )
        .await
    {
        Ok(u) => done(
            "/users",
            &format!(
                "{} has the role {} now; their browser sessions ended.",
                u.name,
                role_label(&u.role)
            ),
        ),
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => users_page(&page, None, Some(e), String::new(), StatusCode::OK).await,
    }
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn delete_user(page: Page, Path(name): Path<String>, Form(f): Form<CsrfForm>) -> Response {
    match page
        .change::<()>(
            Method::DELETE,
            &format!("/api/v1/admin/users/{}", urlencode(&name)),
            Send::Empty,
            &f.csrf,
        )
        .await
    {
        Ok(()) => done(
            "/users",
            &format!("{name} is deleted, with their API tokens and sessions."),
        ),
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => users_page(&page, None, Some(e), String::new(), StatusCode::OK).await,
    }
}

/// A role's name for a person.
pub(crate) fn role_label(role: &str) -> &str {
    match role {
        "admin" => "administrator",
        "read_only" => "read-only",
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// API tokens

/// The API tokens view (with a token just created, once).
#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    base: Base,
    tokens: Vec<TokenInfo>,
    created: Option<TokenCreated>,
    /// The token shown is the new start-up token (not one created with the form).
    rotated: bool,
    error: Option<String>,
}

/// `created`: a token to show once, and whether it is the new start-up token.
async fn tokens_page(
    page: &Page,
    created: Option<(TokenCreated, bool)>,
    error: Option<ApiFailure>,
    ok: StatusCode,
) -> Response {
    let tokens = match page.api.get::<Vec<TokenInfo>>("/api/v1/admin/tokens").await {
        Ok(t) => t,
        Err(e) => return failed(page, e),
    };
    let status = error.as_ref().map_or(ok, |e| e.status);
    let t = TokensPage {
        base: page.base("API tokens", "tokens").await,
        tokens,
        rotated: created.as_ref().is_some_and(|(_, rotated)| *rotated),
        created: created.map(|(t, _)| t),
        error: error.map(|e| e.detail),
    };
    render_status(status, &t, &t.base)
}

async fn tokens(page: Page) -> Response {
    tokens_page(&page, None, None, StatusCode::OK).await
}

/// The new token form.
#[derive(Debug, Deserialize)]
pub(super) struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    expires_days: String,
    #[serde(default)]
    csrf: String,
}

async fn create_token(page: Page, Form(f): Form<NewTokenForm>) -> Response {
    let bad = |detail: &str| ApiFailure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_request".into(),
        detail: detail.into(),
    };
    let mut body = serde_json::Map::new();
    let name = f.name.trim();
    if !name.is_empty() {
        body.insert("name".into(), json!(name));
    }
    let user = f.user.trim();
    if !user.is_empty() {
        body.insert("user".into(), json!(user));
    }
    let days = f.expires_days.trim();
    if !days.is_empty() {
        match days.parse::<u32>() {
            Ok(d) if (1..=3650).contains(&d) => {
                body.insert("expires_days".into(), json!(d));
            }
            _ => {
                let e = bad("Expires after: give a number of days from 1 to 3650, or leave it empty for a token that does not expire.");
                return tokens_page(&page, None, Some(e), StatusCode::OK).await;
            }
        }
    }
    match page
        .change::<TokenCreated>(
            Method::POST,
            "/api/v1/admin/tokens",
            Send::Json(Value::Object(body)),
            &f.csrf,
        )
        .await
    {
        Ok(t) => tokens_page(&page, Some((t, false)), None, StatusCode::CREATED).await,
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => tokens_page(&page, None, Some(e), StatusCode::OK).await,
    }
}

/// Replaces the start-up token (the one `server init` printed) with a new one, shown once on the
/// page; the old one stops working at once. The API tokens of users are kept.
async fn rotate_startup_token(page: Page, Form(f): Form<CsrfForm>) -> Response {
    match page
        .change::<TokenCreated>(
            Method::POST,
            "/api/v1/admin/token/rotate",
            Send::Empty,
            &f.csrf,
        )
        .await
    {
        Ok(t) => tokens_page(&page, Some((t, true)), None, StatusCode::OK).await,
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => tokens_page(&page, None, Some(e), StatusCode::OK).await,
    }
}

async fn revoke_token(page: Page, Path(id): Path<String>, Form(f): Form<CsrfForm>) -> Response {
    match page
        .change::<TokenInfo>(
            Method::DELETE,
            &format!("/api/v1/admin/tokens/{}", urlencode(&id)),
            Send::Empty,
            &f.csrf,
        )
        .await
    {
        Ok(t) => done(
            "/tokens",
            &format!(
                "API token {} ({}) of {} is revoked: it stopped working.",
                t.id, t.name, t.user
            ),
        ),
        Err(e) if not_for_the_form(&e) => failed(&page, e),
        Err(e) => tokens_page(&page, None, Some(e), StatusCode::OK).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Audit log

/// A page of the audit log, newest first.
#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditView {
    base: Base,
    log: AuditPage,
    /// This page starts after an entry (not the newest page).
    older: bool,
}

/// Which page of the audit log.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    before: Option<String>,
}

async fn audit(page: Page, Query(q): Query<AuditQuery>) -> Response {
    let limit = page.page_size.clamp(1, 1000);
    let mut path = format!("/api/v1/admin/audit?limit={limit}");
    let before = q.before.as_deref().map(str::trim).filter(|b| !b.is_empty());
    if let Some(b) = before {
        match b.parse::<i64>() {
            Ok(n) => path.push_str(&format!("&before={n}")),
            Err(_) => {
                return super::error_page(
                    StatusCode::BAD_REQUEST,
                    "No such page of the audit log",
                    "The link's `before` is not an entry number: start again from the newest entries (Audit log in the menu).",
                )
            }
        }
    }
    match page.api.get::<AuditPage>(&path).await {
        Ok(log) => {
            let t = AuditView {
                base: page.base("Audit log", "audit").await,
                log,
                older: before.is_some(),
            };
            render(&t, &t.base)
        }
        Err(e) => failed(&page, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::PropertyGroup;

    fn prop(
        key: &str,
        kind: &str,
        configured: Value,
        default: Value,
        optional: bool,
    ) -> PropertyView {
        PropertyView {
            key: key.into(),
            label: key.into(),
            description: String::new(),
            kind: kind.into(),
            min: None,
            max: None,
            optional,
            configured,
            default: default.clone(),
            in_force: default,
            applies: "live".into(),
            editable: true,
            read_only_reason: None,
            locked: None,
            restart_pending: false,
            choices: Vec::new(),
        }
    }

    #[test]
    fn only_the_fields_that_changed_are_sent_by_their_kind() {
        let view = PropertiesView {
            groups: vec![PropertyGroup {
                id: "g".into(),
                title: "G".into(),
                properties: vec![
                    prop("lease_seconds", "number", json!(300), json!(600), false),
                    prop("max_borrow_days", "number", Value::Null, Value::Null, true),
                    prop("cluster", "switch", Value::Null, json!(false), false),
                    prop("log", "text", Value::Null, json!("info"), false),
                ],
            }],
            file: "server.toml".into(),
        };
        let shown = |p: &PropertyView| field_value(p);
        let g = &view.groups[0].properties;
        assert_eq!(
            (shown(&g[0]), shown(&g[1]), shown(&g[2]), shown(&g[3])),
            ("300".into(), String::new(), "false".into(), "info".into())
        );
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let (typed, was, csrf) = read_properties_form(&f(&[
            ("csrf", "t"),
            ("v.lease_seconds", " 600 "),
            ("o.lease_seconds", "300"),
            ("v.max_borrow_days", ""),
            ("o.max_borrow_days", ""),
            ("v.cluster", "true"),
            ("o.cluster", "false"),
            ("v.log", "info"),
            ("o.log", "info"),
        ]));
        assert_eq!(csrf, "t");
        let c = changes(&view, &typed, &was);
        assert_eq!(
            c,
            BTreeMap::from([
                ("cluster".to_string(), json!(true)),
                ("lease_seconds".to_string(), json!(600)),
            ])
        );
        // a number that is not one goes as typed, for the API to say what is wrong
        assert_eq!(typed_value("number", "ten"), json!("ten"));
        assert_eq!(typed_value("path", " "), Value::Null);
    }
}
