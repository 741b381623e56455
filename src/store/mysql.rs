//! MySQL and MariaDB, in the table of `tower-sessions-sqlx-store`, with compare-and-set ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::{self, MySqlPool};

use super::sql::{Dialect, Statements, conditional_sql_store};

/// Sessions in MySQL or MariaDB, readable and writable by `tower_sessions_sqlx_store::MySqlStore`
/// (same schema, table and encoding: `` `tower_sessions`.`session` `` by default), with conditional
/// saves.
///
/// Expired rows stay in the table until deleted: run
/// [`continuously_delete_expired`](tower_sessions::ExpiredDeletion::continuously_delete_expired)
/// in a task of its own, as for the upstream store.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::MySqlStore,
    pool: MySqlPool,
    statements: Statements,
}

impl MySqlStore {
    /// A store over a pool, using the table `` `tower_sessions`.`session` ``.
    pub fn new(pool: MySqlPool) -> Self {
        MySqlStore {
            inner: tower_sessions_sqlx_store::MySqlStore::new(pool.clone()),
            statements: Statements::new(Dialect::MySql, "tower_sessions", "session"),
            pool,
        }
    }

    /// Uses another schema (a database, in MySQL); an invalid name is refused with the reason.
    pub fn with_schema_name(mut self, schema: impl AsRef<str>) -> Result<Self, String> {
        self.inner = self.inner.with_schema_name(schema.as_ref())?;
        self.statements = self.statements.with_schema(schema.as_ref());
        Ok(self)
    }

    /// Uses another table; an invalid name is refused with the reason.
    pub fn with_table_name(mut self, table: impl AsRef<str>) -> Result<Self, String> {
        self.inner = self.inner.with_table_name(table.as_ref())?;
        self.statements = self.statements.with_table(table.as_ref());
        Ok(self)
    }

    /// Creates the schema (a database, in MySQL) and the table if they are missing.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.inner.migrate().await
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

conditional_sql_store!(MySqlStore);
