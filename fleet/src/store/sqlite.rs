//! The SQLite backend: one file in WAL mode, a busy timeout for other writers.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::sql::Sql;
use super::value::{Param, Row, Value};
use super::{schema, StoreError};

/// Opens (creating if needed) and migrates the database at `path`; a write waits up to `busy`
/// for another writer's lock.
pub(crate) fn open(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    // Switching a new database to WAL while other processes open it too can answer "busy"
    // without waiting for the busy handler (SQLite does not call it there): retry the set-up
    // until `busy` has passed.
    let deadline = std::time::Instant::now() + busy;
    loop {
        match set_up(path, busy) {
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Opens the locus database at `path` read-only (no file, schema or journal mode is changed);
/// a file that is no SQLite database or holds no locus schema is [`StoreError::NotAStore`].
pub(crate) fn open_read_only(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let db = path.display().to_string();
    let not_a_store = |e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            StoreError::NotAStore {
                db: db.clone(),
                reason: "it is not an SQLite database".to_owned(),
            }
        }
        e => StoreError::Sqlite(e),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    let found = schema::sqlite_version(&conn).map_err(|e| match e {
        StoreError::Sqlite(e) => not_a_store(e),
        e => e,
    })?;
    schema::check_readable(&db, found)?;
    Ok(conn)
}

fn set_up(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    schema::migrate_sqlite(&mut conn)?;
    Ok(conn)
}

/// A connection or transaction (which derefs to one) as [`Sql`].
pub(crate) struct Lite<'a>(pub(crate) &'a Connection);

impl Sql for Lite<'_> {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn columns(&mut self, sql: &str) -> Result<Vec<String>, StoreError> {
        let stmt = self.0.prepare_cached(sql)?;
        Ok(stmt.column_names().iter().map(|s| s.to_string()).collect())
    }

    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(Value::from_sqlite(r.get_ref(i)?));
            }
            f(Row(values))?;
        }
        Ok(())
    }
}
