//! Floating seats from a license server: check out, keep alive, return.
//!
//! A [`Seat`] holds one lease. A plain background thread renews it at the interval the server gives;
//! dropping the seat (or [`Seat::release`]) returns it. Every answer is checked: the server
//! certificate against the producer's key, the response against the certified server key, and the
//! nonce against the one sent, so a fake server or a replayed answer is refused. Retries reuse the
//! request id, so a reconnect after a missed heartbeat never takes a second seat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use rand::RngCore;
use tessera_core::capability::{CapabilityResponseClaims, Operation};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::{Clock, Keyring, PublicKey};

use crate::ClientError;

/// A fresh request id.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn random_id() -> String {
    random_hex(12)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Talks the capability protocol to one license server.
#[derive(Debug, Clone)]
pub(crate) struct ServerLink {
    pub agent: ureq::Agent,
    pub url: String,
    pub producer: PublicKey,
    pub device_id: String,
    pub user: Option<String>,
    pub clock: Arc<dyn Clock>,
}

impl ServerLink {
    /// Sends one request and returns the verified claims.
    pub fn call(
        &self,
        operation: Operation,
        request_id: &str,
        features: serde_json::Value,
    ) -> Result<CapabilityResponseClaims, ClientError> {
        self.call_raw(operation, request_id, features, None, None)
            .map(|r| r.claims)
    }

    /// Renews or returns one lease proving the session key its grant carried (the server refuses
    /// a renew or return without that proof): the server answers with a response sealed by that
    /// key (a hash to check, not a signature), or signed when `signed` asks for it.
    pub fn call_session(
        &self,
        operation: Operation,
        request_id: &str,
        lease: u64,
        session_key: Option<&[u8]>,
        signed: bool,
    ) -> Result<CapabilityResponseClaims, ClientError> {
        self.call_raw(
            operation,
            request_id,
            serde_json::json!([]),
            None,
            Some(Held {
                lease,
                session_key,
                signed,
            }),
        )
        .map(|r| r.claims)
    }

