//! What the engine's integration tests share: capability requests for the feature `modeler`, a
//! seat asked for and checked, and a renew or return proved with the seat's session key.

use tessera_core::capability::{
    session_proof, CapabilityRequest, CapabilityResponseClaims, GrantedSeat, Operation,
};
use tessera_core::{Keyring, SigningKey};
use tessera_engine::Engine;

/// The nonce of request number `n`.
pub fn nonce(n: u32) -> String {
    format!("nonce-{n:016}")
}

/// A request for one `modeler` seat for `device`.
pub fn request(device: &str, n: u32) -> CapabilityRequest {
    serde_json::from_value(serde_json::json!({
        "operation": "request", "device_id": device, "request_id": format!("r{n}"), "nonce": nonce(n),
        "features": [{"name": "modeler"}],
    }))
    .unwrap()
}

/// A renew or return of `seat` by `device`, with the session proof.
pub fn touch(op: Operation, device: &str, seat: &GrantedSeat, n: u32) -> CapabilityRequest {
    let key = seat.session_key_bytes().unwrap();
    let rid = format!("t{n}");
    let proof = session_proof(&key, op, &nonce(n), &rid, seat.lease);
    serde_json::from_value(serde_json::json!({
        "operation": if op == Operation::Renew { "renew" } else { "return" },
        "device_id": device, "request_id": rid, "nonce": nonce(n),
        "leases": [seat.lease], "session_proof": proof,
    }))
    .unwrap()
}

/// Asks `e` for one seat for `device`; the seat granted (the answer checked with `key`), if any.
pub async fn take(e: &Engine, key: &SigningKey, device: &str, n: u32) -> Option<GrantedSeat> {
    let a = e.handle(request(device, n)).await.unwrap();
    let c = CapabilityResponseClaims::verify(
        &a.token,
        &Keyring::with(key.public()),
        &nonce(n),
        tessera_core::time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    c.grants.into_iter().next()
}
