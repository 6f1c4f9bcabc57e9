//! The administrator's views of what the server serves (any user: [`Viewer`]): the features (a
//! summary by feature and version, every feature record, one feature with the devices holding it)
//! and the devices (each with what it holds). Lists are searched, sorted and paged by a
//! [`ViewQuery`]; a query that does not fit is answered 400 `invalid_query`.
//!
//! Seats in use come from the seat book; who holds them (and what the client said about its
//! device: alias, device type) from the leases stored, which hold them since schema 18. Nothing
//! here touches the capability route: the views read, at the administrator's pace.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_core::feature::{Expiry, Feature};
use tessera_core::seats::holder_parts;

// times in whole seconds in UTC, all of one length, so that they sort as text (a fraction would
// put `…:00.5Z` before `…:00Z`)
use super::users::rfc3339;
use tessera_core::time::OffsetDateTime;
use tessera_core::time_fmt::display_date;
use tessera_core::{Clock as _, HostId, Version};
use tessera_store::{LeaseRow, LeaseStore};
use tessera_wire::views::{
    ConsumedFeature, DeviceDetails, DevicePage, DeviceView, FeatureHolder, FeatureRecordPage,
    FeatureRecordView, FeatureSummary, FeatureSummaryPage, FeatureView, MatchMode, Paging,
    SortOrder, ViewQuery, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};

use super::access::Viewer;
use super::{problem, Failure, Shared};
use crate::openapi::Problem;

/// A comparison of two rows by one field.
type Cmp<T> = fn(&T, &T) -> Ordering;

/// A query made sure of: the search, the sort and the page.
struct Checked<'q, T> {
    search: Option<(&'q str, MatchMode)>,
    sort: Option<(Cmp<T>, SortOrder)>,
    page: u32,
    page_size: u32,
}

fn bad_query(detail: String) -> Response {
    problem(StatusCode::BAD_REQUEST, "invalid_query", detail)
}

/// The query string read, or what is wrong with it.
fn read_query(q: Result<Query<ViewQuery>, QueryRejection>) -> Result<ViewQuery, String> {
    q.map(|Query(q)| q).map_err(|e| {
        format!(
            "the query string does not fit: {} (parameters: q, match=exact|prefix, sort, order=asc|desc, page from 1, page_size 1 to {MAX_PAGE_SIZE})",
            e.body_text()
        )
    })
}

/// Checks `q` against a view's sort fields (`fields`, the first the default).
fn check<'q, T>(q: &'q ViewQuery, fields: &[(&str, Cmp<T>)]) -> Result<Checked<'q, T>, String> {
    let page = q.page.unwrap_or(1);
    if page == 0 {
        return Err("page: pages are numbered from 1".into());
    }
    let page_size = q.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(format!(
            "page_size: 1 to {MAX_PAGE_SIZE} rows a page (got {page_size})"
        ));
    }
    let sort = match q.sort.as_deref() {
        None => None,
        Some(name) => match fields.iter().find(|(n, _)| *n == name) {
            Some((_, cmp)) => Some((*cmp, q.order.unwrap_or_default())),
            None => {
                let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "sort: this view sorts by {} (got {name:?})",
                    names.join(", ")
                ));
            }
        },
    };
    // an order alone reverses the natural order
    let sort = sort.or_else(|| {
        q.order
            .filter(|o| *o == SortOrder::Desc)
            .and_then(|o| fields.first().map(|(_, cmp)| (*cmp, o)))
    });
    let search = match q.q.as_deref() {
        None => None,
        Some("") => return Err("q: give a text to search for, or leave q out for every row".into()),
        Some(text) => Some((text, q.match_mode.unwrap_or_default())),
    };
    Ok(Checked {
        search,
        sort,
        page,
        page_size,
    })
}

