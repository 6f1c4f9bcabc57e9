//! The outbox: mail (unlock codes, demo keys, over-use notices) and webhook calls, delivered from
//! the database with retries, so nothing is lost while the mail server or the webhook receiver is
//! down.
//!
//! * [`Outbox::queue_mail`] and [`Outbox::queue_webhook`] check what they are given and write it
//!   to the store ([`OutboxStore`]); they never talk to the network.
//! * [`Outbox::deliver_due`] claims the messages that are due, sends each (SMTP with lettre,
//!   HTTP POST with reqwest), and records the outcome. A failure is retried after
//!   [`retry_delay`] (30 s, 1 min, 2 min, … at most 1 h); after [`MAX_ATTEMPTS`] failures the
//!   message is given up, with the last error kept.
//! * [`spawn_worker`] runs `deliver_due` every interval and at once when something is queued.
//!
//! Time comes in as an argument (`now`); only the worker reads a [`Clock`]. Delivery is at least
//! once: a worker that dies between sending and recording leaves the message to be sent again
//! when its claim lease ([`CLAIM_LEASE`]) ends. Mails carry a `Message-ID` made from the
//! message's id, and webhook calls an `X-Tessera-Delivery` header with it, so receivers can drop
//! a repeat. See `docs/mail-and-webhooks.md`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use sha2::Sha256;
use tessera_core::Clock;
use tessera_store::{NewOutboxMessage, OutboxKind, OutboxMessage, OutboxStore, StoreError};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How often [`spawn_worker`]'s loop looks for due messages when nothing wakes it earlier.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// The wait after the first failed attempt; it doubles with each further failure.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);

/// Failed attempts after which a message is given up.
pub const MAX_ATTEMPTS: i64 = 20;

/// The time limit of one webhook call (connecting, sending, and the answer).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The time limit for connecting to the SMTP server (lettre's asynchronous transport applies its
/// timeout to connecting only; [`SEND_TIMEOUT`] bounds the whole conversation).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The time limit of one whole delivery, whatever the protocol: a server that stops answering
/// half-way is a failed attempt after this long.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How many messages one claim takes.
pub const BATCH_SIZE: u32 = 10;

/// How long claimed messages are reserved for this worker: longer than a whole batch can take
/// ([`BATCH_SIZE`] × [`SEND_TIMEOUT`]), so no other worker sends them meanwhile.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// The header that carries the webhook body's signature: `sha256=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Tessera-Signature";

/// The header that carries the outbox message id of a webhook call (the same on every retry).
pub const DELIVERY_HEADER: &str = "X-Tessera-Delivery";

/// The header that carries the event name of a webhook call (the body's `event` field).
pub const EVENT_HEADER: &str = "X-Tessera-Event";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MailTls {
    /// Plain text (`tls = "none"`): only for a relay on the same machine or a test server.
    None,
    /// Connect in plain text, then upgrade with STARTTLS, which must succeed
    /// (`tls = "starttls"`, usually port 587). The default.
    #[default]
    StartTls,
    /// TLS from the first byte (`tls = "tls"`, "SMTPS", usually port 465).
    Tls,
}

/// The `[mail]` section of the back-office configuration: the SMTP server that sends mail.
///
/// Unknown keys are an error. The password is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The SMTP server's port (587 for STARTTLS, 465 for TLS, 25 for a local relay).
    pub port: u16,
    /// How the connection is protected; `starttls` when not given.
    #[serde(default)]
    pub tls: MailTls,
    /// The user name to log in with, if the server wants one (then `password` too).
    #[serde(default)]
    pub username: Option<String>,
    /// The password to log in with.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, e.g. `Acme Licensing <licensing@acme.example>`.
    pub from: String,
}

impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

/// The `[webhook]` section of the back-office configuration: where events are POSTed.
///
/// Unknown keys are an error. The secret is never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The `http://` or `https://` URL that receives the events.
    pub url: String,
    /// When set, each call carries [`SIGNATURE_HEADER`]: the HMAC-SHA256 of the body with this
    /// secret as key.
    #[serde(default)]
    pub secret: Option<String>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and reports
