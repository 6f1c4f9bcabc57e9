//! `POST /api/v1/capability`: a capability request is parsed (here), decided, persisted and signed
//! (the engine, [`crate::engine::Engine::handle`]) and answered (here), through the rate limit and
//! the database lock.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_service::problem::ApiError;
use tessera_store::ClaimStatus;
use tessera_wire::capability::CapabilityRequest;

use super::{body_problem, problem, AppState, ClientIp, Failure, Shared};
use crate::engine::{Answer, EngineError};
use crate::openapi::Problem;

/// Takes a capability request from `ip`'s allowance; the 429 answer when it is used up.
pub(crate) fn check_rate(s: &AppState, ip: ClientIp) -> Result<(), Box<Response>> {
    let Some(limiter) = &s.limiter else {
        return Ok(());
    };
    limiter.allow(ip.0).map_err(|wait| {
        Box::new(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} capability requests a minute from your address; try again in {wait} s (the administrator sets capability_requests_per_minute in server.toml)",
                    limiter.per_minute()
                ),
            )
            .with_retry_after(wait)
            .into_response(),
        )
    })
}

/// The two headers a capability request is read with, its content type and its signature, taken
/// without copying the request's other headers (the hot path: see docs/performance.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct CapabilityHeaders {
    content_type: Option<HeaderValue>,
    signature: Option<HeaderValue>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CapabilityHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(CapabilityHeaders {
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            signature: parts
                .headers
                .get(tessera_wire::signing::SIGNATURE_HEADER)
                .cloned(),
        })
    }
}

/// With `require_signed_requests`: the refusal of a request not signed by a registered client key.
async fn check_signature(
    s: &AppState,
    headers: &CapabilityHeaders,
    body: &[u8],
) -> Result<(), Box<Response>> {
    use crate::client_keys::SignatureRefusal;
    let header = headers.signature.as_ref().map(HeaderValue::as_bytes);
    match s.server.check_request_signature(header, body).await {
        Ok(_) => Ok(()),
        Err(refusal) => {
            let (status, code, detail) = match refusal {
                SignatureRefusal::Required => (
                    StatusCode::UNAUTHORIZED,
                    "signature_required",
                    "this license server takes only capability requests signed by a registered client key: send the header `Tessera-Signature: keyid=…, alg=…, created=…, sig=…` (docs/protocol.md); the administrator registers keys with `tessera server client-keys add`".to_string(),
                ),
                SignatureRefusal::Invalid(why) => {
                    (StatusCode::UNAUTHORIZED, "signature_invalid", why)
                }
                SignatureRefusal::UnknownKey(id) => (
                    StatusCode::FORBIDDEN,
                    "unknown_client_key",
                    format!("client key {id} is not registered on this license server: ask its administrator to add it (`tessera server client-keys add FILE`)"),
                ),
            };
            tracing::debug!(code, "capability request refused: {detail}");
            Err(Box::new(problem(status, code, detail)))
        }
    }
}

/// The answer to a capability request while this process does not hold the database lock.
fn lock_lost(reason: &str) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "lock_lost",
        format!("this license server process does not hold the database lock ({reason}); nothing was granted, renewed or returned: retry with the same request id shortly, or through another server"),
    )
}

pub use tessera_wire::capability::CapabilityAnswer;

/// The request in a body: JSON (by its content type) that parses as a [`CapabilityRequest`].
/// Parsed straight from the bytes; only a body that fails is parsed again by axum's extractor,
/// which tracks the path inside the document for its message (`features[0].count: ...`).
fn capability_request(
    headers: &CapabilityHeaders,
    body: &[u8],
) -> Result<CapabilityRequest, (StatusCode, &'static str, String)> {
    let json = headers
        .content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            JsonRejection::from(axum::extract::rejection::MissingJsonContentType::default())
                .body_text(),
        ));
    }
    match serde_json::from_slice(body) {
        Ok(r) => Ok(r),
        Err(_) => match Json::<CapabilityRequest>::from_bytes(body) {
            Ok(Json(r)) => Ok(r),
            Err(e) => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.body_text(),
            )),
        },
    }
}