impl<T> Checked<'_, T> {
    /// Whether any of `texts` matches the search (every row does without one).
    fn matches<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> bool {
        let Some((q, mode)) = self.search else {
            return true;
        };
        texts.into_iter().any(|t| match mode {
            MatchMode::Exact => t.eq_ignore_ascii_case(q),
            MatchMode::Prefix => t
                .as_bytes()
                .get(..q.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(q.as_bytes())),
        })
    }

    /// Sorts `rows` (in their natural order) as asked and cuts out the page.
    fn page(&self, mut rows: Vec<T>) -> (Paging, Vec<T>) {
        if let Some((cmp, order)) = self.sort {
            // stable: ties keep the natural order
            match order {
                SortOrder::Asc => rows.sort_by(cmp),
                SortOrder::Desc => rows.sort_by(|a, b| cmp(b, a)),
            }
        }
        let total = rows.len() as u64;
        let skip = usize::try_from(u64::from(self.page - 1) * u64::from(self.page_size))
            .unwrap_or(usize::MAX);
        let rows = rows
            .into_iter()
            .skip(skip)
            .take(self.page_size as usize)
            .collect();
        (
            Paging {
                total,
                page: self.page,
                page_size: self.page_size,
            },
            rows,
        )
    }
}

/// Versions as versions (`10.0` after `9.0`); text that is not one sorts first.
fn cmp_version(a: &str, b: &str) -> Ordering {
    a.parse::<Version>().ok().cmp(&b.parse::<Version>().ok())
}

/// Expiries and times as written here: dates and RFC 3339 times in UTC sort as text, `permanent`
/// after all of them.
fn cmp_expiry(a: &str, b: &str) -> Ordering {
    (a == "permanent", a).cmp(&(b == "permanent", b))
}

/// An expiry as the device views write it: `permanent` or an RFC 3339 time.
fn expiry_time(e: Expiry) -> String {
    match e {
        Expiry::Permanent => "permanent".into(),
        Expiry::At(t) => rfc3339(t),
    }
}

/// One feature record with its use.
struct Record {
    feature: Feature,
    /// Seats in use, or units consumed when metered.
    used: u64,
}

impl Record {
    fn view(&self) -> FeatureRecordView {
        let f = &self.feature;
        FeatureRecordView {
            name: f.name.clone(),
            version: f.version.to_string(),
            count: f.count.get(),
            overdraft: f.overdraft,
            used: self.used,
            available: f
                .count
                .get()
                .map(|c| u64::from(c).saturating_sub(self.used)),
            metered: f.metered,
            named_user: f.named_user,
            start: f.start.map(display_date),
            expiry: f.expiry.to_string(),
            vendor_string: f.vendor_string.clone(),
            product: f.product.clone(),
            product_version: f.product_version.clone(),
            activation_id: f.activation_id.clone(),
            entitlement_id: f.entitlement_id.clone(),
        }
    }
}

async fn records(s: &Shared) -> Vec<Record> {
    s.server
        .engine
        .usage()
        .await
        .into_iter()
        .map(|(feature, used, consumed)| Record {
            used: if feature.metered { consumed } else { used },
            feature,
        })
        .collect()
}

/// The records summed by feature and version, in name and version order.
fn summarise<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<FeatureSummary> {
    let mut groups: BTreeMap<(&str, &Version), Vec<&Record>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.feature.name.as_str(), &r.feature.version))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((name, version), rs)| {
            let counted = rs.iter().all(|r| r.feature.count.get().is_some());
            let count: Option<u64> = counted.then(|| {
                rs.iter()
                    .filter_map(|r| r.feature.count.get())
                    .map(u64::from)
                    .sum()
            });
            let used: u64 = rs.iter().map(|r| r.used).sum();
            let overdraft_used = rs
                .iter()
                .filter_map(|r| {
                    r.feature
                        .count
                        .get()
                        .map(|c| r.used.saturating_sub(u64::from(c)))
                })
                .sum();
            let expiries = rs.iter().map(|r| r.feature.expiry);
            let first = expiries.clone().min_by_key(|e| e.sort_key());
            let last = expiries.max_by_key(|e| e.sort_key());
            FeatureSummary {
                name: name.to_string(),
                version: version.to_string(),
                records: u32::try_from(rs.len()).unwrap_or(u32::MAX),
                count,
                used,
                available: count.map(|c| c.saturating_sub(used)),
                overdraft_used,
                first_expiry: first.map(|e| e.to_string()).unwrap_or_default(),
                last_expiry: last.map(|e| e.to_string()).unwrap_or_default(),
                metered: rs.iter().any(|r| r.feature.metered),
                counted,
            }
        })
        .collect()
}

