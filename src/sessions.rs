//! The composition root: [`SocketSessions::builder`] turns a [`Config`] and a store into the
//! parts each stage owns, and [`SocketSessions`] hands out what the app installs. Nothing in
//! the crate imports this module.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tower_sessions::cookie::Key;
use tower_sessions::session::Id;
use tower_sessions::{Expiry, SessionStore};

use crate::client::{ClientAddr, HandshakeRate, Throttle};
use crate::config::{Config, Mode};
use crate::connect::{Connect, Guards, IdSources, InvalidHook, InvalidSession, SessionMiddleware};
use crate::csrf::CsrfLayer;
use crate::error::{ConfigError, InvalidReason, SessionError};
use crate::guard::{FailureLimit, Failures, InFlight};
use crate::http::HttpStore;
use crate::id::{CookieConfig, CookieKey, ExpressSecrets};
use crate::lifecycle::{EndReason, IoBroadcaster, Lifecycle, Reach, ShutdownReport, user_room};
use crate::origin::{MissingOrigin, OriginLayer, OriginPolicy};
use crate::proxy::TrustedProxies;
use crate::session::{Policy, Registry};
use crate::store::{ConditionalStore, StoreHandle};
use crate::task::Stop;

/// Session support for a socketioxide app: built once with [`SocketSessions::builder`], then
/// installed with [`origin_layer`](SocketSessions::origin_layer) (around the Socket.IO layer),
/// [`http_store`](SocketSessions::http_store) (the `SessionManagerLayer`'s store, with
/// [`HttpScopeLayer`](crate::HttpScopeLayer) around it) and
/// [`middleware`](SocketSessions::middleware) (each namespace). Call
/// [`shutdown`](SocketSessions::shutdown) when the server stops.
///
/// ```no_run
/// use axum::Router;
/// use socketio_sessions::{HttpScopeLayer, Mode, SocketSession, SocketSessions, store::MemoryStore};
/// use socketioxide::{SocketIo, extract::{AckSender, SocketRef}, handler::ConnectHandler};
/// use tower_sessions::{Expiry, SessionManagerLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let expiry = Expiry::OnInactivity(time::Duration::hours(1));
/// // A store with compare-and-set saves: no writer (tab, node, HTTP request) overwrites another.
/// let sessions = SocketSessions::builder(MemoryStore::default())
///     .with_expiry(expiry)                       // the same as the HTTP layer's
///     .with_mode(Mode::PerMessage)
///     .with_allowed_origins(["https://app.example.com"])
///     .build()?;
///
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", (async |socket: SocketRef, session: SocketSession| {
///     let user: Option<String> = session.get("user").await.ok().flatten();
///     tracing::info!(?user, "connected");
///     socket.on("incr", async |session: SocketSession, ack: AckSender| {
///         let n: u64 = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1).await.unwrap();
///         ack.send(&n).ok();
///     });
/// }).with(sessions.middleware()));
/// sessions.attach(&io);
///
/// // The HTTP layer uses the sessions' store, so that logout and login (id rotation) reach
/// // the sockets. Socket.IO sits outside it: the sessions read the cookie themselves, and a
/// // WebSocket keeps its upgrade request (and what that layer put in it) for its whole life.
/// let app: Router = Router::new()
///     .layer(SessionManagerLayer::new(sessions.http_store()).with_expiry(expiry))
///     .layer(HttpScopeLayer::new())
///     .layer(sio_layer)
///     .layer(sessions.origin_layer());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let on_stop = sessions.clone();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         tokio::signal::ctrl_c().await.ok();
///         // Saves what sockets changed and tells them to reconnect, before the server stops.
///         on_stop.shutdown().await;
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SocketSessions {
    /// Shared by every namespace's middleware.
    connect: Arc<Connect>,
    /// The origin gate's policy and path, handed to each `OriginLayer`.
    origin: Arc<OriginPolicy>,
    path: Arc<str>,
    /// The cookie format, for [`session_id`](Self::session_id).
    cookie: Arc<CookieConfig>,
    /// New Engine.IO sessions per address, shared by every `OriginLayer` made here.
    throttle: Option<Arc<Throttle>>,
    /// How the origin gate finds the client behind trusted proxies (`ConnectInfo` if `None`).
    client_addr: Option<ClientAddr>,
}

