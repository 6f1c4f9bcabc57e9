//! Floating seats from a license server: check out, keep alive, return.
//!
//! A [`Seat`] holds one lease. A plain background thread renews it at the interval the server gives;
//! dropping the seat (or [`Seat::release`]) returns it. Every answer is checked: the server
//! certificate against the producer's key, the response against the certified server key, and the
//! nonce against the one sent, so a fake server or a replayed answer is refused. Retries reuse the
//! request id, so a reconnect after a missed heartbeat never takes a second seat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

use rand::RngCore;
use tessera_core::capability::{CapabilityResponseClaims, GrantedSeat, Operation};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::{Clock, Keyring, PublicKey};
use tessera_wire::capability::{CapabilityAnswer, CapabilityRequest, WantedFeature};

use crate::{ClientError, RefusalCode};

/// `count` seats of `feature` at `version` or newer, as a request asks for them; a version that does
/// not parse is [`ClientError::InvalidVersion`] (the application's mistake, caught before sending).
pub(crate) fn wanted(
    feature: &str,
    version: &str,
    count: u32,
) -> Result<Vec<WantedFeature>, ClientError> {
    let parsed =
        version
            .parse::<tessera_core::Version>()
            .map_err(|e| ClientError::InvalidVersion {
                version: version.to_string(),
                detail: e.to_string(),
            })?;
    Ok(vec![WantedFeature {
        name: feature.to_string(),
        version: parsed,
        count,
    }])
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Talks the capability protocol to one license server.
#[derive(Debug, Clone)]
pub(crate) struct ServerLink {
    pub agent: ureq::Agent,
    pub url: String,
    pub producer: PublicKey,
    pub device_id: String,
    pub user: Option<String>,
    pub alias: Option<String>,
    pub device_type: tessera_core::DeviceType,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub clock: Arc<dyn Clock>,
    /// How long one request may take.
    pub timeout: StdDuration,
    /// Signs each request, when configured.
    pub signer: Option<Arc<crate::signing::RequestSigner>>,
}

impl ServerLink {
    /// Sends one request and returns the verified claims.
    pub fn call(
        &self,
        operation: Operation,
        request_id: &str,
        features: Vec<WantedFeature>,
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
            Vec::new(),
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
        features: Vec<WantedFeature>,
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
        let body = CapabilityRequest {
            operation,
            device_id: self.device_id.clone(),
            device_type: self.device_type,
            alias: self.alias.clone(),
            user: self.user.clone(),
            attributes: self.attributes.clone(),
            request_id: request_id.to_string(),
            nonce: nonce.clone(),
            features,
            leases,
            borrow_days,
            session_proof: proof,
            signed,
        };
        let answer: CapabilityAnswer = match &self.signer {
            None => crate::http_post(
                &self.agent,
                &self.url,
                "/api/v1/capability",
                &body,
                self.timeout,
                "the license server refused",
            )?,
            Some(signer) => {
                let bytes = serde_json::to_vec(&body).map_err(|e| self.bad(e.to_string()))?;
                let header = signer.header(self.clock.now().unix_timestamp(), &bytes)?;
                crate::http_post_bytes(
                    &self.agent,
                    &self.url,
                    "/api/v1/capability",
                    &bytes,
                    (tessera_wire::signing::SIGNATURE_HEADER, &header),
                    self.timeout,
                    "the license server refused",
                )?
            }
        };
        let token = answer.response.as_str();
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
                certificate: answer.certificate.unwrap_or_default(),
                nonce,
            });
        }
        let now = self.clock.now();
        let cert_text = answer.certificate.as_deref().ok_or_else(|| {
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
    let features = wanted(feature, version, 1)?;
    let a = link.call_raw(Operation::Borrow, &request_id, features, Some(days), None)?;
    let Some(g) = a.claims.grants.iter().find(|g| g.borrowed) else {
        return Err(denial(&a.claims, "nothing was borrowed"));
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

/// The refusal an answer without a grant carries.
pub(crate) fn denial(claims: &CapabilityResponseClaims, otherwise: &str) -> ClientError {
    let d = claims.denials.first();
    ClientError::Refused {
        code: d.map_or(RefusalCode::Other("denied".into()), |d| {
            RefusalCode::from(d.code.as_str())
        }),
        message: d.map_or(otherwise.into(), |d| d.message.clone()),
        retry_after: None,
    }
}

/// What happened to a held seat, as the heartbeat saw it. Subscribe with [`Seat::events`] (a
/// channel) or [`Seat::on_event`] (a callback, called on the heartbeat's thread or task).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeatEvent {
    /// A renewal failed (the server cannot be reached, or it is busy); the heartbeat keeps
    /// trying at each renew interval. The seat is still held until its lease expires.
    Reconnecting {
        /// Why the renewal failed.
        error: ClientError,
    },
    /// After `Reconnecting` or `Lost`: the lease was renewed (or the seat taken again) and is held.
    Reconnected,
    /// The lease ran out without a renewal: the server may have given the seat to someone else.
    /// The seat still counts as held for the tolerance ([`crate::ClientConfig::seat_tolerance`]),
    /// then is `Lost`.
    LeaseExpired {
        /// When it expired (by the client's clock).
        at: OffsetDateTime,
    },
    /// The seat is no longer held: stop using the feature (save the user's work). The heartbeat
    /// keeps asking for it again with the original request; if it gets it, `Reconnected` follows.
    Lost {
        /// Why ([`ClientError::Refused`] when the server gave the seats to others, the network
        /// error when it could not be reached).
        reason: ClientError,
    },
}

impl std::fmt::Display for SeatEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeatEvent::Reconnecting { error } => {
                write!(f, "reconnecting to the license server: {error}")
            }
            SeatEvent::Reconnected => f.write_str("reconnected to the license server"),
            SeatEvent::LeaseExpired { at } => write!(
                f,
                "the license server could not renew the seat; its lease ran out at {} UTC",
                at.time()
            ),
            SeatEvent::Lost { reason } => write!(f, "the seat is lost: {reason}"),
        }
    }
}

