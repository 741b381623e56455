//! Where a socket's session id comes from: the session cookie on the Engine.IO handshake, or,
//! where enabled, the `sid` field of the Socket.IO `auth` payload. Never the query string.

mod auth;
mod cookie;
pub(crate) mod express;

pub use cookie::CookieKey;
pub use express::ExpressSecrets;
pub(crate) use {
    auth::auth_sid,
    cookie::{CookieConfig, SessionKey},
};
