//! # socketio-sessions
//!
//! Socket.IO handlers served by [socketioxide] get the HTTP session that the axum app keeps
//! with [tower-sessions], as Node's socket.io-sessions did for Connect:
//!
//! - **One place to configure it:** [`SocketSessions::builder`] takes the store, the cookie's
//!   name and key (plain, signed or private), the [`Mode`], the expiry, the origin allowlist
//!   and the store timeout.
//! - **Two layers to install it:** [`SocketSessions::session_layer`] is tower-sessions'
//!   `SessionManagerLayer` already set to that store, cookie and expiry;
//!   [`SocketSessions::layer`] wraps socketioxide's layer with the origin gate outside and the
//!   HTTP scope inside, in the only order that works. What can still be forgotten (serving
//!   with client addresses, the scope in the wrong place) is logged once.
//! - **Handlers get the session** through the [`SocketSession`] extractor (connect and message
//!   handlers) and [`MaybeSocketSession`] (disconnect handlers), typed through serde;
//!   [`SessionEnded`] tells a disconnect handler why the server ended its socket.
//! - **Per-connection mode** loads once at connect and saves at disconnect (optionally within
//!   N ms of a change); **per-message mode** reloads before each handler and saves after it,
//!   one handler at a time per session on this node.
//! - **`sinvalid`:** a missing, forged, unknown or expired session refuses the connection with
//!   the `connect_error` message `session_invalid`; a failing or slow store with
//!   `session_unavailable`, within the store timeout. Logout, id rotation and expiry end open
//!   sockets on every node. [`SocketSessionsBuilder::on_invalid`] and
//!   [`SocketSessionsBuilder::on_end`] observe both.
//! - **Secure defaults:** the origin gate refuses disallowed origins with 403 before any
//!   cookie is parsed or store called; cookie sessions do not build without an origin policy;
//!   session ids never appear in logs (a salted [`SessionTag`] does). The same allowlist
//!   guards state-changing HTTP routes against CSRF ([`CsrfLayer`]).
//!
//! ## Watching it run
//!
//! With the `metrics` feature, counters, gauges and histograms go through the
//! [`metrics`](https://docs.rs/metrics) facade to whatever recorder the app installs (README
//! lists every name). Connects and handlers run in `tracing` spans that carry the session's
//! [`SessionTag`], never its id.
//! See [`SocketSessions`] for a complete app, and `examples/minimal.rs` (SQLite, login and
//! logout, per-connection mode, graceful shutdown) and `examples/axum_login.rs` in the
//! repository for runnable ones.
//!
//! ## Features
//!
//! | feature | gives |
//! |---|---|
//! | (none) | [`store::MemoryStore`], everything else |
//! | `sqlite` | `store::SqliteStore` and the `store::sqlx` re-export |
//! | `redis` | `store::RedisStore`, `store::ConnectRedisStore` (Express sessions), on one Redis or a Redis Cluster (`store::redis_config`), the `store::fred` re-export, `SocketSessions::watch_redis` |
//! | `axum-login` | `SocketSessionsBuilder::with_axum_login`, the `SocketAuth` extractor, the `axum_login` re-export |
//!
//! ## How it fits together
//!
//! ```text
//! Engine.IO request ─► origin gate ─► Socket.IO ─► SessionMiddleware ─────► handlers ─► save
//!                      (403 or pass)              (cookie/auth sid → load     (SocketSession
//!                                                  → one LiveSession per id)   extractor)
//! HTTP request ─────► origin gate ─► HTTP scope ─► SessionManagerLayer (http_store) ─► routes
//! ```
//!
//! [socketioxide]: https://docs.rs/socketioxide
//! [tower-sessions]: https://docs.rs/tower-sessions
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The stages, in the order a session id travels; each imports only the ones above it
// (tests/layering.rs checks it). `sessions` wires them and nothing imports it.
mod client;
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
mod observe;
pub mod origin;
mod proxy;
mod session;
mod sessions;
pub mod store;
mod tag;
mod task;

#[doc(inline)]
pub use client::HandshakeRate;
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