/// Where a held seat stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeatState {
    /// Held, renewed on time.
    Held,
    /// The last renewal failed; the lease has not yet run out (plus the tolerance).
    Reconnecting,
    /// Not held: the lease ran out (plus the tolerance) without a renewal, or the server refused
    /// to give it back.
    Lost,
}

type Callback = Box<dyn Fn(&SeatEvent) + Send + Sync>;

/// The changing part of a seat.
#[derive(Debug)]
struct Live {
    lease: u64,
    session: Option<Vec<u8>>,
    /// The version the server granted.
    granted_version: String,
    expires: OffsetDateTime,
    last_renewal: OffsetDateTime,
    state: SeatState,
    expired_told: bool,
    /// Which server of the list answered last.
    current: usize,
}

/// What a seat's heartbeat (thread or task) and its handle share.
pub(crate) struct Shared {
    links: Vec<ServerLink>,
    feature: String,
    /// What was asked for (feature, version, count): a re-request asks for it again.
    wanted: Vec<WantedFeature>,
    count: u32,
    request_id: String,
    tolerance: Duration,
    interval: StdDuration,
    live: Mutex<Live>,
    renewals: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    subscribers: Mutex<Vec<mpsc::Sender<SeatEvent>>>,
    callbacks: Mutex<Vec<Callback>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("feature", &self.feature)
            .field("count", &self.count)
            .field("live", &self.live.lock().ok())
            .finish_non_exhaustive()
    }
}

/// What to check out: the feature, the version, how many seats, whether to wait in line, and
/// from which servers. Used with [`crate::Client::checkout_with`].
#[derive(Debug, Clone)]
pub struct Checkout {
    pub(crate) feature: String,
    pub(crate) version: String,
    pub(crate) count: u32,
    pub(crate) wait: Option<StdDuration>,
    pub(crate) servers: Vec<String>,
}

impl Checkout {
    /// One seat of `feature` at `version` (e.g. `"1.0"`) or newer.
    pub fn new(feature: &str, version: &str) -> Self {
        Checkout {
            feature: feature.to_string(),
            version: version.to_string(),
            count: 1,
            wait: None,
            servers: Vec::new(),
        }
    }

