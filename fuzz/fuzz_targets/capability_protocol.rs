//! A real license server (data directory, SQLite store, seat engine, license bundle installed)
//! driven by arbitrary capability requests, with restarts. The server lives for the whole run:
//! each input adds to its state, and every [`RESTART_EVERY`] inputs (and after an input whose
//! first byte asks for it) it is dropped and opened again. Findings (panics):
//!
//! - the server does not open again (the lease digest or the storage mark fell out of step), or
//!   holds other leases after the restart than before it (same ids, holders, counts, expiries);
//! - a record is used past its count and overdraft, or its seats in use are not the sum of its
//!   leases;
//! - an answer does not verify (signed with the server key, or sealed with the lease's session
//!   key), or does not echo the request;
//! - a lease id goes to two holders, a renew or return succeeds for someone other than the
//!   holder, a renewal or a preview carries a session key;
//! - a decision cannot be stored or signed (`EngineError::Store`, `EngineError::Sign`).
//!
//! **Input.** The first byte is flags (`flags % 8 == 7`: restart after this input). The rest is
//! split into lines. An empty line hands the requests waiting to the engine. A line starting
//! with `{` is a capability request in JSON, through the
//! request parser; in it, `"session_proof": "auto"` with `"leases": [I]` renews or returns the
//! I-th grant kept (the real lease id and a proof computed with its session key, for the device
//! and user the JSON names). Any other line is decoded (`arbitrary`) into [`Step`]s: requests,
//! previews and borrows from a small vocabulary of devices, users, request ids, features,
//! versions and counts; renewals and returns of leases granted earlier (kept with their session
//! keys) by the holder or another device or user, with the right proof, none, or a wrong one;
//! time passing; sweeps. Requests run in bursts of up to [`BURST`], concurrently, so the writer
//! decides and commits them in groups.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tessera_core::capability::{
    session_proof, CapabilityRequest, CapabilityResponseClaims, Operation, WantedFeature,
};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::feature::{Count, Expiry, Feature};
use tessera_core::license::{LicensePolicy, LICENSE_FORMAT_VERSION};
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::{Clock, DeviceType, HostId, Keyring, LicenseClaims, ManualClock, SigningKey};
use tessera_server::daemon::{self, Server};
use tessera_server::engine::EngineError;

/// The server is dropped and opened again after this many inputs.
const RESTART_EVERY: u64 = 50;
/// Most requests handed to the engine at once.
const BURST: usize = 6;
/// Most grants kept for renewals and returns.
const KEPT_GRANTS: usize = 64;
/// Most steps of one input.
const MAX_STEPS: usize = 64;
/// Leases one device may hold (server.toml), low so that the limit is met.
const MAX_LEASES_PER_DEVICE: u32 = 24;
/// The license server's host id.
const SERVER_HOSTID: &str = "string=fuzz-server";

// Each vocabulary: the values a client sends, then (picked one time in sixteen) values the
// server refuses or that name nothing.
const DEVICES: (&[&str], &[&str]) = (
    &[
        "string=pc-0",
        "string=pc-1",
        "string=pc-2",
        "ethernet=0050569a3b21",
    ],
    &["string=pc-0|user=u0", "bogus", "", "string="],
);
const USERS: (&[Option<&str>], &[Option<&str>]) = (
    &[None, Some("u0"), Some("u1"), None, Some("ann")],
    &[Some(""), Some("u\u{1}"), Some("ü")],
);
const REQUEST_IDS: (&[&str], &[&str]) = (&["r0", "r1", "r2", "r3"], &["", "r\u{7f}", "r é"]);
const NAMES: (&[&str], &[&str]) = (
    &["modeler", "viewer", "export", "modeler"],
    &["nope", "", "Modeler"],
);
const VERSIONS: (&[&str], &[&str]) = (&["1.0", "2.0", "3.0", "1.0"], &["2.5", "10.1"]);
const COUNTS: (&[u32], &[u32]) = (&[1, 1, 1, 2, 3, 4], &[0, 5, 100, u32::MAX]);

fn pick<T: Copy>((usual, odd): (&[T], &[T]), i: u8) -> T {
    if i >= 240 {
        odd[usize::from(i) % odd.len()]
    } else {
        usual[usize::from(i) % usual.len()]
    }
}

/// A request, preview or borrow.
#[derive(Arbitrary, Debug)]
struct Ask {
    op: u8,
    device: u8,
    user: u8,
    rid: u8,
    nonce: u8,
    features: Vec<(u8, u8, u8)>,
    borrow_days: Option<u8>,
    /// 255: names a lease too (ignored for these operations); 254: sends a session proof too
    /// (refused).
    extra: u8,
}

