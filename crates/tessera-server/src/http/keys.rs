//! Keys and stuck seats, behind the admin API: client keys (upload, list, delete), trusted
//! producer keys (list, add, remove), the start-up token's rotation, and the release of a stuck
//! seat or of every seat of one device.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessera_store::{ClientKeyRecord, KeyRemoval, TrustedKeyRecord};
use tessera_wire::admin::{
    ClientKeyView, LeaseInfo, NewProducerKey, ProducerKeyView, ReleaseRequest, Released,
    TokenCreated,
};

use super::access::{Admin, Viewer};
use super::users::rfc3339;
use super::{body_problem, json_problem, problem, Failure, Shared};
use crate::openapi::Problem;

fn storage(e: impl std::fmt::Display, what: &'static str) -> Response {
    Failure::Storage(e.to_string(), what).into_response()
}

fn client_key_view(r: &ClientKeyRecord) -> ClientKeyView {
    ClientKeyView {
        id: r.id.clone(),
        algorithm: r.algorithm.clone(),
        added_at: rfc3339(r.added_at),
        added_by: r.added_by.clone(),
    }
}

fn producer_key_view(r: &TrustedKeyRecord) -> ProducerKeyView {
    ProducerKeyView {
        kid: r.kid.clone(),
        added_at: rfc3339(r.added_at),
        added_by: r.added_by.clone(),
        public_key: r.public_pem.clone(),
    }
}

/// The client keys registered: the public keys that may sign capability requests.
#[utoipa::path(get, path = "/api/v1/admin/client-keys", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<ClientKeyView>),
        (status = 503, body = Problem, description = "storage_unavailable")))]
pub(crate) async fn list_client_keys(State(s): State<Shared>, _viewer: Viewer) -> Response {
    match s.server.list_client_keys().await {
        Ok(keys) => Json(keys.iter().map(client_key_view).collect::<Vec<_>>()).into_response(),
        Err(e) => storage(
            e,
            "the license server could not read its client keys; try again",
        ),
    }
}

