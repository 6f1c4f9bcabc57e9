//! The license server's admin API (`/api/v1/admin/…`, with the admin token): its status, online
//! and offline activation, and a sync with the back office. The `tessera server` commands send
//! and read these.

use serde::{Deserialize, Serialize};

/// A key and a count: the one type every activation takes (the core's, re-exported).
pub use crate::activation::KeyCount;

/// One feature record's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureState {
    /// The feature's name.
    pub name: String,
    /// The version the record grants; it serves requests for this version and below.
    pub version: String,
    /// Count, or null when uncounted.
    pub count: Option<u32>,
    /// Overdraft allowance.
    pub overdraft: u32,
    /// Seats in use.
    pub used: u64,
    /// Metered units consumed.
    pub consumed: u64,
    /// Expiry (`permanent` or a date).
    pub expiry: String,
    /// Activation (entitlement line) it came from.
    pub activation_id: Option<String>,
}

/// The server's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// This server's host id.
    pub hostid: String,
    /// Whether a license bundle is installed.
    pub activated: bool,
    /// Feature records and their use.
    pub features: Vec<FeatureState>,
    /// Leases held.
    pub leases: usize,
}

/// Activation keys to activate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The back office URL.
    pub backoffice: String,
    /// Keys and counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::activation::KeyCountDoc>))]
    pub activations: Vec<KeyCount>,
}

/// Keys and counts for an offline request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfflineRequestBody {
    /// Keys and counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::activation::KeyCountDoc>))]
    pub activations: Vec<KeyCount>,
}

/// The number of feature records served after an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureRecords {
    /// Feature records now served.
    pub feature_records: u64,
}

/// What a sync found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncOutcome {
    /// Features used beyond their entitlement, as the back office reported them.
    pub over_use: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_refuses_unknown_fields() {
        let ok = r#"{"backoffice":"http://bo","activations":[{"key":"K","count":2}]}"#;
        let r: ActivateRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(r.activations[0].count, 2);
        assert_eq!(serde_json::to_string(&r).unwrap(), ok);
        assert!(serde_json::from_str::<ActivateRequest>(
            r#"{"backoffice":"b","activations":[{"key":"K","count":2,"seats":1}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<OfflineRequestBody>(r#"{"activations":[],"x":1}"#).is_err());
        // one key-count type for every activation: the admin API's is the back office's
        let k: crate::activation::KeyCount = r.activations[0].clone();
        assert_eq!(k, KeyCount::new("K", 2));
    }
}

/// The reservation groups, as imported, exported and stored (the core's document type).
pub use tessera_core::reservations::Reservations;

/// The reservations view: the groups in force, and each entry with whether the server holds the
/// seats it reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationsView {
    /// The groups in force, in order (the export document's `groups`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<ReservationGroupDoc>))]
    pub groups: Vec<tessera_core::reservations::ReservationGroup>,
    /// Every entry, in order, with its status.
    pub entries: Vec<ReservationStatus>,
    /// Reservations stored that could not be read (the store was edited by hand), and why: the
    /// server serves without them until they are added again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One reservation entry with its status (a row of the reservations view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationStatus {
    /// The group.
    pub group: String,
    /// Who: a device's host id or `user=NAME` (normalised).
    pub holder: String,
    /// The holder's id type: `user`, or the device id's kind (`ethernet`, `machine_id`, …).
    pub id_type: String,
    /// The feature.
    pub feature: String,
    /// The lowest version that serves it.
    pub version: String,
    /// Seats reserved.
    pub count: u32,
    /// Whether the server holds them, set aside for the holder.
    pub satisfied: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<tessera_core::reservations::EntryStatus> for ReservationStatus {
    fn from(e: tessera_core::reservations::EntryStatus) -> Self {
        let id_type = e.id_type().to_string();
        let (satisfied, reason) = match e.status {
            tessera_core::reservations::Satisfied::Yes => (true, None),
            tessera_core::reservations::Satisfied::No { reason } => (false, Some(reason)),
        };
        ReservationStatus {
            group: e.group,
            holder: e.holder,
            id_type,
            feature: e.feature,
            version: e.version,
            count: e.count,
            satisfied,
            reason,
        }
    }
}

/// A reservation group (`tessera_core::reservations::ReservationGroup`): its OpenAPI schema.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReservationGroup)]
pub struct ReservationGroupDoc {
    /// The group's name (unique, 1 to 128 characters).
    pub name: String,
    /// Its reservations.
    pub reservations: Vec<ReservationDoc>,
}

/// A reservation: seats set aside for one device or one user.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reservation)]
pub struct ReservationDoc {
    /// A device's host id (`KIND=VALUE`) or a user (`user=NAME`).
    pub holder: String,
    /// What is reserved.
    pub entries: Vec<ReservationEntryDoc>,
}

/// A feature's seats reserved.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReservationEntry)]
pub struct ReservationEntryDoc {
    /// The feature.
    pub feature: String,
    /// The lowest version that serves it (`a.b`).
    pub version: String,
    /// Seats (at least 1).
    pub count: u32,
}

/// The reservations document (import and export): its OpenAPI schema.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reservations)]
pub struct ReservationsDoc {
    /// The groups, in order (earlier entries are set aside first).
    pub groups: Vec<ReservationGroupDoc>,
}

/// The named license pools view: the model kept, whether its pools are in force, and per pool and
/// feature record the seats held and in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolsView {
    /// The model's name (absent: no model, one default pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Whether its pools are in force now.
    pub in_force: bool,
    /// Why a model kept is not in force (it does not fit the licenses served now, or
    /// reservations are in force): the server serves one default pool meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in_force: Option<String>,
    /// What is legal but probably not meant (no rules, a pool no rule names, …) and what could not
    /// be placed.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Per pool (in the model's order, the default pool last) and feature record.
    #[serde(default)]
    pub pools: Vec<PoolRow>,
    /// A model stored that could not be read (the store was edited by hand), and why: the server
    /// serves without it until one is uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One pool's seats of one feature record (a row of the pools view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolRow {
    /// The pool's name; `default` for the default pool.
    pub pool: String,
    /// Whether this is the default pool (what no pool holds, for everybody).
    pub default: bool,
    /// The feature.
    pub feature: String,
    /// The record's version.
    pub version: String,
    /// The record's expiry (`permanent` or a date).
    pub expiry: String,
    /// Seats the pool holds on the record (the default pool: the count less every pool's seats).
    pub allocated: u64,
    /// The record's overdraft, which only the default pool extends into (0 for a named pool).
    pub overdraft: u32,
    /// Seats of the pool in use.
    pub used: u64,
    /// `available` (seats free), `full` (every seat in use) or `over` (more in use than
    /// allocated: the default pool in the record's overdraft, or leases counted here that a new
    /// model or a restart put here; see docs/model-language.md).
    pub status: String,
}

/// The named-pool model kept, as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolModelText {
    /// The model's name (empty if the text stored does not read).
    pub name: String,
    /// The text as uploaded.
    pub text: String,
}