/// A renew or return of a grant kept.
#[derive(Arbitrary, Debug)]
struct Touch {
    ret: bool,
    grant: u8,
    who: u8,
    proof: u8,
    lease: u8,
    nonce: u8,
    signed: bool,
    rid: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Ask(Ask),
    Touch(Touch),
    /// Seconds pass (0 to 63; a lease lasts 300 without renewal).
    Advance(u8),
    /// Seconds (0 to 63), or one time in ten minutes (0 to 15), or rarely an hour or a day pass.
    Jump(u8),
    /// Expired leases are swept.
    Sweep,
    /// The requests waiting are handed to the engine.
    Flush,
}

/// A grant kept: who holds it and the session key it came with.
#[derive(Debug, Clone)]
struct Grant {
    device: String,
    user: Option<String>,
    lease: u64,
    key: Vec<u8>,
}

/// A request on its way, with what the target knows about it.
struct Sent {
    req: CapabilityRequest,
    /// The session key the proof was made with (to check a sealed answer).
    key: Option<Vec<u8>>,
}

struct State {
    server: Option<Arc<Server>>,
    grants: VecDeque<Grant>,
    /// Every lease id granted (request, borrow) in this run: holder, request id, feature.
    holders: HashMap<u64, (String, String, String)>,
    /// `holders` was cleared once (to bound memory): a lease may be missing from it.
    forgot: bool,
    inputs: u64,
    restarts: u64,
    counter: u64,
    /// Requests answered, and refused with an error (malformed, or not the holder).
    answered: u64,
    errors: u64,
}

struct World {
    rt: tokio::runtime::Runtime,
    data: PathBuf,
    clock: Arc<ManualClock>,
    state: Mutex<State>,
}

/// 2026-06-01 00:00:00 UTC: a whole second, so that expiries survive the store exactly.
fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_272_000).expect("a valid time")
}

