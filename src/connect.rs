//! The connect stage, per handshake: origin marker → guards → id → load → bind → rooms, or a
//! refused connection (`connect_error` `session_invalid` / `session_unavailable`; Node's
//! socket.io-sessions called this `sinvalid`).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extensions::Extensions;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{ConnectMiddleware, FromConnectParts, Value};
use socketioxide::socket::Socket;

use tracing::Instrument;

use crate::client::ClientAddr;
use crate::error::{ConnectRejection, InvalidReason};
use crate::guard::{Failures, InFlight};
use crate::id::{CookieConfig, SessionKey, auth_sid};
use crate::lifecycle::{
    BoundUser, IoBroadcaster, Lifecycle, keeps_session_rooms, session_room, user_room,
};
use crate::observe::{self, BINDS, REFUSALS};
use crate::origin::OriginChecked;
use crate::session::{Binding, Connected, LiveSession, Policy, Registry};
use crate::store::{StoreFailure, StoreHandle};

/// What the `on_invalid` hook is told about a refused connection.
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

/// Observes refused connections.
pub(crate) type InvalidHook = Arc<dyn Fn(&InvalidSession) + Send + Sync>;

/// Decides from a session's data whether it may have sockets (e.g. someone is logged in).
pub(crate) type RequireHook =
    Arc<dyn Fn(&HashMap<String, serde_json::Value>) -> bool + Send + Sync>;

/// Checks a bound handshake: `Some(false)` refuses it with `session_invalid`, `None` with
/// `session_unavailable`.
pub(crate) type ConnectCheck = Arc<
    dyn Fn(&Extensions) -> std::pin::Pin<Box<dyn Future<Output = Option<bool>> + Send>>
        + Send
        + Sync,
>;

/// Puts what an integration needs into each accepted socket's extensions (e.g. the axum-login
/// backend), before any handler runs.
pub(crate) type BindHook = Arc<dyn Fn(&Extensions) + Send + Sync>;

/// The value naming a session's user: the value of `key`, or with a key starting with `/`, the
/// JSON pointer's target whose first segment is the session key (`/axum-login.data/user_id`).
/// `null` names nobody.
pub(crate) fn user_of(
    data: &HashMap<String, serde_json::Value>,
    key: &str,
) -> Option<serde_json::Value> {
    let value = match key.strip_prefix('/') {
        None => data.get(key),
        Some(path) => {
            let (first, rest) = path.split_once('/').unwrap_or((path, ""));
            let first = first.replace("~1", "/").replace("~0", "~");
            let root = data.get(&first)?;
            match rest {
                "" => Some(root),
                rest => root.pointer(&format!("/{rest}")),
            }
        }
    };
    value.filter(|v| !v.is_null()).cloned()
}

/// Whether a handshake without a client address was already reported.
static NO_ADDR_LOGGED: AtomicBool = AtomicBool::new(false);

/// The failure limit is on but a handshake carried no client address: the app is not served
/// with connect info, and the limit silently does nothing. Said once.
fn report_no_client_addr() {
    if !NO_ADDR_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a Socket.IO handshake had no client address, so the per-address failure limit and \
             the rate of new Engine.IO sessions are off: serve with `app.into_make_service_with_connect_info::<SocketAddr>()`, or set \
             `with_trusted_proxies` / `with_client_addr` (or `without_failure_limit`); logged \
             once"
        );
    }
}

/// Where a handshake's session id may come from.
#[derive(Debug)]
pub(crate) struct IdSources {
    /// The session cookie's name and protection; also decodes an `auth` sid.
    pub(crate) cookie: CookieConfig,
    /// Whether the cookie is read.
    pub(crate) use_cookie: bool,
    /// Whether the `auth` payload's `sid` is read.
    pub(crate) use_auth: bool,
}

/// The refusals before any store call.
pub(crate) struct Guards {
    /// Whether a handshake must carry the origin layer's marker.
    pub(crate) require_origin_layer: bool,
    /// Per-address failures; `None` when the limit is off.
    pub(crate) failures: Option<Failures>,
    /// Where the client address comes from, when not axum's `ConnectInfo`.
    pub(crate) client_addr: Option<ClientAddr>,
    /// The cap on loads in flight: a semaphore, so that a slow store refuses rather than
    /// piles up handshakes.
    pub(crate) in_flight: InFlight,
}

