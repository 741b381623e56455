//! The demo app: HTTP login with tower-sessions, and Socket.IO handlers that share the session.
//! Kept apart from `main.rs` so that the integration tests drive this exact app.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Query, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use socketio_sessions::store::ConditionalStore;
use socketio_sessions::store::fred::clients::SubscriberClient;
use socketio_sessions::store::fred::interfaces::{
    ClusterInterface, EventInterface, PubsubInterface,
};
use socketio_sessions::store::fred::prelude::{Builder as FredBuilder, ReconnectPolicy};
use socketio_sessions::store::fred::types::RespVersion;
use socketio_sessions::{
    ExpressSecrets, FailureLimit, HandshakeRate, InvalidSession, MaybeSocketSession, Mode,
    SocketSession, SocketSessions, SocketSessionsBuilder, TrustedProxies,
};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};
use tokio::sync::broadcast::error::RecvError;
use tower_sessions::cookie::Key;
use tower_sessions::{Expiry, Session, SessionStore};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const SOCKET_IO_JS: &str = include_str!("assets/vendor/socket.io.esm.min.js");
const HELPER_JS: &str = include_str!("../../client/socketio-sessions.js");

/// The longest user name and chat message the demo accepts.
const MAX_NAME: usize = 64;
const MAX_CHAT: usize = 500;

/// The largest Engine.IO message, on both transports: socketioxide's `max_payload` bounds a
/// polling request's body, the WebSocket limits bound a message and a frame (their defaults,
/// 64 MiB and 16 MiB, would let one socket make the server buffer and parse that much before
/// any session check).
pub const MAX_MESSAGE_BYTES: usize = 100_000;
/// How long an Engine.IO connection may stay without joining a namespace (socketioxide's
/// default is 45 s, during which each one is held in memory).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Observes refused socket connections.
pub type InvalidHook = Arc<dyn Fn(&InvalidSession) + Send + Sync>;

