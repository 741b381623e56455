//! The node's graceful shutdown: no new bindings, every socket told `server_shutdown`, every
//! unsaved change saved, background work stopped, all within the shutdown timeout.

use futures_util::future::join_all;

use super::{EndReason, Lifecycle, Reach};

/// What [`SocketSessions::shutdown`](crate::SocketSessions::shutdown) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Sessions with sockets on this node when the shutdown began.
    pub sessions: usize,
    /// Of those, sessions whose changes could not be saved in time (the store failed or the
    /// timeout passed): those changes are lost.
    pub unsaved: usize,
    /// Whether the shutdown finished within its timeout.
    pub completed: bool,
}

impl Lifecycle {
    /// Stops the node's session work; see
    /// [`SocketSessions::shutdown`](crate::SocketSessions::shutdown).
    pub(crate) async fn shutdown(&self) -> ShutdownReport {
        if self.stop.stop() {
            return ShutdownReport {
                completed: true,
                ..ShutdownReport::default()
            };
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let sessions = self.registry.all();
        let count = sessions.len();
        // Sockets first, so that no event makes new changes while the saves run.
        let ends = join_all(
            sessions
                .iter()
                .map(|live| self.end(&live.id, EndReason::ServerShutdown, Reach::ThisNode)),
        );
        let ended = tokio::time::timeout_at(deadline, ends).await.is_ok();
        drop(sessions);
        // Each ended socket saves what it changed as it goes (disconnect handlers included);
        // give those saves half of what is left, then save whatever is still unsaved.
        let settle = deadline - (deadline - tokio::time::Instant::now()) / 2;
        while self.registry.len() > 0 && tokio::time::Instant::now() < settle {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let remaining = self.registry.all();
        let saves = join_all(remaining.iter().map(|live| live.flush()));
        let saved = tokio::time::timeout_at(deadline, saves).await;
        let unsaved = match &saved {
            Ok(results) => results.iter().filter(|ok| !**ok).count(),
            Err(_) => remaining.iter().filter(|live| live.has_unsaved()).count(),
        };
        let report = ShutdownReport {
            sessions: count,
            unsaved,
            completed: ended && saved.is_ok(),
        };
        tracing::info!(
            sessions = report.sessions,
            unsaved = report.unsaved,
            completed = report.completed,
            "session shutdown done"
        );
        report
    }
}
