//! SQLite, in the table of `tower-sessions-sqlx-store` (`id`, MessagePack `data`,
//! `expiry_date`), with conditional saves by an `UPDATE ... WHERE data = ?`.

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion};
use tower_sessions_sqlx_store::sqlx::{self, SqlitePool};

use super::{
    ConditionalStore, Reloaded, SaveOutcome, Version, Versioned, backend_error, decode_msgpack,
    delegate_session_store, encode_msgpack, reload_msgpack,
};

/// Sessions in SQLite, readable and writable by `tower_sessions_sqlx_store::SqliteStore` (same
/// table and encoding), with conditional saves.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: tower_sessions_sqlx_store::SqliteStore,
    pool: SqlitePool,
    table: String,
}

impl SqliteStore {
    /// A store over a pool, using the table `tower_sessions`.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore {
            inner: tower_sessions_sqlx_store::SqliteStore::new(pool.clone()),
            pool,
            table: "tower_sessions".into(),
        }
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
