//! How a session's end reaches its sockets: the reasons, the rooms, and the broadcast.
//!
//! A socket whose session ends first receives the event [`SINVALID_EVENT`] with
//! `{"reason": ...}` ([`EndReason`]); the server disconnects it once the client acknowledged
//! the event or [`SINVALID_FLUSH`] passed, so that the event is written before the disconnect
//! even while the client still has events in flight. With an adapter that spans nodes, every
//! socket joins a room named by a hash of its session id (and one per user, when the session
//! has the configured user key), so that the end reaches it on every node through the adapter
//! (socketioxide-redis). On socketioxide's local adapter a session's sockets are found through
//! its live copy on this node, and only user rooms are kept.

use std::any::TypeId;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use tower_sessions::session::Id;

use super::ended::EndHook;
use crate::observe::{self, ENDS};
use crate::session::{Binding, LiveSession};

/// The event a socket receives right before the server disconnects it because its session
/// ended; its data is `{"reason": "session_revoked" | "session_expired" | "session_rotated"}`.
pub const SINVALID_EVENT: &str = "sinvalid";

/// Why the server ended a socket's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// Logged out, deleted, or disconnected on purpose (`session_revoked`): log in again.
    Revoked,
    /// The session reached its expiry (`session_expired`): log in again.
    Expired,
    /// The HTTP side gave the session a new id, e.g. at login (`session_rotated`): reconnect,
    /// and the new handshake carries the new cookie.
    Rotated,
    /// This node is shutting down (`server_shutdown`): the session is intact; reconnect (with
    /// backoff) to another node, or to this one once it is back.
    ServerShutdown,
}

impl EndReason {
    /// The reason as the client sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "session_revoked",
            EndReason::Expired => "session_expired",
            EndReason::Rotated => "session_rotated",
            EndReason::ServerShutdown => "server_shutdown",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn room(kind: &str, bytes: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"socketio-sessions/")
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(bytes)
        .finalize();
    let mut name = String::with_capacity(kind.len() + 33);
    name.push_str(kind);
    name.push(':');
    crate::tag::push_hex(&mut name, &digest[..16]);
    name
}

/// The room of a session's sockets: a hash of the id (room names travel through the adapter
/// and may be logged), the same on every node.
pub(crate) fn session_room(id: &Id) -> String {
    room("session", &id.0.to_le_bytes())
}

/// The room of a user's sockets, by the JSON value of the session's user key.
pub(crate) fn user_room(user: &Value) -> String {
    room("user", user.to_string().as_bytes())
}

/// How long the server waits for a client's acknowledgement of [`SINVALID_EVENT`] before it
/// disconnects the socket anyway (clients that do not acknowledge it wait this long).
pub(crate) const SINVALID_FLUSH: Duration = Duration::from_millis(250);

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which sockets an end reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every node's, through the Socket.IO adapter (logout, rotation, `disconnect_*`).
    AllNodes,
    /// This node's only (what this node found out by itself: expiry, revalidation, shutdown).
    ThisNode,
}

/// Whose sockets an end reaches.
#[derive(Debug)]
pub(crate) enum SocketsOf {
    /// A session's, by its id; with its live copy on this node when it has sockets here.
    Session(Id, Option<Arc<LiveSession>>),
    /// A room's (a user's sockets).
    Room(String),
}

/// Whether sockets join a room per session for an end to reach them. With socketioxide's local
/// adapter every socket is on this node and the session's live copy knows them, so no room per
/// session is kept (its tables, name and map entry are most of what a session costs
/// socketioxide). Any other adapter may carry an end to other nodes, which find their sockets
/// by the session's room.
pub(crate) fn keeps_session_rooms<A: Adapter>() -> bool {
    TypeId::of::<A>() != TypeId::of::<LocalAdapter>()
}

/// Ends sockets, on every namespace, through one `SocketIo` of any adapter.
pub(crate) trait Broadcaster: Send + Sync + 'static {
    fn end(
        &self,
        sockets: SocketsOf,
        reason: EndReason,
        reach: Reach,
        hook: Option<EndHook>,
    ) -> BoxFuture;
}

pub(crate) struct IoBroadcaster<A: Adapter>(pub(crate) SocketIo<A>);

impl<A: Adapter> Broadcaster for IoBroadcaster<A> {
    fn end(
        &self,
        sockets: SocketsOf,
        reason: EndReason,
        reach: Reach,
        hook: Option<EndHook>,
    ) -> BoxFuture {
        let namespaces = self.0.nsps();
        match sockets {
            SocketsOf::Session(_, live) if !keeps_session_rooms::<A>() => match live {
                Some(live) => Box::pin(end_bound(namespaces, live, reason, hook)),
                None => Box::pin(std::future::ready(())),
            },
            SocketsOf::Session(id, _) => {
                Box::pin(end_room(namespaces, session_room(&id), reason, reach, hook))
            }
            SocketsOf::Room(room) => Box::pin(end_room(namespaces, room, reason, reach, hook)),
        }
    }
}

