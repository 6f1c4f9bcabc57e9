//! The header and body deadlines of [`super::serve`], kept without a timer per request.
//!
//! A timer per request (hyper's header read timeout, a sleep per body) costs a timer-wheel entry
//! made and removed, an allocation and an extra read for every request: about a microsecond of a
//! core each time on the 2-core machine of docs/performance.md, an eighth of what a trivial
//! request costs in all. Here each connection keeps instead a few atomics that say what it is
//! doing and since when (on a coarse clock), and one task per server, the **sweeper**, looks at
//! every connection a few times a second ([`tick`]) and cuts off those past their deadline:
//!
//! - a connection **awaiting a request** (just accepted, or its last answer written) for longer
//!   than the header timeout has its reads fail, so the connection is closed: headers that never
//!   end, an idle keep-alive connection, a client that stops reading its answer;
//! - a request whose **body** is still awaited longer than the body timeout after its headers has
//!   its body fail, and its answer is replaced by `408 request_timeout` with `Connection: close`.
//!
//! Two limits of the rule, as it stands: a client that drains a large answer slowly keeps its
//! connection as long as bytes keep moving (each write restarts the wait), and an answer streamed
//! by its handler (no route streams today) counts as written once its headers are ready, so a
//! pause in it longer than the header timeout would cut it.
//!
//! A request costs a few atomic loads and stores: its phase set when it arrives and when its answer
//! is ready, and a waker kept when a read or its body must wait. Deadlines are kept to within one
//! tick (at most a second; an eighth of the shorter timeout).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use axum::body::Bytes;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::Limits;

/// The phase bit of [`Conn::state`]: a request is being handled (else: awaiting one).
const HANDLING: u64 = 1;
/// The bit of [`Conn::state`] the sweeper sets when a connection awaited a request too long.
const EXPIRED: u64 = 2;
/// Where the time starts in [`Conn::state`].
const SINCE: u32 = 2;

/// [`Conn::body`]: no body waits.
const BODY_IDLE: u8 = 0;
/// [`Conn::body`]: the request's body waits for bytes.
const BODY_WAITING: u8 = 1;
/// [`Conn::body`]: the body waited too long; it fails and the answer is 408.
const BODY_EXPIRED: u8 = 2;

/// What every connection of one server shares: the limits, the coarse clock and the connections
/// the sweeper looks at.
#[derive(Debug)]
pub(super) struct Deadlines {
    header_ms: u64,
    body_ms: u64,
    tick: Duration,
    start: Instant,
    /// Milliseconds since `start`, as of the sweeper's last tick.
    now_ms: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
}

/// How often the sweeper looks: an eighth of the shorter timeout, between 50 ms and 1 s.
pub(super) fn tick(limits: &Limits) -> Duration {
    (limits.header_timeout.min(limits.body_timeout) / 8)
        .clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Deadlines {
    pub(super) fn new(limits: &Limits) -> Arc<Deadlines> {
        Arc::new(Deadlines {
            header_ms: millis(limits.header_timeout),
            body_ms: millis(limits.body_timeout),
            tick: tick(limits),
            start: Instant::now(),
            now_ms: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        })
    }

    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// A new connection, awaiting its first request from now on.
    pub(super) fn connection(self: &Arc<Self>) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            deadlines: self.clone(),
            state: AtomicU64::new(self.now() << SINCE),
            body: AtomicU8::new(BODY_IDLE),
            io_waker: AtomicWaker::new(),
            body_waker: AtomicWaker::new(),
        });
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&conn));
        conn
    }

    /// Looks at every connection every tick until the server stops (the caller aborts it).
    pub(super) async fn sweep(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.sweep_once();
        }
    }

    fn sweep_once(&self) {
        let now = millis(self.start.elapsed());
        self.now_ms.store(now, Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|weak| match weak.upgrade() {
            Some(conn) => {
                conn.check(now, self);
                true
            }
            None => false,
        });
        // a burst of connections leaves no lasting allocation behind
        let live = conns.len();
        if conns.capacity() > 64 && live < conns.capacity() / 4 {
            conns.shrink_to(live * 2);
        }
    }
}

/// One connection's phase and deadlines.
#[derive(Debug)]
pub(super) struct Conn {
    deadlines: Arc<Deadlines>,
    /// `since << SINCE | EXPIRED? | HANDLING?`: when the phase began (ms on the coarse clock),
    /// whether the sweeper found the connection awaiting a request too long, and whether a request
    /// is being handled. The connection's own task stores it (a request arrives, its answer is
    /// ready, bytes go out: each clears `EXPIRED`, as the connection is not idle); the sweeper only
    /// sets `EXPIRED`, by compare-and-swap against the word it read, so it never expires a
    /// connection whose request arrived in the meantime.
    state: AtomicU64,
    /// The request body's state ([`BODY_IDLE`], [`BODY_WAITING`], [`BODY_EXPIRED`]): the sweeper
    /// expires only a body still waiting, by compare-and-swap, and a body that then gets its bytes
    /// fails all the same, so a 408 is answered only for a body the handler did not get.
    body: AtomicU8,
    /// The connection task's waker, kept when a read or a write must wait.
    io_waker: AtomicWaker,
    body_waker: AtomicWaker,
}

