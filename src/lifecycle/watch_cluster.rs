//! Keyspace notifications on a Redis Cluster. A node publishes the events of its own keys
//! only, so every primary gets a watcher of its own ([`watch_server`]); the primaries are
//! followed as the cluster changes (a replica promoted by a failover, slots moved by a
//! resharding), and every change is followed by one sweep, so that a record deleted or expired
//! while no watcher listened on its node still ends its sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Builder, Config, Server, ServerConfig};
use tokio::task::JoinHandle;

use super::Lifecycle;
use super::watch_redis::{policy, watch_server};
use crate::task::Stop;

/// How often the cluster's layout is read again. A failover takes the cluster a few seconds
/// (`cluster-node-timeout` plus an election); this adds at most one period to the time before
/// the new primary is watched and the sweep runs.
const LAYOUT_EVERY: Duration = Duration::from_secs(1);

/// Which primary serves which slots, as last read.
type Layout = Vec<(u16, u16, Server)>;

/// A watcher of one primary, and what stops it.
struct Watched {
    stop: Arc<Stop>,
    task: JoinHandle<()>,
}

impl Watched {
    async fn stop(self) {
        self.stop.stop();
        let _ = self.task.await;
    }
}

pub(crate) async fn watch(
    lifecycle: &Arc<Lifecycle>,
    config: Config,
    configure_server: bool,
) -> Result<JoinHandle<()>, fred::error::Error> {
    let mut builder = Builder::from_config(config.clone());
    builder.set_policy(policy());
    let layout_reader = builder.build()?;
    layout_reader.init().await?;
    let mut follower = Follower {
        lifecycle: Arc::downgrade(lifecycle),
        config,
        configure_server,
        layout: layout(&layout_reader),
        watched: HashMap::new(),
    };
    // At start every primary must be watched: an error here is the caller's to see.
    for primary in primaries(&follower.layout) {
        if let Err(e) = follower.start(lifecycle, primary).await {
            follower.stop_all().await;
            let _ = layout_reader.quit().await;
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
                _ = every.tick() => {
                    if let Err(e) = layout_reader.sync_cluster().await {
                        tracing::debug!(error = %e, "could not read the cluster's layout");
                        continue;
                    }
                    if !follower.follow(layout(&layout_reader)).await {
                        break;
                    }
                }
            }
        }
        follower.stop_all().await;
        let _ = layout_reader.quit().await;
    }))
}

/// The watchers of the primaries, kept in step with the cluster's layout.
struct Follower {
    lifecycle: std::sync::Weak<Lifecycle>,
    /// The cluster's config: each primary's watcher gets a copy naming that primary alone
    /// (same credentials, TLS and timeouts).
    config: Config,
    configure_server: bool,
    layout: Layout,
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

    /// Moves to the cluster's layout `now`: watchers for new primaries (retried on the next
    /// read when one cannot start yet), none for former ones, and a sweep when anything changed.
    /// `false` once the node's lifecycle is gone.
    async fn follow(&mut self, now: Layout) -> bool {
        let Some(lifecycle) = self.lifecycle.upgrade() else {
            return false;
        };
        let mut changed = now != self.layout;
        let wanted = primaries(&now);
        let former: Vec<Server> = self
            .watched
            .keys()
            .filter(|server| !wanted.contains(server))
            .cloned()
            .collect();
        for server in former {
            if let Some(watched) = self.watched.remove(&server) {
                watched.stop().await;
            }
        }
        for primary in wanted {
            if self.watched.contains_key(&primary) {
                continue;
            }
            match self.start(&lifecycle, primary).await {
                Ok(()) => changed = true,
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not watch a new cluster primary yet; trying again, revalidation covers the gap"
                ),
            }
        }
        self.layout = now;
        if changed {
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
            watched.stop().await;
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
