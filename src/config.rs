//! The builder: everything that makes a socketioxide namespace session-aware, in one place.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tower_sessions::cookie::Key;
use tower_sessions::session::Id;
use tower_sessions::{Expiry, SessionStore};

use crate::csrf::CsrfLayer;
use crate::error::{ConfigError, InvalidReason, SessionError};
use crate::guard::{ClientAddr, FailureLimit, Failures, InFlight};
use crate::http::HttpStore;
use crate::id::{CookieConfig, CookieKey, ExpressSecrets};
use crate::lifecycle::{Broadcaster, EndReason, IoBroadcaster, session_room, user_room};
use crate::middleware::SessionMiddleware;
use crate::origin::{MissingOrigin, OriginLayer, OriginPolicy};
use crate::proxy::TrustedProxies;
use crate::registry::Registry;
use crate::store::{ConditionalStore, StoreHandle};

/// When the socket side loads and saves the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Load once at connect; save at disconnect if modified (sooner with
    /// [`with_write_behind`](SocketSessionsBuilder::with_write_behind)). Cheapest; the socket sees
    /// HTTP-side changes only when it reconnects.
    PerConnection,
    /// Reload before each message handler and save after it if modified, one handler at a time
    /// per session on this node. The socket always sees the current session.
    #[default]
    PerMessage,
}

/// What the `sinvalid` hook is told about a refused connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InvalidSession {
    /// Why the session was refused.
    pub reason: InvalidReason,
    /// The namespace the client tried to join.
    pub namespace: String,
    /// The Socket.IO id of the refused socket.
    pub socket_id: String,
}

type InvalidHook = Arc<dyn Fn(&InvalidSession) + Send + Sync>;

/// Configuration shared by the middleware, the extractors and every live session.
pub(crate) struct Shared {
    pub(crate) store: StoreHandle,
    pub(crate) cookie: CookieConfig,
    pub(crate) use_cookie: bool,
    pub(crate) auth_sid: bool,
    pub(crate) mode: Mode,
    pub(crate) write_behind: Option<Duration>,
    pub(crate) on_invalid: Option<InvalidHook>,
    pub(crate) require_origin_layer: bool,
    pub(crate) salt: [u8; 16],
    pub(crate) registry: Registry,
    pub(crate) user_key: Option<String>,
    pub(crate) revalidate_every: Option<Duration>,
    pub(crate) rolling: Option<Duration>,
    pub(crate) failures: Option<Failures>,
    pub(crate) client_addr: Option<ClientAddr>,
    pub(crate) in_flight: InFlight,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_depth: usize,
    broadcaster: RwLock<Option<Arc<dyn Broadcaster>>>,
    background_started: AtomicBool,
}

impl Shared {
    /// Ends the sockets of session `id` with `reason`: on every node, or on this one only.
    pub(crate) async fn end(&self, id: &Id, reason: EndReason, local_only: bool) {
        self.end_room(session_room(id), reason, local_only).await;
    }

    async fn end_room(&self, room: String, reason: EndReason, local_only: bool) {
        let broadcaster = self
            .broadcaster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match broadcaster {
            Some(b) => b.end(room, reason, local_only).await,
            None => tracing::debug!(
                %reason,
                "no Socket.IO instance known yet (call `attach`): nothing to disconnect"
            ),
        }
    }

