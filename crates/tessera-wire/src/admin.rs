//! The license server's admin API (`/api/v1/admin/…`, with the admin token): its status, online
//! and offline activation, a sync with the back office, and the denials and overdraft use recorded.
//! The `tessera server` commands send and read these.

use serde::{Deserialize, Serialize};

/// A key and a count: the one type every activation takes (the core's, re-exported).
pub use crate::activation::KeyCount;

/// One feature record's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureState {
    /// The feature's name.
    pub name: String,
    /// The version the record grants; it serves requests for this version and below.
    pub version: String,
    /// Count, or null when uncounted.
    pub count: Option<u32>,
    /// Overdraft allowance.
    pub overdraft: u32,
    /// Seats in use.
    pub used: u64,
    /// Metered units consumed.
    pub consumed: u64,
    /// Expiry (`permanent` or a date).
    pub expiry: String,
    /// Activation (entitlement line) it came from.
    pub activation_id: Option<String>,
}

/// The server's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// This server's host id.
    pub hostid: String,
    /// Whether a license bundle is installed.
    pub activated: bool,
    /// Feature records and their use.
    pub features: Vec<FeatureState>,
    /// Leases held.
    pub leases: usize,
    /// The back office this server was last activated at online (where a sync goes); absent
    /// before the first online activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoffice_url: Option<String>,
    /// The server's time now (RFC 3339), which the times below are measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<String>,
    /// When the installed license bundle was issued (RFC 3339); none without a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_issued: Option<String>,
    /// When the installed license bundle expires (RFC 3339); none without a bundle or when it
    /// never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_expires: Option<String>,
    /// Whether the server was activated online (it knows its back office and syncs daily).
    #[serde(default)]
    pub online: bool,
    /// When the back office last answered an activation or a sync (RFC 3339); none if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
}

/// Activation keys to activate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The back office URL.
    pub backoffice: String,
    /// Keys and counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::activation::KeyCountDoc>))]
    pub activations: Vec<KeyCount>,
}

/// Keys and counts for an offline request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfflineRequestBody {
    /// Keys and counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::activation::KeyCountDoc>))]
    pub activations: Vec<KeyCount>,
}

/// The number of feature records served after an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureRecords {
    /// Feature records now served.
    pub feature_records: u64,
}

/// What a sync found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncOutcome {
    /// Features used beyond their entitlement, as the back office reported them.
    pub over_use: Vec<String>,
}

/// Which usage events an administrator reviews: refusals, or grants beyond the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UsageEventKind {
    /// A feature of a `request` or `borrow` was refused (a `preview` is not recorded).
    #[default]
    Denial,
    /// A grant took seats beyond the record's count.
    Overdraft,
}

impl UsageEventKind {
    /// `denial` or `overdraft`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageEventKind::Denial => "denial",
            UsageEventKind::Overdraft => "overdraft",
        }
    }
}

/// The query of `GET /api/v1/admin/denials`: every filter given applies; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct UsageEventQuery {
    /// `denial` (the default) or `overdraft`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub kind: Option<UsageEventKind>,
    /// Only events at or after this time: RFC 3339 (`2026-06-01T08:00:00Z`) or a date
    /// (`2026-06-01`, from its start in UTC).
    #[serde(default)]
    pub since: Option<String>,
    /// Only events of this feature.
    #[serde(default)]
    pub feature: Option<String>,
    /// At most this many, the newest (1 to 1000; default 100).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
}