// ---------------------------------------------------------------------------------------------

/// What can go wrong when setting up the outbox, queueing a message or using the store.
///
/// Delivery failures are not errors of [`Outbox::deliver_due`]: they are recorded on the message
/// (`last_error`) and retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The recipient is not an e-mail address. Nothing was queued.
    #[error("{address:?} is not a valid e-mail address: {reason}")]
    InvalidAddress {
        /// What was given.
        address: String,
        /// Why it was refused.
        reason: String,
    },

    /// The subject contains a line break. Nothing was queued.
    #[error("the mail subject must be a single line (it contains a line break)")]
    InvalidSubject,

    /// The message could not be composed. Nothing was queued.
    #[error("cannot compose the mail: {detail}")]
    InvalidMessage {
        /// Why the message could not be composed.
        detail: String,
    },

    /// A mail was queued, but the back office has no `[mail]` configuration.
    #[error(
        "mail is not configured: add a [mail] section (host, port, from) to the configuration"
    )]
    MailNotConfigured,

    /// The `[mail]` configuration cannot be used.
    #[error("invalid [mail] configuration: {detail}")]
    InvalidMailConfig {
        /// What is wrong (never the password).
        detail: String,
    },

    /// The `[webhook]` configuration cannot be used.
    #[error("invalid [webhook] configuration: {detail}")]
    InvalidWebhookConfig {
        /// What is wrong (never the secret).
        detail: String,
    },

    /// A webhook event is not a JSON object with a string `event` field. Nothing was queued.
    #[error("a webhook event must be a JSON object with a string \"event\" field naming it")]
    InvalidWebhookEvent,

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one [`Outbox::deliver_due`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages delivered.
    pub sent: usize,
    /// Messages whose attempt failed and that were rescheduled.
    pub retried: usize,
    /// Messages whose attempt failed for the last time ([`MAX_ATTEMPTS`]).
    pub given_up: usize,
}