/// How the demo is configured; `main.rs` fills it from `DEMO_*` variables.
#[derive(Clone)]
pub struct DemoOptions {
    /// Per-message (default) or per-connection sessions on the sockets.
    pub mode: Mode,
    /// Inactivity expiry of a session.
    pub ttl: Duration,
    /// Origins allowed to open sockets.
    pub allowed_origins: Vec<String>,
    /// Sign the session cookie with this key (plain cookie when `None`).
    pub signing_key: Option<Key>,
    /// Store timeout for the socket side.
    pub store_timeout: Duration,
    /// Per-connection mode: save within this delay of a change (else at disconnect only).
    pub write_behind: Option<Duration>,
    /// How often sessions are checked against the store (deletions nothing announced).
    pub revalidate_every: Duration,
    /// Rolling expiry: socket activity extends the session, one write per interval at most.
    pub rolling: Option<Duration>,
    /// `redis://HOST:PORT` or `redis-cluster://HOST:PORT,...`: run as one of several nodes (Redis
    /// adapter, keyspace notifications).
    pub redis_adapter: Option<String>,
    /// Read an Express app's sessions (its `connect.sid` cookie, signed with these secrets)
    /// instead of the demo's own; the store must then be its connect-redis database.
    pub express_secrets: Option<ExpressSecrets>,
    /// Per-address limit on invalid-session handshakes (`None`: the library's default).
    pub failure_limit: Option<FailureLimit>,
    /// Per-address rate of new Engine.IO sessions (`None`: off; the library's default else).
    pub handshake_rate: Option<HandshakeRate>,
    /// Cap on session loads in flight at connect (`None`: the library's default).
    pub max_loads_in_flight: Option<usize>,
    /// The reverse proxies in front of the demo, whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<TrustedProxies>,
    /// How long an Engine.IO connection may stay without joining a namespace.
    pub connect_timeout: Duration,
    /// Also accept the session cookie's value as `auth: {sid}` (the client model of Node's socket.io-sessions).
    pub auth_sid: bool,
    /// Told about every refused socket connection (Node's socket.io-sessions' `sinvalid`).
    pub on_invalid: Option<InvalidHook>,
    /// Serve `GET /metrics` (Prometheus text) from this process-wide recorder.
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for DemoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoOptions")
            .field("mode", &self.mode)
            .field("ttl", &self.ttl)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl DemoOptions {
    /// The defaults, with the demo's own origin allowed.
    pub fn new(own_origins: Vec<String>) -> Self {
        DemoOptions {
            mode: Mode::PerMessage,
            ttl: Duration::from_secs(3600),
            allowed_origins: own_origins,
            signing_key: None,
            store_timeout: Duration::from_secs(2),
            on_invalid: None,
            auth_sid: false,
            write_behind: None,
            revalidate_every: Duration::from_secs(30),
            rolling: None,
            redis_adapter: None,
            express_secrets: None,
            failure_limit: None,
            handshake_rate: Some(HandshakeRate::default()),
            max_loads_in_flight: None,
            trusted_proxies: None,
            connect_timeout: CONNECT_TIMEOUT,
            metrics: None,
        }
    }
}

/// Errors while building the demo.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The demo app and its sessions (to shut them down with the server).
pub struct DemoApp {
    /// The whole app: pages, HTTP API, Socket.IO.
    pub router: Router,
    /// The sessions, for `shutdown` when the server stops.
    pub sessions: SocketSessions,
}

/// Builds the whole demo app over a store with compare-and-set saves (all the demo's stores).
pub async fn app<S: ConditionalStore + Clone>(
    store: S,
    opts: DemoOptions,
) -> Result<DemoApp, BoxError> {
    build(SocketSessions::builder(store), opts).await
}

/// Builds the whole demo app over any tower-sessions store, last writer wins (the tests use it
/// for that path).
#[allow(dead_code)]
pub async fn app_last_writer_wins<S: SessionStore + Clone>(
    store: S,
    opts: DemoOptions,
) -> Result<DemoApp, BoxError> {
    build(SocketSessions::builder_last_writer_wins(store), opts).await
}

async fn build(sessions: SocketSessionsBuilder, opts: DemoOptions) -> Result<DemoApp, BoxError> {
    let expiry =
        Expiry::OnInactivity(time::Duration::try_from(opts.ttl).unwrap_or(time::Duration::HOUR));
    let mut sessions = sessions
        .with_mode(opts.mode)
        .with_expiry(expiry)
        .with_allowed_origins(&opts.allowed_origins)
        .with_store_timeout(opts.store_timeout)
        .with_auth_sid(opts.auth_sid)
        // The user's id, not their name: `/logout?everywhere=true` must end the caller's own
        // sessions, not those of whoever typed the same name.
        .with_user_key(USER_ID)
        .with_revalidation(opts.revalidate_every);
    if let Some(delay) = opts.write_behind {
        sessions = sessions.with_write_behind(delay);
    }
    if let Some(interval) = opts.rolling {
        sessions = sessions.with_rolling_expiry(interval);
    }
    if let Some(key) = &opts.signing_key {
        sessions = sessions.with_signed(key.clone());
    }
    sessions = match opts.handshake_rate {
        Some(rate) => sessions.with_handshake_rate(rate),
        None => sessions.without_handshake_rate(),
    };
    if let Some(limit) = opts.failure_limit {
        sessions = sessions.with_failure_limit(limit);
    }
    if let Some(max) = opts.max_loads_in_flight {
        sessions = sessions.with_max_loads_in_flight(max);
    }
    if let Some(proxies) = opts.trusted_proxies.clone() {
        sessions = sessions.with_trusted_proxies(proxies);
    }
    if let Some(secrets) = &opts.express_secrets {
        sessions = sessions.with_express(secrets.clone());
    }
    if let Some(hook) = opts.on_invalid.clone() {
        sessions = sessions.on_invalid(move |ev| hook(ev));
    }
    let sessions = sessions.build()?;

    let router = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS) }),
        )
        .route(
            "/vendor/socket.io.esm.min.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SOCKET_IO_JS) }),
        )
        .route(
            "/socketio-sessions.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], HELPER_JS) }),
        )
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/api/visit", post(visit));
    let router = match opts.metrics.clone() {
        Some(handle) => router.route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }),
        ),
        None => router,
    };

    // The HTTP side uses the sessions' store, cookie and expiry, so that logout and id rotation
    // reach the sockets and its saves merge with socket writes. Not `Secure`: plain http on
    // localhost.
    let router = match opts.signing_key {
        Some(_) => router.layer(sessions.signed_session_layer().with_secure(false)),
        None => router.layer(sessions.session_layer().with_secure(false)),
    };
    let router = router
        .layer(Extension(sessions.clone()))
        .layer(Extension(ExpressMode(opts.express_secrets.is_some())))
        // CSRF: `/login`, `/logout` and `/api/visit` (every POST) from a foreign origin or
        // `Origin: null` get 403, with the allowlist of the Socket.IO handshake.
        .layer(sessions.csrf_layer());

    // Socket.IO outside the HTTP session layers (`sessions.layer` puts the origin gate around
    // it and the HTTP scope inside it): the sessions read the cookie themselves, and a
    // WebSocket keeps its upgrade request (with whatever those layers put in it) for life.
    let middleware = sessions.middleware();
    let router = match &opts.redis_adapter {
        // Several nodes: rooms, broadcasts and disconnects cross nodes through Redis, and
        // keyspace notifications tell every node about deletions and expirations.
        Some(url) => {
            // One server or a cluster: on a cluster the adapter's sharded channels and the
            // keyspace notifications go to every node they must.
            let config = socketio_sessions::store::redis_config(url)?;
            let mut adapter_config = config.clone();
            adapter_config.version = RespVersion::RESP3;
            // Reconnects forever, and renews the adapter's subscriptions after a Redis restart
            // or a failover.
            let subscriber = FredBuilder::from_config(adapter_config)
                .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
                .build_subscriber_client()?;
            renew_shard_subscriptions(subscriber.clone());
            let adapter = RedisAdapterCtr::new_with_fred(subscriber).await?;
            let (sio_layer, io) = bounded(SocketIo::builder(), &opts)
                .with_adapter::<FredAdapter<_>>(adapter)
                .build_layer();
            io.ns(
                "/",
                on_connect.with(middleware.with_setup(register_handlers::<FredAdapter<_>>)),
            )
            .await?;
            sessions.attach(&io);
            sessions.watch_redis(config, true).await?;
            router.layer(sessions.layer(sio_layer))
        }
        None => {
            let (sio_layer, io) = bounded(SocketIo::builder(), &opts).build_layer();
            io.ns(
                "/",
                on_connect.with(middleware.with_setup(register_handlers::<LocalAdapter>)),
            );
            sessions.attach(&io);
            router.layer(sessions.layer(sio_layer))
        }
    };
    Ok(DemoApp { router, sessions })
}

