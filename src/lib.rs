//! # socketio-sessions
//!
//! Socket.IO handlers served by [socketioxide] get the HTTP session that the axum app keeps
//! with [tower-sessions], as the Node library socket.io-sessions did for Connect:
//!
//! - **One place to enable it:** [`SocketSessions::builder`] takes the store, the cookie's name
//!   and key (plain, signed or private, as the app's `SessionManagerLayer`), the
//!   [`Mode`], the expiry, the origin allowlist and the store timeout.
//! - **Handlers get the session** through the [`SocketSession`] extractor (connect and message
//!   handlers) and [`MaybeSocketSession`] (disconnect handlers), typed through serde.
//! - **Per-connection mode** loads once at connect and saves at disconnect (optionally within
//!   N ms of a change); **per-message mode** reloads before each handler and saves after it,
//!   one handler at a time per session on this node.
//! - **`sinvalid`:** a missing, forged, unknown or expired session refuses the connection with
//!   the `connect_error` message `session_invalid`; a failing or slow store with
//!   `session_unavailable`, within the store timeout. [`SocketSessionsBuilder::on_invalid`]
//!   observes both.
//! - **Secure defaults:** the [`OriginLayer`] refuses disallowed origins with 403 before any
//!   cookie is parsed or store called; cookie sessions do not build without an origin policy;
//!   session ids never appear in logs (a salted [`SessionTag`] does). The same allowlist
//!   guards state-changing HTTP routes against CSRF ([`CsrfLayer`]).
//!
//! ## How it fits together
//!
//! ```text
//! Engine.IO request ─► OriginLayer ─► SessionMiddleware ─────────────► handlers ─► save
//!                      (403 or pass)  (cookie/auth sid → store.load     (SocketSession
//!                                      → one LiveSession per id)         extractor)
//! ```
//!
//! See [`SocketSessions`] for a complete axum example.
//!
//! [socketioxide]: https://docs.rs/socketioxide
//! [tower-sessions]: https://docs.rs/tower-sessions
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The stages, in the order a session id travels; each imports only the ones above it
// (tests/layering.rs checks it). `sessions` wires them and nothing imports it.
mod config;
mod connect;
pub mod csrf;
mod error;
mod extract;
mod guard;
pub mod http;
mod id;
mod install;
mod lifecycle;
#[cfg(feature = "axum-login")]
mod login;
pub mod origin;
mod proxy;
mod session;
mod sessions;
pub mod store;
mod tag;
mod task;

#[doc(inline)]
pub use config::{Config, Mode};
#[doc(inline)]
pub use connect::{InvalidSession, SessionMiddleware};
#[doc(inline)]
pub use csrf::CsrfLayer;
#[doc(inline)]
pub use error::{ConfigError, InvalidReason, SessionError};
#[doc(inline)]
pub use extract::MaybeSocketSession;
#[doc(inline)]
pub use guard::FailureLimit;
#[doc(inline)]
pub use http::{HttpScopeLayer, HttpStore};
#[doc(inline)]
pub use id::{CookieKey, ExpressSecrets};
#[doc(inline)]
pub use install::SocketSessionsLayer;
#[doc(inline)]
pub use lifecycle::{EndReason, SINVALID_EVENT, SessionEnd, SessionEnded, ShutdownReport};
#[cfg(feature = "axum-login")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum-login")))]
#[doc(inline)]
pub use login::{AXUM_LOGIN_DATA_KEY, SocketAuth};
#[doc(inline)]
pub use origin::{OriginLayer, OriginPolicy};
#[doc(inline)]
pub use proxy::TrustedProxies;
#[doc(inline)]
pub use session::SocketSession;
#[doc(inline)]
pub use sessions::{SocketSessions, SocketSessionsBuilder};
#[doc(inline)]
pub use tag::SessionTag;

/// Extension points of the connect middleware.
pub mod middleware {
    pub use crate::connect::{NoSetup, Setup};
}

/// Re-exported so that an app uses the very versions this crate is built on.
pub use {socketioxide, tower_sessions};

/// Re-exported so that an app uses the very version this crate is built on.
#[cfg(feature = "axum-login")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum-login")))]
pub use axum_login;

#[doc(hidden)]
pub use tower_sessions::session::Id;
