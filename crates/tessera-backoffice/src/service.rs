//! The back office's operations. HTTP handlers, public pages and the CLI all call these; they hold
//! the rules, the store keeps the data, the core signs and checks.

use std::sync::Arc;

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tessera_core::certificate::ServerCertificateClaims;
use tessera_core::code::{bytes_to_symbols, format_grouped};
use tessera_core::feature::{Count, Expiry, Feature};
use tessera_core::license::{LicenseClaims, LicensePolicy, LICENSE_FORMAT_VERSION};
use tessera_core::offline::{encode_key, KeyCount, RequestBody, RequestClaims, ResponseClaims};
use tessera_core::time::{Duration, OffsetDateTime};
use tessera_core::time_fmt::display_date;
use tessera_core::unlock::{FeatureMask, UnlockCode, UnlockGrant, UnlockSecretKey};
use tessera_core::usage::UsageReportClaims;
use tessera_core::{ActivationKey, Clock, HostId, HostIdKind, PcId, SigningKey, VerifyError};
use tessera_store::backoffice::{
    ActivateOutcome, CustomerRecord, EntitlementRecord, LineRecord, ProductRecord,
};
use tessera_store::{Page, Store, StoreError};
use utoipa::ToSchema;

use crate::model::{LicenseModel, LinePolicy, ProductSpec, Refusal};
use crate::outbox::Outbox;

/// Why an operation failed. Each variant maps to one HTTP status and stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request was understood and refused for a licensing reason.
    #[error("{0}")]
    Refused(Refusal),
    /// A field is missing or wrong.
    #[error("{field}: {detail}")]
    Invalid {
        /// Which field.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// Something named does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was looked for, e.g. `product cad`.
        what: String,
    },
    /// Something with that id exists already.
    #[error("{what} exists already")]
    Conflict {
        /// What exists already, e.g. `product cad`.
        what: String,
    },
    /// A signed document (request file, usage report) did not verify.
    #[error("the document is not valid: {0}")]
    BadDocument(VerifyError),
    /// A request meant for another producer's key.
    #[error("this request is for another producer (key id {aud}); this back office signs with key id {ours}")]
    WrongProducer {
        /// The key id the request names.
        aud: String,
        /// The key id this back office signs with.
        ours: String,
    },
    /// Storage failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("could not sign: {0}")]
    Sign(String),
    /// Mail could not be queued.
    #[error("{0}")]
    Mail(#[from] crate::outbox::OutboxError),
}

impl ServiceError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        ServiceError::Refused(r)
    }
}

fn sign_err(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Sign(e.to_string())
}

/// What replaces a key or an unlock code in a mail kept in the outbox after its delivery.
pub const REDACTED: &str = "[removed from the outbox after delivery]";

/// An e-mail address as the demo limit compares it: trimmed and lower-cased, the domain (case
/// does not matter there, RFC 5321) and the local part too (RFC 5321 lets a mail server tell
/// `Ann@` from `ann@`, but none in use does, and a demo must not be had twice by changing case).
pub fn normalized_email(address: &str) -> String {
    address.trim().to_lowercase()
}

/// The producer's keys: Ed25519 for documents, BLS12-381 for unlock codes.
#[derive(Debug)]
pub struct ProducerKeys {
    /// Signs licenses, certificates and responses.
    pub signing: SigningKey,
    /// Signs unlock codes.
    pub unlock: UnlockSecretKey,
}

/// A random id with a prefix, e.g. `ENT-7K2QM8W1`.
pub fn short_id(prefix: &str) -> String {
    let mut bytes = [0u8; 5];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}-{}",
        format_grouped(&bytes_to_symbols(&bytes, 8), 0)
    )
}

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    /// The product id (letters, digits, `-`, `_`), as licenses name it.
    pub id: String,
    /// The display name.
    pub name: String,
    /// Its features, trial and demo terms.
    pub spec: ProductSpec,
}

/// A customer as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    /// The customer id (`CUS-…`).
    pub id: String,
    /// The customer's name.
    pub name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Extra grace days granted.
    pub grace_extra_days: i64,
}

/// A new line of an entitlement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    /// The product.
    pub product: String,
    /// The policy.
    #[serde(flatten)]
    pub policy: LinePolicy,
}

// `policy` is flattened into the line's own fields: the derived schema would be `allOf` of
// LinePolicy (which refuses unknown fields, `product` among them) and `{product}`, which no value
// satisfies. This one is LinePolicy's own object with `product` added.
impl utoipa::PartialSchema for NewLine {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::http::openapi::flattened(
            <LinePolicy as utoipa::PartialSchema>::schema(),
            "A new line of an entitlement: the product and the line's policy.",
            &[(
                "product",
                utoipa::openapi::schema::Type::String,
                "The product.",
                true,
            )],
        )
    }
}

impl ToSchema for NewLine {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <LinePolicy as ToSchema>::schemas(schemas);
    }
}

/// A line as the API shows it. `key` is present only in the answer that created it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// Line id.
    pub line_id: String,
    /// Entitlement id.
    pub entitlement_id: String,
    /// The activation key: shown once, when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's first group.
    pub key_hint: String,
    /// The product.
    pub product: String,
    /// The policy.
    pub policy: LinePolicy,
    /// Count held by activations.
    pub used: i64,
    /// Who holds activations.
    pub activated_by: Vec<String>,
    /// Revoked at (unix seconds).
    pub revoked_at: Option<i64>,
}

/// An entitlement with its lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntitlementView {
    /// The entitlement id (`ENT-…`).
    pub id: String,
    /// Customer id.
    pub customer_id: String,
    /// Its lines: one activation key each.
    pub lines: Vec<LineView>,
}

/// What an unlock request answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnlockResult {
    /// The unlock code to type into the application.
    pub code: String,
    /// The features it unlocks.
    pub features: Vec<String>,
    /// Its last valid day, if it expires.
    pub expires: Option<String>,
    /// The product.
    pub product: String,
}

/// What a demo request did (the key itself is only e-mailed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DemoResult {
    /// The demo customer.
    pub customer_id: String,
    /// The demo entitlement.
    pub entitlement_id: String,
    /// The product.
    pub product: String,
    /// When the demo key expires (unix seconds).
    pub expires_at: i64,
}

pub use tessera_wire::activation::{ActivationResult, OverUse, TrialResult, UsageOutcome};

/// A usage report as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// Report id.
    pub id: String,
    /// The server.
    pub reporter: String,
    /// The customer.
    pub customer_id: Option<String>,
    /// Received (unix seconds).
    pub received_at: i64,
    /// Whether it showed over-use.
    pub over_use: bool,
    /// The report.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// The back office.
#[derive(Debug)]
pub struct BackOffice<S> {
    store: S,
    clock: Arc<dyn Clock>,
    keys: Arc<ProducerKeys>,
    issuer: String,
    outbox: Option<Arc<Outbox<S>>>,
    notify_email: Option<String>,
}

impl<S: Clone> Clone for BackOffice<S> {
    fn clone(&self) -> Self {
        BackOffice {
            store: self.store.clone(),
            clock: self.clock.clone(),
            keys: self.keys.clone(),
            issuer: self.issuer.clone(),
            outbox: self.outbox.clone(),
            notify_email: self.notify_email.clone(),
        }
    }
}

fn hint_of(key: &ActivationKey) -> String {
    key.to_string().chars().take(5).collect()
}