const SUMMARY_SORT: &[(&str, Cmp<FeatureSummary>)] = &[
    ("name", |a, b| a.name.cmp(&b.name)),
    ("version", |a, b| cmp_version(&a.version, &b.version)),
    ("count", |a, b| a.count.cmp(&b.count)),
    ("used", |a, b| a.used.cmp(&b.used)),
    ("available", |a, b| a.available.cmp(&b.available)),
    ("overdraft_used", |a, b| {
        a.overdraft_used.cmp(&b.overdraft_used)
    }),
    ("first_expiry", |a, b| {
        cmp_expiry(&a.first_expiry, &b.first_expiry)
    }),
    ("last_expiry", |a, b| {
        cmp_expiry(&a.last_expiry, &b.last_expiry)
    }),
];

const RECORD_SORT: &[(&str, Cmp<FeatureRecordView>)] = &[
    ("name", |a, b| a.name.cmp(&b.name)),
    ("version", |a, b| cmp_version(&a.version, &b.version)),
    ("count", |a, b| a.count.cmp(&b.count)),
    ("used", |a, b| a.used.cmp(&b.used)),
    ("available", |a, b| a.available.cmp(&b.available)),
    ("start", |a, b| a.start.cmp(&b.start)),
    ("expiry", |a, b| cmp_expiry(&a.expiry, &b.expiry)),
    ("product", |a, b| a.product.cmp(&b.product)),
    ("activation_id", |a, b| {
        a.activation_id.cmp(&b.activation_id)
    }),
    ("entitlement_id", |a, b| {
        a.entitlement_id.cmp(&b.entitlement_id)
    }),
];

const HOLDER_SORT: &[(&str, Cmp<FeatureHolder>)] = &[
    ("device", |a, b| a.device_id.cmp(&b.device_id)),
    ("alias", |a, b| a.alias.cmp(&b.alias)),
    ("user", |a, b| a.user.cmp(&b.user)),
    ("device_type", |a, b| a.device_type.cmp(&b.device_type)),
    ("version", |a, b| cmp_version(&a.version, &b.version)),
    ("count", |a, b| a.count.cmp(&b.count)),
    ("overdraft", |a, b| a.overdraft.cmp(&b.overdraft)),
    ("expires", |a, b| cmp_expiry(&a.expires, &b.expires)),
];

const DEVICE_SORT: &[(&str, Cmp<DeviceView>)] = &[
    ("device", |a, b| a.device_id.cmp(&b.device_id)),
    ("id_type", |a, b| a.id_type.cmp(&b.id_type)),
    ("device_type", |a, b| a.device_type.cmp(&b.device_type)),
    ("alias", |a, b| a.alias.cmp(&b.alias)),
    ("user", |a, b| a.user.cmp(&b.user)),
    ("expires", |a, b| cmp_expiry(&a.expires, &b.expires)),
    ("leases", |a, b| a.leases.cmp(&b.leases)),
    ("features", |a, b| a.features.len().cmp(&b.features.len())),
];

/// The features summary: each feature and version with its records summed.
#[utoipa::path(get, path = "/api/v1/admin/features", tag = "admin", security(("token" = []), ("session" = [])),
    params(ViewQuery),
    responses((status = 200, body = FeatureSummaryPage, description = "a page of features by name and version; `q` matches the feature name; sort by name, version, count, used, available, overdraft_used, first_expiry, last_expiry"),
        (status = 400, body = Problem, description = "invalid_query: a parameter that does not fit (the detail names it)")))]
