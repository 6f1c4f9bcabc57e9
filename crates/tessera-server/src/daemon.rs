//! The names the license server's opening had before it was split along a request's path; kept so
//! that callers written against them keep working. New code uses the crate root ([`crate::open`],
//! [`crate::init`], …) or the modules themselves.

pub use crate::bundle::borrow_limits;
pub use crate::config::{load_config, server_hostid, Config, DEFAULT_LISTEN};
pub use crate::error::ServerError;
pub use crate::server::{init, open, open_for_rebind, Initialised, ServedCertificate, Server};
pub use crate::token::{
    admin_token_hash, adopt_legacy_admin_token, rotate_admin_token, set_user_password,
    ADMIN_TOKEN_LABEL, ADMIN_TOKEN_SETTING, ADMIN_USER,
};
pub use crate::trust::{accept_storage, private_dir};