fn parse_key(text: &str, label: bool) -> Result<ActivationKey, Refusal> {
    ActivationKey::parse(text).map_err(|e| Refusal::InvalidKey {
        key_label: if label {
            format!("'{}' ", text.trim())
        } else {
            String::new()
        },
        detail: e.to_string(),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ServiceError> {
    serde_json::from_str(text).map_err(|e| {
        ServiceError::Store(StoreError::Corrupt {
            detail: format!("{what} does not parse: {e}"),
        })
    })
}

impl<S: Store> BackOffice<S> {
    /// A back office over `store`, signing with `keys` as `issuer`.
    pub fn new(store: S, clock: Arc<dyn Clock>, keys: Arc<ProducerKeys>, issuer: String) -> Self {
        BackOffice {
            store,
            clock,
            keys,
            issuer,
            outbox: None,
            notify_email: None,
        }
    }

    /// Sends mail and webhook calls through `outbox`; over-use notices go to `notify_email`.
    pub fn with_outbox(mut self, outbox: Arc<Outbox<S>>, notify_email: Option<String>) -> Self {
        self.outbox = Some(outbox);
        self.notify_email = notify_email;
        self
    }

    /// The outbox, when mail or webhooks are configured.
    pub fn outbox(&self) -> Option<&Arc<Outbox<S>>> {
        self.outbox.as_ref()
    }

    /// Queues a mail that carries `secret` (a key, an code): once delivered, the outbox keeps the
    /// mail with the secret replaced by [`REDACTED`] (keys are kept only as hashes).
    async fn queue_secret_mail(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        secret: &str,
    ) -> Result<(), ServiceError> {
        match &self.outbox {
            Some(o) => {
                let redacted = body.replace(secret, REDACTED);
                o.queue_mail_with_secret(to, subject, body, Some(&redacted), self.now())
                    .await?;
                Ok(())
            }
            None => Err(crate::outbox::OutboxError::MailNotConfigured.into()),
        }
    }

    /// Queues an e-mail with an unlock code and its summary.
    pub async fn mail_unlock_code(&self, to: &str, r: &UnlockResult) -> Result<(), ServiceError> {
        let body = format!(
            "Your unlock code for {product}:\n\n    {code}\n\nFeatures: {features}\nValid: {valid}\n\nType it into the application's activation window on the computer whose PC identifier you entered.\n\n{issuer}\n",
            product = r.product,
            code = r.code,
            features = r.features.join(", "),
            valid = r.expires.as_deref().map_or("permanently".to_string(), |e| format!("through {e}")),
            issuer = self.issuer,
        );
        self.queue_secret_mail(
            to,
            &format!("Your unlock code for {}", r.product),
            &body,
            &r.code,
        )
        .await
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Who signs: the producer's name in documents and pages.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The producer's keys.
    pub fn keys(&self) -> &ProducerKeys {
        &self.keys
    }

    // ---- products -------------------------------------------------------------------------

    /// Defines a product.
    pub async fn create_product(
        &self,
        id: &str,
        name: &str,
        spec: ProductSpec,
    ) -> Result<ProductView, ServiceError> {
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ServiceError::invalid(
                "id",
                "use 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        text_field("name", name, 200)?;
        spec.check()
            .map_err(|(field, e)| ServiceError::invalid(field, e))?;
        let record = ProductRecord {
            id: id.into(),
            name: if name.trim().is_empty() {
                id.into()
            } else {
                name.trim().into()
            },
            spec_json: serde_json::to_string(&spec).map_err(sign_err)?,
            created_at: self.now(),
        };
        self.store
            .create_product(record)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ServiceError::Conflict {
                    what: format!("product {id}"),
                },
                other => other.into(),
            })?;
        Ok(ProductView {
            id: id.into(),
            name: name.into(),
            spec,
        })
    }

    /// Appends features to a product (features are never removed or reordered: unlock codes
    /// name them by position).
    pub async fn add_features(
        &self,
        id: &str,
        features: Vec<crate::model::ProductFeature>,
    ) -> Result<ProductView, ServiceError> {
        let (record, mut spec) = self.product(id).await?;
        spec.features.extend(features);
        spec.check()
            .map_err(|(field, e)| ServiceError::invalid(field, e))?;
        let record = ProductRecord {
            spec_json: serde_json::to_string(&spec).map_err(sign_err)?,
            ..record
        };
        let name = record.name.clone();
        self.store.update_product(record).await?;
        Ok(ProductView {
            id: id.into(),
            name,
            spec,
        })
    }

    async fn product(&self, id: &str) -> Result<(ProductRecord, ProductSpec), ServiceError> {
        let record = self
            .store
            .get_product(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("product {id}"),
            })?;
        let spec: ProductSpec = parse_json(&record.spec_json, "product spec")?;
        Ok((record, spec))
    }

    /// Every product.
    pub async fn list_products(&self) -> Result<Vec<ProductView>, ServiceError> {
        let mut out = Vec::new();
        for r in self.store.list_products().await? {
            let spec = parse_json(&r.spec_json, "product spec")?;
            out.push(ProductView {
                id: r.id,
                name: r.name,
                spec,
            });
        }
        Ok(out)
    }

    // ---- customers ------------------------------------------------------------------------

    /// Adds a customer.
    pub async fn create_customer(
        &self,
        name: &str,
        email: Option<&str>,
    ) -> Result<CustomerView, ServiceError> {
        if name.trim().is_empty() {
            return Err(ServiceError::invalid("name", "a customer needs a name"));
        }
        text_field("name", name, 200)?;
        if let Some(e) = email {
            text_field("email", e, 254)?;
            if e.trim().parse::<lettre::Address>().is_err() {
                return Err(ServiceError::invalid(
                    "email",
                    format!("'{e}' is not an e-mail address"),
                ));
            }
        }
        let record = CustomerRecord {
            id: short_id("CUS"),
            name: name.trim().into(),
            email: email.map(str::to_string),
            grace_extra_days: 0,
            created_at: self.now(),
        };
        self.store.create_customer(record.clone()).await?;
        Ok(customer_view(record))
    }

    /// Every customer.
    pub async fn list_customers(&self) -> Result<Vec<CustomerView>, ServiceError> {
        Ok(self
            .store
            .list_customers()
            .await?
            .into_iter()
            .map(customer_view)
            .collect())
    }

    async fn customer(&self, id: &str) -> Result<CustomerRecord, ServiceError> {
        self.store
            .get_customer(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("customer {id}"),
            })
    }

    /// Adds `days` to the grace period of every license of one customer (0 resets).
    pub async fn extend_grace(
        &self,
        customer_id: &str,
        days: u32,
    ) -> Result<CustomerView, ServiceError> {
        if days > 3650 {
            return Err(ServiceError::invalid("days", "at most 3650"));
        }
        if !self
            .store
            .set_grace_extra_days(customer_id, i64::from(days))
            .await?
        {
            return Err(ServiceError::NotFound {
                what: format!("customer {customer_id}"),
            });
        }
        Ok(customer_view(self.customer(customer_id).await?))
    }

    // ---- entitlements and keys --------------------------------------------------------------

    /// Creates an entitlement for a customer; the answer holds each line's key, shown this once.
    pub async fn create_entitlement(
        &self,
        customer_id: &str,
        lines: Vec<NewLine>,
    ) -> Result<EntitlementView, ServiceError> {
        self.customer(customer_id).await?;
        if lines.is_empty() {
            return Err(ServiceError::invalid(
                "lines",
                "an entitlement needs at least one line",
            ));
        }
        let now = self.now();
        let entitlement = EntitlementRecord {
            id: short_id("ENT"),
            customer_id: customer_id.into(),
            created_at: now,
        };
        let mut records = Vec::new();
        let mut views = Vec::new();
        for (i, line) in lines.into_iter().enumerate() {
            let field = format!("lines[{i}]");
            let (_, spec) = self.product(&line.product).await.map_err(|e| match e {
                ServiceError::NotFound { what } => {
                    ServiceError::invalid(&field, format!("{what} does not exist"))
                }
                other => other,
            })?;
            validate_policy(&line.policy, &spec).map_err(|e| ServiceError::invalid(&field, e))?;
            let key = ActivationKey::generate(&mut OsRng);
            let record = LineRecord {
                id: short_id("LIN"),
                entitlement_id: entitlement.id.clone(),
                key_hash: key.hash(),
                key_hint: hint_of(&key),
                product_id: line.product.clone(),
                policy_json: serde_json::to_string(&line.policy).map_err(sign_err)?,
                created_at: now,
                revoked_at: None,
            };
            views.push(LineView {
                line_id: record.id.clone(),
                entitlement_id: entitlement.id.clone(),
                key: Some(key.to_string()),
                key_hint: record.key_hint.clone(),
                product: line.product,
                policy: line.policy,
                used: 0,
                activated_by: vec![],
                revoked_at: None,
            });
            records.push(record);
        }
        self.store
            .create_entitlement(entitlement.clone(), records)
            .await?;
        Ok(EntitlementView {
            id: entitlement.id,
            customer_id: customer_id.into(),
            lines: views,
        })
    }

    async fn line_view(&self, r: LineRecord) -> Result<LineView, ServiceError> {
        let policy: LinePolicy = parse_json(&r.policy_json, "line policy")?;
        let acts = self.store.line_activations(&r.id).await?;
        Ok(LineView {
            line_id: r.id,
            entitlement_id: r.entitlement_id,
            key: None,
            key_hint: r.key_hint,
            product: r.product_id,
            policy,
            used: acts.iter().map(|a| a.count).sum(),
            activated_by: acts.into_iter().map(|a| a.target).collect(),
            revoked_at: r.revoked_at.map(|t| t.unix_timestamp()),
        })
    }

    /// An entitlement with its lines (keys not shown).
    pub async fn get_entitlement(&self, id: &str) -> Result<EntitlementView, ServiceError> {
        let e = self
            .store
            .get_entitlement(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("entitlement {id}"),
            })?;
        let mut lines = Vec::new();
        for l in self.store.list_lines(id).await? {
            lines.push(self.line_view(l).await?);
        }
        Ok(EntitlementView {
            id: e.id,
            customer_id: e.customer_id,
            lines,
        })
    }

    /// Every key (line), newest first; keys themselves are never shown again, only hints.
    pub async fn list_keys(&self, page: Page) -> Result<Vec<LineView>, ServiceError> {
        let mut out = Vec::new();
        for l in self.store.list_all_lines(page).await? {
            out.push(self.line_view(l).await?);
        }
        Ok(out)
    }

    /// Finds a line by its id (`LIN-…`) or by its full activation key.
    pub async fn find_line(&self, key_or_line: &str) -> Result<LineRecord, ServiceError> {
        if let Some(l) = self.store.get_line(key_or_line.trim()).await? {
            return Ok(l);
        }
        let key = parse_key(key_or_line, false)?;
        self.store
            .find_line_by_key(&key.hash())
            .await?
            .ok_or_else(|| {
                Refusal::UnknownKey {
                    hint: hint_of(&key),
                }
                .into()
            })
    }

    /// Revokes a key: it can no longer be activated, renewed or unlocked.
    pub async fn revoke(&self, key_or_line: &str) -> Result<LineView, ServiceError> {
        let line = self.find_line(key_or_line).await?;
        self.store.revoke_line(&line.id, self.now()).await?;
        let line = self.find_line(&line.id).await?;
        self.line_view(line).await
    }

    /// Releases a key's activations (all, or one holder's) so it can be activated on a new
    /// machine: re-hosting.
    pub async fn rehost(
        &self,
        key_or_line: &str,
        holder: Option<&str>,
    ) -> Result<(LineView, u64), ServiceError> {
        let line = self.find_line(key_or_line).await?;
        let released = self
            .store
            .release_activations(&line.id, holder, self.now())
            .await?;
        if let Some(server) = holder.and_then(|h| h.strip_prefix("server:")) {
            if self
                .store
                .target_activations(holder.unwrap_or_default())
                .await?
                .is_empty()
            {
                self.store.unbind_server(server).await?;
            }
        }
        if released == 0 {
            return Err(ServiceError::NotFound {
                what: match holder {
                    Some(h) => format!("an activation of {} by {h}", line.key_hint),
                    None => format!("an activation of {}", line.key_hint),
                },
            });
        }
        Ok((self.line_view(line).await?, released))
    }

    // ---- activation -------------------------------------------------------------------------

    /// The line, its policy and product for a typed key, after the checks every use makes.
    async fn usable_line(
        &self,
        key_text: &str,
        now: OffsetDateTime,
    ) -> Result<(ActivationKey, LineRecord, LinePolicy, ProductSpec), ServiceError> {
        let key = parse_key(key_text, true)?;
        let hint = hint_of(&key);
        let line = self
            .store
            .find_line_by_key(&key.hash())
            .await?
            .ok_or(Refusal::UnknownKey { hint: hint.clone() })?;
        let policy: LinePolicy = parse_json(&line.policy_json, "line policy")?;
        if let Some(at) = line.revoked_at {
            return Err(Refusal::Revoked {
                hint,
                on: display_date(at),
            }
            .into());
        }
        if let Some(start) = policy.starts_at {
            if now < start {
                return Err(Refusal::NotYetValid {
                    hint,
                    on: display_date(start),
                }
                .into());
            }
        }
        if let Some(exp) = self.line_expiry(&line, &policy, now).await? {
            if now >= exp {
                return Err(Refusal::EntitlementExpired {
                    hint,
                    on: display_date(exp),
                }
                .into());
            }
        }
        let (_, spec) = self.product(&line.product_id).await?;
        Ok((key, line, policy, spec))
    }

    /// Takes one of a node-locked line's machines for `target` (kept if it already holds one);
    /// refuses with "bound to another machine" (count 1) or "count exhausted".
    async fn hold_device_seat(
        &self,
        line: &LineRecord,
        policy: &LinePolicy,
        target: &str,
        hint: String,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let outcome = self
            .store
            .activate(&line.id, target, 1, capacity(policy), &short_id("ACT"), now)
            .await?;
        if let ActivateOutcome::Exhausted { used, .. } = outcome {
            return Err(if policy.count <= 1 {
                Refusal::BoundToAnotherMachine { hint }
            } else {
                Refusal::CountExhausted {
                    hint,
                    available: (i64::from(policy.count) - used).max(0),
                    total: i64::from(policy.count),
                    requested: 1,
                }
            }
            .into());
        }
        Ok(())
    }

    /// The customer a line was sold to.
    async fn line_customer(&self, line: &LineRecord) -> Result<String, ServiceError> {
        Ok(self
            .store
            .get_entitlement(&line.entitlement_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("entitlement {}", line.entitlement_id),
            })?
            .customer_id)
    }

    /// Whether a line counts in the totals now: not revoked and not expired.
    async fn line_live(
        &self,
        line: &LineRecord,
        now: OffsetDateTime,
    ) -> Result<bool, ServiceError> {
        if line.revoked_at.is_some() {
            return Ok(false);
        }
        let lp: LinePolicy = parse_json(&line.policy_json, "line policy")?;
        Ok(self
            .line_expiry(line, &lp, now)
            .await?
            .is_none_or(|e| now < e))
    }

    /// A line's expiry: its fixed date, or its term counted from its first activation.
    async fn line_expiry(
        &self,
        line: &LineRecord,
        policy: &LinePolicy,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ServiceError> {
        let by_term = match policy.term_days {
            Some(days) => {
                let first = self
                    .store
                    .line_first_activation(&line.id)
                    .await?
                    .unwrap_or(now);
                Some(first + Duration::days(i64::from(days)))
            }
            None => None,
        };
        Ok(match (policy.expires_at, by_term) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The feature records a line grants, `count` each.
    fn line_features(
        &self,
        line: &LineRecord,
        policy: &LinePolicy,
        spec: &ProductSpec,
        count: Count,
        expiry: Option<OffsetDateTime>,
    ) -> Vec<Feature> {
        let names: Vec<&str> = if policy.features.is_empty() {
            spec.features.iter().map(|f| f.name.as_str()).collect()
        } else {
            policy.features.iter().map(String::as_str).collect()
        };
        names
            .into_iter()
            .filter_map(|n| spec.feature(n))
            .map(|pf| {
                let mut f = Feature::new(pf.name.clone(), pf.version.clone(), count);
                f.metered =
                    matches!(policy.model, LicenseModel::Metered) && count != Count::Uncounted;
                if count != Count::Uncounted {
                    f.overdraft = policy.overdraft;
                }
                f.named_user = matches!(policy.model, LicenseModel::NamedUser);
                f.start = policy.starts_at;
                f.expiry = expiry.map_or(Expiry::Permanent, Expiry::At);
                f.product = Some(line.product_id.clone());
                f.product_version = spec.version.clone();
                f.activation_id = Some(line.id.clone());
                f.entitlement_id = Some(line.entitlement_id.clone());
                f
            })
            .collect()
    }

    /// Activates one or more keys into a license server, all or nothing, and answers with the
    /// server's license bundle (every activation it holds) and its certificate.
    pub async fn activate_server(
        &self,
        server_hostid: &HostId,
        server_key: &str,
        activations: &[KeyCount],
    ) -> Result<ActivationResult, ServiceError> {
        let now = self.now();
        if activations.is_empty() {
            return Err(ServiceError::invalid(
                "activations",
                "name at least one activation key and count",
            ));
        }
        if activations.len() > 100 {
            return Err(ServiceError::invalid(
                "activations",
                "at most 100 keys in one request",
            ));
        }
        // base64url of the 32 raw bytes, or an SPKI PEM public key (as `tessera keys generate` writes)
        let server_public = decode_any_key(server_key)?;
        let target = format!("server:{server_hostid}");
        // check every key before changing anything
        let mut checked = Vec::new();
        for (i, a) in activations.iter().enumerate() {
            if a.count == 0 || a.count > 1_000_000 {
                return Err(ServiceError::invalid(
                    &format!("activations[{i}].count"),
                    "a count from 1 to 1000000",
                ));
            }
            let (key, line, policy, _spec) = self.usable_line(&a.key, now).await?;
            if !policy.model.served() {
                return Err(Refusal::WrongProduct {
                    hint: hint_of(&key),
                    detail: "node-locked: it activates a single computer by its PC identifier, not a license server".into(),
                }
                .into());
            }
            checked.push((key, line, policy, a.count));
        }
        // one customer per server, and one key per server host id
        let mut customers = std::collections::BTreeSet::new();
        for (_, line, _, _) in &checked {
            customers.insert(self.line_customer(line).await?);
        }
        let customer_id = match customers.len() {
            1 => customers.into_iter().next().unwrap_or_default(),
            _ => return Err(ServiceError::invalid(
                "activations",
                "these keys belong to different customers; a license server serves one customer",
            )),
        };
        let key_text = encode_key(&server_public);
        let (bound_key, bound_customer) = self
            .store
            .bind_server(&server_hostid.to_string(), &key_text, &customer_id, now)
            .await?;
        if bound_key != key_text {
            return Err(Refusal::ServerKeyMismatch {
                server: server_hostid.to_string(),
            }
            .into());
        }
        if bound_customer != customer_id {
            return Err(Refusal::OtherCustomer {
                server: server_hostid.to_string(),
            }
            .into());
        }
        // what the server held before, to restore if a later key is refused
        let before: std::collections::BTreeMap<String, i64> = self
            .store
            .target_activations(&target)
            .await?
            .into_iter()
            .map(|a| (a.line_id, a.count))
            .collect();
        let mut changed: Vec<(String, i64)> = Vec::new();
        for (key, line, policy, count) in &checked {
            let capacity = capacity(policy);
            let outcome = self
                .store
                .activate(
                    &line.id,
                    &target,
                    i64::from(*count),
                    capacity,
                    &short_id("ACT"),
                    now,
                )
                .await?;
            match outcome {
                ActivateOutcome::Created(_) => changed.push((line.id.clone(), capacity)),
                ActivateOutcome::Existing(_) => {}
                ActivateOutcome::Exhausted { used, .. } => {
                    // all or nothing: put back what this request changed
                    for (line_id, cap) in &changed {
                        match before.get(line_id) {
                            Some(prev) => {
                                self.store
                                    .activate(line_id, &target, *prev, *cap, &short_id("ACT"), now)
                                    .await?;
                            }
                            None => {
                                self.store
                                    .release_activations(line_id, Some(&target), now)
                                    .await?;
                            }
                        }
                    }
                    return Err(Refusal::CountExhausted {
                        hint: hint_of(key),
                        available: (i64::from(policy.count) - used).max(0),
                        total: i64::from(policy.count),
                        requested: i64::from(*count),
                    }
                    .into());
                }
            }
        }
        self.server_bundle(server_hostid, &server_public, now).await
    }

    /// Refuses a key other than the one the server was first activated with.
    async fn check_server_key(
        &self,
        server_hostid: &HostId,
        key: &str,
    ) -> Result<(), ServiceError> {
        match self
            .store
            .server_binding(&server_hostid.to_string())
            .await?
        {
            Some((bound, _)) if bound == key => Ok(()),
            Some(_) => Err(Refusal::ServerKeyMismatch {
                server: server_hostid.to_string(),
            }
            .into()),
            None => Err(ServiceError::NotFound {
                what: format!("an activated license server {server_hostid}"),
            }),
        }
    }

    /// The license bundle and certificate for everything a server holds now.
    async fn server_bundle(
        &self,
        server_hostid: &HostId,
        server_public: &tessera_core::PublicKey,
        now: OffsetDateTime,
    ) -> Result<ActivationResult, ServiceError> {
        let target = format!("server:{server_hostid}");
        let held = self.store.target_activations(&target).await?;
        let mut features = Vec::new();
        let mut policy = None::<LicensePolicy>;
        let mut exp = None::<OffsetDateTime>;
        let mut customer_id = None;
        for a in held {
            let Some(line) = self.store.get_line(&a.line_id).await? else {
                continue;
            };
            if line.revoked_at.is_some() {
                continue;
            }
            let lp: LinePolicy = parse_json(&line.policy_json, "line policy")?;
            let line_exp = self.line_expiry(&line, &lp, now).await?;
            if line_exp.is_some_and(|e| now >= e) {
                continue;
            }
            let (_, spec) = self.product(&line.product_id).await?;
            let count = if matches!(lp.model, LicenseModel::Uncounted) {
                Count::Uncounted
            } else {
                Count::Counted(u32::try_from(a.count).unwrap_or(u32::MAX))
            };
            features.extend(self.line_features(&line, &lp, &spec, count, line_exp));
            let renew_by = now + Duration::days(i64::from(lp.policy.renewal_days.max(1)));
            let line_cap = line_exp.map_or(renew_by, |e| e.min(renew_by));
            exp = Some(exp.map_or(line_cap, |e: OffsetDateTime| e.min(line_cap)));
            policy = Some(strictest(policy, &lp.policy));
            if customer_id.is_none() {
                if let Some(e) = self.store.get_entitlement(&line.entitlement_id).await? {
                    customer_id = Some(e.customer_id);
                }
            }
        }
        if features.is_empty() {
            return Err(ServiceError::NotFound {
                what: format!("an active activation for {server_hostid}"),
            });
        }
        let customer = match customer_id {
            Some(id) => self.customer(&id).await?,
            None => {
                return Err(ServiceError::NotFound {
                    what: "the customer".into(),
                })
            }
        };
        let mut policy = policy.unwrap_or_default();
        policy.grace_days = policy
            .grace_days
            .saturating_add(u32::try_from(customer.grace_extra_days).unwrap_or(0));
        let exp = exp.unwrap_or(now + Duration::days(30));
        // a license's feature expiries may not pass the license's own
        for f in &mut features {
            if let Expiry::At(t) = f.expiry {
                f.expiry = Expiry::At(t.min(exp));
            }
        }
        let claims = LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: self.issuer.clone(),
            sub: customer.name.clone(),
            jti: short_id("LIC"),
            iat: now,
            nbf: None,
            exp: Some(exp),
            hostids: vec![server_hostid.clone()],
            features,
            policy: Some(policy),
        };
        let license = self.sign_license(claims).await?;
        let cert = ServerCertificateClaims {
            jti: short_id("CRT"),
            iss: self.issuer.clone(),
            sub: customer.name,
            iat: now,
            exp,
            server_hostid: server_hostid.clone(),
            server_key: ServerCertificateClaims::encode_key(server_public),
        }
        .issue(&self.keys.signing)
        .map_err(sign_err)?;
        Ok(ActivationResult {
            license,
            certificate: Some(cert),
            expires_at: Some(exp.unix_timestamp()),
        })
    }

    async fn sign_license(&self, claims: LicenseClaims) -> Result<String, ServiceError> {
        let id = claims.jti.clone();
        let sub = claims.sub.clone();
        let iat = claims.iat;
        let exp = claims.exp;
        let hostids = claims.hostids.iter().map(ToString::to_string).collect();
        let text = claims.issue(&self.keys.signing).map_err(sign_err)?;
        self.store
            .record_license(tessera_store::IssuedLicense {
                id,
                kid: self.keys.signing.kid().to_string(),
                licensee: sub,
                issued_at: iat,
                expires_at: exp,
                hostids,
                token: text.clone(),
            })
            .await?;
        Ok(text)
    }

    /// Activates a node-locked key on a device by its PC identifier. Re-activating the same device
    /// answers with a fresh license (this is also the "validate at each launch" call); another
    /// device is refused.
    pub async fn activate_device(
        &self,
        key_text: &str,
        pc_id_text: &str,
        product: Option<&str>,
    ) -> Result<ActivationResult, ServiceError> {
        self.activate_device_with_key(key_text, pc_id_text, product, None)
            .await
    }

    /// [`BackOffice::activate_device`], also registering the device's Ed25519 public key
    /// (base64url or SPKI PEM), with which it signs its usage reports. A later activation with
    /// another key (a reinstall) replaces it.
    pub async fn activate_device_with_key(
        &self,
        key_text: &str,
        pc_id_text: &str,
        product: Option<&str>,
        device_key: Option<&str>,
    ) -> Result<ActivationResult, ServiceError> {
        let now = self.now();
        let pc = PcId::parse(pc_id_text)
            .map_err(|e| ServiceError::invalid("pc_id", format!("not a PC identifier: {e}")))?;
        let (key, line, policy, spec) = self.usable_line(key_text, now).await?;
        let hint = hint_of(&key);
        if let Some(p) = product {
            if p != line.product_id {
                return Err(Refusal::WrongProduct {
                    hint,
                    detail: format!("for product {}, not {p}", line.product_id),
                }
                .into());
            }
        }
        if !matches!(policy.model, LicenseModel::NodeLocked) {
            return Err(Refusal::WrongProduct {
                hint,
                detail: "for a license server (floating seats), not for a single computer".into(),
            }
            .into());
        }
        let target = format!("device:{}", HostId::from(&pc));
        self.hold_device_seat(&line, &policy, &target, hint, now)
            .await?;
        let exp = self.line_expiry(&line, &policy, now).await?;
        let entitlement = self
            .store
            .get_entitlement(&line.entitlement_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: format!("entitlement {}", line.entitlement_id),
            })?;
        let customer = self.customer(&entitlement.customer_id).await?;
        let mut lp = policy.policy.clone();
        lp.grace_days = lp
            .grace_days
            .saturating_add(u32::try_from(customer.grace_extra_days).unwrap_or(0));
        let claims = LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: self.issuer.clone(),
            sub: customer.name,
            jti: short_id("LIC"),
            iat: now,
            nbf: None,
            exp,
            hostids: vec![HostId::from(&pc)],
            features: self.line_features(&line, &policy, &spec, Count::Uncounted, exp),
            policy: Some(lp),
        };
        let license = self.sign_license(claims).await?;
        if let Some(k) = device_key {
            let public = decode_any_key(k)?;
            let host = HostId::from(&pc).to_string();
            let text = encode_key(&public);
            let (bound, _) = self
                .store
                .bind_server(&host, &text, &entitlement.customer_id, now)
                .await?;
            if bound != text {
                self.store.unbind_server(&host).await?;
                self.store
                    .bind_server(&host, &text, &entitlement.customer_id, now)
                    .await?;
            }
        }
        Ok(ActivationResult {
            license,
            certificate: None,
            expires_at: exp.map(|e| e.unix_timestamp()),
        })
    }

    // ---- offline ----------------------------------------------------------------------------

    /// Answers an offline request file with a response file. The same request answered twice gets
    /// the same response; a request for another producer, or one that does not verify, is refused.
    pub async fn offline_respond(&self, request_text: &str) -> Result<String, ServiceError> {
        let now = self.now();
        let request =
            RequestClaims::verify(request_text, now).map_err(ServiceError::BadDocument)?;
        let ours = self.keys.signing.kid().to_string();
        if request.aud != ours {
            return Err(ServiceError::WrongProducer {
                aud: request.aud,
                ours,
            });
        }
        // the same request (same signer, same content) gets the same answer; a request id reused
        // for another request is refused, never answered with someone else's grant
        let body = serde_json::to_vec(&request.body).map_err(sign_err)?;
        let fingerprint = format!("{}:{}", request.requester_key, sha256_hex(&body));
        if let Some((who, previous)) = self.store.get_offline_response(&request.jti).await? {
            return if who == fingerprint {
                Ok(previous)
            } else {
                Err(ServiceError::Conflict {
                    what: format!(
                        "an answered request with id {} (use a new request id)",
                        request.jti
                    ),
                })
            };
        }
        if let RequestBody::Confirmation {
            server_hostid,
            license,
            in_reply_to,
        } = &request.body
        {
            return self
                .confirm_server(
                    server_hostid,
                    &request.requester_key,
                    license,
                    in_reply_to.as_deref(),
                    now,
                )
                .await;
        }
        let result = match &request.body {
            RequestBody::ServerActivation {
                server_hostid,
                server_key,
                activations,
            } => {
                if *server_key != request.requester_key {
                    return Err(ServiceError::invalid(
                        "server_key",
                        "the request must be signed with the server key it asks to certify",
                    ));
                }
                self.activate_server(server_hostid, server_key, activations)
                    .await?
            }
            RequestBody::DeviceActivation {
                key,
                pc_id,
                product,
            } => self.activate_device(key, pc_id, product.as_deref()).await?,
            RequestBody::Renewal {
                server_hostid,
                usage_report,
            } => match usage_report {
                Some(report) => self.usage_report(report).await?.renewal.ok_or_else(|| {
                    ServiceError::invalid(
                        "usage_report",
                        "a renewal request carries a license server's report",
                    )
                })?,
                None => {
                    let key = request
                        .requester_public_key()
                        .map_err(ServiceError::BadDocument)?;
                    self.check_server_key(server_hostid, &encode_key(&key))
                        .await?;
                    self.server_bundle(server_hostid, &key, now).await?
                }
            },
            _ => {
                return Err(ServiceError::invalid(
                    "kind",
                    "this kind of request is not known to this back office",
                ))
            }
        };
        let response = ResponseClaims {
            jti: short_id("RSP"),
            iat: now,
            in_reply_to: request.jti.clone(),
            license: result.license,
            certificate: result.certificate,
        }
        .issue(&self.keys.signing)
        .map_err(sign_err)?;
        let (who, stored) = self
            .store
            .put_offline_response(&request.jti, &fingerprint, &response, now)
            .await?;
        if who != fingerprint {
            return Err(ServiceError::Conflict {
                what: format!(
                    "an answered request with id {} (use a new request id)",
                    request.jti
                ),
            });
        }
        Ok(stored)
    }

    /// A license server's confirmation that it serves `license`: signed by the key the server
    /// was bound with, naming a license this back office issued to it. Recorded (the latest wins);
    /// answered with an acknowledgement to show the administrator.
    async fn confirm_server(
        &self,
        server_hostid: &HostId,
        requester_key: &str,
        license: &str,
        in_reply_to: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<String, ServiceError> {
        self.check_server_key(server_hostid, requester_key).await?;
        if license.is_empty() || license.len() > 128 || license.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "license",
                "the confirmation names no license id; make it again with `tessera server offline confirm`",
            ));
        }
        self.store
            .confirm_server(&server_hostid.to_string(), license, now)
            .await?;
        tracing::info!(server = %server_hostid, license, "license server confirmed the bundle it serves");
        Ok(format!(
            "confirmed: license server {server_hostid} serves license {license}{} (recorded {})\n",
            in_reply_to
                .map(|r| format!(" from the response to {r}"))
                .unwrap_or_default(),
            tessera_core::time_fmt::display_time(now)
        ))
    }

    /// What a license server last confirmed it serves (license id, when), if it ever did.
    pub async fn server_confirmation(
        &self,
        server_hostid: &HostId,
    ) -> Result<Option<(String, OffsetDateTime)>, ServiceError> {
        Ok(self
            .store
            .server_confirmation(&server_hostid.to_string())
            .await?)
    }

    // ---- unlock codes -----------------------------------------------------------------------

    /// Makes the unlock code for a node-locked key on a PC identifier (for machines that never go
    /// online). The same key and PC get the same code again; a key whose features that PC already
    /// has from another key is refused with a warning; a key used on another PC is refused.
    pub async fn unlock(
        &self,
        key_text: &str,
        pc_id_text: &str,
    ) -> Result<UnlockResult, ServiceError> {
        let now = self.now();
        let pc = PcId::parse(pc_id_text)
            .map_err(|e| ServiceError::invalid("pc_id", format!("not a PC identifier: {e}")))?;
        let (key, line, policy, spec) = self.usable_line(key_text, now).await?;
        let hint = hint_of(&key);
        if !matches!(policy.model, LicenseModel::NodeLocked) {
            return Err(Refusal::WrongProduct {
                hint,
                detail:
                    "for a license server (floating seats); unlock codes are for node-locked keys"
                        .into(),
            }
            .into());
        }
        let names: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
        let granted: Vec<String> = if policy.features.is_empty() {
            names.iter().map(|s| s.to_string()).collect()
        } else {
            policy.features.clone()
        };
        let target = format!("device:{}", HostId::from(&pc));
        let already_here = self
            .store
            .line_activations(&line.id)
            .await?
            .iter()
            .any(|a| a.target == target);
        if !already_here {
            // features this PC already has from other keys of the same product
            let mut have = std::collections::BTreeSet::new();
            for (other_line, _) in self.store.unlocks_for_pc(&pc.to_string()).await? {
                if other_line == line.id {
                    continue;
                }
                if let Some(l) = self.store.get_line(&other_line).await? {
                    if l.product_id == line.product_id && self.line_live(&l, now).await? {
                        let lp: LinePolicy = parse_json(&l.policy_json, "line policy")?;
                        if lp.features.is_empty() {
                            have.extend(names.iter().map(|s| s.to_string()));
                        } else {
                            have.extend(lp.features);
                        }
                    }
                }
            }
            if !granted.is_empty() && granted.iter().all(|f| have.contains(f)) {
                return Err(Refusal::AlreadyActivated {
                    features: granted.join(", "),
                }
                .into());
            }
        }
        self.hold_device_seat(&line, &policy, &target, hint, now)
            .await?;
        let mask = FeatureMask::from_names(&names, &granted)
            .map_err(|e| ServiceError::invalid("features", e.to_string()))?;
        let exp = self.line_expiry(&line, &policy, now).await?;
        let grant = match exp {
            // the last whole day before the expiry instant
            Some(t) => UnlockGrant::until(mask, (t - Duration::seconds(1)).date()),
            None => UnlockGrant::permanent(mask),
        };
        let code = UnlockCode::issue(&self.keys.unlock, &line.product_id, &key, &pc, grant)
            .map_err(|e| ServiceError::invalid("expires_at", e.to_string()))?
            .to_string();
        let stored = self
            .store
            .put_unlock(&line.id, &pc.to_string(), &code, now)
            .await?;
        Ok(UnlockResult {
            code: stored,
            features: granted,
            expires: exp.map(|t| display_date(t - Duration::seconds(1))),
            product: line.product_id,
        })
    }

    // ---- trials -----------------------------------------------------------------------------

    /// Registers (or looks up) the trial of `product` on the machine with PC identifier `pc_id`.
    /// The first start is remembered, so reinstalling does not restart a trial.
    pub async fn start_trial(
        &self,
        product: &str,
        pc_id_text: &str,
    ) -> Result<TrialResult, ServiceError> {
        let now = self.now();
        let pc = PcId::parse(pc_id_text)
            .map_err(|e| ServiceError::invalid("pc_id", format!("not a PC identifier: {e}")))?;
        let (_, spec) = self.product(product).await?;
        let started = self
            .store
            .start_trial(product, &pc.to_string(), now)
            .await?;
        let ends = started + Duration::days(i64::from(spec.trial_days));
        let mut features: Vec<Feature> = spec
            .features
            .iter()
            .map(|pf| {
                let mut f = Feature::new(pf.name.clone(), pf.version.clone(), Count::Uncounted);
                f.expiry = Expiry::At(ends);
                f.product = Some(product.into());
                f.vendor_string = Some("trial".into());
                f
            })
            .collect();
        for b in &spec.basic_features {
            if let Some(pf) = spec.feature(b) {
                let mut f = Feature::new(pf.name.clone(), pf.version.clone(), Count::Uncounted);
                f.product = Some(product.into());
                f.vendor_string = Some("basic".into());
                features.push(f);
            }
        }
        let claims = LicenseClaims {
            v: LICENSE_FORMAT_VERSION,
            iss: self.issuer.clone(),
            sub: format!("trial of {product}"),
            jti: short_id("TRL"),
            iat: now,
            nbf: None,
            exp: if spec.basic_features.is_empty() {
                Some(ends)
            } else {
                None
            },
            hostids: vec![HostId::new(HostIdKind::PcId, &pc.to_string())
                .map_err(|e| ServiceError::invalid("pc_id", e.to_string()))?],
            features,
            policy: None,
        };
        let license = if now >= ends && spec.basic_features.is_empty() {
            String::new()
        } else {
            self.sign_license(claims).await?
        };
        Ok(TrialResult {
            started_at: started.unix_timestamp(),
            expires_at: ends.unix_timestamp(),
            basic_features: spec.basic_features.clone(),
            license,
        })
    }

    // ---- demo requests ----------------------------------------------------------------------

    /// Issues a time-limited full-feature demo key for `product` and e-mails it to `email` (the
    /// key is only sent by mail, which proves the address). Needs mail to be configured.
    pub async fn demo_request(
        &self,
        name: &str,
        company: &str,
        email: &str,
        product: &str,
    ) -> Result<DemoResult, ServiceError> {
        let now = self.now();
        if name.trim().is_empty() {
            return Err(ServiceError::invalid("name", "please give your name"));
        }
        text_field("name", name, 200)?;
        text_field("company", company, 200)?;
        text_field("email", email, 254)?;
        let email = email.trim().to_string();
        if let Err(e) = email.parse::<lettre::Address>() {
            return Err(crate::outbox::OutboxError::InvalidAddress {
                address: email,
                reason: e.to_string(),
            }
            .into());
        }
        if !self.outbox.as_ref().is_some_and(|o| o.mail_configured()) {
            return Err(crate::outbox::OutboxError::MailNotConfigured.into());
        }
        let (_, spec) = self.product(product).await?;
        // everything that can fail is checked before the demo customer is made: a failed demo
        // leaves nothing behind (a product stored before demo_days was bounded is refused here)
        let expires = demo_expiry(now, spec.demo_days)?;
        // one demo per address and product: a demo is not a way around buying. Addresses are
        // compared without regard to case (`normalized_email`).
        let wanted = normalized_email(&email);
        for c in self.store.list_customers().await? {
            if c.email.as_deref().map(normalized_email).as_deref() != Some(wanted.as_str()) {
                continue;
            }
            for e in self
                .store
                .list_entitlements(
                    Some(&c.id),
                    Page {
                        offset: 0,
                        limit: 1000,
                    },
                )
                .await?
            {
                for l in self.store.list_lines(&e.id).await? {
                    let lp: LinePolicy = parse_json(&l.policy_json, "line policy")?;
                    if lp.demo && l.product_id == product {
                        return Err(ServiceError::Conflict {
                            what: format!(
                                "a demo key for {product} sent to {email} (one demo per address)"
                            ),
                        });
                    }
                }
            }
        }
        let label = if company.trim().is_empty() {
            name.trim()
        } else {
            company.trim()
        };
        let customer = self
            .create_customer(&format!("{label} (demo)"), Some(&email))
            .await?;
        let ent = self
            .create_entitlement(
                &customer.id,
                vec![NewLine {
                    product: product.into(),
                    policy: LinePolicy {
                        features: vec![],
                        count: 1,
                        model: LicenseModel::NodeLocked,
                        starts_at: None,
                        expires_at: Some(expires),
                        term_days: None,
                        overdraft: 0,
                        policy: LicensePolicy::default(),
                        demo: true,
                    },
                }],
            )
            .await?;
        let key = ent
            .lines
            .first()
            .and_then(|l| l.key.clone())
            .ok_or_else(|| ServiceError::Sign("the demo entitlement has no key".into()))?;
        let body = format!(
            "Hello {name},\n\nhere is your demo key for {product}, with every feature, valid through {until}:\n\n    {key}\n\nEnter it in the application's activation window.\n\n{issuer}\n",
            name = name.trim(),
            until = display_date(expires - Duration::seconds(1)),
            issuer = self.issuer,
        );
        self.queue_secret_mail(&email, &format!("Your {product} demo key"), &body, &key)
            .await?;
        Ok(DemoResult {
            customer_id: customer.id,
            entitlement_id: ent.id,
            product: product.into(),
            expires_at: expires.unix_timestamp(),
        })
    }

    // ---- usage reports and renewal ----------------------------------------------------------

    /// Takes a license server's signed usage report: records it (once per report id), flags use
    /// over the entitlement and notifies the producer, and answers with the renewed license
    /// bundle (expiry = now + renewal period).
    pub async fn usage_report(&self, text: &str) -> Result<UsageOutcome, ServiceError> {
        let now = self.now();
        let unverified: UsageReportClaims = tessera_core::document::decode_unverified(
            text,
            tessera_core::DocumentType::UsageReport,
        )
        .map_err(ServiceError::BadDocument)?;
        if unverified.certificate.is_empty() {
            return self.device_usage_report(text, &unverified, now).await;
        }
        let producer_keys = self.producer_keyring().await?;
        let (report, cert) = UsageReportClaims::verify(text, &producer_keys, now)
            .map_err(ServiceError::BadDocument)?;
        if report.iat < now - Duration::days(90) || report.iat > now + Duration::days(1) {
            return Err(ServiceError::invalid(
                "iat",
                "the usage report was not made in the last 90 days; make a new one",
            ));
        }
        self.check_server_key(&report.server_hostid, &cert.server_key)
            .await?;
        let target = format!("server:{}", report.server_hostid);
        // what this server holds, per feature
        let mut licensed: std::collections::BTreeMap<String, i64> = Default::default();
        let mut customer_id = None;
        for a in self.store.target_activations(&target).await? {
            if let Some(line) = self.store.get_line(&a.line_id).await? {
                let lp: LinePolicy = parse_json(&line.policy_json, "line policy")?;
                if customer_id.is_none() {
                    customer_id = Some(self.line_customer(&line).await?);
                }
                if !self.line_live(&line, now).await? {
                    continue;
                }
                if matches!(lp.model, LicenseModel::Uncounted) {
                    for n in &lp.features {
                        licensed.insert(n.clone(), i64::MAX / 2);
                    }
                    if lp.features.is_empty() {
                        let (_, spec) = self.product(&line.product_id).await?;
                        for f in &spec.features {
                            licensed.insert(f.name.clone(), i64::MAX / 2);
                        }
                    }
                    continue;
                }
                let (_, spec) = self.product(&line.product_id).await?;
                let names: Vec<String> = if lp.features.is_empty() {
                    spec.features.iter().map(|f| f.name.clone()).collect()
                } else {
                    lp.features.clone()
                };
                for n in names {
                    *licensed.entry(n).or_insert(0) += a.count;
                }
                if customer_id.is_none() {
                    customer_id = self
                        .store
                        .get_entitlement(&line.entitlement_id)
                        .await?
                        .map(|e| e.customer_id);
                }
            }
        }
        let over: Vec<OverUse> = report
            .features
            .iter()
            .filter_map(|f| {
                let have = licensed.get(&f.name).copied().unwrap_or(0);
                (i64::from(f.peak) > have || f.overdraft_peak > 0).then(|| OverUse {
                    feature: f.name.clone(),
                    peak: f.peak,
                    licensed: have,
                    overdraft_peak: f.overdraft_peak,
                })
            })
            .collect();
        let report_json = serde_json::to_string(&report).map_err(sign_err)?;
        let new = self
            .store
            .record_usage(tessera_store::backoffice::UsageRecord {
                id: report.jti.clone(),
                reporter: target.clone(),
                customer_id: customer_id.clone(),
                received_at: now,
                over_use: !over.is_empty(),
                report_json,
            })
            .await?;
        if new && !over.is_empty() {
            self.notify_over_use(&cert.sub, &target, &over).await;
        }
        let key = cert
            .server_public_key()
            .map_err(ServiceError::BadDocument)?;
        let renewal = self.server_bundle(&report.server_hostid, &key, now).await?;
        Ok(UsageOutcome {
            recorded: new,
            over_use: over,
            renewal: Some(renewal),
        })
    }

    /// A usage report from an application (a node-locked device), signed with the device key it
    /// registered at activation. Metered units over a metered line's count are over-use. A device
    /// renews by activating again, so the answer carries no renewal.
    async fn device_usage_report(
        &self,
        text: &str,
        unverified: &UsageReportClaims,
        now: OffsetDateTime,
    ) -> Result<UsageOutcome, ServiceError> {
        let host = unverified.server_hostid.clone();
        let Some((bound, customer_id)) = self.store.server_binding(&host.to_string()).await? else {
            return Err(ServiceError::BadDocument(
                tessera_core::VerifyError::UnknownKeyId {
                    kid: format!(
                        "(no device key registered for {host}; activate with a device key first)"
                    ),
                },
            ));
        };
        let key = decode_any_key(&bound)?;
        let report: UsageReportClaims = tessera_core::document::verify(
            text,
            &tessera_core::Keyring::with(key),
            tessera_core::DocumentType::UsageReport,
            now,
        )
        .map_err(ServiceError::BadDocument)?
        .claims;
        if report.iat < now - Duration::days(90) || report.iat > now + Duration::days(1) {
            return Err(ServiceError::invalid(
                "iat",
                "the usage report was not made in the last 90 days; make a new one",
            ));
        }
        let target = format!("device:{host}");
        let mut metered: std::collections::BTreeMap<String, i64> = Default::default();
        for a in self.store.target_activations(&target).await? {
            if let Some(line) = self.store.get_line(&a.line_id).await? {
                let lp: LinePolicy = parse_json(&line.policy_json, "line policy")?;
                if !matches!(lp.model, LicenseModel::Metered) || !self.line_live(&line, now).await?
                {
                    continue;
                }
                let (_, spec) = self.product(&line.product_id).await?;
                let names: Vec<String> = if lp.features.is_empty() {
                    spec.features.iter().map(|f| f.name.clone()).collect()
                } else {
                    lp.features.clone()
                };
                for n in names {
                    *metered.entry(n).or_insert(0) += i64::from(lp.count);
                }
            }
        }
        let over: Vec<OverUse> = report
            .features
            .iter()
            .filter_map(|f| {
                let have = *metered.get(&f.name)?;
                (i64::try_from(f.metered_units).unwrap_or(i64::MAX) > have).then(|| OverUse {
                    feature: f.name.clone(),
                    peak: u32::try_from(f.metered_units).unwrap_or(u32::MAX),
                    licensed: have,
                    overdraft_peak: 0,
                })
            })
            .collect();
        let new = self
            .store
            .record_usage(tessera_store::backoffice::UsageRecord {
                id: report.jti.clone(),
                reporter: target.clone(),
                customer_id: Some(customer_id.clone()),
                received_at: now,
                over_use: !over.is_empty(),
                report_json: serde_json::to_string(&report).map_err(sign_err)?,
            })
            .await?;
        if new && !over.is_empty() {
            let name = self
                .customer(&customer_id)
                .await
                .map(|c| c.name)
                .unwrap_or(customer_id);
            self.notify_over_use(&name, &target, &over).await;
        }
        Ok(UsageOutcome {
            recorded: new,
            over_use: over,
            renewal: None,
        })
    }

    /// Every producer public key not retired: documents signed before a key rotation still verify.
    async fn producer_keyring(&self) -> Result<tessera_core::Keyring, ServiceError> {
        let mut ring = tessera_core::Keyring::with(self.keys.signing.public());
        for k in self.store.list_public_keys().await? {
            if k.retired_at.is_none() {
                if let Ok(pk) = tessera_core::PublicKey::from_spki_pem(&k.public_pem) {
                    ring.add(pk);
                }
            }
        }
        Ok(ring)
    }

    /// Tells the producer about use over an entitlement, by mail and webhook, as configured.
    /// A failure to queue is logged, never returned: the report is already recorded.
    async fn notify_over_use(&self, customer: &str, server: &str, over: &[OverUse]) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        let lines: Vec<String> = over
            .iter()
            .map(|o| {
                format!(
                    "  {}: peak {} with {} licensed (overdraft peak {})",
                    o.feature, o.peak, o.licensed, o.overdraft_peak
                )
            })
            .collect();
        if let Some(to) = &self.notify_email {
            if outbox.mail_configured() {
                let body = format!(
                    "The license server {server} of {customer} reported use over its entitlement:\n\n{}\n",
                    lines.join("\n")
                );
                if let Err(e) = outbox
                    .queue_mail(to, &format!("Over-use: {customer}"), &body, self.now())
                    .await
                {
                    tracing::warn!(error = %e, "could not queue the over-use mail");
                }
            }
        }
        let event = serde_json::json!({
            "event": "usage.over_entitlement",
            "customer": customer,
            "server": server,
            "features": over,
        });
        if let Err(e) = outbox.queue_webhook(&event, self.now()).await {
            tracing::warn!(error = %e, "could not queue the over-use webhook");
        }
    }

    /// Usage reports, newest first.
    pub async fn list_usage(&self, page: Page) -> Result<Vec<UsageView>, ServiceError> {
        let mut out = Vec::new();
        for r in self.store.list_usage(None, page).await? {
            out.push(UsageView {
                id: r.id,
                reporter: r.reporter,
                customer_id: r.customer_id,
                received_at: r.received_at.unix_timestamp(),
                over_use: r.over_use,
                report: serde_json::from_str(&r.report_json).unwrap_or(serde_json::Value::Null),
            });
        }
        Ok(out)
    }
}