pub(crate) async fn features(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Response {
    let q = match read_query(query) {
        Ok(q) => q,
        Err(d) => return bad_query(d),
    };
    let c = match check(&q, SUMMARY_SORT) {
        Ok(c) => c,
        Err(d) => return bad_query(d),
    };
    let records = records(&s).await;
    let rows = summarise(
        records
            .iter()
            .filter(|r| c.matches([r.feature.name.as_str()])),
    );
    let (paging, features) = c.page(rows);
    Json(FeatureSummaryPage { paging, features }).into_response()
}

/// The features details: every feature record as served, in name and version order.
#[utoipa::path(get, path = "/api/v1/admin/feature-records", tag = "admin", security(("token" = []), ("session" = [])),
    params(ViewQuery),
    responses((status = 200, body = FeatureRecordPage, description = "a page of feature records; `q` matches the feature name; sort by name, version, count, used, available, start, expiry, product, activation_id, entitlement_id"),
        (status = 400, body = Problem, description = "invalid_query: a parameter that does not fit (the detail names it)")))]
pub(crate) async fn feature_records(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Response {
    let q = match read_query(query) {
        Ok(q) => q,
        Err(d) => return bad_query(d),
    };
    let c = match check(&q, RECORD_SORT) {
        Ok(c) => c,
        Err(d) => return bad_query(d),
    };
    let mut records: Vec<Record> = records(&s)
        .await
        .into_iter()
        .filter(|r| c.matches([r.feature.name.as_str()]))
        .collect();
    records.sort_by(|a, b| {
        (&a.feature.name, &a.feature.version).cmp(&(&b.feature.name, &b.feature.version))
    });
    let (paging, records) = c.page(records.iter().map(Record::view).collect());
    Json(FeatureRecordPage { paging, records }).into_response()
}

/// A lease held now, with its record.
struct Held<'a> {
    row: &'a LeaseRow,
    record: &'a Feature,
}

impl Held<'_> {
    fn device(&self) -> &str {
        holder_parts(&self.row.device).0
    }

    fn user(&self) -> Option<&str> {
        holder_parts(&self.row.device).1
    }

    /// When what it holds runs out on the device: a metered grant's units at the record's
    /// expiry, a seat at the lease's (or borrow's) end.
    fn runs_out(&self) -> Expiry {
        if self.record.metered {
            self.record.expiry
        } else {
            Expiry::At(self.row.expires_at)
        }
    }
}

/// The leases stored. A single server reads them again only after its engine committed since the
/// last read (every change of a lease is a commit of its engine: the counter is read before the
/// rows, so a cached read is never older than the count it is kept under); a cluster member reads
/// them every time (another member's commits are not counted here). With 10,000 devices holding
/// seats this keeps the views within the manager's page budget (docs/performance.md).
async fn lease_rows(s: &Shared) -> Result<Arc<Vec<LeaseRow>>, Failure> {
    let engine = &s.server.engine;
    let clustered = engine.clustered();
    let commits = engine.stats().commits;
    if !clustered {
        let cached = s
            .lease_rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((n, rows)) = cached {
            if n == commits {
                return Ok(rows);
            }
        }
    }
    let rows = Arc::new(
        s.server
            .store
            .load_leases(engine.instance())
            .await
            .map_err(|e| {
                Failure::Storage(
                    e.to_string(),
                    "the license server could not read its leases; try again",
                )
            })?,
    );
    if !clustered {
        *s.lease_rows.lock().unwrap_or_else(|e| e.into_inner()) = Some((commits, rows.clone()));
    }
    Ok(rows)
}

/// The leases held now (stored, not expired, of a record served), with their records.
fn held<'a>(s: &Shared, rows: &'a [LeaseRow], records: &'a [Record]) -> Vec<Held<'a>> {
    let now = s.server.clock.now();
    let by_key: HashMap<String, &Feature> = records
        .iter()
        .map(|r| (crate::engine::record_key(&r.feature), &r.feature))
        .collect();
    rows.iter()
        .filter(|r| r.expires_at > now)
        .filter_map(|row| {
            let record = *by_key.get(&row.record_key)?;
            Some(Held { row, record })
        })
        .collect()
}