/// Removes the directories earlier runs left (a process's statics are never dropped).
fn remove_stale_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("tessera-fuzz-capability-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn setup() -> World {
    let tmp = std::env::temp_dir();
    remove_stale_dirs(&tmp);
    let dir = tmp.join(format!("tessera-fuzz-capability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let data = dir.join("data");
    let anchors = dir.join("anchors");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let clock = Arc::new(ManualClock::new(start()));
    let producer = SigningKey::from_seed(&[42; 32]);
    let pem = producer.public().to_spki_pem().expect("a PEM key");
    let server = rt.block_on(async {
        daemon::init(&data, &pem, None, Some(SERVER_HOSTID))
            .await
            .expect("init");
        let toml_path = data.join("server.toml");
        let mut toml = std::fs::read_to_string(&toml_path).expect("server.toml");
        toml.push_str(&format!(
            "anchor_dir = \"{}\"\nmax_leases_per_device = {MAX_LEASES_PER_DEVICE}\n",
            anchors.display()
        ));
        std::fs::write(&toml_path, toml).expect("server.toml");
        let server = daemon::open(&data, clock.clone()).await.expect("open");
        let now = clock.now();
        let mut modeler = Feature::new("modeler", "2.0".parse().expect("v"), Count::Counted(3));
        modeler.overdraft = 1;
        let viewer = Feature::new("viewer", "1.0".parse().expect("v"), Count::Uncounted);
        let mut export = Feature::new("export", "1.0".parse().expect("v"), Count::Counted(50));
        export.metered = true;
        export.overdraft = 5;
        // a second record of modeler, newer, one seat, that runs out after three days
        let mut modeler3 = Feature::new("modeler", "3.0".parse().expect("v"), Count::Counted(1));
        modeler3.expiry = Expiry::At(now + Duration::days(3));
        let license = LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: "Fuzz Software".into(),
            sub: "Fuzz Customer".into(),
            jti: "LIC-fuzz".into(),
            iat: now,
            nbf: None,
            exp: None,
            hostids: vec![SERVER_HOSTID.parse().expect("host id")],
            features: vec![modeler, viewer, export, modeler3],
            policy: Some(LicensePolicy::default()),
        }
        .issue(&producer)
        .expect("a license");
        let certificate = ServerCertificateClaims {
            jti: "CRT-fuzz".into(),
            iss: "Fuzz Software".into(),
            sub: "Fuzz Customer".into(),
            iat: now,
            exp: now + Duration::days(365),
            server_hostid: server.hostid.clone(),
            server_key: ServerCertificateClaims::encode_key(&server.key.public()),
        }
        .issue(&producer)
        .expect("a certificate");
        let n = server
            .install(&license, &certificate)
            .await
            .expect("the bundle installs");
        assert_eq!(n, 4);
        server
    });
    World {
        rt,
        data,
        clock,
        state: Mutex::new(State {
            server: Some(Arc::new(server)),
            grants: VecDeque::new(),
            holders: HashMap::new(),
            forgot: false,
            inputs: 0,
            restarts: 0,
            counter: 0,
            answered: 0,
            errors: 0,
        }),
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(setup)
}

/// The engine's name for a holder: the host id as the server writes it, and the user.
fn holder(device: &str, user: Option<&str>) -> String {
    let device = device
        .parse::<HostId>()
        .map_or_else(|_| device.to_string(), |h| h.to_string());
    format!("{device}|{user:?}")
}

fn nonce(kind: u8, n: u64) -> String {
    match kind {
        254 => "short".into(),
        255 => "nonce-fixed-000000000".into(),
        _ => format!("nonce-{n:016}"),
    }
}

fn request(
    op: Operation,
    device: &str,
    user: Option<&str>,
    rid: &str,
    nonce: String,
) -> CapabilityRequest {
    CapabilityRequest {
        operation: op,
        device_id: device.to_string(),
        device_type: DeviceType::default(),
        alias: None,
        user: user.map(String::from),
        request_id: rid.to_string(),
        nonce,
        features: Vec::new(),
        leases: Vec::new(),
        borrow_days: None,
        session_proof: None,
        signed: false,
    }
}

impl State {
    fn server(&self) -> Arc<Server> {
        self.server.clone().expect("a server is open")
    }

    fn ask(&mut self, a: &Ask) -> Sent {
        self.counter += 1;
        let op = match a.op % 3 {
            0 => Operation::Request,
            1 => Operation::Preview,
            _ => Operation::Borrow,
        };
        let mut req = request(
            op,
            pick(DEVICES, a.device),
            pick(USERS, a.user),
            pick(REQUEST_IDS, a.rid),
            nonce(a.nonce, self.counter),
        );
        req.features = a
            .features
            .iter()
            .take(4)
            .map(|&(name, version, count)| WantedFeature {
                name: pick(NAMES, name).to_string(),
                version: pick(VERSIONS, version).parse().unwrap_or_default(),
                count: pick(COUNTS, count),
            })
            .collect();
        req.borrow_days = a.borrow_days.map(|d| u32::from(d % 40));
        match a.extra {
            255 => req.leases = vec![self.grants.front().map_or(1, |g| g.lease)],
            254 => req.session_proof = Some("AAAA".into()),
            _ => {}
        }
        Sent { req, key: None }
    }

    fn touch(&mut self, t: &Touch) -> Option<Sent> {
        if self.grants.is_empty() {
            return None;
        }
        self.counter += 1;
        let g = self.grants[usize::from(t.grant) % self.grants.len()].clone();
        let op = if t.ret {
            Operation::Return
        } else {
            Operation::Renew
        };
        let (device, user) = match t.who % 16 {
            13 => ("string=pc-9".to_string(), g.user.clone()),
            14 => (g.device.clone(), Some("intruder".to_string())),
            15 => (g.device.clone(), None),
            _ => (g.device.clone(), g.user.clone()),
        };
        let mut req = request(
            op,
            &device,
            user.as_deref(),
            &format!("t{}", t.rid % 4),
            nonce(t.nonce, self.counter),
        );
        req.leases = match t.lease % 16 {
            13 => vec![g.lease.wrapping_add(1)],
            14 => vec![g.lease, g.lease],
            15 => vec![],
            _ => vec![g.lease],
        };
        req.signed = t.signed;
        let proof_for = |key: &[u8], op: Operation, nonce: &str| {
            session_proof(key, op, nonce, &req.request_id, g.lease)
        };
        let other_op = if t.ret {
            Operation::Renew
        } else {
            Operation::Return
        };
        let (proof, key) = match t.proof % 16 {
            12 => (None, None),
            13 => (Some(proof_for(&[7u8; 32], op, &req.nonce)), None),
            14 => (Some(proof_for(&g.key, other_op, &req.nonce)), None),
            15 => (
                Some(proof_for(&g.key, op, "nonce-of-another-request")),
                None,
            ),
            _ => (Some(proof_for(&g.key, op, &req.nonce)), Some(g.key.clone())),
        };
        req.session_proof = proof;
        Some(Sent { req, key })
    }

    /// A JSON line: the request parser; `"session_proof": "auto"` proves the grant named by index.
    fn raw(&mut self, line: &[u8]) -> Option<Sent> {
        let mut req: CapabilityRequest = serde_json::from_slice(line).ok()?;
        let mut key = None;
        if req.session_proof.as_deref() == Some("auto") {
            if let [i] = req.leases.as_slice() {
                if let Some(g) = usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.grants.get(i % self.grants.len().max(1)))
                {
                    req.leases = vec![g.lease];
                    req.session_proof = Some(session_proof(
                        &g.key,
                        req.operation,
                        &req.nonce,
                        &req.request_id,
                        g.lease,
                    ));
                    key = Some(g.key.clone());
                }
            }
        }
        Some(Sent { req, key })
    }

    /// Hands the requests to the engine at once and checks the answers.
    async fn flush(&mut self, burst: &mut Vec<Sent>, clock: &ManualClock) {
        if burst.is_empty() {
            return;
        }
        let server = self.server();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, sent) in burst.drain(..).enumerate() {
            let s = server.clone();
            tasks.spawn(async move {
                let answer = s.engine.handle(sent.req.clone()).await;
                (i, sent, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(r) = tasks.join_next().await {
            answers.push(r.expect("a request task panicked"));
        }
        answers.sort_by_key(|(i, _, _)| *i);
        let ring = Keyring::with(server.key.public());
        let now = clock.now();
        for (_, sent, answer) in answers {
            let req = &sent.req;
            let answer = match answer {
                Ok(a) => a,
                Err(e @ (EngineError::Store(_) | EngineError::Sign(_))) => {
                    panic!("a decision failed: {e}\nrequest: {req:?}")
                }
                Err(_) => {
                    self.errors += 1;
                    continue;
                }
            };
            self.answered += 1;
            let claims = if answer.sealed {
                let key = sent.key.as_deref().unwrap_or_else(|| {
                    panic!("a sealed answer to a request without a valid proof: {req:?}")
                });
                CapabilityResponseClaims::verify_sealed(&answer.token, key, &req.nonce)
            } else {
                CapabilityResponseClaims::verify(&answer.token, &ring, &req.nonce, now)
            }
            .unwrap_or_else(|e| panic!("the answer does not verify: {e}\nrequest: {req:?}"));
            assert_eq!(claims.request_id, req.request_id, "request id echoed");
            assert_eq!(claims.operation, req.operation, "operation echoed");
            assert_eq!(answer.denied, !claims.denials.is_empty(), "denied flag");
            let who = holder(&req.device_id, req.user.as_deref());
            match req.operation {
                Operation::Request | Operation::Borrow => {
                    for g in &claims.grants {
                        let key = g
                            .session_key_bytes()
                            .unwrap_or_else(|| panic!("a grant without its session key: {g:?}"));
                        let entry = (who.clone(), req.request_id.clone(), g.feature.clone());
                        let first = self.holders.entry(g.lease).or_insert_with(|| entry.clone());
                        assert_eq!(
                            *first, entry,
                            "lease {} handed out twice\nrequest: {req:?}",
                            g.lease
                        );
                        if self.grants.len() == KEPT_GRANTS {
                            self.grants.pop_front();
                        }
                        self.grants.push_back(Grant {
                            device: req.device_id.clone(),
                            user: req.user.clone(),
                            lease: g.lease,
                            key,
                        });
                    }
                }
                Operation::Preview => {
                    for g in &claims.grants {
                        assert!(g.session_key.is_none(), "a preview carries a session key");
                    }
                }
                Operation::Renew | Operation::Return => {
                    for g in &claims.grants {
                        assert!(
                            g.session_key.is_none(),
                            "a renewal carries the session key again"
                        );
                    }
                    let acted = match req.operation {
                        Operation::Renew => !claims.grants.is_empty(),
                        _ => claims.denials.is_empty(),
                    };
                    if acted {
                        for id in &req.leases {
                            match self.holders.get(id) {
                                Some((h, _, _)) => assert_eq!(
                                    *h, who,
                                    "lease {id} renewed or returned by another than its holder\nrequest: {req:?}"
                                ),
                                None => assert!(
                                    self.forgot,
                                    "lease {id}, never granted, renewed or returned\nrequest: {req:?}"
                                ),
                            }
                        }
                    }
                }
            }
        }
        if self.holders.len() > 500_000 {
            self.holders.clear();
            self.forgot = true;
        }
        check_counts(&server).await;
    }

    /// Drops the server and opens it again: it must open, holding the same leases.
    async fn restart(&mut self, data: &Path, clock: &Arc<ManualClock>) {
        let before = held(&self.server()).await;
        let server = self.server.take().expect("a server is open");
        assert_eq!(Arc::strong_count(&server), 1, "no request holds the server");
        drop(server);
        let server = match daemon::open(data, clock.clone()).await {
            Ok(s) => s,
            Err(e) => panic!(
                "the license server does not start again after {} inputs and {} restarts: {e}",
                self.inputs, self.restarts
            ),
        };
        self.restarts += 1;
        let after = held(&server).await;
        assert_eq!(after, before, "the same leases after a restart");
        check_counts(&server).await;
        self.server = Some(Arc::new(server));
    }
}

/// The leases held that have not run out: (id, holder, request id, record, count, overdraft,
/// borrowed, expiry).
type Held = (u64, String, String, usize, u32, u32, bool, i64);

async fn held(server: &Server) -> Vec<Held> {
    let now = server.clock.now();
    let mut v: Vec<Held> = server
        .engine
        .leases()
        .await
        .into_iter()
        .filter(|l| l.expires > now)
        .map(|l| {
            (
                l.id,
                l.device,
                l.request_id,
                l.record,
                l.count,
                l.overdraft,
                l.borrowed,
                l.expires.unix_timestamp(),
            )
        })
        .collect();
    v.sort();
    v
}

/// No record used past its count and overdraft; seats in use are the sum of the leases' counts.
async fn check_counts(server: &Server) {
    let leases = server.engine.leases().await;
    for (i, (f, used, consumed)) in server.engine.usage().await.into_iter().enumerate() {
        let sum: u64 = leases
            .iter()
            .filter(|l| l.record == i)
            .map(|l| u64::from(l.count))
            .sum();
        assert_eq!(
            used, sum,
            "{} {}: seats in use are its leases'",
            f.name, f.version
        );
        if let Some(c) = f.count.get() {
            let cap = u64::from(c) + u64::from(f.overdraft);
            let taken = if f.metered { consumed } else { used };
            assert!(
                taken <= cap,
                "{} {}: {taken} taken, past its count {c} and overdraft {}",
                f.name,
                f.version,
                f.overdraft
            );
        }
    }
}

async fn run(w: &World, st: &mut State, data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut burst: Vec<Sent> = Vec::new();
    let mut steps = 0;
    for line in rest.split(|&b| b == b'\n') {
        if steps >= MAX_STEPS {
            break;
        }
        if line.is_empty() {
            st.flush(&mut burst, &w.clock).await;
        } else if line.first() == Some(&b'{') {
            steps += 1;
            if let Some(sent) = st.raw(line) {
                burst.push(sent);
            }
        } else {
            let mut u = Unstructured::new(line);
            while !u.is_empty() && steps < MAX_STEPS {
                let Ok(step) = Step::arbitrary(&mut u) else {
                    break;
                };
                steps += 1;
                match step {
                    Step::Ask(a) => {
                        let sent = st.ask(&a);
                        burst.push(sent);
                    }
                    Step::Touch(t) => {
                        if let Some(sent) = st.touch(&t) {
                            burst.push(sent);
                        }
                    }
                    Step::Advance(s) => {
                        st.flush(&mut burst, &w.clock).await;
                        w.clock.advance(Duration::seconds(i64::from(s % 64)));
                    }
                    Step::Jump(j) => {
                        st.flush(&mut burst, &w.clock).await;
                        w.clock.advance(match j {
                            255 => Duration::days(1),
                            250.. => Duration::hours(1),
                            224.. => Duration::minutes(i64::from(j % 16)),
                            _ => Duration::seconds(i64::from(j % 64)),
                        });
                    }
                    Step::Sweep => {
                        st.flush(&mut burst, &w.clock).await;
                        let server = st.server();
                        if let Err(e) = server.engine.sweep().await {
                            panic!("a sweep failed: {e}");
                        }
                        check_counts(&server).await;
                    }
                    Step::Flush => st.flush(&mut burst, &w.clock).await,
                }
                if burst.len() >= BURST {
                    st.flush(&mut burst, &w.clock).await;
                }
            }
        }
        if burst.len() >= BURST {
            st.flush(&mut burst, &w.clock).await;
        }
    }
    st.flush(&mut burst, &w.clock).await;
    st.inputs += 1;
    if flags % 8 == 7 || st.inputs % RESTART_EVERY == 0 {
        st.restart(&w.data, &w.clock).await;
        if st.restarts % 500 == 0 {
            eprintln!(
                "capability_protocol: {} inputs, {} restarts, {} requests answered, {} refused, {} lease ids granted, {} leases held, clock {}",
                st.inputs,
                st.restarts,
                st.answered,
                st.errors,
                st.holders.len(),
                st.server().engine.lease_count(),
                w.clock.now()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut st = w.state.lock().unwrap_or_else(|e| e.into_inner());
    w.rt.block_on(run(w, &mut st, data));
});
