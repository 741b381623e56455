//! The stores every suite runs on, each opened fresh per test and closed when the test ends.

use std::time::Duration;

use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore;

use super::probe::Probe;
use super::redis::RedisServer;
use super::redis_cluster::RedisCluster;
use super::server::cookie_id;
use super::sql::{SqlDatabase, SqlKind};
use super::store::DemoStore;

/// The backends every store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `socketio_sessions::store::MemoryStore` (conditional saves).
    Memory,
    /// `socketio_sessions::store::SqliteStore` on a temp file (conditional saves).
    Sqlite,
    /// `socketio_sessions::store::RedisStore` on a spawned server (conditional saves).
    Redis,
    /// `socketio_sessions::store::RedisStore` on a Redis Cluster of the test's own (3 primaries,
    /// 3 replicas).
    RedisCluster,
    /// `socketio_sessions::store::PostgresStore` in a database of the test's own.
    Postgres,
    /// `socketio_sessions::store::MySqlStore` in a database of the test's own (MariaDB here).
    MySql,
    /// `tower_sessions::MemoryStore`: any store without conditional saves.
    PlainMemory,
}

/// A store of one backend, with whatever keeps it alive. Dropped after the test's servers
/// (declare it first): it then lifts any hang and closes the store's pool, so that no
/// connection, worker thread or retry loop of it outlives the test.
pub struct TestStore {
    pub backend: Backend,
    /// The store of the conditional backends.
    pub store: Probe<DemoStore>,
    /// The store of `Backend::PlainMemory`.
    pub plain: Probe<tower_sessions::MemoryStore>,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
    dir: Option<tempfile::TempDir>,
    /// The runtime the SQL pools' connections live on (see [`Probe::at_home`]).
    home: Option<Home>,
    /// Dropped after the store's pool is closed (fields drop in order after `Drop::drop`).
    database: Option<SqlDatabase>,
}

/// A runtime on a thread of its own, for as long as the store: dropping a runtime from async
/// code panics, so the thread drops it when told to stop.
struct Home {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Home {
    fn start() -> Home {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the store's runtime");
            handle_tx.send(runtime.handle().clone()).ok();
            runtime.block_on(async {
                stopped.await.ok();
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        Home {
            handle: handle_rx.recv().expect("the store's runtime started"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

impl TestStore {
    /// Opens a fresh store; `None` when the backend is unavailable and not required.
    pub async fn open(backend: Backend) -> Option<TestStore> {
        Self::open_on(backend, None).await
    }

    /// Opens a fresh store; a SQL backend's database on the server at `sql_server` (a URL
    /// without a database) instead of the machine's.
    pub async fn open_on(backend: Backend, sql_server: Option<&str>) -> Option<TestStore> {
        let (mut database, mut home, mut cluster) = (None, None, None);
        let (store, redis, dir) = match backend {
            Backend::Postgres | Backend::MySql => {
                let kind = match backend {
                    Backend::Postgres => SqlKind::Postgres,
                    _ => SqlKind::MySql,
                };
                let server = sql_server.map_or_else(|| kind.server_url(), str::to_owned);
                let db = SqlDatabase::create_on(kind, &server).await?;
                let runtime = Home::start();
                let url = db.url();
                let store = runtime
                    .handle
                    .spawn(async move { DemoStore::open(&url).await })
                    .await
                    .unwrap()
                    .unwrap();
                database = Some(db);
                home = Some(runtime);
                (store, None, None)
            }
            Backend::Memory | Backend::PlainMemory => {
                (DemoStore::open("memory").await.unwrap(), None, None)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
                (DemoStore::open(&url).await.unwrap(), None, Some(dir))
            }
            Backend::Redis => {
                let redis = RedisServer::start().await?;
                (
                    DemoStore::open(&redis.url()).await.unwrap(),
                    Some(redis),
                    None,
                )
            }
            Backend::RedisCluster => {
                let started = RedisCluster::start().await?;
                let store = DemoStore::open(&started.url()).await.unwrap();
                cluster = Some(started);
                (store, None, None)
            }
        };
        Some(TestStore {
            backend,
            store: match &home {
                Some(h) => Probe::new(store).at_home(h.handle.clone()),
                None => Probe::new(store),
            },
            plain: Probe::new(tower_sessions::MemoryStore::default()),
            redis,
            cluster,
            dir,
            home,
            database,
        })
    }

    /// The `DEMO_STORE` URL of a store that another process could open too (`None` for the
    /// in-process memory stores): another node opens its own pool with it.
    pub fn shared_url(&self) -> Option<String> {
        match self.backend {
            Backend::Redis => self.redis.as_ref().map(RedisServer::url),
            Backend::RedisCluster => self.cluster.as_ref().map(RedisCluster::url),
            Backend::Sqlite => self
                .sqlite_path()
                .map(|p| format!("sqlite://{}", p.display())),
            Backend::Postgres | Backend::MySql => self.database_url(),
            Backend::Memory | Backend::PlainMemory => None,
        }
    }

    /// The database of `Backend::Postgres` and `Backend::MySql`.
    pub fn database_url(&self) -> Option<String> {
        self.database.as_ref().map(SqlDatabase::url)
    }

    /// The SQLite file of `Backend::Sqlite`.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("sessions.db"))
    }

    /// The stored record of a session, read behind the library's back.
    pub async fn record(&self, id: &Id) -> Option<Record> {
        match self.backend {
            Backend::PlainMemory => self.plain.inner().load(id).await.unwrap(),
            _ => self.store.inner().load(id).await.unwrap(),
        }
    }

    /// Another session of the same user (as a login on another device would make it, if the
    /// demo had passwords): a copy of this cookie's record under a new id. Returns its cookie.
    pub async fn same_user_elsewhere(&self, cookie: &str) -> String {
        let mut record = self.record(&cookie_id(cookie)).await.expect("a session");
        record.id = Id::default();
        match self.backend {
            Backend::PlainMemory => self.plain.inner.create(&mut record).await.unwrap(),
            _ => self.store.inner.create(&mut record).await.unwrap(),
        }
        let cookie = format!("id={}", record.id);
        super::secrets::cookie(&cookie);
        cookie
    }

    /// Deletes a session's record behind the library's back.
    pub async fn delete_behind(&self, id: &Id) {
        match self.backend {
            Backend::PlainMemory => self.plain.inner().delete(id).await.unwrap(),
            _ => self.store.inner().delete(id).await.unwrap(),
        }
    }

    /// How many store calls were made so far.
    pub fn calls(&self) -> usize {
        self.store.calls() + self.plain.calls()
    }

    /// Stops the store for real where it can: kills Redis (every node of a cluster), closes the
    /// SQLite pool; the memory store cannot stop, so its probe hangs every call.
    pub async fn stop(&mut self) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.kill_all();
            return;
        }
        match (self.backend, self.redis.as_mut()) {
            (_, Some(redis)) => redis.kill(),
            (Backend::Sqlite | Backend::Postgres | Backend::MySql, None) => {
                self.store.inner().close().await
            }
            (Backend::PlainMemory, _) => self.plain.hang(),
            _ => self.store.hang(),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.store.heal();
        self.plain.heal();
        close_now(self.store.inner().clone());
    }
}

/// Closes a store from a `Drop`, which cannot await: on a thread of its own, so that the test's
/// runtime (which may be the one dropping it) is not blocked on itself. A SQLite pool is never
/// freed otherwise: its connections' worker threads would stay for the rest of the test binary.
pub fn close_now(store: DemoStore) {
    let closing = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to close the store on");
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), store.close())
                .await
                .ok();
        });
    });
    closing.join().ok();
}