fn id_type(device: &str) -> String {
    device
        .split_once('=')
        .map(|(kind, _)| kind.to_string())
        .unwrap_or_default()
}

/// The device's value (after `KIND=`): what a person searching for `ws-1` means by it.
fn id_value(device: &str) -> &str {
    device.split_once('=').map_or(device, |(_, v)| v)
}

/// What the client said about its device last (its newest lease's word): alias and type.
#[derive(Default)]
struct Said {
    newest: Option<i64>,
    alias: Option<String>,
    device_type: String,
}

impl Said {
    fn note(&mut self, row: &LeaseRow) {
        if self.newest.is_none_or(|n| row.id > n) {
            self.newest = Some(row.id);
            self.alias.clone_from(&row.alias);
            self.device_type = row.device_type.as_str().to_string();
        }
    }
}

/// Each device and user holding leases, in device and user order.
fn devices_of(held: &[Held<'_>]) -> Vec<DeviceView> {
    struct Acc {
        said: Said,
        runs_out: Expiry,
        leases: u64,
        features: BTreeSet<String>,
    }
    let mut by: BTreeMap<(&str, Option<&str>), Acc> = BTreeMap::new();
    for h in held {
        let acc = by.entry((h.device(), h.user())).or_insert_with(|| Acc {
            said: Said::default(),
            runs_out: h.runs_out(),
            leases: 0,
            features: BTreeSet::new(),
        });
        acc.said.note(h.row);
        if h.runs_out().sort_key() > acc.runs_out.sort_key() {
            acc.runs_out = h.runs_out();
        }
        acc.leases += 1;
        acc.features.insert(h.record.name.clone());
    }
    by.into_iter()
        .map(|((device, user), acc)| DeviceView {
            device_id: device.to_string(),
            id_type: id_type(device),
            device_type: acc.said.device_type,
            alias: acc.said.alias,
            user: user.map(str::to_string),
            expires: expiry_time(acc.runs_out),
            leases: acc.leases,
            features: acc.features.into_iter().collect(),
        })
        .collect()
}

fn device_matches<T>(
    c: &Checked<'_, T>,
    device: &str,
    alias: Option<&str>,
    user: Option<&str>,
) -> bool {
    c.matches(
        [Some(device), Some(id_value(device)), alias, user]
            .into_iter()
            .flatten(),
    )
}

/// One feature: its records (each version summed, and every record) and the devices holding it.
#[utoipa::path(get, path = "/api/v1/admin/features/{name}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("name" = String, Path, description = "the feature's name, exactly"), ViewQuery),
    responses((status = 200, body = FeatureView, description = "the feature, with a page of the devices holding its seats; `q` matches a device's id (or the part after `KIND=`), alias or user; sort by device, alias, user, device_type, version, count, overdraft, expires"),
        (status = 400, body = Problem, description = "invalid_query: a parameter that does not fit (the detail names it)"),
        (status = 404, body = Problem, description = "no_such_feature: the server serves no record of that name"),
        (status = 503, body = Problem, description = "storage_unavailable: the leases could not be read")))]
