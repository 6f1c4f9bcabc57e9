//! Serving HTTP the way every Tessera service does (feature `serve`): HTTP/1.1 on a bound listener,
//! plain or TLS, with the limits a service on a network needs.
//!
//! - **Headers** must arrive within [`Limits::header_timeout`] of the connection being ready for a
//!   request (also the longest a keep-alive connection stays idle, counted from the last bytes of
//!   its last answer written); a client that never finishes them, or stops reading its answer for
//!   as long, is disconnected.
//! - **Bodies** must arrive within [`Limits::body_timeout`] of the request's headers; a slow body
//!   is answered `408` `request_timeout` (problem+json) and the connection closed.
//! - **Connections**: at most [`Limits::max_connections`] at once; one more is closed at once (and
//!   logged), until one ends.
//! - **TLS** handshakes must finish within the header timeout too.
//!
//! The timeouts are kept to within a tick of at most a second by one task per server rather than
//! by a timer per request (see `deadlines.rs`: a timer per request cost an eighth of a trivial
//! request's CPU).
//!
//! Ctrl-C and SIGTERM: see [`shutdown_signal`].

mod deadlines;
pub mod openapi;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use deadlines::{Conn, Deadlines, Timed};

/// The limits a server applies to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client has to send a request's headers (and a TLS handshake), counted from
    /// when the connection is ready for one; also how long an idle keep-alive connection stays
    /// open.
    pub header_timeout: Duration,
    /// How long a client has to send a request's body, counted from its headers.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Default request timeout (headers, and body), in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u32 = 30;
/// Default connection limit.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits::new(DEFAULT_REQUEST_TIMEOUT_SECONDS, DEFAULT_MAX_CONNECTIONS)
    }
}

impl Limits {
    /// Headers and body each within `request_timeout_seconds` (at least 1), at most
    /// `max_connections` (at least 1) at once.
    pub fn new(request_timeout_seconds: u32, max_connections: u32) -> Limits {
        let t = Duration::from_secs(u64::from(request_timeout_seconds.max(1)));
        Limits {
            header_timeout: t,
            body_timeout: t,
            max_connections: usize::try_from(max_connections.max(1)).unwrap_or(usize::MAX),
        }
    }
}

/// The most threads a service may be told to serve requests with (`worker_threads`).
pub const MAX_WORKER_THREADS: u32 = 1024;

/// The threads a service serves requests with: `configured` (`worker_threads` in its configuration,
/// checked to be 1 to [`MAX_WORKER_THREADS`] when read), else one per CPU core the system gives this
/// process (2 when the system does not say).
pub fn worker_threads(configured: Option<u32>) -> usize {
    match configured {
        Some(n) => usize::try_from(n.clamp(1, MAX_WORKER_THREADS)).unwrap_or(1),
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    }
}

/// TLS certificate chain and private key, PEM files.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// Certificate chain.
    pub cert: &'a Path,
    /// Private key.
    pub key: &'a Path,
}

/// Serves `router` on `listener` (HTTPS with `tls`) within `limits` until `shutdown` resolves;
/// then stops accepting and lets requests in progress finish (for at most 10 seconds). Handlers
/// can extract `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<TlsFiles<'_>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let deadlines = Deadlines::new(&limits);
    // stopped when serving ends, however it ends
    let _sweeper = AbortOnDrop(tokio::spawn(deadlines.clone().sweep()));
    let limiter = ConnectionLimit {
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        max: limits.max_connections,
        refused: Arc::new(AtomicU64::new(0)),
        deadlines,
    };
    let listener = listener.into_std()?;
    match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(limiter)
                .handle(handle);
            configure(server.http_builder());
            server.serve(app).await
        }
        Some(files) => {
            // one crypto provider for the process (ring); a second call finds it installed
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(files.cert, files.key)
                    .await
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "cannot load the TLS certificate {} and key {}: {e}",
                                files.cert.display(),
                                files.key.display()
                            ),
                        )
                    })?;
            // HTTP/1.1 only (what the limits above apply to)
            let mut inner = (*config.get_inner()).clone();
            inner.alpn_protocols = vec![b"http/1.1".to_vec()];
            config.reload_from_config(Arc::new(inner));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(limits.header_timeout)
                .acceptor(limiter);
            let mut server = axum_server::from_tcp(listener)
                .acceptor(acceptor)
                .handle(handle);
            configure(server.http_builder());
            server.serve(app).await
        }
    }
}

/// HTTP/1.1 only. The header and body timeouts are kept by [`deadlines`], not by a timer per
/// request.
fn configure(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    let b = std::mem::replace(
        builder,
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new()),
    );
    *builder = b.http1_only();
}

