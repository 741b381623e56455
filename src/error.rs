//! Error types: one enum per surface, each variant says how to fix the problem.

use std::fmt;
use std::time::Duration;

/// The builder was given a configuration that cannot be served safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Cookie sessions were enabled without deciding which browser origins may open sockets.
    #[error(
        "cookie sessions need an origin policy (cross-site WebSocket hijacking): call \
         `with_allowed_origins([\"https://app.example.com\"])`, or `with_any_origin()` if you \
         accept the risk"
    )]
    NoOriginPolicy,
    /// An entry of the origin allowlist could not be parsed.
    #[error(
        "invalid allowed origin `{origin}`: {why}; expected `scheme://host[:port]`, e.g. \
         `https://app.example.com`, `http://localhost:3000` or `https://*.example.com`"
    )]
    InvalidOrigin {
        /// The entry as given.
        origin: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The store's own write timeout was zero, or not shorter than the store timeout: a save the
    /// sessions report as failed could still be sent, and land, afterwards.
    #[error(
        "the store's write timeout ({write_timeout:?}) must be greater than zero and shorter \
         than the store timeout ({store_timeout:?}): adjust the store's `with_write_timeout` \
         or `with_store_timeout`"
    )]
    WriteTimeout {
        /// The sessions' store timeout.
        store_timeout: std::time::Duration,
        /// The store's write timeout.
        write_timeout: std::time::Duration,
    },
    /// The store timeout was zero, which would refuse every connection.
    #[error("the store timeout must be greater than zero; the default is 2 s")]
    ZeroTimeout,
    /// A revalidation, rolling-expiry or shutdown interval was zero.
    #[error("revalidation, rolling-expiry and shutdown intervals must be greater than zero")]
    ZeroInterval,
    /// The cap on loads in flight or on handlers waiting for a session was zero, which would
    /// refuse everything.
    #[error("`max_loads_in_flight` and `max_waiting_handlers` must be greater than zero")]
    ZeroLimit,
    /// An entry of the trusted-proxy list is not an IP address or CIDR block.
    #[error(
        "invalid trusted proxy `{entry}`: expected an IP address or a CIDR block, e.g. \
         `10.0.0.7`, `10.0.0.0/8` or `fd00::/8`"
    )]
    InvalidProxy {
        /// The entry as given.
        entry: String,
    },
    /// The write-behind delay was zero; use per-message mode to save after every change.
    #[error(
        "the write-behind delay must be greater than zero; use `Mode::PerMessage` to save after every message"
    )]
    ZeroWriteBehind,
    /// A session table name that cannot be put into SQL as it is.
    #[error(
        "invalid table or schema name `{name}`: use ASCII letters, digits and underscores, e.g. `sessions`"
    )]
    InvalidTableName {
        /// The name as given.
        name: String,
    },
}

/// Why a Socket.IO connection was refused its session (Node's socket.io-sessions called this
/// `sinvalid`).
///
/// The client sees only [`InvalidReason::client_message`]: `session_invalid` or
/// `session_unavailable`. The finer reason is for the server's hook and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidReason {
    /// No session cookie on the handshake (and no `auth` sid where that is enabled).
    Missing,
    /// A session cookie or `auth` sid that this app did not issue: bad signature, failed
    /// decryption, not a session id, or too large to parse.
    Malformed,
    /// A well-formed id that the store does not know, or whose record has expired.
    Unknown,
    /// The store answered with an error.
    StoreError,
    /// The store did not answer within the configured timeout.
    StoreTimeout,
    /// Too many handshakes with invalid or unknown sessions came from this address lately;
    /// refused without a store call. Retryable: the client sees `session_unavailable` and
    /// backs off, since the address may be shared (a NAT, a proxy, an office) by users whose
    /// sessions are valid. Cookies whose signature or encryption verifies are never limited.
    RateLimited,
    /// Too many session loads were in flight (a slow store); refused at once.
    Overloaded,
    /// This node is shutting down ([`SocketSessions::shutdown`](crate::SocketSessions::shutdown)):
    /// the client retries, on another node or on this one once it is back.
    ShuttingDown,
    /// The handshake did not pass through the [`OriginLayer`](crate::OriginLayer): add
    /// `.layer(sessions.origin_layer())` around the Socket.IO layer.
    OriginNotChecked,
    /// The session exists, but the builder's
    /// [`require`](crate::SocketSessionsBuilder::require) check refused it (e.g. nobody is
    /// logged in on it): the client needs a login first.
    NotAllowed,
}