/// Everything one handshake needs, shared by every namespace's middleware.
pub(crate) struct Connect {
    pub(crate) ids: IdSources,
    pub(crate) guards: Guards,
    /// Observes refusals (Node's socket.io-sessions' `sinvalid`).
    pub(crate) on_invalid: Option<InvalidHook>,
    /// The session key whose value names the user's room (a JSON pointer when it starts
    /// with `/`).
    pub(crate) user_key: Option<String>,
    /// Refuses sessions whose data it rejects, with `session_invalid`.
    pub(crate) require: Option<RequireHook>,
    /// Fills each accepted socket's extensions for an integration.
    pub(crate) on_bind: Option<BindHook>,
    /// An integration's last word on a bound handshake (axum-login: is the login still valid).
    pub(crate) check: Option<ConnectCheck>,
    /// Where handshakes find or make their session's live copy.
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<StoreHandle>,
    pub(crate) policy: Arc<Policy>,
    /// Learns of the `SocketIo` from the first socket, follows each new session's expiry, and
    /// says when the node is shutting down.
    pub(crate) lifecycle: Arc<Lifecycle>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("ids", &self.ids)
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> Connected for Socket<A> {
    fn connected(&self) -> bool {
        Socket::connected(self)
    }
    fn disconnect(self: Arc<Self>) {
        crate::lifecycle::disconnect(self.into());
    }
}

/// Loads the socket's session before the connect handler runs; refuses the connection with
/// `session_invalid` or `session_unavailable` otherwise. Get it from
/// [`SocketSessions::middleware`](crate::SocketSessions::middleware).
#[derive(Clone)]
pub struct SessionMiddleware<F = NoSetup> {
    connect: Arc<Connect>,
    setup: F,
}

impl<F> std::fmt::Debug for SessionMiddleware<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

/// No setup step (see [`SessionMiddleware::with_setup`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSetup;

/// A synchronous step run on an accepted socket before its connect ack is sent.
pub trait Setup<A: Adapter>: Clone + Send + Sync + 'static {
    /// Runs the step.
    fn run(&self, socket: SocketRef<A>);
}

impl<A: Adapter> Setup<A> for NoSetup {
    fn run(&self, _: SocketRef<A>) {}
}

impl<A: Adapter, F> Setup<A> for F
where
    F: Fn(SocketRef<A>) + Clone + Send + Sync + 'static,
{
    fn run(&self, socket: SocketRef<A>) {
        self(socket)
    }
}

impl SessionMiddleware {
    pub(crate) fn new(connect: Arc<Connect>) -> Self {
        SessionMiddleware {
            connect,
            setup: NoSetup,
        }
    }

    /// Registers event handlers (or anything else synchronous) on every accepted socket
    /// **before** the client gets its connect ack.
    ///
    /// socketioxide sends the ack first and then spawns the connect handler, so a client that
    /// emits as soon as it is connected can beat a connect handler to its `socket.on(..)`
    /// calls, and that event is dropped. Handlers registered here cannot miss an event.
    ///
    /// ```
    /// # use socketio_sessions::SocketSessions;
    /// # use socketioxide::{SocketIo, extract::{AckSender, SocketRef}, handler::ConnectHandler};
    /// # let sessions = SocketSessions::builder(socketio_sessions::store::MemoryStore::default())
    /// #     .with_any_origin().build().unwrap();
    /// let (_layer, io) = SocketIo::new_layer();
    /// let middleware = sessions.middleware().with_setup(|socket: SocketRef| {
    ///     socket.on("ping", async |ack: AckSender| { ack.send("pong").ok(); });
    /// });
    /// io.ns("/", (async |_socket: SocketRef| {}).with(middleware));
    /// ```
    pub fn with_setup<F>(self, setup: F) -> SessionMiddleware<F> {
        SessionMiddleware {
            connect: self.connect,
            setup,
        }
    }
}

impl Connect {
    fn session_id<A: Adapter>(
        &self,
        s: &Arc<Socket<A>>,
        auth: &Option<Value>,
    ) -> Result<SessionKey, InvalidReason> {
        let ids = &self.ids;
        if ids.use_auth
            && let Some(sid) = auth_sid(s, auth)
        {
            return ids.cookie.id_from_value(&sid);
        }
        if ids.use_cookie {
            return ids.cookie.id_from_headers(&s.req_parts().headers);
        }
        Err(InvalidReason::Missing)
    }

    fn client_ip<A: Adapter>(&self, s: &Arc<Socket<A>>) -> Option<IpAddr> {
        match &self.guards.client_addr {
            Some(addr) => addr(s.req_parts()),
            None => crate::client::connect_info(s.req_parts()),
        }
    }

