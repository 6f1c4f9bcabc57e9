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
