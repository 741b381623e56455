//! The session stores: one per backend, each with compare-and-set saves.
//!
//! | backend | store | feature | connect | expired records |
//! |---|---|---|---|---|
//! | memory | [`MemoryStore`] | (always) | `MemoryStore::default()` | removed as new sessions are made |
//! | SQLite | `SqliteStore` | `sqlite` | `SqliteStore::connect("sqlite://app.db")` or `SqliteStore::new(pool)` | `tokio::spawn(store.clone().continuously_delete_expired(period))` ([`ExpiredDeletion`]) |
//! | Postgres | `PostgresStore` | `postgres` | `PostgresStore::connect("postgres://user@host/db")` or `PostgresStore::new(pool)` | the same task |
//! | MySQL, MariaDB | `MySqlStore` | `mysql` | `MySqlStore::connect("mysql://user@host/db")` or `MySqlStore::new(pool)` | the same task |
//! | Redis | `RedisStore` | `redis` | `RedisStore::connect("redis://127.0.0.1:6379")` or `RedisStore::new(pool)` | expired by Redis |
//! | Redis Cluster | `RedisStore` | `redis` | `RedisStore::connect("redis-cluster://HOST:PORT,HOST:PORT")` | expired by Redis |
//!
//! Each implements [`ConditionalStore`]: a save that only happens if the record is still what
//! was read, so that no writer (another node, another tab, the HTTP side, a racing logout) is
//! ever overwritten silently. They keep the formats of tower-sessions' own stores, so existing
//! records stay readable. The pool types come re-exported: `sqlx` (`SqlitePool`, `PgPool`,
//! `MySqlPool`) and `fred` (`Pool`, `Config`).

#[cfg(feature = "redis")]
mod connect_redis;
mod handle;
mod id_hash;
mod memory;
mod merge;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_fence;
#[cfg(feature = "redis")]
mod redis_pool;
#[cfg(feature = "redis")]
mod redis_url;
#[cfg(feature = "redis")]
mod replica_wait;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

pub(crate) use handle::{FORWARD_KEY, Presence, StoreFailure, StoreHandle, forwarding_record};
pub(crate) use merge::{Changes, MAX_ATTEMPTS, MergeError, Merged, save_merged};
#[cfg(feature = "redis")]
pub(crate) use redis_pool::{
    connection_config, quit as quit_redis, quit_aside as quit_redis_aside,
};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use connect_redis::ConnectRedisStore;
pub use memory::MemoryStore;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
pub use tower_sessions::session_store::ExpiredDeletion;

/// The `fred` crate `RedisStore` is built on, for its `Pool` and `Config`.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use fred;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_url::redis_config;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[doc(hidden)]
pub use sql::SqlStatements;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;
/// `sqlx`, the version the SQL stores are built on: its pool and connect-option types.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub use tower_sessions_sqlx_store::sqlx;

/// Identifies one stored state of a record: the exact stored bytes, or a counter. Opaque.
#[derive(Clone)]
pub struct Version(Repr);

/// A version's bytes: a counter's inline, so that a store that counts writes allocates nothing
/// per save for its version.
#[derive(Clone)]
enum Repr {
    Counter([u8; 8]),
    Bytes(Vec<u8>),
    /// The record's own MessagePack, as this crate's stores keep it: the version can rebuild
    /// its record, so a live session may drop the decoded one between handlers. Built only by
    /// those stores' features.
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "sqlite",
            feature = "postgres",
            feature = "mysql"
        )),
        allow(dead_code)
    )]
    Msgpack(Vec<u8>),
}

impl Version {
    /// A version from the bytes a store keeps (or any value that changes on every write).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Version(Repr::Bytes(bytes.into()))
    }

    /// A version from a counter that changes on every write. Equal to
    /// `Version::from_bytes(n.to_le_bytes())`, without allocating.
    pub fn from_counter(n: u64) -> Self {
        Version(Repr::Counter(n.to_le_bytes()))
    }

    /// The version of a record stored as `bytes`, its MessagePack encoding.
    #[cfg(any(
        feature = "redis",
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql"
    ))]
    pub(crate) fn of_msgpack(bytes: Vec<u8>) -> Self {
        Version(Repr::Msgpack(bytes))
    }

    /// The version's bytes, as a store compares or sends them.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Counter(bytes) => bytes,
            Repr::Bytes(bytes) | Repr::Msgpack(bytes) => bytes,
        }
    }

    /// Whether [`record`](Self::record) can rebuild the record this version was read or
    /// written at.
    pub(crate) fn holds_record(&self) -> bool {
        matches!(self.0, Repr::Msgpack(_))
    }

    /// The record this version was read or written at, decoded again from the stored bytes;
    /// `None` when the version does not [hold it](Self::holds_record) or does not decode.
    pub(crate) fn record(&self) -> Option<Record> {
        match &self.0 {
            #[cfg(any(
                feature = "redis",
                feature = "sqlite",
                feature = "postgres",
                feature = "mysql"
            ))]
            Repr::Msgpack(bytes) => rmp_serde::from_slice(bytes).ok(),
            _ => None,
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Version {}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Stored bytes contain the session id: never print them.
        write!(f, "Version({} bytes)", self.as_bytes().len())
    }
}