/// A [`CapabilityAnswer`] as JSON, written directly: the token (JWS compact, base64url and dots)
/// needs no escaping and the certificate is escaped once when installed, where the serializer would
/// scan both, about two kilobytes, byte by byte for every answer.
fn answer_body(token: &str, certificate_json: Option<&str>) -> Response {
    // no quote, backslash or control character (checked without an early exit, which lets the
    // compiler check many bytes at a time)
    let plain = token
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    let body = if plain {
        let certificate = certificate_json.unwrap_or("null");
        let mut b = String::with_capacity(token.len() + certificate.len() + 32);
        b.push_str("{\"response\":\"");
        b.push_str(token);
        b.push_str("\",\"certificate\":");
        b.push_str(certificate);
        b.push('}');
        b
    } else {
        // not a token this server makes; escaped the slow way all the same
        let answer = CapabilityAnswer {
            response: token.to_string(),
            certificate: certificate_json.and_then(|c| serde_json::from_str(c).ok()),
        };
        serde_json::to_string(&answer).unwrap_or_default()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Takes, previews, renews, returns or borrows seats. See docs/protocol.md.
#[utoipa::path(post, path = "/api/v1/capability", tag = "capability",
    params(("Tessera-Signature" = Option<String>, Header, description = "keyid=…, alg=rsa-pss-sha256|rsa-pkcs1-sha256|ed25519, created=…, sig=… (docs/protocol.md); required when the server sets require_signed_requests")),
    request_body(content = crate::openapi::CapabilityRequestDoc, description = "a capability request (docs/protocol.md)"),
    responses((status = 200, body = CapabilityAnswer, description = "the signed (or sealed) answer; refused features are listed in it, not as an error"),
        (status = 401, body = Problem, description = "signature_required (the server requires signed requests and none came), signature_invalid (the Tessera-Signature header does not read, its time is too far from the server's, or the signature does not verify)"),
        (status = 403, body = Problem, description = "not_lease_holder: a renew or return whose session proof does not prove the lease; unknown_client_key: signed with a key not registered here"),
        (status = 413, body = Problem, description = "body_too_large: the body is over 64 KiB"),
        (status = 415, body = Problem, description = "unsupported_media_type: the body is not sent as application/json"),
        (status = 422, body = Problem, description = "invalid_request: not JSON, or not a capability request (an unknown field, a missing one, a feature named twice, a renew without its proof)"),
        (status = 429, body = Problem, description = "rate_limited: too many requests from this client; with Retry-After"),
        (status = 500, body = Problem, description = "internal: a fault inside the server; the detail names the id under which it is logged, nothing more"),
        (status = 503, body = Problem, description = "storage_unavailable (nothing was stored), lock_lost (this process does not hold the database lock)")))]
pub(crate) async fn capability(
    State(s): State<Shared>,
    ip: ClientIp,
    headers: CapabilityHeaders,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    s.requests.incr();
    if let Err(r) = check_rate(&s, ip) {
        return *r;
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_problem(e.status()),
    };
    // one branch on a flag when the policy is off: the hot path stays as it was
    if s.server.config.require_signed_requests {
        if let Err(r) = check_signature(&s, &headers, &body).await {
            return *r;
        }
    }
    let req = capability_request(&headers, &body);
    let req = match req {
        Ok(r) => r,
        Err((status, code, detail)) => return problem(status, code, detail),
    };
    if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
        return lock_lost(&reason);
    }
    match s.server.engine.handle(req).await {
        Ok(Answer {
            token,
            sealed,
            denied,
        }) => {
            if denied {
                s.denied.incr();
            }
            // a sealed answer is checked with the session key alone: no certificate to send
            let certificate = if sealed {
                None
            } else {
                s.server
                    .certificate
                    .read()
                    .await
                    .as_ref()
                    .map(|c| c.json.clone())
            };
            answer_body(&token, certificate.as_deref())
        }
        Err(e @ EngineError::Store(_)) => {
            if let ClaimStatus::Lost { reason } = s.server.store.claim_status() {
                tracing::warn!(error = %e, "capability request not stored");
                return lock_lost(&reason);
            }
            Failure::engine(e).into_response()
        }
        Err(e) => Failure::engine(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_requests_parse_fast_and_fail_with_axums_messages() {
        let mut h = CapabilityHeaders::default();
        let body = br#"{"operation":"request","device_id":"string=a","request_id":"r","nonce":"0123456789abcdef","features":[{"name":"modeler"}]}"#;
        let (status, code, err) = capability_request(&h, body).unwrap_err();
        assert_eq!(
            (status, code),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        assert!(err.contains("Content-Type: application/json"), "{err}");
        h.content_type = Some("application/json; charset=utf-8".parse().unwrap());
        let r = capability_request(&h, body).unwrap();
        assert_eq!(r.features[0].name, "modeler");
        h.content_type = Some("application/problem+json".parse().unwrap());
        assert!(capability_request(&h, body).is_ok());
        let bad = br#"{"operation":"request","device_id":"string=a","request_id":"r","nonce":"0123456789abcdef","features":[{"name":"modeler","count":-1}]}"#;
        let (status, _, err) = capability_request(&h, bad).unwrap_err();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.contains("features[0].count"), "{err}");
        let (_, _, err) = capability_request(&h, b"{not json").unwrap_err();
        assert!(err.contains("parse"), "{err}");
    }

    async fn parsed(r: Response) -> CapabilityAnswer {
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn answers_written_by_hand_are_the_json_of_the_answer() {
        let cert = "-----BEGIN TESSERA SERVER CERTIFICATE-----\nab\"c\\d\u{1}é\n-----END-----\n";
        let served = crate::server::ServedCertificate::new(cert.to_string());
        let a = parsed(answer_body("eyJh.eyJi-_0.c2ln", Some(&served.json))).await;
        assert_eq!(a.response, "eyJh.eyJi-_0.c2ln");
        assert_eq!(a.certificate.as_deref(), Some(cert));
        let a = parsed(answer_body("eyJh.eyJi.c2ln", None)).await;
        assert_eq!(a.certificate, None);
        // anything else is escaped by the serializer
        let odd = "a\"b\\c\nd";
        let a = parsed(answer_body(odd, Some(&served.json))).await;
        assert_eq!(a.response, odd);
        assert_eq!(a.certificate.as_deref(), Some(cert));
    }
}
