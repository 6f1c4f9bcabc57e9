//! What the back office takes and answers on its public API: a license server's activation
//! (`POST /api/v1/activate/server`, sent by the license server), a device's activation and a trial
//! (sent by the client library and `tessera client`), and what a license server's usage report
//! gets back (`POST /api/v1/usage`): the renewed bundle and any use over the entitlement.

use serde::{Deserialize, Serialize};
use tessera_core::HostId;

/// One activation key with the count wanted from it: what a license server's activation (online
/// or offline, [`crate::admin::ActivateRequest`] and [`ServerActivationRequest`]) takes.
pub use tessera_core::offline::KeyCount;

/// A license server's activation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerActivationRequest {
    /// The server's host id, `KIND=VALUE`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, example = "ethernet=0050569a3b01")
    )]
    pub server_hostid: HostId,
    /// The server's Ed25519 public key: base64url of its 32 bytes, or SPKI PEM.
    pub server_key: String,
    /// Activation keys and counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<KeyCountDoc>))]
    pub activations: Vec<KeyCount>,
}

/// One activation key with the count wanted from it (`tessera_core::offline::KeyCount`): its
/// OpenAPI schema, which takes no other fields.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyCount)]
pub struct KeyCountDoc {
    /// The activation key as typed.
    pub key: String,
    /// How many seats to activate.
    pub count: u32,
}

/// A device's activation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceActivationRequest {
    /// The node-locked activation key.
    pub key: String,
    /// The device's PC identifier for the product.
    pub pc_id: String,
    /// The product the application is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The device's Ed25519 public key (base64url or SPKI PEM), with which it will sign usage
    /// reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

/// A trial registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrialRequest {
    /// The product whose trial to start.
    pub product: String,
    /// The machine's PC identifier for the product.
    pub pc_id: String,
}

/// What an activation answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivationResult {
    /// The license file (armoured), bound to the server or device.
    pub license: String,
    /// For a license server: its certificate (armoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Expiry of the license (unix seconds), if it expires.
    pub expires_at: Option<i64>,
}

/// What starting (or looking up) a trial answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrialResult {
    /// When the trial started on this machine (unix seconds): the first start, however often asked.
    pub started_at: i64,
    /// When it ends (unix seconds).
    pub expires_at: i64,
    /// Features that remain after it ends.
    pub basic_features: Vec<String>,
    /// A license for the trial, bound to the PC identifier: every feature until the end of the trial,
    /// the basic features permanently.
    pub license: String,
}

/// One feature used over its entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverUse {
    /// The feature used over its entitlement.
    pub feature: String,
    /// Peak use reported.
    pub peak: u32,
    /// Seats the server holds.
    pub licensed: i64,
    /// Peak overdraft reported.
    pub overdraft_peak: u32,
}

/// What a usage report got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageOutcome {
    /// False when this report id was received before (it is recorded once).
    pub recorded: bool,
    /// Features used over the entitlement.
    pub over_use: Vec<OverUse>,
    /// The renewed license bundle and certificate (for a license server; a device renews by
    /// activating again).
    pub renewal: Option<ActivationResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_activation_is_the_json_the_back_office_takes() {
        let r = ServerActivationRequest {
            server_hostid: "ethernet=0050569a3b01".parse().unwrap(),
            server_key: "k".into(),
            activations: vec![KeyCount {
                key: "K".into(),
                count: 2,
            }],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"server_hostid": "ethernet=0050569a3b01", "server_key": "k",
                "activations": [{"key": "K", "count": 2}]})
        );
        assert_eq!(
            serde_json::from_value::<ServerActivationRequest>(v).unwrap(),
            r
        );
    }

    #[test]
    fn a_device_activation_leaves_out_what_it_does_not_say() {
        let r = DeviceActivationRequest {
            key: "K".into(),
            pc_id: "P".into(),
            product: Some("cad".into()),
            device_key: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"key":"K","pc_id":"P","product":"cad"}"#
        );
    }

    #[test]
    fn a_usage_outcome_reads_with_and_without_a_renewal() {
        let o: UsageOutcome = serde_json::from_str(
            r#"{"recorded":true,"over_use":[{"feature":"f","peak":3,"licensed":2,"overdraft_peak":0}],"renewal":{"license":"L","certificate":"C","expires_at":null}}"#,
        )
        .unwrap();
        assert_eq!(o.over_use[0].feature, "f");
        let renewal = o.renewal.unwrap();
        assert_eq!(
            (renewal.license.as_str(), renewal.certificate.as_deref()),
            ("L", Some("C"))
        );
        let o: UsageOutcome =
            serde_json::from_str(r#"{"recorded":false,"over_use":[],"renewal":null}"#).unwrap();
        assert!(o.renewal.is_none());
    }
}
