//! The license server over HTTP: capability requests for clients ([`capability`]), status,
//! activation, sync and offline files for the administrator ([`admin`], with the admin token printed
//! at `init`), health, readiness, metrics and the OpenAPI document ([`ops`]). This module holds the
//! router, the shared state and the one mapping from errors to problems ([`Failure`]).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tessera_service::metrics::{Counter, HttpMetrics};
use tessera_service::RateLimiter;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::EngineError;
use crate::error::ServerError;
use crate::openapi::{Answers, Problem};
use crate::server::Server;

pub mod access;
pub mod admin;
pub mod capability;
pub mod history;
pub mod keys;
pub mod named_users;
pub mod ops;
pub mod pools;
pub mod properties;
pub mod reservations;
pub mod users;
pub mod views;

/// Serving with the server's scheduled work, as before the split: see [`crate::serve_on`].
pub use crate::server::{serve_on, serve_tls_on};
pub use access::{audit, Admin, Caller, Viewer};
pub use admin::{ActivateRequest, FeatureState, KeyCount, OfflineRequestBody, Status};
pub use capability::CapabilityAnswer;

/// Shared state.
#[derive(Debug)]
pub struct AppState {
    /// The server.
    pub server: Arc<Server>,
    requests: Counter,
    denied: Counter,
    /// Capability requests per client address (none when the limit is off).
    limiter: Option<RateLimiter>,
    /// Requests to every route but the capability route, by route and status (the capability
    /// route keeps its own two counters: it is the hot path).
    http: Arc<HttpMetrics>,
    /// How browser sessions of the admin API work (cookie, idle and longest life).
    pub sessions: tessera_service::auth::Sessions,
    /// Password hashing, a few at a time.
    pub hashing: tessera_service::auth::HashGate,
    /// Login throttling per account and per address.
    pub logins: tessera_service::auth::LoginThrottle,
    /// Audit entries written since the start (the log is pruned every so often).
    pub(crate) audit_appends: std::sync::atomic::AtomicU64,
    /// The leases the views read last, with the engine's commit count they were read at.
    pub(crate) lease_rows: LeaseRowCache,
}

/// The leases the views read last (see `views::lease_rows`).
pub(crate) type LeaseRowCache = std::sync::Mutex<Option<(u64, Arc<Vec<tessera_store::LeaseRow>>)>>;

/// Shared.
pub type Shared = Arc<AppState>;

/// Wraps an opened server (or one already shared) for serving.
pub fn state(server: impl Into<Arc<Server>>) -> Shared {
    let server = server.into();
    let rate = server.config.capability_requests_per_minute;
    let exempt_loopback = !server.config.rate_limit_loopback;
    let c = &server.config;
    let sessions = tessera_service::auth::Sessions {
        idle: std::time::Duration::from_secs(u64::from(c.session_idle_minutes) * 60),
        lifetime: std::time::Duration::from_secs(u64::from(c.session_max_hours) * 3600),
        secure: c.tls_cert.is_some(),
        ..Default::default()
    };
    // per account: the hour's failures at once, refilled evenly over the hour
    let failures = f64::from(c.login_failures_per_hour.max(1));
    let per_address = f64::from(c.login_attempts_per_minute.max(1));
    let logins = tessera_service::auth::LoginThrottle::new(
        failures,
        3600.0 / failures,
        per_address,
        60.0 / per_address,
    );
    Arc::new(AppState {
        sessions,
        hashing: tessera_service::auth::HashGate::default(),
        logins,
        audit_appends: std::sync::atomic::AtomicU64::new(0),
        lease_rows: std::sync::Mutex::new(None),
        server,
        requests: Counter::default(),
        denied: Counter::default(),
        limiter: (rate > 0).then(|| RateLimiter::new(rate).exempt_loopback(exempt_loopback)),
        http: HttpMetrics::new(),
    })
}

/// A problem+json answer (RFC 9457) with a stable `code`: the toolkit's.
pub(crate) use tessera_service::problem::problem;
/// The caller's address: the toolkit's extractor.
pub(crate) use tessera_service::ClientIp;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tessera license server",
        description = "Capability requests (seats as leases) and administration. Errors are application/problem+json with a stable `code`."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

fn documented() -> OpenApiRouter<Shared> {
    operations().routes(routes!(capability::capability))
}

