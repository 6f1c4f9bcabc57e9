//! [`BackOfficeStore`]: what the producer's back office keeps.
//!
//! Products, customers, entitlements and their lines (each line's activation key only as a
//! [`KeyHash`]), activations of lines by license servers and devices, trials,
//! answered offline requests, unlock codes and usage reports. Nested domain values travel as JSON
//! text that `tessera-backoffice` owns (`spec_json`, `policy_json`, `report_json`).
//!
//! The one operation with a concurrency rule is [`BackOfficeStore::activate`]: it takes the line's
//! row lock first (an `UPDATE` of the line, which serialises writers on both backends), then counts,
//! then inserts, so N parallel activations against a capacity L yield exactly L.

use std::future::Future;

use tessera_core::KeyHash;
use time::OffsetDateTime;

use crate::codec::{opt_time, opt_unix, time, unix};
use crate::{dispatch, AnyStore, Page, PgStore, SqliteStore, StoreError};

// users and API tokens moved to the auth store, shared by both services
pub use crate::auth::{TokenRecord, UserRecord};

/// A product and its definition (ordered features, trial settings) as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// Short id, e.g. `acme-studio`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The definition, JSON owned by the back office.
    pub spec_json: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A customer of the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    /// The customer id (`CUS-…`).
    pub id: String,
    /// The customer's name.
    pub name: String,
    /// Contact address.
    pub email: Option<String>,
    /// Days added to every grace period of this customer's licenses.
    pub grace_extra_days: i64,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// An entitlement: what one customer bought, made of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementRecord {
    /// Id, e.g. `ENT-…`.
    pub id: String,
    /// The customer.
    pub customer_id: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// One line of an entitlement: an activation key, a product, a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The line id (`LIN-…`).
    pub id: String,
    /// The entitlement it belongs to.
    pub entitlement_id: String,
    /// The activation key's hash; the key itself is never stored.
    pub key_hash: KeyHash,
    /// The key's first group, to recognise it in lists.
    pub key_hint: String,
    /// The product.
    pub product_id: String,
    /// Features, count, model, term and policies, JSON owned by the back office.
    pub policy_json: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// One activation of a line by a target (a license server or a device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRecord {
    /// The activation's id.
    pub id: String,
    /// The line.
    pub line_id: String,
    /// Who holds it, e.g. `server:ethernet=…` or `device:pc_id=…`.
    pub target: String,
    /// How many of the line's count it holds.
    pub count: i64,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When it was released (re-hosting), if it was.
    pub released_at: Option<OffsetDateTime>,
}

/// What [`BackOfficeStore::activate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivateOutcome {
    /// A new activation was recorded.
    Created(ActivationRecord),
    /// The target already held an activation of this line with the same count: nothing changed.
    Existing(ActivationRecord),
    /// Not enough of the line's capacity is left; `used` is what other activations hold.
    Exhausted {
        /// Count held by unreleased activations of the line.
        used: i64,
        /// Targets holding them (for "bound to another machine").
        holders: Vec<String>,
    },
}

/// A received usage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Id (the report's own id, so a re-sent report is stored once).
    pub id: String,
    /// Who sent it (a license server or device id).
    pub reporter: String,
    /// The customer, when known.
    pub customer_id: Option<String>,
    /// When it arrived.
    pub received_at: OffsetDateTime,
    /// Whether it showed use over the entitlement.
    pub over_use: bool,
    /// The report, JSON.
    pub report_json: String,
}

