//! What the OpenAPI document says beyond the handlers' own annotations: the answers every
//! operation gets from its extractors (a body too large, a wrong content type, malformed JSON or
//! form data, a query string that does not fit, a missing API token), added in one place so none
//! is forgotten, and every error answer filed under `application/problem+json` with the `Problem`
//! schema.

use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// An OpenAPI 3.1 document.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
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

/// The schema of a type that flattens `base` (an object schema, e.g. a derived one) into its own
/// fields `extra` (name, type, description, required). Derived, it would be `allOf` of `base`
/// and the extra fields, which no value satisfies when `base` refuses unknown fields.
pub fn flattened(
    base: RefOr<utoipa::openapi::schema::Schema>,
    description: &str,
    extra: &[(&str, utoipa::openapi::schema::Type, &str, bool)],
) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Schema};
    let mut object = match base {
        RefOr::T(Schema::Object(o)) => o,
        _ => Object::new(),
    };
    object.description = Some(description.to_string());
    for (i, (name, kind, what, required)) in extra.iter().enumerate() {
        object.properties.insert(
            (*name).to_string(),
            ObjectBuilder::new()
                .schema_type(kind.clone())
                .description(Some(*what))
                .into(),
        );
        if *required {
            object.required.insert(i, (*name).to_string());
        }
    }
    RefOr::T(Schema::Object(object))
}

use tessera_host::serve::openapi::{is_problem_ref, operations_mut, problem, PROBLEM_JSON};

/// Adds what every operation can answer because of how it is reached, and files every error
/// answer documented with the `Problem` schema under `application/problem+json`.
#[derive(Debug)]
pub struct Answers;

impl utoipa::Modify for Answers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
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
                    problem(
                        op,
                        "401",
                        "unauthorized: the API token is missing, unknown, revoked or expired (checked before the body is read)",
                    );
                    problem(
                        op,
                        "403",
                        "forbidden: the token's user has a role that may not do this (a read-only user changes nothing)",
                    );
                }
                let query = op.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    })
                });
                if query {
                    problem(op, "422", "invalid_request: the query string does not fit");
                }
                let body_types: Vec<String> = op
                    .request_body
                    .as_ref()
                    .map(|b| b.content.keys().cloned().collect())
                    .unwrap_or_default();
                if !body_types.is_empty() {
                    problem(op, "413", "body_too_large: the body is over 64 KiB");
                }
                if body_types
                    .iter()
                    .any(|t| t.ends_with("json") || t.ends_with("x-www-form-urlencoded"))
                {
                    problem(
                        op,
                        "400",
                        "malformed_json: the body is not JSON (or form data)",
                    );
                    problem(
                        op,
                        "415",
                        "unsupported_media_type: the body is not sent with the documented content type",
                    );
                    problem(
                        op,
                        "422",
                        "invalid_request: the body does not fit the schema",
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
    use tessera_host::serve::openapi::{check_document, fits, resolve};

    fn doc() -> Value {
        serde_json::to_value(crate::http::openapi()).unwrap()
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
        doc["paths"]["/api/v1/customers"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"] = serde_json::json!({"type": "object"});
        let err = check_document(&doc).unwrap_err();
        assert!(
            err.contains("POST /api/v1/customers: the request body"),
            "{err}"
        );
        let mut doc = self::doc();
        let r = doc["paths"]["/api/v1/customers"]["get"]["responses"]
            .as_object_mut()
            .unwrap();
        r.retain(|s, _| !s.starts_with('4'));
        let err = check_document(&doc).unwrap_err();
        assert!(
            err.contains("GET /api/v1/customers: takes input but documents no 4xx problem"),
            "{err}"
        );
    }

    /// Every request body schema accepts what the service takes: an example built from the
    /// schema's required fields and the real types parse alike.
    #[test]
    fn request_schemas_are_satisfiable() {
        let doc = doc();
        let product = serde_json::json!({"id": "cad", "name": "CAD",
            "features": [{"name": "modeler", "version": "2.0"}], "trial_days": 30,
            "basic_features": ["modeler"], "demo_days": 14, "version": "2026"});
        let schema = &doc["paths"]["/api/v1/products"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        fits(&doc, schema, &product, "product").unwrap();
        assert!(serde_json::from_value::<crate::http::api::NewProduct>(product.clone()).is_ok());
        // every field of the real type is in the schema, and the schema names no other
        let props: std::collections::BTreeSet<String> = resolve(&doc, schema)["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let fields: std::collections::BTreeSet<String> =
            product.as_object().unwrap().keys().cloned().collect();
        assert_eq!(props, fields);
        let entitlement = serde_json::json!({"customer_id": "CUS-1", "lines": [{"product": "cad",
            "count": 5, "model": "floating", "features": ["modeler"], "starts_at": 1,
            "expires_at": 2, "term_days": 30, "overdraft": 1, "demo": false,
            "policy": {"grace_days": 30, "renewal_days": 30, "offline_max_days": 30,
                "offline_refresh_days": 14, "offline_max_active": 3}}]});
        let schema = &doc["paths"]["/api/v1/entitlements"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        fits(&doc, schema, &entitlement, "entitlement").unwrap();
        assert!(
            serde_json::from_value::<crate::http::api::NewEntitlement>(entitlement.clone()).is_ok()
        );
        let line = resolve(&doc, &resolve(&doc, schema)["properties"]["lines"]["items"]).clone();
        let props: std::collections::BTreeSet<String> = line["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let fields: std::collections::BTreeSet<String> = entitlement["lines"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(props, fields);
        // the policy's fields are the real policy's
        let mut policy = tessera_core::license::LicensePolicy::default();
        policy.server_locks.insert(
            "lease_seconds".into(),
            tessera_core::license::LockedValue::Number(600),
        );
        let real = serde_json::to_value(policy).unwrap();
        fits(&doc, &line["properties"]["policy"], &real, "policy").unwrap();
        let props: std::collections::BTreeSet<String> =
            resolve(&doc, &line["properties"]["policy"])["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
        let fields: std::collections::BTreeSet<String> =
            real.as_object().unwrap().keys().cloned().collect();
        assert_eq!(props, fields);
        let activation = serde_json::json!({"server_hostid": "ethernet=0050569a3b01",
            "server_key": "k", "activations": [{"key": "K", "count": 2}]});
        let schema = &doc["paths"]["/api/v1/activate/server"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        fits(&doc, schema, &activation, "activation").unwrap();
        assert!(
            serde_json::from_value::<crate::http::api::ServerActivationRequest>(activation).is_ok()
        );
    }
}
