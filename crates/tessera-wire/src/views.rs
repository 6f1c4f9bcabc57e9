//! The license server's views for its administrator: the features it serves (a summary by feature
//! and version, every feature record, one feature with the devices holding it) and the devices it
//! serves (each with what it holds). Every list is searched, sorted and paged by a [`ViewQuery`].

use serde::{Deserialize, Serialize};

/// How [`ViewQuery::q`] matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// The whole text (ASCII case aside).
    #[default]
    Exact,
    /// The start of the text (ASCII case aside).
    Prefix,
}

/// Sort order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Smallest first (the default).
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// The most rows a page holds.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Rows per page when the query does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The query of every list view: search, sort and page. Anything else in the query string is
/// refused (400 `invalid_query`), as are a page or page size out of range and a sort field the view
/// does not have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// Search text: only rows whose key matches it (features: the feature name; devices: the
    /// device id, the alias or the user). Leave it out for every row.
    #[serde(default)]
    pub q: Option<String>,
    /// How `q` matches: `exact` (the default: the whole name) or `prefix`; ASCII case aside.
    #[serde(default, rename = "match")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub match_mode: Option<MatchMode>,
    /// The field to sort by (each view lists its fields; by default its first). Ties keep the
    /// view's natural order (name, version; device, user).
    #[serde(default)]
    pub sort: Option<String>,
    /// `asc` (the default) or `desc`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub order: Option<SortOrder>,
    /// The page, from 1 (the default). A page past the last is empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub page: Option<u32>,
    /// Rows per page: 1 to 500 (default 50).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 500))]
    pub page_size: Option<u32>,
}

/// Where a page sits in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Paging {
    /// Rows matching the search, on every page.
    pub total: u64,
    /// This page, from 1.
    pub page: u32,
    /// Rows per page.
    pub page_size: u32,
}

/// One feature and version, its records summed (the features view's summary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureSummary {
    /// The feature's name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Feature records summed into this row.
    pub records: u32,
    /// Seats (units, when metered) of every record; null when a record is uncounted.
    pub count: Option<u64>,
    /// Seats in use (units consumed, when metered), overdraft seats among them.
    pub used: u64,
    /// Seats still free (`count - used`, not below 0); null when uncounted.
    pub available: Option<u64>,
    /// Seats in use beyond the count (overdraft).
    pub overdraft_used: u64,
    /// The earliest expiry of its records (`permanent` or a date, `YYYY-MM-DD`).
    pub first_expiry: String,
    /// The latest expiry of its records.
    pub last_expiry: String,
    /// A record is metered (units consumed, not returned).
    pub metered: bool,
    /// Every record is counted (false: a record serves without a limit).
    pub counted: bool,
}

/// A page of the features summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureSummaryPage {
    /// Where this page sits.
    #[serde(flatten)]
    pub paging: Paging,
    /// The rows.
    pub features: Vec<FeatureSummary>,
}

/// One feature record as served (the features view's details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureRecordView {
    /// The feature's name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Seats (units, when metered); null when uncounted.
    pub count: Option<u32>,
    /// Seats beyond the count the record may grant.
    pub overdraft: u32,
    /// Seats in use (units consumed, when metered), overdraft seats among them.
    pub used: u64,
    /// Seats still free; null when uncounted.
    pub available: Option<u64>,
    /// Metered: units consumed, not returned.
    pub metered: bool,
    /// For named users only.
    pub named_user: bool,
    /// Usable from (`YYYY-MM-DD`); null: from its issue.
    pub start: Option<String>,
    /// `permanent` or the date it ends (`YYYY-MM-DD`).
    pub expiry: String,
    /// The producer's string for the application.
    pub vendor_string: Option<String>,
    /// The product it was sold with.
    pub product: Option<String>,
    /// That product's version.
    pub product_version: Option<String>,
    /// The activation ID (license key) it came from.
    pub activation_id: Option<String>,
    /// The entitlement it came from.
    pub entitlement_id: Option<String>,
}

/// A page of the features details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureRecordPage {
    /// Where this page sits.
    #[serde(flatten)]
    pub paging: Paging,
    /// The rows.
    pub records: Vec<FeatureRecordView>,
}

