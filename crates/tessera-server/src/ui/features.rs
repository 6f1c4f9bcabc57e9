//! The Features view (Summary and Details tabs, a feature's page with the devices holding it) and
//! the Devices view (a device's page with what it consumes): searched, sorted and paged by the
//! admin API's views (`/api/v1/admin/features`, `/feature-records`, `/features/{name}`,
//! `/devices`, `/devices/{id}`). A device's page also releases the seats it holds
//! (`/api/v1/admin/leases/release`).

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tessera_wire::admin::Released;
use tessera_wire::views::{
    DeviceDetails, DevicePage, FeatureRecordPage, FeatureSummaryPage, FeatureView,
};

use super::{done, error_page, failed, filters, render, urlencode, Base, Page, Pager, Send};
use crate::http::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/features", get(features))
        .route("/features/{name}", get(feature))
        .route("/devices", get(devices))
        .route("/devices/{id}", get(device))
        .route("/devices/{id}/release", post(release_device))
}

/// What a list page takes from the browser's query string (anything else is ignored).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ListQuery {
    /// `summary` (the default) or `details` (Features).
    #[serde(default)]
    pub tab: Option<String>,
    /// Search text.
    #[serde(default)]
    pub q: Option<String>,
    /// `prefix` for a search by the start of the name; exact otherwise.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The column to sort by.
    #[serde(default)]
    pub sort: Option<String>,
    /// `asc` or `desc`.
    #[serde(default)]
    pub order: Option<String>,
    /// The page, from 1.
    #[serde(default)]
    pub page: Option<u32>,
}

impl ListQuery {
    fn q(&self) -> Option<&str> {
        self.q.as_deref().map(str::trim).filter(|q| !q.is_empty())
    }

    /// The admin API's query string for this list (with the browser's page size).
    pub(crate) fn api(&self, sorts: &[&str], page_size: u32) -> String {
        let mut parts = vec![format!("page_size={page_size}")];
        if let Some(q) = self.q() {
            parts.push(format!("q={}", urlencode(q)));
            if self.prefix.is_some() {
                parts.push("match=prefix".into());
            }
        }
        if let Some(s) = self.sort.as_deref().filter(|s| sorts.contains(s)) {
            parts.push(format!("sort={s}"));
            if self.order.as_deref() == Some("desc") {
                parts.push("order=desc".into());
            }
        }
        parts.push(format!("page={}", self.page.unwrap_or(1).max(1)));
        parts.join("&")
    }

    /// This page's own query string but for `page` (for the pager, ending in `page=`), at `path`.
    pub(crate) fn href(&self, path: &str, keep_sort: bool) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.tab {
            parts.push(format!("tab={}", urlencode(t)));
        }
        if let Some(q) = self.q() {
            parts.push(format!("q={}", urlencode(q)));
            if self.prefix.is_some() {
                parts.push("prefix=1".into());
            }
        }
        if keep_sort {
            if let Some(s) = &self.sort {
                parts.push(format!("sort={}", urlencode(s)));
                if let Some(o) = &self.order {
                    parts.push(format!("order={}", urlencode(o)));
                }
            }
        }
        parts.push("page=".into());
        format!("{path}?{}", parts.join("&"))
    }

    /// The link of a column's header: sorts by it, the other way round when it already does.
    pub(crate) fn sort_href(&self, path: &str, column: &str) -> String {
        let desc = self.sort.as_deref() == Some(column) && self.order.as_deref() != Some("desc");
        let mut h = self.href(path, false);
        h.truncate(h.len() - "page=".len());
        format!(
            "{h}sort={}&order={}",
            urlencode(column),
            if desc { "desc" } else { "asc" }
        )
    }

    /// `aria-sort` for a column's header.
    pub(crate) fn aria_sort(&self, column: &str) -> &'static str {
        match (self.sort.as_deref() == Some(column), self.order.as_deref()) {
            (true, Some("desc")) => "descending",
            (true, _) => "ascending",
            _ => "none",
        }
    }
}

