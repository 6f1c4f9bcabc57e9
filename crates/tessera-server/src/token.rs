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

/// Makes sure the first administrator exists (no password: the license server has no login yet;
/// the administrator acts with API tokens).
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