/// Resolves at Ctrl-C (SIGINT) or SIGTERM (what a service manager sends to stop a service). The
/// handlers are installed when this is called (inside a runtime), not when the future is first
/// polled: call it before saying the service is up, so a signal sent from then on stops it cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes a connection slot for every connection accepted (a connection with none left is closed),
/// and puts the connection under the deadlines.
#[derive(Debug, Clone)]
struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    refused: Arc<AtomicU64>,
    deadlines: Arc<Deadlines>,
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for ConnectionLimit {
    type Stream = Limited;
    type Service = Timed<S>;
    type Future = std::future::Ready<io::Result<(Limited, Timed<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let _ = stream.set_nodelay(true);
                let conn = self.deadlines.connection();
                std::future::ready(Ok((
                    Limited {
                        stream,
                        _permit: permit,
                        conn: conn.clone(),
                    },
                    Timed {
                        inner: service,
                        conn,
                    },
                )))
            }
            Err(_) => {
                // logged for the first refusal and then every 1000th, not for each
                let n = self.refused.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(1000) {
                    tracing::warn!(
                        max_connections = self.max,
                        refused = n + 1,
                        "connection limit reached: closing new connections until some end (max_connections)"
                    );
                }
                drop(stream);
                std::future::ready(Err(io::Error::other("connection limit reached")))
            }
        }
    }
}

/// A connection holding its slot until it is dropped, under the header deadline: its reads and
/// writes fail once it has awaited a request (or the reading of its answer) for too long.
#[derive(Debug)]
pub struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    conn: Arc<Conn>,
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.conn.io_allowed()?;
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Pending => {
                self.conn.io_pending(cx)?;
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl Limited {
    /// After a write: bytes that went out restart the wait for the next request; a write that
    /// must wait keeps the task's waker, so that a client that never reads its answer is cut off
    /// at the header deadline too.
    fn wrote(&self, cx: &Context<'_>, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.conn.wrote();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.conn.io_pending(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            failed => failed,
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.conn.io_allowed()?;
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(cx, written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.io_allowed()?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.conn.io_allowed()?;
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A problem+json answer (RFC 9457) with a stable `code`, as every Tessera service writes them.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = tessera_wire::Problem::new(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        code,
        detail,
    );
    // five strings and a number: serialising cannot fail
    let body = serde_json::to_string(&body).unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// `404 not_found` for a path no route serves.
pub async fn not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!(
            "there is nothing at {}: see /api/openapi.json for the paths this service serves",
            req.uri().path()
        ),
    )
}

/// `405 method_not_allowed` for a method a path does not take (the `Allow` header lists those it
/// does).
pub async fn method_not_allowed(req: Request) -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!(
            "{} does not take {}: see the Allow header, or /api/openapi.json",
            req.uri().path(),
            req.method()
        ),
    )
}

/// The address a per-client limit counts `ip` under: an IPv4 address as it is (also when a
/// dual-stack listener sees it as `::ffff:a.b.c.d`), an IPv6 address by its /64 (one client
/// usually holds a whole /64).
pub fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
        },
        v4 => v4,
    }
}

/// Token buckets per client address: `per_minute` requests a minute, in bursts of as many. An IPv6
/// client counts by its /64 (one host usually holds a whole one). Memory stays bounded: idle
/// buckets are forgotten when there are many.
#[derive(Debug)]
pub struct TokenBuckets {
    per_minute: u32,
    buckets:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, std::time::Instant)>>,
}

