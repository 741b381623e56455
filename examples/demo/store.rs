//! The demo's store, chosen by `DEMO_STORE`: `memory`, `sqlite://PATH`, `postgres://...`,
//! `mysql://...`, `redis://HOST:PORT` or `redis-cluster://HOST:PORT[,HOST:PORT...]`.

use std::time::Duration;

use async_trait::async_trait;
use socketio_sessions::store::fred::prelude::ClientLike;
use socketio_sessions::store::{ConditionalStore, Reloaded, SaveOutcome, Version, Versioned};
use socketio_sessions::store::{
    ConnectRedisStore, MemoryStore, MySqlStore, PostgresStore, RedisStore, SqliteStore,
};
use tower_sessions::ExpiredDeletion;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// One of the three stores the demo can run on.
#[derive(Debug, Clone)]
pub enum DemoStore {
    /// In-process memory (the default).
    Memory(MemoryStore),
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A Postgres database (table `tower_sessions.session`).
    Postgres(PostgresStore),
    /// A MySQL or MariaDB database (the table `session` in the URL's database).
    MySql(MySqlStore),
    /// A Redis server.
    Redis(RedisStore),
    /// An Express app's sessions in Redis (connect-redis format).
    Express(ConnectRedisStore),
}

impl DemoStore {
    /// Opens the store named by a `DEMO_STORE` value.
    pub async fn open(url: &str) -> Result<Self, String> {
        if url == "memory" {
            return Ok(DemoStore::Memory(MemoryStore::default()));
        }
        if url.starts_with("sqlite://") {
            let store = SqliteStore::connect(url)
                .await
                .map_err(|e| format!("cannot open the SQLite database: {e}"))?;
            spawn_cleanup(store.clone());
            return Ok(DemoStore::Sqlite(store));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PostgresStore::connect(url)
                .await
                .map_err(|e| format!("cannot open the Postgres database: {e}"))?;
            spawn_cleanup(store.clone());
            return Ok(DemoStore::Postgres(store));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let store = MySqlStore::connect(&url.replacen("mariadb://", "mysql://", 1))
                .await
                .map_err(|e| format!("cannot open the MySQL database: {e}"))?;
            spawn_cleanup(store.clone());
            return Ok(DemoStore::MySql(store));
        }
        if is_redis(url) {
            let store = RedisStore::connect(url)
                .await
                .map_err(|e| format!("cannot connect to Redis at `{url}`: {e}"))?;
            return Ok(DemoStore::Redis(store));
        }
        Err(format!(
            "unknown DEMO_STORE `{url}`: use `memory`, `sqlite://PATH`, `postgres://...`, \
             `mysql://...`, `redis://HOST:PORT` or `redis-cluster://HOST:PORT,HOST:PORT`"
        ))
    }

    /// Saves wait until `replicas` replicas have them (Redis stores only).
    pub fn with_replica_wait(self, replicas: u32, timeout: Duration) -> Result<Self, String> {
        match self {
            DemoStore::Redis(s) => Ok(DemoStore::Redis(s.with_replica_wait(replicas, timeout))),
            DemoStore::Express(s) => Ok(DemoStore::Express(s.with_replica_wait(replicas, timeout))),
            _ => Err("DEMO_REDIS_REPLICAS needs a Redis DEMO_STORE".into()),
        }
    }
}

/// Deletes expired rows every minute, for as long as the process runs (SQL stores keep them
/// otherwise).
fn spawn_cleanup(store: impl ExpiredDeletion + Clone + 'static) {
    tokio::spawn(store.continuously_delete_expired(Duration::from_secs(60)));
}

/// `redis://...` (one server) or `redis-cluster://...`.
fn is_redis(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("redis-cluster://")
}

impl DemoStore {
    /// The sessions of an Express app (express-session + connect-redis) in the Redis at `url`.
    pub async fn open_express(url: &str) -> Result<Self, String> {
        if !is_redis(url) {
            return Err(format!(
                "DEMO_EXPRESS_SECRET needs DEMO_STORE=redis://HOST:PORT (connect-redis), not `{url}`"
            ));
        }
        let store = ConnectRedisStore::connect(url)
            .await
            .map_err(|e| format!("cannot connect to Redis at `{url}`: {e}"))?;
        Ok(DemoStore::Express(store))
    }

    /// Closes the store's connections (SQLite: lets the file be checkpointed and unlocked).
    pub async fn close(&self) {
        match self {
            DemoStore::Memory(_) => {}
            DemoStore::Sqlite(s) => s.pool().close().await,
            DemoStore::Postgres(s) => s.pool().close().await,
            DemoStore::MySql(s) => s.pool().close().await,
            DemoStore::Redis(s) => {
                s.pool().quit().await.ok();
            }
            DemoStore::Express(s) => {
                s.pool().quit().await.ok();
            }
        }
    }
}

