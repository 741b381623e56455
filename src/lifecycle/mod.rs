//! The lifecycle stage: the one place that decides when a socket's session ends, and owns the
//! background work that finds out (the expiry task, revalidation, Redis keyspace notifications)
//! and the node's shutdown.
//!
//! Ends come from: the HTTP side (logout, rotation), the app (`disconnect_*`), the record's
//! expiry, revalidation and keyspace notifications (deletions nothing announced), and
//! shutdown. Each goes through [`Lifecycle::end`].

mod end;
mod ended;
mod expiry;
mod shutdown;
mod sweep_turns;
#[cfg(feature = "redis")]
mod watch_cluster;
#[cfg(feature = "redis")]
mod watch_redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tower_sessions::session::Id;

use crate::session::{Expiries, Registry};
use crate::store::StoreHandle;
use crate::task::Stop;

pub(crate) use end::{
    Broadcaster, IoBroadcaster, Reach, SocketsOf, keeps_session_rooms, session_room, user_room,
};
pub use end::{EndReason, SINVALID_EVENT};
pub(crate) use ended::disconnect;
#[cfg(feature = "axum-login")]
pub(crate) use ended::end_socket;
pub(crate) use ended::{BoundUser, EndHook};
pub use ended::{SessionEnd, SessionEnded};
pub use shutdown::ShutdownReport;

/// Keyspace notifications for this node's sessions from the Redis that `config` names: one
/// server, or every primary of a cluster. The task ends when the node stops.
#[cfg(feature = "redis")]
pub(crate) async fn watch(
    lifecycle: &Arc<Lifecycle>,
    config: fred::prelude::Config,
    configure_server: bool,
) -> Result<tokio::task::JoinHandle<()>, fred::error::Error> {
    if config.server.is_clustered() {
        watch_cluster::watch(lifecycle, config, configure_server).await
    } else {
        let stopped = lifecycle.stop.stopped();
        watch_redis::watch_server(lifecycle, config, configure_server, stopped).await
    }
}

/// The lifecycle of one configuration's sessions on this node.
pub(crate) struct Lifecycle {
    /// How ends reach sockets: a `SocketIo` of the app's adapter, known from `attach` or the
    /// first accepted socket. Behind a lock rather than set once, because shutdown takes it
    /// back: the `SocketIo` holds the namespaces that hold this node, a cycle to break.
    broadcaster: RwLock<Option<Arc<dyn Broadcaster>>>,
    /// The same store handle the live sessions use (bounded calls, forwarding records hidden):
    /// the keyspace watcher checks records through it.
    #[cfg(feature = "redis")]
    store: Arc<StoreHandle>,
    /// The node's live sessions: what revalidation and shutdown walk.
    registry: Arc<Registry>,
    /// Where the live sessions publish their expiries; one task follows it.
    pub(crate) expiries: Arc<Expiries>,
    revalidate_every: Option<Duration>,
    /// Background tasks start with the first accepted socket, once.
    started: AtomicBool,
    /// Set by shutdown; every background task ends on it.
    pub(crate) stop: Arc<Stop>,
    /// How long shutdown may take as a whole.
    shutdown_timeout: Duration,
    /// Told about each socket this node ends; set once at build.
    pub(crate) on_end: Option<EndHook>,
    /// Sweeps asked for at the same time (every watcher of a cluster after a blip) share one.
    sweeps: sweep_turns::SweepTurns,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("knows_io", &self.knows_io())
            .field("revalidate_every", &self.revalidate_every)
            .field("stopped", &self.stop.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    pub(crate) fn new(
        store: Arc<StoreHandle>,
        registry: Arc<Registry>,
        stop: Arc<Stop>,
        revalidate_every: Option<Duration>,
        shutdown_timeout: Duration,
        on_end: Option<EndHook>,
    ) -> Self {
        // Only the keyspace watcher reads records through it.
        #[cfg(not(feature = "redis"))]
        let _ = store;
        Lifecycle {
            broadcaster: RwLock::new(None),
            #[cfg(feature = "redis")]
            store,
            registry,
            expiries: Arc::default(),
            revalidate_every,
            started: AtomicBool::new(false),
            stop,
            shutdown_timeout,
            on_end,
            sweeps: Default::default(),
        }
    }

    /// Ends the sockets of session `id` with `reason`.
    pub(crate) async fn end(&self, id: &Id, reason: EndReason, reach: Reach) {
        let sockets = SocketsOf::Session(*id, self.registry.get(id));
        self.end_sockets(sockets, reason, reach).await;
    }

    /// Ends the sockets of a room with `reason`.
    pub(crate) async fn end_room(&self, room: String, reason: EndReason, reach: Reach) {
        self.end_sockets(SocketsOf::Room(room), reason, reach).await;
    }

    async fn end_sockets(&self, sockets: SocketsOf, reason: EndReason, reach: Reach) {
        let broadcaster = crate::task::locked_read(&self.broadcaster).clone();
        match broadcaster {
            Some(b) => b.end(sockets, reason, reach, self.on_end.clone()).await,
            None => tracing::debug!(
                %reason,
                "no Socket.IO instance known yet (call `attach`): nothing to disconnect"
            ),
        }
    }

    pub(crate) fn knows_io(&self) -> bool {
        crate::task::locked_read(&self.broadcaster).is_some()
    }

    pub(crate) fn set_broadcaster(&self, b: Arc<dyn Broadcaster>) {
        if !self.stop.is_stopped() {
            *crate::task::locked_write(&self.broadcaster) = Some(b);
        }
    }

    /// Starts the background tasks (expiry, revalidation), once.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        expiry::spawn_expiry_task(
            Arc::downgrade(self),
            self.expiries.clone(),
            self.stop.clone(),
        );
        if let Some(every) = self.revalidate_every {
            expiry::spawn_revalidation(Arc::downgrade(self), every, self.stop.clone());
        }
    }
}
