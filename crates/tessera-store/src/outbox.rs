//! [`OutboxStore`]: mail and webhook calls waiting to go out, kept until they are delivered.
//!
//! The back office writes a message here in the same breath as the change it reports on, and a
//! delivery worker sends it later, retrying with back-off while the mail server or the webhook
//! receiver is down. Nothing is lost in between: a message leaves the outbox only as *sent* or
//! *given up* (after the caller's last attempt), and both stay listed.
//!
//! A message is **pending** while it is neither sent nor given up, and **due** once its
//! `next_attempt_at` is not after now. [`OutboxStore::claim_due_messages`] hands due messages to
//! one caller at a time: claiming moves `next_attempt_at` forward by a lease, in the same
//! statement that picks them, so two workers (or two back-office replicas over one PostgreSQL
//! database) never get the same message while the lease runs. A worker that dies mid-send leaves
//! the message to be claimed again when the lease ends: delivery is at least once.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::codec::{opt_time, opt_unix, time, unix};
use crate::{dispatch, AnyStore, Page, PgStore, SqliteStore, StoreError};

/// What kind of delivery a message is.
///
/// Not `#[non_exhaustive]` on purpose: a new kind must break every `match` in the code that
/// delivers messages, so none is left without a way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// An e-mail: the recipient is an address, the body plain text.
    Mail,
    /// An HTTP POST: the recipient is a URL, the body JSON (the subject names the event).
    Webhook,
}

impl OutboxKind {
    /// The stored name: `mail` or `webhook`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Mail => "mail",
            OutboxKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an [`OutboxKind`] from text that is neither `mail` nor `webhook`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox message kind {0:?} (expected \"mail\" or \"webhook\")")]
pub struct UnknownOutboxKind(pub String);

impl FromStr for OutboxKind {
    type Err = UnknownOutboxKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mail" => Ok(OutboxKind::Mail),
            "webhook" => Ok(OutboxKind::Webhook),
            other => Err(UnknownOutboxKind(other.to_owned())),
        }
    }
}

/// A message to put in the outbox. Times are kept to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    /// Mail or webhook.
    pub kind: OutboxKind,
    /// An e-mail address (mail) or a URL (webhook). The store does not check it.
    pub recipient: String,
    /// The mail's subject, or the webhook's event name.
    pub subject: String,
    /// The mail text, or the webhook's JSON body.
    pub body: String,
    /// For a message that carries a secret (an activation key, an unlock code): the body with the
    /// secret left out, which replaces `body` once the message is delivered, so the secret is not
    /// kept in clear. `None`: the body is kept as it is.
    pub redacted_body: Option<String>,
    /// When it was queued. It is due at once: its first `next_attempt_at` is this time.
    pub created_at: OffsetDateTime,
}

/// A message in the outbox, pending, sent or given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The id, increasing in the order messages were queued.
    pub id: i64,
    /// Mail or webhook.
    pub kind: OutboxKind,
    /// An e-mail address or a URL.
    pub recipient: String,
    /// The mail's subject, or the webhook's event name.
    pub subject: String,
    /// The mail text, or the webhook's JSON body.
    pub body: String,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// How many attempts failed so far (a successful one is not counted).
    pub attempts: i64,
    /// When it is due next (for a claimed message: when its lease ends).
    pub next_attempt_at: OffsetDateTime,
    /// When it was delivered, if it was.
    pub sent_at: Option<OffsetDateTime>,
    /// What went wrong the last time an attempt failed.
    pub last_error: Option<String>,
    /// When delivery was abandoned, if it was.
    pub given_up_at: Option<OffsetDateTime>,
}

impl OutboxMessage {
    /// Neither sent nor given up: it will be attempted (again) once due.
    pub fn is_pending(&self) -> bool {
        self.sent_at.is_none() && self.given_up_at.is_none()
    }
}

/// Which messages [`OutboxStore::list_messages`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutboxFilter {
    /// Neither sent nor given up (including those whose earlier attempts failed).
    Pending,
    /// Delivered: sent successfully once.
    Sent,
    /// Given up: not delivered and not to be attempted again.
    Failed,
    /// Every message.
    All,
}