impl TokenBuckets {
    /// `per_minute` requests a minute per address (at least 1).
    pub fn new(per_minute: u32) -> TokenBuckets {
        TokenBuckets {
            per_minute: per_minute.max(1),
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes a token for `ip`; when there is none, the whole seconds until there is one.
    pub fn take(&self, ip: std::net::IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let ip = client_key(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // a full bucket is as good as none: forget those that have refilled
            let full = Duration::from_secs(60);
            buckets.retain(|_, (_, t)| now.duration_since(*t) < full);
            if buckets.len() > 100_000 {
                buckets.clear();
            }
        }
        let cap = f64::from(self.per_minute);
        let (tokens, last) = buckets.entry(ip).or_insert((cap, now));
        let refill = now.duration_since(*last).as_secs_f64() * cap / 60.0;
        *tokens = (*tokens + refill).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) * 60.0 / cap;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod client_key_tests {
    use super::client_key;
    use std::net::IpAddr;

    #[test]
    fn ipv4_seen_through_a_dual_stack_listener_counts_by_its_own_address() {
        let k = |s: &str| client_key(s.parse::<IpAddr>().unwrap());
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
        assert_ne!(k("::ffff:192.0.2.7"), k("::ffff:192.0.2.8"));
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::2"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::{serve, Limits};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// A server with one-second timeouts: `/echo` answers its body, `/slow` reads its body and
    /// then takes 1.6 s to answer, `/big` answers 32 MiB.
    async fn server() -> (String, tokio::sync::oneshot::Sender<()>) {
        let app = axum::Router::new()
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .route(
                "/slow",
                axum::routing::post(|body: String| async move {
                    tokio::time::sleep(Duration::from_millis(1600)).await;
                    body
                }),
            )
            .route("/big", axum::routing::get(|| async { vec![b'a'; BIG] }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, None, Limits::new(1, 8), async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    fn post(s: &mut TcpStream, path: &str, body: &str) -> String {
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Reads until the server closes the connection; what it sent, and whether it closed within
    /// 10 s (a read timeout otherwise).
    fn read_to_close(s: &mut TcpStream) -> (String, bool) {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&out).into_owned(), closed)
    }

    const BIG: usize = 32 << 20;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_reading_a_large_answer_gets_it_all_and_one_that_stops_reading_is_cut_off() {
        let (addr, _stop) = server().await;
        tokio::task::spawn_blocking(move || {
            // read at once: the whole answer, however long it takes past the timeout
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut slept = false;
            while got.len() < BIG {
                let n = s.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "closed after {} bytes: {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
                if !slept && got.len() > BIG / 2 {
                    // a pause shorter than the timeout, half way
                    std::thread::sleep(Duration::from_millis(700));
                    slept = true;
                }
            }
            let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert!(got.starts_with(b"HTTP/1.1 200"));
            assert_eq!(got.len() - head_end, BIG);

            // never read (a pipelined byte keeps the server from looking for the next request):
            // cut off at the header deadline, long before the answer is written
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nX")
                .unwrap();
            std::thread::sleep(Duration::from_secs(4));
            let (got, closed) = read_to_close(&mut s);
            assert!(closed);
            assert!(got.len() < BIG, "the whole answer came: {}", got.len());
        })
        .await
        .unwrap();
    }

    /// Writes `bytes` one at a time, 250 ms apart, until the server closes (or all are sent).
    fn trickle(s: &mut TcpStream, bytes: &[u8]) {
        for b in bytes {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn headers_or_a_body_trickled_a_byte_at_a_time_are_cut_off_from_their_start() {
        let (addr, _stop) = server().await;
        tokio::task::spawn_blocking(move || {
            // each byte within the timeout of the last, the headers never done in time: closed
            // without an answer (the deadline counts from the start, not from the last byte)
            let mut s = TcpStream::connect(&addr).unwrap();
            let head = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let started = std::time::Instant::now();
            trickle(&mut s, head);
            let (got, closed) = read_to_close(&mut s);
            assert!(closed && got.is_empty(), "{got}");
            assert!(started.elapsed() < Duration::from_secs(8));

            // the same with the body: 408
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
                .unwrap();
            trickle(&mut s, &[b'b'; 40]);
            let (got, closed) = read_to_close(&mut s);
            assert!(closed, "{got}");
            assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_request_has_its_own_deadline_and_idle_or_slow_clients_are_cut_off() {
        let (addr, _stop) = server().await;
        tokio::task::spawn_blocking(move || {
            // a kept-alive connection in use for longer than the timeout, a request at a time
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            for i in 0..4 {
                let got = post(&mut s, "/echo", &format!("ping {i}"));
                assert!(got.starts_with("HTTP/1.1 200"), "{got}");
                assert!(got.ends_with(&format!("ping {i}")), "{got}");
                std::thread::sleep(Duration::from_millis(600));
            }
            // a handler slower than the timeout, its body complete: answered
            let got = post(&mut s, "/slow", "slow");
            assert!(got.starts_with("HTTP/1.1 200"), "{got}");
            // then idle: closed
            let (got, closed) = read_to_close(&mut s);
            assert!(closed && got.is_empty(), "{got}");

            // headers that never end: closed without an answer
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n").unwrap();
            let (got, closed) = read_to_close(&mut s);
            assert!(closed && got.is_empty(), "{got}");

            // a body that never ends: 408 and closed
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
                .unwrap();
            let (got, closed) = read_to_close(&mut s);
            assert!(closed, "{got}");
            assert!(got.starts_with("HTTP/1.1 408"), "{got}");
            assert!(got.contains("\"code\":\"request_timeout\""), "{got}");
            assert!(
                got.to_ascii_lowercase().contains("connection: close"),
                "{got}"
            );

            // a body that arrives in pieces within the timeout: answered
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nhalf")
                .unwrap();
            std::thread::sleep(Duration::from_millis(400));
            s.write_all(b"done").unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let got = String::from_utf8_lossy(&buf[..n]);
            assert!(
                got.starts_with("HTTP/1.1 200") && got.ends_with("halfdone"),
                "{got}"
            );
        })
        .await
        .unwrap();
    }
}