pub(crate) async fn feature(
    State(s): State<Shared>,
    _viewer: Viewer,
    Path(name): Path<String>,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Response {
    let q = match read_query(query) {
        Ok(q) => q,
        Err(d) => return bad_query(d),
    };
    let c = match check(&q, HOLDER_SORT) {
        Ok(c) => c,
        Err(d) => return bad_query(d),
    };
    let mut records: Vec<Record> = records(&s)
        .await
        .into_iter()
        .filter(|r| r.feature.name == name)
        .collect();
    if records.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "no_such_feature",
            format!("the server serves no feature named {name:?} (names are exact; GET /api/v1/admin/features lists them)"),
        );
    }
    records.sort_by(|a, b| a.feature.version.cmp(&b.feature.version));
    let rows = match lease_rows(&s).await {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let held = held(&s, &rows, &records);
    struct Acc {
        said: Said,
        count: u64,
        overdraft: u64,
        expires: OffsetDateTime,
        borrowed: bool,
    }
    let mut by: BTreeMap<(&str, Option<&str>, &Version), Acc> = BTreeMap::new();
    for h in &held {
        let acc = by
            .entry((h.device(), h.user(), &h.record.version))
            .or_insert_with(|| Acc {
                said: Said::default(),
                count: 0,
                overdraft: 0,
                expires: h.row.expires_at,
                borrowed: false,
            });
        acc.said.note(h.row);
        acc.count += u64::try_from(h.row.count).unwrap_or(0);
        acc.overdraft += u64::try_from(h.row.overdraft).unwrap_or(0);
        acc.expires = acc.expires.max(h.row.expires_at);
        acc.borrowed |= h.row.borrowed;
    }
    let rows: Vec<FeatureHolder> = by
        .into_iter()
        .filter(|((device, user, _), acc)| {
            device_matches(&c, device, acc.said.alias.as_deref(), *user)
        })
        .map(|((device, user, version), acc)| FeatureHolder {
            device_id: device.to_string(),
            id_type: id_type(device),
            device_type: acc.said.device_type,
            alias: acc.said.alias,
            user: user.map(str::to_string),
            version: version.to_string(),
            count: acc.count,
            overdraft: acc.overdraft,
            expires: rfc3339(acc.expires),
            borrowed: acc.borrowed,
        })
        .collect();
    let (paging, devices) = c.page(rows);
    Json(FeatureView {
        name,
        summary: summarise(&records),
        records: records.iter().map(Record::view).collect(),
        paging,
        devices,
    })
    .into_response()
}

/// The devices the server serves now: each host id and user holding leases.
#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", security(("token" = []), ("session" = [])),
    params(ViewQuery),
    responses((status = 200, body = DevicePage, description = "a page of devices; `q` matches a device's id (or the part after `KIND=`), alias or user; sort by device, id_type, device_type, alias, user, expires, leases, features"),
        (status = 400, body = Problem, description = "invalid_query: a parameter that does not fit (the detail names it)"),
        (status = 503, body = Problem, description = "storage_unavailable: the leases could not be read")))]
pub(crate) async fn devices(
    State(s): State<Shared>,
    _viewer: Viewer,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Response {
    let q = match read_query(query) {
        Ok(q) => q,
        Err(d) => return bad_query(d),
    };
    let c = match check(&q, DEVICE_SORT) {
        Ok(c) => c,
        Err(d) => return bad_query(d),
    };
    let records = records(&s).await;
    let rows = match lease_rows(&s).await {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let held = held(&s, &rows, &records);
    let rows: Vec<DeviceView> = devices_of(&held)
        .into_iter()
        .filter(|d| device_matches(&c, &d.device_id, d.alias.as_deref(), d.user.as_deref()))
        .collect();
    let (paging, devices) = c.page(rows);
    Json(DevicePage { paging, devices }).into_response()
}

/// One device: each user on it, and every feature it holds with the lease's and the record's
/// expiry.
#[utoipa::path(get, path = "/api/v1/admin/devices/{id}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "the device's host id, `KIND=VALUE` (any spelling of it: `ETHERNET=00:50:56:9A:3B:01` is `ethernet=0050569a3b01`)")),
    responses((status = 200, body = DeviceDetails, description = "the device and what it holds"),
        (status = 404, body = Problem, description = "no_such_device: the device holds no lease now"),
        (status = 503, body = Problem, description = "storage_unavailable: the leases could not be read")))]
