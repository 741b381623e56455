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
use tower_sessions::service::{PrivateCookie, SignedCookie};
use tower_sessions::session::Id;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

use crate::client::{ClientAddr, HandshakeRate, Throttle};
use crate::config::{Config, Mode};
use crate::connect::{
    BindHook, Connect, ConnectCheck, Guards, IdSources, InvalidHook, InvalidSession, RequireHook,
    SessionMiddleware,
};
use crate::csrf::CsrfLayer;
use crate::error::{ConfigError, InvalidReason, SessionError};
use crate::guard::{FailureLimit, Failures, InFlight};
use crate::http::HttpStore;
use crate::id::{CookieConfig, CookieKey, ExpressSecrets};
use crate::install::SocketSessionsLayer;
use crate::lifecycle::{
    EndHook, EndReason, IoBroadcaster, Lifecycle, Reach, SessionEnd, ShutdownReport, user_room,
};
use crate::origin::{MissingOrigin, OriginLayer, OriginPolicy};
use crate::proxy::TrustedProxies;
use crate::session::{Policy, Registry};
use crate::store::{ConditionalStore, StoreHandle};
use crate::task::Stop;

/// Session support for a socketioxide app: built once with [`SocketSessions::builder`], then
/// installed with two layers, [`session_layer`](SocketSessions::session_layer) (the HTTP
/// sessions, over the same store, cookie and expiry) inside
/// [`layer`](SocketSessions::layer) (origin gate → Socket.IO → HTTP scope), and
/// [`middleware`](SocketSessions::middleware) on each namespace. Call
/// [`shutdown`](SocketSessions::shutdown) when the server stops. A runnable version with a
/// SQLite store, login and logout is `examples/minimal.rs`.
///
/// ```no_run
/// use axum::{Router, routing::post};
/// use socketio_sessions::{Mode, SocketSession, SocketSessions, store::MemoryStore};
/// use socketioxide::{SocketIo, extract::{AckSender, SocketRef}, handler::ConnectHandler};
/// use tower_sessions::{Expiry, Session};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // A store with compare-and-set saves: no writer (tab, node, HTTP request) overwrites
///     // another.
///     let sessions = SocketSessions::builder(MemoryStore::default())
///         .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)))
///         .with_mode(Mode::PerMessage)
///         .with_allowed_origins(["https://app.example.com"])
///         .build()?;
///
///     let (sio_layer, io) = SocketIo::new_layer();
///     // Handlers registered in `with_setup` exist before the client's connect ack, so that no
///     // early event finds its handler missing.
///     let middleware = sessions.middleware().with_setup(|socket: SocketRef| {
///         socket.on("incr", async |session: SocketSession, ack: AckSender| {
///             let n = session.update("count", |n: Option<u64>| n.unwrap_or(0) + 1).await;
///             ack.send(&n.ok()).ok();
///         });
///     });
///     io.ns("/", (async |session: SocketSession| {
///         let user: Option<String> = session.get("user").await.ok().flatten();
///         tracing::info!(?user, "connected");
///     }).with(middleware));
///     sessions.attach(&io);
///
///     let app = Router::new()
///         .route("/login", post(async |session: Session| {
///             session.cycle_id().await.ok(); // a new id at login: the old cookie stops working
///             session.insert("user", "alice").await.ok();
///         }))
///         .layer(sessions.session_layer())  // tower-sessions, on the sessions' store and cookie
///         .layer(sessions.layer(sio_layer)); // origin gate → Socket.IO → HTTP scope
///
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     let on_stop = sessions.clone();
///     // With connect info, the per-address failure limit sees client addresses.
///     axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
///         .with_graceful_shutdown(async move {
///             tokio::signal::ctrl_c().await.ok();
///             // Saves what sockets changed and tells them to reconnect, before the server stops.
///             on_stop.shutdown().await;
///         })
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct SocketSessions {
    /// Shared by every namespace's middleware.
    connect: Arc<Connect>,
    /// The origin gate's policy and path, handed to each `OriginLayer`.
    origin: Arc<OriginPolicy>,
    path: Arc<str>,
    /// The cookie format, for [`session_id`](Self::session_id) and the session layers.
    cookie: Arc<CookieConfig>,
    /// New Engine.IO sessions per address, shared by every `OriginLayer` made here.
    throttle: Option<Arc<Throttle>>,
    /// How the origin gate finds the client behind trusted proxies (`ConnectInfo` if `None`).
    client_addr: Option<ClientAddr>,
    /// The HTTP layer's expiry, for the session layers.
    expiry: Option<Expiry>,
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
    /// use socketio_sessions::{SocketSessions, store::MemoryStore};
    /// let sessions = SocketSessions::builder(MemoryStore::default())
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
    /// that cannot compare, knowing this; prefer [`builder`](Self::builder). Given a store of
    /// tower-sessions' own that this crate has a compare-and-set twin of (e.g.
    /// `tower_sessions::MemoryStore`), [`build`](SocketSessionsBuilder::build) logs a warning
    /// naming the twin.
    pub fn builder_last_writer_wins<S: SessionStore>(store: S) -> SocketSessionsBuilder {
        let mut builder = SocketSessionsBuilder::new(Store::Plain(Arc::new(store)));
        builder.twin = conditional_twin(std::any::type_name::<S>());
        builder
    }

    /// The Socket.IO side as one layer, in the only order that works: the origin gate
    /// outermost (403 before anything parses a handshake), then `sio_layer`, then the HTTP
    /// scope that lets logout and id rotation reach sockets and merges HTTP saves with socket
    /// writes. Add it after (outside) [`session_layer`](Self::session_layer) and the app's
    /// routes: `.layer(sessions.session_layer()).layer(sessions.layer(sio_layer))`.
    ///
    /// Socket.IO stays outside the HTTP session layer: the sessions read the cookie
    /// themselves, and socketioxide keeps each WebSocket's upgrade request for the connection's
    /// life, so a session layer around it would keep that request's session alive per socket.
    pub fn layer<L>(&self, sio_layer: L) -> SocketSessionsLayer<L> {
        SocketSessionsLayer::new(self.origin_layer(), sio_layer)
    }

    /// tower-sessions' `SessionManagerLayer` for the app's HTTP routes, already set to this
    /// configuration's store ([`http_store`](Self::http_store)), cookie name and expiry, for
    /// plain cookies; with [`with_signed`](SocketSessionsBuilder::with_signed) or
    /// [`with_private`](SocketSessionsBuilder::with_private) use
    /// [`signed_session_layer`](Self::signed_session_layer) or
    /// [`private_session_layer`](Self::private_session_layer) (tower-sessions gives each cookie
    /// format its own type). Chain tower-sessions' own settings on it as usual
    /// (`.with_secure(false)` for plain-http development, `.with_same_site(..)`, ...). Not for
    /// [`with_express`](SocketSessionsBuilder::with_express): there the Express app writes the
    /// sessions.
    pub fn session_layer(&self) -> SessionManagerLayer<HttpStore> {
        if matches!(
            self.cookie.key,
            CookieKey::Signed(_) | CookieKey::Private(_)
        ) {
            tracing::error!(
                "`session_layer()` writes plain cookies, but the sockets expect {:?} ones: use \
                 `signed_session_layer()` or `private_session_layer()`",
                self.cookie.key
            );
        }
        self.plain_session_layer()
    }

    fn plain_session_layer(&self) -> SessionManagerLayer<HttpStore> {
        let layer = SessionManagerLayer::new(self.http_store()).with_name(self.cookie.name.clone());
        match self.expiry {
            Some(expiry) => layer.with_expiry(expiry),
            None => layer,
        }
    }

    /// [`session_layer`](Self::session_layer) writing cookies signed with the key given to
    /// [`with_signed`](SocketSessionsBuilder::with_signed).
    pub fn signed_session_layer(&self) -> SessionManagerLayer<HttpStore, SignedCookie> {
        match &self.cookie.key {
            CookieKey::Signed(key) => self.plain_session_layer().with_signed(key.clone()),
            other => {
                tracing::error!(
                    "`signed_session_layer()` without `with_signed(key)` on the builder (it has \
                     {other:?}): its cookies will not open sockets"
                );
                self.plain_session_layer().with_signed(Key::generate())
            }
        }
    }

    /// [`session_layer`](Self::session_layer) writing cookies encrypted with the key given to
    /// [`with_private`](SocketSessionsBuilder::with_private).
    pub fn private_session_layer(&self) -> SessionManagerLayer<HttpStore, PrivateCookie> {
        match &self.cookie.key {
            CookieKey::Private(key) => self.plain_session_layer().with_private(key.clone()),
            other => {
                tracing::error!(
                    "`private_session_layer()` without `with_private(key)` on the builder (it \
                     has {other:?}): its cookies will not open sockets"
                );
                self.plain_session_layer().with_private(Key::generate())
            }
        }
    }

    /// The tower layer that checks the `Origin` of every Engine.IO request, for apps that
    /// assemble the layers themselves; [`layer`](Self::layer) includes it. Add it around the
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

    /// The store for the app's `SessionManagerLayer` (with
    /// [`HttpScopeLayer`](crate::HttpScopeLayer) around it), so that logout, id rotation and
    /// HTTP-side writes reach the sockets. See [`HttpStore`].
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
    ///
    /// With a cluster `config` (e.g. from [`store::redis_config`](crate::store::redis_config)
    /// with `redis-cluster://...`), every primary is subscribed to (a node publishes only its own
    /// keys' events), the cluster's layout is read every second, new primaries (after a
    /// failover) are subscribed to and former ones dropped, and a sweep follows a new primary
    /// being watched (and a resharding, once its moves are over).
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
    /// `session_revoked`. With `with_axum_login` (feature `axum-login`), `user` is the user's
    /// id (`user.id()`): call it after a password change.
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
    /// 4. background work stops: the expiry task, revalidation, keyspace notifications.
    ///
    /// Call it before the server stops (e.g. in axum's `with_graceful_shutdown`). Calling it
    /// again does nothing. Per-connection changes can still be lost by a crash (everything
    /// since the last save: bounded by write-behind) or by a store that is down for the whole
    /// shutdown (counted in [`ShutdownReport::unsaved`]).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.connect.lifecycle.shutdown().await
    }
}

