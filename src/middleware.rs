//! The connect middleware: finds the session id, loads the session within the store timeout,
//! and binds the socket to it, or refuses the connection (the seed's `sinvalid`).

use std::fmt::Display;
use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::handler::{ConnectMiddleware, Value};
use socketioxide::socket::Socket;
use tower_sessions::session::Id;

use crate::config::{InvalidSession, Shared};
use crate::error::{ConnectRejection, InvalidReason};
use crate::id::auth_sid;
use crate::origin::OriginChecked;
use crate::session::Binding;

/// Loads the socket's session before the connect handler runs; refuses the connection with
/// `session_invalid` or `session_unavailable` otherwise. Get it from
/// [`SocketSessions::middleware`](crate::SocketSessions::middleware).
#[derive(Debug, Clone)]
pub struct SessionMiddleware {
    shared: Arc<Shared>,
}

impl SessionMiddleware {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        SessionMiddleware { shared }
    }

    fn session_id<A: Adapter>(
        &self,
        s: &Arc<Socket<A>>,
        auth: &Option<Value>,
    ) -> Result<Id, InvalidReason> {
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
            tracing::error!(
                "refusing a Socket.IO connection: the handshake did not pass through the origin \
                 layer; add `.layer(sessions.origin_layer())` around the Socket.IO layer"
            );
            return Err(InvalidReason::OriginNotChecked);
        }
        let id = self.session_id(s, auth)?;
        let live = shared.registry.get_or_create(shared, id);
        match live.load_for_connect().await {
            Ok(true) => {
                tracing::debug!(session = %live.tag, socket = %s.id, "socket bound to session");
                Ok(Binding::new(live))
            }
            Ok(false) => Err(InvalidReason::Unknown),
            Err(failure) => {
                tracing::warn!(session = %live.tag, ?failure, "session store failed at connect");
                Err(failure.reason())
            }
        }
    }
}

impl<A: Adapter> ConnectMiddleware<A, SessionMiddleware> for SessionMiddleware {
    async fn call<'a>(
        &'a self,
        s: Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> Result<(), Box<dyn Display + Send>> {
        {
            match self.bind(&s, auth).await {
                Ok(binding) => {
                    s.extensions.insert(binding);
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
