//! The seat-policy views: Reservations (the list with each entry's status, add an entry to a new
//! or an existing group, delete groups, import and export), Named license pools (the pools and
//! the model: show, upload, delete) and Named users (assign a named-user feature's users, clear
//! them, see who was trimmed). Each is a client of the admin API (`/api/v1/admin/reservations`,
//! `/pools`, `/named-users`); a refusal is shown with the API's words beside the form.

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use tessera_core::hostid::HostIdKind;
use tessera_wire::admin::{
    NamedUserFeature, NamedUsersView, PoolModelText, PoolRow, PoolsView, ReservationStatus,
    ReservationsView,
};

use super::{
    done, error_page, failed, render, render_status, urlencode, ApiFailure, Base, Page, Pager, Send,
};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/reservations", get(reservations).post(add_reservation))
        .route("/reservations/delete", post(delete_groups))
        .route("/reservations/import", post(import_reservations))
        .route("/reservations/export", get(export_reservations))
        .route("/pools", get(pools))
        .route("/pools/model", get(model).post(upload_model))
        .route("/pools/model/delete", post(delete_model))
        .route("/named-users", get(named_users))
        .route("/named-users/{feature}", post(assign_users))
        .route("/named-users/{feature}/clear", post(clear_users))
}

/// A refusal shown beside a form: the API's words (or the page's, for a field it checks itself).
fn refusal(e: &ApiFailure) -> Option<String> {
    Some(e.detail.clone())
}

/// Whether a refusal belongs beside the form (the input was wrong, or the state refuses it) rather
/// than on a page of its own (access denied, a session that ended, a store that failed).
fn beside_form(e: &ApiFailure) -> bool {
    matches!(
        e.status,
        StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::CONFLICT
            | StatusCode::NOT_FOUND
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::BAD_REQUEST
    )
}

/// A form with only the CSRF token (delete the model, clear a feature's users).
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The fields of a multipart form, read whole: text fields and a file's text.
#[derive(Debug, Default)]
struct Fields {
    csrf: String,
    text: String,
    file: Option<String>,
}

/// Reads a multipart form with a `csrf` field, a `text` field and a `file` field (the file's
/// content as UTF-8 text; an empty file input is none).
async fn read_fields(m: Result<Multipart, MultipartRejection>) -> Result<Fields, String> {
    let mut m = m.map_err(|e| format!("the form could not be read ({e}); send it again"))?;
    let mut f = Fields::default();
    loop {
        let field = match m.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(format!("the form could not be read ({e}); send it again")),
        };
        let name = field.name().unwrap_or_default().to_string();
        let is_file = field.file_name().is_some_and(|n| !n.is_empty());
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("the form could not be read ({e}); send it again"))?;
        match name.as_str() {
            "csrf" => f.csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "text" => f.text = String::from_utf8_lossy(&bytes).into_owned(),
            "file" if is_file => {
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    "the file is not text (UTF-8): choose the JSON or model file itself".to_string()
                })?;
                f.file = Some(text);
            }
            _ => {}
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Reservations

/// What the add form holds (kept when the API refuses it).
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    /// The group: a new name, or one in force to add the entry to.
    #[serde(default)]
    group: String,
    /// The device ID (or the user's name).
    #[serde(default)]
    device: String,
    /// The ID type (`ethernet`, `user`, …).
    #[serde(default)]
    id_type: String,
    #[serde(default)]
    feature: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    count: String,
}

impl AddForm {
    /// Whether the form's ID type is `kind` (the option selected).
    fn is_type(&self, kind: &str) -> bool {
        self.id_type == kind
    }
}

/// The page number of a list.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "ui/reservations.html")]
struct ReservationsPage {
    base: Base,
    view: ReservationsView,
    rows: Vec<ReservationStatus>,
    pager: Pager,
    id_types: Vec<&'static str>,
    add: AddForm,
    /// The add form's refusal.
    add_error: Option<String>,
    /// A refusal shown above the list (an import, a delete with nothing ticked).
    import_error: Option<String>,
}

