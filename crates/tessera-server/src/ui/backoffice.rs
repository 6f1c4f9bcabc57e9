//! The back-office views: Online server updates (activate several activation IDs at once; sync
//! now), Offline server updates (request files to download, a response file to upload, the
//! confirmation) and Client key operations (upload a DER public key, list, delete; the trusted
//! producer keys shown). Each action is a call of the admin API (`/api/v1/admin/activate`,
//! `/sync`, `/offline-*`, `/client-keys`, `/producer-keys`).

use askama::Template;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;
use tessera_wire::admin::{ClientKeyView, FeatureRecords, ProducerKeyView, Status, SyncOutcome};

use super::{
    done, failed, failure_of, render, render_status, urlencode, ApiFailure, Base, Page, Send,
};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/updates/online", get(online))
        .route("/updates/online/activate", post(activate))
        .route("/updates/online/sync", post(sync))
        .route("/updates/offline", get(offline))
        .route("/updates/offline/update-request", post(update_request))
        .route("/updates/offline/request", post(activation_request))
        .route("/updates/offline/apply", post(apply))
        .route("/updates/offline/confirmation", post(confirmation))
        .route("/client-keys", get(client_keys).post(upload_client_key))
        .route("/client-keys/{id}/delete", post(delete_client_key))
}

/// Rows the activation form offers without JavaScript (the script keeps one and adds more).
const ROWS: usize = 5;

/// A file upload larger than this is refused before it is read further (the API's own limit
/// is the same order).
const MAX_UPLOAD: usize = 1024 * 1024;

/// An activation form's row: the activation ID and the count as typed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// The activation ID.
    pub key: String,
    /// The count.
    pub count: String,
}

/// The Online server updates view: its Online activations and Update licenses tabs.
#[derive(Template)]
#[template(path = "ui/online.html")]
struct OnlinePage {
    base: Base,
    /// `activate` or `update`.
    tab: &'static str,
    rows: Vec<Row>,
    backoffice: String,
    status: Option<Status>,
    error: Option<String>,
}

/// Which tab.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TabQuery {
    #[serde(default)]
    tab: Option<String>,
}

/// The status (features served, the back office known), or none when it cannot be read (the
/// page then says nothing of it; the action's own answer says what failed).
async fn status(page: &Page) -> Result<Status, ApiFailure> {
    page.api.get::<Status>("/api/v1/admin/status").await
}

fn blank_rows() -> Vec<Row> {
    (0..ROWS)
        .map(|_| Row {
            key: String::new(),
            count: "1".into(),
        })
        .collect()
}

async fn online(page: Page, Query(q): Query<TabQuery>) -> Response {
    let st = match status(&page).await {
        Ok(s) => s,
        Err(e) => return failed(&page, e),
    };
    let t = OnlinePage {
        base: page.base("Online server updates", "online").await,
        tab: if q.tab.as_deref() == Some("update") {
            "update"
        } else {
            "activate"
        },
        rows: blank_rows(),
        backoffice: st.backoffice_url.clone().unwrap_or_default(),
        status: Some(st),
        error: None,
    };
    render(&t, &t.base)
}

/// The activation form's rows, its back office URL and CSRF token, in the order sent.
fn read_activation(fields: &[(String, String)]) -> (Vec<Row>, String, String) {
    let (mut keys, mut counts) = (Vec::new(), Vec::new());
    let (mut backoffice, mut csrf) = (String::new(), String::new());
    for (name, value) in fields {
        match name.as_str() {
            "key" => keys.push(value.trim().to_string()),
            "count" => counts.push(value.trim().to_string()),
            "backoffice" => backoffice = value.trim().to_string(),
            "csrf" => csrf.clone_from(value),
            _ => {}
        }
    }
    let rows = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| Row {
            key,
            count: counts.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    (rows, backoffice, csrf)
}

/// The activations of the rows filled in, or what is wrong with them (row numbers from 1).
fn activations(rows: &[Row]) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.key.is_empty() {
            continue;
        }
        let count = r.count.parse::<u32>().ok().filter(|c| *c >= 1).ok_or_else(|| {
            format!(
                "Row {}: the count {:?} of {} is not a number of seats: give a whole number, 1 or more.",
                i + 1,
                r.count,
                r.key
            )
        })?;
        out.push(json!({"key": r.key, "count": count}));
    }
    if out.is_empty() {
        return Err(
            "Give at least one activation ID (from your welcome e-mail) with its count.".into(),
        );
    }
    Ok(out)
}