    /// Sends one request; returns the verified claims with the signed texts (kept for borrowing).
    /// `held`: the lease a renew or return is about, with the proof of its session key.
    pub fn call_raw(
        &self,
        operation: Operation,
        request_id: &str,
        features: serde_json::Value,
        borrow_days: Option<u32>,
        held: Option<Held<'_>>,
    ) -> Result<Answer, ClientError> {
        let nonce = random_hex(16);
        let leases: Vec<u64> = held.iter().map(|h| h.lease).collect();
        let signed = held.as_ref().is_some_and(|h| h.signed);
        let session = match &held {
            Some(Held {
                lease,
                session_key: Some(k),
                ..
            }) if matches!(operation, Operation::Renew | Operation::Return) => Some((*k, *lease)),
            _ => None,
        };
        let proof = session.map(|(k, lease)| {
            tessera_core::capability::session_proof(k, operation, &nonce, request_id, lease)
        });
        let mut body = serde_json::json!({
            "operation": operation,
            "device_id": self.device_id,
            "user": self.user,
            "request_id": request_id,
            "nonce": nonce,
            "features": features,
            "leases": leases,
            "borrow_days": borrow_days,
            "session_proof": proof,
        });
        if signed {
            body["signed"] = serde_json::Value::Bool(true);
        }
        let answer: serde_json::Value = match self
            .agent
            .post(&format!("{}/api/v1/capability", self.url))
            .timeout(StdDuration::from_secs(10))
            .send_json(body)
        {
            Ok(r) => r.into_json().map_err(|e| self.bad(e.to_string()))?,
            Err(ureq::Error::Status(_, r)) => {
                let v: serde_json::Value = r.into_json().unwrap_or_default();
                return Err(ClientError::Refused {
                    code: v["code"].as_str().unwrap_or("refused").into(),
                    message: v["detail"]
                        .as_str()
                        .unwrap_or("the license server refused")
                        .into(),
                });
            }
            Err(e) => {
                return Err(ClientError::Unreachable {
                    url: self.url.clone(),
                    detail: e.to_string(),
                })
            }
        };
        let token = answer["response"].as_str().unwrap_or_default();
        if let Some(sealed_for) = tessera_core::capability::sealed_lease(token) {
            // sealed with the session key: only an answer to our proof can be, and only from a
            // server that knows the key the signed grant carried
            let Some((key, lease)) = session.filter(|(_, l)| *l == sealed_for) else {
                return Err(
                    self.bad("the answer is sealed for a lease this request did not prove".into())
                );
            };
            let claims = CapabilityResponseClaims::verify_sealed(token, key, &nonce)
                .map_err(|e| self.bad(format!("the sealed answer for lease {lease}: {e}")))?;
            if claims.device_id != self.device_id {
                return Err(self.bad("the answer is for another device".into()));
            }
            return Ok(Answer {
                claims,
                token: token.to_string(),
                certificate: answer["certificate"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                nonce,
            });
        }
        let now = self.clock.now();
        let cert_text = answer["certificate"].as_str().ok_or_else(|| {
            self.bad("the server sent no certificate: it is not activated".into())
        })?;
        let cert =
            ServerCertificateClaims::verify(cert_text, &Keyring::with(self.producer.clone()), now)
                .map_err(|e| {
                    self.bad(format!(
                        "its certificate is not from this product's producer: {e}"
                    ))
                })?;
        let key = cert
            .server_public_key()
            .map_err(|e| self.bad(e.to_string()))?;
        let claims = CapabilityResponseClaims::verify(token, &Keyring::with(key), &nonce, now)
            .map_err(|e| self.bad(e.to_string()))?;
        if claims.device_id != self.device_id {
            return Err(self.bad("the answer is for another device".into()));
        }
        Ok(Answer {
            claims,
            token: token.to_string(),
            certificate: cert_text.to_string(),
            nonce,
        })
    }

    fn bad(&self, detail: String) -> ClientError {
        ClientError::BadAnswer {
            url: self.url.clone(),
            detail,
        }
    }
}

/// The lease a renew or return is about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held<'a> {
    /// The lease.
    pub lease: u64,
    /// The session key its grant carried (the server refuses a renew or return without its proof).
    pub session_key: Option<&'a [u8]>,
    /// Ask for a signed answer rather than a sealed one.
    pub signed: bool,
}

/// A verified answer with the texts it was verified from.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub claims: CapabilityResponseClaims,
    pub token: String,
    pub certificate: String,
    pub nonce: String,
}

/// A seat taken offline: a signed grant kept in the state directory, valid until it expires.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Borrowed {
    /// The license server it was borrowed from.
    pub server: String,
    /// The feature.
    pub feature: String,
    /// The lease.
    pub lease: u64,
    /// When it must be back (unix seconds).
    pub expires: i64,
    /// The server's signed answer (JWS) granting it.
    pub response: String,
    /// The server certificate.
    pub certificate: String,
    /// The nonce the answer echoes.
    pub nonce: String,
    /// The request id it was borrowed under.
    pub request_id: String,
}

impl Borrowed {
    /// The session key its signed grant carried: a return must prove it (read from the stored
    /// answer; `None` if that holds none).
    pub(crate) fn session_key(&self) -> Option<Vec<u8>> {
        tessera_core::document::decode_unverified::<CapabilityResponseClaims>(
            &self.response,
            tessera_core::DocumentType::CapabilityResponse,
        )
        .ok()?
        .grants
        .iter()
        .find(|g| g.lease == self.lease)
        .and_then(session_key)
    }