/// An Ed25519 public key given as base64url of its 32 bytes or as SPKI PEM.
fn decode_any_key(text: &str) -> Result<tessera_core::PublicKey, ServiceError> {
    if text.trim_start().starts_with("-----BEGIN") {
        tessera_core::PublicKey::from_spki_pem(text)
            .map_err(|e| ServiceError::invalid("key", e.to_string()))
    } else {
        tessera_core::offline::decode_key(text, "key")
            .map_err(|e| ServiceError::invalid("key", e.to_string()))
    }
}

/// How much of a line activations may hold: its count, or no limit when uncounted.
fn capacity(p: &LinePolicy) -> i64 {
    if matches!(p.model, LicenseModel::Uncounted) {
        i64::MAX / 2
    } else {
        i64::from(p.count)
    }
}

fn strictest(acc: Option<LicensePolicy>, p: &LicensePolicy) -> LicensePolicy {
    match acc {
        None => p.clone(),
        Some(a) => LicensePolicy {
            grace_days: a.grace_days.min(p.grace_days),
            renewal_days: a.renewal_days.min(p.renewal_days),
            offline_max_days: a.offline_max_days.min(p.offline_max_days),
            offline_refresh_days: a.offline_refresh_days.min(p.offline_refresh_days),
            offline_max_active: a.offline_max_active.min(p.offline_max_active),
            server_locks: {
                let mut locks = a.server_locks.clone();
                for (name, v) in &p.server_locks {
                    let merged = match locks.get(name) {
                        Some(old) => tessera_core::license::ServerLock::strictest(*old, *v),
                        None => *v,
                    };
                    locks.insert(name.clone(), merged);
                }
                locks
            },
        },
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn customer_view(r: CustomerRecord) -> CustomerView {
    CustomerView {
        id: r.id,
        name: r.name,
        email: r.email,
        grace_extra_days: r.grace_extra_days,
    }
}

/// Refuses control characters and over-long text in a field (see [`crate::model::check_text`]).
pub(crate) fn text_field(field: &str, text: &str, max: usize) -> Result<(), ServiceError> {
    crate::model::check_text(text, max).map_err(|e| ServiceError::invalid(field, e))
}

/// When a demo of `days` days issued at `now` ends; a length the calendar cannot hold is refused.
fn demo_expiry(now: OffsetDateTime, days: u32) -> Result<OffsetDateTime, ServiceError> {
    let max = crate::model::MAX_DAYS;
    if days > max {
        return Err(ServiceError::invalid(
            "demo_days",
            format!("this product's demo lasts {days} days, more than the {max} allowed: no demo can be issued until the product is defined again"),
        ));
    }
    now.checked_add(Duration::days(i64::from(days.max(1))))
        .ok_or_else(|| ServiceError::invalid("demo_days", "the demo would end after the year 9999"))
}

fn validate_policy(p: &LinePolicy, spec: &ProductSpec) -> Result<(), String> {
    if p.count == 0 && !matches!(p.model, LicenseModel::Uncounted) {
        return Err("count must be at least 1".into());
    }
    for f in &p.features {
        if spec.feature(f).is_none() {
            return Err(format!(
                "feature '{f}' is not one of the product's features"
            ));
        }
    }
    if let (Some(s), Some(e)) = (p.starts_at, p.expires_at) {
        if s >= e {
            return Err("starts_at must be before expires_at".into());
        }
    }
    if matches!(p.term_days, Some(d) if d == 0 || d > 36_500) {
        return Err("term_days must be between 1 and 36500".into());
    }
    if p.count > 1_000_000 {
        return Err("count must be at most 1000000".into());
    }
    if p.overdraft > 1_000_000 {
        return Err("overdraft must be at most 1000000".into());
    }
    let pol = &p.policy;
    if pol.offline_max_days == 0 || pol.offline_refresh_days > pol.offline_max_days {
        return Err(
            "offline policy: offline_max_days at least 1 and offline_refresh_days no more than it"
                .into(),
        );
    }
    if pol.renewal_days == 0 || pol.renewal_days > 3650 {
        return Err("renewal_days must be between 1 and 3650".into());
    }
    if pol.grace_days > 3650 || pol.offline_max_days > 3650 || pol.offline_max_active > 10_000 {
        return Err(
            "grace_days and offline_max_days at most 3650, offline_max_active at most 10000".into(),
        );
    }
    for (name, v) in &pol.server_locks {
        tessera_core::license::ServerLock::named(name)
            .and_then(|l| l.check(*v))
            .map_err(|e| format!("server_locks: {e}"))?;
    }
    Ok(())
}