/// Registers a client key: the body is the public key as DER (`application/octet-stream`): an
/// RSA-2048 key as SubjectPublicKeyInfo or PKCS#1 RSAPublicKey, or an Ed25519 key as
/// SubjectPublicKeyInfo. Anything else is refused and nothing is stored.
#[utoipa::path(post, path = "/api/v1/admin/client-keys", tag = "admin", security(("token" = []), ("session" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the public key, DER"),
    responses((status = 200, body = ClientKeyView, description = "registered; its id is what clients name in `keyid=`"),
        (status = 409, body = Problem, description = "client_key_exists: that key is registered already"),
        (status = 413, body = Problem, description = "body_too_large"),
        (status = 422, body = Problem, description = "invalid_client_key: not a DER public key, not RSA-2048 or Ed25519 (RSA-1024, an EC key, garbage, PEM text); the detail says which and how to export one"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn add_client_key(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_problem(e.status()),
    };
    match s.server.add_client_key(&body, &admin.user).await {
        Ok(Ok(r)) => {
            admin
                .audit(
                    &s,
                    "client_key_add",
                    format!("registered client key {} ({})", r.id, r.algorithm),
                )
                .await;
            Json(client_key_view(&r)).into_response()
        }
        Ok(Err(refused)) => {
            admin
                .audit(
                    &s,
                    "client_key_add_failed",
                    format!(
                        "a client key upload ({} bytes) was refused: {refused}",
                        body.len()
                    ),
                )
                .await;
            let (status, code) = if refused.0.contains("registered already") {
                (StatusCode::CONFLICT, "client_key_exists")
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_key")
            };
            problem(status, code, refused.0)
        }
        Err(e) => storage(
            e,
            "the license server could not store the client key; nothing changed; try again",
        ),
    }
}

/// Deletes a client key: requests signed with it are refused from the next one on.
#[utoipa::path(delete, path = "/api/v1/admin/client-keys/{id}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("id" = String, Path, description = "the key's id, as listed")),
    responses((status = 204, description = "deleted"),
        (status = 404, body = Problem, description = "no_such_client_key"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn delete_client_key(
    State(s): State<Shared>,
    admin: Admin,
    Path(id): Path<String>,
) -> Response {
    match s.server.delete_client_key(&id).await {
        Ok(true) => {
            admin
                .audit(&s, "client_key_delete", format!("deleted client key {id}"))
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => {
            admin
                .audit(
                    &s,
                    "client_key_delete_failed",
                    format!("deleting client key {id} was refused: no such key"),
                )
                .await;
            problem(
                StatusCode::NOT_FOUND,
                "no_such_client_key",
                format!("no client key {id} is registered (list them with `tessera server client-keys list`)"),
            )
        }
        Err(e) => storage(
            e,
            "the license server could not delete the client key; nothing changed; try again",
        ),
    }
}

/// The producer keys trusted for license bundles and server certificates.
#[utoipa::path(get, path = "/api/v1/admin/producer-keys", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<ProducerKeyView>),
        (status = 503, body = Problem, description = "storage_unavailable")))]
pub(crate) async fn list_producer_keys(State(s): State<Shared>, _viewer: Viewer) -> Response {
    match s.server.list_producer_keys().await {
        Ok(keys) => Json(keys.iter().map(producer_key_view).collect::<Vec<_>>()).into_response(),
        Err(e) => storage(
            e,
            "the license server could not read its producer keys; try again",
        ),
    }
}

/// Trusts another producer key (the producer's new signing key, before it signs with it), so
/// that bundles and certificates signed by it are accepted alongside those of the keys trusted.
#[utoipa::path(post, path = "/api/v1/admin/producer-keys", tag = "admin", security(("token" = []), ("session" = [])),
    request_body = NewProducerKey,
    responses((status = 200, body = ProducerKeyView, description = "trusted from now on"),
        (status = 409, body = Problem, description = "producer_key_exists: trusted already"),
        (status = 422, body = Problem, description = "invalid_producer_key: not an Ed25519 SPKI PEM public key"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn add_producer_key(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<Json<NewProducerKey>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return json_problem(e),
    };
    match s
        .server
        .add_producer_key(&body.public_key, &admin.user)
        .await
    {
        Ok(Ok(r)) => {
            admin
                .audit(
                    &s,
                    "producer_key_add",
                    format!("trusted producer key {}", r.kid),
                )
                .await;
            Json(producer_key_view(&r)).into_response()
        }
        Ok(Err(refused)) => {
            admin
                .audit(
                    &s,
                    "producer_key_add_failed",
                    format!("trusting a producer key was refused: {refused}"),
                )
                .await;
            let (status, code) = if refused.0.contains("trusted already") {
                (StatusCode::CONFLICT, "producer_key_exists")
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_producer_key")
            };
            problem(status, code, refused.0)
        }
        Err(e) => storage(
            e,
            "the license server could not store the producer key; nothing changed; try again",
        ),
    }
}

/// Stops trusting a producer key. The last key trusted, and the key the installed license bundle
/// needs, cannot be removed.
#[utoipa::path(delete, path = "/api/v1/admin/producer-keys/{kid}", tag = "admin", security(("token" = []), ("session" = [])),
    params(("kid" = String, Path, description = "the key id, as listed")),
    responses((status = 204, description = "no longer trusted"),
        (status = 404, body = Problem, description = "no_such_producer_key"),
        (status = 409, body = Problem, description = "last_producer_key (the only key trusted), producer_key_in_use (the installed license bundle is signed with it)"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn remove_producer_key(
    State(s): State<Shared>,
    admin: Admin,
    Path(kid): Path<String>,
) -> Response {
    let refused = |status, code, detail: String| (status, code, detail);
    let outcome = match s.server.remove_producer_key(&kid).await {
        Ok(Some(KeyRemoval::Removed)) => Ok(()),
        Ok(Some(KeyRemoval::Last)) => Err(refused(
            StatusCode::CONFLICT,
            "last_producer_key",
            format!("producer key {kid} is the only key trusted: trust the producer's new key first (`tessera server producer-keys add FILE`); nothing changed"),
        )),
        Ok(None) => Err(refused(
            StatusCode::CONFLICT,
            "producer_key_in_use",
            format!("the license bundle installed is signed with producer key {kid}: install one signed with another key (`tessera server sync`) before removing it; nothing changed"),
        )),
        Ok(Some(_)) => Err(refused(
            StatusCode::NOT_FOUND,
            "no_such_producer_key",
            format!("no producer key {kid} is trusted (list them with `tessera server producer-keys list`)"),
        )),
        Err(e) => {
            return storage(
                e,
                "the license server could not remove the producer key; nothing changed; try again",
            )
        }
    };
    match outcome {
        Ok(()) => {
            admin
                .audit(
                    &s,
                    "producer_key_remove",
                    format!("stopped trusting producer key {kid}"),
                )
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err((status, code, detail)) => {
            admin
                .audit(
                    &s,
                    "producer_key_remove_failed",
                    format!("removing producer key {kid} was refused: {detail}"),
                )
                .await;
            problem(status, code, detail)
        }
    }
}

fn lease_info(l: crate::engine::NamedLease) -> LeaseInfo {
    LeaseInfo {
        lease: l.lease.id,
        device: l.lease.device.clone(),
        expires_at: rfc3339(l.lease.expires),
        feature: l.feature,
        count: l.lease.count,
        borrowed: l.lease.borrowed,
    }
}

/// Every lease held: what `release` takes (a lease id, or the device that holds it).
#[utoipa::path(get, path = "/api/v1/admin/leases", tag = "admin", security(("token" = []), ("session" = [])),
    responses((status = 200, body = Vec<LeaseInfo>)))]
pub(crate) async fn list_leases(State(s): State<Shared>, _viewer: Viewer) -> Response {
    let mut list: Vec<LeaseInfo> = s
        .server
        .engine
        .named_leases()
        .into_iter()
        .map(lease_info)
        .collect();
    list.sort_by(|a, b| (&a.device, &a.feature, a.lease).cmp(&(&b.device, &b.feature, b.lease)));
    Json(list).into_response()
}

/// Releases stuck seats: one lease, or every lease of one device (whatever the user). The seats
/// are free for others at once; stored before the answer (in a cluster, for every member). A
/// client that still runs finds its lease gone at its next renewal and must check out again.
#[utoipa::path(post, path = "/api/v1/admin/leases/release", tag = "admin", security(("token" = []), ("session" = [])),
    request_body = ReleaseRequest,
    responses((status = 200, body = Released, description = "the leases released"),
        (status = 404, body = Problem, description = "no_such_lease: nothing matched"),
        (status = 422, body = Problem, description = "invalid_request: give exactly one of lease and device"),
        (status = 503, body = Problem, description = "storage_unavailable: nothing changed")))]
pub(crate) async fn release(
    State(s): State<Shared>,
    admin: Admin,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return json_problem(e),
    };
    let (which, what, none) = match (body.lease, body.device) {
        (Some(id), None) => (
            crate::engine::Release::Lease(id),
            format!("lease {id}"),
            format!("no lease {id} is held"),
        ),
        (None, Some(device)) => {
            // the host id as the engine keeps it (`mac=…` in its canonical form)
            let device = device
                .trim()
                .parse::<tessera_core::HostId>()
                .map(|h| h.to_string())
                .unwrap_or_else(|_| device.trim().to_string());
            let what = format!("every lease of device {device}");
            let none = format!("device {device} holds no lease");
            (crate::engine::Release::Device(device), what, none)
        }
        _ => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "give exactly one of `lease` (a lease id) and `device` (a host id, KIND=VALUE)",
            )
        }
    };
    match s.server.engine.release(which).await {
        Ok(released) if released.is_empty() => problem(
            StatusCode::NOT_FOUND,
            "no_such_lease",
            format!("{none} (see the leases with `tessera server status`); nothing changed"),
        ),
        Ok(released) => {
            let list: Vec<LeaseInfo> = released.into_iter().map(lease_info).collect();
            let detail = list
                .iter()
                .map(|l| format!("{} ({} × {}, {})", l.lease, l.count, l.feature, l.device))
                .collect::<Vec<_>>()
                .join(", ");
            admin
                .audit(&s, "lease_release", format!("released {what}: {detail}"))
                .await;
            Json(Released { released: list }).into_response()
        }
        Err(e) => storage(
            e,
            "the license server could not store the release; nothing changed; try again",
        ),
    }
}

/// Replaces the start-up token (the admin token printed by `init`) with a new one, shown once
/// in this answer: the old one stops working at once. Other API tokens are kept.
#[utoipa::path(post, path = "/api/v1/admin/token/rotate", tag = "access", security(("token" = []), ("session" = [])),
    responses((status = 200, body = TokenCreated, description = "the new start-up token (shown once)"),
        (status = 503, body = Problem, description = "storage_unavailable: the old token still works")))]
pub(crate) async fn rotate_token(State(s): State<Shared>, admin: Admin) -> Response {
    match crate::token::new_admin_token(&s.server.store).await {
        Ok(token) => {
            let id = crate::token::admin_token_hash(&token)
                .chars()
                .take(16)
                .collect::<String>();
            admin
                .audit(
                    &s,
                    "token_rotate",
                    format!(
                        "rotated the start-up token of user {}; the new one is {id}",
                        crate::token::ADMIN_USER
                    ),
                )
                .await;
            Json(TokenCreated {
                token,
                id,
                user: crate::token::ADMIN_USER.into(),
                expires_at: None,
            })
            .into_response()
        }
        Err(e) => Failure::server(
            e,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            "the license server could not store the new token; the old one still works; try again",
        )
        .into_response(),
    }
}
