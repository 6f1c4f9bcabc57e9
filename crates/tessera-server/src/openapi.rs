//! What the OpenAPI document says beyond the handlers' own annotations: the capability request's
//! schema (its type lives in `tessera-core`, which has no OpenAPI dependency, so it is mirrored
//! here and a test keeps the two in step), the shared `Problem` schema, the bearer scheme, and the
//! answers every operation gets from its extractors (a body too large, a wrong content type,
//! malformed JSON, a missing admin token), added in one place so none is forgotten.

use serde::{Deserialize, Serialize};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::ToSchema;

/// The body of every error answer: the wire type, shared with every caller.
pub use tessera_wire::Problem;

/// What the client asks for (`tessera_core::capability::Operation`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Operation)]
pub enum OperationDoc {
    /// Take seats.
    Request,
    /// Say what a request would get, taking nothing.
    Preview,
    /// Extend leases held.
    Renew,
    /// Give leases back.
    Return,
    /// Take seats offline until a date.
    Borrow,
}

/// What kind of machine a device is (`tessera_core::DeviceType`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeviceType)]
pub enum DeviceTypeDoc {
    /// Real hardware.
    Physical,
    /// A virtual machine.
    Virtual,
    /// A container.
    Container,
    /// Could not be determined (the default).
    #[default]
    Unknown,
}

/// One feature asked for (`tessera_core::capability::WantedFeature`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WantedFeature)]
pub struct WantedFeatureDoc {
    /// Feature name.
    pub name: String,
    /// Lowest acceptable version (default `1.0`).
    #[serde(default)]
    #[schema(example = "2.0")]
    pub version: String,
    /// Seats (default 1).
    #[serde(default)]
    #[schema(minimum = 1, default = 1)]
    pub count: u32,
}

/// A capability request (`tessera_core::capability::CapabilityRequest`; docs/protocol.md).
/// Unknown fields are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CapabilityRequest)]
pub struct CapabilityRequestDoc {
    /// The operation.
    pub operation: OperationDoc,
    /// The device's host id, `KIND=VALUE`.
    #[schema(example = "ethernet=0050569a3b01")]
    pub device_id: String,
    /// Physical, virtual, container or unknown (the default).
    #[serde(default)]
    pub device_type: DeviceTypeDoc,
    /// A human-readable name for the device.
    #[serde(default)]
    pub alias: Option<String>,
    /// The user on the device.
    #[serde(default)]
    pub user: Option<String>,
    /// What the client says about the device or user (at most 32; names of letters, digits, `_`,
    /// `-`, `.` up to 64 characters; values up to 256): rules of access may match on them.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Retrying the same request id never takes a second seat.
    pub request_id: String,
    /// Echoed in the signed response (16 to 128 characters; base64url is what clients send).
    #[schema(example = "c2VlZC1ub25jZS0wMDAx")]
    pub nonce: String,
    /// Features wanted (request, preview, borrow).
    #[serde(default)]
    pub features: Vec<WantedFeatureDoc>,
    /// Leases to renew or return.
    #[serde(default)]
    pub leases: Vec<u64>,
    /// For a borrow: days offline (at most the policy's longest borrow).
    #[serde(default)]
    pub borrow_days: Option<u32>,
    /// For a renew or return (of exactly one lease): HMAC-SHA256 under the lease's session key
    /// (base64url), proving the caller holds the lease. Required for renew and return.
    #[serde(default)]
    pub session_proof: Option<String>,
    /// With a `session_proof`: answer with a signature rather than a seal.
    #[serde(default)]
    pub signed: bool,
}

pub use tessera_wire::admin::{FeatureRecords, SyncOutcome};

/// An OpenAPI 3.1 document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenApiDocument {
    /// The OpenAPI version.
    pub openapi: String,
    /// Title, version, description.
    #[schema(value_type = std::collections::BTreeMap<String, serde_json::Value>)]
    pub info: serde_json::Value,
    /// The operations by path.
    #[schema(value_type = std::collections::BTreeMap<String, serde_json::Value>)]
    pub paths: serde_json::Value,
}

