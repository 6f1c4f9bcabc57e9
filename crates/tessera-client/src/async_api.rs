//! The async API (feature `tokio`): the same checks for applications that run a tokio runtime.
//! Blocking work (file reads, HTTP) runs on the runtime's blocking pool; a checked-out seat is kept
//! alive by a task on the caller's runtime instead of a thread.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::floating::ServerLink;
use crate::{Client, ClientError, Grant};
use tessera_core::capability::Operation;

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

    /// Checks a floating seat out; a task on the caller's runtime renews it. Call
    /// [`AsyncSeat::release`] to return it (dropping it stops the renewals; the lease then runs out).
    pub async fn checkout_async(
        &self,
        server_url: &str,
        feature: &str,
        version: &str,
    ) -> Result<AsyncSeat, ClientError> {
        let link = self.link(server_url);
        let (l, f, v) = (link.clone(), feature.to_string(), version.to_string());
        let request_id = crate::floating::random_id();
        let rid = request_id.clone();
        let claims = tokio::task::spawn_blocking(move || {
            l.call(
                Operation::Request,
                &rid,
                serde_json::json!([{"name": f, "version": v, "count": 1}]),
            )
        })
        .await
        .map_err(join_error)??;
        let Some(grant) = claims.grants.first() else {
            let d = claims.denials.first();
            return Err(ClientError::Refused {
                code: d.map_or("denied".into(), |d| d.code.clone()),
                message: d.map_or("no seat was granted".into(), |d| d.message.clone()),
            });
        };
        let lease = grant.lease;
        let session = crate::floating::session_key(grant);
        let interval = std::time::Duration::from_secs(claims.renew_interval_secs.max(1));
        let (stop, mut stopped) = watch::channel(false);
        let beat_link = link.clone();
        let beat_rid = request_id.clone();
        let beat_key = session.clone();
        let renewals = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = renewals.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                n += 1;
                let (l, rid, k) = (
                    beat_link.clone(),
                    format!("{beat_rid}-renew-{n}"),
                    beat_key.clone(),
                );
                let signed = crate::floating::signed_beat(n);
                let renewed = tokio::task::spawn_blocking(move || {
                    l.call_session(Operation::Renew, &rid, lease, k.as_deref(), signed)
                })
                .await;
                if let Ok(Ok(c)) = renewed {
                    if !c.grants.is_empty() {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        });
        Ok(AsyncSeat {
            link,
            request_id,
            lease,
            session,
            renewals,
            stop,
            task: Some(task),
        })
    }
}

/// A floating seat kept alive by a task on the caller's tokio runtime.
#[derive(Debug)]
pub struct AsyncSeat {
    link: ServerLink,
    request_id: String,
    lease: u64,
    session: Option<Vec<u8>>,
    renewals: Arc<std::sync::atomic::AtomicU64>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl AsyncSeat {
    /// The lease id.
    pub fn lease(&self) -> u64 {
        self.lease
    }

    /// How many times the lease was renewed.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the renewals and returns the seat.
    pub async fn release(mut self) -> Result<(), ClientError> {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let (l, rid, lease, k) = (
            self.link.clone(),
            format!("{}-return", self.request_id),
            self.lease,
            self.session.clone(),
        );
        tokio::task::spawn_blocking(move || {
            l.call_session(Operation::Return, &rid, lease, k.as_deref(), false)
        })
        .await
        .map_err(join_error)?
        .map(|_| ())
    }
}

impl Drop for AsyncSeat {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
