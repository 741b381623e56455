//! Compare-and-set on the tables of `tower-sessions-sqlx-store` (SQLite, Postgres, MySQL):
//! `id`, MessagePack `data`, `expiry_date`. A save is an `UPDATE ... WHERE data = <the bytes
//! read>`, so the upstream store (the HTTP side of an existing deployment) keeps reading and
//! writing the same rows, and no schema change is needed.
//!
//! The three databases differ only in placeholders and identifier quoting: each store writes its
//! [`Statements`] once, and [`conditional_sql_store!`] runs them with the same sqlx calls.

use crate::error::ConfigError;

/// The statements a conditional SQL store runs, in its database's dialect, written once when
/// the store is built rather than formatted on every call.
#[derive(Debug, Clone)]
pub(super) struct Statements {
    /// Kept to write the statements again for another schema or table.
    dialect: Dialect,
    schema: String,
    /// Read only to rename the schema, which SQLite has not.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    table: String,
    /// The table as the statements name it: quoted and in its schema (SQLite: bare).
    qualified: String,
    /// The stored bytes of a live record. Binds: id, now.
    pub(super) load: String,
    /// The compare-and-set. Binds: new data, new expiry, id, expected data, now.
    pub(super) update_if: String,
    /// Whether a live record exists, to tell a conflict from a deleted record. Binds: id, now.
    pub(super) exists: String,
}

/// How a database spells a bind parameter and a table name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    /// `?` and the bare (validated) table name.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    /// `$n` and `"schema"."table"`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    /// `?` and `` `schema`.`table` ``.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    MySql,
}

impl Statements {
    /// The statements for `table` (`schema` is ignored by SQLite). Both names passed
    /// [`identifier`] (the stores' `with_*_name` check it), or are the upstream defaults.
    pub(super) fn new(dialect: Dialect, schema: &str, table: &str) -> Self {
        let (schema, table_name) = (schema.to_owned(), table.to_owned());
        let table = match dialect {
            Dialect::Sqlite => table.to_owned(),
            Dialect::Postgres => format!(r#""{schema}"."{table}""#),
            Dialect::MySql => format!("`{schema}`.`{table}`"),
        };
        let p = |n: usize| match dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite | Dialect::MySql => "?".to_owned(),
        };
        Statements {
            dialect,
            schema,
            table: table_name,
            load: format!(
                "select data from {table} where id = {} and expiry_date > {}",
                p(1),
                p(2)
            ),
            update_if: format!(
                "update {table} set data = {}, expiry_date = {} \
                 where id = {} and data = {} and expiry_date > {}",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            exists: format!(
                "select id from {table} where id = {} and expiry_date > {}",
                p(1),
                p(2)
            ),
            qualified: table,
        }
    }

    /// The same statements on another schema.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(super) fn with_schema(&self, schema: &str) -> Self {
        Statements::new(self.dialect, schema, &self.table)
    }

    /// The same statements on another table.
    pub(super) fn with_table(&self, table: &str) -> Self {
        Statements::new(self.dialect, &self.schema, table)
    }

    /// The statements as the stores' hidden `statements()` hands them out.
    pub(super) fn borrowed(&self) -> SqlStatements<'_> {
        SqlStatements {
            table: &self.qualified,
            load: &self.load,
            update_if: &self.update_if,
        }
    }
}

/// Not public API, and it may change in any release: the SQL a store runs, for the benchmark's
/// ceiling (`bench/`), which times the store's own load and compare-and-set on the database
/// without the rest of the crate and must not drift from them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct SqlStatements<'a> {
    /// The sessions table as the statements name it: quoted and in its schema (SQLite: bare).
    pub table: &'a str,
    /// The stored bytes of a live record. Binds: id, now.
    pub load: &'a str,
    /// The compare-and-set. Binds: new data, new expiry, id, expected data, now.
    pub update_if: &'a str,
}

/// Checks a table or schema name before it is written into a statement: ASCII letters, digits
/// and underscores, not starting with a digit (stricter than any of the three databases).
pub(super) fn identifier(name: &str) -> Result<&str, ConfigError> {
    let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::InvalidTableName {
            name: name.to_owned(),
        })
    }
}