/// Every route but the capability route.
fn operations() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(admin::status))
        .routes(routes!(admin::activate))
        .routes(routes!(admin::offline_request))
        .routes(routes!(admin::sync_now))
        .routes(routes!(admin::offline_apply))
        .routes(routes!(admin::offline_update_request))
        .routes(routes!(admin::offline_confirmation))
        .routes(routes!(admin::denials))
        .routes(routes!(history::denials_csv))
        .routes(routes!(history::usage_history))
        .routes(routes!(users::login))
        .routes(routes!(users::login_token))
        .routes(routes!(users::logout))
        .routes(routes!(users::change_password))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::delete_user))
        .routes(routes!(users::set_role))
        .routes(routes!(users::list_tokens, users::create_token))
        .routes(routes!(users::revoke_token))
        .routes(routes!(users::audit_log))
        .routes(routes!(
            reservations::list,
            reservations::add,
            reservations::clear
        ))
        .routes(routes!(reservations::delete_group))
        .routes(routes!(reservations::add_to_group))
        .routes(routes!(reservations::export))
        .routes(routes!(named_users::list))
        .routes(routes!(named_users::assign, named_users::clear))
        .routes(routes!(properties::view, properties::set))
        .routes(routes!(pools::view))
        .routes(routes!(pools::model, pools::upload, pools::delete))
        .routes(routes!(keys::list_client_keys, keys::add_client_key))
        .routes(routes!(keys::delete_client_key))
        .routes(routes!(keys::list_producer_keys, keys::add_producer_key))
        .routes(routes!(keys::remove_producer_key))
        .routes(routes!(keys::list_leases))
        .routes(routes!(keys::release))
        .routes(routes!(keys::rotate_token))
        .routes(routes!(views::features))
        .routes(routes!(views::feature_records))
        .routes(routes!(views::feature))
        .routes(routes!(views::devices))
        .routes(routes!(views::device))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = documented().split_for_parts().1;
        // after the routes are in: it documents what their extractors answer
        utoipa::Modify::modify(&Answers, &mut doc);
        // the manager's pages, after: their error pages are HTML, not problems
        utoipa::Modify::modify(&crate::ui::openapi::ManagerPages, &mut doc);
        doc
    })
    .clone()
}

/// A query string read as `T`; when it does not read, the 422 `invalid_request` that says what did
/// not fit and which parameters the route takes (`takes`).
pub(crate) fn query_of<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
    takes: &str,
) -> Result<T, Box<Response>> {
    q.map(|axum::extract::Query(q)| q).map_err(|e| {
        Box::new(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the query string does not fit: {} ({takes})", e.body_text()),
        ))
    })
}

/// The router. The toolkit's request tracing and per-route counters wrap every route but the
/// capability route, which keeps its own counters and no span (the hot path: see
/// docs/performance.md).
pub fn router(state: Shared) -> Router {
    let capability: Router<Shared> = OpenApiRouter::new()
        .routes(routes!(capability::capability))
        .split_for_parts()
        .0;
    let others =
        tessera_service::trace::traced(state.http.counted(operations().split_for_parts().0));
    // the manager's pages call the admin API in-process, through the same routes
    let api = crate::ui::Api(others.clone().with_state(state.clone()));
    let manager = tessera_service::trace::traced(crate::ui::routes().layer(axum::Extension(api)));
    capability
        .merge(others)
        .merge(manager)
        .fallback(tessera_host::serve::not_found)
        .method_not_allowed_fallback(tessera_host::serve::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Serves the router on a bound listener (HTTPS with `tls`) until `shutdown`, within the limits of
/// the configuration (`request_timeout_seconds`, `max_connections`). Only serves: the server's
/// scheduled work is the server's ([`crate::serve_on`] runs both).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    tls: Option<tessera_host::serve::TlsFiles<'_>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.server.config.limits();
    tessera_host::serve::serve(listener, router(state), tls, limits, shutdown).await
}

/// What a handler failed at, as the one mapping from the server's and the engine's errors to
/// problems. Nothing inside the server reaches the caller: a store failure is answered 503 with
/// what did not happen, and any other fault 500 naming an id under which it is logged.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An answer the caller can act on (a refused request or document, the back office's refusal).
    Problem(StatusCode, &'static str, String),
    /// The store failed (logged): 503 `storage_unavailable` with the detail (what did not happen).
    Storage(String, &'static str),
    /// A fault inside the server (logged with an id): 500 `internal`, naming the id only.
    Internal(String),
}

impl Failure {
    /// A [`ServerError`]: the back office's refusal, or of a document it made, is answered with
    /// `refused` (502 `backoffice_refused` where the server asked it, 422 `invalid_document` where
    /// the caller brought the document); a store failure with `storage` as the detail.
    pub(crate) fn server(
        e: ServerError,
        refused: (StatusCode, &'static str),
        storage: &'static str,
    ) -> Failure {
        match e {
            ServerError::BackOffice(e) => Failure::Problem(refused.0, refused.1, e.to_string()),
            e @ ServerError::Store(_) => Failure::Storage(e.to_string(), storage),
            e => Failure::Internal(e.to_string()),
        }
    }

    /// A refused or failed seat-policy change (reservations, named users, the pool model). The
    /// code follows the error, whichever route met it; every variant is named, so a new one needs
    /// a decision here rather than falling into a 500. `storage` is the detail of a store failure.
    pub(crate) fn policy(e: crate::seat_policy::PolicyError, storage: &'static str) -> Failure {
        use crate::seat_policy::PolicyError as P;
        use tessera_core::named_users::NamedUserError;
        use tessera_core::reservations::ReservationError;
        let problem = |status, code| Failure::Problem(status, code, e.to_string());
        match &e {
            P::Invalid(ReservationError::GroupExists { .. }) => {
                problem(StatusCode::CONFLICT, "reservation_group_exists")
            }
            P::Invalid(ReservationError::NoSuchGroup { .. }) => {
                problem(StatusCode::NOT_FOUND, "no_such_group")
            }
            P::Invalid(_) => problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reservations"),
            P::NamedUsers(NamedUserError::NotNamedUser { .. }) => {
                problem(StatusCode::NOT_FOUND, "not_named_user")
            }
            P::NamedUsers(_) => problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_named_users"),
            P::Model(_) | P::Resolve(_) => {
                problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_model")
            }
            P::PoolsActive => problem(StatusCode::CONFLICT, "pools_active"),
            P::ReservationsActive { .. } => problem(StatusCode::CONFLICT, "reservations_active"),
            P::NoModel => problem(StatusCode::NOT_FOUND, "no_pool_model"),
            P::Store(inner) => Failure::Storage(inner.to_string(), storage),
        }
    }

    /// An [`EngineError`] from a capability request.
    pub(crate) fn engine(e: EngineError) -> Failure {
        match e {
            EngineError::BadRequest(d) => Failure::Problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                d.to_string(),
            ),
            EngineError::NotHolder(d) => {
                Failure::Problem(StatusCode::FORBIDDEN, "not_lease_holder", d)
            }
            e @ EngineError::Store(_) => Failure::Storage(
                e.to_string(),
                "the license server could not store the decision; nothing was granted; try again",
            ),
            e => Failure::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Problem(status, code, detail) => problem(status, code, detail),
            Failure::Storage(error, detail) => {
                tracing::warn!(error = %error, "{detail}");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    detail,
                )
            }
            Failure::Internal(error) => {
                let id = format!("{:016x}", rand::random::<u64>());
                tracing::error!(error_id = %id, error = %error, "internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the license server failed inside while answering (error {id}); its administrator finds the cause in the server's log under that id"),
                )
            }
        }
    }
}

