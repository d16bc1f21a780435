//! The one interface the store's queries run through, implemented by both backends.

use super::value::{Param, Row};
use super::StoreError;

/// A connection or an open transaction. SQL is written once with `?1`-style placeholders
/// (PostgreSQL's backend rewrites them to `$1`).
pub(crate) trait Sql {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// The column names a query returns.
    fn columns(&mut self, sql: &str) -> Result<Vec<String>, StoreError>;

    /// Runs a query, handing each row to `f` as it arrives.
    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

impl dyn Sql + '_ {
    /// Runs a query and maps every row.
    pub(crate) fn query<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        mut map: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(map(&r)?);
            Ok(())
        })?;
        Ok(out)
    }
}