    /// `count` seats in one lease (default 1).
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// When every seat is in use (`all_in_use`), wait in line up to `wait` for one to come free:
    /// the request is sent again (same request id) after 1, 2, 4, … seconds (at most 15 between
    /// tries), or after the server's `Retry-After` when it gives one. The license server keeps no
    /// queue, so the first client to ask after a seat comes free gets it.
    pub fn wait_in_line(mut self, wait: StdDuration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Use this license server (call again to add more, tried in order) instead of the configured
    /// list and `TESSERA_SERVER`.
    pub fn server(mut self, url: &str) -> Self {
        self.servers.push(url.trim_end_matches('/').to_string());
        self
    }
}

/// How a checkout is bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub checkout_timeout: StdDuration,
    pub tolerance: Duration,
}

fn sleep_until_or(deadline: Instant, d: StdDuration) {
    let left = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep(d.min(left));
}

/// Asks the servers in turn (same request id) until one answers, within `deadline`. Transient
/// refusals (busy, storage) and network errors move on to the next server, then a next round.
fn request_once(
    links: &[ServerLink],
    start: usize,
    request_id: &str,
    features: &[WantedFeature],
    deadline: Instant,
) -> Result<(usize, CapabilityResponseClaims, OffsetDateTime), ClientError> {
    let mut last: Option<ClientError> = None;
    for round in 0..3u32 {
        for k in 0..links.len() {
            let i = (start + k) % links.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut link = links[i].clone();
            link.timeout = link.timeout.min(left);
            let sent = link.clock.now();
            match link.call(Operation::Request, request_id, features.to_vec()) {
                Ok(c) => return Ok((i, c, sent)),
                Err(e) if retryable(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        let pause = match &last {
            Some(ClientError::Refused {
                retry_after: Some(d),
                ..
            }) => *d,
            _ => StdDuration::from_millis(200 * u64::from(round + 1)),
        };
        if round < 2 {
            sleep_until_or(deadline, pause);
        }
    }
    Err(last.unwrap_or_else(|| ClientError::TimedOut {
        url: links.first().map(|l| l.url.clone()).unwrap_or_default(),
        after: links.first().map(|l| l.timeout).unwrap_or_default(),
    }))
}

/// A network error or a refusal that a retry with the same request id may get past.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => true,
        ClientError::Refused { code, .. } => code.is_transient(),
        _ => false,
    }
}

/// The lease's end by the client's clock: the time the request was sent plus the length the
/// server gave (so a server clock set differently does not matter).
fn lease_end(
    sent: OffsetDateTime,
    claims: &CapabilityResponseClaims,
    g: &GrantedSeat,
) -> OffsetDateTime {
    let length = g.expires - claims.iat;
    sent + length.max(Duration::ZERO)
}

impl Shared {
    /// Checks out: asks the servers in turn (waiting in line when asked to), then starts nothing:
    /// the caller runs the heartbeat.
    pub(crate) fn checkout(
        links: Vec<ServerLink>,
        want: &Checkout,
        limits: Limits,
    ) -> Result<Arc<Shared>, ClientError> {
        if links.is_empty() {
            return Err(ClientError::NoServer);
        }
        let request_id = random_hex(12);
        let features = wanted(&want.feature, &want.version, want.count)?;
        let waited_until = want.wait.map(|w| Instant::now() + w);
        let mut backoff = StdDuration::from_secs(1);
        let (current, claims, sent) = loop {
            // a lost answer is retried with the same request id: never a second seat
            let deadline = Instant::now() + limits.checkout_timeout;
            let (i, claims, sent) = request_once(&links, 0, &request_id, &features, deadline)?;
            if !claims.grants.is_empty() {
                break (i, claims, sent);
            }
            let refused = denial(&claims, "no seat was granted");
            let in_line = matches!(
                &refused,
                ClientError::Refused {
                    code: RefusalCode::AllInUse,
                    ..
                }
            );
            match waited_until {
                Some(until)
                    if in_line
                        && Instant::now() + backoff.min(StdDuration::from_millis(100)) < until =>
                {
                    sleep_until_or(until, backoff);
                    backoff = (backoff * 2).min(StdDuration::from_secs(15));
                }
                _ => return Err(refused),
            }
        };
        let Some(g) = claims.grants.first() else {
            return Err(denial(&claims, "no seat was granted"));
        };
        let now = links[current].clock.now();
        let interval = StdDuration::from_secs(claims.renew_interval_secs.max(1));
        Ok(Arc::new(Shared {
            feature: want.feature.clone(),
            wanted: features,
            count: want.count,
            request_id,
            tolerance: limits.tolerance,
            interval,
            live: Mutex::new(Live {
                lease: g.lease,
                session: session_key(g),
                granted_version: g.version.clone(),
                expires: lease_end(sent, &claims, g),
                last_renewal: now,
                state: SeatState::Held,
                expired_told: false,
                current,
            }),
            links,
            renewals: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
        }))
    }

    pub(crate) fn feature(&self) -> &str {
        &self.feature
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn interval(&self) -> StdDuration {
        self.interval
    }

    /// The request timeout.
    pub(crate) fn timeout(&self) -> StdDuration {
        self.links[0].timeout
    }

    fn now(&self) -> OffsetDateTime {
        self.links[0].clock.now()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // a poisoned lock still holds consistent data (no code panics while holding it)
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.lock().map(|s| *s).unwrap_or(true)
    }

    /// Asks the heartbeat to stop (it stops before its next request).
    pub(crate) fn ask_stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            *stop = true;
        }
        self.wake.notify_all();
    }

    /// Waits one renew interval (or until stopped); true when stopped.
    pub(crate) fn wait_interval(&self) -> bool {
        let Ok(guard) = self.stop.lock() else {
            return true;
        };
        // checks the flag before sleeping: a stop asked before this thread waited is not lost
        match self
            .wake
            .wait_timeout_while(guard, self.interval, |stop| !*stop)
        {
            Ok((guard, _)) => *guard,
            Err(_) => true,
        }
    }

    pub(crate) fn lease(&self) -> u64 {
        self.live().lease
    }

    pub(crate) fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::SeqCst)
    }

    pub(crate) fn lease_expires(&self) -> OffsetDateTime {
        self.live().expires
    }

    pub(crate) fn last_renewal(&self) -> OffsetDateTime {
        self.live().last_renewal
    }

    pub(crate) fn granted_version(&self) -> String {
        self.live().granted_version.clone()
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn server(&self) -> String {
        let i = self.live().current;
        self.links[i].url.clone()
    }

    /// Lost once the lease (plus the tolerance) has run out without a renewal, whatever the
    /// heartbeat has seen yet; or when the server refused to give the seat back.
    pub(crate) fn state(&self) -> SeatState {
        let live = self.live();
        if live.state == SeatState::Lost || self.now() >= live.expires + self.tolerance {
            SeatState::Lost
        } else {
            live.state
        }
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<SeatEvent> {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    pub(crate) fn on_event(&self, f: Callback) {
        if let Ok(mut cbs) = self.callbacks.lock() {
            cbs.push(f);
        }
    }

    fn emit(&self, e: SeatEvent) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|tx| tx.send(e.clone()).is_ok());
        }
        if let Ok(cbs) = self.callbacks.lock() {
            for cb in cbs.iter() {
                cb(&e);
            }
        }
    }

    /// One heartbeat: renew (or, when the server forgot the lease, ask again with the original
    /// request), then say what changed.
    pub(crate) fn beat(&self, n: u64) {
        let (lease, key, current) = {
            let live = self.live();
            (live.lease, live.session.clone(), live.current)
        };
        let mut outcome = Err(ClientError::NoServer);
        let mut answered_by = current;
        // the server that granted the lease first, then the others (a cluster shares leases)
        for k in 0..self.links.len() {
            if self.stopped() {
                return;
            }
            let i = (current + k) % self.links.len();
            let sent = self.now();
            outcome = self.links[i]
                .call_session(
                    Operation::Renew,
                    &format!("{}-renew-{n}", self.request_id),
                    lease,
                    key.as_deref(),
                    signed_beat(n),
                )
                .map(|c| (c, sent));
            answered_by = i;
            if !matches!(&outcome, Err(e) if retryable(e)) {
                break;
            }
        }
        let forgotten = match &outcome {
            Ok((c, _)) => c.grants.is_empty(),
            Err(ClientError::Refused { code, .. }) => {
                matches!(
                    code,
                    RefusalCode::UnknownLease | RefusalCode::NotLeaseHolder
                )
            }
            Err(_) => false,
        };
        if forgotten {
            if self.stopped() {
                return;
            }
            // the server no longer holds it (it expired while we could not reach the server):
            // ask again, with the original request id and version
            let deadline = Instant::now() + self.links[answered_by].timeout;
            outcome = request_once(
                &self.links,
                answered_by,
                &self.request_id,
                &self.wanted,
                deadline,
            )
            .and_then(|(i, c, sent)| {
                answered_by = i;
                if c.grants.is_empty() {
                    Err(denial(&c, "the seat was given to someone else"))
                } else {
                    Ok((c, sent))
                }
            });
        }
        let now = self.now();
        let mut events = Vec::new();
        {
            let mut live = self.live();
            match outcome {
                Ok((c, sent)) => {
                    if let Some(g) = c.grants.first() {
                        if forgotten {
                            live.lease = g.lease;
                            live.session = session_key(g);
                        }
                        live.granted_version = g.version.clone();
                        live.expires = lease_end(sent, &c, g);
                    }
                    live.last_renewal = now;
                    live.current = answered_by;
                    live.expired_told = false;
                    if live.state != SeatState::Held {
                        live.state = SeatState::Held;
                        events.push(SeatEvent::Reconnected);
                    }
                    self.renewals.fetch_add(1, Ordering::SeqCst);
                }
                Err(error) => {
                    let refused = forgotten && matches!(error, ClientError::Refused { .. });
                    if live.state == SeatState::Held && !refused {
                        live.state = SeatState::Reconnecting;
                        events.push(SeatEvent::Reconnecting {
                            error: error.clone(),
                        });
                    }
                    if now >= live.expires && !live.expired_told {
                        live.expired_told = true;
                        events.push(SeatEvent::LeaseExpired { at: live.expires });
                    }
                    if live.state != SeatState::Lost
                        && (refused || now >= live.expires + self.tolerance)
                    {
                        live.state = SeatState::Lost;
                        events.push(SeatEvent::Lost { reason: error });
                    }
                }
            }
        }
        // a stop asked while a re-request was granted: give that seat back at once
        if forgotten && self.stopped() {
            let _ = self.give_back(self.links[answered_by].timeout);
            return;
        }
        for e in events {
            self.emit(e);
        }
    }

    /// Returns the seat (one try per server, all within `timeout`). A lost seat is
    /// `SeatLost` (its lease may be someone else's by now; it is returned all the same in case
    /// the server still holds it).
    pub(crate) fn give_back(&self, timeout: StdDuration) -> Result<(), ClientError> {
        let lost = self.state() == SeatState::Lost;
        let (lease, key, current) = {
            let live = self.live();
            (live.lease, live.session.clone(), live.current)
        };
        let mut result = Err(ClientError::NoServer);
        // `timeout` bounds the whole return, whatever the number of servers
        let deadline = Instant::now() + timeout;
        for k in 0..self.links.len() {
            let i = (current + k) % self.links.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut link = self.links[i].clone();
            link.timeout = link.timeout.min(left);
            result = link
                .call_session(
                    Operation::Return,
                    &format!("{}-return", self.request_id),
                    lease,
                    key.as_deref(),
                    false,
                )
                .map(|_| ());
            if !matches!(&result, Err(e) if retryable(e)) {
                break;
            }
        }
        if lost {
            return Err(ClientError::SeatLost {
                feature: self.feature.clone(),
            });
        }
        match result {
            // the server let the lease go meanwhile: it is not held, whatever the clock said
            Err(ClientError::Refused {
                code: RefusalCode::UnknownLease,
                ..
            }) => Err(ClientError::SeatLost {
                feature: self.feature.clone(),
            }),
            other => other,
        }
    }
}