/// A JSON body that could not be read, as a problem.
pub(crate) fn json_problem(e: JsonRejection) -> Response {
    match e {
        JsonRejection::JsonSyntaxError(e) => problem(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => body_problem(e.status()),
        e => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.body_text(),
        ),
    }
}

/// A body that could not be read (too large, not UTF-8), as a problem.
pub(crate) fn body_problem(status: StatusCode) -> Response {
    tessera_service::problem::body_problem(status, 64).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        assert_eq!(
            r.headers()[axum::http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_internal_error_is_a_500_naming_only_an_id() {
        // a real signing failure (the serializer's error) with what it would tell about the inside
        let sign = tessera_core::document::SignError::from(
            serde_json::from_str::<u8>("\"/srv/tessera/keys/server.key\"").unwrap_err(),
        );
        let inside = sign.to_string();
        let failures = [
            Failure::server(
                ServerError::Sign(sign),
                (StatusCode::BAD_GATEWAY, "backoffice_refused"),
                "not stored",
            ),
            Failure::engine(EngineError::Sign(inside.clone())),
        ];
        let mut ids = Vec::new();
        for f in failures {
            let (status, p) = body(f.into_response()).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(p["code"], "internal");
            assert_eq!(p["status"], 500);
            let detail = p["detail"].as_str().unwrap();
            assert!(!detail.contains(&inside), "{detail}");
            assert!(!detail.contains("server.key"), "{detail}");
            // the id under which it is logged: 16 hex digits after "error "
            let id = detail
                .split("error ")
                .nth(1)
                .and_then(|rest| rest.get(..16))
                .unwrap();
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{detail}");
            ids.push(id.to_string());
        }
        assert_ne!(ids[0], ids[1], "each failure gets its own id");
        // a store failure is 503 with what did not happen, a refusal keeps its detail
        let store = tessera_store::StoreError::Write {
            detail: "disk /dev/sda1 full".into(),
        };
        let (status, p) = body(
            Failure::server(
                ServerError::Store(store),
                (StatusCode::BAD_GATEWAY, "backoffice_refused"),
                "nothing changed",
            )
            .into_response(),
        )
        .await;
        assert_eq!(
            (status, p["code"].as_str(), p["detail"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("storage_unavailable"),
                Some("nothing changed")
            )
        );
        let (status, p) = body(
            Failure::server(
                crate::LinkError::NotActivated.into(),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
                "nothing changed",
            )
            .into_response(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p["code"], "invalid_document");
        assert_eq!(p["detail"], "this server is not activated");
    }
}
