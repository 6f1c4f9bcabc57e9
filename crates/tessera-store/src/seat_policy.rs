//! [`SeatPolicyStore`]: the license administrator's seat policy documents, per [`InstanceId`].
//!
//! The documents that shape how seats are shared beyond first come, first served: the
//! reservation groups (the JSON document the reservations view imports and exports), and the
//! named-pool model and named users when they come. The license server checks a document before
//! it stores it and reads it back at start; the store keeps the text as given.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{opt_time, unix};
use crate::{dispatch, AnyStore, InstanceId, PgStore, SqliteStore, StoreError};

/// Which seat policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKind {
    /// The reservation groups (JSON, `tessera_core::reservations::Reservations`).
    Reservations,
    /// The named license pools' model definition (text).
    PoolModel,
    /// The users assigned to named-user features (JSON, `tessera_core::named_users::NamedUsers`).
    NamedUsers,
}

impl PolicyKind {
    /// The name the store keeps it under.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Reservations => "reservations",
            PolicyKind::PoolModel => "pool_model",
            PolicyKind::NamedUsers => "named_users",
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// The text as the administrator gave it (checked before it was stored).
    pub body: String,
    /// When it was stored.
    pub updated_at: Option<OffsetDateTime>,
}

/// The seat policy documents of license servers, each instance's apart.
pub trait SeatPolicyStore {
    /// `instance`'s document of `kind`, if one is stored.
    fn policy_document(
        &self,
        instance: &InstanceId,
        kind: PolicyKind,
    ) -> impl Future<Output = Result<Option<PolicyDocument>, StoreError>> + Send;

    /// Stores `body` as `instance`'s document of `kind` (replacing the one before), or deletes it
    /// (`None`).
    fn set_policy_document(
        &self,
        instance: &InstanceId,
        kind: PolicyKind,
        body: Option<&str>,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

macro_rules! impl_seat_policy_store {
    ($store:ty, $name:literal) => {
        impl SeatPolicyStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn policy_document(
                &self,
                instance: &InstanceId,
                kind: PolicyKind,
            ) -> Result<Option<PolicyDocument>, StoreError> {
                let row: Option<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT body, updated_at FROM seat_policy WHERE instance = $1 AND kind = $2",
                )
                .bind(instance.as_str())
                .bind(kind.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(body, at)| {
                    Ok(PolicyDocument {
                        body,
                        updated_at: opt_time(at, "seat_policy.updated_at")?,
                    })
                })
                .transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_policy_document(
                &self,
                instance: &InstanceId,
                kind: PolicyKind,
                body: Option<&str>,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                match body {
                    Some(body) => {
                        sqlx::query(
                            "INSERT INTO seat_policy (instance, kind, body, updated_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (instance, kind) \
                             DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                        )
                        .bind(instance.as_str())
                        .bind(kind.as_str())
                        .bind(body)
                        .bind(unix(at))
                        .execute(&self.pool)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM seat_policy WHERE instance = $1 AND kind = $2")
                            .bind(instance.as_str())
                            .bind(kind.as_str())
                            .execute(&self.pool)
                            .await?;
                    }
                }
                Ok(())
            }
        }
    };
}

impl_seat_policy_store!(SqliteStore, "sqlite");
impl_seat_policy_store!(PgStore, "postgres");

impl SeatPolicyStore for AnyStore {
    async fn policy_document(
        &self,
        instance: &InstanceId,
        kind: PolicyKind,
    ) -> Result<Option<PolicyDocument>, StoreError> {
        dispatch!(self, s => s.policy_document(instance, kind).await)
    }

    async fn set_policy_document(
        &self,
        instance: &InstanceId,
        kind: PolicyKind,
        body: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_policy_document(instance, kind, body, at).await)
    }
}