    /// When the grant was made (unix seconds), read from the signed answer, for renewing it for
    /// as long again; `now` if it cannot be read.
    pub(crate) fn response_issued(&self, now: tessera_core::time::OffsetDateTime) -> i64 {
        tessera_core::document::decode_unverified::<CapabilityResponseClaims>(
            &self.response,
            tessera_core::DocumentType::CapabilityResponse,
        )
        .map(|c| c.iat.unix_timestamp())
        .unwrap_or(now.unix_timestamp())
    }

    /// Checks the stored grant offline: certificate by the producer, answer by the server, this
    /// device, the feature, not expired. Returns the expiry.
    pub(crate) fn verify(
        &self,
        producer: &PublicKey,
        device_id: &str,
        now: tessera_core::time::OffsetDateTime,
    ) -> Option<tessera_core::time::OffsetDateTime> {
        let cert = ServerCertificateClaims::verify(
            &self.certificate,
            &Keyring::with(producer.clone()),
            now,
        )
        .ok()?;
        let key = cert.server_public_key().ok()?;
        let claims =
            CapabilityResponseClaims::verify(&self.response, &Keyring::with(key), &self.nonce, now)
                .ok()?;
        if claims.device_id != device_id {
            return None;
        }
        let g = claims
            .grants
            .iter()
            .find(|g| g.feature == self.feature && g.borrowed && g.lease == self.lease)?;
        (g.expires > now).then_some(g.expires)
    }
}

/// Borrows `feature` for `days` from the server behind `link`.
pub(crate) fn borrow(
    link: &ServerLink,
    feature: &str,
    version: &str,
    days: u32,
) -> Result<Borrowed, ClientError> {
    let request_id = random_hex(12);
    let features = serde_json::json!([{"name": feature, "version": version, "count": 1}]);
    let a = link.call_raw(Operation::Borrow, &request_id, features, Some(days), None)?;
    let Some(g) = a.claims.grants.iter().find(|g| g.borrowed) else {
        let d = a.claims.denials.first();
        return Err(ClientError::Refused {
            code: d.map_or("denied".into(), |d| d.code.clone()),
            message: d.map_or("nothing was borrowed".into(), |d| d.message.clone()),
        });
    };
    Ok(Borrowed {
        server: link.url.clone(),
        feature: feature.to_string(),
        lease: g.lease,
        expires: g.expires.unix_timestamp(),
        response: a.token.clone(),
        certificate: a.certificate.clone(),
        nonce: a.nonce.clone(),
        request_id,
    })
}

/// Whether renewal `n` asks for a signed answer rather than a sealed one. A sealed answer can be
/// made by anyone holding the session key, the user included (say, a proxy answering renewals
/// itself after the server let the lease go); a signed one only by the certified server. Asking for
/// one every third renewal (once per lease length) bounds what such a proxy gains to one lease.
pub(crate) fn signed_beat(n: u64) -> bool {
    n.is_multiple_of(3)
}

/// The session key a signed grant carries, decoded.
pub(crate) fn session_key(g: &tessera_core::capability::GrantedSeat) -> Option<Vec<u8>> {
    g.session_key_bytes()
}

impl Shared {
    fn session_key(&self) -> Option<Vec<u8>> {
        self.session.lock().ok().and_then(|k| k.clone())
    }
}

struct Shared {
    link: ServerLink,
    feature: String,
    request_id: String,
    lease: AtomicU64,
    /// The session key of the lease held (from its signed grant).
    session: Mutex<Option<Vec<u8>>>,
    renewals: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
}

/// A floating seat held from a license server. Dropping it returns the seat.
pub struct Seat {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("feature", &self.shared.feature)
            .field("lease", &self.lease())
            .finish_non_exhaustive()
    }
}