impl InvalidReason {
    /// The `connect_error` message the client receives: `session_invalid` when a new login is
    /// needed, `session_unavailable` when retrying later may succeed.
    ///
    /// ```
    /// use socketio_sessions::InvalidReason;
    /// assert_eq!(InvalidReason::Unknown.client_message(), "session_invalid");
    /// assert_eq!(InvalidReason::RateLimited.client_message(), "session_unavailable");
    /// ```
    pub fn client_message(self) -> &'static str {
        if self.is_retryable() {
            SESSION_UNAVAILABLE
        } else {
            SESSION_INVALID
        }
    }

    /// A stable snake_case name for logs and metric labels (`unknown`, `store_timeout`, ...).
    ///
    /// ```
    /// use socketio_sessions::InvalidReason;
    /// assert_eq!(InvalidReason::RateLimited.as_str(), "rate_limited");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Missing => "missing",
            InvalidReason::Malformed => "malformed",
            InvalidReason::Unknown => "unknown",
            InvalidReason::StoreError => "store_error",
            InvalidReason::StoreTimeout => "store_timeout",
            InvalidReason::RateLimited => "rate_limited",
            InvalidReason::Overloaded => "overloaded",
            InvalidReason::ShuttingDown => "shutting_down",
            InvalidReason::OriginNotChecked => "origin_not_checked",
            InvalidReason::NotAllowed => "not_allowed",
        }
    }

    /// Whether the client may retry the same session later (store trouble, load shedding or a
    /// rate limit: not a bad session).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            InvalidReason::StoreError
                | InvalidReason::StoreTimeout
                | InvalidReason::Overloaded
                | InvalidReason::ShuttingDown
                | InvalidReason::RateLimited
                | InvalidReason::OriginNotChecked
        )
    }
}

/// The `connect_error` message for a missing, forged, unknown or expired session.
pub const SESSION_INVALID: &str = "session_invalid";
/// The `connect_error` message when retrying later may succeed: the store failed or timed out,
/// too many loads were in flight, or the client's address is over its failure limit.
pub const SESSION_UNAVAILABLE: &str = "session_unavailable";

/// The error a refused connection carries; its `Display` is exactly the client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectRejection(pub InvalidReason);

impl fmt::Display for ConnectRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.client_message())
    }
}

impl std::error::Error for ConnectRejection {}

/// An operation on a socket's session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session no longer exists in the store (logged out, expired or rotated); writes are
    /// refused so that a deleted session is never brought back. The client must log in again.
    #[error(
        "the session no longer exists (logged out, expired or rotated); the client must log in again"
    )]
    Gone,
    /// The session store answered with an error.
    #[error("session store error: {0}")]
    Store(#[source] tower_sessions::session_store::Error),
    /// The session store did not answer within the configured timeout.
    #[error("the session store did not answer within {0:?}; is it running and reachable?")]
    Timeout(Duration),
    /// A value could not be converted to or from JSON.
    #[error("session key `{key}` could not be converted to or from JSON: {source}")]
    Serde {
        /// The session key concerned.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// Another writer changed a key after this handler read it, so this handler's changes were
    /// based on a stale value and were not saved. Retry the message, or use
    /// [`SocketSession::update`](crate::SocketSession::update), which is re-run instead.
    #[error(
        "session key `{key}` was changed by another writer after this handler read it; the \
         handler's changes were not saved (retry, or use `update` to have them re-applied)"
    )]
    Conflict {
        /// The key read by the handler and changed by someone else.
        key: String,
    },
    /// The record kept changing under this save; it gave up after this many attempts.
    #[error("the session kept changing under this save; gave up after {attempts} attempts")]
    Contended {
        /// How many saves were tried.
        attempts: u32,
    },
    /// A value is larger, once encoded as JSON, than the configured limit.
    #[error(
        "session key `{key}` would hold {size} bytes of JSON, over the limit of {limit} \
         (`with_max_value_bytes`)"
    )]
    TooLarge {
        /// The session key concerned.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value nests deeper than the configured limit.
    #[error("session key `{key}` nests deeper than {limit} levels (`with_max_depth`)")]
    TooDeep {
        /// The session key concerned.
        key: String,
        /// The limit.
        limit: usize,
    },
    /// Too many handlers of this session are already waiting for their turn on this node
    /// ([`Config::max_waiting_handlers`](crate::Config::max_waiting_handlers)): this one was
    /// refused at once rather than queued.
    #[error(
        "too many handlers of this session are waiting for their turn (`max_waiting_handlers`); \
         this event was refused"
    )]
    Busy,
    /// The socket disconnected before this handler's turn came: its changes were not made.
    #[error("the socket disconnected before this handler's turn; nothing was changed")]
    SocketClosed,
    /// The key is reserved for this crate's own bookkeeping.
    #[error("session key `{0}` is reserved")]
    ReservedKey(String),
    /// The socket has no session: the connect middleware was not installed on its namespace.
    #[error(
        "this socket has no session: install the middleware with \
         `io.ns(\"/\", on_connect.with(sessions.middleware()))`"
    )]
    NotEnabled,
}

impl SessionError {
    pub(crate) fn serde(key: &str, source: serde_json::Error) -> Self {
        SessionError::Serde {
            key: key.to_owned(),
            source,
        }
    }
}
