//! What both services' OpenAPI documents share: the `Problem` answers every operation files under
//! `application/problem+json`, and a check of a served document (each service's tests run it): no
//! bare-object body, every problem answer under the right content type, and a small JSON-Schema
//! matcher to prove that a real request fits its documented schema.

use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// The content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every operation of a path (get, put, post, … that it has), to change in place.
pub fn operations_mut(item: &mut utoipa::openapi::PathItem) -> Vec<&mut Operation> {
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

/// Whether a schema is a reference to the `Problem` schema.
pub fn is_problem_ref(schema: &Option<RefOr<utoipa::openapi::schema::Schema>>) -> bool {
    matches!(schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

/// Makes sure `op` documents `status` with a problem+json body, keeping what it says already.
pub fn problem(op: &mut Operation, status: &str, description: &str) {
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

/// Resolves `#/components/schemas/X` references.
pub fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(
            doc,
            &doc["components"]["schemas"][r.rsplit('/').next().unwrap_or_default()],
        ),
        None => s,
    }
}

/// Whether `v` fits `schema` (the parts of JSON Schema the document uses: types, objects with
/// properties, required and additionalProperties, arrays, enums, oneOf of enums).
pub fn fits(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
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
                let r = r.as_str().unwrap_or_default();
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

/// Checks what a client generator needs of a served OpenAPI document: every operation that takes
/// input documents its problem answers as `application/problem+json` with the `Problem` schema,
/// every 4xx/5xx answer has a body, and no body is a bare object. Lists every fault found.
/// Operations tagged `manager` (the license server's HTML pages, forms for a browser that answer
/// HTML, tested in one) are not for a client generator and are left out.
pub fn check_document(doc: &Value) -> Result<(), String> {
    let bare = |s: &Value| {
        let s = resolve(doc, s);
        s.get("type") == Some(&Value::String("object".into()))
            && s.get("properties").is_none()
            && s.get("additionalProperties").is_none()
            && s.get("allOf").is_none()
            && s.get("oneOf").is_none()
    };
    let mut errors = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "manager"))
            {
                continue;
            }
            let name = format!("{} {path}", method.to_uppercase());
            let body = op.get("requestBody");
            let takes_input = body.is_some()
                || op.get("security").is_some()
                || op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let Some(responses) = op["responses"].as_object() else {
                errors.push(format!("{name}: no responses"));
                continue;
            };
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