/// The outbox of mail and webhook calls.
pub trait OutboxStore {
    /// Puts a message in the outbox, due at its `created_at`, and returns its id.
    fn enqueue_message(
        &self,
        message: NewOutboxMessage,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Claims up to `limit` due messages (pending, `next_attempt_at <= now`), the longest due
    /// first, and returns them in id order.
    ///
    /// Claiming sets their `next_attempt_at` to `now + lease` in the same statement that picks
    /// them, so concurrent callers, on this process or another one sharing the database, never
    /// get the same message until the lease has run out. Report the outcome of each with
    /// [`OutboxStore::mark_sent`] or [`OutboxStore::mark_failed`] before then; a message left
    /// without either (the worker died) is due again when the lease ends. The returned
    /// `next_attempt_at` is the end of the lease.
    fn claim_due_messages(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send;

    /// Records that the message was delivered at `at`, and replaces its body with its redacted
    /// body if it has one ([`NewOutboxMessage::redacted_body`]), in the same statement. A message
    /// already marked sent keeps its first time; an unknown id is [`StoreError::NotFound`].
    fn mark_sent(
        &self,
        id: i64,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a failed attempt at `at`: adds one to `attempts`, keeps `error` as `last_error`,
    /// and either schedules the next attempt at `next_attempt_at` or, when that is `None`, gives
    /// the message up (`given_up_at = at`).
    ///
    /// A message already sent or given up is left as it is (the report came from a worker whose
    /// lease had run out); an unknown id is [`StoreError::NotFound`].
    fn mark_failed(
        &self,
        id: i64,
        at: OffsetDateTime,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The message with this id, if there is one.
    fn get_message(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<OutboxMessage>, StoreError>> + Send;

    /// A page of the messages `filter` selects, newest first (by queue time, then id,
    /// descending).
    fn list_messages(
        &self,
        filter: OutboxFilter,
        page: Page,
    ) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send;

    /// How many messages are pending (neither sent nor given up), due or not.
    fn count_pending(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// The columns of a message, in the order `columns!` lists them.
type MessageRow = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// Every column, in `MessageRow` order.
macro_rules! columns {
    () => {
        "id, kind, recipient, subject, body, created_at, attempts, next_attempt_at, sent_at, \
         last_error, given_up_at"
    };
}

/// The condition for a pending message.
macro_rules! pending {
    () => {
        "sent_at IS NULL AND given_up_at IS NULL"
    };
}

/// A page of messages matching `$where`, newest first.
macro_rules! list {
    ($where:expr) => {
        concat!(
            "SELECT ",
            columns!(),
            " FROM outbox WHERE ",
            $where,
            " ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
        )
    };
}

const LIST_PENDING: &str = list!(pending!());
const LIST_SENT: &str = list!("sent_at IS NOT NULL");
const LIST_FAILED: &str = list!("given_up_at IS NOT NULL AND sent_at IS NULL");
const LIST_ALL: &str = list!("TRUE");

/// The claim: one `UPDATE` that picks due rows in a subquery and pushes them past the lease.
/// `$lock` is appended to the subquery: PostgreSQL needs `FOR UPDATE SKIP LOCKED` there, because
/// under READ COMMITTED two concurrent statements could otherwise both pick a row from their
/// snapshots and both update it; rows one claimer has locked are skipped by the other, and a row
/// whose lock was released is re-checked against the (now moved) `next_attempt_at`. SQLite has
/// no row locks and needs none: a writing statement holds the database's write lock from its
/// first step, so claims run one after another.
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET next_attempt_at = $2 WHERE id IN (SELECT id FROM outbox WHERE ",
            pending!(),
            " AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3",
            $lock,
            ") RETURNING ",
            columns!()
        )
    };
}

fn list_query(filter: OutboxFilter) -> &'static str {
    match filter {
        OutboxFilter::Pending => LIST_PENDING,
        OutboxFilter::Sent => LIST_SENT,
        OutboxFilter::Failed => LIST_FAILED,
        OutboxFilter::All => LIST_ALL,
    }
}

fn from_row(row: MessageRow) -> Result<OutboxMessage, StoreError> {
    let (
        id,
        kind,
        recipient,
        subject,
        body,
        created_at,
        attempts,
        next_attempt_at,
        sent_at,
        last_error,
        given_up_at,
    ) = row;
    let kind = kind
        .parse()
        .map_err(|e: UnknownOutboxKind| StoreError::corrupt(format!("outbox.kind: {e}")))?;
    Ok(OutboxMessage {
        id,
        kind,
        recipient,
        subject,
        body,
        created_at: time(created_at, "outbox.created_at")?,
        attempts,
        next_attempt_at: time(next_attempt_at, "outbox.next_attempt_at")?,
        sent_at: opt_time(sent_at, "outbox.sent_at")?,
        last_error,
        given_up_at: opt_time(given_up_at, "outbox.given_up_at")?,
    })
}

/// `now + lease`, saturating at the latest representable time rather than overflowing.
fn lease_end(now: OffsetDateTime, lease: std::time::Duration) -> OffsetDateTime {
    let lease = time::Duration::try_from(lease).unwrap_or(time::Duration::MAX);
    now.saturating_add(lease)
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: format!("outbox message {id}"),
    }
}

macro_rules! impl_outbox_store {
    ($store:ty, $name:literal, $claim_lock:literal) => {
        impl OutboxStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn enqueue_message(&self, message: NewOutboxMessage) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO outbox (kind, recipient, subject, body, created_at, attempts, \
                     next_attempt_at, redacted_body) VALUES ($1, $2, $3, $4, $5, 0, $5, $6) \
                     RETURNING id",
                )
                .bind(message.kind.as_str())
                .bind(&message.recipient)
                .bind(&message.subject)
                .bind(&message.body)
                .bind(unix(message.created_at))
                .bind(message.redacted_body.as_deref())
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn claim_due_messages(
                &self,
                now: OffsetDateTime,
                limit: u32,
                lease: std::time::Duration,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<MessageRow> = sqlx::query_as(claim!($claim_lock))
                    .bind(unix(now))
                    .bind(unix(lease_end(now, lease)))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let mut messages = rows
                    .into_iter()
                    .map(from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                messages.sort_by_key(|m| m.id);
                Ok(messages)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn mark_sent(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
                let changed =
                    sqlx::query(
                        "UPDATE outbox SET sent_at = $2, body = COALESCE(redacted_body, body), \
                         redacted_body = NULL WHERE id = $1 AND sent_at IS NULL",
                    )
                        .bind(id)
                        .bind(unix(at))
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                if changed == 0 && !self.outbox_message_exists(id).await? {
                    return Err(not_found(id));
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn mark_failed(
                &self,
                id: i64,
                at: OffsetDateTime,
                error: &str,
                next_attempt_at: Option<OffsetDateTime>,
            ) -> Result<(), StoreError> {
                let changed = sqlx::query(concat!(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = COALESCE($3, next_attempt_at), \
                     given_up_at = CASE WHEN $3 IS NULL THEN $4 ELSE NULL END \
                     WHERE id = $1 AND ",
                    pending!()
                ))
                .bind(id)
                .bind(error)
                .bind(opt_unix(next_attempt_at))
                .bind(unix(at))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if changed == 0 && !self.outbox_message_exists(id).await? {
                    return Err(not_found(id));
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn get_message(&self, id: i64) -> Result<Option<OutboxMessage>, StoreError> {
                let row: Option<MessageRow> =
                    sqlx::query_as(concat!("SELECT ", columns!(), " FROM outbox WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(from_row).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn list_messages(
                &self,
                filter: OutboxFilter,
                page: Page,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows: Vec<MessageRow> = sqlx::query_as(list_query(filter))
                    .bind(page.limit.max(0))
                    .bind(page.offset.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(from_row).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(backend = $name))]
            async fn count_pending(&self) -> Result<i64, StoreError> {
                let (count,): (i64,) =
                    sqlx::query_as(concat!("SELECT COUNT(*) FROM outbox WHERE ", pending!()))
                        .fetch_one(&self.pool)
                        .await?;
                Ok(count)
            }
        }

        impl $store {
            /// Whether a message with this id exists (to tell "unknown" from "already done").
            async fn outbox_message_exists(&self, id: i64) -> Result<bool, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }
        }
    };
}

impl_outbox_store!(SqliteStore, "sqlite", "");
impl_outbox_store!(PgStore, "postgres", " FOR UPDATE SKIP LOCKED");

impl OutboxStore for AnyStore {
    async fn enqueue_message(&self, message: NewOutboxMessage) -> Result<i64, StoreError> {
        dispatch!(self, s => s.enqueue_message(message).await)
    }

    async fn claim_due_messages(
        &self,
        now: OffsetDateTime,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        dispatch!(self, s => s.claim_due_messages(now, limit, lease).await)
    }

    async fn mark_sent(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.mark_sent(id, at).await)
    }

    async fn mark_failed(
        &self,
        id: i64,
        at: OffsetDateTime,
        error: &str,
        next_attempt_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.mark_failed(id, at, error, next_attempt_at).await)
    }

    async fn get_message(&self, id: i64) -> Result<Option<OutboxMessage>, StoreError> {
        dispatch!(self, s => s.get_message(id).await)
    }

    async fn list_messages(
        &self,
        filter: OutboxFilter,
        page: Page,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        dispatch!(self, s => s.list_messages(filter, page).await)
    }

    async fn count_pending(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.count_pending().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in [OutboxKind::Mail, OutboxKind::Webhook] {
            assert_eq!(kind.as_str().parse::<OutboxKind>(), Ok(kind));
        }
        assert!("Mail".parse::<OutboxKind>().is_err());
    }

    #[test]
    fn claim_sql_differs_only_in_the_lock() {
        assert!(claim!("").contains("LIMIT $3) RETURNING id, kind"));
        assert!(claim!(" FOR UPDATE SKIP LOCKED").contains("LIMIT $3 FOR UPDATE SKIP LOCKED)"));
    }

    #[test]
    fn a_huge_lease_saturates() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let end = lease_end(now, std::time::Duration::MAX);
        assert!(end > now);
        assert_eq!(
            lease_end(now, std::time::Duration::from_secs(60)),
            now + time::Duration::minutes(1)
        );
    }
}