pub(crate) async fn device(
    State(s): State<Shared>,
    _viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let id = id
        .parse::<HostId>()
        .map_or_else(|_| id.clone(), |h| h.to_string());
    let records = records(&s).await;
    let rows = match lease_rows(&s).await {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let held = held(&s, &rows, &records);
    let mine: Vec<Held<'_>> = held.into_iter().filter(|h| h.device() == id).collect();
    if mine.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "no_such_device",
            format!("device {id:?} holds no lease now (GET /api/v1/admin/devices lists the devices served)"),
        );
    }
    let holders = devices_of(&mine);
    let expires = mine
        .iter()
        .map(Held::runs_out)
        .max_by_key(|e| e.sort_key())
        .map(expiry_time)
        .unwrap_or_default();
    let mut features: Vec<ConsumedFeature> = mine
        .iter()
        .map(|h| ConsumedFeature {
            name: h.record.name.clone(),
            version: h.record.version.to_string(),
            user: h.user().map(str::to_string),
            count: u64::try_from(h.row.count).unwrap_or(0),
            overdraft: u64::try_from(h.row.overdraft).unwrap_or(0),
            borrowed: h.row.borrowed,
            lease_expires: rfc3339(h.row.expires_at),
            expiry: h.record.expiry.to_string(),
            activation_id: h.record.activation_id.clone(),
        })
        .collect();
    features.sort_by(|a, b| (&a.name, &a.user).cmp(&(&b.name, &b.user)));
    Json(DeviceDetails {
        id_type: id_type(&id),
        device_id: id,
        holders,
        expires,
        features,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> ViewQuery {
        serde_urlencoded_like(s)
    }

    /// The query as the router reads it.
    fn serde_urlencoded_like(s: &str) -> ViewQuery {
        let uri: axum::http::Uri = format!("/x?{s}").parse().unwrap();
        Query::<ViewQuery>::try_from_uri(&uri).unwrap().0
    }

    fn nums(rows: &[u32]) -> Vec<u32> {
        rows.to_vec()
    }

    const NUM_SORT: &[(&str, Cmp<u32>)] = &[
        ("n", |a, b| a.cmp(b)),
        ("odd", |a, b| (a % 2).cmp(&(b % 2))),
    ];

    #[test]
    fn pages_sort_and_bounds() {
        let all: Vec<u32> = (1..=7).collect();
        let query = q("page=2&page_size=3");
        let c = check(&query, NUM_SORT).unwrap();
        let (p, rows) = c.page(all.clone());
        assert_eq!((p.total, p.page, p.page_size), (7, 2, 3));
        assert_eq!(nums(&rows), vec![4, 5, 6]);
        let query = q("page=9&page_size=3");
        let c = check(&query, NUM_SORT).unwrap();
        assert!(c.page(all.clone()).1.is_empty());
        // desc on a field, ties in natural order
        let query = q("sort=odd&order=desc&page_size=10");
        let c = check(&query, NUM_SORT).unwrap();
        assert_eq!(c.page(all.clone()).1, vec![1, 3, 5, 7, 2, 4, 6]);
        // an order alone reverses the default field
        let query = q("order=desc");
        let c = check(&query, NUM_SORT).unwrap();
        assert_eq!(c.page(all).1, vec![7, 6, 5, 4, 3, 2, 1]);
        for bad in [
            "page=0",
            "page_size=0",
            "page_size=501",
            "sort=colour",
            "q=",
        ] {
            assert!(check(&q(bad), NUM_SORT).is_err(), "{bad}");
        }
        assert!(check(&q("page_size=500"), NUM_SORT).is_ok());
    }

    #[test]
    fn search_is_exact_or_prefix_without_ascii_case() {
        let query = q("q=CAD");
        let c = check::<u32>(&query, NUM_SORT).unwrap();
        assert!(c.matches(["cad"]));
        assert!(!c.matches(["cad-pro"]));
        let query = q("q=CAD&match=prefix");
        let c = check::<u32>(&query, NUM_SORT).unwrap();
        assert!(c.matches(["cad-pro"]));
        assert!(!c.matches(["ca"]));
        assert!(!c.matches(["é"]));
    }

    #[test]
    fn expiries_sort_permanent_last() {
        assert_eq!(cmp_expiry("2027-01-01", "permanent"), Ordering::Less);
        assert_eq!(cmp_expiry("2027-01-01", "2026-12-31"), Ordering::Greater);
        assert_eq!(cmp_version("10.0", "9.0"), Ordering::Greater);
    }
}