use tessera_host::serve::openapi::{is_problem_ref, operations_mut, problem, PROBLEM_JSON};

/// Adds what every operation can answer because of how it is reached, and files every error
/// answer under `application/problem+json`.
#[derive(Debug)]
pub struct Answers;

impl utoipa::Modify for Answers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "tessera_session",
                    "the session cookie of POST /api/v1/admin/login; changes also need the login's csrf_token in X-CSRF-Token",
                ),
            )),
        );
        components
            .schemas
            .entry("Problem".into())
            .or_insert_with(<Problem as utoipa::PartialSchema>::schema);
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                // an error documented with `body = Problem` is problem+json, and one documented
                // without a body has the problem body the server sends
                for (status, r) in op.responses.responses.iter_mut() {
                    let RefOr::T(r) = r else { continue };
                    if let Some(c) = r.content.swap_remove("application/json") {
                        let key = if is_problem_ref(&c.schema) {
                            PROBLEM_JSON
                        } else {
                            "application/json"
                        };
                        r.content.insert(key.to_string(), c);
                    }
                    if (status.starts_with('4') || status.starts_with('5')) && r.content.is_empty()
                    {
                        r.content.insert(
                            PROBLEM_JSON.to_string(),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        );
                    }
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    problem(op, "401", "unauthorized: no API token or session cookie, or one unknown, revoked, expired or logged out (checked before the body is read)");
                    problem(op, "403", "access_denied: the user's role may not do this (a read-only user changes nothing); csrf_token_missing: a session's change without X-CSRF-Token; password_change_required: the session's password must be changed first");
                    problem(
                        op,
                        "503",
                        "storage_unavailable: the credentials could not be checked; try again",
                    );
                }
                let body_types: Vec<String> = op
                    .request_body
                    .as_ref()
                    .map(|b| b.content.keys().cloned().collect())
                    .unwrap_or_default();
                if !body_types.is_empty() {
                    problem(op, "413", "body_too_large: the body is over 64 KiB");
                }
                if body_types.iter().any(|t| t.ends_with("json")) {
                    problem(op, "400", "malformed_json: the body is not JSON");
                    problem(
                        op,
                        "415",
                        "unsupported_media_type: the body is not sent as application/json",
                    );
                    problem(
                        op,
                        "422",
                        "invalid_request: the JSON does not fit the schema",
                    );
                } else if !body_types.is_empty() {
                    problem(op, "400", "unreadable_body: the body is not UTF-8 text");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tessera_core::capability::{CapabilityRequest, Operation, WantedFeature};
    use tessera_host::serve::openapi::{check_document, fits, resolve};

    fn doc() -> Value {
        serde_json::to_value(crate::http::openapi()).unwrap()
    }

    fn request_schema(doc: &Value) -> Value {
        doc["paths"]["/api/v1/capability"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]
            .clone()
    }

    /// Every field of the real request, set, in every form it takes.
    fn full_requests() -> Vec<CapabilityRequest> {
        let mut out = Vec::new();
        for (operation, device_type) in [
            (Operation::Request, tessera_core::DeviceType::Physical),
            (Operation::Preview, tessera_core::DeviceType::Virtual),
            (Operation::Renew, tessera_core::DeviceType::Container),
            (Operation::Return, tessera_core::DeviceType::Unknown),
            (Operation::Borrow, tessera_core::DeviceType::Physical),
        ] {
            out.push(CapabilityRequest {
                operation,
                device_id: "ethernet=0050569a3b01".into(),
                device_type,
                alias: Some("pc-7".into()),
                user: Some("alice".into()),
                attributes: [("department".to_string(), "design".to_string())].into(),
                request_id: "r-1".into(),
                nonce: "0123456789abcdef".into(),
                features: vec![WantedFeature {
                    name: "modeler".into(),
                    version: "2.0".parse().unwrap(),
                    count: 2,
                }],
                leases: vec![7, 9],
                borrow_days: Some(3),
                session_proof: Some("cHJvb2Y".into()),
                signed: true,
            });
        }
        out
    }

    #[test]
    fn the_capability_request_schema_is_the_request_the_server_parses() {
        let doc = doc();
        let schema = request_schema(&doc);
        let resolved = resolve(&doc, &schema).clone();
        for req in full_requests() {
            let v = serde_json::to_value(&req).unwrap();
            // every field the server parses is in the schema, with a type that fits
            fits(&doc, &schema, &v, "request").unwrap();
            let fields: std::collections::BTreeSet<&String> =
                v.as_object().unwrap().keys().collect();
            let props: std::collections::BTreeSet<&String> =
                resolved["properties"].as_object().unwrap().keys().collect();
            // and the schema names no field the server does not know (it refuses unknown ones)
            assert_eq!(fields, props, "the schema and CapabilityRequest differ");
            let feature = &v["features"][0];
            let fprops: std::collections::BTreeSet<&String> =
                resolve(&doc, &resolved["properties"]["features"]["items"])["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect();
            let ffields: std::collections::BTreeSet<&String> =
                feature.as_object().unwrap().keys().collect();
            assert_eq!(ffields, fprops, "the schema and WantedFeature differ");
        }
        // what the schema requires is what the server requires
        let required: Vec<&str> = resolved["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let minimal = serde_json::json!({"operation": "request", "device_id": "user=a",
            "request_id": "r", "nonce": "0123456789abcdef"});
        assert!(serde_json::from_value::<CapabilityRequest>(minimal.clone()).is_ok());
        fits(&doc, &schema, &minimal, "minimal").unwrap();
        for r in &required {
            let mut less = minimal.clone();
            less.as_object_mut().unwrap().remove(*r);
            assert!(
                serde_json::from_value::<CapabilityRequest>(less).is_err(),
                "the schema requires {r}, the server does not"
            );
        }
        // a null the schema allows, the server takes
        for p in resolved["properties"].as_object().unwrap().keys() {
            let mut with_null = minimal.clone();
            with_null[p.as_str()] = Value::Null;
            if fits(&doc, &schema, &with_null, "null").is_ok() {
                assert!(
                    serde_json::from_value::<CapabilityRequest>(with_null).is_ok(),
                    "the schema allows {p}: null, the server refuses it"
                );
            }
        }
    }

    #[test]
    fn the_capability_answer_schema_fits_the_answer() {
        let doc = doc();
        let schema = doc["paths"]["/api/v1/capability"]["post"]["responses"]["200"]["content"]
            ["application/json"]["schema"]
            .clone();
        for certificate in [None, Some("-----BEGIN…".to_string())] {
            let a = crate::http::CapabilityAnswer {
                response: "eyJh.eyJi.c2ln".into(),
                certificate,
            };
            fits(&doc, &schema, &serde_json::to_value(&a).unwrap(), "answer").unwrap();
        }
    }

    /// The rules a client generator needs: every operation that takes input documents its
    /// problem answers as `application/problem+json` with the `Problem` schema, and no body is a
    /// bare object.
    #[test]
    fn every_operation_documents_its_problems_and_no_body_is_a_bare_object() {
        check_document(&doc()).unwrap();
    }

    #[test]
    fn the_check_catches_a_bare_object_and_a_missing_problem() {
        let mut doc = doc();
        doc["paths"]["/api/v1/capability"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"] = serde_json::json!({"type": "object"});
        let err = check_document(&doc).unwrap_err();
        assert!(
            err.contains("POST /api/v1/capability: the request body"),
            "{err}"
        );
        let mut doc = self::doc();
        let r = doc["paths"]["/api/v1/admin/status"]["get"]["responses"]
            .as_object_mut()
            .unwrap();
        r.retain(|s, _| !s.starts_with('4'));
        let err = check_document(&doc).unwrap_err();
        assert!(
            err.contains("GET /api/v1/admin/status: takes input but documents no 4xx problem"),
            "{err}"
        );
    }
}
