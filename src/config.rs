//! The configuration as plain data: every setting with its default, checked by
//! [`Config::validate`]. [`SocketSessionsBuilder`](crate::SocketSessionsBuilder) fills one with
//! its `with_*` methods; [`SocketSessions`](crate::SocketSessions) is the runtime built from it.

use std::borrow::Cow;
use std::time::Duration;

use tower_sessions::Expiry;

use crate::client::HandshakeRate;
use crate::error::ConfigError;
use crate::guard::FailureLimit;
use crate::id::CookieKey;
use crate::origin::{MissingOrigin, OriginPolicy};

/// When the socket side loads and saves the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Load once at connect; save at disconnect if modified (sooner with
    /// [`write_behind`](Config::write_behind)), at an id rotation, and at
    /// [`shutdown`](crate::SocketSessions::shutdown). Cheapest; the socket sees HTTP-side
    /// changes only when it reconnects.
    PerConnection,
    /// Reload before each message handler and save after it if modified, one handler at a time
    /// per session on this node. The socket always sees the current session.
    #[default]
    PerMessage,
}

/// Every setting of [`SocketSessions`](crate::SocketSessions), with its default.
///
/// Build one with [`SocketSessionsBuilder`](crate::SocketSessionsBuilder)'s `with_*` methods,
/// or fill it yourself and hand it over with
/// [`with_config`](crate::SocketSessionsBuilder::with_config).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The session cookie's name, as `SessionManagerLayer::with_name` (default `id`).
    pub cookie_name: Cow<'static, str>,
    /// How the cookie's value is protected, as the app's `SessionManagerLayer` (default plain).
    pub cookie_key: CookieKey,
    /// Whether the session cookie identifies a socket's session (default `true`).
    pub cookies: bool,
    /// Whether the Socket.IO `auth` payload's `sid` identifies it too (default `false`).
    pub auth_sid: bool,
    /// When sockets load and save (default [`Mode::PerMessage`]).
    pub mode: Mode,
    /// The HTTP layer's expiry, so that socket saves date records as it does (default: none,
    /// tower-sessions' two weeks).
    pub expiry: Option<Expiry>,
    /// Which browser origins may open sockets; `None` (the default) refuses to build with
    /// cookie sessions, so that the cross-site WebSocket hijacking check is a decision. Its
    /// own missing-`Origin` rule is replaced by [`missing_origin`](Self::missing_origin).
    pub origins: Option<OriginPolicy>,
    /// What to do with requests that carry no `Origin` (default: allow).
    pub missing_origin: MissingOrigin,
    /// The Engine.IO path the origin layer guards (default `/socket.io/`, socketioxide's).
    pub path: Cow<'static, str>,
    /// How long a store call may take (default 2 s).
    pub store_timeout: Duration,
    /// Per-connection mode: save within this delay of the first unsaved change (default: at
    /// disconnect only).
    pub write_behind: Option<Duration>,
    /// The largest session cookie value that is decoded (default 8 KiB); other cookies in the
    /// header do not count.
    pub max_cookie_bytes: usize,
    /// Whether handshakes that did not pass through the [`OriginLayer`](crate::OriginLayer)
    /// are refused (default `true`).
    pub require_origin_layer: bool,
    /// The session key naming the user, for per-user rooms (default none).
    pub user_key: Option<String>,
    /// How often sessions with sockets on this node are checked against the store (default
    /// 30 s; `None` turns it off).
    pub revalidate_every: Option<Duration>,
    /// Rolling expiry: socket activity moves the expiry, one write per interval at most
    /// (default off).
    pub rolling: Option<Duration>,
    /// The per-address limit on handshakes with invalid sessions (default 30 per minute).
    pub failure_limit: Option<FailureLimit>,
    /// The per-address rate of new Engine.IO sessions the origin gate lets through (default
    /// 100 a second after a burst of 500; `None` turns it off).
    pub handshake_rate: Option<HandshakeRate>,
    /// The most session loads in flight at connect (default 1024).
    pub max_loads_in_flight: usize,
    /// The largest value, as JSON, a socket may store under one key (default 64 KiB).
    pub max_value_bytes: usize,
    /// The deepest nesting of a value a socket may store (default 32).
    pub max_depth: usize,
    /// Per-message mode: the most handlers of one session that may wait for its turn on this
    /// node (default 512); past it a handler's session calls fail at once with
    /// [`SessionError::Busy`](crate::SessionError::Busy), and a socket that has more events
    /// refused than this (and at least 256) within one second is disconnected (it is
    /// flooding, not backing off).
    /// (Per connection, handlers never wait for one another: each operation takes the session
    /// briefly.)
    pub max_waiting_handlers: usize,
    /// How long [`shutdown`](crate::SocketSessions::shutdown) may take as a whole (default 10 s).
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cookie_name: "id".into(),
            cookie_key: CookieKey::Plain,
            cookies: true,
            auth_sid: false,
            mode: Mode::default(),
            expiry: None,
            origins: None,
            missing_origin: MissingOrigin::default(),
            path: "/socket.io/".into(),
            store_timeout: Duration::from_secs(2),
            write_behind: None,
            max_cookie_bytes: 8 * 1024,
            require_origin_layer: true,
            user_key: None,
            revalidate_every: Some(Duration::from_secs(30)),
            rolling: None,
            failure_limit: Some(FailureLimit::default()),
            handshake_rate: Some(HandshakeRate::default()),
            max_loads_in_flight: 1024,
            max_value_bytes: 64 * 1024,
            max_depth: 32,
            max_waiting_handlers: 512,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Checks that the configuration can be served safely.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.store_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.write_behind.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroWriteBehind);
        }
        if self.revalidate_every.is_some_and(|d| d.is_zero())
            || self.rolling.is_some_and(|d| d.is_zero())
            || self.shutdown_timeout.is_zero()
        {
            return Err(ConfigError::ZeroInterval);
        }
        if self.max_loads_in_flight == 0
            || self.max_waiting_handlers == 0
            || self
                .handshake_rate
                .is_some_and(|r| r.per_second == 0 || r.burst == 0)
        {
            return Err(ConfigError::ZeroLimit);
        }
        if self.origins.is_none() && self.cookies {
            return Err(ConfigError::NoOriginPolicy);
        }
        Ok(())
    }

    /// The origin policy to serve: the configured one, or any origin when only `auth` ids are
    /// read (no ambient credential to hijack).
    pub(crate) fn origin_policy(&self) -> OriginPolicy {
        self.origins
            .clone()
            .unwrap_or_else(OriginPolicy::any)
            .with_missing(self.missing_origin)
    }
}