    async fn bind<A: Adapter>(
        &self,
        s: &Arc<Socket<A>>,
        auth: &Option<Value>,
    ) -> Result<Binding, InvalidReason> {
        let guards = &self.guards;
        if self.lifecycle.stop.is_stopped() {
            return Err(InvalidReason::ShuttingDown);
        }
        if guards.require_origin_layer && s.req_parts().extensions.get::<OriginChecked>().is_none()
        {
            crate::origin::report_unchecked_handshake();
            return Err(InvalidReason::OriginNotChecked);
        }
        let ip = self.client_ip(s);
        if ip.is_none() && guards.failures.is_some() {
            report_no_client_addr();
        }
        // The id first (no store call): verified cookies are never limited, and a plain id
        // holds a failure slot over its lookup, given back if the session exists.
        let key = self.session_id(s, auth);
        let slot = match (&guards.failures, ip) {
            (Some(f), Some(ip)) => f.admit(ip, &key)?,
            _ => None,
        };
        let key = key?;
        let Some(_permit) = guards.in_flight.try_enter() else {
            return Err(InvalidReason::Overloaded);
        };
        let id = key.id;
        let live = self.registry.get_or_create(id, || {
            LiveSession::new(
                key,
                self.store.clone(),
                self.policy.clone(),
                self.lifecycle.stop.clone(),
                self.lifecycle.expiries.clone(),
            )
        });
        // Bounded as a whole: waiting behind another socket's load of the same session counts.
        let timeout = self.store.timeout();
        let look = |data: &HashMap<String, serde_json::Value>| {
            let allowed = self.require.as_ref().is_none_or(|require| require(data));
            let user = self.user_key.as_deref().and_then(|k| user_of(data, k));
            (allowed, user)
        };
        let loaded = tokio::time::timeout(timeout, live.load_for_connect(look))
            .await
            .unwrap_or(Err(StoreFailure::Timeout(timeout)));
        match loaded {
            // Shut down while this handshake was loading: its socket would outlive the node's
            // session work.
            Ok(Some(_)) if self.lifecycle.stop.is_stopped() => Err(InvalidReason::ShuttingDown),
            Ok(Some((false, _))) => Err(InvalidReason::NotAllowed),
            Ok(Some((true, user))) => {
                if !self.lifecycle.knows_io() {
                    let Ok(io) = SocketIo::<A>::from_connect_parts(s, auth);
                    self.lifecycle.set_broadcaster(Arc::new(IoBroadcaster(io)));
                }
                self.lifecycle.start();
                // Rooms by hashes, so that an end reaches this socket from any node. On the
                // local adapter the binding registers the socket in its live session instead.
                if keeps_session_rooms::<A>() {
                    s.join(session_room(&id));
                }
                if let Some(user) = user {
                    s.join(user_room(&user));
                    s.extensions.insert(BoundUser(user));
                }
                if let Some(on_bind) = &self.on_bind {
                    on_bind(&s.extensions);
                }
                let span = tracing::Span::current();
                if !span.is_disabled() {
                    span.record("session", tracing::field::display(live.tag()));
                }
                tracing::debug!(session = %live.tag(), socket = %s.id, "socket bound to session");
                let socket: std::sync::Weak<dyn Connected> = Arc::downgrade(s) as _;
                Ok(Binding::new(live, socket, s.id))
            }
            Ok(None) => {
                if let Some(slot) = slot {
                    slot.failed();
                }
                Err(InvalidReason::Unknown)
            }
            Err(failure) => {
                tracing::warn!(session = %live.tag(), ?failure, "session store failed at connect");
                Err(failure.reason())
            }
        }
    }
}

impl<A: Adapter, F: Setup<A>> ConnectMiddleware<A, SessionMiddleware> for SessionMiddleware<F> {
    async fn call<'a>(
        &'a self,
        s: Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> Result<(), Box<dyn Display + Send>> {
        // The session field is filled once the id is known: a tag, never the id.
        let span = tracing::info_span!(
            "socketio_sessions.connect",
            socket = %s.id,
            session = tracing::field::Empty
        );
        let checked = async {
            let mut bound = self.connect.bind(&s, auth).await.map(|binding| {
                s.extensions.insert(binding);
            });
            if bound.is_ok()
                && let Some(check) = &self.connect.check
            {
                bound = match check(&s.extensions).await {
                    Some(true) => Ok(()),
                    Some(false) => Err(InvalidReason::NotAllowed),
                    None => Err(InvalidReason::StoreError),
                };
            }
            bound
        };
        match checked.instrument(span).await {
            Ok(()) => {
                observe::count(BINDS);
                self.setup.run(SocketRef::from(s));
                Ok(())
            }
            Err(reason) => {
                tracing::debug!(?reason, socket = %s.id, "connection refused its session");
                observe::count_by(REFUSALS, "reason", reason.as_str());
                if let Some(hook) = &self.connect.on_invalid {
                    hook(&InvalidSession {
                        reason,
                        namespace: s.ns().to_owned(),
                        socket_id: s.id.to_string(),
                    });
                }
                Err(Box::new(ConnectRejection(reason)) as Box<dyn Display + Send>)
            }
        }
    }
}