/// One usage event: who was refused (or went beyond the count), what, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageEvent {
    /// The event's id (grows with time).
    pub id: i64,
    /// Denial or overdraft.
    pub kind: UsageEventKind,
    /// When it was decided (RFC 3339, UTC).
    pub at: String,
    /// The device's host id (`KIND=VALUE`).
    pub device_id: String,
    /// The kind of that host id (`ethernet`, `machine_id`, `user`, …).
    pub device_id_type: String,
    /// Physical, virtual, container or unknown, as the client said.
    pub device_type: String,
    /// The user on the device, if the client sent one.
    pub user: Option<String>,
    /// The device's alias, if the client sent one.
    pub alias: Option<String>,
    /// The feature.
    pub feature: String,
    /// A denial: the lowest version asked for; an overdraft: the version granted.
    pub version: Option<String>,
    /// A denial: the seats asked for; an overdraft: the seats beyond the count.
    pub count: u64,
    /// Why: a denial's code (`all_in_use`, `not_licensed`, `version_too_low`, `not_active`,
    /// `bad_count`, `borrow_limit`, `lease_limit`); `overdraft` for an overdraft.
    pub code: String,
    /// For people.
    pub message: String,
}

/// The answer of `GET /api/v1/admin/denials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageEvents {
    /// The kind listed.
    pub kind: UsageEventKind,
    /// How many days events are kept (`usage_event_retention_days` in server.toml).
    pub retention_days: u32,
    /// The events, newest first.
    pub events: Vec<UsageEvent>,
}

/// The query of `GET /api/v1/admin/usage-history`: one feature's seats used and count over a
/// time range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct UsageHistoryQuery {
    /// The feature's name, exactly.
    pub feature: String,
    /// From (included): RFC 3339 or a date; default: a day before `to`.
    #[serde(default)]
    pub from: Option<String>,
    /// To (not included): RFC 3339 or a date; default: the end of this minute.
    #[serde(default)]
    pub to: Option<String>,
    /// `minute`, `hour` or `day`; default: minutes for up to 2 days, hours for up to 90 days,
    /// days beyond.
    #[serde(default)]
    pub resolution: Option<String>,
}

/// One period of a feature's usage history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsagePoint {
    /// The start of the period (RFC 3339, UTC).
    pub at: String,
    /// The most seats in use seen in the period.
    pub used: u64,
    /// The seats licensed; null when uncounted.
    pub count: Option<u64>,
}

/// One version's usage history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSeries {
    /// The version of the feature's records.
    pub version: String,
    /// The periods recorded, oldest first (periods without a sample are left out).
    pub points: Vec<UsagePoint>,
}

/// The answer of `GET /api/v1/admin/usage-history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageHistory {
    /// The feature.
    pub feature: String,
    /// From (included), RFC 3339.
    pub from: String,
    /// To (not included), RFC 3339.
    pub to: String,
    /// The length of each period: `minute`, `hour` or `day`.
    pub resolution: String,
    /// Each version's periods.
    pub series: Vec<UsageSeries>,
}

/// A user's role on the license server: `admin` (everything) or `read_only` (every view, no
/// change).
pub type RoleName = String;

/// A login: a user name and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// A login that succeeded: the session cookie is set; send `csrf_token` in `X-CSRF-Token` with
/// every request that changes something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginAnswer {
    /// The user logged in.
    pub user: String,
    /// The user's role (`admin` or `read_only`).
    pub role: RoleName,
    /// The session's CSRF token, for `X-CSRF-Token`.
    pub csrf_token: String,
    /// Whether the password must be changed before anything else (`POST /api/v1/admin/password`):
    /// until then the session may only change the password or log out.
    pub must_change_password: bool,
    /// The session ends after this many seconds without a request.
    pub idle_timeout_seconds: u64,
    /// The session ends at this time (RFC 3339, UTC) however busy.
    pub expires_at: String,
}

/// An API token asked for with a user name and password (for scripts and the command line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenLogin {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// A label for the token (default `cli`).
    #[serde(default)]
    pub name: Option<String>,
    /// Days until it stops working (1 to 3650); no expiry when absent.
    #[serde(default)]
    pub expires_days: Option<u32>,
}

/// A password change: the user's current password and the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The user whose password changes.
    pub user: String,
    /// The current password. Empty (or absent) only from a logged-in browser session of this
    /// user that need not change its password (the manager's Reset Password page): the session
    /// cookie and its CSRF token stand for it then.
    #[serde(default)]
    pub current_password: String,
    /// The new password (at least 12 characters).
    pub new_password: String,
}

