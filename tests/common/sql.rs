//! A database of the test's own on the machine's Postgres (127.0.0.1:5432, user `postgres`) or
//! MariaDB/MySQL (127.0.0.1:3306, `root`), created fresh and dropped when the test ends. Other
//! addresses come from `SOCKETIO_SESSIONS_POSTGRES` / `SOCKETIO_SESSIONS_MYSQL` (a server URL
//! without a database).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use socketio_sessions::store::sqlx::{self, Connection};

use super::required::{REQUIRE_ENV, required};

/// Which SQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    Postgres,
    MySql,
}

impl SqlKind {
    /// The server's URL (no database).
    pub fn server_url(self) -> String {
        let (var, default) = match self {
            SqlKind::Postgres => (
                "SOCKETIO_SESSIONS_POSTGRES",
                "postgres://postgres@127.0.0.1:5432",
            ),
            SqlKind::MySql => ("SOCKETIO_SESSIONS_MYSQL", "mysql://root@127.0.0.1:3306"),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_owned())
    }

    /// The database the admin connection uses to create and drop the test's own.
    fn admin_url(self, server: &str) -> String {
        match self {
            SqlKind::Postgres => format!("{server}/postgres"),
            SqlKind::MySql => format!("{server}/mysql"),
        }
    }
}

/// A fresh database, dropped on drop.
pub struct SqlDatabase {
    pub kind: SqlKind,
    server: String,
    pub name: String,
}

impl SqlDatabase {
    /// Creates a database on the machine's server, or returns `None` (printing why) when the
    /// server does not answer and is not required.
    pub async fn create(kind: SqlKind) -> Option<SqlDatabase> {
        Self::create_on(kind, &kind.server_url()).await
    }

    /// Creates a database on the server at `server` (a URL without a database).
    pub async fn create_on(kind: SqlKind, server: &str) -> Option<SqlDatabase> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sios_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            tower_sessions::session::Id::default().0.unsigned_abs() % 1_000_000
        );
        sweep_dead(kind, server).await;
        let created = admin(kind, server, &format!("create database {name}")).await;
        if let Err(e) = created {
            assert!(
                !required(),
                "{kind:?} at {server} is not usable ({e}), and {REQUIRE_ENV} requires it"
            );
            eprintln!("skip: {kind:?} at {server} is not usable: {e}");
            return None;
        }
        Some(SqlDatabase {
            kind,
            server: server.to_owned(),
            name,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

/// Drops the databases of test processes that are gone (killed before their drops ran), once
/// per process and server.
async fn sweep_dead(kind: SqlKind, server: &str) {
    static SWEPT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap();
        if swept.iter().any(|s| s == server) {
            return;
        }
        swept.push(server.to_owned());
    }
    let url = kind.admin_url(server);
    let names: Vec<String> = match kind {
        SqlKind::Postgres => async {
            let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
            sqlx::query_scalar("select datname from pg_database where datname like 'sios\\_%'")
                .fetch_all(&mut c)
                .await
                .ok()
        }
        .await
        .unwrap_or_default(),
        SqlKind::MySql => async {
            let mut c = sqlx::MySqlConnection::connect(&url).await.ok()?;
            sqlx::query_scalar(
                "select cast(schema_name as char) from information_schema.schemata \
                 where schema_name like 'sios\\_%'",
            )
            .fetch_all(&mut c)
            .await
            .ok()
        }
        .await
        .unwrap_or_default(),
    };
    for name in names {
        // `sios_<pid>_<n>_<r>`: only those whose process is gone.
        let Some(pid) = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let statement = match kind {
            SqlKind::Postgres => format!("drop database if exists {name} with (force)"),
            SqlKind::MySql => format!("drop database if exists {name}"),
        };
        admin(kind, server, &statement).await.ok();
    }
}

/// Runs one statement on the server's admin database.
async fn admin(kind: SqlKind, server: &str, statement: &str) -> Result<(), String> {
    let url = kind.admin_url(server);
    let run = async {
        match kind {
            SqlKind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(statement).execute(&mut c).await?;
                c.close().await
            }
            SqlKind::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&url).await?;
                sqlx::query(statement).execute(&mut c).await?;
                c.close().await
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 10 s".to_owned()),
    }
}

impl Drop for SqlDatabase {
    fn drop(&mut self) {
        let (kind, server) = (self.kind, self.server.clone());
        let statement = match kind {
            // Connections the test left open (a pool closing late) must not keep it.
            SqlKind::Postgres => format!("drop database if exists {} with (force)", self.name),
            SqlKind::MySql => format!("drop database if exists {}", self.name),
        };
        // On a thread of its own: a Drop cannot await, and the test's runtime may be the one
        // dropping this.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the database on");
            if let Err(e) = runtime.block_on(admin(kind, &server, &statement)) {
                eprintln!("could not drop a test database: {e}");
            }
        })
        .join()
        .ok();
    }
}