impl fmt::Debug for SocketSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessions")
            .field("connect", &self.connect)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .finish()
    }
}

impl SocketSessions {
    /// Starts a configuration over a store with compare-and-set saves: one of
    /// [`store`](crate::store)'s, or your own [`ConditionalStore`]. Give it the store (or a clone)
    /// whose records the app's HTTP sessions use.
    ///
    /// # Examples
    /// ```
    /// let sessions = socketio_sessions::SocketSessions::builder(socketio_sessions::store::MemoryStore::default())
    ///     .with_allowed_origins(["http://localhost:3000"])
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn builder<S: ConditionalStore>(store: S) -> SocketSessionsBuilder {
        SocketSessionsBuilder::new(Store::Conditional(Arc::new(store)))
    }

    /// Starts a configuration over any tower-sessions store, **without compare-and-set**: the
    /// last writer wins, so a socket's write and an HTTP request's (or two nodes') can overwrite
    /// each other, and a save racing a logout can bring the session back. Use it for stores
    /// that cannot compare, knowing this; prefer [`builder`](Self::builder).
    pub fn builder_last_writer_wins<S: SessionStore>(store: S) -> SocketSessionsBuilder {
        SocketSessionsBuilder::new(Store::Plain(Arc::new(store)))
    }

    /// The tower layer that checks the `Origin` of every Engine.IO request. Add it around the
    /// Socket.IO layer (`.layer(sio_layer).layer(sessions.origin_layer())`).
    pub fn origin_layer(&self) -> OriginLayer {
        OriginLayer::new(self.origin.clone(), self.path.clone())
            .with_throttle(self.throttle.clone(), self.client_addr.clone())
    }

    /// The same origin allowlist as a guard for the app's state-changing HTTP routes: 403 for
    /// a `POST`/`PUT`/`PATCH`/`DELETE` from a foreign origin or `Origin: null` (CSRF). Add it to
    /// the routes that log in, log out or write (see [`CsrfLayer`]).
    pub fn csrf_layer(&self) -> CsrfLayer {
        CsrfLayer::from_shared(self.origin.clone())
    }

    /// The connect middleware that loads the session (or refuses the connection with
    /// `session_invalid` / `session_unavailable`). Install it on each namespace with
    /// `io.ns("/", on_connect.with(sessions.middleware()))`.
    pub fn middleware(&self) -> SessionMiddleware {
        SessionMiddleware::new(self.connect.clone())
    }

    /// The session id this configuration reads from request headers (the session cookie, in
    /// its configured format), without any store call: e.g. to tie an HTTP request to its
    /// sockets. For express-session cookies it is the id derived from the sid.
    ///
    /// ```
    /// # use socketio_sessions::{InvalidReason, SocketSessions};
    /// let sessions = SocketSessions::builder(socketio_sessions::store::MemoryStore::default())
    ///     .with_any_origin().build().unwrap();
    /// let headers = http::HeaderMap::new();
    /// assert_eq!(sessions.session_id(&headers).unwrap_err(), InvalidReason::Missing);
    /// ```
    pub fn session_id(&self, headers: &http::HeaderMap) -> Result<Id, InvalidReason> {
        self.cookie.id_from_headers(headers).map(|k| k.id)
    }

    /// The mode sessions are served in.
    pub fn mode(&self) -> Mode {
        self.connect.policy.mode
    }

    /// How many sessions have sockets on this node right now.
    pub fn live_sessions(&self) -> usize {
        self.connect.registry.len()
    }

    /// The store for the app's `SessionManagerLayer` (with [`HttpScopeLayer`](crate::HttpScopeLayer)
    /// around it), so that logout, id rotation and HTTP-side writes reach the sockets. See
    /// [`HttpStore`].
    pub fn http_store(&self) -> HttpStore {
        HttpStore::new(
            self.connect.store.clone(),
            self.connect.registry.clone(),
            self.connect.lifecycle.clone(),
        )
    }

    /// Tells the sessions which Socket.IO instance to disconnect sockets through. Without it the
    /// first accepted socket tells them; call it at startup when this node may have to end
    /// sessions before any socket connected to it (e.g. a logout served by this node while the
    /// sockets are on another, through the Redis adapter).
    pub fn attach<A: Adapter>(&self, io: &SocketIo<A>) {
        self.connect
            .lifecycle
            .set_broadcaster(Arc::new(IoBroadcaster(io.clone())));
    }

