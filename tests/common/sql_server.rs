//! A Postgres or MariaDB server of the test's own on a free port, in a temp directory, so that
//! the test can kill and restart it while the machine's servers keep serving the other tests.
//! Postgres runs as the `postgres` user (initdb refuses root); MariaDB runs as root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socketio_sessions::store::sqlx;

use super::redis::free_port;
use super::required::{REQUIRE_ENV, required};
use super::sql::SqlKind;

/// How long a server may take to start (initdb and mariadb-install-db are slow on 2 cores).
const START: Duration = Duration::from_secs(90);

/// A database server of the test's own, stopped (hard) on drop.
pub struct SqlServer {
    pub kind: SqlKind,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The Postgres binaries (Debian keeps them out of `PATH`).
fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skip(what: &str) -> Option<SqlServer> {
    assert!(!required(), "{what}, and {REQUIRE_ENV} requires it");
    eprintln!("skip: {what}");
    None
}

impl SqlServer {
    /// Initializes and starts a server, or returns `None` (printing why) when its binaries are
    /// missing and not required.
    pub async fn start(kind: SqlKind) -> Option<SqlServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        match kind {
            SqlKind::Postgres => {
                let Some(initdb) = pg_bin("initdb") else {
                    return skip("Postgres' initdb not found");
                };
                if !found("runuser") || pg_bin("pg_ctl").is_none() {
                    return skip("runuser or pg_ctl not found");
                }
                // The temp dir is root's: the data lives in a subdirectory postgres owns.
                let data = dir.path().join("data");
                std::fs::create_dir(&data).unwrap();
                chown_postgres(dir.path());
                let ok = Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(initdb)
                    .args(["-A", "trust", "-U", "postgres", "-D"])
                    .arg(&data)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "initdb failed");
            }
            SqlKind::MySql => {
                if !found("mariadb-install-db") || !found("mariadbd") {
                    return skip("mariadb-install-db or mariadbd not found");
                }
                let ok = Command::new("mariadb-install-db")
                    // The machine's my.cnf (user, log paths) is for its own server.
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", dir.path().join("data").display()))
                    .args([
                        "--user=root",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "mariadb-install-db failed");
            }
        }
        let mut server = SqlServer {
            kind,
            port,
            dir,
            child: None,
        };
        server.spawn().await;
        Some(server)
    }

    /// The server's URL, without a database.
    pub fn url(&self) -> String {
        match self.kind {
            SqlKind::Postgres => format!("postgres://postgres@127.0.0.1:{}", self.port),
            SqlKind::MySql => format!("mysql://root@127.0.0.1:{}", self.port),
        }
    }

    async fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = match self.kind {
            SqlKind::Postgres => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"])
                    .arg(pg_bin("postgres").expect("postgres"))
                    .arg("-D")
                    .arg(&data)
                    .args(["-p", &self.port.to_string(), "-h", "127.0.0.1"])
                    .arg("-k")
                    .arg(self.dir.path())
                    // Crash-safe as in production, but no fsync wait on a test machine.
                    .args(["-c", "fsync=off", "-c", "max_connections=50"]);
                c
            }
            SqlKind::MySql => {
                let mut c = Command::new("mariadbd");
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!(
                        "--socket={}",
                        self.dir.path().join("sock").display()
                    ))
                    .arg(format!("--port={}", self.port))
                    .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("pid").display()
                    ))
                    .args(["--innodb-buffer-pool-size=16M", "--skip-name-resolve"]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the database server");
        self.child = Some(child);
        let deadline = Instant::now() + START;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the {:?} server exited at start: {status}", self.kind);
            }
            assert!(
                Instant::now() < deadline,
                "the {:?} server did not listen within {START:?}",
                self.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Listening is not ready: Postgres answers "starting up" while it replays its log.
        while let Err(e) = self.ping().await {
            assert!(
                Instant::now() < deadline,
                "the {:?} server did not answer within {START:?}: {e}",
                self.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One query on a fresh connection.
    async fn ping(&self) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        match self.kind {
            SqlKind::Postgres => {
                let url = format!("{}/postgres", self.url());
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::query("select 1").execute(&mut c).await?;
                c.close().await
            }
            SqlKind::MySql => {
                let url = format!("{}/mysql", self.url());
                let mut c = sqlx::MySqlConnection::connect(&url).await?;
                sqlx::query("select 1").execute(&mut c).await?;
                c.close().await
            }
        }
    }

    /// Kills the server (SIGKILL: a crash, every connection dropped mid-call).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // runuser forwards no SIGKILL: kill its child, postgres' postmaster, by its pid file.
            if self.kind == SqlKind::Postgres
                && let Ok(pid) =
                    std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid"))
                && let Some(pid) = pid.lines().next()
            {
                Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .status()
                    .ok();
            }
            c.kill().ok();
            c.wait().ok();
            // Postgres' backends outlive a killed postmaster for a moment; they exit on their
            // own once it is gone. Wait until the port is free again.
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::fs::remove_file(self.dir.path().join("data").join("postmaster.pid")).ok();
        }
    }

    /// Kills and starts the server again on the same data and port.
    pub async fn restart(&mut self) {
        // The kill waits (up to 30 s) for the port to be free: off the runtime's workers.
        tokio::task::block_in_place(|| self.kill());
        self.spawn().await;
    }
}

/// Gives a directory tree to the postgres user.
fn chown_postgres(path: &std::path::Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown to postgres failed");
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        self.kill();
    }
}
