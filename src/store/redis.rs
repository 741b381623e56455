//! Redis, in the format of `tower-sessions-redis-store` (key = id, value = MessagePack of the
//! record, `EXAT` expiry), with conditional saves by a Lua script that compares the exact bytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::{Client, WithOptions};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::prelude::Pool;
use fred::types::Value as RedisValue;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::redis_fence::{Fence, Script, fenced_script};
use super::redis_pool::{WRITE_WITHIN, connect_pool, eval_once, write_options};
use super::redis_url::redis_config;
use super::replica_wait::{ReplicaWait, write_bound};
use super::{
    ConditionalStore, Reloaded, SaveOutcome, Version, Versioned, backend_error, decode_msgpack,
    encode_msgpack, reload_msgpack,
};

/// Writes ARGV[2] with expiry ARGV[3] only if the key still holds exactly ARGV[1].
/// Returns 1 when written, 0 when the value differs, -1 when the key is gone, -2 (writing
/// nothing) past the deadline in ARGV[4] ([fenced](super::redis_fence)).
static SAVE_IF: Script = Script::new(fenced_script!(
    r#"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1
"#
));

/// Sessions in Redis, with conditional saves, in the keys and encoding of
/// `tower-sessions-redis-store` (records written by it stay readable, and the other way round).
/// Redis expires records itself: no cleanup task is needed.
///
/// One server or a Redis Cluster: every call touches one key, so any slot works, and the
/// cluster client follows redirections and failovers. With a cluster, see
/// [`with_replica_wait`](Self::with_replica_wait) for what a failover can lose.
///
/// ```no_run
/// # async fn run() -> Result<(), socketio_sessions::store::fred::error::Error> {
/// use socketio_sessions::store::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let clustered = RedisStore::connect("redis-cluster://10.0.0.1:7000,10.0.0.2:7000").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: tower_sessions_redis_store::RedisStore<Pool>,
    pool: Pool,
    /// `None`: a save returns once the primary has it.
    wait: Option<ReplicaWait>,
    /// How long a save may wait to be sent and answered before it is abandoned for good.
    write_within: Duration,
    /// The anchor of its saves' deadlines in the server's clock: one per store, shared by its
    /// clones (they use the same servers).
    fence: Arc<Fence>,
}

impl RedisStore {
    /// A store over a connected fred pool.
    pub fn new(pool: Pool) -> Self {
        RedisStore {
            inner: tower_sessions_redis_store::RedisStore::new(pool.clone()),
            pool,
            wait: None,
            write_within: WRITE_WITHIN,
            fence: Arc::default(),
        }
    }

    /// Connects a pool of 4 clients to the Redis at `url`: `redis://HOST:PORT[/DB]`, or a
    /// cluster as `redis-cluster://HOST:PORT[,HOST:PORT...]` (see [`redis_config`]). Waits at
    /// most 5 s for the first connection; afterwards the clients reconnect forever (store calls
    /// fail meanwhile, and sockets get `session_unavailable`). For other pool settings, build a
    /// [`Pool`] and use [`new`](Self::new).
    ///
    /// [`redis_config`]: super::redis_config
    pub async fn connect(url: &str) -> Result<Self, fred::error::Error> {
        Ok(RedisStore::new(connect_pool(redis_config(url)?, 4).await?))
    }

    /// Makes every write (saves, and the HTTP side's creates, saves and deletes: a login, a
    /// logout) wait until at least `replicas` replicas of the record's primary have it (Redis
    /// `WAIT`), at most `timeout`. A write that reached fewer fails as a store error: it is on
    /// the primary, and readers see it, but it is not acknowledged as saved.
    ///
    /// Without it a save returns once the primary has it, and Redis replicates afterwards: when
    /// the primary fails in between, the replica promoted in its place lacks the last saves,
    /// and those sessions go back to an earlier state (a failover loses at most the saves of
    /// the last moments before it, but they were acknowledged). With it, an acknowledged save
    /// survives the failure of its primary as long as a replica that has it is promoted (Redis
    /// Cluster promotes the most up-to-date one).
    ///
    /// What it costs: one more round trip per write, plus the replication delay (well under a
    /// millisecond on a local network). Redis holds the connection that sent `WAIT` meanwhile,
    /// so the pool client's later commands to that node wait behind it; while a shard has
    /// fewer than `replicas` replicas, each write there holds its connection for the whole
    /// `timeout`. The sessions' store timeout must be longer than the write timeout plus
    /// `timeout` plus 500 ms for the answer (`build` checks): 2 s holds a 500 ms wait. With
    /// `replicas` 0, writes do not wait.
    pub fn with_replica_wait(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(ReplicaWait { replicas, timeout });
        self
    }

