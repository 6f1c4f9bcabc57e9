//! The admin token: the start-up API token of the first administrator (user `admin`) in the
//! toolkit's auth store, made at `init` and at a rotation, kept only as its hash, checked by the
//! HTTP layer at every admin request. A token kept as a setting by an older version moves there.

use std::path::Path;

use tessera_core::Clock as _;
use tessera_store::{AnyStore, MetaStore};

use crate::config::{database_url, load_config};
use crate::error::{file_err, ServerError};

/// The setting that held the SHA-256 (hex) of the admin token before the license server kept its
/// administrators in the auth store; an existing data directory's token moves from it to the
/// store when the server next opens it ([`adopt_legacy_admin_token`]), and keeps working.
pub const ADMIN_TOKEN_SETTING: &str = "server.admin_token_sha256";

/// The first administrator: made at `init`, holding the start-up token.
pub const ADMIN_USER: &str = "admin";

/// The label of the start-up token (printed by `init`, replaced by `token rotate`).
pub const ADMIN_TOKEN_LABEL: &str = "start-up";

/// How the license server's API tokens start.
pub const TOKEN_PREFIX: &str = "tss_";

fn auth_err(e: tessera_service::auth::AuthError) -> ServerError {
    match e {
        tessera_service::auth::AuthError::Store(e) => ServerError::Store(e),
        other => ServerError::Config(other.to_string()),
    }
}

/// Makes sure the first administrator exists (made without a password here: `init` gives it one
/// that must be changed at the first login; an older data directory's `admin` has none until an
/// operator sets one with `tessera server passwd --data DIR`).
async fn ensure_admin_user(store: &AnyStore) -> Result<(), ServerError> {
    let now = tessera_host::SystemClock.now();
    match tessera_service::auth::create_user(
        store,
        ADMIN_USER,
        None,
        tessera_service::auth::Role::Administrator,
        now,
    )
    .await
    {
        Ok(()) | Err(tessera_service::auth::AuthError::Conflict { .. }) => Ok(()),
        Err(e) => Err(auth_err(e)),
    }
}

/// Moves the admin token of a data directory made before the auth store (its hash in the
/// [`ADMIN_TOKEN_SETTING`] setting) to the store, as the start-up token of the first
/// administrator, and clears the setting; nothing when there is none. Safe to run by several
/// cluster members at once.
pub async fn adopt_legacy_admin_token(store: &AnyStore) -> Result<(), ServerError> {
    let Some(hash) = store
        .get_setting(ADMIN_TOKEN_SETTING)
        .await?
        .filter(|h| !h.is_empty())
    else {
        return Ok(());
    };
    ensure_admin_user(store).await?;
    if tessera_store::AuthStore::find_token(store, &hash)
        .await?
        .is_none()
    {
        let made = tessera_store::AuthStore::create_token(
            store,
            tessera_store::TokenRecord {
                hash,
                name: ADMIN_TOKEN_LABEL.into(),
                user_name: ADMIN_USER.into(),
                created_at: tessera_host::SystemClock.now(),
                revoked_at: None,
                expires_at: None,
            },
        )
        .await;
        match made {
            // another member of a cluster moved it first
            Ok(()) | Err(tessera_store::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    store.put_setting(ADMIN_TOKEN_SETTING, "").await?;
    Ok(())
}

/// Makes a new start-up token for the first administrator (revoking the earlier one); returns
/// the token.
pub(crate) async fn new_admin_token(store: &AnyStore) -> Result<String, ServerError> {
    adopt_legacy_admin_token(store).await?;
    ensure_admin_user(store).await?;
    tessera_service::auth::tokens::rotate_token(
        store,
        TOKEN_PREFIX,
        ADMIN_USER,
        ADMIN_TOKEN_LABEL,
        tessera_host::SystemClock.now(),
    )
    .await
    .map_err(auth_err)
}

/// The SHA-256 (hex) of an admin token, as the store keeps it.
pub fn admin_token_hash(token: &str) -> String {
    tessera_service::auth::secret_hash(token)
}

/// Replaces the admin token of the server in `data` with a new one, returned (show it once): the
/// old token stops working at once, also on a server that is running (it looks the token up in
/// the store at each admin request). Other API tokens of the administrator are kept. Needs only the data directory (its configuration and
/// store), not the old token, so it is also the way back in when the token is lost.
pub async fn rotate_admin_token(data: &Path) -> Result<String, ServerError> {
    if !data.join("keys/server.key").exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    new_admin_token(&store).await
}

/// Gives the first administrator of a new server a random password that must be changed at the
/// first login; returns it (show it once).
pub(crate) async fn first_admin_password(store: &AnyStore) -> Result<String, ServerError> {
    ensure_admin_user(store).await?;
    let password = tessera_service::auth::random_password();
    tessera_service::auth::set_password(store, ADMIN_USER, &password, true)
        .await
        .map_err(auth_err)?;
    Ok(password)
}

/// Whether the first administrator exists without a password (a data directory made before the
/// license server had logins): it can act with its API tokens only until an operator sets one.
pub async fn admin_lacks_password(store: &AnyStore) -> Result<bool, ServerError> {
    Ok(tessera_store::AuthStore::get_user(store, ADMIN_USER)
        .await?
        .is_some_and(|u| u.password_hash == tessera_service::auth::NO_PASSWORD))
}

/// Sets the password of `user` of the server in `data`, offline (the way back in when a password
/// is lost, and how a data directory made before logins gives `admin` one): the user's sessions
/// end, API tokens are kept, and with `must_change` the next login must change it. The first
/// administrator is made when missing; another unknown user is an error. Audited as done by the
/// operator of the data directory.
pub async fn set_user_password(
    data: &Path,
    user: &str,
    password: &str,
    must_change: bool,
) -> Result<(), ServerError> {
    if !data.join("keys/server.key").exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    adopt_legacy_admin_token(&store).await?;
    if user == ADMIN_USER {
        ensure_admin_user(&store).await?;
    }
    tessera_service::auth::set_password(&store, user, password, must_change)
        .await
        .map_err(auth_err)?;
    let _ = tessera_store::AuditStore::append_audit(
        &store,
        tessera_store::NewAuditEntry {
            at: tessera_host::SystemClock.now(),
            actor: "operator".into(),
            action: "password_set".into(),
            detail: format!(
                "set the password of user {user} with the data directory (`tessera server passwd --data`){}",
                if must_change { "; to be changed at the next login" } else { "" }
            ),
            address: None,
        },
    )
    .await;
    Ok(())
}