impl ReservationsPage {
    /// The device ID of a holder, without its `KIND=`.
    fn device_of(holder: &str) -> &str {
        holder.split_once('=').map_or(holder, |(_, v)| v)
    }
}

/// Renders the reservations view (page `page`), with the add form as given and the refusals.
async fn reservations_page(
    page: &Page,
    number: u32,
    add: AddForm,
    add_error: Option<String>,
    import_error: Option<String>,
) -> Response {
    let view = match page
        .api
        .get::<ReservationsView>("/api/v1/admin/reservations")
        .await
    {
        Ok(v) => v,
        Err(e) => return failed(page, e),
    };
    let size = page.page_size.max(1) as usize;
    let total = view.entries.len() as u64;
    let pager = Pager::new(
        total,
        number.max(1),
        page.page_size,
        "/reservations?page=".into(),
    );
    let number = number.clamp(1, pager.last);
    let pager = Pager {
        page: number,
        ..pager
    };
    let rows = view
        .entries
        .iter()
        .skip((number as usize - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let status = if add_error.is_some() || import_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let t = ReservationsPage {
        base: page.base("Reservations", "reservations").await,
        view,
        rows,
        pager,
        id_types: HostIdKind::ALL.iter().map(|k| k.as_str()).collect(),
        add: AddForm {
            id_type: if add.id_type.is_empty() {
                "ethernet".into()
            } else {
                add.id_type
            },
            count: if add.count.is_empty() {
                "1".into()
            } else {
                add.count
            },
            ..add
        },
        add_error,
        import_error,
    };
    render_status(status, &t, &t.base)
}

async fn reservations(page: Page, Query(q): Query<PageQuery>) -> Response {
    reservations_page(&page, q.page.unwrap_or(1), AddForm::default(), None, None).await
}

/// Add: one entry, to a new group (`POST /api/v1/admin/reservations`) or to the group of that name
/// in force (`POST /api/v1/admin/reservations/{group}/entries`).
async fn add_reservation(page: Page, Form(f): Form<AddForm>) -> Response {
    let group = f.group.trim().to_string();
    let count = match f.count.trim().parse::<u32>() {
        Ok(c) => c,
        Err(_) => {
            let why = format!(
                "the count {:?} is not a whole number: give the seats to reserve (1 or more)",
                f.count
            );
            return reservations_page(&page, 1, f, Some(why), None).await;
        }
    };
    let holder = format!("{}={}", f.id_type.trim(), f.device.trim());
    let reservation = json!({"holder": holder, "entries": [
        {"feature": f.feature.trim(), "version": f.version.trim(), "count": count}]});
    let existing = match page
        .api
        .get::<ReservationsView>("/api/v1/admin/reservations")
        .await
    {
        Ok(v) => v.groups.iter().any(|g| g.name == group),
        Err(e) => return failed(&page, e),
    };
    let outcome = if existing {
        let path = format!(
            "/api/v1/admin/reservations/{}/entries",
            urlencode(&group).replace('/', "%2F")
        );
        page.change::<ReservationsView>(Method::POST, &path, Send::Json(reservation), &f.csrf)
            .await
    } else {
        let doc = json!({"groups": [{"name": group, "reservations": [reservation]}]});
        page.change::<ReservationsView>(
            Method::POST,
            "/api/v1/admin/reservations",
            Send::Json(doc),
            &f.csrf,
        )
        .await
    };
    match outcome {
        Ok(_) if existing => done(
            "/reservations",
            &format!(
                "Added {} of {} for {holder} to the group {group}.",
                count,
                f.feature.trim()
            ),
        ),
        Ok(_) => done(
            "/reservations",
            &format!(
                "Added the group {group} with {} of {} for {holder}.",
                count,
                f.feature.trim()
            ),
        ),
        Err(e) if beside_form(&e) => {
            let why = refusal(&e);
            reservations_page(&page, 1, f, why, None).await
        }
        Err(e) => failed(&page, e),
    }
}

/// Delete: every group ticked, one by one (each whole).
async fn delete_groups(page: Page, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let groups: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "group")
        .map(|(_, v)| v)
        .collect();
    if groups.is_empty() {
        return reservations_page(
            &page,
            1,
            AddForm::default(),
            None,
            Some("No group was ticked: tick the groups to delete, then Delete.".into()),
        )
        .await;
    }
    let mut deleted = Vec::new();
    for g in &groups {
        let path = format!(
            "/api/v1/admin/reservations/{}",
            urlencode(g).replace('/', "%2F")
        );
        match page
            .change::<ReservationsView>(Method::DELETE, &path, Send::Empty, &csrf)
            .await
        {
            Ok(_) => deleted.push(g.clone()),
            Err(e) if deleted.is_empty() => return failed(&page, e),
            Err(e) => {
                return error_page(
                    e.status,
                    "Some groups were deleted",
                    &format!(
                        "Deleted {}; the group {g} was refused: {}",
                        deleted.join(", "),
                        e.detail
                    ),
                )
            }
        }
    }
    done(
        "/reservations",
        &format!("Deleted the reservation group(s) {}.", deleted.join(", ")),
    )
}

/// Import: a reservations file (as Export writes it), added whole or refused whole.
async fn import_reservations(page: Page, m: Result<Multipart, MultipartRejection>) -> Response {
    let fields = match read_fields(m).await {
        Ok(f) => f,
        Err(why) => return reservations_page(&page, 1, AddForm::default(), None, Some(why)).await,
    };
    let Some(text) = fields.file.filter(|t| !t.trim().is_empty()) else {
        let why =
            "No file was chosen (or it is empty): choose a reservations JSON file, then Import.";
        return reservations_page(&page, 1, AddForm::default(), None, Some(why.into())).await;
    };
    match page
        .change::<ReservationsView>(
            Method::POST,
            "/api/v1/admin/reservations",
            Send::Text(text),
            &fields.csrf,
        )
        .await
    {
        Ok(v) => done(
            "/reservations",
            &format!(
                "Imported: {} group(s), {} entries in force.",
                v.groups.len(),
                v.entries.len()
            ),
        ),
        Err(e) if beside_form(&e) => {
            let why = format!("The file was not imported; nothing changed: {}", e.detail);
            reservations_page(&page, 1, AddForm::default(), None, Some(why)).await
        }
        Err(e) => failed(&page, e),
    }
}

/// Export: the API's document, downloaded as `reservations.json`.
async fn export_reservations(page: Page) -> Response {
    let r = page
        .api
        .raw(
            Method::GET,
            "/api/v1/admin/reservations/export",
            Send::Empty,
            None,
        )
        .await;
    if r.status().is_success() {
        return r;
    }
    let f = super::failure_of(r).await;
    failed(&page, f)
}

// ---------------------------------------------------------------------------------------------
// Named license pools

/// One pool of the pools tab: its name and its rows.
struct PoolGroup {
    name: String,
    default: bool,
    rows: Vec<PoolRow>,
}

#[derive(Template)]
#[template(path = "ui/pools.html")]
struct PoolsPage {
    base: Base,
    view: PoolsView,
    pools: Vec<PoolGroup>,
}

async fn pools(page: Page) -> Response {
    let view = match page.api.get::<PoolsView>("/api/v1/admin/pools").await {
        Ok(v) => v,
        Err(e) => return failed(&page, e),
    };
    let mut groups: Vec<PoolGroup> = Vec::new();
    for r in &view.pools {
        match groups.last_mut() {
            Some(g) if g.name == r.pool && g.default == r.default => g.rows.push(r.clone()),
            _ => groups.push(PoolGroup {
                name: r.pool.clone(),
                default: r.default,
                rows: vec![r.clone()],
            }),
        }
    }
    let t = PoolsPage {
        base: page.base("Named license pools", "pools").await,
        view,
        pools: groups,
    };
    render(&t, &t.base)
}

/// Where a model was refused: the line and column the API named, and that line of the text.
struct ErrorAt {
    line: usize,
    column: usize,
    text: String,
}

impl ErrorAt {
    /// Finds `line L, column C` in the API's detail and the line in `text`.
    fn find(detail: &str, text: &str) -> Option<ErrorAt> {
        let rest = &detail[detail.find("line ")? + 5..];
        let (line, rest) = rest.split_once(", column ")?;
        let line: usize = line.parse().ok()?;
        let column: usize = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?;
        let text = text.lines().nth(line.checked_sub(1)?)?.to_string();
        Some(ErrorAt { line, column, text })
    }

    /// Spaces as wide as the line number, under it.
    fn gutter(&self) -> String {
        " ".repeat(self.line.to_string().len())
    }

    /// Spaces up to the column, for the caret under it.
    fn pad(&self) -> String {
        " ".repeat(self.column.saturating_sub(1))
    }
}

#[derive(Template)]
#[template(path = "ui/model.html")]
struct ModelPage {
    base: Base,
    view: PoolsView,
    current: Option<PoolModelText>,
    text: String,
    error: Option<String>,
    at: Option<ErrorAt>,
}

/// Renders the model tab with `text` in the text area and the refusal beside it.
async fn model_page(page: &Page, text: String, error: Option<String>) -> Response {
    let view = match page.api.get::<PoolsView>("/api/v1/admin/pools").await {
        Ok(v) => v,
        Err(e) => return failed(page, e),
    };
    let current = match page
        .api
        .get::<PoolModelText>("/api/v1/admin/pools/model")
        .await
    {
        Ok(m) => Some(m),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return failed(page, e),
    };
    let at = error.as_deref().and_then(|d| ErrorAt::find(d, &text));
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let t = ModelPage {
        base: page.base("Named license pools: model", "pools").await,
        view,
        current,
        text,
        error,
        at,
    };
    render_status(status, &t, &t.base)
}

async fn model(page: Page) -> Response {
    model_page(&page, String::new(), None).await
}

/// Upload: the file chosen, else the text area's text; refused with the line and column, and the
/// text kept in the text area to correct.
async fn upload_model(page: Page, m: Result<Multipart, MultipartRejection>) -> Response {
    let fields = match read_fields(m).await {
        Ok(f) => f,
        Err(why) => return model_page(&page, String::new(), Some(why)).await,
    };
    let text = match fields.file.filter(|t| !t.trim().is_empty()) {
        Some(file) => file,
        None => fields.text.replace("\r\n", "\n"),
    };
    if text.trim().is_empty() {
        let why = "No model was given: choose a model file or write the model in the text area, then Upload.";
        return model_page(&page, text, Some(why.into())).await;
    }
    match page
        .change::<PoolsView>(
            Method::POST,
            "/api/v1/admin/pools/model",
            Send::Text(text.clone()),
            &fields.csrf,
        )
        .await
    {
        Ok(v) => {
            let mut msg = format!(
                "Uploaded the model {}; in force from the next request.",
                v.model.as_deref().unwrap_or("")
            );
            for w in &v.warnings {
                msg.push_str(&format!(" Warning: {w}."));
            }
            done("/pools", &msg)
        }
        Err(e) if beside_form(&e) => {
            let why = refusal(&e);
            model_page(&page, text, why).await
        }
        Err(e) => failed(&page, e),
    }
}

/// Delete the model: one default pool again.
async fn delete_model(page: Page, Form(f): Form<CsrfForm>) -> Response {
    match page
        .change::<PoolsView>(
            Method::DELETE,
            "/api/v1/admin/pools/model",
            Send::Empty,
            &f.csrf,
        )
        .await
    {
        Ok(_) => done(
            "/pools/model",
            "Deleted the model: every seat is in the default pool from the next request on.",
        ),
        Err(e) => failed(&page, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Named users

/// The users typed for a feature (kept when the API refuses them).
#[derive(Debug, Default, Deserialize)]
pub(super) struct UsersForm {
    #[serde(default)]
    csrf: String,
    /// One a line, or comma-separated.
    #[serde(default)]
    users: String,
}

/// The users of a text area: split at line ends and commas, trimmed, empty ones left out.
fn users_of(text: &str) -> Vec<String> {
    text.split(['\n', ',', '\r'])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// A named-user feature as the page shows it: the API's row, what its text area holds, and the
/// refusal of its form.
struct UserCard {
    f: NamedUserFeature,
    typed: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/named_users.html")]
struct NamedUsersPage {
    base: Base,
    unreadable: Option<String>,
    cards: Vec<UserCard>,
}

/// Renders the named users view; `typed` keeps a feature's text and its refusal.
async fn named_users_page(page: &Page, typed: Option<(String, String, String)>) -> Response {
    let view = match page
        .api
        .get::<NamedUsersView>("/api/v1/admin/named-users")
        .await
    {
        Ok(v) => v,
        Err(e) => return failed(page, e),
    };
    let mut status = StatusCode::OK;
    let cards = view
        .features
        .into_iter()
        .map(|f| match &typed {
            Some((feature, text, error)) if *feature == f.feature => {
                status = StatusCode::UNPROCESSABLE_ENTITY;
                UserCard {
                    typed: text.clone(),
                    error: Some(error.clone()),
                    f,
                }
            }
            _ => UserCard {
                typed: f
                    .users
                    .iter()
                    .chain(&f.trimmed)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                error: None,
                f,
            },
        })
        .collect();
    let t = NamedUsersPage {
        base: page.base("Named users", "named-users").await,
        unreadable: view.unreadable,
        cards,
    };
    render_status(status, &t, &t.base)
}

async fn named_users(page: Page) -> Response {
    named_users_page(&page, None).await
}

/// Assign: the users typed replace those before; those beyond the seats are trimmed (said so).
async fn assign_users(
    page: Page,
    Path(feature): Path<String>,
    Form(f): Form<UsersForm>,
) -> Response {
    let users = users_of(&f.users);
    let path = format!(
        "/api/v1/admin/named-users/{}",
        urlencode(&feature).replace('/', "%2F")
    );
    match page
        .change::<NamedUsersView>(
            Method::PUT,
            &path,
            Send::Json(json!({"users": users})),
            &f.csrf,
        )
        .await
    {
        Ok(v) => {
            let row = v.features.iter().find(|r| r.feature == feature);
            let mut msg = format!(
                "Assigned {} user(s) to {feature}.",
                row.map_or(0, |r| r.users.len())
            );
            if let Some(r) = row.filter(|r| !r.trimmed.is_empty()) {
                msg.push_str(&format!(
                    " Trimmed (beyond its {} seats, not served): {}.",
                    r.seats,
                    r.trimmed.join(", ")
                ));
            }
            done("/named-users", &msg)
        }
        Err(e) if beside_form(&e) => {
            named_users_page(&page, Some((feature, f.users, e.detail))).await
        }
        Err(e) => failed(&page, e),
    }
}

/// Unassign: the feature serves nobody until users are assigned again.
async fn clear_users(page: Page, Path(feature): Path<String>, Form(f): Form<CsrfForm>) -> Response {
    let path = format!(
        "/api/v1/admin/named-users/{}",
        urlencode(&feature).replace('/', "%2F")
    );
    match page
        .change::<NamedUsersView>(Method::DELETE, &path, Send::Empty, &f.csrf)
        .await
    {
        Ok(_) => done(
            "/named-users",
            &format!("Removed every user of {feature}: it serves nobody until users are assigned."),
        ),
        Err(e) => failed(&page, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_split_at_lines_and_commas() {
        assert_eq!(
            users_of("ann, bob\r\n\n cy ,,dee\n"),
            vec!["ann", "bob", "cy", "dee"]
        );
        assert!(users_of(" \n, ").is_empty());
    }

    #[test]
    fn the_line_a_model_was_refused_at_is_found() {
        let text = "model \"m\" {\n  partitons {\n}";
        let at = ErrorAt::find(
            "the model is refused: line 2, column 3: expected `partitions`",
            text,
        )
        .unwrap();
        assert_eq!(
            (at.line, at.column, at.text.as_str()),
            (2, 3, "  partitons {")
        );
        assert_eq!(at.pad(), "  ");
        assert!(ErrorAt::find("line 9, column 1: x", text).is_none());
        assert!(ErrorAt::find("no place", text).is_none());
    }
}
