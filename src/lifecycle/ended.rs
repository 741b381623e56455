//! What a socket knows about its own end: the reason is marked on each socket this node ends,
//! before the disconnect, so that the app's `on_end` hook and its disconnect handler (through
//! [`SessionEnded`]) learn why.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::FromDisconnectParts;
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};

use super::end::EndReason;
use crate::session::Binding;
use crate::tag::SessionTag;

/// What the [`on_end`](crate::SocketSessionsBuilder::on_end) hook is told about a socket the
/// server ended because its session ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionEnd {
    /// Why the session ended for this socket.
    pub reason: EndReason,
    /// The session, as a salted tag (never the id).
    pub session: SessionTag,
    /// The value under the user key at connect (see
    /// [`with_user_key`](crate::SocketSessionsBuilder::with_user_key)), when there is one.
    pub user: Option<Value>,
    /// The socket's namespace.
    pub namespace: String,
    /// The Socket.IO id of the socket.
    pub socket_id: String,
}

/// Observes ended sockets.
pub(crate) type EndHook = Arc<dyn Fn(&SessionEnd) + Send + Sync>;

/// The user a socket was bound with, kept in its extensions for [`SessionEnd::user`].
#[derive(Debug, Clone)]
pub(crate) struct BoundUser(pub(crate) Value);

/// The reason this node ended a socket, kept in its extensions until the disconnect handler.
#[derive(Debug, Clone, Copy)]
struct Ended(EndReason);

/// Why the server ended this socket's session, for disconnect handlers: `Some` when this node
/// ended it (logout, rotation, expiry, `end_session`, `disconnect_user`, shutdown, a refused
/// login), `None` when the socket went away by itself or was ended by another node through the
/// Socket.IO adapter (the client still got its `sinvalid` event).
///
/// ```
/// use socketio_sessions::SessionEnded;
/// use socketioxide::extract::SocketRef;
///
/// async fn on_disconnect(socket: SocketRef, SessionEnded(reason): SessionEnded) {
///     tracing::info!(socket = %socket.id, ?reason, "socket gone");
/// }
/// # let _ = on_disconnect;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEnded(pub Option<EndReason>);

impl<A: Adapter> FromDisconnectParts<A> for SessionEnded {
    type Error = Infallible;
    fn from_disconnect_parts(s: &Arc<Socket<A>>, _: DisconnectReason) -> Result<Self, Infallible> {
        Ok(SessionEnded(s.extensions.get::<Ended>().map(|e| e.0)))
    }
}

/// Marks a socket as ended by `reason` and tells the hook, before the disconnect. `false` when
/// this node had already ended it (two triggers at once): that end tells it, once.
pub(crate) fn mark<A: Adapter>(
    socket: &SocketRef<A>,
    reason: EndReason,
    hook: Option<&EndHook>,
) -> bool {
    if socket.extensions.insert(Ended(reason)).is_some() {
        return false;
    }
    if let (Some(hook), Some(binding)) = (hook, socket.extensions.get::<Binding>()) {
        hook(&SessionEnd {
            reason,
            session: binding.live().tag().clone(),
            user: socket.extensions.get::<BoundUser>().map(|u| u.0),
            namespace: socket.ns().to_owned(),
            socket_id: socket.id.to_string(),
        });
    }
    true
}

/// Ends one socket of this node: marked, told `sinvalid`, disconnected once it acknowledged or
/// the flush time passed. A socket whose outgoing buffer is full (a flooding client that does not
/// read) leaves its rooms at once, so that nothing more is broadcast to it, and is told and
/// disconnected in the background as soon as it reads; the end does not wait for it.
pub(crate) async fn end_socket<A: Adapter>(
    socket: SocketRef<A>,
    reason: EndReason,
    hook: Option<&EndHook>,
) {
    if mark(&socket, reason, hook) && reach(&socket).await == Reached::Full {
        cut_off(socket);
    }
}

/// An ended socket that a disconnect could not reach: out of its rooms, and reached later.
pub(crate) fn cut_off<A: Adapter>(socket: SocketRef<A>) {
    socket.leave_all();
    keep_trying(socket);
}

/// Whether a socket got what it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Told (when ended) and disconnected, or gone already.
    Done,
    /// Its outgoing buffer is full: what was refused is still to send.
    Full,
}

/// The end's `sinvalid` was sent to this socket: a later try only disconnects it.
#[derive(Debug, Clone, Copy)]
struct Told;

/// A task is trying to reach this socket: one per socket, whatever asked.
#[derive(Debug, Clone, Copy)]
struct Reaching;

/// Sends an ended socket `sinvalid` (once) with an ack request and waits for the ack or the
/// flush time, then disconnects it; any other socket is only disconnected.
async fn reach<A: Adapter>(socket: &SocketRef<A>) -> Reached {
    use super::end::{SINVALID_EVENT, SINVALID_FLUSH};
    if let Some(Ended(reason)) = socket.extensions.get::<Ended>()
        && socket.extensions.get::<Told>().is_none()
    {
        let data = serde_json::json!({ "reason": reason.as_str() });
        match socket
            .timeout(SINVALID_FLUSH)
            .emit_with_ack::<_, Value>(SINVALID_EVENT, &data)
        {
            Ok(ack) => {
                socket.extensions.insert(Told);
                let _ = ack.await;
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => return Reached::Full,
            // Closed meanwhile, or an event that cannot be encoded (never: it is built here).
            Err(_) => {}
        }
    }
    match socket.clone().disconnect() {
        Err(SocketError::InternalChannelFull) => Reached::Full,
        _ => Reached::Done,
    }
}

/// Disconnects a socket (the flood cut-off). The DISCONNECT packet needs room in the socket's
/// outgoing buffer, which a flooding client that does not read may have filled: socketioxide
/// then refuses and does not close, and the disconnect is tried again in the background. An
/// ended socket is left to that task, which tells it why first.
pub(crate) fn disconnect<A: Adapter>(socket: SocketRef<A>) {
    let ended = socket.extensions.get::<Ended>().is_some();
    if ended
        || matches!(
            socket.clone().disconnect(),
            Err(SocketError::InternalChannelFull)
        )
    {
        keep_trying(socket);
    }
}

/// Tries again to reach a socket whose outgoing buffer was full, while it lives, for a client
/// that reads a little: in one task per socket, which reads at each try whether the socket has
/// ended meanwhile (and is then to be told).
fn keep_trying<A: Adapter>(socket: SocketRef<A>) {
    if socket.extensions.insert(Reaching).is_some() {
        return;
    }
    crate::task::spawn_detached(async move {
        let mut reached = false;
        for pause in retry_pauses() {
            tokio::time::sleep(pause).await;
            reached = !socket.connected() || reach(&socket).await == Reached::Done;
            if reached {
                break;
            }
        }
        socket.extensions.remove::<Reaching>();
        if !reached {
            tracing::debug!(socket = %socket.id, "a socket whose client reads nothing could not be reached");
        }
    });
}

/// The pauses between tries to reach a socket whose outgoing buffer is full: from 20 ms, doubling
/// to a second, for about a minute in all, past Engine.IO's default heartbeat (25 s + 20 s),
/// which closes a connection whose client reads nothing at all.
fn retry_pauses() -> impl Iterator<Item = Duration> {
    (0..70u32).map(|n| Duration::from_millis(20u64 << n.min(6)).min(Duration::from_secs(1)))
}
