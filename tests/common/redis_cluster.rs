//! A Redis Cluster of the test's own: 3 primaries and 3 replicas on free ports, failing over
//! within about 5 s of a primary's death, killed when the test ends.

use std::time::{Duration, Instant};

use super::redis::RedisServer;
use super::wait::SOON;

/// Three primaries with one replica each.
pub struct RedisCluster {
    /// The six nodes, in the order they were created (roles change with failovers: ask
    /// [`primary_for`](Self::primary_for) and [`replica_of`](Self::replica_of)).
    pub nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    port: u16,
    primary: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts one and waits until every slot is served and every replica in sync; `None` when
    /// redis-server is missing and not required.
    pub async fn start() -> Option<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(RedisServer::start_cluster_node().await?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ready(&[]).await;
        Some(cluster)
    }

    /// Any node's address, comma-separated, as `DEMO_STORE` and `RedisStore::connect` take it.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// Waits until every node but `down` says the cluster is ok, 3 primaries serve every slot,
    /// and each has a replica in sync.
    pub async fn wait_ready(&self, down: &[usize]) {
        let deadline = Instant::now() + SOON;
        loop {
            if self.ready(down) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was not ready within {SOON:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn ready(&self, down: &[usize]) -> bool {
        let up = || (0..self.nodes.len()).filter(|i| !down.contains(i));
        let ok = up().all(|i| {
            self.nodes[i]
                .cli(&["CLUSTER", "INFO"])
                .is_some_and(|info| info.contains("cluster_state:ok"))
        });
        let Some(lines) = self.table() else {
            return false;
        };
        let primaries: Vec<&NodeLine> = lines
            .iter()
            .filter(|l| l.primary && !l.failed && !l.slots.is_empty())
            .collect();
        let served: u32 = primaries
            .iter()
            .flat_map(|p| &p.slots)
            .map(|(a, b)| u32::from(b - a) + 1)
            .sum();
        let synced = primaries.iter().all(|p| {
            let Some(node) = self.nodes.iter().find(|n| n.port == p.port) else {
                return false;
            };
            node.cli(&["INFO", "replication"])
                .is_some_and(|info| info.contains("state=online"))
        });
        // Gossip has reached the node the table comes from: every node in it, as a primary
        // serving slots or as a replica.
        let replicas = lines.iter().filter(|l| !l.primary && !l.failed).count();
        ok && primaries.len() == 3 && served == 16_384 && synced && replicas == 3
    }

    /// `CLUSTER NODES` as read from the first node that answers.
    fn table(&self) -> Option<Vec<NodeLine>> {
        let text = self
            .nodes
            .iter()
            .find_map(|n| n.cli(&["CLUSTER", "NODES"]))?;
        Some(text.lines().filter_map(parse_line).collect())
    }

    /// The index of the node that serves `key` now.
    pub fn primary_for(&self, key: &str) -> usize {
        let slot: u16 = self
            .nodes
            .iter()
            .find_map(|n| n.cli(&["CLUSTER", "KEYSLOT", key]))
            .and_then(|s| s.parse().ok())
            .expect("CLUSTER KEYSLOT");
        let lines = self.table().expect("CLUSTER NODES");
        let line = lines
            .iter()
            .find(|l| {
                l.primary && !l.failed && l.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .expect("a primary serves the slot");
        self.index_of(line.port)
    }

    /// The index of a replica of the primary at index `primary`, as the primary itself says
    /// (`INFO replication`: other nodes learn it by gossip, later).
    pub fn replica_of(&self, primary: usize) -> usize {
        let info = self.nodes[primary]
            .cli(&["INFO", "replication"])
            .expect("INFO replication");
        let port = info
            .lines()
            .filter(|l| l.starts_with("slave"))
            .find_map(|l| l.split(',').find_map(|f| f.strip_prefix("port=")))
            .and_then(|p| p.parse().ok())
            .expect("a replica of the primary");
        self.index_of(port)
    }

    /// Whether the node at `index` is a primary now, as it says itself.
    pub fn is_primary(&self, index: usize) -> bool {
        self.nodes[index]
            .cli(&["ROLE"])
            .is_some_and(|role| role.lines().next() == Some("master"))
    }

    /// Runs a command on the node that serves `key`.
    pub fn cli_for(&self, key: &str, args: &[&str]) -> Option<String> {
        self.nodes[self.primary_for(key)].cli(args)
    }

    fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// Kills every node (the store is then gone for good, as a stopped single Redis).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

fn parse_line(line: &str) -> Option<NodeLine> {
    let mut fields = line.split_whitespace();
    let _id = fields.next()?;
    let address = fields.next()?;
    let port = address
        .split(['@'])
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    let flags = fields.next()?;
    let _primary_id = fields.next()?;
    let slots = fields
        .skip(4)
        .filter(|f| !f.starts_with('['))
        .filter_map(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    Some(NodeLine {
        port,
        primary: flags.contains("master"),
        failed: flags.contains("fail") && !flags.contains("fail?"),
        slots,
    })
}

impl RedisCluster {
    /// Moves the slot of `key` (with its keys) from the primary that serves it to the primary
    /// at index `to`, as `redis-cli --cluster reshard` does it: importing and migrating marks,
    /// `MIGRATE` of each key, then the new owner announced to every primary.
    pub fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.primary_for(key);
        assert_ne!(from, to, "the key is on that primary already");
        let id = |i: usize| {
            self.nodes[i]
                .cli(&["CLUSTER", "MYID"])
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let slot = self.nodes[from]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .expect("CLUSTER KEYSLOT");
        let ok = |answer: Option<String>| assert_eq!(answer.as_deref(), Some("OK"));
        ok(self.nodes[to].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]));
        ok(self.nodes[from].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]));
        let keys = self.nodes[from]
            .cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"])
            .expect("CLUSTER GETKEYSINSLOT");
        let to_port = self.nodes[to].port.to_string();
        for k in keys.lines().filter(|k| !k.is_empty()) {
            ok(self.nodes[from].cli(&["MIGRATE", "127.0.0.1", &to_port, k, "0", "5000"]));
        }
        for node in &self.nodes {
            // Replicas refuse SETSLOT; they learn the owner from their primaries.
            node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
    }
}
