//! Finding out that a session ended without anyone announcing it: its expiry (a timer per live
//! session, following the expiry the session publishes) and periodic revalidation against the
//! store (deletions by another process), also run as a sweep after a store reconnects.

use std::sync::{Arc, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use futures_util::future::join_all;

use super::{EndReason, Lifecycle, Reach};
use crate::session::LiveSession;
use crate::store::Presence;
use crate::task::{Stop, spawn_detached};

/// Ends the session's sockets on this node with `session_expired` when its expiry is reached
/// and the record is gone. The timer is re-armed when the expiry moves earlier; a later expiry
/// (every save moves it) is picked up when the timer fires, so that saves do not wake it.
pub(super) fn spawn_expiry_timer(
    lifecycle: Weak<Lifecycle>,
    live: &Arc<LiveSession>,
    stop: Arc<Stop>,
) {
    let weak = Arc::downgrade(live);
    let mut rx = live.expiry_watch();
    spawn_detached(async move {
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        loop {
            let at = *rx.borrow_and_update();
            let wait = match at {
                Some(at) => Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default(),
                None => Duration::MAX,
            };
            tokio::select! {
                _ = &mut stopped => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400))), if at.is_some() => {
                    if *rx.borrow() != at {
                        continue;
                    }
                    let Some(live) = weak.upgrade() else { return };
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
                            return;
                        }
                        Err(failure) => {
                            tracing::warn!(session = %live.tag(), ?failure, "could not check the session's expiry; retrying");
                            drop(live);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
    });
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
    /// Returns how many were ended. The ends run side by side: each waits for its clients'
    /// acknowledgements.
    pub(crate) async fn sweep(&self) -> usize {
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