/// The online page again, on the activation tab with the rows as typed and what went wrong.
async fn activate_again(
    page: &Page,
    mut rows: Vec<Row>,
    backoffice: String,
    error: String,
    code: StatusCode,
) -> Response {
    let st = status(page).await.ok();
    while rows.len() < ROWS {
        rows.push(Row {
            key: String::new(),
            count: "1".into(),
        });
    }
    let t = OnlinePage {
        base: page.base("Online server updates", "online").await,
        tab: "activate",
        rows,
        backoffice,
        status: st,
        error: Some(error),
    };
    render_status(code, &t, &t.base)
}

async fn activate(page: Page, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let (mut rows, backoffice, csrf) = read_activation(&fields);
    let list = match activations(&rows) {
        Ok(l) => l,
        Err(e) => {
            return activate_again(&page, rows, backoffice, e, StatusCode::UNPROCESSABLE_ENTITY)
                .await
        }
    };
    if backoffice.is_empty() {
        return activate_again(
            &page,
            rows,
            backoffice,
            "Give the back office's address (its URL, e.g. https://licenses.example.com), as your producer told you.".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let n = list.len();
    let r = page
        .change::<FeatureRecords>(
            Method::POST,
            "/api/v1/admin/activate",
            Send::Json(json!({"backoffice": backoffice, "activations": list})),
            &csrf,
        )
        .await;
    match r {
        Ok(f) => done(
            "/updates/online",
            &format!(
                "Activated {n} activation ID(s) at {backoffice}: {} feature record(s) are served now.",
                f.feature_records
            ),
        ),
        Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) => {
            failed(&page, e)
        }
        Err(e) => {
            rows.retain(|r| !r.key.is_empty());
            activate_again(
                &page,
                rows,
                backoffice,
                format!("The activation failed; nothing changed: {}", e.detail),
                e.status,
            )
            .await
        }
    }
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sync(page: Page, Form(f): Form<CsrfForm>) -> Response {
    let r = page
        .change::<SyncOutcome>(Method::POST, "/api/v1/admin/sync", Send::Empty, &f.csrf)
        .await;
    match r {
        Ok(o) if o.over_use.is_empty() => done(
            "/updates/online?tab=update",
            "Synced with the back office: the usage report was sent and the licenses it answered are served. No feature is used beyond its entitlement.",
        ),
        Ok(o) => done(
            "/updates/online?tab=update",
            &format!(
                "Synced with the back office: the usage report was sent and the licenses it answered are served. The back office reports use beyond the entitlement of: {}.",
                o.over_use.join(", ")
            ),
        ),
        Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) => {
            failed(&page, e)
        }
        Err(e) => {
            let st = status(&page).await.ok();
            let t = OnlinePage {
                base: page.base("Online server updates", "online").await,
                tab: "update",
                rows: blank_rows(),
                backoffice: st
                    .as_ref()
                    .and_then(|s| s.backoffice_url.clone())
                    .unwrap_or_default(),
                status: st,
                error: Some(format!("The sync failed; nothing changed: {}", e.detail)),
            };
            render_status(e.status, &t, &t.base)
        }
    }
}

/// The Offline server updates view: request files, the response upload, the confirmation.
#[derive(Template)]
#[template(path = "ui/offline.html")]
struct OfflinePage {
    base: Base,
    status: Option<Status>,
    key: String,
    count: String,
    error: Option<String>,
}

async fn offline_again(page: &Page, key: String, count: String, e: ApiFailure) -> Response {
    if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) {
        return failed(page, e);
    }
    let t = OfflinePage {
        base: page.base("Offline server updates", "offline").await,
        status: status(page).await.ok(),
        key,
        count,
        error: Some(e.detail),
    };
    render_status(e.status, &t, &t.base)
}

