//! The connect middleware: finds the session id, loads the session within the store timeout,
//! and binds the socket to it, or refuses the connection (the seed's `sinvalid`).

use std::fmt::Display;
use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{ConnectMiddleware, FromConnectParts, Value};
use socketioxide::socket::Socket;

use crate::config::{InvalidSession, Shared};
use crate::error::{ConnectRejection, InvalidReason};
use crate::id::{SessionKey, auth_sid};
use crate::lifecycle::{IoBroadcaster, session_room, user_room};
use crate::origin::OriginChecked;
use crate::session::Binding;
use crate::store::StoreFailure;

/// Loads the socket's session before the connect handler runs; refuses the connection with
/// `session_invalid` or `session_unavailable` otherwise. Get it from
/// [`SocketSessions::middleware`](crate::SocketSessions::middleware).
#[derive(Clone)]
pub struct SessionMiddleware<F = NoSetup> {
    shared: Arc<Shared>,
    setup: F,
}

impl<F> std::fmt::Debug for SessionMiddleware<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("shared", &self.shared)
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
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        SessionMiddleware {
            shared,
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
            shared: self.shared,
            setup,
        }
    }
}

impl<F> SessionMiddleware<F> {
    fn session_id<A: Adapter>(
        &self,
        s: &Arc<Socket<A>>,
        auth: &Option<Value>,
    ) -> Result<SessionKey, InvalidReason> {
        let shared = &self.shared;
        if shared.auth_sid
            && let Some(sid) = auth_sid(s, auth)
        {
            return shared.cookie.id_from_value(&sid);
        }
        if shared.use_cookie {
            return shared.cookie.id_from_headers(&s.req_parts().headers);
        }
        Err(InvalidReason::Missing)
    }

    async fn bind<A: Adapter>(
        &self,
        s: &Arc<Socket<A>>,
        auth: &Option<Value>,
    ) -> Result<Binding, InvalidReason> {
        let shared = &self.shared;
        if shared.require_origin_layer && s.req_parts().extensions.get::<OriginChecked>().is_none()
        {
            crate::origin::report_unchecked_handshake();
            return Err(InvalidReason::OriginNotChecked);
        }
        let ip = match &shared.client_addr {
            Some(addr) => addr(s.req_parts()),
            None => crate::guard::connect_info(s.req_parts()),
        };
        // The id first (no store call): verified cookies are never limited, and a plain id
        // holds a failure slot over its lookup, given back if the session exists.
        let key = self.session_id(s, auth);
        let slot = match (&shared.failures, ip) {
            (Some(f), Some(ip)) => f.admit(ip, &key)?,
            _ => None,
        };
        let key = key?;
        let Some(_permit) = shared.in_flight.try_enter() else {
            return Err(InvalidReason::Overloaded);
        };
        let id = key.id;
        let live = shared.registry.get_or_create(shared, key);
        // Bounded as a whole: waiting behind another socket's load of the same session counts.
        let timeout = shared.store.timeout();
        let user_key = shared.user_key.as_deref();
        let loaded = tokio::time::timeout(timeout, live.load_for_connect(user_key))
            .await
            .unwrap_or(Err(StoreFailure::Timeout(timeout)));
        match loaded {
            Ok(Some(user)) => {
                if !shared.knows_io() {
                    let Ok(io) = SocketIo::<A>::from_connect_parts(s, auth);
                    shared.set_broadcaster(Arc::new(IoBroadcaster(io)));
                }
                shared.start_background();
                // Rooms by hashes, so that an end reaches this socket from any node.
                s.join(session_room(&id));
                if let Some(user) = user {
                    s.join(user_room(&user));
                }
                tracing::debug!(session = %live.tag(), socket = %s.id, "socket bound to session");
                Ok(Binding::new(live))
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
        {
            match self.bind(&s, auth).await {
                Ok(binding) => {
                    s.extensions.insert(binding);
                    self.setup.run(SocketRef::from(s));
                    Ok(())
                }
                Err(reason) => {
                    tracing::debug!(?reason, socket = %s.id, "connection refused its session");
                    if let Some(hook) = &self.shared.on_invalid {
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
}