/// A user as lists show it (never the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    /// The user name.
    pub name: String,
    /// The role (`admin` or `read_only`).
    pub role: RoleName,
    /// Whether the next login must change the password.
    pub must_change_password: bool,
    /// Whether the user can log in with a password (a user without one has API tokens only).
    pub has_password: bool,
    /// Created (RFC 3339, UTC).
    pub created_at: String,
}

/// A new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The user name (at most 64 characters, no control characters).
    pub name: String,
    /// The role (`admin` or `read_only`).
    pub role: RoleName,
    /// The first password (at least 12 characters); a random one is made and answered once when
    /// absent. Either way it must be changed at the first login.
    #[serde(default)]
    pub password: Option<String>,
}

/// A user just created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCreated {
    /// The user.
    pub user: UserView,
    /// The password made for the user (shown once), when none was given.
    pub password: Option<String>,
}

/// A user's new role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// The role (`admin` or `read_only`).
    pub role: RoleName,
}

/// A new API token for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A label (default `api`).
    #[serde(default)]
    pub name: Option<String>,
    /// Days until it stops working (1 to 3650); no expiry when absent.
    #[serde(default)]
    pub expires_days: Option<u32>,
    /// The user it acts as (default: the caller).
    #[serde(default)]
    pub user: Option<String>,
}

/// An API token just made: shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    /// The token, for `Authorization: Bearer <token>`.
    pub token: String,
    /// Its id in lists (for revoking it).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// When it stops working (RFC 3339, UTC), if it expires.
    pub expires_at: Option<String>,
}

