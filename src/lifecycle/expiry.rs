//! Finding out that a session ended without anyone announcing it: its expiry (one task for the
//! node, sleeping until the earliest expiry the live sessions published) and periodic
//! revalidation against the store (deletions by another process), also run as a sweep after a
//! store reconnects.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;

use super::{EndReason, Lifecycle, Reach};
use crate::session::{Expiries, LiveSession};
use crate::store::Presence;
use crate::task::{Stop, spawn_detached};

/// Ends a session's sockets on this node with `session_expired` when its expiry is reached and
/// the record is gone. Sessions arm their entry when their expiry moves earlier; a later expiry
/// (every save moves it) is picked up when the entry comes due, so that saves do not wake this.
pub(super) fn spawn_expiry_task(
    lifecycle: Weak<Lifecycle>,
    expiries: Arc<Expiries>,
    stop: Arc<Stop>,
) {
    spawn_detached(async move {
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        loop {
            let wait = expiries.until_next();
            tokio::select! {
                _ = &mut stopped => return,
                _ = expiries.earlier() => continue,
                _ = tokio::time::sleep(wait.unwrap_or_default().min(Duration::from_secs(86_400))), if wait.is_some() => {}
            }
            let Some(lifecycle) = lifecycle.upgrade() else {
                return;
            };
            for (at, id, owner) in expiries.take_due() {
                // Gone from this node, or a newer live session of the id (which armed its own).
                let Some(live) = lifecycle.registry.get(&id) else {
                    continue;
                };
                if Arc::as_ptr(&live) as usize != owner || !live.expiry_due(at) {
                    continue;
                }
                let lifecycle = Arc::downgrade(&lifecycle);
                // Each check on its own: a slow store must not hold up the other expiries.
                spawn_detached(check_expired(lifecycle, live));
            }
        }
    });
}

/// The session's expiry was reached: asks the store whether the record is gone.
async fn check_expired(lifecycle: Weak<Lifecycle>, live: Arc<LiveSession>) {
    match live.store.probe(&live.id).await {
        Ok(Presence::Live(loaded)) => live.note_expiry(Some(loaded.record.expiry_date)),
        Ok(gone) => {
            let reason = match gone {
                Presence::Rotated => EndReason::Rotated,
                _ => EndReason::Expired,
            };
            tracing::debug!(session = %live.tag(), %reason, "session ended at its expiry");
            if let Some(lifecycle) = lifecycle.upgrade() {
                lifecycle.end(&live.id, reason, Reach::ThisNode).await;
            }
        }
        Err(failure) => {
            tracing::warn!(session = %live.tag(), ?failure, "could not check the session's expiry; retrying");
            live.recheck_expiry(Duration::from_secs(1));
        }
    }
}

/// Revalidates every `every`, until the node stops.
pub(super) fn spawn_revalidation(lifecycle: Weak<Lifecycle>, every: Duration, stop: Arc<Stop>) {
    spawn_detached(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tick.tick() => {}
            }
            let Some(lifecycle) = lifecycle.upgrade() else {
                return;
            };
            lifecycle.sweep().await;
        }
    });
}

impl Lifecycle {
    /// Checks every session with sockets on this node against the store, without touching its
    /// expiry: those that vanished are ended here (a rotated one as `session_rotated`).
    /// Returns how many were ended; 0 when a sweep asked for meanwhile covered this one.
    pub(crate) async fn sweep(&self) -> usize {
        self.sweeps.take(|| self.sweep_now()).await.unwrap_or(0)
    }

    /// One sweep. The ends run side by side: each waits for its clients' acknowledgements.
    async fn sweep_now(&self) -> usize {
        let mut ends = Vec::new();
        for live in self.registry.all() {
            let reason = match live.store.probe(&live.id).await {
                Ok(Presence::Live(loaded)) => {
                    live.note_expiry(Some(loaded.record.expiry_date));
                    continue;
                }
                Ok(Presence::Rotated) => EndReason::Rotated,
                Ok(Presence::Gone) if live.past_expiry() => EndReason::Expired,
                Ok(Presence::Gone) => EndReason::Revoked,
                Err(failure) => {
                    tracing::debug!(session = %live.tag(), ?failure, "revalidation skipped");
                    continue;
                }
            };
            tracing::debug!(session = %live.tag(), %reason, "revalidation: session gone");
            ends.push(async move { self.end(&live.id, reason, Reach::ThisNode).await });
        }
        let ended = ends.len();
        join_all(ends).await;
        ended
    }
}