impl DeliveryReport {
    /// Whether nothing was due.
    pub fn is_empty(&self) -> bool {
        self.sent == 0 && self.retried == 0 && self.given_up == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Retry schedule and signature
// ---------------------------------------------------------------------------------------------

/// The wait after the `failed_attempts`-th failed attempt: [`FIRST_RETRY_DELAY`] after the
/// first, doubling each time, at most [`MAX_RETRY_DELAY`] (30 s, 1 min, 2 min, 4 min, 8 min,
/// 16 min, 32 min, then 1 h).
pub fn retry_delay(failed_attempts: i64) -> Duration {
    let doublings = u32::try_from(failed_attempts.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    FIRST_RETRY_DELAY
        .saturating_mul(2_u32.saturating_pow(doublings))
        .min(MAX_RETRY_DELAY)
}

/// When to try again after the `failed_attempts`-th failure at `now`, or `None` when that was the
/// last attempt ([`MAX_ATTEMPTS`]).
pub fn next_attempt_at(now: OffsetDateTime, failed_attempts: i64) -> Option<OffsetDateTime> {
    if failed_attempts >= MAX_ATTEMPTS {
        return None;
    }
    let delay = i64::try_from(retry_delay(failed_attempts).as_secs()).unwrap_or(i64::MAX);
    Some(now.saturating_add(time::Duration::seconds(delay)))
}

/// The value of [`SIGNATURE_HEADER`] for a webhook body: `sha256=` and the lower-case hex
/// HMAC-SHA256 (RFC 2104) of `body` keyed with `secret`.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length: a longer one than a block is hashed first
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------------------------
// The outbox
// ---------------------------------------------------------------------------------------------

/// The SMTP side: a transport (no connection is held between deliveries) and the sender.
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The webhook side.
struct Webhook {
    url: reqwest::Url,
    secret: Option<String>,
    client: reqwest::Client,
}

/// Queues mail and webhook calls in the store and delivers them. Share it in an [`Arc`] between
/// the request handlers and [`spawn_worker`].
pub struct Outbox<S> {
    store: S,
    mailer: Option<Mailer>,
    webhook: Option<Webhook>,
    wake: Notify,
}

impl<S> fmt::Debug for Outbox<S> {
    /// Shows what is configured, never a password, secret or webhook URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("mail", &self.mailer.as_ref().map(|m| m.from.to_string()))
            .field("webhook", &self.webhook.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: OutboxStore> Outbox<S> {
    /// An outbox over `store` that sends mail as `mail` says (none: [`Outbox::queue_mail`] is
    /// [`OutboxError::MailNotConfigured`]) and webhook calls to `webhook` (none:
    /// [`Outbox::queue_webhook`] does nothing).
    ///
    /// Checks the configuration (the sender address, the webhook URL, user name and password
    /// together) but connects to nothing.
    pub fn new(
        store: S,
        mail: Option<MailConfig>,
        webhook: Option<WebhookConfig>,
    ) -> Result<Self, OutboxError> {
        Ok(Outbox {
            store,
            mailer: mail.map(mailer).transpose()?,
            webhook: webhook.map(webhook_client).transpose()?,
            wake: Notify::new(),
        })
    }

    /// The store the messages are kept in.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Whether mail can be queued.
    pub fn mail_configured(&self) -> bool {
        self.mailer.is_some()
    }

    /// Whether webhook calls are queued.
    pub fn webhook_configured(&self) -> bool {
        self.webhook.is_some()
    }

    /// Queues a plain-text mail to `to` (a bare address, `name@example.com`) and wakes the
    /// worker. Returns the message id.
    ///
    /// The address and the subject are checked and the mail is composed now, so a mail that
    /// could never be sent is refused here rather than failing twenty times later.
    pub async fn queue_mail(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<i64, OutboxError> {
        self.queue_mail_with_secret(to, subject, body, None, now)
            .await
    }

    /// Queues a mail that carries a secret (an activation key, an unlock code): as
    /// [`Outbox::queue_mail`], and once it is delivered its body is replaced by `redacted_body`
    /// (the same text without the secret), so the outbox does not keep the secret in clear.
    /// Until then (pending, retried, or given up) the body is kept: it is what is sent.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn queue_mail_with_secret(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        redacted_body: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<i64, OutboxError> {
        let Some(mailer) = &self.mailer else {
            return Err(OutboxError::MailNotConfigured);
        };
        let address = parse_address(to)?;
        if subject.contains(['\r', '\n']) {
            return Err(OutboxError::InvalidSubject);
        }
        let message = NewOutboxMessage {
            kind: OutboxKind::Mail,
            recipient: address.to_string(),
            subject: subject.to_owned(),
            body: body.to_owned(),
            redacted_body: redacted_body.map(str::to_owned),
            created_at: now,
        };
        compose(&mailer.from, 0, &message.recipient, subject, body, now)
            .map_err(|detail| OutboxError::InvalidMessage { detail })?;
        let id = self.store.enqueue_message(message).await?;
        tracing::debug!(id, "mail queued");
        self.wake.notify_one();
        Ok(id)
    }

    /// Queues a webhook call carrying `event` (a JSON object whose string field `event` names
    /// it, e.g. `{"event": "license.issued", …}`) and wakes the worker. Returns the message id,
    /// or `None` when no webhook is configured (then nothing is queued).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn queue_webhook(
        &self,
        event: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, OutboxError> {
        let Some(webhook) = &self.webhook else {
            return Ok(None);
        };
        // `get` finds nothing in a value that is not an object.
        let name = match event.get("event").and_then(serde_json::Value::as_str) {
            Some(name) if !name.is_empty() && !name.contains(['\r', '\n']) => name,
            _ => return Err(OutboxError::InvalidWebhookEvent),
        };
        let id = self
            .store
            .enqueue_message(NewOutboxMessage {
                kind: OutboxKind::Webhook,
                recipient: webhook.url.to_string(),
                subject: name.to_owned(),
                body: event.to_string(),
                redacted_body: None,
                created_at: now,
            })
            .await?;
        tracing::debug!(id, event = name, "webhook call queued");
        self.wake.notify_one();
        Ok(Some(id))
    }

    /// Delivers every message due at `now`: claims them in batches of [`BATCH_SIZE`], sends
    /// each, and records it as sent, or failed and rescheduled ([`next_attempt_at`]), or given
    /// up. Delivery failures are counted in the report, not returned; only a store failure is an
    /// error (the messages it leaves claimed are due again after [`CLAIM_LEASE`]).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn deliver_due(&self, now: OffsetDateTime) -> Result<DeliveryReport, OutboxError> {
        let mut report = DeliveryReport::default();
        loop {
            let batch = self
                .store
                .claim_due_messages(now, BATCH_SIZE, CLAIM_LEASE)
                .await?;
            let full = batch.len() >= BATCH_SIZE as usize;
            for message in batch {
                let outcome = tokio::time::timeout(SEND_TIMEOUT, self.send(&message))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "no delivery within {} seconds",
                            SEND_TIMEOUT.as_secs()
                        ))
                    });
                self.record(&message, outcome, now, &mut report).await?;
            }
            if !full {
                break;
            }
        }
        if !report.is_empty() {
            tracing::info!(
                sent = report.sent,
                retried = report.retried,
                given_up = report.given_up,
                "outbox delivery run"
            );
        }
        Ok(report)
    }