    /// How long a write (a socket's save, or the HTTP side's create, save or delete) may take
    /// to be sent and answered before it fails and is abandoned for good (default 500 ms).
    /// fred holds commands while it reconnects: a write still held when its caller gave up
    /// would otherwise be sent after the reconnect, and land although the caller was told it
    /// failed. The sessions' store timeout must be longer
    /// ([`build`](crate::SocketSessionsBuilder::build) checks).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_within = timeout;
        self
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn fetch(&self, id: &Id) -> session_store::Result<Option<Vec<u8>>> {
        self.pool.get(id.to_string()).await.map_err(backend_error)
    }

    /// An unconditional write (the HTTP side's) through one pool client, as a save goes: never
    /// queued while the client reconnects, abandoned after the write timeout; then, with a
    /// replica wait, the replicas' confirmation on that client's connection (`WAIT` counts one
    /// connection's writes). `write` returns the id it wrote under: a create picks a new one
    /// when its first is taken.
    async fn write<F, Fut>(&self, write: F) -> session_store::Result<()>
    where
        F: FnOnce(tower_sessions_redis_store::RedisStore<WithOptions<Client>>) -> Fut,
        Fut: Future<Output = session_store::Result<Id>>,
    {
        let client = self.pool.next();
        let options = write_options(client, self.write_within);
        let store = tower_sessions_redis_store::RedisStore::new(client.with_options(&options));
        let id = write(store).await?;
        match &self.wait {
            Some(wait) => wait.confirm(client, &id.to_string()).await,
            None => Ok(()),
        }
    }
}

// tower-sessions-redis-store's own formats and commands, written as saves are (see
// `RedisStore::write`).
#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.write(|store| async move { store.create(record).await.map(|()| record.id) })
            .await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.write(|store| async move { store.save(record).await.map(|()| record.id) })
            .await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.inner.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.write(|store| async move { store.delete(id).await.map(|()| *id) })
            .await
    }
}

#[async_trait]
impl ConditionalStore for RedisStore {
    // Fenced: past its caller's deadline a save's script writes nothing.
    fn refuses_late_saves(&self) -> bool {
        true
    }

    // Its versions are the records' MessagePack, as stored.
    fn versions_hold_records(&self) -> bool {
        true
    }

    fn write_timeout(&self) -> Option<Duration> {
        Some(write_bound(self.write_within, self.wait))
    }

    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>> {
        self.fetch(id).await?.map(decode_msgpack).transpose()
    }

    async fn reload_versioned(&self, id: &Id, known: &Version) -> session_store::Result<Reloaded> {
        reload_msgpack(self.fetch(id).await?, known)
    }

    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome> {
        let bytes = encode_msgpack(record)?;
        let args: Vec<RedisValue> = vec![
            RedisValue::Bytes(expected.as_bytes().to_vec().into()),
            RedisValue::Bytes(bytes.clone().into()),
            RedisValue::Integer(record.expiry_date.unix_timestamp()),
        ];
        let key = record.id.to_string();
        // One client for the write and the wait: `WAIT` counts its own connection's writes.
        let client = self.pool.next();
        let answer = eval_once(client, &self.fence, &SAVE_IF, &key, args, self.write_within)
            .await
            .map_err(backend_error)?;
        Ok(match answer {
            1 => {
                if let Some(wait) = &self.wait {
                    wait.confirm(client, &key).await?;
                }
                SaveOutcome::Saved(Version::of_msgpack(bytes))
            }
            0 => SaveOutcome::Conflict,
            _ => SaveOutcome::Gone,
        })
    }
}
