//! Postgres, in the table of `tower-sessions-sqlx-store`, with compare-and-set
//! ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::{self, PgPool};

use super::sql::{Dialect, Statements, conditional_sql_store};

/// Sessions in Postgres, with conditional saves, in the schema, table and encoding of
/// `tower_sessions_sqlx_store::PostgresStore` (`"tower_sessions"."session"` by default):
/// records written by it stay readable, and the other way round, with no migration.
///
/// Expired records stay in the table until deleted: run the cleanup task beside the server.
///
/// ```no_run
/// use socketio_sessions::store::{ExpiredDeletion, PostgresStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?; // creates the table
/// tokio::spawn(store.clone().continuously_delete_expired(std::time::Duration::from_secs(60)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::PostgresStore,
    pool: PgPool,
    statements: Statements,
}

impl PostgresStore {
    /// A store over a pool, using `"tower_sessions"."session"`; call
    /// [`migrate`](Self::migrate) once to create it.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            inner: tower_sessions_sqlx_store::PostgresStore::new(pool.clone()),
            statements: Statements::new(Dialect::Postgres, "tower_sessions", "session"),
            pool,
        }
    }

    /// Connects to `url` with a pool of 8 connections that gives up on a connection after
    /// 2 s (so that a database that went away is noticed within a store timeout), and creates
    /// the table if it is missing. For other pool settings, build a [`PgPool`] and
    /// use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let pool = sqlx::pool::PoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(options)
            .await?;
        let store = PostgresStore::new(pool);
        store.migrate().await?;
        Ok(store)
    }
}

conditional_sql_store!(
    PostgresStore,
    PgPool,
    schema,
    /// Uses the table `name` instead of `session` (ASCII letters, digits, underscores).
    with_table_name
);