/// A column of a table: its sort key (empty: not sortable), its heading.
pub(crate) type Column = (&'static str, &'static str);

#[derive(Template)]
#[template(path = "ui/features.html")]
struct FeaturesPage {
    base: Base,
    query: ListQuery,
    details: bool,
    columns: &'static [Column],
    summary: Option<FeatureSummaryPage>,
    records: Option<FeatureRecordPage>,
    pager: Pager,
}

const SUMMARY_COLUMNS: &[Column] = &[
    ("name", "Feature"),
    ("version", "Version"),
    ("count", "Total count"),
    ("used", "Total used"),
    ("available", "Total available"),
    ("first_expiry", "First expiration"),
    ("last_expiry", "Last expiration"),
    ("overdraft_used", "Total overdraft"),
    ("metered", "Metered"),
    ("counted", "Counted"),
];

const DETAILS_COLUMNS: &[Column] = &[
    ("name", "Feature"),
    ("version", "Version"),
    ("count", "Count"),
    ("available", "Available"),
    ("used", "Used"),
    ("expiry", "Expiry"),
    ("start", "Start date"),
    ("vendor_string", "Vendor string"),
    ("product", "Product name"),
    ("activation_id", "Activation ID"),
    ("entitlement_id", "Entitlement ID"),
    ("product_version", "Product version"),
];

/// The sort keys the API takes, of the columns.
fn sorts(columns: &[Column], not: &[&str]) -> Vec<&'static str> {
    columns
        .iter()
        .map(|c| c.0)
        .filter(|k| !not.contains(k))
        .collect()
}

