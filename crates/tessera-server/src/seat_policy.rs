//! The license administrator's seat policy: reservations and named license pools (and, to come,
//! named users). Documents are checked, stored in the store ([`tessera_store::SeatPolicyStore`])
//! and put in force in the engine between two decisions. Edits are made one at a time; in a
//! cluster every member reads the stored documents again at each sweep and puts a changed one in
//! force, so all members set the same seats aside. Reservations and named pools exclude each
//! other: adding one while the other is stored is refused, saying which to remove.

use tessera_core::model::{Model, ModelError, ResolveError};
use tessera_core::named_users::{NamedUserError, NamedUsers};
use tessera_core::reservations::{Reservation, ReservationError, Reservations};
use tessera_core::Clock as _;
use tessera_store::{PolicyKind, SeatPolicyStore, StoreError};
use tessera_wire::admin::{
    NamedUserFeature, NamedUsersView, PoolModelText, PoolRow, PoolsView, ReservationStatus,
    ReservationsView,
};

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
    /// The pool model in force, as stored (the text uploaded).
    pool_model: Option<String>,
    /// The stored pool model could not be read, and why.
    pool_unreadable: Option<String>,
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
    /// Reservations are stored: a pool model cannot be uploaded until they are deleted.
    #[error("reservations are in force (reservation groups {groups}): reservations and named pools exclude each other. Delete those groups first (`tessera server reservations delete GROUP`, or `tessera server reservations clear` for all), then upload the model")]
    ReservationsActive {
        /// The groups in force, quoted and listed, for the administrator to delete.
        groups: String,
    },
    /// The model text does not parse (the message names the line and column).
    #[error("the model is refused: {0}")]
    Model(#[from] ModelError),
    /// The model does not fit the licenses served (the message names the line and column).
    #[error("the model is refused: {0}")]
    Resolve(#[from] ResolveError),
    /// No pool model is stored.
    #[error("no pool model is stored: upload one with `tessera server pools upload FILE`")]
    NoModel,
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
        let reservations = self.refresh_reservations().await?;
        let pools = self.refresh_pool_model().await?;
        Ok(named || reservations || pools)
    }

    /// [`Server::refresh_policy`] for the named-pool model. A model that reads but no longer fits
    /// the licenses is the engine's to keep out of force (its view says why).
    async fn refresh_pool_model(&self) -> Result<bool, StoreError> {
        let stored = self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::PoolModel)
            .await?
            .map(|d| d.body);
        let mut state = self.policy.lock().await;
        if stored == state.pool_model {
            return Ok(false);
        }
        let (model, unreadable) = match stored.as_deref().map(Model::parse) {
            None => (None, None),
            Some(Ok(m)) => (Some(m), None),
            Some(Err(e)) => {
                let why = format!("the pool model stored does not read ({e}); serving without named pools until a model is uploaded again");
                tracing::error!("{why}");
                (None, Some(why))
            }
        };
        self.engine.set_pool_model(model).await?;
        state.pool_model = stored;
        state.pool_unreadable = unreadable;
        Ok(true)
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

    /// Adds a reservation to the existing group `name`: its entries join the holder's reservation
    /// there (or it becomes a new reservation of the group), checked with everything in force,
    /// refused whole if anything is wrong, stored, then in force from the next decision on.
    pub async fn add_to_reservation_group(
        &self,
        name: &str,
        add: Reservation,
    ) -> Result<ReservationsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        if self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::PoolModel)
            .await?
            .is_some()
        {
            return Err(PolicyError::PoolsActive);
        }
        let next = self.engine.reservations().with_entries(name, add)?;
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

/// The longest model text accepted (the admin API's body limit is the same).
pub const MAX_MODEL_LEN: usize = 64 * 1024;

impl Server {
    /// The named pools view: the model kept, whether it is in force (and why not), its warnings,
    /// and per pool and feature record the seats held and in use.
    pub async fn pools_view(&self) -> PoolsView {
        let unreadable = self.policy.lock().await.pool_unreadable.clone();
        let p = self.engine.pools();
        let pools = p
            .rows
            .into_iter()
            .map(|(u, f)| {
                let default = u.pool.is_none();
                let overdraft = if default { f.overdraft } else { 0 };
                let status = if u.used > u.allocated {
                    "over"
                } else if u.used == u.allocated {
                    "full"
                } else {
                    "available"
                };
                PoolRow {
                    pool: u.pool.unwrap_or_else(|| "default".into()),
                    default,
                    feature: f.name.clone(),
                    version: f.version.to_string(),
                    expiry: f.expiry.to_string(),
                    allocated: u.allocated,
                    overdraft,
                    used: u.used,
                    status: status.into(),
                }
            })
            .collect();
        PoolsView {
            model: p.model.map(|m| m.name().to_string()),
            in_force: p.in_force,
            not_in_force: p.not_in_force,
            warnings: p.warnings,
            pools,
            unreadable,
        }
    }

    /// The pool model kept, as uploaded.
    pub async fn pool_model_text(&self) -> Result<PoolModelText, PolicyError> {
        let text = self
            .policy
            .lock()
            .await
            .pool_model
            .clone()
            .ok_or(PolicyError::NoModel)?;
        let name = Model::parse(&text)
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        Ok(PoolModelText { name, text })
    }

    /// Uploads a named-pool model (replacing the one kept): parsed, resolved against the licenses
    /// served (refused with the line and column of what is wrong; the policy in force unchanged),
    /// refused while reservations are stored, then stored and in force from the next decision on.
    pub async fn upload_pool_model(&self, text: &str) -> Result<PoolsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        let model = Model::parse(text)?;
        model.resolve(&self.engine.records())?;
        if self
            .store
            .policy_document(&InstanceId::on_site(), PolicyKind::Reservations)
            .await?
            .is_some()
        {
            let names: Vec<String> = self
                .engine
                .reservations()
                .groups
                .iter()
                .map(|g| format!("{:?}", g.name))
                .collect();
            let groups = if names.is_empty() {
                "stored but unreadable".to_string()
            } else {
                names.join(", ")
            };
            return Err(PolicyError::ReservationsActive { groups });
        }
        self.store
            .set_policy_document(
                &InstanceId::on_site(),
                PolicyKind::PoolModel,
                Some(text),
                self.clock.now(),
            )
            .await?;
        self.engine.set_pool_model(Some(model)).await?;
        {
            let mut state = self.policy.lock().await;
            state.pool_model = Some(text.to_string());
            state.pool_unreadable = None;
        }
        Ok(self.pools_view().await)
    }

    /// Deletes the named-pool model: one default pool again from the next decision on (nothing
    /// to delete is no error).
    pub async fn delete_pool_model(&self) -> Result<PoolsView, PolicyError> {
        let _edit = self.policy_edit.lock().await;
        self.store
            .set_policy_document(
                &InstanceId::on_site(),
                PolicyKind::PoolModel,
                None,
                self.clock.now(),
            )
            .await?;
        self.engine.set_pool_model(None).await?;
        {
            let mut state = self.policy.lock().await;
            state.pool_model = None;
            state.pool_unreadable = None;
        }
        Ok(self.pools_view().await)
    }
}
