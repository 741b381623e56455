//! Redis, in the format of `tower-sessions-redis-store` (key = id, value = MessagePack of the
//! record, `EXAT` expiry), with conditional saves by a Lua script that compares the exact bytes.

use async_trait::async_trait;
use fred::interfaces::{KeysInterface, LuaInterface};
use fred::prelude::{ClientLike, Config, Pool, ReconnectPolicy};
use fred::types::Value as RedisValue;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::{
    ConditionalStore, Reloaded, SaveOutcome, Version, Versioned, backend_error, decode_msgpack,
    delegate_session_store, encode_msgpack, reload_msgpack,
};

/// Writes ARGV[2] with expiry ARGV[3] only if the key still holds exactly ARGV[1].
/// Returns 1 when written, 0 when the value differs, -1 when the key is gone.
const SAVE_IF: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1
"#;

/// Sessions in Redis, with conditional saves, in the keys and encoding of
/// `tower-sessions-redis-store` (records written by it stay readable, and the other way round).
/// Redis expires records itself: no cleanup task is needed.
///
/// ```no_run
/// # async fn run() -> Result<(), socketio_sessions::store::fred::error::Error> {
/// let store = socketio_sessions::store::RedisStore::connect("redis://127.0.0.1:6379").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: tower_sessions_redis_store::RedisStore<Pool>,
    pool: Pool,
}

impl RedisStore {
    /// A store over a connected fred pool.
    pub fn new(pool: Pool) -> Self {
        RedisStore {
            inner: tower_sessions_redis_store::RedisStore::new(pool.clone()),
            pool,
        }
    }

    /// Connects a pool of 4 clients to the Redis at `url` (`redis://HOST:PORT[/DB]`), waiting
    /// at most 5 s for the first connection; afterwards the clients reconnect forever (store
    /// calls fail meanwhile, and sockets get `session_unavailable`). For other pool settings,
    /// build a [`Pool`] and use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, fred::error::Error> {
        let config = Config::from_url(url)?;
        let policy = ReconnectPolicy::new_constant(0, 200);
        let pool = Pool::new(config, None, None, Some(policy), 4)?;
        pool.connect_pool();
        tokio::time::timeout(std::time::Duration::from_secs(5), pool.wait_for_connect())
            .await
            .map_err(|_| {
                fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    "Redis did not answer within 5 s",
                )
            })??;
        Ok(RedisStore::new(pool))
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn fetch(&self, id: &Id) -> session_store::Result<Option<Vec<u8>>> {
        self.pool.get(id.to_string()).await.map_err(backend_error)
    }
}

delegate_session_store!(RedisStore);

#[async_trait]
impl ConditionalStore for RedisStore {
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
            RedisValue::Bytes(expected.0.clone().into()),
            RedisValue::Bytes(bytes.clone().into()),
            RedisValue::Integer(record.expiry_date.unix_timestamp()),
        ];
        let answer: i64 = self
            .pool
            .eval(SAVE_IF, vec![record.id.to_string()], args)
            .await
            .map_err(backend_error)?;
        Ok(match answer {
            1 => SaveOutcome::Saved(Version(bytes)),
            0 => SaveOutcome::Conflict,
            _ => SaveOutcome::Gone,
        })
    }
}
