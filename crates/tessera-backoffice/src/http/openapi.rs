//! What the OpenAPI document says beyond the handlers' own annotations: the answers every
//! operation gets from its extractors (a body too large, a wrong content type, malformed JSON or
//! form data, a query string that does not fit, a missing API token), added in one place so none
//! is forgotten, and every error answer filed under `application/problem+json` with the `Problem`
//! schema.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
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

/// The operations of a path.
pub(crate) fn operations_mut(item: &mut utoipa::openapi::PathItem) -> Vec<&mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .collect()
}

const PROBLEM_JSON: &str = "application/problem+json";

fn is_problem_ref(schema: &Option<RefOr<utoipa::openapi::schema::Schema>>) -> bool {
    matches!(schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

/// Makes sure `op` documents `status` with a problem+json body, keeping what it says already.
fn problem(op: &mut Operation, status: &str, description: &str) {
    let entry = op
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| ResponseBuilder::new().description(description).into());
    if let RefOr::T(r) = entry {
        if !r.content.contains_key(PROBLEM_JSON) {
            r.content.insert(
                PROBLEM_JSON.to_string(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
        }
    }
}

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

    /// Resolves `#/components/schemas/X` references.
    fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve(
                doc,
                &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            ),
            None => s,
        }
    }

    /// Whether `v` fits `schema` (the parts of JSON Schema the document uses: types, objects with
    /// properties, required and additionalProperties, arrays, enums, oneOf of enums).
    fn fits(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
        let s = resolve(doc, schema);
        if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
            return if alts.iter().any(|a| fits(doc, a, v, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: {v} fits none of {s}"))
            };
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            if !values.contains(v) {
                return Err(format!("{at}: {v} is not one of {values:?}"));
            }
        }
        let types: Vec<&str> = match &s["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed = types.is_empty()
            || types.contains(&kind)
            || (kind == "integer" && types.contains(&"number"));
        if !allowed {
            return Err(format!("{at}: {v} is a {kind}, the schema says {types:?}"));
        }
        match v {
            Value::Object(m) => {
                let props = s["properties"].as_object().cloned().unwrap_or_default();
                for r in s["required"].as_array().into_iter().flatten() {
                    let r = r.as_str().unwrap();
                    if !m.contains_key(r) {
                        return Err(format!("{at}: required {r} is missing"));
                    }
                }
                for (k, x) in m {
                    match props.get(k) {
                        Some(p) => fits(doc, p, x, &format!("{at}.{k}"))?,
                        None if s["additionalProperties"] == Value::Bool(false) => {
                            return Err(format!("{at}: field {k} is not in the schema"))
                        }
                        None => {}
                    }
                }
            }
            Value::Array(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    fits(doc, &s["items"], x, &format!("{at}[{i}]"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

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

    pub(crate) fn check_document(doc: &Value) -> Result<(), String> {
        let bare = |s: &Value| {
            let s = resolve(doc, s);
            s.get("type") == Some(&Value::String("object".into()))
                && s.get("properties").is_none()
                && s.get("additionalProperties").is_none()
                && s.get("allOf").is_none()
                && s.get("oneOf").is_none()
        };
        let mut errors = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let name = format!("{} {path}", method.to_uppercase());
                let body = op.get("requestBody");
                let takes_input = body.is_some()
                    || op.get("security").is_some()
                    || op["parameters"].as_array().is_some_and(|p| !p.is_empty());
                let responses = op["responses"].as_object().unwrap();
                for (status, r) in responses {
                    for (ct, c) in r["content"].as_object().into_iter().flatten() {
                        if bare(&c["schema"]) {
                            errors.push(format!(
                                "{name}: the {status} answer ({ct}) is a bare object"
                            ));
                        }
                        let problem = c["schema"]["$ref"] == "#/components/schemas/Problem";
                        if problem != (ct == "application/problem+json") {
                            errors.push(format!(
                                "{name}: the {status} answer files {ct} with the schema {}",
                                c["schema"]
                            ));
                        }
                    }
                    if (status.starts_with('4') || status.starts_with('5'))
                        && r["content"].as_object().is_none_or(|c| c.is_empty())
                    {
                        errors.push(format!("{name}: the {status} answer has no body"));
                    }
                }
                for (ct, c) in body
                    .and_then(|b| b["content"].as_object())
                    .into_iter()
                    .flatten()
                {
                    if bare(&c["schema"]) {
                        errors.push(format!("{name}: the request body ({ct}) is a bare object"));
                    }
                }
                let problem_4xx = responses.iter().any(|(s, r)| {
                    s.starts_with('4') && r["content"].get("application/problem+json").is_some()
                });
                if takes_input && !problem_4xx {
                    errors.push(format!("{name}: takes input but documents no 4xx problem"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
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
        let real = serde_json::to_value(tessera_core::license::LicensePolicy::default()).unwrap();
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
