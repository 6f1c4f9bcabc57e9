//! The manager's pages in the OpenAPI document (tag `manager`): each path and method with what it
//! answers (an HTML page, a redirect to the login page or after a change, an HTML error page, a
//! download). They are pages for a browser, not an API contract: scripts use `/api/v1/admin/…`.
//! A test checks that this list and the routes the modules serve are the same.

use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, ObjectBuilder, PathItem, Required, ResponseBuilder, Type,
};

/// A page: method, path, what it is.
pub(crate) type Page = (&'static str, &'static str, &'static str);

/// Every page and asset the manager serves.
pub(crate) const PAGES: &[Page] = &[
    (
        "get",
        "/",
        "the manager's first page (the features view, or the login page)",
    ),
    ("get", "/ui/manager.css", "the stylesheet"),
    (
        "get",
        "/ui/manager.js",
        "the script (conveniences only: every form works without it)",
    ),
    (
        "get",
        "/ui/logo",
        "the product's logo (`[manager] logo`) or Tessera's",
    ),
    ("get", "/login", "the login page"),
    (
        "post",
        "/login",
        "logs in (form: user, password, next); to the page asked for, or to the password change",
    ),
    ("post", "/logout", "logs out (form: csrf)"),
    (
        "get",
        "/password",
        "Reset Password: with the current password, or without it in a logged-in session",
    ),
    (
        "post",
        "/password",
        "changes the password (form: user, current, new, confirm, csrf)",
    ),
    (
        "get",
        "/settings",
        "the manager's settings, kept in the browser",
    ),
    (
        "post",
        "/settings",
        "keeps the page size in a cookie (form: page_size)",
    ),
    ("get", "/about", "version, build, system, browser"),
    (
        "get",
        "/features",
        "the features view: summary and details tabs (query: tab, q, prefix, sort, order, page)",
    ),
    (
        "get",
        "/features/{name}",
        "a feature's page: its records and the devices holding it",
    ),
    (
        "get",
        "/devices",
        "the devices view (query: q, prefix, sort, order, page)",
    ),
    (
        "get",
        "/devices/{id}",
        "a device's page: its details and consumed features",
    ),
    (
        "post",
        "/devices/{id}/release",
        "releases every seat the device holds",
    ),
    (
        "get",
        "/reservations",
        "the reservations view: groups, entries and whether each can be satisfied",
    ),
    (
        "post",
        "/reservations",
        "adds a reservation entry to a new or an existing group",
    ),
    (
        "post",
        "/reservations/delete",
        "deletes the reservation groups ticked",
    ),
    (
        "post",
        "/reservations/import",
        "imports a reservations file (multipart)",
    ),
    (
        "get",
        "/reservations/export",
        "the reservations as a JSON file",
    ),
    (
        "get",
        "/pools",
        "the named license pools: per pool and feature, allocated, used, status",
    ),
    ("get", "/pools/model", "the Model tab: the model in force"),
    (
        "post",
        "/pools/model",
        "uploads a model (text or file); a syntax error is shown with its line and column",
    ),
    ("post", "/pools/model/delete", "deletes the model"),
    (
        "get",
        "/named-users",
        "the named-user features with their seats and users",
    ),
    (
        "post",
        "/named-users/{feature}",
        "assigns users to a named-user feature (who was trimmed is shown)",
    ),
    (
        "post",
        "/named-users/{feature}/clear",
        "unassigns every user of a feature",
    ),
    (
        "get",
        "/properties",
        "the license server's properties, grouped; locked ones read-only",
    ),
    (
        "post",
        "/properties",
        "saves the changed properties; says which need a restart",
    ),
    ("get", "/users", "the users and their roles"),
    (
        "post",
        "/users",
        "creates a user (the first password shown once)",
    ),
    ("post", "/users/{name}/role", "changes a user's role"),
    ("post", "/users/{name}/delete", "deletes a user"),
    ("get", "/tokens", "the API tokens"),
    ("post", "/tokens", "creates an API token (shown once)"),
    ("post", "/tokens/{id}/revoke", "revokes an API token"),
    (
        "post",
        "/tokens/rotate-startup",
        "replaces the start-up token (the new one shown once)",
    ),
    ("get", "/audit", "the audit log, newest first"),
    (
        "get",
        "/updates/online",
        "online server updates: activations and Refresh",
    ),
    (
        "post",
        "/updates/online/activate",
        "activates activation IDs with counts at the back office",
    ),
    (
        "post",
        "/updates/online/sync",
        "syncs with the back office now (Refresh)",
    ),
    (
        "get",
        "/updates/offline",
        "offline server updates: request files out, response files in",
    ),
    (
        "post",
        "/updates/offline/update-request",
        "downloads the renewal (capability) request file",
    ),
    (
        "post",
        "/updates/offline/request",
        "downloads an activation request file for activation IDs",
    ),
    (
        "post",
        "/updates/offline/apply",
        "uploads the back office's response file (multipart)",
    ),
    (
        "post",
        "/updates/offline/confirmation",
        "downloads the confirmation file",
    ),
    ("get", "/client-keys", "the client keys"),
    (
        "post",
        "/client-keys",
        "uploads a client public key (DER file, multipart)",
    ),
    ("post", "/client-keys/{id}/delete", "deletes a client key"),
    (
        "get",
        "/usage",
        "usage history per feature: used against the count over time, as an SVG chart",
    ),
    (
        "get",
        "/denials",
        "the denial report (and overdraft use): who was refused what, when and why",
    ),
    (
        "get",
        "/denials.csv",
        "the denial report as CSV, with the page's filters",
    ),
];

/// Pages that answer a file rather than a page: (method, path, content type).
const FILES: &[(&str, &str, &str)] = &[
    ("get", "/reservations/export", "application/json"),
    ("get", "/denials.csv", "text/csv; charset=utf-8"),
    (
        "post",
        "/updates/offline/update-request",
        "text/plain; charset=utf-8",
    ),
    (
        "post",
        "/updates/offline/request",
        "text/plain; charset=utf-8",
    ),
    (
        "post",
        "/updates/offline/confirmation",
        "text/plain; charset=utf-8",
    ),
];

/// Pages whose form is sent as `multipart/form-data` (a file).
const MULTIPART: &[&str] = &[
    "/reservations/import",
    "/pools/model",
    "/updates/offline/apply",
    "/client-keys",
];

fn html(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "text/html; charset=utf-8",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
        .build()
}

fn operation(method: &str, path: &str, summary: &str) -> Operation {
    let mut op = OperationBuilder::new()
        .tag("manager")
        .summary(Some(summary))
        .response(
            "303",
            ResponseBuilder::new()
                .description("to the login page (no session, or it ended), to the password change, or to the next page after a change")
                .build(),
        )
        .response("4XX", html("the page again with what was wrong, or an error page: access denied (a read-only user's change), a form without the session's CSRF token, a page that does not exist"))
        .response("5XX", html("an error page naming what failed (a store that does not answer: try again)"));
    if let Some((_, _, kind)) = FILES.iter().find(|(m, p, _)| *m == method && *p == path) {
        op = op.response(
            "200",
            ResponseBuilder::new()
                .description("the file, as an attachment")
                .content(*kind, ContentBuilder::new().build())
                .build(),
        );
        if method == "post" {
            op = op.request_body(Some(form_body("application/x-www-form-urlencoded")));
        }
        return with_parameters(op, path).build();
    }
    op = match (method, path) {
        ("get", "/ui/manager.css") => op.response(
            "200",
            ResponseBuilder::new()
                .description("the stylesheet")
                .content("text/css; charset=utf-8", ContentBuilder::new().build())
                .build(),
        ),
        ("get", "/ui/manager.js") => op.response(
            "200",
            ResponseBuilder::new()
                .description("the script")
                .content(
                    "text/javascript; charset=utf-8",
                    ContentBuilder::new().build(),
                )
                .build(),
        ),
        ("get", "/ui/logo") => op.response(
            "200",
            ResponseBuilder::new()
                .description("the logo (SVG, PNG, JPEG or WebP)")
                .content("image/*", ContentBuilder::new().build())
                .build(),
        ),
        ("get", _) => op.response("200", html("the page")),
        _ => op
            .response("200", html("the page with the outcome"))
            .request_body(Some(form_body(if MULTIPART.contains(&path) {
                "multipart/form-data"
            } else {
                "application/x-www-form-urlencoded"
            }))),
    };
    with_parameters(op, path).build()
}

fn form_body(kind: &str) -> utoipa::openapi::request_body::RequestBody {
    utoipa::openapi::request_body::RequestBodyBuilder::new()
        .content(
            kind,
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build()
}

/// The path's `{parameters}`, documented.
fn with_parameters(mut op: OperationBuilder, path: &str) -> OperationBuilder {
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    op
}

/// Adds the manager's pages to the OpenAPI document.
#[derive(Debug)]
pub(crate) struct ManagerPages;

impl utoipa::Modify for ManagerPages {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (method, path, summary) in PAGES {
            let http = match *method {
                "post" => HttpMethod::Post,
                "put" => HttpMethod::Put,
                "delete" => HttpMethod::Delete,
                _ => HttpMethod::Get,
            };
            let item = PathItem::new(http, operation(method, path, summary));
            match openapi.paths.paths.get_mut(*path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    openapi.paths.paths.insert(path.to_string(), item);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PAGES;

    /// The (method, path) of every `.route("PATH", get(..).post(..))` in the manager's modules.
    fn routes_in_source() -> Vec<(String, String)> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("auth.rs"),
            include_str!("setup.rs"),
            include_str!("features.rs"),
            include_str!("admin.rs"),
            include_str!("backoffice.rs"),
            include_str!("policy.rs"),
            include_str!("history.rs"),
        ];
        let mut out = Vec::new();
        for src in sources {
            for (i, _) in src.match_indices(".route(\"") {
                let rest = &src[i + ".route(\"".len()..];
                let Some(end) = rest.find('"') else { continue };
                let path = &rest[..end];
                let call = &rest[end..];
                let stop = [".route(", ".merge(", "\n}"]
                    .iter()
                    .filter_map(|m| call.find(m))
                    .min()
                    .unwrap_or(call.len());
                let call = &call[..stop];
                for m in ["get", "post", "put", "delete"] {
                    if call.contains(&format!(" {m}(")) || call.contains(&format!(".{m}(")) {
                        out.push((m.to_string(), path.to_string()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_page_served_is_documented_and_every_documented_page_is_served() {
        let mut documented: Vec<(String, String)> = PAGES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        let served = routes_in_source();
        assert!(served.len() >= 16, "{served:?}");
        assert_eq!(served, documented);
    }

    #[test]
    fn the_document_has_the_pages_under_their_tag() {
        let doc = crate::http::openapi();
        let features = doc.paths.paths.get("/features").expect("/features");
        let get = features.get.as_ref().expect("GET /features");
        assert_eq!(get.tags.as_deref(), Some(&["manager".to_string()][..]));
        let login = doc.paths.paths.get("/login").expect("/login");
        assert!(login.get.is_some() && login.post.is_some());
    }
}