/// A device holding seats of a feature (a row of a feature's page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureHolder {
    /// The device's host id (`KIND=VALUE`).
    pub device_id: String,
    /// The kind of that id (`ethernet`, `string`, …).
    pub id_type: String,
    /// `physical`, `virtual`, `container` or `unknown`, as the client said.
    pub device_type: String,
    /// The device's alias, as the client said.
    pub alias: Option<String>,
    /// The user on the device, as the client said.
    pub user: Option<String>,
    /// The version of the record its seats come from.
    pub version: String,
    /// Seats held (its leases of this feature together).
    pub count: u64,
    /// Of those, beyond the count.
    pub overdraft: u64,
    /// When its last lease of this feature runs out (RFC 3339, UTC).
    pub expires: String,
    /// A lease of it is borrowed (taken offline).
    pub borrowed: bool,
}

/// One feature: its records and the devices holding its seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureView {
    /// The feature's name.
    pub name: String,
    /// Each version's records summed.
    pub summary: Vec<FeatureSummary>,
    /// Every record of it.
    pub records: Vec<FeatureRecordView>,
    /// Where the page of devices sits.
    #[serde(flatten)]
    pub paging: Paging,
    /// The devices holding its seats (the page asked for).
    pub devices: Vec<FeatureHolder>,
}

/// A device the server serves: a host id and user holding leases (the devices view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceView {
    /// The device's host id (`KIND=VALUE`).
    pub device_id: String,
    /// The kind of that id (`ethernet`, `string`, …).
    pub id_type: String,
    /// `physical`, `virtual`, `container` or `unknown`, as the client last said.
    pub device_type: String,
    /// The device's alias, as the client last said.
    pub alias: Option<String>,
    /// The user on the device.
    pub user: Option<String>,
    /// When everything it holds has run out (RFC 3339, UTC; `permanent` when it holds a metered
    /// feature that never expires): its latest lease or borrow, or a metered feature's expiry.
    pub expires: String,
    /// Leases held.
    pub leases: u64,
    /// The features it holds, by name, each once.
    pub features: Vec<String>,
}

/// A page of the devices view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicePage {
    /// Where this page sits.
    #[serde(flatten)]
    pub paging: Paging,
    /// The rows.
    pub devices: Vec<DeviceView>,
}

/// A feature a device holds (a row of a device's page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumedFeature {
    /// The feature's name.
    pub name: String,
    /// The record's version.
    pub version: String,
    /// The user holding it.
    pub user: Option<String>,
    /// Seats held.
    pub count: u64,
    /// Of those, beyond the count.
    pub overdraft: u64,
    /// Borrowed (taken offline).
    pub borrowed: bool,
    /// When the lease runs out (RFC 3339, UTC).
    pub lease_expires: String,
    /// The record's own expiry (`permanent` or `YYYY-MM-DD`), as the back office set it.
    pub expiry: String,
    /// The activation ID the record came from.
    pub activation_id: Option<String>,
}

/// One device: each of its users as in the devices view, and every feature it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDetails {
    /// The device's host id (`KIND=VALUE`).
    pub device_id: String,
    /// The kind of that id.
    pub id_type: String,
    /// The device (with each user on it) as the devices view shows it.
    pub holders: Vec<DeviceView>,
    /// When everything the device holds has run out (as [`DeviceView::expires`]).
    pub expires: String,
    /// Every feature it holds, by name then user.
    pub features: Vec<ConsumedFeature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_its_fields_and_refuses_others() {
        let q: ViewQuery = serde_json::from_str(
            r#"{"q":"cad","match":"prefix","sort":"used","order":"desc","page":2,"page_size":10}"#,
        )
        .unwrap();
        assert_eq!(q.match_mode, Some(MatchMode::Prefix));
        assert_eq!(q.order, Some(SortOrder::Desc));
        assert_eq!((q.page, q.page_size), (Some(2), Some(10)));
        assert!(serde_json::from_str::<ViewQuery>(r#"{"colour":"red"}"#).is_err());
        assert!(serde_json::from_str::<ViewQuery>(r#"{"match":"fuzzy"}"#).is_err());
    }

    #[test]
    fn paging_is_flat_in_a_page() {
        let p = DevicePage {
            paging: Paging {
                total: 3,
                page: 1,
                page_size: 2,
            },
            devices: vec![],
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["total"], 3);
        assert_eq!(v["page_size"], 2);
        assert_eq!(serde_json::from_value::<DevicePage>(v).unwrap(), p);
    }
}
