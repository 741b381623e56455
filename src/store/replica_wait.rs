//! A save that returns only once replicas have it (`WAIT`): without it, a primary that fails
//! right after acknowledging a save can take the save with it, because Redis replicates
//! asynchronously and the replica promoted in its place may not have received it yet.

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, ClusterInterface, ServerInterface};
use fred::types::cluster::ClusterRouting;
use tower_sessions::session_store;

use super::backend_error;
use super::redis_pool::send_once;

/// How long past the wait's own timeout its answer may take.
const WAIT_ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// How long a write may take in all: sent and answered within `write_within`, then confirmed
/// by replicas when a wait is set.
pub(crate) fn write_bound(write_within: Duration, wait: Option<ReplicaWait>) -> Duration {
    write_within + wait.map_or(Duration::ZERO, |wait| wait.within())
}

/// How many replicas must have a save, and how long the save waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplicaWait {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl ReplicaWait {
    /// How long a confirmation may take in all: the wait itself, plus its answer's way back.
    pub(crate) fn within(&self) -> Duration {
        self.timeout + WAIT_ANSWER_WITHIN
    }

    /// Waits until `replicas` replicas have every write `client` sent to the node that holds
    /// `key` so far (the write just made included). `WAIT` counts one connection's writes, so it
    /// goes over the same client, and on a cluster to the key's node.
    pub(crate) async fn confirm(&self, client: &Client, key: &str) -> session_store::Result<()> {
        let wanted = i64::from(self.replicas);
        let timeout_ms = i64::try_from(self.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        // Never sent again on another connection (after a reconnect), where it would count
        // none of the write's bytes and confirm at once.
        let mut once = send_once(self.within());
        if client.is_clustered() {
            // Read after the write: a write redirected by MOVED updated this map (one
            // redirected by ASK, in the middle of a slot's migration, did not: its WAIT goes to
            // the slot's former node and confirms nothing of it).
            let node = client
                .cached_cluster_state()
                .and_then(|state| {
                    state
                        .get_server(ClusterRouting::hash_key(key.as_bytes()))
                        .cloned()
                })
                .ok_or_else(|| {
                    session_store::Error::Backend(
                        "no cluster node is known for the session's key".into(),
                    )
                })?;
            once.cluster_node = Some(node);
        }
        let reached: i64 = client
            .with_options(&once)
            .wait(wanted, timeout_ms)
            .await
            .map_err(backend_error)?;
        if reached < wanted {
            return Err(session_store::Error::Backend(format!(
                "saved on the primary, but {reached} of the {wanted} replicas required had it \
                 after {} ms: a failover now could lose it",
                self.timeout.as_millis()
            )));
        }
        Ok(())
    }
}