/// A record and the version it was read at.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The record as stored.
    pub record: Record,
    /// Its version, to hand back to [`ConditionalStore::save_if`].
    pub version: Version,
}

/// What a conditional save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written; the record now has this version.
    Saved(Version),
    /// Not written: someone else wrote the record since it was read.
    Conflict,
    /// Not written: the record no longer exists (deleted or expired).
    Gone,
}

/// What a reload found, compared with the version already held.
#[derive(Debug, Clone)]
pub enum Reloaded {
    /// The record still has the version held.
    Unchanged,
    /// The record has changed: here it is.
    Changed(Versioned),
    /// The record no longer exists (deleted or expired).
    Gone,
}

/// A store that can save a record only if it is unchanged since it was read.
///
/// This is what [`SocketSessions::builder`](crate::SocketSessions::builder) takes: every write
/// from a socket or from the HTTP side (through [`HttpStore`](crate::HttpStore)) is then
/// compare-and-set, so no writer is overwritten silently. A wrapper around such a store (a cache,
/// metrics, an enum of stores) keeps the guarantee by implementing this trait too, handing each
/// call to the store it wraps.
#[async_trait]
pub trait ConditionalStore: SessionStore {
    /// Loads a live (unexpired) record with its version.
    async fn load_versioned(&self, id: &Id) -> session_store::Result<Option<Versioned>>;

    /// Loads the record unless it still has version `known`: per-message mode reloads before
    /// every event, and most of the time nothing has changed. The default loads and compares;
    /// a store can skip copying or decoding an unchanged record.
    async fn reload_versioned(&self, id: &Id, known: &Version) -> session_store::Result<Reloaded> {
        Ok(match self.load_versioned(id).await? {
            None => Reloaded::Gone,
            Some(v) if v.version == *known => Reloaded::Unchanged,
            Some(v) => Reloaded::Changed(v),
        })
    }

    /// Writes `record` if the stored record still has version `expected`; never creates one.
    async fn save_if(
        &self,
        record: &Record,
        expected: &Version,
    ) -> session_store::Result<SaveOutcome>;

    /// For a store that answers without waiting (one in this process's memory): the answer of
    /// [`save_if`](Self::save_if), given at once, which is then not called. `None` (the
    /// default) calls `save_if`. It spares each written message the allocation and the polls
    /// of an async call. It must not block or do I/O: it runs on the handler's thread, with no
    /// store timeout. A wrapper may pass it on only if its own `save_if` adds nothing (a cache
    /// updated there would be skipped); one that does not stays correct, on the slower path.
    fn save_if_now(
        &self,
        record: &Record,
        expected: &Version,
    ) -> Option<session_store::Result<SaveOutcome>> {
        let _ = (record, expected);
        None
    }

    /// Told while a live session uses `id` for a record the store keys by something else (an
    /// express-session sid): `ConnectRedisStore` keeps the sid to find the record. Every
    /// call is matched by one [`release_external_key`](Self::release_external_key). Most
    /// stores key records by the id itself and do nothing.
    fn hold_external_key(&self, id: &Id, key: &Arc<str>) {
        let _ = (id, key);
    }

    /// The live session that held `id`'s external key is gone.
    fn release_external_key(&self, id: &Id) {
        let _ = id;
    }

    /// How long a `save_if` may take in all, after which a write not yet sent is never sent:
    /// `None` (the default) for a store whose write is never sent once its call is dropped. A
    /// client that queues commands while it reconnects (fred) would otherwise send, later, a
    /// save its caller was told had failed. [`build`](crate::SocketSessionsBuilder::build)
    /// refuses a store timeout that is not longer. A wrapper store must pass it on.
    fn write_timeout(&self) -> Option<Duration> {
        None
    }