/// How long a seat's drop may wait for its return (at most the configured request timeout).
pub(crate) const DROP_TIMEOUT: StdDuration = StdDuration::from_secs(2);

/// Floating seats held by one client (for [`crate::Client::check`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldSeats(Arc<Mutex<Vec<Weak<Shared>>>>);

impl HeldSeats {
    pub(crate) fn add(&self, s: &Arc<Shared>) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(s));
        }
    }

    /// A held (not lost, not released) seat of `feature` whose granted version serves `wanted`.
    pub(crate) fn find(
        &self,
        feature: &str,
        wanted: &tessera_core::Version,
    ) -> Option<Arc<Shared>> {
        let v = self.0.lock().ok()?;
        v.iter().filter_map(Weak::upgrade).find(|s| {
            s.feature == feature
                && !s.stopped()
                && s.state() != SeatState::Lost
                && s.granted_version()
                    .parse::<tessera_core::Version>()
                    .is_ok_and(|have| have >= *wanted)
        })
    }
}

/// A floating seat held from a license server, renewed by a background thread at the interval
/// the server gives. Dropping it returns the seat (waiting at most 2 seconds for the server);
/// a seat never returned (the process killed, `std::process::exit`) comes back to the pool when
/// its lease expires.
pub struct Seat {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Seat {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Seat, ClientError> {
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tessera-heartbeat".into())
            .spawn(move || {
                let mut n = 0u64;
                while !s.wait_interval() {
                    n += 1;
                    s.beat(n);
                }
            });
        match thread {
            Ok(t) => Ok(Seat {
                shared,
                thread: Some(t),
            }),
            Err(e) => {
                let _ = shared.give_back(DROP_TIMEOUT);
                Err(ClientError::Io {
                    path: "heartbeat thread".into(),
                    detail: e.to_string(),
                })
            }
        }
    }

