//! The license administrator's seat policy: reservations (and, to come, named pools and named
//! users). Documents are checked, stored in the store ([`tessera_store::SeatPolicyStore`]) and put
//! in force in the engine between two decisions. Edits are made one at a time; in a cluster every
//! member reads the stored document again at each sweep and puts a changed one in force, so all
//! members set the same seats aside.

use tessera_core::reservations::{ReservationError, Reservations};
use tessera_core::Clock as _;
use tessera_store::{PolicyKind, SeatPolicyStore, StoreError};
use tessera_wire::admin::{ReservationStatus, ReservationsView};

use crate::engine::InstanceId;
use crate::Server;

/// What the server remembers of its seat policy documents.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    /// The reservations document in force, as stored (to notice another member's change).
    reservations: Option<String>,
    /// The stored reservations could not be read, and why.
    unreadable: Option<String>,
}

/// Why a seat policy change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is wrong (the message names the place); nothing changed.
    #[error(transparent)]
    Invalid(#[from] ReservationError),
    /// Named pools are in force: reservations cannot be added until the model is deleted.
    #[error("a named license pool model is in force: reservations and named pools exclude each other. Delete the model first (`tessera server pools delete`), then add reservations")]
    PoolsActive,
    /// The store failed; nothing changed.
    #[error("the license server could not store its seat policy: {0}")]
    Store(#[from] StoreError),
}

impl Server {
    /// Reads the stored reservations and puts them in force if they are not already (at start,
    /// and in a cluster at every sweep). Says whether it changed what is in force. A stored
    /// document that does not read is logged and kept out of force (the server serves without
    /// it: refusing to serve would lock every user out for a bad row); the view shows why.
    pub(crate) async fn refresh_policy(&self) -> Result<bool, StoreError> {
        let _edit = self.policy_edit.lock().await;
        let stored = self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::Reservations)
            .await?
            .map(|d| d.body);
        let mut state = self.policy.lock().await;
        if stored == state.reservations {
            return Ok(false);
        }
        let doc = match stored.as_deref().map(Reservations::parse) {
            None => Reservations::default(),
            Some(Ok(doc)) => doc,
            Some(Err(e)) => {
                let why = format!("the reservations stored do not read ({e}); serving without them until they are added again");
                tracing::error!("{why}");
                state.reservations = stored;
                state.unreadable = Some(why);
                drop(state);
                self.engine
                    .set_reservations(Reservations::default())
                    .await?;
                return Ok(true);
            }
        };
        self.engine.set_reservations(doc).await?;
        state.reservations = stored;
        state.unreadable = None;
        Ok(true)
    }

    /// The reservations view: the groups in force and each entry's status.
    pub async fn reservations_view(&self) -> ReservationsView {
        let unreadable = self.policy.lock().await.unreadable.clone();
        ReservationsView {
            groups: self.engine.reservations().groups,
            entries: self
                .engine
                .reservation_statuses()
                .into_iter()
                .map(ReservationStatus::from)
                .collect(),
            unreadable,
        }
    }

    /// Adds reservation groups (from the add form or an imported document): checked whole with
    /// those in force (no group name twice), refused whole if anything is wrong, stored, then in
    /// force from the next decision on.
    pub async fn add_reservations(
        &self,
        add: Reservations,
    ) -> Result<ReservationsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        add.check()?;
        if self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::PoolModel)
            .await?
            .is_some()
        {
            return Err(PolicyError::PoolsActive);
        }
        let next = self.engine.reservations().with_added(add.groups)?;
        self.put_reservations(next).await?;
        Ok(self.reservations_view().await)
    }

    /// Deletes the reservation group `name` (whole).
    pub async fn delete_reservation_group(
        &self,
        name: &str,
    ) -> Result<ReservationsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        let next = self.engine.reservations().without(name)?;
        self.put_reservations(next).await?;
        Ok(self.reservations_view().await)
    }

    /// Deletes every reservation group.
    pub async fn clear_reservations(&self) -> Result<ReservationsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        self.put_reservations(Reservations::default()).await?;
        Ok(self.reservations_view().await)
    }

    /// Stores `next` (none stored when empty) and puts it in force. Called under `policy_edit`.
    async fn put_reservations(&self, next: Reservations) -> Result<(), PolicyError> {
        let body = if next.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&next).map_err(|e| StoreError::Write {
                detail: format!("the reservations could not be written as JSON: {e}"),
            })?)
        };
        self.store
            .set_policy_document(
                &InstanceId::on_site(),
                PolicyKind::Reservations,
                body.as_deref(),
                self.clock.now(),
            )
            .await?;
        self.engine.set_reservations(next).await?;
        let mut state = self.policy.lock().await;
        state.reservations = body;
        state.unreadable = None;
        Ok(())
    }
}