    /// Whether a `save_if` that failed (its error, or its [write
    /// timeout](Self::write_timeout) passed) can never land afterwards: `false` (the default)
    /// for a store whose write may still run once sent (a SQL server holding the statement
    /// behind a lock, then running it; a handler told it failed may then be retried by its
    /// client, and count twice). A caller that drops the call sooner gets no such promise from
    /// Redis, whose script may still run before its deadline: a wrapper must pass each call on
    /// at once and give it at least the wrapped store's write timeout. With `true`, a
    /// per-message handler whose first operation is an
    /// [`update`](crate::SocketSession::update) saves it on the version it already holds,
    /// without reloading first: one store round trip per written message instead of two, and
    /// a stale version only costs a conflict, after which the update is re-run on the stored
    /// record. `MemoryStore` (nothing runs once the call is dropped), `RedisStore` and
    /// `ConnectRedisStore` (their saves carry a deadline their script checks) say `true`. A
    /// wrapper store must pass it on.
    fn refuses_late_saves(&self) -> bool {
        false
    }

    /// Whether each version this store hands out (with a loaded record, or from a save) is the
    /// stored encoding of exactly that record, which can be decoded from it again. With `true`,
    /// a per-message session keeps only the version between handlers and decodes the record
    /// when the next handler takes the session: an idle session costs its stored bytes, not its
    /// decoded record. `RedisStore` and the SQL stores say `true`. A wrapper that hands the
    /// wrapped store's records and versions through unchanged may pass it on; one that changes
    /// records on the way (decrypts, migrates) must leave the default, `false`.
    fn versions_hold_records(&self) -> bool {
        false
    }

    /// The session id a key of this store's keyspace stands for (Redis keyspace notifications
    /// name keys): by default the key is the id itself.
    fn id_for_key(&self, key: &str) -> Option<Id> {
        Id::from_str(key).ok()
    }
}

/// Encodes a record as tower-sessions' Redis and sqlx stores do (MessagePack).
#[cfg(any(
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql"
))]
fn encode_msgpack(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

/// A reload from the stored bytes: unchanged bytes are not decoded.
#[cfg(any(
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql"
))]
fn reload_msgpack(bytes: Option<Vec<u8>>, known: &Version) -> session_store::Result<Reloaded> {
    Ok(match bytes {
        None => Reloaded::Gone,
        Some(bytes) if bytes == known.as_bytes() => Reloaded::Unchanged,
        Some(bytes) => Reloaded::Changed(decode_msgpack(bytes)?),
    })
}

/// Decodes stored MessagePack bytes; the bytes themselves are the version.
#[cfg(any(
    feature = "redis",
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql"
))]
fn decode_msgpack(bytes: Vec<u8>) -> session_store::Result<Versioned> {
    let record =
        rmp_serde::from_slice(&bytes).map_err(|e| session_store::Error::Decode(e.to_string()))?;
    Ok(Versioned {
        record,
        version: Version::of_msgpack(bytes),
    })
}

/// Implements `SessionStore` by handing every call to the wrapped tower-sessions store in
/// `self.inner`, so that unconditional writers use exactly that crate's format (the SQL stores;
/// `RedisStore` routes its writes through its own bounded write).
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
macro_rules! delegate_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl tower_sessions::SessionStore for $store {
            async fn create(
                &self,
                record: &mut tower_sessions::session::Record,
            ) -> tower_sessions::session_store::Result<()> {
                self.inner.create(record).await
            }
            async fn save(
                &self,
                record: &tower_sessions::session::Record,
            ) -> tower_sessions::session_store::Result<()> {
                self.inner.save(record).await
            }
            async fn load(
                &self,
                id: &tower_sessions::session::Id,
            ) -> tower_sessions::session_store::Result<Option<tower_sessions::session::Record>>
            {
                self.inner.load(id).await
            }
            async fn delete(
                &self,
                id: &tower_sessions::session::Id,
            ) -> tower_sessions::session_store::Result<()> {
                self.inner.delete(id).await
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use delegate_session_store;

/// Maps a backend error into the store error tower-sessions uses.
#[cfg_attr(
    not(any(
        feature = "redis",
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql"
    )),
    allow(dead_code)
)]
pub(crate) fn backend_error(e: impl fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}