/// Ends this node's sockets bound to `live`, all at once, each told why and disconnected once it
/// acknowledged or the flush time passed. A socket id names one connection in every namespace
/// it joined, bound or not (or bound to another session): only a socket whose own binding is
/// `live` is ended, once. A handshake that was binding while the others were told (not yet in
/// its namespace) is ended in a second pass.
async fn end_bound<A: Adapter>(
    namespaces: Vec<BroadcastOperators<A>>,
    live: Arc<LiveSession>,
    reason: EndReason,
    hook: Option<EndHook>,
) {
    let mut ended: Vec<(usize, Sid)> = Vec::new();
    for _pass in 0..2 {
        let sids = live.sockets();
        let mut ends = Vec::new();
        for (n, ns) in namespaces.iter().enumerate() {
            for &sid in &sids {
                if ended.contains(&(n, sid)) {
                    continue;
                }
                let Some(socket) = ns.get_socket(sid) else {
                    continue;
                };
                let bound_here = socket
                    .extensions
                    .get::<Binding>()
                    .is_some_and(|b| Arc::ptr_eq(b.live(), &live));
                if bound_here {
                    ended.push((n, sid));
                    ends.push(super::ended::end_socket(socket, reason, hook.as_ref()));
                }
            }
        }
        if ends.is_empty() {
            break;
        }
        futures_util::future::join_all(ends).await;
    }
    let reached = ended.len() as u64;
    tracing::debug!(%reason, sockets = reached, "sockets told of a session's end");
    observe::count_n(ENDS, "reason", reason.as_str(), reached);
}

/// Ends the sockets of a room, through the adapter when `reach` is every node.
async fn end_room<A: Adapter>(
    namespaces: Vec<BroadcastOperators<A>>,
    room: String,
    reason: EndReason,
    reach: Reach,
    hook: Option<EndHook>,
) {
    let data = json!({ "reason": reason.as_str() });
    for ns in namespaces {
        // This node's sockets learn why before they go; other nodes' are disconnected
        // through the adapter, which carries no reason.
        for socket in ns.clone().local().to(room.clone()).sockets() {
            super::ended::mark(&socket, reason, hook.as_ref());
        }
        let ns = match reach {
            Reach::ThisNode => ns.local(),
            Reach::AllNodes => ns,
        };
        // The event goes out with an ack request: the disconnect waits until every
        // client acknowledged it or the flush time passed, so that a late packet from
        // the client cannot close the connection before the event is written.
        let acks = ns
            .clone()
            .to(room.clone())
            .timeout(SINVALID_FLUSH)
            .emit_with_ack::<_, Value>(SINVALID_EVENT, &data)
            .await;
        match acks {
            // Bounded here too: with a cluster adapter, the stream of a room that has no
            // socket on the other nodes may only end at the adapter's request timeout.
            Ok(acks) => {
                // One answer (or ack timeout) per socket, on any node: the count of
                // sockets this end reached.
                let reached = &std::sync::atomic::AtomicU64::new(0);
                let all = acks.for_each(|_| async move {
                    reached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
                let _ = tokio::time::timeout(SINVALID_FLUSH * 2, all).await;
                let reached = reached.load(std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%reason, sockets = reached, "sockets told of a session's end");
                observe::count_n(ENDS, "reason", reason.as_str(), reached);
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not announce the end of a session")
            }
        }
        if let Err(e) = ns.clone().to(room.clone()).disconnect().await {
            tracing::warn!(error = %e, "could not disconnect the sockets of a session");
        }
        // This node's sockets that are still there had a full outgoing buffer (a client that
        // floods without reading): out of their rooms now, told and disconnected once they
        // read. (One whose buffer filled between the event and the disconnect is told twice.)
        for socket in ns.local().to(room.clone()).sockets() {
            super::ended::cut_off(socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_stable_and_hide_the_id() {
        let id = Id::default();
        assert_eq!(session_room(&id), session_room(&id));
        assert_ne!(session_room(&id), session_room(&Id::default()));
        assert!(!session_room(&id).contains(&id.to_string()));
        assert_ne!(user_room(&json!("a")), user_room(&json!("b")));
        assert!(user_room(&json!("alice")).starts_with("user:"));
    }
}