async fn offline(page: Page) -> Response {
    let st = match status(&page).await {
        Ok(s) => s,
        Err(e) => return failed(&page, e),
    };
    let t = OfflinePage {
        base: page.base("Offline server updates", "offline").await,
        status: Some(st),
        key: String::new(),
        count: "1".into(),
        error: None,
    };
    render(&t, &t.base)
}

/// Calls the API for a request file and hands it to the browser as a download named `file`.
async fn download(
    page: &Page,
    path: &str,
    body: Send,
    csrf: &str,
    file: &str,
) -> Result<Response, ApiFailure> {
    let r = page.api.raw(Method::POST, path, body, Some(csrf)).await;
    if !r.status().is_success() {
        return Err(failure_of(r).await);
    }
    let bytes = axum::body::to_bytes(r.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            detail: format!("the admin API's file could not be read: {e}"),
        })?;
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn update_request(page: Page, Form(f): Form<CsrfForm>) -> Response {
    match download(
        &page,
        "/api/v1/admin/offline-update-request",
        Send::Empty,
        &f.csrf,
        "tessera-update-request.txt",
    )
    .await
    {
        Ok(r) => r,
        Err(e) => offline_again(&page, String::new(), "1".into(), e).await,
    }
}

async fn confirmation(page: Page, Form(f): Form<CsrfForm>) -> Response {
    match download(
        &page,
        "/api/v1/admin/offline-confirmation",
        Send::Empty,
        &f.csrf,
        "tessera-confirmation.txt",
    )
    .await
    {
        Ok(r) => r,
        Err(e) => offline_again(&page, String::new(), "1".into(), e).await,
    }
}

/// The activation request form: an activation ID and its count.
#[derive(Debug, Deserialize)]
pub(super) struct RequestForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    csrf: String,
}

async fn activation_request(page: Page, Form(f): Form<RequestForm>) -> Response {
    let row = Row {
        key: f.key.trim().to_string(),
        count: f.count.trim().to_string(),
    };
    let list = match activations(std::slice::from_ref(&row)) {
        Ok(l) => l,
        Err(detail) => {
            let e = ApiFailure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request".into(),
                detail,
            };
            return offline_again(&page, row.key, row.count, e).await;
        }
    };
    match download(
        &page,
        "/api/v1/admin/offline-request",
        Send::Json(json!({"activations": list})),
        &f.csrf,
        "tessera-activation-request.txt",
    )
    .await
    {
        Ok(r) => r,
        Err(e) => offline_again(&page, row.key, row.count, e).await,
    }
}

/// A multipart form's file (by its field name) and its CSRF token; or what is wrong with it.
async fn read_upload(
    form: Result<Multipart, MultipartRejection>,
    file_field: &str,
) -> Result<(Vec<u8>, String), String> {
    let mut form = form.map_err(|e| {
        format!("the form did not arrive as a file upload ({e}); choose the file and press Upload again")
    })?;
    let (mut file, mut csrf) = (None, String::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "the upload could not be read ({e}); choose the file and press Upload again"
                ))
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("the upload could not be read ({e}); try again"))?;
        if name == "csrf" {
            csrf = String::from_utf8_lossy(&bytes).into_owned();
        } else if name == file_field {
            if bytes.len() > MAX_UPLOAD {
                return Err(format!(
                    "the file is {} bytes; at most {MAX_UPLOAD} are taken: is it the right file?",
                    bytes.len()
                ));
            }
            file = Some(bytes.to_vec());
        }
    }
    match file {
        Some(f) if !f.is_empty() => Ok((f, csrf)),
        _ => Err("no file was chosen: choose the file, then press Upload".into()),
    }
}