#[async_trait]
impl SessionStore for DemoStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            DemoStore::Memory(s) => s.create(record).await,
            DemoStore::Sqlite(s) => s.create(record).await,
            DemoStore::Postgres(s) => s.create(record).await,
            DemoStore::MySql(s) => s.create(record).await,
            DemoStore::Redis(s) => s.create(record).await,
            DemoStore::Express(s) => s.create(record).await,
        }
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            DemoStore::Memory(s) => s.save(record).await,
            DemoStore::Sqlite(s) => s.save(record).await,
            DemoStore::Postgres(s) => s.save(record).await,
            DemoStore::MySql(s) => s.save(record).await,
            DemoStore::Redis(s) => s.save(record).await,
            DemoStore::Express(s) => s.save(record).await,
        }
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            DemoStore::Memory(s) => s.load(id).await,
            DemoStore::Sqlite(s) => s.load(id).await,
            DemoStore::Postgres(s) => s.load(id).await,
            DemoStore::MySql(s) => s.load(id).await,
            DemoStore::Redis(s) => s.load(id).await,
            DemoStore::Express(s) => s.load(id).await,
        }
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            DemoStore::Memory(s) => s.delete(id).await,
            DemoStore::Sqlite(s) => s.delete(id).await,
            DemoStore::Postgres(s) => s.delete(id).await,
            DemoStore::MySql(s) => s.delete(id).await,
            DemoStore::Redis(s) => s.delete(id).await,
            DemoStore::Express(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ConditionalStore for DemoStore {
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        match self {
            DemoStore::Memory(s) => s.load_versioned(id).await,
            DemoStore::Sqlite(s) => s.load_versioned(id).await,
            DemoStore::Postgres(s) => s.load_versioned(id).await,
            DemoStore::MySql(s) => s.load_versioned(id).await,
            DemoStore::Redis(s) => s.load_versioned(id).await,
            DemoStore::Express(s) => s.load_versioned(id).await,
        }
    }
    async fn reload_versioned(&self, id: &Id, known: &Version) -> session_store::Result<Reloaded> {
        match self {
            DemoStore::Memory(s) => s.reload_versioned(id, known).await,
            DemoStore::Sqlite(s) => s.reload_versioned(id, known).await,
            DemoStore::Postgres(s) => s.reload_versioned(id, known).await,
            DemoStore::MySql(s) => s.reload_versioned(id, known).await,
            DemoStore::Redis(s) => s.reload_versioned(id, known).await,
            DemoStore::Express(s) => s.reload_versioned(id, known).await,
        }
    }
    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        match self {
            DemoStore::Memory(s) => s.save_if(record, expected).await,
            DemoStore::Sqlite(s) => s.save_if(record, expected).await,
            DemoStore::Postgres(s) => s.save_if(record, expected).await,
            DemoStore::MySql(s) => s.save_if(record, expected).await,
            DemoStore::Redis(s) => s.save_if(record, expected).await,
            DemoStore::Express(s) => s.save_if(record, expected).await,
        }
    }
    // And a save its store answers at once (memory), or every written message allocates an
    // async call.
    fn save_if_now(
        &self,
        record: &Record,
        expected: &Version,
    ) -> Option<session_store::Result<SaveOutcome>> {
        match self {
            DemoStore::Memory(s) => s.save_if_now(record, expected),
            _ => None,
        }
    }
    // A wrapper passes on how long its store may still send a write, for `build` to check.
    fn write_timeout(&self) -> Option<std::time::Duration> {
        match self {
            DemoStore::Redis(s) => s.write_timeout(),
            DemoStore::Express(s) => s.write_timeout(),
            _ => None,
        }
    }
    // And whether a save told failed can still land (it decides whether an `update` may skip
    // the reload).
    fn refuses_late_saves(&self) -> bool {
        match self {
            DemoStore::Memory(s) => s.refuses_late_saves(),
            DemoStore::Sqlite(s) => s.refuses_late_saves(),
            DemoStore::Postgres(s) => s.refuses_late_saves(),
            DemoStore::MySql(s) => s.refuses_late_saves(),
            DemoStore::Redis(s) => s.refuses_late_saves(),
            DemoStore::Express(s) => s.refuses_late_saves(),
        }
    }
    // And whether its versions rebuild their records (idle sessions then keep only those).
    fn versions_hold_records(&self) -> bool {
        match self {
            DemoStore::Memory(s) => s.versions_hold_records(),
            DemoStore::Sqlite(s) => s.versions_hold_records(),
            DemoStore::Postgres(s) => s.versions_hold_records(),
            DemoStore::MySql(s) => s.versions_hold_records(),
            DemoStore::Redis(s) => s.versions_hold_records(),
            DemoStore::Express(s) => s.versions_hold_records(),
        }
    }
    // The Express store keys records by sid: a wrapper must pass these on too.
    fn hold_external_key(&self, id: &Id, key: &std::sync::Arc<str>) {
        if let DemoStore::Express(s) = self {
            s.hold_external_key(id, key);
        }
    }
    fn release_external_key(&self, id: &Id) {
        if let DemoStore::Express(s) = self {
            s.release_external_key(id);
        }
    }
    fn id_for_key(&self, key: &str) -> Option<Id> {
        match self {
            DemoStore::Express(s) => s.id_for_key(key),
            _ => key.parse().ok(),
        }
    }
}
