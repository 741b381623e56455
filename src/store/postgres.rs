//! Postgres, in the table of `tower-sessions-sqlx-store`, with compare-and-set ([`super::sql`]).

use tower_sessions_sqlx_store::sqlx::{self, PgPool};

use super::sql::{Dialect, Statements, conditional_sql_store};

/// Sessions in Postgres, readable and writable by `tower_sessions_sqlx_store::PostgresStore`
/// (same schema, table and encoding: `"tower_sessions"."session"` by default), with conditional
/// saves.
///
/// Expired rows stay in the table until deleted: run
/// [`continuously_delete_expired`](tower_sessions::ExpiredDeletion::continuously_delete_expired)
/// in a task of its own, as for the upstream store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// The upstream store: unconditional writes, migrations and expired-record deletion.
    inner: tower_sessions_sqlx_store::PostgresStore,
    pool: PgPool,
    statements: Statements,
}

impl PostgresStore {
    /// A store over a pool, using the table `"tower_sessions"."session"`.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            inner: tower_sessions_sqlx_store::PostgresStore::new(pool.clone()),
            statements: Statements::new(Dialect::Postgres, "tower_sessions", "session"),
            pool,
        }
    }

    /// Uses another schema; an invalid name is refused with the reason.
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

    /// Creates the schema and table if they are missing.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.inner.migrate().await
    }

    /// The pool, e.g. to close it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

conditional_sql_store!(PostgresStore);
