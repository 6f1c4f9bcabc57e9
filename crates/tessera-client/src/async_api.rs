//! The async API (feature `tokio`): the same checks for applications that run a tokio runtime.
//! Blocking work (file reads, HTTP) runs on the runtime's blocking pool; a checked-out seat is kept
//! alive by a task on the caller's runtime instead of a thread, with the same behaviour as a
//! [`crate::Seat`]: events, loss, asking again for a forgotten lease, return on drop.

use std::sync::{mpsc, Arc};

use tokio::task::JoinHandle;

use crate::floating::{Checkout, SeatEvent, SeatState, Shared, DROP_TIMEOUT};
use crate::{Client, ClientError, Grant, OffsetDateTime};

fn join_error(e: tokio::task::JoinError) -> ClientError {
    ClientError::Io {
        path: "background task".into(),
        detail: e.to_string(),
    }
}

impl Client {
    /// [`Client::check`] without blocking the runtime.
    pub async fn check_async(&self, feature: &str, version: &str) -> Result<Grant, ClientError> {
        let (c, f, v) = (self.clone(), feature.to_string(), version.to_string());
        tokio::task::spawn_blocking(move || c.check(&f, &v))
            .await
            .map_err(join_error)?
    }

    /// [`Client::checkout`] without blocking the runtime: the seat is renewed by a task on the
    /// caller's runtime. Dropping the [`AsyncSeat`] returns it (on the runtime's blocking pool);
    /// [`AsyncSeat::release`] returns it and says whether that worked.
    pub async fn checkout_async(
        &self,
        server_url: &str,
        feature: &str,
        version: &str,
    ) -> Result<AsyncSeat, ClientError> {
        self.checkout_async_with(&Checkout::new(feature, version).server(server_url))
            .await
    }

    /// [`Client::checkout_with`] without blocking the runtime.
    pub async fn checkout_async_with(&self, want: &Checkout) -> Result<AsyncSeat, ClientError> {
        let links = self.links(want)?;
        let (w, limits) = (want.clone(), self.limits());
        let shared = tokio::task::spawn_blocking(move || Shared::checkout(links, &w, limits))
            .await
            .map_err(join_error)??;
        self.held.add(&shared);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(s.interval()).await;
                if s.stopped() {
                    return;
                }
                n += 1;
                let beat = s.clone();
                if tokio::task::spawn_blocking(move || beat.beat(n))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(AsyncSeat {
            shared,
            task: Some(task),
        })
    }
}

/// A floating seat kept alive by a task on the caller's tokio runtime. Same behaviour and
/// guarantees as [`crate::Seat`]; dropping it returns the seat from the runtime's blocking pool
/// (a seat not returned, say when the runtime shuts down first, comes back at lease expiry).
#[derive(Debug)]
pub struct AsyncSeat {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl AsyncSeat {
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

    /// The version the server granted.
    pub fn granted_version(&self) -> String {
        self.shared.granted_version()
    }

    /// The license server that holds the lease.
    pub fn server(&self) -> String {
        self.shared.server()
    }

    /// How many times the lease was renewed.
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

    /// Whether the seat is lost (as [`crate::Seat::is_lost`]).
    pub fn is_lost(&self) -> bool {
        self.state() == SeatState::Lost
    }

    /// A channel that receives every [`SeatEvent`] from now on (`try_recv` it, or wrap it).
    pub fn events(&self) -> mpsc::Receiver<SeatEvent> {
        self.shared.subscribe()
    }

    /// Calls `f` with every [`SeatEvent`] from now on, on the runtime's blocking pool (forward
    /// it to a `tokio::sync` channel to await it).
    pub fn on_event(&self, f: impl Fn(&SeatEvent) + Send + Sync + 'static) {
        self.shared.on_event(Box::new(f));
    }

    /// Stops the renewals and returns the seat (as [`crate::Seat::release`]).
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.shared.ask_stop();
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let s = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = s.timeout();
            s.give_back(timeout)
        })
        .await
        .map_err(join_error)?
    }
}

impl Drop for AsyncSeat {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        self.shared.ask_stop();
        task.abort();
        let s = self.shared.clone();
        // returned without blocking the caller: on the runtime's blocking pool
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            drop(rt.spawn_blocking(move || s.give_back(DROP_TIMEOUT)));
        } else {
            let _ = s.give_back(DROP_TIMEOUT);
        }
    }
}
