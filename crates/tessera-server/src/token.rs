//! The admin token: made at `init` and at a rotation, kept in the store only as its hash, checked
//! by the HTTP layer at every admin request.

use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};
use tessera_store::{AnyStore, MetaStore};

use crate::config::{database_url, load_config};
use crate::error::{file_err, ServerError};

/// The setting that holds the SHA-256 (hex) of the admin token. The running server reads it at
/// every admin request, so a rotation takes effect at once, on every member of a cluster.
pub const ADMIN_TOKEN_SETTING: &str = "server.admin_token_sha256";

/// Makes a new admin token and stores its hash (replacing the old one); returns the token.
pub(crate) async fn new_admin_token(store: &AnyStore) -> Result<String, ServerError> {
    let mut token_bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut token_bytes);
    let token = format!("tss_{}", hex::encode(token_bytes));
    store
        .put_setting(ADMIN_TOKEN_SETTING, &admin_token_hash(&token))
        .await?;
    Ok(token)
}

/// The SHA-256 (hex) of an admin token, as the store keeps it.
pub fn admin_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Replaces the admin token of the server in `data` with a new one, returned (show it once): the
/// old token stops working at once, also on a server that is running (it reads the token's hash
/// from the store at each admin request). Needs only the data directory (its configuration and
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