async fn features(page: Page, Query(query): Query<ListQuery>) -> Response {
    let details = query.tab.as_deref() == Some("details");
    let base = page.base("Features", "features").await;
    if details {
        let sorts = sorts(DETAILS_COLUMNS, &["vendor_string", "product_version"]);
        let path = format!(
            "/api/v1/admin/feature-records?{}",
            query.api(&sorts, page.page_size)
        );
        match page.api.get::<FeatureRecordPage>(&path).await {
            Ok(records) => {
                let pager = Pager::new(
                    records.paging.total,
                    records.paging.page,
                    records.paging.page_size,
                    query.href("/features", true),
                );
                let t = FeaturesPage {
                    base,
                    query,
                    details,
                    columns: DETAILS_COLUMNS,
                    summary: None,
                    records: Some(records),
                    pager,
                };
                render(&t, &t.base)
            }
            Err(e) => failed(&page, e),
        }
    } else {
        let sorts = sorts(SUMMARY_COLUMNS, &["metered", "counted"]);
        let path = format!(
            "/api/v1/admin/features?{}",
            query.api(&sorts, page.page_size)
        );
        match page.api.get::<FeatureSummaryPage>(&path).await {
            Ok(summary) => {
                let pager = Pager::new(
                    summary.paging.total,
                    summary.paging.page,
                    summary.paging.page_size,
                    query.href("/features", true),
                );
                let t = FeaturesPage {
                    base,
                    query,
                    details,
                    columns: SUMMARY_COLUMNS,
                    summary: Some(summary),
                    records: None,
                    pager,
                };
                render(&t, &t.base)
            }
            Err(e) => failed(&page, e),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/feature.html")]
struct FeaturePage {
    base: Base,
    query: ListQuery,
    path: String,
    view: FeatureView,
    pager: Pager,
}

async fn feature(page: Page, Path(name): Path<String>, Query(query): Query<ListQuery>) -> Response {
    let sorts = [
        "device",
        "alias",
        "user",
        "device_type",
        "version",
        "count",
        "overdraft",
        "expires",
    ];
    let api = format!(
        "/api/v1/admin/features/{}?{}",
        urlencode(&name),
        query.api(&sorts, page.page_size)
    );
    let base = page.base(&format!("Feature {name}"), "features").await;
    match page.api.get::<FeatureView>(&api).await {
        Ok(view) => {
            let path = format!("/features/{}", urlencode(&name));
            let pager = Pager::new(
                view.paging.total,
                view.paging.page,
                view.paging.page_size,
                query.href(&path, true),
            );
            let t = FeaturePage {
                base,
                query,
                path,
                view,
                pager,
            };
            render(&t, &t.base)
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            error_page(StatusCode::NOT_FOUND, "No such feature", &e.detail)
        }
        Err(e) => failed(&page, e),
    }
}

#[derive(Template)]
#[template(path = "ui/devices.html")]
struct DevicesPage {
    base: Base,
    query: ListQuery,
    devices: DevicePage,
    pager: Pager,
}

async fn devices(page: Page, Query(query): Query<ListQuery>) -> Response {
    let sorts = [
        "device",
        "id_type",
        "device_type",
        "alias",
        "user",
        "expires",
        "leases",
        "features",
    ];
    let api = format!(
        "/api/v1/admin/devices?{}",
        query.api(&sorts, page.page_size)
    );
    let base = page.base("Devices", "devices").await;
    match page.api.get::<DevicePage>(&api).await {
        Ok(devices) => {
            let pager = Pager::new(
                devices.paging.total,
                devices.paging.page,
                devices.paging.page_size,
                query.href("/devices", true),
            );
            let t = DevicesPage {
                base,
                query,
                devices,
                pager,
            };
            render(&t, &t.base)
        }
        Err(e) => failed(&page, e),
    }
}

#[derive(Template)]
#[template(path = "ui/device.html")]
struct DevicePageView {
    base: Base,
    device: DeviceDetails,
}

async fn device(page: Page, Path(id): Path<String>) -> Response {
    let api = format!("/api/v1/admin/devices/{}", urlencode(&id));
    let base = page.base(&format!("Device {id}"), "devices").await;
    match page.api.get::<DeviceDetails>(&api).await {
        Ok(device) => {
            let t = DevicePageView { base, device };
            render(&t, &t.base)
        }
        Err(e) if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) => {
            error_page(e.status, "No such device", &e.detail)
        }
        Err(e) => failed(&page, e),
    }
}

/// A form that carries only the session's CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Releases every seat the device holds (stuck seats of a machine that is gone, say): free for
/// others at once. Back to the devices view, which says what was released.
async fn release_device(page: Page, Path(id): Path<String>, Form(f): Form<CsrfForm>) -> Response {
    match page
        .change::<Released>(
            Method::POST,
            "/api/v1/admin/leases/release",
            Send::Json(serde_json::json!({ "device": id })),
            &f.csrf,
        )
        .await
    {
        Ok(r) => {
            let seats: u64 = r.released.iter().map(|l| u64::from(l.count)).sum();
            let features: Vec<String> = r
                .released
                .iter()
                .map(|l| format!("{} × {}", l.count, l.feature))
                .collect();
            done(
                "/devices",
                &format!(
                    "Released {} lease(s) of device {id}, {seats} seat(s) ({}): free for others now. A client still running there must check out again.",
                    r.released.len(),
                    features.join(", ")
                ),
            )
        }
        Err(e) => failed(&page, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_query_becomes_the_apis_and_its_own_links() {
        let q = ListQuery {
            q: Some(" cad modeler ".into()),
            sort: Some("used".into()),
            order: Some("desc".into()),
            page: Some(3),
            ..Default::default()
        };
        assert_eq!(
            q.api(&["name", "used"], 25),
            "page_size=25&q=cad%20modeler&sort=used&order=desc&page=3"
        );
        // a sort the API does not take is left out rather than refused
        assert_eq!(q.api(&["name"], 25), "page_size=25&q=cad%20modeler&page=3");
        assert_eq!(
            q.href("/features", true),
            "/features?q=cad%20modeler&sort=used&order=desc&page="
        );
        assert_eq!(
            q.sort_href("/features", "used"),
            "/features?q=cad%20modeler&sort=used&order=asc"
        );
        assert_eq!(q.aria_sort("used"), "descending");
        assert_eq!(q.aria_sort("name"), "none");
    }
}