/// An API token as lists show it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// Its id: the first 16 hex digits of its SHA-256.
    pub id: String,
    /// Its label (`start-up` for the token printed at `init`).
    pub name: String,
    /// The user it acts as.
    pub user: String,
    /// Created (RFC 3339, UTC).
    pub created_at: String,
    /// When it stops working (RFC 3339, UTC), if it expires.
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339, UTC).
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Its number (later entries have larger numbers).
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who (a user name; `-` for a caller that proved no one).
    pub actor: String,
    /// What: `login`, `login_failed`, `login_throttled`, `logout`, `password_changed`,
    /// `password_set`, `user_created`, `user_deleted`, `role_changed`, `token_created`,
    /// `token_revoked`, `access_denied`, `credential_refused`, `activate`, `offline_request`,
    /// `offline_apply`, `sync`, … (an action that failed ends in `_failed`).
    pub action: String,
    /// The detail, in words.
    pub detail: String,
    /// The client's address, when known.
    pub address: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_refuses_unknown_fields() {
        let ok = r#"{"backoffice":"http://bo","activations":[{"key":"K","count":2}]}"#;
        let r: ActivateRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(r.activations[0].count, 2);
        assert_eq!(serde_json::to_string(&r).unwrap(), ok);
        assert!(serde_json::from_str::<ActivateRequest>(
            r#"{"backoffice":"b","activations":[{"key":"K","count":2,"seats":1}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<OfflineRequestBody>(r#"{"activations":[],"x":1}"#).is_err());
        // one key-count type for every activation: the admin API's is the back office's
        let k: crate::activation::KeyCount = r.activations[0].clone();
        assert_eq!(k, KeyCount::new("K", 2));
    }

    #[test]
    fn usage_event_kinds_are_lower_case_and_queries_refuse_unknown_fields() {
        assert_eq!(
            serde_json::to_string(&UsageEventKind::Overdraft).unwrap(),
            "\"overdraft\""
        );
        assert_eq!(UsageEventKind::default().as_str(), "denial");
        let q: UsageEventQuery =
            serde_json::from_str(r#"{"kind":"overdraft","feature":"cad","limit":5}"#).unwrap();
        assert_eq!(q.kind, Some(UsageEventKind::Overdraft));
        assert_eq!(q.limit, Some(5));
        assert!(serde_json::from_str::<UsageEventQuery>(r#"{"colour":"red"}"#).is_err());
        assert!(serde_json::from_str::<UsageEventQuery>(r#"{"kind":"grant"}"#).is_err());
    }

    #[test]
    fn a_status_without_the_banner_fields_still_reads() {
        let older = r#"{"hostid":"ethernet=00","activated":true,"features":[],"leases":0}"#;
        let s: Status = serde_json::from_str(older).unwrap();
        assert!(!s.online);
        assert_eq!(
            (s.last_sync, s.bundle_expires, s.server_time),
            (None, None, None)
        );
    }
}

/// The reservation groups, as imported, exported and stored (the core's document type).
pub use tessera_core::reservations::Reservations;

/// The reservations view: the groups in force, and each entry with whether the server holds the
/// seats it reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationsView {
    /// The groups in force, in order (the export document's `groups`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<ReservationGroupDoc>))]
    pub groups: Vec<tessera_core::reservations::ReservationGroup>,
    /// Every entry, in order, with its status.
    pub entries: Vec<ReservationStatus>,
    /// Reservations stored that could not be read (the store was edited by hand), and why: the
    /// server serves without them until they are added again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One reservation entry with its status (a row of the reservations view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationStatus {
    /// The group.
    pub group: String,
    /// Who: a device's host id or `user=NAME` (normalised).
    pub holder: String,
    /// The holder's id type: `user`, or the device id's kind (`ethernet`, `machine_id`, …).
    pub id_type: String,
    /// The feature.
    pub feature: String,
    /// The lowest version that serves it.
    pub version: String,
    /// Seats reserved.
    pub count: u32,
    /// Whether the server holds them, set aside for the holder.
    pub satisfied: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<tessera_core::reservations::EntryStatus> for ReservationStatus {
    fn from(e: tessera_core::reservations::EntryStatus) -> Self {
        let id_type = e.id_type().to_string();
        let (satisfied, reason) = match e.status {
            tessera_core::reservations::Satisfied::Yes => (true, None),
            tessera_core::reservations::Satisfied::No { reason } => (false, Some(reason)),
        };
        ReservationStatus {
            group: e.group,
            holder: e.holder,
            id_type,
            feature: e.feature,
            version: e.version,
            count: e.count,
            satisfied,
            reason,
        }
    }
}

/// A reservation group (`tessera_core::reservations::ReservationGroup`): its OpenAPI schema.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReservationGroup)]
pub struct ReservationGroupDoc {
    /// The group's name (unique, 1 to 128 characters).
    pub name: String,
    /// Its reservations.
    pub reservations: Vec<ReservationDoc>,
}

/// A reservation: seats set aside for one device or one user.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reservation)]
pub struct ReservationDoc {
    /// A device's host id (`KIND=VALUE`) or a user (`user=NAME`).
    pub holder: String,
    /// What is reserved.
    pub entries: Vec<ReservationEntryDoc>,
}

/// A feature's seats reserved.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReservationEntry)]
pub struct ReservationEntryDoc {
    /// The feature.
    pub feature: String,
    /// The lowest version that serves it (`a.b`).
    pub version: String,
    /// Seats (at least 1).
    pub count: u32,
}

/// The reservations document (import and export): its OpenAPI schema.
#[cfg(feature = "openapi")]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reservations)]
pub struct ReservationsDoc {
    /// The groups, in order (earlier entries are set aside first).
    pub groups: Vec<ReservationGroupDoc>,
}

/// The named users view: every named-user feature with its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedUsersView {
    /// The named-user features of the licenses served, by name.
    pub features: Vec<NamedUserFeature>,
    /// Named users stored that could not be read (the store was edited by hand), and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// A named-user feature and its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedUserFeature {
    /// The feature.
    pub feature: String,
    /// How many users it may have (the seats of its named-user records).
    pub seats: u64,
    /// The users served, in the order assigned.
    pub users: Vec<String>,
    /// Users assigned beyond the seats: not served.
    pub trimmed: Vec<String>,
}

impl From<tessera_core::named_users::Assignment> for NamedUserFeature {
    fn from(a: tessera_core::named_users::Assignment) -> Self {
        NamedUserFeature {
            feature: a.feature,
            seats: a.seats,
            users: a.users,
            trimmed: a.trimmed,
        }
    }
}

/// The users to assign to a named-user feature (replacing those assigned before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssignUsers {
    /// The users, in order: those beyond the feature's seats are trimmed (and listed as such).
    pub users: Vec<String>,
}

/// The named license pools view: the model kept, whether its pools are in force, and per pool and
/// feature record the seats held and in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolsView {
    /// The model's name (absent: no model, one default pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Whether its pools are in force now.
    pub in_force: bool,
    /// Why a model kept is not in force (it does not fit the licenses served now, or
    /// reservations are in force): the server serves one default pool meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_in_force: Option<String>,
    /// What is legal but probably not meant (no rules, a pool no rule names, …) and what could not
    /// be placed.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Per pool (in the model's order, the default pool last) and feature record.
    #[serde(default)]
    pub pools: Vec<PoolRow>,
    /// A model stored that could not be read (the store was edited by hand), and why: the server
    /// serves without it until one is uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One pool's seats of one feature record (a row of the pools view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolRow {
    /// The pool's name; `default` for the default pool.
    pub pool: String,
    /// Whether this is the default pool (what no pool holds, for everybody).
    pub default: bool,
    /// The feature.
    pub feature: String,
    /// The record's version.
    pub version: String,
    /// The record's expiry (`permanent` or a date).
    pub expiry: String,
    /// Seats the pool holds on the record (the default pool: the count less every pool's seats).
    pub allocated: u64,
    /// The record's overdraft, which only the default pool extends into (0 for a named pool).
    pub overdraft: u32,
    /// Seats of the pool in use.
    pub used: u64,
    /// `available` (seats free), `full` (every seat in use) or `over` (more in use than
    /// allocated: the default pool in the record's overdraft, or leases counted here that a new
    /// model or a restart put here; see docs/model-language.md).
    pub status: String,
}

/// The named-pool model kept, as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolModelText {
    /// The model's name (empty if the text stored does not read).
    pub name: String,
    /// The text as uploaded.
    pub text: String,
}

/// A client key: a public key that may sign capability requests (`/api/v1/admin/client-keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientKeyView {
    /// Its id, the key's fingerprint: hex of the first 16 bytes of the SHA-256 of its
    /// SubjectPublicKeyInfo DER. Clients name it in `Tessera-Signature: keyid=…`.
    pub id: String,
    /// `rsa-2048` or `ed25519`.
    pub algorithm: String,
    /// When it was added (RFC 3339, UTC).
    pub added_at: String,
    /// Who added it.
    pub added_by: String,
}

/// Which seats to release (`POST /api/v1/admin/leases/release`): one lease, or every lease of
/// one device. Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// A lease id (as `GET /api/v1/admin/leases` lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// A device's host id (`KIND=VALUE`): every lease it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A lease held (`GET /api/v1/admin/leases`), or released by the administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseInfo {
    /// The lease id.
    pub lease: u64,
    /// Who holds it: the device's host id, with `|user=USER` when the client sent a user.
    pub device: String,
    /// When it runs out unless renewed (RFC 3339, UTC).
    pub expires_at: String,
    /// The feature.
    pub feature: String,
    /// Seats it held.
    pub count: u32,
    /// Whether it was borrowed (taken offline).
    pub borrowed: bool,
}

/// What a release freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Released {
    /// The leases released (their seats are free again).
    pub released: Vec<LeaseInfo>,
}

/// A producer key the license server trusts for license bundles and certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProducerKeyView {
    /// The key id documents signed with it carry (`kid`).
    pub kid: String,
    /// When it was trusted (RFC 3339, UTC).
    pub added_at: String,
    /// Who added it (`init`: the key the server was made with).
    pub added_by: String,
    /// The public key, SPKI PEM.
    pub public_key: String,
}

/// A producer key to trust (`POST /api/v1/admin/producer-keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewProducerKey {
    /// The producer's new public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`, Ed25519), as the
    /// producer hands it out (`producer.pub`).
    pub public_key: String,
}