    /// Subscribes to the Redis server's keyspace notifications, so that sockets on this node
    /// learn at once (within a few hundred ms) that their session's record was deleted by
    /// another process or expired. With `configure_server`, adds `Egx` to the server's
    /// `notify-keyspace-events` (keeping what is set, and again after Redis restarts); managed
    /// Redis services may refuse `CONFIG SET`, then set it in their console and pass `false`.
    ///
    /// The subscription reconnects by itself after the connection drops or Redis restarts,
    /// and then sweeps this node's sessions once, ending the sockets whose records went away
    /// meanwhile. Periodic revalidation stays on as a fallback unless turned off. The task ends
    /// at [`shutdown`](Self::shutdown).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn watch_redis(
        &self,
        config: fred::prelude::Config,
        configure_server: bool,
    ) -> Result<tokio::task::JoinHandle<()>, fred::error::Error> {
        crate::lifecycle::watch(&self.connect.lifecycle, config, configure_server).await
    }

    /// Ends every socket of session `id` on every node (through the adapter) with `reason`
    /// (`session_revoked` for [`EndReason::Revoked`]).
    pub async fn end_session(&self, id: &Id, reason: EndReason) {
        self.connect
            .lifecycle
            .end(id, reason, Reach::AllNodes)
            .await;
    }

    /// Ends every socket of every session whose user key (see
    /// [`with_user_key`](SocketSessionsBuilder::with_user_key)) holds `user`, on every node, with
    /// `session_revoked`.
    pub async fn disconnect_user<T: Serialize + ?Sized>(
        &self,
        user: &T,
    ) -> Result<(), SessionError> {
        let key = self.connect.user_key.as_deref().unwrap_or("user");
        let value = serde_json::to_value(user).map_err(|e| SessionError::serde(key, e))?;
        self.connect
            .lifecycle
            .end_room(user_room(&value), EndReason::Revoked, Reach::AllNodes)
            .await;
        Ok(())
    }

    /// Shuts this node's sessions down gracefully, within
    /// [`Config::shutdown_timeout`](crate::Config::shutdown_timeout) (default 10 s):
    ///
    /// 1. new handshakes are refused with `session_unavailable` (clients retry);
    /// 2. every socket bound here receives `sinvalid` with `server_shutdown` and is
    ///    disconnected: clients reconnect, to another node or to this one once it is back;
    /// 3. every unsaved change (per-connection mode, write-behind) is saved, compare-and-set as
    ///    always;
    /// 4. background work stops: expiry timers, revalidation, keyspace notifications.
    ///
    /// Call it before the server stops (e.g. in axum's `with_graceful_shutdown`). Calling it
    /// again does nothing. Per-connection changes can still be lost by a crash (everything
    /// since the last save: bounded by write-behind) or by a store that is down for the whole
    /// shutdown (counted in [`ShutdownReport::unsaved`]).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.connect.lifecycle.shutdown().await
    }
}

/// The store the builder was given, by what it can do.
enum Store {
    Conditional(Arc<dyn ConditionalStore>),
    Plain(Arc<dyn SessionStore>),
}

/// Builder for [`SocketSessions`]: a [`Config`], the store and the hooks. Every `with_*`
/// method consumes and returns it.
pub struct SocketSessionsBuilder {
    store: Store,
    config: Config,
    /// An allowlist entry that did not parse: reported by `build`.
    origin_error: Option<ConfigError>,
    on_invalid: Option<InvalidHook>,
    client_addr: Option<ClientAddr>,
}

impl fmt::Debug for SocketSessionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessionsBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SocketSessionsBuilder {
    fn new(store: Store) -> Self {
        SocketSessionsBuilder {
            store,
            config: Config::default(),
            origin_error: None,
            on_invalid: None,
            client_addr: None,
        }
    }

