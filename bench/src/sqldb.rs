//! The run's own database on the machine's Postgres and MariaDB/MySQL (`sios_bench_<pid>`),
//! created when the run starts and dropped when it ends. The servers come from
//! `SOCKETIO_SESSIONS_POSTGRES` / `SOCKETIO_SESSIONS_MYSQL` (a URL without a database), as for
//! the SQL tests, by default `postgres://postgres@127.0.0.1:5432` and
//! `mysql://root@127.0.0.1:3306`. A run that was killed leaves its database behind; the next
//! run drops every `sios_bench_<pid>` whose process is gone.

use std::time::Duration;

use socketio_sessions::store::sqlx::{self, Connection, MySqlConnection, PgConnection};

/// Which SQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlKind {
    Postgres,
    MySql,
}

/// The run's database on one server.
#[derive(Debug, Clone)]
pub(crate) struct SqlDb {
    kind: SqlKind,
    server: String,
    name: String,
    /// The database's URL, for the servers under test (`--store`).
    pub(crate) url: String,
    /// The server's version string.
    pub(crate) version: String,
    /// Postgres: the postmaster, whose children are the server's processes; MariaDB: the
    /// server process.
    server_pid: Option<u32>,
}

/// Connecting and each statement give up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

impl SqlKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SqlKind::Postgres => "Postgres",
            SqlKind::MySql => "MySQL",
        }
    }

    fn server_url(self) -> String {
        let (var, default) = match self {
            SqlKind::Postgres => (
                "SOCKETIO_SESSIONS_POSTGRES",
                "postgres://postgres@127.0.0.1:5432",
            ),
            SqlKind::MySql => ("SOCKETIO_SESSIONS_MYSQL", "mysql://root@127.0.0.1:3306"),
        };
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }
}

/// An open admin connection.
enum Admin {
    Pg(PgConnection),
    My(MySqlConnection),
}

impl Admin {
    async fn open(kind: SqlKind, server: &str) -> Result<Admin, String> {
        let connect = async {
            match kind {
                SqlKind::Postgres => PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .map(Admin::Pg),
                SqlKind::MySql => MySqlConnection::connect(server).await.map(Admin::My),
            }
        };
        match tokio::time::timeout(TIMEOUT, connect).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(format!("{} at {server} is not reachable: {e}", kind.name())),
            Err(_) => Err(format!(
                "{} at {server} did not answer within {TIMEOUT:?}",
                kind.name()
            )),
        }
    }

    async fn execute(&mut self, statement: &str) -> Result<(), String> {
        let run = async {
            match self {
                Admin::Pg(c) => sqlx::query(statement).execute(c).await.map(|_| ()),
                Admin::My(c) => sqlx::query(statement).execute(c).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(TIMEOUT, run).await {
            Ok(r) => r.map_err(|e| format!("`{statement}`: {e}")),
            Err(_) => Err(format!("`{statement}`: no answer within {TIMEOUT:?}")),
        }
    }

    /// The first column of every row, as text.
    async fn strings(&mut self, statement: &str) -> Result<Vec<String>, String> {
        let run = async {
            match self {
                Admin::Pg(c) => {
                    sqlx::query_scalar::<_, String>(statement)
                        .fetch_all(c)
                        .await
                }
                Admin::My(c) => {
                    sqlx::query_scalar::<_, String>(statement)
                        .fetch_all(c)
                        .await
                }
            }
        };
        match tokio::time::timeout(TIMEOUT, run).await {
            Ok(r) => r.map_err(|e| format!("`{statement}`: {e}")),
            Err(_) => Err(format!("`{statement}`: no answer within {TIMEOUT:?}")),
        }
    }

    async fn close(self) {
        let _ = match self {
            Admin::Pg(c) => c.close().await,
            Admin::My(c) => c.close().await,
        };
    }
}

impl SqlDb {
    /// Creates the run's database (after dropping those of runs that are gone), or says why not.
    pub(crate) async fn create(kind: SqlKind) -> Result<SqlDb, String> {
        let server = kind.server_url();
        let mut admin = Admin::open(kind, &server).await?;
        let made = async {
            let (list, version, pid_query) = match kind {
                SqlKind::Postgres => (
                    "select datname::text from pg_database where datname like 'sios\\_bench\\_%'",
                    "select version()",
                    "select pg_backend_pid()::text",
                ),
                SqlKind::MySql => (
                    "select schema_name from information_schema.schemata \
                     where schema_name like 'sios\\_bench\\_%'",
                    "select version()",
                    "select @@pid_file",
                ),
            };
            for stale in admin.strings(list).await? {
                let gone = stale
                    .strip_prefix("sios_bench_")
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| {
                        p != std::process::id()
                            && !std::path::Path::new(&format!("/proc/{p}")).exists()
                    });
                if gone {
                    eprintln!("dropping {stale} on {} (its run is gone)", kind.name());
                    admin.execute(&drop_statement(kind, &stale)).await?;
                }
            }
            let name = format!("sios_bench_{}", std::process::id());
            admin.execute(&drop_statement(kind, &name)).await?;
            admin.execute(&format!("create database {name}")).await?;
            let version = admin
                .strings(version)
                .await?
                .into_iter()
                .next()
                .unwrap_or_default();
            let pid = admin.strings(pid_query).await.ok().and_then(|v| {
                let v = v.into_iter().next()?;
                match kind {
                    // A backend's parent is the postmaster.
                    SqlKind::Postgres => parent_pid(v.trim().parse().ok()?),
                    SqlKind::MySql => std::fs::read_to_string(v.trim()).ok()?.trim().parse().ok(),
                }
            });
            Ok::<_, String>(SqlDb {
                kind,
                url: format!("{server}/{name}"),
                server: server.clone(),
                name,
                version,
                server_pid: pid,
            })
        }
        .await;
        admin.close().await;
        made
    }

    /// Drops the run's database.
    pub(crate) async fn drop_database(&self) -> Result<(), String> {
        let mut admin = Admin::open(self.kind, &self.server).await?;
        let done = admin.execute(&drop_statement(self.kind, &self.name)).await;
        admin.close().await;
        done
    }

    /// The database server's processes (Postgres: the postmaster and its children), so that
    /// their CPU time counts as the benchmark's own rather than as other processes' noise.
    /// Empty when the server's process is not visible from here.
    pub(crate) fn server_pids(&self) -> Vec<u32> {
        let Some(top) = self.server_pid else {
            return Vec::new();
        };
        let mut pids = vec![top];
        if self.kind == SqlKind::Postgres
            && let Ok(dir) = std::fs::read_dir("/proc")
        {
            pids.extend(
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|p| parent_pid(*p) == Some(top)),
            );
        }
        pids
    }
}

fn drop_statement(kind: SqlKind, name: &str) -> String {
    match kind {
        // Connections left by a killed server would block a plain drop.
        SqlKind::Postgres => format!("drop database if exists {name} with (force)"),
        SqlKind::MySql => format!("drop database if exists {name}"),
    }
}

/// The parent of a process, from /proc.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
