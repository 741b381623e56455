//! Keyspace notifications on a Redis Cluster. A node publishes the events of its own keys
//! only, so every primary gets a watcher of its own ([`watch_server`]); the primaries are
//! followed as the cluster changes (a replica promoted by a failover, slots moved by a
//! resharding), and each change is followed by one sweep, so that a record deleted or expired
//! while no watcher listened on its node still ends its sockets.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Builder, Client, Config, Server, ServerConfig};
use tokio::task::JoinHandle;

use super::Lifecycle;
use super::watch_redis::{policy, watch_server};
use crate::store::{connection_config, quit_redis, quit_redis_aside};
use crate::task::{Stop, spawn_detached};

/// How often the cluster's layout is read again. A failover takes the cluster a few seconds
/// (`cluster-node-timeout` plus an election); this adds at most one period to the time before
/// the new primary is watched and the sweep runs.
const LAYOUT_EVERY: Duration = Duration::from_secs(1);

/// How long one read of the layout may take (fred retries it for as long as a shard is down).
const READ_WITHIN: Duration = Duration::from_secs(2);

/// Which primary serves which slots, as last read.
type Layout = Vec<(u16, u16, Server)>;

/// A watcher of one primary, and what stops it.
struct Watched {
    stop: Arc<Stop>,
    task: JoinHandle<()>,
}

pub(super) async fn watch(
    lifecycle: &Arc<Lifecycle>,
    config: Config,
    configure_server: bool,
) -> Result<JoinHandle<()>, fred::error::Error> {
    let mut builder = Builder::from_config(config.clone());
    builder.set_policy(policy());
    builder.with_connection_config(|c| *c = connection_config());
    let layout_reader = builder.build()?;
    let started = tokio::time::timeout(READ_WITHIN * 2, layout_reader.init()).await;
    if let Err(e) = started.unwrap_or_else(|_| {
        Err(fred::error::Error::new(
            fred::error::ErrorKind::Timeout,
            "the Redis Cluster did not answer within 4 s",
        ))
    }) {
        quit_redis_aside(layout_reader);
        return Err(e);
    }
    let mut follower = Follower {
        lifecycle: Arc::downgrade(lifecycle),
        config,
        configure_server,
        layout: layout(&layout_reader),
        sweep_when_settled: false,
        watched: HashMap::new(),
    };
    // At start every primary must be watched: an error here is the caller's to see.
    for primary in primaries(&follower.layout) {
        if let Err(e) = follower.start(lifecycle, primary).await {
            follower.stop_all().await;
            quit_redis_aside(layout_reader);
            return Err(e);
        }
    }
    let stopped = lifecycle.stop.stopped();
    Ok(tokio::spawn(async move {
        tokio::pin!(stopped);
        let mut every = tokio::time::interval(LAYOUT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = every.tick() => {}
            }
            // Raced with the stop: reading the layout or starting a watcher can take seconds
            // while a node is down.
            let followed = tokio::select! {
                _ = &mut stopped => break,
                followed = follow_once(&layout_reader, &mut follower) => followed,
            };
            if !followed {
                break;
            }
        }
        follower.stop_all().await;
        quit_redis(&layout_reader).await;
    }))
}

/// Reads the layout and follows it; `false` once the node's lifecycle is gone.
async fn follow_once(reader: &Client, follower: &mut Follower) -> bool {
    match tokio::time::timeout(READ_WITHIN, reader.sync_cluster()).await {
        Ok(Ok(())) => follower.follow(layout(reader)).await,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not read the cluster's layout");
            true
        }
        Err(_) => {
            tracing::debug!("the cluster's layout was not read within 2 s");
            true
        }
    }
}

/// The watchers of the primaries, kept in step with the cluster's layout.
struct Follower {
    lifecycle: Weak<Lifecycle>,
    /// The cluster's config: each primary's watcher gets a copy naming that primary alone
    /// (same credentials, TLS and timeouts).
    config: Config,
    configure_server: bool,
    layout: Layout,
    /// Slots moved between primaries that were watched on both ends: no event was missed, but
    /// the sweep after a topology change runs once the moves are over, not
    /// once per second of a long resharding.
    sweep_when_settled: bool,
    /// One watcher per primary being watched.
    watched: HashMap<Server, Watched>,
}

impl Follower {
    async fn start(
        &mut self,
        lifecycle: &Arc<Lifecycle>,
        primary: Server,
    ) -> Result<(), fred::error::Error> {
        let mut config = self.config.clone();
        config.server = ServerConfig::Centralized {
            server: primary.clone(),
        };
        let stop = Arc::new(Stop::default());
        let task = watch_server(lifecycle, config, self.configure_server, stop.stopped()).await?;
        self.watched.insert(primary, Watched { stop, task });
        Ok(())
    }

    /// Moves to the cluster's layout `now`: watchers for new primaries (and in place of any
    /// that ended; retried on the next read when one cannot start yet), none for former ones.
    /// Sweeps at once when a primary is newly watched (its events until then were missed), and
    /// once the layout settles after slots moved. `false` once the node's lifecycle is gone.
    async fn follow(&mut self, now: Layout) -> bool {
        let Some(lifecycle) = self.lifecycle.upgrade() else {
            return false;
        };
        let wanted = primaries(&now);
        let dropped: Vec<Server> = self
            .watched
            .iter()
            .filter(|(server, watched)| !wanted.contains(server) || watched.task.is_finished())
            .map(|(server, _)| server.clone())
            .collect();
        for server in dropped {
            if let Some(watched) = self.watched.remove(&server) {
                // Stopped aside: a former primary that is down can take seconds to let go.
                watched.stop.stop();
                spawn_detached(async move {
                    let _ = watched.task.await;
                });
            }
        }
        let mut newly_watched = false;
        for primary in wanted {
            if self.watched.contains_key(&primary) {
                continue;
            }
            match self.start(&lifecycle, primary).await {
                Ok(()) => newly_watched = true,
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not watch a cluster primary yet; trying again, revalidation covers the gap"
                ),
            }
        }
        let moved = now != self.layout;
        self.layout = now;
        let settled = !moved && self.sweep_when_settled;
        self.sweep_when_settled = moved && !newly_watched;
        if newly_watched || settled {
            let ended = lifecycle.sweep().await;
            tracing::info!(
                ended,
                primaries = self.watched.len(),
                "the Redis Cluster changed; keyspace notifications follow it"
            );
        }
        true
    }

    async fn stop_all(&mut self) {
        for (_, watched) in self.watched.drain() {
            watched.stop.stop();
            let _ = watched.task.await;
        }
    }
}

/// The cluster's layout as the client last read it (empty before the first read).
fn layout(client: &impl ClusterInterface) -> Layout {
    client
        .cached_cluster_state()
        .map(|state| {
            state
                .slots()
                .iter()
                .map(|range| (range.start, range.end, range.primary.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The primaries of a layout, each once.
fn primaries(layout: &Layout) -> Vec<Server> {
    let mut servers: Vec<Server> = layout.iter().map(|(_, _, s)| s.clone()).collect();
    servers.sort();
    servers.dedup();
    servers
}