    /// The feature.
    pub fn feature(&self) -> &str {
        self.shared.feature()
    }

    /// The lease id (it changes when the seat is taken again after the server forgot it).
    pub fn lease(&self) -> u64 {
        self.shared.lease()
    }

    /// How many seats the lease holds.
    pub fn count(&self) -> u32 {
        self.shared.count()
    }

    /// The version the server granted (the version of the record serving it, at least the one
    /// asked for).
    pub fn granted_version(&self) -> String {
        self.shared.granted_version()
    }

    /// The license server that holds the lease (of the list, the one that answered last).
    pub fn server(&self) -> String {
        self.shared.server()
    }

    /// How many times the heartbeat renewed the lease.
    pub fn renewals(&self) -> u64 {
        self.shared.renewals()
    }

    /// When the lease runs out unless renewed (by the client's clock).
    pub fn lease_expires(&self) -> OffsetDateTime {
        self.shared.lease_expires()
    }

    /// When the lease was last granted or renewed (by the client's clock).
    pub fn last_renewal(&self) -> OffsetDateTime {
        self.shared.last_renewal()
    }

    /// Held, reconnecting, or lost.
    pub fn state(&self) -> SeatState {
        self.shared.state()
    }

    /// Whether the seat is lost: its lease (plus the tolerance) ran out without a renewal, or the
    /// server gave it to someone else. Becomes false again if the heartbeat gets it back.
    pub fn is_lost(&self) -> bool {
        self.state() == SeatState::Lost
    }

    /// A channel that receives every [`SeatEvent`] from now on (each call makes a new one).
    pub fn events(&self) -> mpsc::Receiver<SeatEvent> {
        self.shared.subscribe()
    }

    /// Calls `f` with every [`SeatEvent`] from now on, on the heartbeat's thread (keep it short).
    pub fn on_event(&self, f: impl Fn(&SeatEvent) + Send + Sync + 'static) {
        self.shared.on_event(Box::new(f));
    }

    /// Stops the heartbeat and returns the seat now. An error when the server cannot be reached
    /// (the seat comes back when its lease expires), and [`ClientError::SeatLost`] when the seat
    /// was no longer held.
    pub fn release(mut self) -> Result<(), ClientError> {
        self.shared.ask_stop();
        if let Some(t) = self.thread.take() {
            // the heartbeat finishes its request (bounded by the request timeout)
            let _ = t.join();
        }
        let timeout = self.shared.timeout();
        self.shared.give_back(timeout)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if self.thread.take().is_some() {
            // the heartbeat is not waited for: it stops before its next request
            self.shared.ask_stop();
            let _ = self.shared.give_back(DROP_TIMEOUT);
        }
    }
}
