//! MySQL or MariaDB, in the table of `tower-sessions-sqlx-store`, with compare-and-set
//! ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::{self, MySqlPool};

use super::sql::{Dialect, Statements, conditional_sql_store};

/// Sessions in MySQL or MariaDB, with conditional saves, in the schema, table and encoding of
/// `tower_sessions_sqlx_store::MySqlStore` (`` `tower_sessions`.`session` `` by default):
/// records written by it stay readable, and the other way round, with no migration.
///
/// Where the table lives: [`new`](Self::new) uses upstream's place, the database
/// `tower_sessions`; [`connect`](Self::connect) puts it in the URL's database instead. An app
/// whose HTTP side runs upstream's `MySqlStore` with its defaults must use `new` (or
/// `with_schema_name("tower_sessions")`), or the two sides read different tables.
///
/// Expired records stay in the table until deleted: run the cleanup task beside the server.
///
/// ```no_run
/// use socketio_sessions::store::{ExpiredDeletion, MySqlStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MySqlStore::connect("mysql://app@localhost/app").await?; // creates the table
/// tokio::spawn(store.clone().continuously_delete_expired(std::time::Duration::from_secs(60)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlStore {
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::MySqlStore,
    pool: MySqlPool,
    statements: Statements,
}

impl MySqlStore {
    /// A store over a pool, using `` `tower_sessions`.`session` ``; call
    /// [`migrate`](Self::migrate) once to create it.
    pub fn new(pool: MySqlPool) -> Self {
        MySqlStore {
            inner: tower_sessions_sqlx_store::MySqlStore::new(pool.clone()),
            statements: Statements::new(Dialect::MySql, "tower_sessions", "session"),
            pool,
        }
    }

    /// Connects to `url` with a pool of 8 connections that gives up on a connection after
    /// 2 s (so that a database that went away is noticed within a store timeout), and creates
    /// the table if it is missing. The table goes into the URL's database (upstream's default
    /// is a database of its own, `tower_sessions`, which an app's user may not be allowed to
    /// create); without one in the URL, into `tower_sessions`. For other pool settings, build a
    /// [`MySqlPool`] and use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options: sqlx::mysql::MySqlConnectOptions = url.parse()?;
        let database = options.get_database().map(str::to_owned);
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(options)
            .await?;
        let mut store = MySqlStore::new(pool);
        if let Some(database) = database {
            store = store
                .with_schema_name(&database)
                .map_err(|e| sqlx::Error::Configuration(e.into()))?;
        }
        store.migrate().await?;
        Ok(store)
    }
}

conditional_sql_store!(
    MySqlStore,
    MySqlPool,
    schema,
    /// Uses the table `name` instead of `session` (ASCII letters, digits, underscores).
    with_table_name
);