impl Seat {
    pub(crate) fn checkout(
        link: ServerLink,
        feature: &str,
        version: &str,
    ) -> Result<Seat, ClientError> {
        let request_id = random_hex(12);
        let features = serde_json::json!([{"name": feature, "version": version, "count": 1}]);
        // a lost answer is retried with the same request id: never a second seat
        let mut last = None;
        let mut claims = None;
        for attempt in 0..3 {
            match link.call(Operation::Request, &request_id, features.clone()) {
                Ok(c) => {
                    claims = Some(c);
                    break;
                }
                Err(e @ ClientError::Unreachable { .. }) => {
                    last = Some(e);
                    std::thread::sleep(StdDuration::from_millis(200 * (attempt + 1)));
                }
                Err(e) => return Err(e),
            }
        }
        let claims = match claims {
            Some(c) => c,
            None => {
                return Err(last.unwrap_or(ClientError::Unreachable {
                    url: link.url.clone(),
                    detail: "no answer".into(),
                }))
            }
        };
        let Some(grant) = claims.grants.first() else {
            let d = claims.denials.first();
            return Err(ClientError::Refused {
                code: d.map_or("denied".into(), |d| d.code.clone()),
                message: d.map_or("no seat was granted".into(), |d| d.message.clone()),
            });
        };
        let interval = StdDuration::from_secs(claims.renew_interval_secs.max(1));
        let shared = Arc::new(Shared {
            link,
            feature: feature.to_string(),
            request_id,
            lease: AtomicU64::new(grant.lease),
            session: Mutex::new(session_key(grant)),
            renewals: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tessera-heartbeat".into())
            .spawn(move || heartbeat(&s, interval))
            .map_err(|e| ClientError::Io {
                path: "heartbeat thread".into(),
                detail: e.to_string(),
            })?;
        Ok(Seat {
            shared,
            thread: Some(thread),
        })
    }

    /// The lease id.
    pub fn lease(&self) -> u64 {
        self.shared.lease.load(Ordering::SeqCst)
    }

    /// How many times the heartbeat renewed the lease.
    pub fn renewals(&self) -> u64 {
        self.shared.renewals.load(Ordering::SeqCst)
    }

    /// Whether the seat was lost (the server no longer grants it and could not give it back).
    pub fn is_lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// Returns the seat now.
    pub fn release(mut self) -> Result<(), ClientError> {
        self.stop_and_return()
    }

    fn stop_and_return(&mut self) -> Result<(), ClientError> {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let lease = self.lease();
        let key = self.shared.session_key();
        self.shared
            .link
            .call_session(
                Operation::Return,
                &format!("{}-return", self.shared.request_id),
                lease,
                key.as_deref(),
                false,
            )
            .map(|_| ())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_and_return();
        }
    }
}

fn heartbeat(s: &Shared, interval: StdDuration) {
    let mut n = 0u64;
    loop {
        {
            let Ok(guard) = s.stop.lock() else { return };
            // checks the flag before sleeping: a stop asked before this thread waited is not lost
            let Ok((guard, _)) = s.wake.wait_timeout_while(guard, interval, |stop| !*stop) else {
                return;
            };
            if *guard {
                return;
            }
        }
        n += 1;
        let lease = s.lease.load(Ordering::SeqCst);
        let key = s.session_key();
        match s.link.call_session(
            Operation::Renew,
            &format!("{}-renew-{n}", s.request_id),
            lease,
            key.as_deref(),
            signed_beat(n),
        ) {
            Ok(c) if !c.grants.is_empty() => {
                s.renewals.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {
                // the server no longer holds it (it expired while we could not reach the server):
                // ask again with the original request id
                let features = serde_json::json!([{"name": s.feature, "count": 1}]);
                // (unreachable again: try at the next beat)
                if let Ok(c) = s.link.call(Operation::Request, &s.request_id, features) {
                    match c.grants.first() {
                        Some(g) => {
                            s.lease.store(g.lease, Ordering::SeqCst);
                            if let Ok(mut k) = s.session.lock() {
                                *k = session_key(g);
                            }
                        }
                        None => s.lost.store(true, Ordering::SeqCst),
                    }
                }
            }
            Err(_) => {} // unreachable for now: keep trying at the next beat
        }
    }
}
