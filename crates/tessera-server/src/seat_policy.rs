//! The license administrator's seat policy: reservations (and, to come, named pools and named
//! users). Documents are checked, stored in the store ([`tessera_store::SeatPolicyStore`]) and put
//! in force in the engine between two decisions. Edits are made one at a time; in a cluster every
//! member reads the stored document again at each sweep and puts a changed one in force, so all
//! members set the same seats aside.

use tessera_core::named_users::{NamedUserError, NamedUsers};
use tessera_core::reservations::{ReservationError, Reservations};
use tessera_core::Clock as _;
use tessera_store::{PolicyKind, SeatPolicyStore, StoreError};
use tessera_wire::admin::{NamedUserFeature, NamedUsersView, ReservationStatus, ReservationsView};

use crate::engine::InstanceId;
use crate::Server;

/// What the server remembers of its seat policy documents.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    /// The reservations document in force, as stored (to notice another member's change).
    reservations: Option<String>,
    /// The stored reservations could not be read, and why.
    unreadable: Option<String>,
    /// The named users document in force, as stored.
    named_users: Option<String>,
    /// The stored named users could not be read, and why.
    named_unreadable: Option<String>,
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
    /// The named users given are wrong; nothing changed.
    #[error(transparent)]
    NamedUsers(#[from] NamedUserError),
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
        let named = self.refresh_named_users().await?;
        Ok(self.refresh_reservations().await? || named)
    }

    /// [`Server::refresh_policy`] for the named users. Called under `policy_edit`.
    async fn refresh_named_users(&self) -> Result<bool, StoreError> {
        let stored = self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::NamedUsers)
            .await?
            .map(|d| d.body);
        let mut state = self.policy.lock().await;
        if stored == state.named_users {
            return Ok(false);
        }
        let doc = match stored.as_deref().map(serde_json::from_str::<NamedUsers>) {
            None => NamedUsers::default(),
            Some(Ok(doc)) => doc,
            Some(Err(e)) => {
                let why = format!("the named users stored do not read ({e}); named-user features serve nobody until users are assigned again");
                tracing::error!("{why}");
                state.named_users = stored;
                state.named_unreadable = Some(why);
                drop(state);
                self.engine.set_named_users(NamedUsers::default()).await?;
                return Ok(true);
            }
        };
        self.engine.set_named_users(doc).await?;
        state.named_users = stored;
        state.named_unreadable = None;
        Ok(true)
    }

    /// [`Server::refresh_policy`] for the reservations. Called under `policy_edit`.
    async fn refresh_reservations(&self) -> Result<bool, StoreError> {
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

    /// The named users view: every named-user feature with its users and who is trimmed.
    pub async fn named_users_view(&self) -> NamedUsersView {
        let unreadable = self.policy.lock().await.named_unreadable.clone();
        NamedUsersView {
            features: self
                .engine
                .named_user_assignments()
                .into_iter()
                .map(NamedUserFeature::from)
                .collect(),
            unreadable,
        }
    }

    /// Assigns `users` to the named-user feature `feature` (replacing those before; none: the
    /// feature serves nobody): checked, stored, then in force from the next decision on. Users
    /// beyond the feature's seats are trimmed, and the view lists them.
    pub async fn assign_named_users(
        &self,
        feature: &str,
        users: Vec<String>,
    ) -> Result<NamedUsersView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        NamedUsers::check_users(feature, &users)?;
        let records: Vec<tessera_core::feature::Feature> = self
            .engine
            .usage()
            .await
            .into_iter()
            .map(|(f, _, _)| f)
            .collect();
        if NamedUsers::seats(&records, feature).is_none() {
            return Err(NamedUserError::NotNamedUser {
                feature: feature.into(),
            }
            .into());
        }
        let mut next = self.engine.named_users();
        if users.is_empty() {
            next.features.remove(feature);
        } else {
            next.features.insert(feature.to_string(), users);
        }
        let body = if next.features.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&next).map_err(|e| StoreError::Write {
                detail: format!("the named users could not be written as JSON: {e}"),
            })?)
        };
        self.store
            .set_policy_document(
                &InstanceId::on_site(),
                PolicyKind::NamedUsers,
                body.as_deref(),
                self.clock.now(),
            )
            .await?;
        self.engine.set_named_users(next).await?;
        {
            let mut state = self.policy.lock().await;
            state.named_users = body;
            state.named_unreadable = None;
        }
        Ok(self.named_users_view().await)
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
