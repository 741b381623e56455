//! SQLite, in the table of `tower-sessions-sqlx-store`, with compare-and-set ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::{self, SqlitePool};

use super::sql::{Dialect, Statements, conditional_sql_store};

/// Sessions in SQLite, readable and writable by `tower_sessions_sqlx_store::SqliteStore` (same
/// table and encoding), with conditional saves.
///
/// Expired rows stay in the table until deleted: run
/// [`continuously_delete_expired`](tower_sessions::ExpiredDeletion::continuously_delete_expired)
/// in a task of its own, as for the upstream store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::SqliteStore,
    pool: SqlitePool,
    statements: Statements,
}

impl SqliteStore {
    /// A store over a pool, using the table `tower_sessions`.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            inner: tower_sessions_sqlx_store::SqliteStore::new(pool.clone()),
            pool,
            statements: Statements::new(Dialect::Sqlite, "", "tower_sessions"),
        }
    }

    /// Uses another table; an invalid name is refused with the reason.
    pub fn with_table_name(mut self, table: impl AsRef<str>) -> Result<Self, String> {
        self.inner = self.inner.with_table_name(table.as_ref())?;
        self.statements = self.statements.with_table(table.as_ref());
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
}

conditional_sql_store!(SqliteStore);