    /// Records the outcome of one attempt.
    async fn record(
        &self,
        message: &OutboxMessage,
        outcome: Result<(), String>,
        now: OffsetDateTime,
        report: &mut DeliveryReport,
    ) -> Result<(), OutboxError> {
        let id = message.id;
        let kind = message.kind.as_str();
        match outcome {
            Ok(()) => {
                self.store.mark_sent(id, now).await?;
                report.sent += 1;
                tracing::info!(id, kind, "outbox message delivered");
            }
            Err(error) => {
                let attempts = message.attempts.saturating_add(1);
                let next = next_attempt_at(now, attempts);
                self.store.mark_failed(id, now, &error, next).await?;
                match next {
                    Some(next) => {
                        report.retried += 1;
                        tracing::warn!(
                            id,
                            kind,
                            attempts,
                            %error,
                            retry_in_secs = (next - now).whole_seconds(),
                            "outbox delivery failed; will retry"
                        );
                    }
                    None => {
                        report.given_up += 1;
                        tracing::error!(
                            id,
                            kind,
                            attempts,
                            %error,
                            "outbox delivery failed for the last time; message given up"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// One delivery attempt. The error is the text to keep as `last_error`.
    async fn send(&self, message: &OutboxMessage) -> Result<(), String> {
        match message.kind {
            OutboxKind::Mail => {
                let Some(mailer) = &self.mailer else {
                    return Err("mail is not configured (no [mail] section)".to_owned());
                };
                let mail = compose(
                    &mailer.from,
                    message.id,
                    &message.recipient,
                    &message.subject,
                    &message.body,
                    message.created_at,
                )?;
                mailer
                    .transport
                    .send(mail)
                    .await
                    .map(|_| ())
                    .map_err(|e| error_chain(&e))
            }
            OutboxKind::Webhook => {
                let Some(webhook) = &self.webhook else {
                    return Err("no webhook is configured (no [webhook] section)".to_owned());
                };
                post_webhook(webhook, message).await
            }
        }
    }
}

/// Builds the SMTP side from its configuration.
fn mailer(config: MailConfig) -> Result<Mailer, OutboxError> {
    let invalid = |detail: String| OutboxError::InvalidMailConfig { detail };
    if config.host.trim().is_empty() {
        return Err(invalid("host is empty".to_owned()));
    }
    let from: Mailbox = config.from.parse().map_err(|e| {
        invalid(format!(
            "from = {:?} is not a mailbox like \"Acme Licensing <licensing@acme.example>\": {e}",
            config.from
        ))
    })?;
    let builder = match config.tls {
        MailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        MailTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
            .map_err(|e| invalid(format!("STARTTLS to {}: {}", config.host, error_chain(&e))))?,
        MailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
            .map_err(|e| invalid(format!("TLS to {}: {}", config.host, error_chain(&e))))?,
    };
    let builder = builder.port(config.port).timeout(Some(SMTP_TIMEOUT));
    let builder = match (config.username, config.password) {
        (Some(user), Some(password)) => builder.credentials(Credentials::new(user, password)),
        (None, None) => builder,
        (Some(_), None) => return Err(invalid("username is set but password is not".to_owned())),
        (None, Some(_)) => return Err(invalid("password is set but username is not".to_owned())),
    };
    if config.tls == MailTls::None {
        tracing::warn!(
            host = %config.host,
            "mail is sent without TLS (tls = \"none\"): use it only for a relay on this machine"
        );
    }
    Ok(Mailer {
        transport: builder.build(),
        from,
    })
}

/// Builds the webhook side from its configuration.
fn webhook_client(config: WebhookConfig) -> Result<Webhook, OutboxError> {
    let invalid = |detail: String| OutboxError::InvalidWebhookConfig { detail };
    // The URL itself is not repeated in errors: it may carry a token.
    let url = reqwest::Url::parse(&config.url)
        .map_err(|e| invalid(format!("url is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "url must be an http:// or https:// URL with a host".to_owned(),
        ));
    }
    if config.secret.as_deref() == Some("") {
        return Err(invalid(
            "secret is empty: set one, or remove the key to send unsigned calls".to_owned(),
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        // A redirect is a failure: the signed body is not sent anywhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tessera-backoffice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            invalid(format!(
                "cannot create the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
    Ok(Webhook {
        url,
        secret: config.secret,
        client,
    })
}

/// Parses a bare e-mail address (surrounding white space is ignored).
fn parse_address(to: &str) -> Result<Address, OutboxError> {
    to.trim()
        .parse::<Address>()
        .map_err(|e| OutboxError::InvalidAddress {
            address: to.to_owned(),
            reason: e.to_string(),
        })
}

/// The mail for an outbox message. The `Date` is when it was queued and the `Message-ID` is made
/// from the outbox id, so a retried mail is the same mail.
///
/// The body goes as `7bit` when it can, else as `quoted-printable` (both keep its lines as they
/// are). One final line break is left off: the SMTP transport always ends the data with one, and
/// would otherwise add an empty line.
fn compose(
    from: &Mailbox,
    id: i64,
    to: &str,
    subject: &str,
    body: &str,
    created_at: OffsetDateTime,
) -> Result<Message, String> {
    let to: Address = to
        .parse()
        .map_err(|e| format!("the recipient is not a valid address: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(subject)
        .date(SystemTime::from(created_at))
        .message_id(Some(format!(
            "<tessera-outbox-{id}-{}@{}>",
            created_at.unix_timestamp(),
            from.email.domain()
        )))
        .header(ContentType::TEXT_PLAIN)
        .body(encode_body(body)?)
        .map_err(|e| e.to_string())
}

fn encode_body(body: &str) -> Result<Body, String> {
    let text = match body.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => body,
    };
    Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::SevenBit)
        .or_else(|_| {
            Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::QuotedPrintable)
        })
        .map_err(|_| "the body cannot be encoded".to_owned())
}

/// POSTs a webhook message: its JSON body, signed when a secret is set. Any answer but 2xx is a
/// failure.
async fn post_webhook(webhook: &Webhook, message: &OutboxMessage) -> Result<(), String> {
    let url = reqwest::Url::parse(&message.recipient)
        .map_err(|e| format!("the stored webhook URL is not valid: {e}"))?;
    let mut request = webhook
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, message.subject.as_str())
        .header(DELIVERY_HEADER, message.id.to_string());
    if let Some(secret) = &webhook.secret {
        request = request.header(
            SIGNATURE_HEADER,
            webhook_signature(secret.as_bytes(), message.body.as_bytes()),
        );
    }
    let response = request
        .body(message.body.clone())
        .send()
        .await
        .map_err(|e| error_chain(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook receiver answered HTTP {status}"))
    }
}

/// An error and its sources as one line, without repeating a source its parent already shows.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------------

/// Starts the delivery loop: [`Outbox::deliver_due`] at `clock.now()` right away, then every
/// `interval` (at least one second; [`DEFAULT_INTERVAL`] is the usual) and as soon as
/// [`Outbox::queue_mail`] or [`Outbox::queue_webhook`] queues something.
///
/// The loop ends when `shutdown` becomes `true` or its sender is dropped; a delivery run in
/// progress is finished first (at most [`BATCH_SIZE`] × [`SEND_TIMEOUT`]). A store failure is
/// logged and retried at the next wake-up.
pub fn spawn_worker<S>(
    outbox: Arc<Outbox<S>>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    S: OutboxStore + Send + Sync + 'static,
{
    let interval = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        tracing::info!(interval_secs = interval.as_secs(), "outbox worker started");
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            if let Err(e) = outbox.deliver_due(clock.now()).await {
                tracing::warn!(error = %e, "outbox delivery run failed; will try again");
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = outbox.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!("outbox worker stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use hex::encode as hex;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1, 2 and 6 of RFC 4231 (a short key, a text key, a key longer than a block).
        assert_eq!(
            hex(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // A key of exactly one block is used as it is (Python's hmac module agrees).
        assert_eq!(
            hex(hmac_sha256(&[0xaa; 64], b"exactly one block")),
            "5b87dae58ee4b7b43b98ee08d3d044b8762c3ea166aff96a2b2298de9f34a8ea"
        );
        assert_eq!(
            webhook_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_schedule_doubles_up_to_an_hour() {
        let secs: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
        );
        assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(i64::MAX), MAX_RETRY_DELAY);
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(
            next_attempt_at(now, 1),
            Some(now + time::Duration::seconds(30))
        );
        assert_eq!(
            next_attempt_at(now, MAX_ATTEMPTS - 1),
            Some(now + time::Duration::hours(1))
        );
        assert_eq!(next_attempt_at(now, MAX_ATTEMPTS), None);
    }

    #[test]
    fn mail_config_reads_and_refuses_unknown_keys() {
        let config: MailConfig = serde_json::from_value(serde_json::json!({
            "host": "smtp.example.test",
            "port": 587,
            "username": "licensing",
            "password": "hunter2",
            "from": "Acme Licensing <licensing@acme.example>",
        }))
        .unwrap();
        assert_eq!(config.tls, MailTls::StartTls, "STARTTLS unless told");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );

        for (tls, expected) in [
            ("none", MailTls::None),
            ("starttls", MailTls::StartTls),
            ("tls", MailTls::Tls),
        ] {
            let config: MailConfig = serde_json::from_value(serde_json::json!({
                "host": "h", "port": 25, "tls": tls, "from": "a@b.example",
            }))
            .unwrap();
            assert_eq!(config.tls, expected);
        }

        let typo = serde_json::from_value::<MailConfig>(serde_json::json!({
            "host": "h", "port": 25, "from": "a@b.example", "pasword": "x",
        }))
        .unwrap_err();
        assert!(typo.to_string().contains("pasword"), "{typo}");
        assert!(serde_json::from_value::<MailConfig>(serde_json::json!({
            "host": "h", "port": 25, "from": "a@b.example", "tls": "ssl",
        }))
        .is_err());

        let hook: WebhookConfig = serde_json::from_value(serde_json::json!({
            "url": "https://hooks.example.test/x", "secret": "whsec-1",
        }))
        .unwrap();
        assert!(!format!("{hook:?}").contains("whsec-1"));
        assert!(serde_json::from_value::<WebhookConfig>(serde_json::json!({
            "url": "https://hooks.example.test/x", "sekret": "whsec-1",
        }))
        .is_err());
    }

    #[test]
    fn errors_chain_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(error_chain(&io), "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(io)), "outer: connection refused");
    }
}