async fn apply(page: Page, form: Result<Multipart, MultipartRejection>) -> Response {
    let bad = |detail: String| ApiFailure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_request".into(),
        detail,
    };
    let (file, csrf) = match read_upload(form, "response").await {
        Ok(x) => x,
        Err(d) => return offline_again(&page, String::new(), "1".into(), bad(d)).await,
    };
    let Ok(text) = String::from_utf8(file) else {
        return offline_again(
            &page,
            String::new(),
            "1".into(),
            bad("the file is not a response file of the back office (it is not text): choose the file the back office answered with".into()),
        )
        .await;
    };
    match page
        .change::<FeatureRecords>(
            Method::POST,
            "/api/v1/admin/offline-apply",
            Send::Text(text),
            &csrf,
        )
        .await
    {
        Ok(f) => done(
            "/updates/offline",
            &format!(
                "The response was applied: {} feature record(s) are served now. Take the confirmation below to the back office.",
                f.feature_records
            ),
        ),
        Err(e) => offline_again(&page, String::new(), "1".into(), e).await,
    }
}

/// The Client key operations view, with the producer keys trusted.
#[derive(Template)]
#[template(path = "ui/client_keys.html")]
struct ClientKeysPage {
    base: Base,
    keys: Vec<ClientKeyView>,
    producer_keys: Vec<ProducerKeyView>,
    error: Option<String>,
}

async fn client_keys_page(page: &Page, error: Option<ApiFailure>) -> Response {
    let keys = match page
        .api
        .get::<Vec<ClientKeyView>>("/api/v1/admin/client-keys")
        .await
    {
        Ok(k) => k,
        Err(e) => return failed(page, e),
    };
    let producer_keys = page
        .api
        .get::<Vec<ProducerKeyView>>("/api/v1/admin/producer-keys")
        .await
        .unwrap_or_default();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let t = ClientKeysPage {
        base: page.base("Client key operations", "client-keys").await,
        keys,
        producer_keys,
        error: error.map(|e| e.detail),
    };
    render_status(status, &t, &t.base)
}

async fn client_keys(page: Page) -> Response {
    client_keys_page(&page, None).await
}

async fn upload_client_key(page: Page, form: Result<Multipart, MultipartRejection>) -> Response {
    let (file, csrf) = match read_upload(form, "key").await {
        Ok(x) => x,
        Err(detail) => {
            let e = ApiFailure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request".into(),
                detail,
            };
            return client_keys_page(&page, Some(e)).await;
        }
    };
    match page
        .change::<ClientKeyView>(
            Method::POST,
            "/api/v1/admin/client-keys",
            Send::Bytes(file),
            &csrf,
        )
        .await
    {
        Ok(k) => done(
            "/client-keys",
            &format!(
                "Client key {} ({}) is registered: clients sign with it as keyid={}.",
                k.id, k.algorithm, k.id
            ),
        ),
        Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) => {
            failed(&page, e)
        }
        Err(e) => client_keys_page(&page, Some(e)).await,
    }
}

async fn delete_client_key(
    page: Page,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    match page
        .change::<()>(
            Method::DELETE,
            &format!("/api/v1/admin/client-keys/{}", urlencode(&id)),
            Send::Empty,
            &f.csrf,
        )
        .await
    {
        Ok(()) => done(
            "/client-keys",
            &format!(
                "Client key {id} is deleted: requests signed with it are refused from now on."
            ),
        ),
        Err(e) if matches!(e.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) => {
            failed(&page, e)
        }
        Err(e) => client_keys_page(&page, Some(e)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_rows_pair_ids_with_counts_and_skip_blank_ones() {
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let (rows, bo, csrf) = read_activation(&f(&[
            ("csrf", "t"),
            ("backoffice", " http://bo "),
            ("key", "A-1"),
            ("count", "2"),
            ("key", ""),
            ("count", "1"),
            ("key", "B-2"),
            ("count", "3"),
        ]));
        assert_eq!((bo.as_str(), csrf.as_str()), ("http://bo", "t"));
        let list = activations(&rows).unwrap();
        assert_eq!(
            list,
            vec![
                json!({"key": "A-1", "count": 2}),
                json!({"key": "B-2", "count": 3})
            ]
        );
        let bad = activations(&[Row {
            key: "A-1".into(),
            count: "two".into(),
        }])
        .unwrap_err();
        assert!(bad.contains("Row 1") && bad.contains("two"), "{bad}");
        assert!(activations(&[Row::default()])
            .unwrap_err()
            .contains("at least one"));
    }
}