    pub(crate) fn knows_io(&self) -> bool {
        self.broadcaster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub(crate) fn set_broadcaster(&self, b: Arc<dyn Broadcaster>) {
        *self.broadcaster.write().unwrap_or_else(|e| e.into_inner()) = Some(b);
    }

    /// Starts the revalidation task, once.
    pub(crate) fn start_background(self: &Arc<Self>) {
        let Some(every) = self.revalidate_every else {
            return;
        };
        if self.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        crate::session::spawn_detached(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.revalidate().await;
            }
        });
    }

    /// Checks every session with sockets on this node against the store, without touching its
    /// expiry: those that vanished are ended here.
    async fn revalidate(&self) {
        for live in self.registry.all() {
            match self.store.load(&live.id).await {
                Ok(Some(loaded)) => live.note_expiry(Some(loaded.record.expiry_date)),
                Ok(None) => {
                    let reason = if live.past_expiry() {
                        EndReason::Expired
                    } else {
                        EndReason::Revoked
                    };
                    tracing::debug!(session = %live.tag(), %reason, "revalidation: session gone");
                    self.end(&live.id, reason, true).await;
                }
                Err(failure) => {
                    tracing::debug!(session = %live.tag(), ?failure, "revalidation skipped");
                }
            }
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("cookie", &self.cookie)
            .field("use_cookie", &self.use_cookie)
            .field("auth_sid", &self.auth_sid)
            .field("mode", &self.mode)
            .field("write_behind", &self.write_behind)
            .finish_non_exhaustive()
    }
}

/// Session support for a socketioxide app: built once with [`SocketSessions::builder`], then
/// installed with [`origin_layer`](SocketSessions::origin_layer) (HTTP side) and
/// [`middleware`](SocketSessions::middleware) (each namespace).
///
/// ```no_run
/// use axum::Router;
/// use socketio_sessions::{Mode, SocketSession, SocketSessions};
/// use socketioxide::{SocketIo, extract::{AckSender, SocketRef}, handler::ConnectHandler};
/// use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::default();
/// let expiry = Expiry::OnInactivity(time::Duration::hours(1));
/// let sessions = SocketSessions::builder(store.clone())
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
///         session.save().await.unwrap();
///         ack.send(&n).ok();
///     });
/// }).with(sessions.middleware()));
///
/// // Socket.IO outside the HTTP session layer: the sessions read the cookie themselves, and a
/// // WebSocket keeps its upgrade request (and what that layer put in it) for its whole life.
/// let app: Router = Router::new()
///     .layer(SessionManagerLayer::new(store).with_expiry(expiry))
///     .layer(sio_layer)
///     .layer(sessions.origin_layer());
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SocketSessions {
    shared: Arc<Shared>,
    origin: Arc<OriginPolicy>,
    path: Arc<str>,
}

impl fmt::Debug for SocketSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessions")
            .field("shared", &self.shared)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .finish()
    }
}

impl SocketSessions {
    /// Starts a configuration over any tower-sessions store: give it the store (or a clone of
    /// it) that the app's `SessionManagerLayer` uses.
    ///
    /// # Examples
    /// ```
    /// let sessions = socketio_sessions::SocketSessions::builder(tower_sessions::MemoryStore::default())
    ///     .with_allowed_origins(["http://localhost:3000"])
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn builder<S: SessionStore>(store: S) -> SocketSessionsBuilder {
        Self::builder_for(StoreHandle::detect(store))
    }

    /// Starts a configuration over a store with conditional saves (your own
    /// [`ConditionalStore`] implementation; the stores in [`store`](crate::store) are detected by
    /// [`builder`](Self::builder) already).
    pub fn builder_conditional<S: ConditionalStore>(store: S) -> SocketSessionsBuilder {
        Self::builder_for(StoreHandle::conditional(Arc::new(store)))
    }

    fn builder_for(store: StoreHandle) -> SocketSessionsBuilder {
        SocketSessionsBuilder {
            store,
            cookie_name: "id".into(),
            cookie_key: CookieKey::Plain,
            cookies: true,
            auth_sid: false,
            mode: Mode::default(),
            expiry: None,
            origins: None,
            missing_origin: MissingOrigin::default(),
            store_timeout: Duration::from_secs(2),
            write_behind: None,
            on_invalid: None,
            path: "/socket.io/".into(),
            max_cookie_bytes: 8 * 1024,
            require_origin_layer: true,
            user_key: None,
            revalidate_every: Some(Duration::from_secs(30)),
            rolling: None,
            failure_limit: Some(FailureLimit::default()),
            client_addr: None,
            max_loads_in_flight: 1024,
            max_value_bytes: 64 * 1024,
            max_depth: 32,
        }
    }