impl Conn {
    /// Expires the connection or its request's body when past a deadline at `now`. The stamps
    /// trail the clock by up to a tick (they are read from the coarse clock), so a deadline counts
    /// one tick more: a connection is cut between its timeout and two ticks past it, never before.
    fn check(&self, now: u64, d: &Deadlines) {
        let state = self.state.load(Ordering::Relaxed);
        let waited = now.saturating_sub(state >> SINCE);
        let tick = millis(d.tick);
        if state & (HANDLING | EXPIRED) == 0 {
            if waited >= d.header_ms.saturating_add(tick)
                && self
                    .state
                    .compare_exchange(state, state | EXPIRED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.io_waker.wake();
            }
        } else if state & HANDLING != 0
            && waited >= d.body_ms.saturating_add(tick)
            && self
                .body
                .compare_exchange(
                    BODY_WAITING,
                    BODY_EXPIRED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.body_waker.wake();
        }
    }

    fn set(&self, handling: bool) {
        let flag = if handling { HANDLING } else { 0 };
        self.state
            .store(self.deadlines.now() << SINCE | flag, Ordering::Release);
    }

    /// Bytes of an answer went out: a connection awaiting its next request counts from now.
    pub(super) fn wrote(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & HANDLING == 0 {
            let now = self.deadlines.now();
            if state != now << SINCE {
                self.state.store(now << SINCE, Ordering::Release);
            }
        }
    }

    /// A read or write must wait: `Err` when the connection is past its header deadline (the call
    /// fails and the connection is closed), else the task's waker is kept for the sweeper.
    pub(super) fn io_pending(&self, cx: &Context<'_>) -> io::Result<()> {
        self.io_waker.register(cx.waker());
        self.io_allowed()
    }

    /// `Err` once the connection is past its header deadline: it awaited a request, or the client
    /// stopped reading its answer, for longer than the header timeout.
    pub(super) fn io_allowed(&self) -> io::Result<()> {
        if self.state.load(Ordering::Acquire) & EXPIRED != 0 {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header timeout, or the answer not read",
            ))
        } else {
            Ok(())
        }
    }

    fn body_expired(&self) -> bool {
        self.body.load(Ordering::Acquire) == BODY_EXPIRED
    }
}

/// The service for one connection: marks each request's arrival and answer, gives its body the
/// body deadline, and answers 408 when the body was late.
#[derive(Debug, Clone)]
pub(super) struct Timed<S> {
    pub(super) inner: S,
    pub(super) conn: Arc<Conn>,
}

impl<S, B> tower_service::Service<Request<B>> for Timed<S>
where
    S: tower_service::Service<Request<DeadlineBody<B>>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.conn.body.store(BODY_IDLE, Ordering::Relaxed);
        self.conn.set(true);
        let conn = self.conn.clone();
        let req = req.map(|inner| DeadlineBody {
            inner,
            conn,
            waiting: false,
        });
        TimedFuture {
            inner: self.inner.call(req),
            conn: self.conn.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer: when it is ready, the connection awaits its next request.
    pub(super) struct TimedFuture<F> {
        #[pin]
        inner: F,
        conn: Arc<Conn>,
    }
}

impl<F, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.conn.set(false);
        if this.conn.body_expired() {
            let seconds = this.conn.deadlines.body_ms / 1000;
            let mut r = super::problem(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body did not arrive within {seconds} seconds of its headers; send it at once, or ask the administrator to raise request_timeout_seconds"
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Poll::Ready(Ok(r));
        }
        Poll::Ready(out)
    }
}

/// A request's body under the body deadline.
#[derive(Debug)]
pub(super) struct DeadlineBody<B> {
    inner: B,
    conn: Arc<Conn>,
    /// This body told the connection that it waits.
    waiting: bool,
}

