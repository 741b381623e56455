//! Stores as the socket side uses them.
//!
//! Any `tower_sessions::SessionStore` works. The stores in this module (memory, Redis, SQLite)
//! also implement [`ConditionalStore`]: a save that only happens if the record is still what was
//! read, so that no writer — another node, another tab, the HTTP side, a racing logout — is ever
//! overwritten silently.

#[cfg(feature = "redis")]
mod connect_redis;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{Expiry, SessionStore};

use crate::error::{InvalidReason, SessionError};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use connect_redis::ConnectRedisStore;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

/// Identifies one stored state of a record: the exact stored bytes, or a counter. Opaque.
#[derive(Clone, PartialEq, Eq)]
pub struct Version(pub(crate) Vec<u8>);

impl Version {
    /// A version from the bytes a store keeps (or any value that changes on every write).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Version(bytes.into())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Stored bytes contain the session id: never print them.
        write!(f, "Version({} bytes)", self.0.len())
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
}

/// How tower-sessions dates a record saved without an expiry setting.
const DEFAULT_LIFETIME: time::Duration = time::Duration::weeks(2);

/// A store call that did not produce an answer.
#[derive(Debug)]
pub(crate) enum StoreFailure {
    Error(String),
    Timeout(Duration),
}

impl From<StoreFailure> for SessionError {
    fn from(f: StoreFailure) -> Self {
        match f {
            StoreFailure::Error(e) => SessionError::Store(e),
            StoreFailure::Timeout(d) => SessionError::Timeout(d),
        }
    }
}

impl StoreFailure {
    pub(crate) fn reason(&self) -> InvalidReason {
        match self {
            StoreFailure::Error(_) => InvalidReason::StoreError,
            StoreFailure::Timeout(_) => InvalidReason::StoreTimeout,
        }
    }
}

#[derive(Clone)]
pub(crate) enum Backend {
    /// Any store: saves are unconditional.
    Plain(Arc<dyn SessionStore>),
    /// Saves compare what was read.
    Conditional(Arc<dyn ConditionalStore>),
}

/// A record as loaded, with its version where the store has one.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) record: Record,
    pub(crate) version: Option<Version>,
}

