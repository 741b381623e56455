//! SQLite, in the table of `tower-sessions-sqlx-store` (`id`, MessagePack `data`,
//! `expiry_date`), with conditional saves by an `UPDATE ... WHERE data = ?`.

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion};
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use tower_sessions_sqlx_store::sqlx::{self, SqlitePool};

use crate::error::ConfigError;

use super::{
    ConditionalStore, Reloaded, SaveOutcome, Version, Versioned, backend_error, decode_msgpack,
    delegate_session_store, encode_msgpack, reload_msgpack,
};

/// Sessions in SQLite, with conditional saves, in the table and encoding of
/// `tower-sessions-sqlx-store` (records written by it stay readable, and the other way round).
///
/// Expired records stay in the table until deleted: run the cleanup task beside the server.
///
/// ```no_run
/// use socketio_sessions::store::{ExpiredDeletion, SqliteStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::connect("sqlite://sessions.db").await?; // creates file and table
/// tokio::spawn(store.clone().continuously_delete_expired(std::time::Duration::from_secs(60)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: tower_sessions_sqlx_store::SqliteStore,
    pool: SqlitePool,
    table: String,
}

impl SqliteStore {
    /// A store over a pool, using the table `tower_sessions`; call
    /// [`migrate`](Self::migrate) once to create it.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            inner: tower_sessions_sqlx_store::SqliteStore::new(pool.clone()),
            pool,
            table: "tower_sessions".into(),
        }
    }

    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`), in WAL mode, and
    /// creates the table `tower_sessions` if it is missing. For other pool settings, build a
    /// [`SqlitePool`] and use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options: SqliteConnectOptions = url.parse()?;
        // WAL: readers never wait for the writer. synchronous=NORMAL, as SQLite recommends for
        // WAL: a commit does not fsync (a power cut may lose the last commits, never corrupt).
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        // SQLite has one writer at a time: a small pool queues writers in the pool (fair,
        // bounded by the store timeout) rather than in SQLITE_BUSY retries.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let store = SqliteStore::new(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Uses the table `name` instead of `tower_sessions` (ASCII letters, digits, underscores).
    ///
    /// ```
    /// # async fn run(pool: socketio_sessions::store::sqlx::SqlitePool) {
    /// use socketio_sessions::store::SqliteStore;
    /// let store = SqliteStore::new(pool).with_table_name("app_sessions").unwrap();
    /// assert!(SqliteStore::new(store.pool().clone()).with_table_name("x; drop").is_err());
    /// # }
    /// ```
    pub fn with_table_name(mut self, name: impl AsRef<str>) -> Result<Self, ConfigError> {
        let name = name.as_ref();
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let invalid = || ConfigError::InvalidTableName {
            name: name.to_owned(),
        };
        if !valid {
            return Err(invalid());
        }
        self.inner = self.inner.with_table_name(name).map_err(|_| invalid())?;
        self.table = name.to_owned();
        Ok(self)
    }

    /// Creates the table if it is missing.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.inner.migrate().await
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The stored bytes of a live record.
    async fn fetch(&self, id: &Id) -> session_store::Result<Option<Vec<u8>>> {
        let query = format!(
            "select data from {} where id = ? and expiry_date > ?",
            self.table
        );
        let row: Option<(Vec<u8>,)> = sqlx::query_as(&query)
            .bind(id.to_string())
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(row.map(|(bytes,)| bytes))
    }
}

delegate_session_store!(SqliteStore);

#[async_trait]
impl ExpiredDeletion for SqliteStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.inner.delete_expired().await
    }
}

#[async_trait]
impl ConditionalStore for SqliteStore {
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
        let query = format!(
            "update {} set data = ?, expiry_date = ? \
             where id = ? and data = ? and expiry_date > ?",
            self.table
        );
        let now = OffsetDateTime::now_utc();
        let done = sqlx::query(&query)
            .bind(&bytes)
            .bind(record.expiry_date)
            .bind(record.id.to_string())
            .bind(&expected.0)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        if done.rows_affected() == 1 {
            return Ok(SaveOutcome::Saved(Version(bytes)));
        }
        let exists = format!(
            "select 1 from {} where id = ? and expiry_date > ?",
            self.table
        );
        let row: Option<(i64,)> = sqlx::query_as(&exists)
            .bind(record.id.to_string())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(match row {
            Some(_) => SaveOutcome::Conflict,
            None => SaveOutcome::Gone,
        })
    }
}