    /// Replaces the whole configuration (hooks and store stay).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The configuration as set so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session cookie's name; the same as `SessionManagerLayer::with_name` (default `id`).
    pub fn with_cookie_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.cookie_name = name.into();
        self
    }

    /// Reads signed cookies, as written by `SessionManagerLayer::with_signed(key)`.
    pub fn with_signed(mut self, key: Key) -> Self {
        self.config.cookie_key = CookieKey::Signed(key);
        self
    }

    /// Reads private (encrypted) cookies, as written by `SessionManagerLayer::with_private(key)`.
    pub fn with_private(mut self, key: Key) -> Self {
        self.config.cookie_key = CookieKey::Private(key);
        self
    }

    /// Reads the sessions of an Express app instead: express-session's signed cookie (named
    /// `connect.sid` unless [`with_cookie_name`](Self::with_cookie_name) says otherwise), verified
    /// with these secrets. Use it with [`store::ConnectRedisStore`](crate::store::ConnectRedisStore)
    /// over the app's connect-redis database.
    pub fn with_express(mut self, secrets: ExpressSecrets) -> Self {
        if self.config.cookie_name == "id" {
            self.config.cookie_name = "connect.sid".into();
        }
        self.config.cookie_key = CookieKey::Express(secrets);
        self
    }

    /// Turns cookie sessions off: only the `auth` sid (see
    /// [`with_auth_sid`](Self::with_auth_sid)) identifies a session.
    pub fn without_cookies(mut self) -> Self {
        self.config.cookies = false;
        self
    }

    /// Also accepts the session id in the Socket.IO `auth` payload, `{"sid": "<cookie value>"}`
    /// (the client model of Node's socket.io-sessions), for clients that cannot send cookies.
    /// The value is checked exactly as the cookie would be (signature or decryption included).
    /// Off by default.
    pub fn with_auth_sid(mut self, enabled: bool) -> Self {
        self.config.auth_sid = enabled;
        self
    }

    /// Per-connection or per-message (default) loading and saving.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// The session expiry, exactly as given to `SessionManagerLayer::with_expiry`, so that saves
    /// from sockets date the record as the HTTP side would.
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.config.expiry = Some(expiry);
        self
    }

    /// The browser origins allowed to open sockets, as `scheme://host[:port]`, optionally
    /// `scheme://*.domain` for subdomains. See [`OriginPolicy`].
    pub fn with_allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match OriginPolicy::allow_list(origins) {
            Ok(policy) => {
                self.config.origins = Some(policy);
                self.origin_error = None;
            }
            Err(e) => self.origin_error = Some(e),
        }
        self
    }

    /// Allows every origin: a deliberate opt-out of the cross-site WebSocket hijacking check.
    pub fn with_any_origin(mut self) -> Self {
        self.config.origins = Some(OriginPolicy::any());
        self.origin_error = None;
        self
    }

    /// What to do with requests that carry no `Origin` header (default: allow).
    pub fn with_missing_origin(mut self, missing: MissingOrigin) -> Self {
        self.config.missing_origin = missing;
        self
    }

    /// How long a store call may take before the connection is refused with
    /// `session_unavailable`, the handler gets [`SessionError::Timeout`], or the HTTP request
    /// is answered 503 (default 2 s).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// Per-connection mode: save changes within `delay` of the first unsaved change, so a
    /// crash loses at most `delay` of writes (default: save at disconnect only).
    pub fn with_write_behind(mut self, delay: Duration) -> Self {
        self.config.write_behind = Some(delay);
        self
    }

    /// Calls `hook` for every refused connection (Node's socket.io-sessions' `sinvalid`).
    pub fn on_invalid(mut self, hook: impl Fn(&InvalidSession) + Send + Sync + 'static) -> Self {
        self.on_invalid = Some(Arc::new(hook));
        self
    }

    /// The Engine.IO path the origin layer guards (default `/socket.io/`, socketioxide's): the
    /// path with and without its trailing slash, and everything below it.
    pub fn with_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.config.path = path.into();
        self
    }

    /// The largest session cookie value that is decoded (default 8 KiB); larger ones are
    /// refused as malformed without being decoded.
    pub fn with_max_cookie_bytes(mut self, bytes: usize) -> Self {
        self.config.max_cookie_bytes = bytes;
        self
    }

    /// Whether the middleware refuses handshakes that did not pass through the
    /// [`OriginLayer`] (default: yes, so a forgotten layer fails closed and says so).
    pub fn with_origin_layer_required(mut self, required: bool) -> Self {
        self.config.require_origin_layer = required;
        self
    }

    /// The session key that names the user (e.g. `user`): sockets join a room per user, so
    /// that [`SocketSessions::disconnect_user`] reaches every session of that user.
    pub fn with_user_key(mut self, key: impl Into<String>) -> Self {
        self.config.user_key = Some(key.into());
        self
    }

    /// How often sessions with sockets on this node are checked against the store, to end
    /// sockets whose record was deleted or expired behind the library's back (default 30 s).
    /// A check never extends the session's expiry. With Redis keyspace notifications (see
    /// `watch_redis`) deletions are seen at once; keep this as a fallback.
    pub fn with_revalidation(mut self, every: Duration) -> Self {
        self.config.revalidate_every = Some(every);
        self
    }

    /// Turns periodic revalidation off.
    pub fn without_revalidation(mut self) -> Self {
        self.config.revalidate_every = None;
        self
    }

    /// Rolling expiry: socket activity (a message handler that takes the session) moves the
    /// session's inactivity expiry forward, with at most one store write per `interval` per
    /// session. Off by default: then only saves (by sockets or HTTP) move it.
    pub fn with_rolling_expiry(mut self, interval: Duration) -> Self {
        self.config.rolling = Some(interval);
        self
    }

    /// Limits handshakes with invalid or unknown sessions per client address (default 30 per
    /// minute): past the limit, that address's handshakes with unverified ids (plain cookies,
    /// forged or malformed values) are refused with the retryable `session_unavailable`
    /// without a store call. Cookies whose signature or encryption verifies are never limited.
    /// The address is axum's `ConnectInfo<SocketAddr>` (serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`); behind a reverse proxy, see
    /// [`with_trusted_proxies`](Self::with_trusted_proxies) (or
    /// [`with_client_addr`](Self::with_client_addr) for a function of your own).
    pub fn with_failure_limit(mut self, limit: FailureLimit) -> Self {
        self.config.failure_limit = Some(limit);
        self
    }

    /// Turns the per-address failure limit off.
    pub fn without_failure_limit(mut self) -> Self {
        self.config.failure_limit = None;
        self
    }

    /// How many new Engine.IO sessions one client address may open (default: 100 a second
    /// after a burst of 500). The origin gate answers the rest `429` with `Retry-After: 1`
    /// before engineioxide allocates a session, so one client cannot make the server hold
    /// thousands of sessions that never join a namespace. Addresses as for the failure limit
    /// (`ConnectInfo`, or [`with_trusted_proxies`](Self::with_trusted_proxies)); without either,
    /// nothing is throttled.
    pub fn with_handshake_rate(mut self, rate: HandshakeRate) -> Self {
        self.config.handshake_rate = Some(rate);
        self
    }

    /// Turns the per-address rate of new Engine.IO sessions off (for a load test from one
    /// address, say).
    pub fn without_handshake_rate(mut self) -> Self {
        self.config.handshake_rate = None;
        self
    }

    /// How to find a handshake's client address (e.g. from a trusted proxy's header), instead
    /// of axum's `ConnectInfo<SocketAddr>`.
    pub fn with_client_addr(
        mut self,
        addr: impl Fn(&http::request::Parts) -> Option<std::net::IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.client_addr = Some(Arc::new(addr));
        self
    }

    /// The reverse proxies in front of the app: when a handshake comes from one of them, the
    /// failure limit counts the client address they forwarded (the right-most untrusted hop of
    /// `X-Forwarded-For`, or of `Forwarded`), not the proxy's. See [`TrustedProxies`].
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.client_addr = Some(proxies.into_client_addr());
        self
    }

    /// The most session loads in flight at connect (default 1024); more handshakes are refused
    /// at once with `session_unavailable`, so a slow store cannot pile them up.
    pub fn with_max_loads_in_flight(mut self, max: usize) -> Self {
        self.config.max_loads_in_flight = max;
        self
    }

    /// The largest value (as JSON) a socket may store under one key (default 64 KiB).
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.config.max_value_bytes = bytes;
        self
    }

    /// The deepest nesting of a value a socket may store (default 32).
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.config.max_depth = depth;
        self
    }

    /// Per-message mode: the most handlers of one session that may wait for its turn on this
    /// node (default 512):
    /// past it, a handler's first session call fails at once with [`SessionError::Busy`], so
    /// that one socket flooding events cannot queue unbounded work. A socket with more events
    /// refused than this within one second is disconnected: every packet it still has buffered
    /// is then dropped without running a handler.
    pub fn with_max_waiting_handlers(mut self, max: usize) -> Self {
        self.config.max_waiting_handlers = max;
        self
    }

    /// How long [`SocketSessions::shutdown`] may take as a whole (default 10 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Checks the configuration and builds the runtime.
    pub fn build(self) -> Result<SocketSessions, ConfigError> {
        if let Some(e) = self.origin_error {
            return Err(e);
        }
        let config = self.config;
        config.validate()?;
        crate::observe::describe();
        let store = Arc::new(match self.store {
            Store::Conditional(s) => {
                StoreHandle::conditional(s, config.store_timeout, config.expiry)
            }
            Store::Plain(s) => StoreHandle::plain(s, config.store_timeout, config.expiry),
        });
        let cookie = CookieConfig {
            name: config.cookie_name.clone(),
            key: config.cookie_key.clone(),
            max_header_bytes: config.max_cookie_bytes,
        };
        let registry = Arc::new(Registry::default());
        let stop = Arc::new(Stop::default());
        let lifecycle = Arc::new(Lifecycle::new(
            store.clone(),
            registry.clone(),
            stop,
            config.revalidate_every,
            config.shutdown_timeout,
        ));
        let connect = Connect {
            ids: IdSources {
                cookie: cookie.clone(),
                use_cookie: config.cookies,
                // Without cookies the `auth` sid is the only source.
                use_auth: config.auth_sid || !config.cookies,
            },
            guards: Guards {
                require_origin_layer: config.require_origin_layer,
                failures: config.failure_limit.map(Failures::new),
                client_addr: self.client_addr.clone(),
                in_flight: InFlight::new(config.max_loads_in_flight),
            },
            on_invalid: self.on_invalid,
            user_key: config.user_key.clone(),
            registry,
            store,
            policy: Arc::new(Policy::new(&config)),
            lifecycle,
        };
        Ok(SocketSessions {
            connect: Arc::new(connect),
            origin: Arc::new(config.origin_policy()),
            path: Arc::from(config.path.as_ref()),
            cookie: Arc::new(cookie),
            throttle: config.handshake_rate.map(|r| Arc::new(Throttle::new(r))),
            client_addr: self.client_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn cookie_mode_needs_an_origin_decision() {
        let err = SocketSessions::builder(MemoryStore::default())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoOriginPolicy));
        assert!(err.to_string().contains("with_allowed_origins"));
        SocketSessions::builder(MemoryStore::default())
            .with_any_origin()
            .build()
            .unwrap();
        SocketSessions::builder(MemoryStore::default())
            .without_cookies()
            .build()
            .unwrap();
    }

    #[test]
    fn bad_settings_are_refused() {
        let b = || SocketSessions::builder(MemoryStore::default()).with_any_origin();
        assert!(matches!(
            b().with_store_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroTimeout)
        ));
        assert!(matches!(
            b().with_write_behind(Duration::ZERO).build(),
            Err(ConfigError::ZeroWriteBehind)
        ));
        assert!(matches!(
            b().with_max_loads_in_flight(0).build(),
            Err(ConfigError::ZeroLimit)
        ));
        assert!(matches!(
            SocketSessions::builder(MemoryStore::default())
                .with_allowed_origins(["localhost:3000"])
                .build(),
            Err(ConfigError::InvalidOrigin { .. })
        ));
    }

    #[test]
    fn a_config_is_plain_data_the_builder_fills() {
        let config = Config {
            mode: Mode::PerConnection,
            origins: Some(OriginPolicy::any()),
            ..Config::default()
        };
        let builder = SocketSessions::builder(MemoryStore::default()).with_config(config);
        assert_eq!(builder.config().mode, Mode::PerConnection);
        let sessions = builder.build().unwrap();
        assert_eq!(sessions.mode(), Mode::PerConnection);
        assert!(Config::default().validate().is_err(), "no origin decision");
    }
}