    /// The tower layer that checks the `Origin` of every Engine.IO request. Add it around the
    /// Socket.IO layer (`.layer(sio_layer).layer(sessions.origin_layer())`).
    pub fn origin_layer(&self) -> OriginLayer {
        OriginLayer::new(self.origin.clone(), self.path.clone())
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
        SessionMiddleware::new(self.shared.clone())
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
        self.shared.cookie.id_from_headers(headers).map(|k| k.id)
    }

    /// The mode sessions are served in.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// How many sessions have sockets on this node right now.
    pub fn live_sessions(&self) -> usize {
        self.shared.registry.len()
    }

    /// The store for the app's `SessionManagerLayer` (with [`HttpScopeLayer`](crate::HttpScopeLayer) around it), so
    /// that logout, id rotation and HTTP-side writes reach the sockets. See [`HttpStore`].
    pub fn http_store(&self) -> HttpStore {
        HttpStore::new(self.shared.clone())
    }

    /// Tells the sessions which Socket.IO instance to disconnect sockets through. Without it the
    /// first accepted socket tells them; call it at startup when this node may have to end
    /// sessions before any socket connected to it (e.g. a logout served by this node while the
    /// sockets are on another, through the Redis adapter).
    pub fn attach<A: Adapter>(&self, io: &SocketIo<A>) {
        self.shared
            .set_broadcaster(Arc::new(IoBroadcaster(io.clone())));
    }

    /// Subscribes to the Redis server's keyspace notifications, so that sockets on this node
    /// learn at once (within a few hundred ms) that their session's record was deleted by
    /// another process or expired. With `configure_server`, adds `Egx` to the server's
    /// `notify-keyspace-events` (keeping what is set); managed Redis services may refuse
    /// `CONFIG SET`, then set it in their console and pass `false`. Periodic revalidation stays
    /// on as a fallback unless turned off.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn watch_redis(
        &self,
        config: fred::prelude::Config,
        configure_server: bool,
    ) -> Result<tokio::task::JoinHandle<()>, fred::error::Error> {
        crate::watch_redis::watch(self.shared.clone(), config, configure_server).await
    }

    /// Ends every socket of session `id`, on every node (through the adapter), with
    /// `session_revoked`.
    pub async fn disconnect_session(&self, id: &Id) {
        self.shared.end(id, EndReason::Revoked, false).await;
    }

    /// Ends every socket of session `id` on every node with the given reason.
    pub async fn end_session(&self, id: &Id, reason: EndReason) {
        self.shared.end(id, reason, false).await;
    }

    /// Ends every socket of every session whose user key (see
    /// [`with_user_key`](SocketSessionsBuilder::with_user_key)) holds `user`, on every node, with
    /// `session_revoked`.
    pub async fn disconnect_user<T: Serialize + ?Sized>(
        &self,
        user: &T,
    ) -> Result<(), SessionError> {
        let key = self.shared.user_key.as_deref().unwrap_or("user");
        let value = serde_json::to_value(user).map_err(|e| SessionError::serde(key, e))?;
        self.shared
            .end_room(user_room(&value), EndReason::Revoked, false)
            .await;
        Ok(())
    }
}

/// Builder for [`SocketSessions`]; every `with_*` method consumes and returns it.
pub struct SocketSessionsBuilder {
    store: StoreHandle,
    cookie_name: Cow<'static, str>,
    cookie_key: CookieKey,
    cookies: bool,
    auth_sid: bool,
    mode: Mode,
    expiry: Option<Expiry>,
    origins: Option<Result<OriginPolicy, ConfigError>>,
    missing_origin: MissingOrigin,
    store_timeout: Duration,
    write_behind: Option<Duration>,
    on_invalid: Option<InvalidHook>,
    path: Cow<'static, str>,
    max_cookie_bytes: usize,
    require_origin_layer: bool,
    user_key: Option<String>,
    revalidate_every: Option<Duration>,
    rolling: Option<Duration>,
    failure_limit: Option<FailureLimit>,
    client_addr: Option<ClientAddr>,
    max_loads_in_flight: usize,
    max_value_bytes: usize,
    max_depth: usize,
}