/// Subscribes the adapter's sharded channels again after each reconnection (a Redis restart, a
/// cluster failover), until the client is gone. fred's `manage_subscriptions` would, but it
/// sends `SUBSCRIBE` first, with no channel when there is none, which a cluster refuses, and
/// then skips the sharded channels: the only ones the adapter uses. A reconnection can come
/// before a failover is over, while the layout still names the failed primary: a channel that
/// cannot be subscribed yet is tried again on a fresh layout until it is (at most a minute).
fn renew_shard_subscriptions(subscriber: SubscriberClient) {
    tokio::spawn(async move {
        let mut reconnects = subscriber.reconnect_rx();
        loop {
            match reconnects.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
            let mut left: Vec<String> = subscriber
                .tracked_shard_channels()
                .iter()
                .map(|c| c.to_string())
                .collect();
            let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let mut failed = Vec::new();
                for channel in left {
                    if subscriber.ssubscribe(channel.clone()).await.is_err() {
                        failed.push(channel);
                    }
                }
                left = failed;
                if left.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() >= give_up {
                    tracing::warn!(
                        channels = left.len(),
                        "could not renew the adapter's subscriptions within a minute"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                // The failed primary may have been replaced meanwhile.
                subscriber.sync_cluster().await.ok();
            }
        }
    });
}

/// socketioxide with the demo's bounds: messages of at most [`MAX_MESSAGE_BYTES`] on both
/// transports, and a few seconds ([`CONNECT_TIMEOUT`]) for a connection to join a namespace.
fn bounded(builder: SocketIoBuilder, opts: &DemoOptions) -> SocketIoBuilder {
    builder
        .max_buffer_size(1024)
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .ws_max_frame_size(MAX_MESSAGE_BYTES)
        .connect_timeout(opts.connect_timeout)
}

/// Runs before the client's connect ack, so that no early event finds a handler missing.
fn register_handlers<A: Adapter>(socket: SocketRef<A>) {
    socket.on("whoami", whoami::<A>);
    socket.on("incr", incr::<A>);
    socket.on("chat", chat::<A>);
    socket.on_disconnect(on_disconnect::<A>);
}

/// Node's socket.io-sessions' `sconnection(client, session)`: greet the user and tell the others.
async fn on_connect<A: Adapter>(socket: SocketRef<A>, session: SocketSession) {
    let user = session.get::<String>("user").await.ok().flatten();
    socket.emit("welcome", &json!({ "user": user })).ok();
    let presence = json!({ "user": user, "online": true });
    socket.broadcast().emit("presence", &presence).await.ok();
}

/// The session is still readable when the socket goes away.
async fn on_disconnect<A: Adapter>(
    socket: SocketRef<A>,
    MaybeSocketSession(session): MaybeSocketSession,
) {
    let Some(session) = session else { return };
    let user = session.get::<String>("user").await.ok().flatten();
    let presence = json!({ "user": user, "online": false });
    socket.broadcast().emit("presence", &presence).await.ok();
}

/// Acks `{"error": ...}` so that the client learns why, instead of timing out.
fn ack_error<A: Adapter>(ack: AckSender<A>, e: &socketio_sessions::SessionError) {
    tracing::debug!(error = %e, "socket session operation failed");
    let code = match e {
        socketio_sessions::SessionError::Gone => "session_invalid",
        _ => "session_unavailable",
    };
    ack.send(&json!({ "error": code })).ok();
}

async fn whoami<A: Adapter>(session: SocketSession, ack: AckSender<A>) {
    match session.get::<String>("user").await {
        Ok(user) => {
            ack.send(&json!({ "user": user })).ok();
        }
        Err(e) => ack_error(ack, &e),
    }
}

async fn incr<A: Adapter>(session: SocketSession, ack: AckSender<A>) {
    let result = async {
        let n = session
            .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
        if session.mode() == Mode::PerMessage {
            // Persist before the ack, so the client can read it over HTTP at once.
            session.save().await?;
        }
        Ok::<_, socketio_sessions::SessionError>(n)
    }
    .await;
    match result {
        Ok(n) => {
            ack.send(&n).ok();
        }
        Err(e) => ack_error(ack, &e),
    }
}

#[derive(Deserialize)]
struct ChatIn {
    text: String,
}

async fn chat<A: Adapter>(socket: SocketRef<A>, session: SocketSession, Data(msg): Data<ChatIn>) {
    let text: String = msg.text.chars().take(MAX_CHAT).collect();
    if text.trim().is_empty() {
        return;
    }
    let user = session.get::<String>("user").await.ok().flatten();
    let out = json!({ "user": user, "text": text });
    socket.emit("chat", &out).ok();
    socket.broadcast().emit("chat", &out).await.ok();
}

/// The session key holding the user's id, given at login: what `disconnect_user` acts on.
const USER_ID: &str = "uid";

#[derive(Deserialize)]
struct LoginIn {
    name: String,
}

/// Whether the demo reads an Express app's sessions (then logins happen there).
#[derive(Debug, Clone, Copy)]
struct ExpressMode(bool);

/// `POST /login` with a JSON body or a form: `{"name": ...}`.
async fn login(
    session: Session,
    Extension(ExpressMode(express)): Extension<ExpressMode>,
    req: Request,
) -> Response {
    if express {
        let error = "this demo reads the Express app's sessions: log in through the Express app";
        return (StatusCode::CONFLICT, Json(json!({ "error": error }))).into_response();
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let name = if is_json {
        Json::<LoginIn>::from_request(req, &())
            .await
            .map(|Json(l)| l.name)
            .map_err(|e| e.into_response())
    } else {
        Form::<LoginIn>::from_request(req, &())
            .await
            .map(|Form(l)| l.name)
            .map_err(|e| e.into_response())
    };
    let name = match name {
        Ok(n) => n.trim().to_owned(),
        Err(res) => return res,
    };
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("`name` must be 1 to {MAX_NAME} characters") })),
        )
            .into_response();
    }
    // A new id at login defeats session fixation. The user id stays when the same user logs
    // in again on this session; anyone else is another user, whatever name they type.
    let stored = async {
        let same_user = session.get::<String>("user").await?.as_deref() == Some(name.as_str());
        let uid = match session.get::<String>(USER_ID).await? {
            Some(uid) if same_user => uid,
            _ => tower_sessions::session::Id::default().to_string(),
        };
        session.cycle_id().await?;
        session.insert("user", &name).await?;
        session.insert(USER_ID, uid).await
    };
    if let Err(e) = stored.await {
        tracing::warn!(error = %e, "login could not store the session");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "session store unavailable" })),
        )
            .into_response();
    }
    if is_json {
        Json(json!({ "user": name })).into_response()
    } else {
        Redirect::to("/").into_response()
    }
}