/// What the back office keeps. See the module documentation.
pub trait BackOfficeStore {
    /// Adds a product; an existing id is [`StoreError::Conflict`].
    fn create_product(
        &self,
        p: ProductRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces a product's name and definition; unknown id is [`StoreError::NotFound`].
    fn update_product(
        &self,
        p: ProductRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A product by id.
    fn get_product(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ProductRecord>, StoreError>> + Send;
    /// Every product, by id.
    fn list_products(&self) -> impl Future<Output = Result<Vec<ProductRecord>, StoreError>> + Send;

    /// Adds a customer; an existing id is [`StoreError::Conflict`].
    fn create_customer(
        &self,
        c: CustomerRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A customer by id.
    fn get_customer(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<CustomerRecord>, StoreError>> + Send;
    /// Every customer, by name.
    fn list_customers(
        &self,
    ) -> impl Future<Output = Result<Vec<CustomerRecord>, StoreError>> + Send;
    /// Sets the days added to a customer's grace periods; false when the customer is unknown.
    fn set_grace_extra_days(
        &self,
        customer_id: &str,
        days: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds an entitlement with its lines, all or nothing.
    fn create_entitlement(
        &self,
        e: EntitlementRecord,
        lines: Vec<LineRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// An entitlement by id.
    fn get_entitlement(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<EntitlementRecord>, StoreError>> + Send;
    /// Entitlements, newest first, optionally of one customer.
    fn list_entitlements(
        &self,
        customer_id: Option<&str>,
        page: Page,
    ) -> impl Future<Output = Result<Vec<EntitlementRecord>, StoreError>> + Send;
    /// The lines of an entitlement.
    fn list_lines(
        &self,
        entitlement_id: &str,
    ) -> impl Future<Output = Result<Vec<LineRecord>, StoreError>> + Send;
    /// Every line, newest first.
    fn list_all_lines(
        &self,
        page: Page,
    ) -> impl Future<Output = Result<Vec<LineRecord>, StoreError>> + Send;
    /// A line by id.
    fn get_line(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<LineRecord>, StoreError>> + Send;
    /// The line whose key has this hash.
    fn find_line_by_key(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<LineRecord>, StoreError>> + Send;
    /// Revokes a line; false if unknown. Revoking twice keeps the first time.
    fn revoke_line(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Activates `count` of line `line_id` for `target`, if at most `capacity` would then be held
    /// by unreleased activations. A target that already holds an unreleased activation of the line
    /// gets [`ActivateOutcome::Existing`] when the count is the same, and its count changed (within
    /// capacity) otherwise. Atomic under concurrency on both backends.
    fn activate(
        &self,
        line_id: &str,
        target: &str,
        count: i64,
        capacity: i64,
        new_id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<ActivateOutcome, StoreError>> + Send;
    /// Unreleased activations of a line.
    fn line_activations(
        &self,
        line_id: &str,
    ) -> impl Future<Output = Result<Vec<ActivationRecord>, StoreError>> + Send;
    /// Unreleased activations held by a target.
    fn target_activations(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<ActivationRecord>, StoreError>> + Send;
    /// Releases a line's activations (all, or one target's); returns how many were released.
    fn release_activations(
        &self,
        line_id: &str,
        target: Option<&str>,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records that a trial of `product_id` started on `fingerprint` at `now`, unless one was
    /// already recorded; returns the recorded start (the first one).
    fn start_trial(
        &self,
        product_id: &str,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<OffsetDateTime, StoreError>> + Send;

    /// Stores the answer to an offline request unless one is stored; returns what is stored
    /// (requester, answer): the first one, so a request answered twice gets the same answer. The
    /// caller compares the requester to tell a replay from a reused request id.
    fn put_offline_response(
        &self,
        request_id: &str,
        requester: &str,
        response: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(String, String), StoreError>> + Send;
    /// The stored (requester, answer) of an offline request.
    fn get_offline_response(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;
    /// When the line was first activated, counting released activations too (a term runs from
    /// the first activation; re-hosting does not restart it).
    fn line_first_activation(
        &self,
        line_id: &str,
    ) -> impl Future<Output = Result<Option<OffsetDateTime>, StoreError>> + Send;
    /// Records that license server `hostid` holds `public_key` and belongs to `customer_id`,
    /// unless a binding exists; returns the stored binding (public key, customer id).
    fn bind_server(
        &self,
        hostid: &str,
        public_key: &str,
        customer_id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(String, String), StoreError>> + Send;
    /// The binding of a license server: (public key, customer id).
    fn server_binding(
        &self,
        hostid: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;
    /// Forgets a license server's binding (re-hosting a replaced server); false if there was none.
    fn unbind_server(&self, hostid: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records that a bound license server confirmed serving license `license` (its id) at `now`;
    /// false when no server is bound under `hostid`.
    fn confirm_server(
        &self,
        hostid: &str,
        license: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// What a license server last confirmed: the license id and when.
    fn server_confirmation(
        &self,
        hostid: &str,
    ) -> impl Future<Output = Result<Option<(String, OffsetDateTime)>, StoreError>> + Send;

    /// Stores the unlock code given for a line on a PC identifier unless one is stored; returns the
    /// stored code.
    fn put_unlock(
        &self,
        line_id: &str,
        pc_id: &str,
        code: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Unlock codes given on a PC identifier, with their lines.
    fn unlocks_for_pc(
        &self,
        pc_id: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Stores a usage report; a report id already stored is kept as it was (returns false).
    fn record_usage(&self, r: UsageRecord)
        -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Usage reports, newest first, optionally of one customer.
    fn list_usage(
        &self,
        customer_id: Option<&str>,
        page: Page,
    ) -> impl Future<Output = Result<Vec<UsageRecord>, StoreError>> + Send;
}

type ProductRow = (String, String, String, i64);
type CustomerRow = (String, String, Option<String>, i64, i64);
type EntitlementRow = (String, String, i64);
type LineRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);
type ActivationRow = (String, String, String, i64, i64, Option<i64>);
type UsageRow = (String, String, Option<String>, i64, i64, String);

const LINE_COLUMNS: &str =
    "id, entitlement_id, key_hash, key_hint, product_id, policy_json, created_at, revoked_at";
const ACTIVATION_COLUMNS: &str = "id, line_id, target, count, created_at, released_at";

fn product(r: ProductRow) -> Result<ProductRecord, StoreError> {
    Ok(ProductRecord {
        id: r.0,
        name: r.1,
        spec_json: r.2,
        created_at: time(r.3, "products.created_at")?,
    })
}

fn customer(r: CustomerRow) -> Result<CustomerRecord, StoreError> {
    Ok(CustomerRecord {
        id: r.0,
        name: r.1,
        email: r.2,
        grace_extra_days: r.3,
        created_at: time(r.4, "customers.created_at")?,
    })
}

fn entitlement(r: EntitlementRow) -> Result<EntitlementRecord, StoreError> {
    Ok(EntitlementRecord {
        id: r.0,
        customer_id: r.1,
        created_at: time(r.2, "entitlements.created_at")?,
    })
}

fn line(r: LineRow) -> Result<LineRecord, StoreError> {
    let key_hash = KeyHash::from_hex(&r.2).ok_or_else(|| {
        StoreError::corrupt(format!(
            "entitlement_lines.key_hash of {} is not a key hash",
            r.0
        ))
    })?;
    Ok(LineRecord {
        id: r.0,
        entitlement_id: r.1,
        key_hash,
        key_hint: r.3,
        product_id: r.4,
        policy_json: r.5,
        created_at: time(r.6, "entitlement_lines.created_at")?,
        revoked_at: opt_time(r.7, "entitlement_lines.revoked_at")?,
    })
}

fn activation(r: ActivationRow) -> Result<ActivationRecord, StoreError> {
    Ok(ActivationRecord {
        id: r.0,
        line_id: r.1,
        target: r.2,
        count: r.3,
        created_at: time(r.4, "activations.created_at")?,
        released_at: opt_time(r.5, "activations.released_at")?,
    })
}

fn usage(r: UsageRow) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        id: r.0,
        reporter: r.1,
        customer_id: r.2,
        received_at: time(r.3, "usage_reports.received_at")?,
        over_use: r.4 != 0,
        report_json: r.5,
    })
}

fn all<R, T>(rows: Vec<R>, f: fn(R) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(f).collect()
}

macro_rules! impl_backoffice_store {
    ($store:ty, $name:literal) => {
        impl BackOfficeStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_product(&self, p: ProductRecord) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO products (id, name, spec_json, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&p.id)
                    .bind(&p.name)
                    .bind(&p.spec_json)
                    .bind(unix(p.created_at))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| StoreError::unique_as_conflict(e, || format!("product {}", p.id)))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn update_product(&self, p: ProductRecord) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE products SET name = $2, spec_json = $3 WHERE id = $1")
                    .bind(&p.id)
                    .bind(&p.name)
                    .bind(&p.spec_json)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { what: format!("product {}", p.id) });
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_product(&self, id: &str) -> Result<Option<ProductRecord>, StoreError> {
                let row: Option<ProductRow> =
                    sqlx::query_as("SELECT id, name, spec_json, created_at FROM products WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(product).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_products(&self) -> Result<Vec<ProductRecord>, StoreError> {
                let rows: Vec<ProductRow> =
                    sqlx::query_as("SELECT id, name, spec_json, created_at FROM products ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?;
                all(rows, product)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_customer(&self, c: CustomerRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO customers (id, name, email, grace_extra_days, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.email)
                .bind(c.grace_extra_days)
                .bind(unix(c.created_at))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::unique_as_conflict(e, || format!("customer {}", c.id)))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
                let row: Option<CustomerRow> = sqlx::query_as(
                    "SELECT id, name, email, grace_extra_days, created_at FROM customers WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(customer).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError> {
                let rows: Vec<CustomerRow> = sqlx::query_as(
                    "SELECT id, name, email, grace_extra_days, created_at FROM customers ORDER BY name, id",
                )
                .fetch_all(&self.pool)
                .await?;
                all(rows, customer)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn set_grace_extra_days(&self, customer_id: &str, days: i64) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE customers SET grace_extra_days = $2 WHERE id = $1")
                    .bind(customer_id)
                    .bind(days)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn create_entitlement(&self, e: EntitlementRecord, lines: Vec<LineRecord>) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("INSERT INTO entitlements (id, customer_id, created_at) VALUES ($1, $2, $3)")
                    .bind(&e.id)
                    .bind(&e.customer_id)
                    .bind(unix(e.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| StoreError::unique_as_conflict(err, || format!("entitlement {}", e.id)))?;
                for l in &lines {
                    sqlx::query(
                        "INSERT INTO entitlement_lines (id, entitlement_id, key_hash, key_hint, product_id, policy_json, created_at, revoked_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&l.id)
                    .bind(&e.id)
                    .bind(l.key_hash.to_hex())
                    .bind(&l.key_hint)
                    .bind(&l.product_id)
                    .bind(&l.policy_json)
                    .bind(unix(l.created_at))
                    .bind(opt_unix(l.revoked_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| StoreError::unique_as_conflict(err, || format!("entitlement line {}", l.id)))?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_entitlement(&self, id: &str) -> Result<Option<EntitlementRecord>, StoreError> {
                let row: Option<EntitlementRow> =
                    sqlx::query_as("SELECT id, customer_id, created_at FROM entitlements WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(entitlement).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_entitlements(&self, customer_id: Option<&str>, page: Page) -> Result<Vec<EntitlementRecord>, StoreError> {
                let rows: Vec<EntitlementRow> = sqlx::query_as(
                    "SELECT id, customer_id, created_at FROM entitlements \
                     WHERE ($1 IS NULL OR customer_id = $1) \
                     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                )
                .bind(customer_id)
                .bind(page.limit.max(0))
                .bind(page.offset.max(0))
                .fetch_all(&self.pool)
                .await?;
                all(rows, entitlement)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_lines(&self, entitlement_id: &str) -> Result<Vec<LineRecord>, StoreError> {
                let rows: Vec<LineRow> = sqlx::query_as(&format!(
                    "SELECT {LINE_COLUMNS} FROM entitlement_lines WHERE entitlement_id = $1 ORDER BY created_at, id"
                ))
                .bind(entitlement_id)
                .fetch_all(&self.pool)
                .await?;
                all(rows, line)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_all_lines(&self, page: Page) -> Result<Vec<LineRecord>, StoreError> {
                let rows: Vec<LineRow> = sqlx::query_as(&format!(
                    "SELECT {LINE_COLUMNS} FROM entitlement_lines ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
                ))
                .bind(page.limit.max(0))
                .bind(page.offset.max(0))
                .fetch_all(&self.pool)
                .await?;
                all(rows, line)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_line(&self, id: &str) -> Result<Option<LineRecord>, StoreError> {
                let row: Option<LineRow> =
                    sqlx::query_as(&format!("SELECT {LINE_COLUMNS} FROM entitlement_lines WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(line).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn find_line_by_key(&self, hash: &KeyHash) -> Result<Option<LineRecord>, StoreError> {
                let row: Option<LineRow> =
                    sqlx::query_as(&format!("SELECT {LINE_COLUMNS} FROM entitlement_lines WHERE key_hash = $1"))
                        .bind(hash.to_hex())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(line).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn revoke_line(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE entitlement_lines SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(unix(at))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn activate(
                &self,
                line_id: &str,
                target: &str,
                count: i64,
                capacity: i64,
                new_id: &str,
                now: OffsetDateTime,
            ) -> Result<ActivateOutcome, StoreError> {
                let mut tx = self.pool.begin().await?;
                // Take the line's write lock before reading anything: concurrent activations of
                // one line run one after the other on both backends.
                let locked = sqlx::query("UPDATE entitlement_lines SET seq = seq + 1 WHERE id = $1")
                    .bind(line_id)
                    .execute(&mut *tx)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Err(StoreError::NotFound { what: format!("entitlement line {line_id}") });
                }
                let rows: Vec<ActivationRow> = sqlx::query_as(&format!(
                    "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE line_id = $1 AND released_at IS NULL ORDER BY created_at, id"
                ))
                .bind(line_id)
                .fetch_all(&mut *tx)
                .await?;
                let current = all(rows, activation)?;
                let mine = current.iter().find(|a| a.target == target).cloned();
                let others: i64 = current.iter().filter(|a| a.target != target).map(|a| a.count).sum();
                if let Some(existing) = &mine {
                    if existing.count == count {
                        tx.commit().await?;
                        return Ok(ActivateOutcome::Existing(existing.clone()));
                    }
                }
                if others + count > capacity {
                    let holders = current.iter().filter(|a| a.target != target).map(|a| a.target.clone()).collect();
                    tx.commit().await?;
                    return Ok(ActivateOutcome::Exhausted { used: others, holders });
                }
                let record = match mine {
                    Some(existing) => {
                        sqlx::query("UPDATE activations SET count = $2 WHERE id = $1")
                            .bind(&existing.id)
                            .bind(count)
                            .execute(&mut *tx)
                            .await?;
                        ActivationRecord { count, ..existing }
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO activations (id, line_id, target, count, created_at, released_at) VALUES ($1, $2, $3, $4, $5, NULL)",
                        )
                        .bind(new_id)
                        .bind(line_id)
                        .bind(target)
                        .bind(count)
                        .bind(unix(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| StoreError::unique_as_conflict(e, || format!("activation {new_id}")))?;
                        ActivationRecord {
                            id: new_id.to_string(),
                            line_id: line_id.to_string(),
                            target: target.to_string(),
                            count,
                            created_at: time(unix(now), "activations.created_at")?,
                            released_at: None,
                        }
                    }
                };
                tx.commit().await?;
                Ok(ActivateOutcome::Created(record))
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn line_activations(&self, line_id: &str) -> Result<Vec<ActivationRecord>, StoreError> {
                let rows: Vec<ActivationRow> = sqlx::query_as(&format!(
                    "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE line_id = $1 AND released_at IS NULL ORDER BY created_at, id"
                ))
                .bind(line_id)
                .fetch_all(&self.pool)
                .await?;
                all(rows, activation)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn target_activations(&self, target: &str) -> Result<Vec<ActivationRecord>, StoreError> {
                let rows: Vec<ActivationRow> = sqlx::query_as(&format!(
                    "SELECT {ACTIVATION_COLUMNS} FROM activations WHERE target = $1 AND released_at IS NULL ORDER BY created_at, id"
                ))
                .bind(target)
                .fetch_all(&self.pool)
                .await?;
                all(rows, activation)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn release_activations(&self, line_id: &str, target: Option<&str>, at: OffsetDateTime) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE activations SET released_at = $3 \
                     WHERE line_id = $1 AND released_at IS NULL AND ($2 IS NULL OR target = $2)",
                )
                .bind(line_id)
                .bind(target)
                .bind(unix(at))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn start_trial(&self, product_id: &str, fingerprint: &str, now: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
                sqlx::query(
                    "INSERT INTO trials (product_id, fingerprint, started_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (product_id, fingerprint) DO NOTHING",
                )
                .bind(product_id)
                .bind(fingerprint)
                .bind(unix(now))
                .execute(&self.pool)
                .await?;
                let (started,): (i64,) = sqlx::query_as(
                    "SELECT started_at FROM trials WHERE product_id = $1 AND fingerprint = $2",
                )
                .bind(product_id)
                .bind(fingerprint)
                .fetch_one(&self.pool)
                .await?;
                time(started, "trials.started_at")
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn put_offline_response(&self, request_id: &str, requester: &str, response: &str, now: OffsetDateTime) -> Result<(String, String), StoreError> {
                sqlx::query(
                    "INSERT INTO offline_responses (request_id, requester, response, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (request_id) DO NOTHING",
                )
                .bind(request_id)
                .bind(requester)
                .bind(response)
                .bind(unix(now))
                .execute(&self.pool)
                .await?;
                let stored: (String, String) =
                    sqlx::query_as("SELECT requester, response FROM offline_responses WHERE request_id = $1")
                        .bind(request_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(stored)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_offline_response(&self, request_id: &str) -> Result<Option<(String, String)>, StoreError> {
                let row: Option<(String, String)> =
                    sqlx::query_as("SELECT requester, response FROM offline_responses WHERE request_id = $1")
                        .bind(request_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn line_first_activation(&self, line_id: &str) -> Result<Option<OffsetDateTime>, StoreError> {
                let row: (Option<i64>,) =
                    sqlx::query_as("SELECT MIN(created_at) FROM activations WHERE line_id = $1")
                        .bind(line_id)
                        .fetch_one(&self.pool)
                        .await?;
                opt_time(row.0, "activations.created_at")
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn bind_server(&self, hostid: &str, public_key: &str, customer_id: &str, now: OffsetDateTime) -> Result<(String, String), StoreError> {
                sqlx::query(
                    "INSERT INTO servers (hostid, public_key, customer_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (hostid) DO NOTHING",
                )
                .bind(hostid)
                .bind(public_key)
                .bind(customer_id)
                .bind(unix(now))
                .execute(&self.pool)
                .await?;
                let stored: (String, String) =
                    sqlx::query_as("SELECT public_key, customer_id FROM servers WHERE hostid = $1")
                        .bind(hostid)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(stored)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn server_binding(&self, hostid: &str) -> Result<Option<(String, String)>, StoreError> {
                let row: Option<(String, String)> =
                    sqlx::query_as("SELECT public_key, customer_id FROM servers WHERE hostid = $1")
                        .bind(hostid)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn unbind_server(&self, hostid: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM servers WHERE hostid = $1")
                    .bind(hostid)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn confirm_server(&self, hostid: &str, license: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE servers SET confirmed_license = $1, confirmed_at = $2 WHERE hostid = $3",
                )
                .bind(license)
                .bind(unix(now))
                .bind(hostid)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn server_confirmation(&self, hostid: &str) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
                let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT confirmed_license, confirmed_at FROM servers WHERE hostid = $1",
                )
                .bind(hostid)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some((Some(license), Some(at))) => Ok(Some((license, time(at, "servers.confirmed_at")?))),
                    _ => Ok(None),
                }
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn put_unlock(&self, line_id: &str, pc_id: &str, code: &str, now: OffsetDateTime) -> Result<String, StoreError> {
                sqlx::query(
                    "INSERT INTO unlocks (line_id, pc_id, code, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (line_id, pc_id) DO NOTHING",
                )
                .bind(line_id)
                .bind(pc_id)
                .bind(code)
                .bind(unix(now))
                .execute(&self.pool)
                .await?;
                let (stored,): (String,) =
                    sqlx::query_as("SELECT code FROM unlocks WHERE line_id = $1 AND pc_id = $2")
                        .bind(line_id)
                        .bind(pc_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(stored)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn unlocks_for_pc(&self, pc_id: &str) -> Result<Vec<(String, String)>, StoreError> {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT line_id, code FROM unlocks WHERE pc_id = $1 ORDER BY created_at, line_id",
                )
                .bind(pc_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn record_usage(&self, r: UsageRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "INSERT INTO usage_reports (id, reporter, customer_id, received_at, over_use, report_json) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&r.id)
                .bind(&r.reporter)
                .bind(&r.customer_id)
                .bind(unix(r.received_at))
                .bind(i64::from(r.over_use))
                .bind(&r.report_json)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_usage(&self, customer_id: Option<&str>, page: Page) -> Result<Vec<UsageRecord>, StoreError> {
                let rows: Vec<UsageRow> = sqlx::query_as(
                    "SELECT id, reporter, customer_id, received_at, over_use, report_json FROM usage_reports \
                     WHERE ($1 IS NULL OR customer_id = $1) \
                     ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3",
                )
                .bind(customer_id)
                .bind(page.limit.max(0))
                .bind(page.offset.max(0))
                .fetch_all(&self.pool)
                .await?;
                all(rows, usage)
            }
        }
    };
}

impl_backoffice_store!(SqliteStore, "sqlite");
impl_backoffice_store!(PgStore, "postgres");

impl BackOfficeStore for AnyStore {
    async fn create_product(&self, p: ProductRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_product(p).await)
    }
    async fn update_product(&self, p: ProductRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_product(p).await)
    }
    async fn get_product(&self, id: &str) -> Result<Option<ProductRecord>, StoreError> {
        dispatch!(self, s => s.get_product(id).await)
    }
    async fn list_products(&self) -> Result<Vec<ProductRecord>, StoreError> {
        dispatch!(self, s => s.list_products().await)
    }
    async fn create_customer(&self, c: CustomerRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_customer(c).await)
    }
    async fn get_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        dispatch!(self, s => s.get_customer(id).await)
    }
    async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError> {
        dispatch!(self, s => s.list_customers().await)
    }
    async fn set_grace_extra_days(&self, customer_id: &str, days: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.set_grace_extra_days(customer_id, days).await)
    }
    async fn create_entitlement(
        &self,
        e: EntitlementRecord,
        lines: Vec<LineRecord>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_entitlement(e, lines).await)
    }
    async fn get_entitlement(&self, id: &str) -> Result<Option<EntitlementRecord>, StoreError> {
        dispatch!(self, s => s.get_entitlement(id).await)
    }
    async fn list_entitlements(
        &self,
        customer_id: Option<&str>,
        page: Page,
    ) -> Result<Vec<EntitlementRecord>, StoreError> {
        dispatch!(self, s => s.list_entitlements(customer_id, page).await)
    }
    async fn list_lines(&self, entitlement_id: &str) -> Result<Vec<LineRecord>, StoreError> {
        dispatch!(self, s => s.list_lines(entitlement_id).await)
    }
    async fn list_all_lines(&self, page: Page) -> Result<Vec<LineRecord>, StoreError> {
        dispatch!(self, s => s.list_all_lines(page).await)
    }
    async fn get_line(&self, id: &str) -> Result<Option<LineRecord>, StoreError> {
        dispatch!(self, s => s.get_line(id).await)
    }
    async fn find_line_by_key(&self, hash: &KeyHash) -> Result<Option<LineRecord>, StoreError> {
        dispatch!(self, s => s.find_line_by_key(hash).await)
    }
    async fn revoke_line(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        dispatch!(self, s => s.revoke_line(id, at).await)
    }
    async fn activate(
        &self,
        line_id: &str,
        target: &str,
        count: i64,
        capacity: i64,
        new_id: &str,
        now: OffsetDateTime,
    ) -> Result<ActivateOutcome, StoreError> {
        dispatch!(self, s => s.activate(line_id, target, count, capacity, new_id, now).await)
    }
    async fn line_activations(&self, line_id: &str) -> Result<Vec<ActivationRecord>, StoreError> {
        dispatch!(self, s => s.line_activations(line_id).await)
    }
    async fn target_activations(&self, target: &str) -> Result<Vec<ActivationRecord>, StoreError> {
        dispatch!(self, s => s.target_activations(target).await)
    }
    async fn release_activations(
        &self,
        line_id: &str,
        target: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.release_activations(line_id, target, at).await)
    }
    async fn start_trial(
        &self,
        product_id: &str,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, StoreError> {
        dispatch!(self, s => s.start_trial(product_id, fingerprint, now).await)
    }
    async fn put_offline_response(
        &self,
        request_id: &str,
        requester: &str,
        response: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String), StoreError> {
        dispatch!(self, s => s.put_offline_response(request_id, requester, response, now).await)
    }
    async fn get_offline_response(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        dispatch!(self, s => s.get_offline_response(request_id).await)
    }
    async fn line_first_activation(
        &self,
        line_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        dispatch!(self, s => s.line_first_activation(line_id).await)
    }
    async fn bind_server(
        &self,
        hostid: &str,
        public_key: &str,
        customer_id: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String), StoreError> {
        dispatch!(self, s => s.bind_server(hostid, public_key, customer_id, now).await)
    }
    async fn server_binding(&self, hostid: &str) -> Result<Option<(String, String)>, StoreError> {
        dispatch!(self, s => s.server_binding(hostid).await)
    }
    async fn unbind_server(&self, hostid: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.unbind_server(hostid).await)
    }
    async fn confirm_server(
        &self,
        hostid: &str,
        license: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.confirm_server(hostid, license, now).await)
    }
    async fn server_confirmation(
        &self,
        hostid: &str,
    ) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
        dispatch!(self, s => s.server_confirmation(hostid).await)
    }
    async fn put_unlock(
        &self,
        line_id: &str,
        pc_id: &str,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        dispatch!(self, s => s.put_unlock(line_id, pc_id, code, now).await)
    }
    async fn unlocks_for_pc(&self, pc_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self, s => s.unlocks_for_pc(pc_id).await)
    }
    async fn record_usage(&self, r: UsageRecord) -> Result<bool, StoreError> {
        dispatch!(self, s => s.record_usage(r).await)
    }
    async fn list_usage(
        &self,
        customer_id: Option<&str>,
        page: Page,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        dispatch!(self, s => s.list_usage(customer_id, page).await)
    }
}