/// The compare-and-set store of this crate that stands in for the tower-sessions store named
/// `type_name`, if there is one.
fn conditional_twin(type_name: &str) -> Option<&'static str> {
    const TWINS: &[(&str, &str)] = &[
        (
            "tower_sessions_memory_store::MemoryStore",
            "socketio_sessions::store::MemoryStore",
        ),
        (
            "tower_sessions_sqlx_store::sqlite_store::SqliteStore",
            "socketio_sessions::store::SqliteStore",
        ),
        (
            "tower_sessions_sqlx_store::postgres_store::PostgresStore",
            "socketio_sessions::store::PostgresStore",
        ),
        (
            "tower_sessions_sqlx_store::mysql_store::MySqlStore",
            "socketio_sessions::store::MySqlStore",
        ),
        (
            "tower_sessions_redis_store::RedisStore",
            "socketio_sessions::store::RedisStore",
        ),
    ];
    TWINS
        .iter()
        .find(|(plain, _)| type_name.starts_with(plain))
        .map(|(_, twin)| *twin)
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
    /// Handed to the lifecycle (and an integration's sockets) at `build`.
    on_end: Option<EndHook>,
    require: Option<RequireHook>,
    /// Builds the bind hook of an integration once the `on_end` hook is known (at `build`).
    bind: Option<Box<dyn FnOnce(Option<EndHook>) -> BindHook + Send>>,
    /// An integration's check of each bound handshake.
    check: Option<ConnectCheck>,
    client_addr: Option<ClientAddr>,
    /// The compare-and-set twin of a plain store given to `builder_last_writer_wins`.
    twin: Option<&'static str>,
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
            on_end: None,
            require: None,
            bind: None,
            check: None,
            client_addr: None,
            twin: None,
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
    /// with these secrets. Use it with
    /// [`store::ConnectRedisStore`](crate::store::ConnectRedisStore) over the app's connect-redis
    /// database.
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

    /// Calls `hook` for every socket this node ends because its session ended (logout,
    /// rotation, expiry, `end_session`, `disconnect_user`, shutdown, a login no longer valid),
    /// right before its `sinvalid` event, with the reason, the session's tag and the user (see
    /// [`with_user_key`](Self::with_user_key)). Sockets on other nodes are told on their node
    /// when it ends them itself. Disconnect handlers get the same reason from
    /// [`SessionEnded`](crate::SessionEnded).
    ///
    /// ```
    /// # use socketio_sessions::SocketSessions;
    /// let sessions = SocketSessions::builder(socketio_sessions::store::MemoryStore::default())
    ///     .with_any_origin()
    ///     .on_end(|end| tracing::info!(reason = %end.reason, session = %end.session, "ended"))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn on_end(mut self, hook: impl Fn(&SessionEnd) + Send + Sync + 'static) -> Self {
        self.on_end = Some(Arc::new(hook));
        self
    }

    /// Accepts only sessions whose data `check` approves: the others are refused with
    /// `session_invalid` ([`InvalidReason::NotAllowed`]), e.g. anonymous sessions of an app
    /// whose sockets are for logged-in users.
    ///
    /// ```
    /// # use socketio_sessions::SocketSessions;
    /// let sessions = SocketSessions::builder(socketio_sessions::store::MemoryStore::default())
    ///     .with_any_origin()
    ///     .require(|data| data.get("user").is_some_and(|u| !u.is_null()))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn require(
        mut self,
        check: impl Fn(&std::collections::HashMap<String, serde_json::Value>) -> bool
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.require = Some(Arc::new(check));
        self
    }

    /// Serves the logins of [axum-login](https://docs.rs/axum-login) 0.18 on sockets:
    ///
    /// - only sessions with a logged-in user get sockets ([`require`](Self::require)); the
    ///   others are refused with `session_invalid`;
    /// - handlers get the user with the [`SocketAuth<B>`](crate::SocketAuth) extractor
    ///   (`backend.get_user`, with the session auth hash checked in constant time): a socket
    ///   whose login is no longer valid (password changed) is ended with `session_revoked`;
    /// - the user key is axum-login's user id, so that
    ///   [`disconnect_user(&user.id())`](SocketSessions::disconnect_user) ends every socket
    ///   of that user on every node (e.g. right after a password change).
    ///
    /// Logout (`auth_session.logout()`) deletes the session: its sockets get `session_revoked`.
    /// A first login rotates the session id: sockets of the anonymous session get
    /// `session_rotated`.
    #[cfg(feature = "axum-login")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum-login")))]
    pub fn with_axum_login<B: axum_login::AuthnBackend + 'static>(mut self, backend: B) -> Self {
        self.config.user_key = Some(format!("/{}/user_id", crate::login::AXUM_LOGIN_DATA_KEY));
        self.require = Some(Arc::new(crate::login::logged_in));
        self.bind = Some(Box::new(move |on_end| {
            crate::login::bind_hook(backend, on_end)
        }));
        self.check = Some(crate::login::connect_check::<B>());
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
    /// that [`SocketSessions::disconnect_user`] reaches every session of that user. A key that
    /// starts with `/` is a JSON pointer whose first segment is the session key, for a user id
    /// inside a value (`/auth/user_id`).
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
    /// failure limit and the rate of new Engine.IO sessions count the client address they
    /// forwarded (the right-most untrusted hop of
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
    /// node (default 512): past it, a handler's first session call fails at once with
    /// [`SessionError::Busy`], so that one socket flooding events cannot queue unbounded work. A
    /// socket with more events refused than this (and at least 256) within one second is
    /// disconnected: every packet it still has buffered is then dropped without running a
    /// handler.
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
        if let Store::Conditional(store) = &self.store
            && let Some(write_timeout) = store.write_timeout()
            && (write_timeout.is_zero() || config.store_timeout <= write_timeout)
        {
            return Err(ConfigError::WriteTimeout {
                store_timeout: config.store_timeout,
                write_timeout,
            });
        }
        crate::observe::describe();
        if let Some(twin) = self.twin {
            tracing::warn!(
                "`builder_last_writer_wins` got a tower-sessions store without compare-and-set; \
                 `{twin}` stores the same records with it: use it with `SocketSessions::builder`"
            );
        }
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
            self.on_end.clone(),
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
            require: self.require,
            on_bind: self.bind.map(|bind| bind(self.on_end)),
            check: self.check,
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
            expiry: config.expiry,
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

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_write_timeout_must_fit_in_the_store_timeout() {
        use crate::store::RedisStore;
        use crate::store::fred::prelude::{Config as RedisConfig, Pool};
        // Never connected: building checks settings only.
        let store = || {
            let pool = Pool::new(RedisConfig::default(), None, None, None, 1).unwrap();
            RedisStore::new(pool).with_write_timeout(Duration::from_secs(1))
        };
        let b = |store| SocketSessions::builder(store).with_any_origin();
        let err = b(store())
            .with_store_timeout(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::WriteTimeout { store_timeout, write_timeout }
                if store_timeout == write_timeout
        ));
        assert!(err.to_string().contains("with_write_timeout"), "{err}");
        let zero = || {
            let pool = Pool::new(RedisConfig::default(), None, None, None, 1).unwrap();
            RedisStore::new(pool).with_write_timeout(Duration::ZERO)
        };
        assert!(matches!(
            b(zero()).build(),
            Err(ConfigError::WriteTimeout { .. })
        ));
        b(store())
            .with_store_timeout(Duration::from_millis(1001))
            .build()
            .unwrap();
    }

    #[test]
    fn plain_stores_name_their_conditional_twin() {
        use std::any::type_name;
        let twin = |name| conditional_twin(name).unwrap_or("none");
        assert_eq!(
            twin(type_name::<tower_sessions::MemoryStore>()),
            "socketio_sessions::store::MemoryStore"
        );
        #[cfg(feature = "sqlite")]
        assert_eq!(
            twin(type_name::<tower_sessions_sqlx_store::SqliteStore>()),
            "socketio_sessions::store::SqliteStore"
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            twin(type_name::<tower_sessions_sqlx_store::PostgresStore>()),
            "socketio_sessions::store::PostgresStore"
        );
        #[cfg(feature = "mysql")]
        assert_eq!(
            twin(type_name::<tower_sessions_sqlx_store::MySqlStore>()),
            "socketio_sessions::store::MySqlStore"
        );
        #[cfg(feature = "redis")]
        assert_eq!(
            twin(type_name::<
                tower_sessions_redis_store::RedisStore<fred::prelude::Pool>,
            >()),
            "socketio_sessions::store::RedisStore"
        );
        assert_eq!(twin(type_name::<MemoryStore>()), "none");
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