#[derive(Deserialize)]
struct LogoutQuery {
    #[serde(default)]
    everywhere: bool,
}

/// `POST /logout`: deletes the session; its sockets are told `session_revoked` and
/// disconnected on every node. `?everywhere=true` also disconnects every other socket of the
/// caller's own user (by the user id in the caller's session: never by a name).
async fn logout(
    session: Session,
    Extension(sessions): Extension<SocketSessions>,
    Query(q): Query<LogoutQuery>,
) -> StatusCode {
    if q.everywhere {
        match session.get::<Value>(USER_ID).await {
            Ok(Some(user)) => {
                if let Err(e) = sessions.disconnect_user(&user).await {
                    tracing::warn!(error = %e, "could not disconnect the user's sockets");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "logout could not read the session");
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
    }
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(e) => {
            tracing::warn!(error = %e, "logout could not delete the session");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// `POST /api/visit`: the HTTP side writes the session too (`visits` + 1).
async fn visit(session: Session) -> Response {
    let write = async {
        // Only a logged-in session counts visits; never start one here.
        if session.get::<Value>("user").await?.is_none() {
            return Ok(None);
        }
        let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
        session.insert("visits", visits).await?;
        Ok::<_, tower_sessions::session::Error>(Some(visits))
    };
    match write.await {
        Ok(Some(visits)) => Json(json!({ "visits": visits })).into_response(),
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "no valid session; POST /login first" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "could not write the session");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "session store unavailable" })),
            )
                .into_response()
        }
    }
}

/// `GET /api/session`: `{"user", "count", "visits"}`, or 401 without a valid session.
async fn session_info(session: Session) -> Response {
    let read = async {
        let user: Option<Value> = session.get("user").await?;
        let count: Option<u64> = session.get("count").await?;
        let visits: Option<u64> = session.get("visits").await?;
        Ok::<_, tower_sessions::session::Error>((user, count, visits))
    };
    match read.await {
        Ok((Some(user), count, visits)) if session.id().is_some() => Json(json!({
            "user": user,
            "count": count.unwrap_or(0),
            "visits": visits.unwrap_or(0),
        }))
        .into_response(),
        Ok(_) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "no valid session; POST /login first" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the session");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "session store unavailable" })),
            )
                .into_response()
        }
    }
}

/// The demo's own origins for an address it listens on (both names of the loopback host).
pub fn own_origins(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        origins.push(format!("http://localhost:{port}"));
    }
    if addr.ip().is_unspecified() {
        origins.push(format!("http://127.0.0.1:{port}"));
        origins.push(format!("http://localhost:{port}"));
    }
    origins
}
