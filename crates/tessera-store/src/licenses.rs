//! [`LicenseStore`]: the registry of issued license documents.

use std::future::Future;

use time::OffsetDateTime;

use crate::codec::{opt_time, opt_unix, time, unix};
use crate::{dispatch, AnyStore, PgStore, SqliteStore, StoreError};

/// A license document as issued. Times are kept to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLicense {
    /// The license id (unique).
    pub id: String,
    /// The id of the key that signed it.
    pub kid: String,
    /// Who it was issued to.
    pub licensee: String,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// When it stops being valid, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// The host ids it is locked to, in the order given (empty: not node-locked).
    pub hostids: Vec<String>,
    /// The signed document itself.
    pub token: String,
}

/// A window into a list: skip `offset` items, return at most `limit`. Negative values count as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// How many items to skip.
    pub offset: i64,
    /// The most items to return.
    pub limit: i64,
}

impl Page {
    /// The first `limit` items.
    pub const fn first(limit: i64) -> Self {
        Page { offset: 0, limit }
    }

    /// The page after this one (same size).
    pub const fn next(self) -> Self {
        Page {
            offset: self.offset.saturating_add(self.limit),
            limit: self.limit,
        }
    }
}

/// Issued license documents.
pub trait LicenseStore {
    /// Records an issued license. An id already recorded is [`StoreError::Conflict`] (and the
    /// stored license is left as it was).
    fn record_license(
        &self,
        license: IssuedLicense,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The license with this id, if recorded.
    fn get_license(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<IssuedLicense>, StoreError>> + Send;

    /// A page of licenses, newest first (by issue time, then by id, descending).
    fn list_licenses(
        &self,
        page: Page,
    ) -> impl Future<Output = Result<Vec<IssuedLicense>, StoreError>> + Send;
}

/// The columns of a license joined with one of its host ids (both `None` when it has none).
type LicenseRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

/// The select list and join shared by the two reads; `{licenses}` is a subquery that picks the
/// licenses (and their order/window).
macro_rules! select_licenses {
    ($licenses:literal) => {
        concat!(
            "SELECT l.id, l.kid, l.licensee, l.issued_at, l.expires_at, l.token, h.hostid \
             FROM (",
            $licenses,
            ") AS l LEFT JOIN license_hostids AS h ON h.license_id = l.id \
             ORDER BY l.issued_at DESC, l.id DESC, h.position"
        )
    };
}

const GET_LICENSE: &str = select_licenses!(
    "SELECT id, kid, licensee, issued_at, expires_at, token FROM licenses WHERE id = $1"
);

const LIST_LICENSES: &str = select_licenses!(
    "SELECT id, kid, licensee, issued_at, expires_at, token FROM licenses \
     ORDER BY issued_at DESC, id DESC LIMIT $1 OFFSET $2"
);

/// Folds joined rows (ordered by license, then host id position) into licenses.
fn group_rows(rows: Vec<LicenseRow>) -> Result<Vec<IssuedLicense>, StoreError> {
    let mut out: Vec<IssuedLicense> = Vec::new();
    for (id, kid, licensee, issued_at, expires_at, token, hostid) in rows {
        if out.last().is_none_or(|last| last.id != id) {
            out.push(IssuedLicense {
                issued_at: time(issued_at, "licenses.issued_at")?,
                expires_at: opt_time(expires_at, "licenses.expires_at")?,
                id,
                kid,
                licensee,
                hostids: Vec::new(),
                token,
            });
        }
        if let (Some(hostid), Some(license)) = (hostid, out.last_mut()) {
            license.hostids.push(hostid);
        }
    }
    Ok(out)
}

macro_rules! impl_license_store {
    ($store:ty, $name:literal) => {
        impl LicenseStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn record_license(&self, license: IssuedLicense) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO licenses (id, kid, licensee, issued_at, expires_at, token) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&license.id)
                .bind(&license.kid)
                .bind(&license.licensee)
                .bind(unix(license.issued_at))
                .bind(opt_unix(license.expires_at))
                .bind(&license.token)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    StoreError::unique_as_conflict(e, || format!("license {:?}", license.id))
                })?;
                let mut position: i64 = 0;
                for hostid in &license.hostids {
                    sqlx::query(
                        "INSERT INTO license_hostids (license_id, position, hostid) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(&license.id)
                    .bind(position)
                    .bind(hostid)
                    .execute(&mut *tx)
                    .await?;
                    position += 1;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_license(&self, id: &str) -> Result<Option<IssuedLicense>, StoreError> {
                let rows: Vec<LicenseRow> = sqlx::query_as(GET_LICENSE)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(group_rows(rows)?.into_iter().next())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_licenses(&self, page: Page) -> Result<Vec<IssuedLicense>, StoreError> {
                let rows: Vec<LicenseRow> = sqlx::query_as(LIST_LICENSES)
                    .bind(page.limit.max(0))
                    .bind(page.offset.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                group_rows(rows)
            }
        }
    };
}

impl_license_store!(SqliteStore, "sqlite");
impl_license_store!(PgStore, "postgres");

impl LicenseStore for AnyStore {
    async fn record_license(&self, license: IssuedLicense) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_license(license).await)
    }

    async fn get_license(&self, id: &str) -> Result<Option<IssuedLicense>, StoreError> {
        dispatch!(self, s => s.get_license(id).await)
    }

    async fn list_licenses(&self, page: Page) -> Result<Vec<IssuedLicense>, StoreError> {
        dispatch!(self, s => s.list_licenses(page).await)
    }
}
