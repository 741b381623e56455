//! SQLite, in the table of `tower-sessions-sqlx-store`, with compare-and-set ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use tower_sessions_sqlx_store::sqlx::{self, SqlitePool};

use super::sql::{Dialect, Statements, conditional_sql_store};

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
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::SqliteStore,
    pool: SqlitePool,
    statements: Statements,
}

impl SqliteStore {
    /// A store over a pool, using the table `tower_sessions`; call
    /// [`migrate`](Self::migrate) once to create it.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            inner: tower_sessions_sqlx_store::SqliteStore::new(pool.clone()),
            pool,
            statements: Statements::new(Dialect::Sqlite, "", "tower_sessions"),
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
}

conditional_sql_store!(
    SqliteStore,
    SqlitePool,
    /// Uses the table `name` instead of `tower_sessions` (ASCII letters, digits, underscores).
    ///
    /// ```
    /// # async fn run(pool: socketio_sessions::store::sqlx::SqlitePool) {
    /// use socketio_sessions::store::SqliteStore;
    /// let store = SqliteStore::new(pool).with_table_name("app_sessions").unwrap();
    /// assert!(SqliteStore::new(store.pool().clone()).with_table_name("x; drop").is_err());
    /// # }
    /// ```
    with_table_name
);