impl<B> DeadlineBody<B> {
    fn timed_out() -> axum::Error {
        axum::Error::new(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request body timed out",
        ))
    }

    /// The body got its bytes (or is dropped): no longer waiting. `false` when the sweeper expired
    /// it first: then it fails, whatever came.
    fn stop_waiting(&mut self) -> bool {
        if !self.waiting {
            return !self.conn.body_expired();
        }
        self.waiting = false;
        self.conn
            .body
            .compare_exchange(BODY_WAITING, BODY_IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl<B> Drop for DeadlineBody<B> {
    fn drop(&mut self) {
        let _ = self.stop_waiting();
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.conn.body_expired() {
            return Poll::Ready(Some(Err(Self::timed_out())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if !self.stop_waiting() {
                    return Poll::Ready(Some(Err(Self::timed_out())));
                }
                Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)))
            }
            Poll::Pending => {
                self.conn.body_waker.register(cx.waker());
                if !self.waiting {
                    self.waiting = true;
                    self.conn.body.store(BODY_WAITING, Ordering::Release);
                }
                if self.conn.body_expired() {
                    return Poll::Ready(Some(Err(Self::timed_out())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header: u64, body: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(header),
            body_timeout: Duration::from_millis(body),
            max_connections: 8,
        }
    }

    /// Moves the coarse clock to `ms` and sweeps, as a tick at that time would.
    fn sweep_at(d: &Deadlines, ms: u64) {
        d.now_ms.store(ms, Ordering::Relaxed);
        let conns = d.conns.lock().unwrap().clone();
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.check(ms, d);
        }
    }

    // limits(1000, 1000) ticks every 125 ms: a deadline counts one tick more (1125 ms)

    #[test]
    fn an_idle_connection_expires_at_the_header_deadline_and_each_write_restarts_it() {
        let d = Deadlines::new(&limits(1000, 1000));
        let c = d.connection();
        sweep_at(&d, 1124);
        assert!(c.io_allowed().is_ok());
        // an answer's bytes went out at 500: the wait counts from there
        d.now_ms.store(500, Ordering::Relaxed);
        c.wrote();
        sweep_at(&d, 1624);
        assert!(c.io_allowed().is_ok());
        sweep_at(&d, 1625);
        let e = c.io_allowed().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // a request that arrives after all is served: the connection is not idle
        c.set(true);
        assert!(c.io_allowed().is_ok());
    }

    #[test]
    fn the_sweeper_never_expires_a_connection_whose_request_arrived_after_it_looked() {
        let d = Deadlines::new(&limits(1000, 1000));
        let c = d.connection();
        // the sweeper read the word of an idle connection; then the request arrived
        let seen = c.state.load(Ordering::Relaxed);
        d.now_ms.store(1200, Ordering::Relaxed);
        c.set(true);
        assert!(c
            .state
            .compare_exchange(seen, seen | EXPIRED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err());
        c.check(1200, &d);
        assert!(c.io_allowed().is_ok());
    }

    #[test]
    fn a_request_being_handled_never_meets_the_header_deadline_nor_a_complete_body_the_body_deadline(
    ) {
        let d = Deadlines::new(&limits(1000, 1000));
        let c = d.connection();
        c.set(true);
        sweep_at(&d, 60_000);
        assert!(c.io_allowed().is_ok());
        assert!(!c.body_expired());
        // its answer ready at 60 s: the connection awaits the next request from then
        c.set(false);
        sweep_at(&d, 61_124);
        assert!(c.io_allowed().is_ok());
        sweep_at(&d, 61_125);
        assert!(c.io_allowed().is_err());
    }

    #[test]
    fn a_body_still_awaited_expires_at_the_body_deadline_counted_from_its_headers() {
        let d = Deadlines::new(&limits(5000, 1000));
        let c = d.connection();
        d.now_ms.store(100, Ordering::Relaxed);
        c.set(true);
        c.body.store(BODY_WAITING, Ordering::Relaxed);
        // limits(5000, 1000) tick every 125 ms too
        sweep_at(&d, 1224);
        assert!(!c.body_expired());
        sweep_at(&d, 1225);
        assert!(c.body_expired());
        // the header deadline is not the body's
        assert!(c.io_allowed().is_ok());
        // a body that got its bytes before the sweeper looked is not expired
        let d = Deadlines::new(&limits(5000, 1000));
        let c = d.connection();
        c.set(true);
        c.body.store(BODY_WAITING, Ordering::Relaxed);
        c.body.store(BODY_IDLE, Ordering::Relaxed);
        sweep_at(&d, 10_000);
        assert!(!c.body_expired());
    }

    #[test]
    fn the_sweeper_forgets_closed_connections() {
        let d = Deadlines::new(&limits(1000, 1000));
        let a = d.connection();
        let b = d.connection();
        drop(a);
        d.sweep_once();
        assert_eq!(d.conns.lock().unwrap().len(), 1);
        drop(b);
        d.sweep_once();
        assert!(d.conns.lock().unwrap().is_empty());
    }

    #[test]
    fn ticks_are_an_eighth_of_the_shorter_timeout_within_bounds() {
        assert_eq!(tick(&limits(1000, 30_000)), Duration::from_millis(125));
        assert_eq!(tick(&limits(30_000, 30_000)), Duration::from_secs(1));
        assert_eq!(tick(&limits(100, 100)), Duration::from_millis(50));
    }
}