impl fmt::Debug for SocketSessionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessionsBuilder")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_key", &self.cookie_key)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SocketSessionsBuilder {
    /// The session cookie's name; the same as `SessionManagerLayer::with_name` (default `id`).
    pub fn with_cookie_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Reads signed cookies, as written by `SessionManagerLayer::with_signed(key)`.
    pub fn with_signed(mut self, key: Key) -> Self {
        self.cookie_key = CookieKey::Signed(key);
        self
    }

    /// Reads private (encrypted) cookies, as written by `SessionManagerLayer::with_private(key)`.
    pub fn with_private(mut self, key: Key) -> Self {
        self.cookie_key = CookieKey::Private(key);
        self
    }

    /// Reads the sessions of an Express app instead: express-session's signed cookie (named
    /// `connect.sid` unless [`with_cookie_name`](Self::with_cookie_name) says otherwise), verified
    /// with these secrets. Use it with [`store::ConnectRedisStore`](crate::store::ConnectRedisStore)
    /// over the app's connect-redis database.
    pub fn with_express(mut self, secrets: ExpressSecrets) -> Self {
        if self.cookie_name == "id" {
            self.cookie_name = "connect.sid".into();
        }
        self.cookie_key = CookieKey::Express(secrets);
        self
    }

    /// Turns cookie sessions off: only the `auth` sid (see
    /// [`with_auth_sid`](Self::with_auth_sid)) identifies a session.
    pub fn without_cookies(mut self) -> Self {
        self.cookies = false;
        self
    }

    /// Also accepts the session id in the Socket.IO `auth` payload, `{"sid": "<cookie value>"}`
    /// (the seed's client model), for clients that cannot send cookies. The value is checked
    /// exactly as the cookie would be (signature or decryption included). Off by default.
    pub fn with_auth_sid(mut self, enabled: bool) -> Self {
        self.auth_sid = enabled;
        self
    }