/// Implements `SessionStore` (handed to the upstream store in `self.inner`, so unconditional
/// writers use exactly its format), `ExpiredDeletion`, and `ConditionalStore` from
/// `self.statements` on `self.pool`, and the builder methods every SQL store shares:
/// `with_table_name` (its doc comment is the caller's, as the default table differs),
/// `migrate` and `pool`. With `schema` (Postgres, MySQL), also `with_schema_name`. And the
/// hidden `statements()` the benchmark's ceiling runs.
///
/// `with_*_name` check the name with [`identifier`] before handing it to the upstream store,
/// whose own check (tower-sessions-sqlx-store 0.15) is looser, so it never refuses the name:
/// SQLite takes ASCII letters, digits, `-` and `_`; Postgres and MySQL a Unicode letter or `_`
/// first, then Unicode letters and digits, `_` and `$`.
macro_rules! conditional_sql_store {
    ($store:ty, $pool:ty, schema, $(#[$table_doc:meta])* with_table_name) => {
        impl $store {
            /// Uses the schema `name` instead of `tower_sessions` (ASCII letters, digits,
            /// underscores).
            pub fn with_schema_name(
                mut self,
                name: impl AsRef<str>,
            ) -> Result<Self, $crate::error::ConfigError> {
                let name = $crate::store::sql::identifier(name.as_ref())?;
                self.inner = self
                    .inner
                    .with_schema_name(name)
                    .expect("a name that passed identifier() passes upstream's looser check");
                self.statements = self.statements.with_schema(name);
                Ok(self)
            }
        }

        $crate::store::sql::conditional_sql_store!(
            @store $store,
            $pool,
            "Creates the schema and the table if they are missing.",
            $(#[$table_doc])*
            with_table_name
        );
    };
    ($store:ty, $pool:ty, $(#[$table_doc:meta])* with_table_name) => {
        $crate::store::sql::conditional_sql_store!(
            @store $store,
            $pool,
            "Creates the table if it is missing.",
            $(#[$table_doc])*
            with_table_name
        );
    };
    (@store $store:ty, $pool:ty, $migrate_doc:literal, $(#[$table_doc:meta])* with_table_name) => {
        impl $store {
            $(#[$table_doc])*
            pub fn with_table_name(
                mut self,
                name: impl AsRef<str>,
            ) -> Result<Self, $crate::error::ConfigError> {
                let name = $crate::store::sql::identifier(name.as_ref())?;
                self.inner = self
                    .inner
                    .with_table_name(name)
                    .expect("a name that passed identifier() passes upstream's looser check");
                self.statements = self.statements.with_table(name);
                Ok(self)
            }

            #[doc = $migrate_doc]
            pub async fn migrate(&self) -> Result<(), sqlx::Error> {
                self.inner.migrate().await
            }

            /// The pool, e.g. to close it.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }
        }

        #[doc(hidden)]
        impl $store {
            /// Not public API: the statements this store runs, for the benchmark's ceiling.
            pub fn statements(&self) -> $crate::store::SqlStatements<'_> {
                self.statements.borrowed()
            }
        }

        $crate::store::delegate_session_store!($store);

        #[async_trait::async_trait]
        impl tower_sessions::session_store::ExpiredDeletion for $store {
            async fn delete_expired(&self) -> tower_sessions::session_store::Result<()> {
                self.inner.delete_expired().await
            }
        }

        impl $store {
            /// The stored bytes of a live record.
            async fn fetch(
                &self,
                id: &tower_sessions::session::Id,
            ) -> tower_sessions::session_store::Result<Option<Vec<u8>>> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as(&self.statements.load)
                    .bind(id.to_string())
                    .bind(time::OffsetDateTime::now_utc())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::backend_error)?;
                Ok(row.map(|(bytes,)| bytes))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ConditionalStore for $store {
            // Its versions are the records' MessagePack, as stored.
            fn versions_hold_records(&self) -> bool {
                true
            }

            async fn load_versioned(
                &self,
                id: &tower_sessions::session::Id,
            ) -> tower_sessions::session_store::Result<Option<$crate::store::Versioned>> {
                self.fetch(id)
                    .await?
                    .map($crate::store::decode_msgpack)
                    .transpose()
            }

            async fn reload_versioned(
                &self,
                id: &tower_sessions::session::Id,
                known: &$crate::store::Version,
            ) -> tower_sessions::session_store::Result<$crate::store::Reloaded> {
                $crate::store::reload_msgpack(self.fetch(id).await?, known)
            }

            async fn save_if(
                &self,
                record: &tower_sessions::session::Record,
                expected: &$crate::store::Version,
            ) -> tower_sessions::session_store::Result<$crate::store::SaveOutcome> {
                use $crate::store::SaveOutcome;
                let bytes = $crate::store::encode_msgpack(record)?;
                let id = record.id.to_string();
                let now = time::OffsetDateTime::now_utc();
                let done = sqlx::query(&self.statements.update_if)
                    .bind(&bytes)
                    .bind(record.expiry_date)
                    .bind(&id)
                    .bind(expected.as_bytes())
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::backend_error)?;
                // MySQL counts a row as affected only if it changed, unless the client sets
                // CLIENT_FOUND_ROWS, which sqlx-mysql always does: an update that writes the same
                // bytes still reports the row it matched (the store suite's
                // `a_save_of_unchanged_bytes_is_saved` checks it on every store).
                if done.rows_affected() == 1 {
                    return Ok(SaveOutcome::Saved($crate::store::Version::of_msgpack(bytes)));
                }
                let live = sqlx::query(&self.statements.exists)
                    .bind(&id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::backend_error)?;
                Ok(match live {
                    Some(_) => SaveOutcome::Conflict,
                    None => SaveOutcome::Gone,
                })
            }
        }
    };
}
pub(super) use conditional_sql_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_statement() {
        for good in ["sessions", "app_sessions", "_s2", "T"] {
            assert_eq!(identifier(good).unwrap(), good);
        }
        for bad in [
            "",
            "2fa",
            "x; drop table y",
            "a-b",
            "a.b",
            "\"q\"",
            "`b`",
            "é",
        ] {
            assert!(identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_dialect_quotes_and_binds_its_way() {
        let pg = Statements::new(Dialect::Postgres, "tower_sessions", "session");
        assert!(pg.update_if.contains(r#""tower_sessions"."session""#));
        assert!(pg.update_if.contains("$5"));
        let my = Statements::new(Dialect::MySql, "app", "session").with_table("s2");
        assert!(my.load.contains("`app`.`s2`") && !my.load.contains('$'));
        let lite = Statements::new(Dialect::Sqlite, "", "tower_sessions");
        assert!(
            lite.exists
                .starts_with("select id from tower_sessions where id = ?")
        );
    }
}