/// The store with the socket side's timeout and expiry policy.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    backend: Backend,
    timeout: Duration,
    expiry: Option<Expiry>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store: &dyn fmt::Debug = match &self.backend {
            Backend::Plain(s) => s,
            Backend::Conditional(s) => s,
        };
        f.debug_struct("StoreHandle")
            .field("store", store)
            .field("conditional", &self.is_conditional())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StoreHandle {
    /// Wraps any store; the conditional stores of this module are recognized by type.
    pub(crate) fn detect<S: SessionStore>(store: S) -> Self {
        let any: Box<dyn Any> = Box::new(store);
        let any = match any.downcast::<MemoryStore>() {
            Ok(s) => return Self::conditional(Arc::new(*s)),
            Err(any) => any,
        };
        #[cfg(feature = "redis")]
        let any = match any.downcast::<RedisStore>() {
            Ok(s) => return Self::conditional(Arc::new(*s)),
            Err(any) => any,
        };
        #[cfg(feature = "sqlite")]
        let any = match any.downcast::<SqliteStore>() {
            Ok(s) => return Self::conditional(Arc::new(*s)),
            Err(any) => any,
        };
        match any.downcast::<S>() {
            Ok(s) => Self::new(Backend::Plain(Arc::new(*s))),
            Err(_) => unreachable!("the box holds an S"),
        }
    }

    pub(crate) fn conditional(store: Arc<dyn ConditionalStore>) -> Self {
        Self::new(Backend::Conditional(store))
    }

    fn new(backend: Backend) -> Self {
        StoreHandle {
            backend,
            timeout: Duration::from_secs(2),
            expiry: None,
        }
    }

    pub(crate) fn with_policy(mut self, timeout: Duration, expiry: Option<Expiry>) -> Self {
        self.timeout = timeout;
        self.expiry = expiry;
        self
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn is_conditional(&self) -> bool {
        matches!(self.backend, Backend::Conditional(_))
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> Result<T, StoreFailure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreFailure::Error(e.to_string())),
            Err(_) => Err(StoreFailure::Timeout(self.timeout)),
        }
    }

    /// The live record, or `None` when it is absent or expired.
    pub(crate) async fn load(&self, id: &Id) -> Result<Option<Loaded>, StoreFailure> {
        let loaded = match &self.backend {
            Backend::Plain(s) => self.bounded(s.load(id)).await?.map(|record| Loaded {
                record,
                version: None,
            }),
            Backend::Conditional(s) => self.bounded(s.load_versioned(id)).await?.map(|v| Loaded {
                record: v.record,
                version: Some(v.version),
            }),
        };
        Ok(loaded.filter(|l| l.record.expiry_date > OffsetDateTime::now_utc()))
    }

    /// Reloads a record held at `known`: `Ok(None)` when it is unchanged (and still live).
    /// `Ok(Some(None))` when it is gone.
    pub(crate) async fn reload(
        &self,
        known: &Loaded,
    ) -> Result<Option<Option<Loaded>>, StoreFailure> {
        let id = &known.record.id;
        let (Backend::Conditional(s), Some(version)) = (&self.backend, &known.version) else {
            return self.load(id).await.map(Some);
        };
        let now = OffsetDateTime::now_utc();
        Ok(match self.bounded(s.reload_versioned(id, version)).await? {
            Reloaded::Unchanged if known.record.expiry_date > now => None,
            Reloaded::Unchanged | Reloaded::Gone => Some(None),
            Reloaded::Changed(v) => Some(
                Some(Loaded {
                    record: v.record,
                    version: Some(v.version),
                })
                .filter(|l| l.record.expiry_date > now),
            ),
        })
    }

    /// Saves `record`, conditionally where the store can and a version is known. A plain store
    /// writes unconditionally: the caller must have just checked that the record exists.
    pub(crate) async fn save(
        &self,
        record: &Record,
        expected: Option<&Version>,
    ) -> Result<SaveOutcome, StoreFailure> {
        match (&self.backend, expected) {
            (Backend::Conditional(s), Some(v)) => self.bounded(s.save_if(record, v)).await,
            (Backend::Conditional(s), None) => {
                self.bounded(s.save(record)).await?;
                Ok(SaveOutcome::Saved(Version(Vec::new())))
            }
            (Backend::Plain(s), _) => {
                self.bounded(s.save(record)).await?;
                Ok(SaveOutcome::Saved(Version(Vec::new())))
            }
        }
    }

    /// The expiry a save gives the record, computed as the HTTP layer computes it.
    pub(crate) fn expiry_date(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        match self.expiry {
            Some(Expiry::OnInactivity(d)) => now.saturating_add(d),
            Some(Expiry::AtDateTime(at)) => at,
            Some(Expiry::OnSessionEnd) | None => now.saturating_add(DEFAULT_LIFETIME),
        }
    }
}

/// Encodes a record as tower-sessions' Redis and sqlx stores do (MessagePack).
#[cfg(any(feature = "redis", feature = "sqlite"))]
fn encode_msgpack(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

/// A reload from the stored bytes: unchanged bytes are not decoded.
#[cfg(any(feature = "redis", feature = "sqlite"))]
fn reload_msgpack(bytes: Option<Vec<u8>>, known: &Version) -> session_store::Result<Reloaded> {
    Ok(match bytes {
        None => Reloaded::Gone,
        Some(bytes) if bytes == known.0 => Reloaded::Unchanged,
        Some(bytes) => Reloaded::Changed(decode_msgpack(bytes)?),
    })
}

/// Decodes stored MessagePack bytes; the bytes themselves are the version.
#[cfg(any(feature = "redis", feature = "sqlite"))]
fn decode_msgpack(bytes: Vec<u8>) -> session_store::Result<Versioned> {
    let record =
        rmp_serde::from_slice(&bytes).map_err(|e| session_store::Error::Decode(e.to_string()))?;
    Ok(Versioned {
        record,
        version: Version(bytes),
    })
}

/// Implements `SessionStore` by handing every call to the wrapped tower-sessions store in
/// `self.inner`, so that unconditional writers use exactly that crate's format.
#[cfg(any(feature = "redis", feature = "sqlite"))]
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
#[cfg(any(feature = "redis", feature = "sqlite"))]
use delegate_session_store;

/// Maps a backend error into the store error tower-sessions uses.
#[cfg_attr(not(any(feature = "redis", feature = "sqlite")), allow(dead_code))]
pub(crate) fn backend_error(e: impl fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}