    /// Per-connection or per-message (default) loading and saving.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The session expiry, exactly as given to `SessionManagerLayer::with_expiry`, so that saves
    /// from sockets date the record as the HTTP side would.
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// The browser origins allowed to open sockets, as `scheme://host[:port]`, optionally
    /// `scheme://*.domain` for subdomains. See [`OriginPolicy`].
    pub fn with_allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.origins = Some(OriginPolicy::allow_list(origins));
        self
    }

    /// Allows every origin: a deliberate opt-out of the cross-site WebSocket hijacking check.
    pub fn with_any_origin(mut self) -> Self {
        self.origins = Some(Ok(OriginPolicy::any()));
        self
    }

    /// What to do with requests that carry no `Origin` header (default: allow).
    pub fn with_missing_origin(mut self, missing: MissingOrigin) -> Self {
        self.missing_origin = missing;
        self
    }

    /// How long a store call may take before the connection is refused with
    /// `session_unavailable` or the handler gets [`SessionError::Timeout`](crate::SessionError)
    /// (default 2 s).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Per-connection mode: save changes within `delay` of the first unsaved change, so a
    /// crash loses at most `delay` of writes (default: save at disconnect only).
    pub fn with_write_behind(mut self, delay: Duration) -> Self {
        self.write_behind = Some(delay);
        self
    }

    /// Calls `hook` for every refused connection (the seed's `sinvalid`).
    pub fn on_invalid(mut self, hook: impl Fn(&InvalidSession) + Send + Sync + 'static) -> Self {
        self.on_invalid = Some(Arc::new(hook));
        self
    }

    /// The Engine.IO path the origin layer guards (default `/socket.io/`, socketioxide's): the
    /// path with and without its trailing slash, and everything below it.
    pub fn with_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.path = path.into();
        self
    }

    /// The largest session cookie value (or `auth` sid) that is parsed (default 8 KiB); larger
    /// ones are refused as malformed without being parsed. The app's other cookies do not
    /// count.
    pub fn with_max_cookie_bytes(mut self, bytes: usize) -> Self {
        self.max_cookie_bytes = bytes;
        self
    }

    /// Whether the middleware refuses handshakes that did not pass through the
    /// [`OriginLayer`] (default: yes, so a forgotten layer fails closed and says so).
    pub fn with_origin_layer_required(mut self, required: bool) -> Self {
        self.require_origin_layer = required;
        self
    }

    /// The session key that names the user (e.g. `user`): sockets join a room per user, so
    /// that [`SocketSessions::disconnect_user`] reaches every session of that user.
    pub fn with_user_key(mut self, key: impl Into<String>) -> Self {
        self.user_key = Some(key.into());
        self
    }

    /// How often sessions with sockets on this node are checked against the store, to end
    /// sockets whose record was deleted or expired behind the library's back (default 30 s).
    /// A check never extends the session's expiry. With Redis keyspace notifications (see
    /// `watch_redis`) deletions are seen at once; keep this as a fallback.
    pub fn with_revalidation(mut self, every: Duration) -> Self {
        self.revalidate_every = Some(every);
        self
    }

    /// Turns periodic revalidation off.
    pub fn without_revalidation(mut self) -> Self {
        self.revalidate_every = None;
        self
    }

    /// Rolling expiry: socket activity (a message handler that takes the session) moves the
    /// session's inactivity expiry forward, with at most one store write per `interval` per
    /// session. Off by default: then only saves (by sockets or HTTP) move it.
    pub fn with_rolling_expiry(mut self, interval: Duration) -> Self {
        self.rolling = Some(interval);
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
        self.failure_limit = Some(limit);
        self
    }

    /// Turns the per-address failure limit off.
    pub fn without_failure_limit(mut self) -> Self {
        self.failure_limit = None;
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
        self.max_loads_in_flight = max;
        self
    }

    /// The largest value (as JSON) a socket may store under one key (default 64 KiB).
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The deepest nesting of a value a socket may store (default 32).
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Checks the configuration and builds it.
    pub fn build(self) -> Result<SocketSessions, ConfigError> {
        if self.store_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.write_behind.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroWriteBehind);
        }
        if self.max_loads_in_flight == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        if self.revalidate_every.is_some_and(|d| d.is_zero())
            || self.rolling.is_some_and(|d| d.is_zero())
        {
            return Err(ConfigError::ZeroInterval);
        }
        let origin = match self.origins {
            Some(policy) => policy?,
            None if self.cookies => return Err(ConfigError::NoOriginPolicy),
            None => OriginPolicy::any(),
        }
        .with_missing(self.missing_origin);
        let cookie = CookieConfig {
            name: self.cookie_name,
            key: self.cookie_key,
            max_header_bytes: self.max_cookie_bytes,
        };
        let shared = Shared {
            store: self.store.with_policy(self.store_timeout, self.expiry),
            auth_sid: self.auth_sid || !self.cookies,
            cookie,
            use_cookie: self.cookies,
            mode: self.mode,
            write_behind: self.write_behind,
            on_invalid: self.on_invalid,
            require_origin_layer: self.require_origin_layer,
            salt: tower_sessions::session::Id::default().0.to_le_bytes(),
            registry: Registry::default(),
            user_key: self.user_key,
            revalidate_every: self.revalidate_every,
            rolling: self.rolling,
            failures: self.failure_limit.map(Failures::new),
            client_addr: self.client_addr,
            in_flight: InFlight::new(self.max_loads_in_flight),
            max_value_bytes: self.max_value_bytes,
            max_depth: self.max_depth,
            broadcaster: RwLock::new(None),
            background_started: AtomicBool::new(false),
        };
        Ok(SocketSessions {
            shared: Arc::new(shared),
            origin: Arc::new(origin),
            path: Arc::from(self.path.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sessions::MemoryStore;

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
            SocketSessions::builder(MemoryStore::default())
                .with_allowed_origins(["localhost:3000"])
                .build(),
            Err(ConfigError::InvalidOrigin { .. })
        ));
    }
}
