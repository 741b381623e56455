//! A `redis-server` of the test's own on a free port, killed when the test ends.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::required::{REQUIRE_ENV, required};
use super::wait::SOON;

/// A `redis-server` of our own on a free port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one, or returns `None` (printing why) when the binary is missing and not required.
    pub async fn start() -> Option<RedisServer> {
        Self::start_with(&["--appendonly", "no"]).await
    }

    /// Starts one that keeps every write on disk (AOF, fsync always), so that it can be killed
    /// and restarted without losing acknowledged writes.
    pub async fn start_durable() -> Option<RedisServer> {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await
    }

    /// Starts one as a Redis Cluster node (not yet in a cluster: see [`RedisCluster`]), on a
    /// port whose cluster bus port (+10000) is free too. Its cluster state lives in its own
    /// directory, so that a restart rejoins the cluster.
    ///
    /// [`RedisCluster`]: super::redis_cluster::RedisCluster
    pub async fn start_cluster_node() -> Option<RedisServer> {
        Self::start_on(
            free_cluster_port,
            &[
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                // A failover within about 5 s of a primary's death, and none when a loaded
                // machine stalls a node for a second.
                "--cluster-node-timeout",
                "3000",
                // Replicas sync at once instead of 5 s later.
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
        .await
    }

    async fn start_with(extra: &[&str]) -> Option<RedisServer> {
        Self::start_on(free_port, extra).await
    }

    /// Starts one on a port from `pick`; a port taken between `pick` and the server's bind
    /// (another process's outgoing connection, another test) costs a new port, not the test.
    async fn start_on(pick: fn() -> u16, extra: &[&str]) -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                !required(),
                "redis-server not found, and {REQUIRE_ENV} requires it: install redis-server"
            );
            eprintln!("skip: redis-server not found (set {REQUIRE_ENV}=1 to make this a failure)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port: pick(),
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..3 {
            if server.try_spawn().await {
                return Some(server);
            }
            server.port = pick();
        }
        panic!("redis-server did not start on three free ports");
    }

    async fn spawn(&mut self) {
        assert!(self.try_spawn().await, "redis-server did not start");
    }

    /// Starts the server on its port: `false` when it exited at once (the port was taken).
    async fn try_spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + SOON;
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// Stops the server's process without ending it (SIGSTOP), as a Redis that hangs: its
    /// connections stay open, and commands sent meanwhile wait in its socket buffers until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [paused](Self::pause) server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("a running redis-server").id();
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send SIG{name} to redis-server");
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A free port whose cluster bus port (port + 10000) is free too.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= u16::MAX - 10_000
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}
