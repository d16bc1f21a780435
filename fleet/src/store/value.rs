//! The values that cross the backend boundary: bound parameters in, column values out, so the
//! store's SQL and row mapping are written once for SQLite and PostgreSQL.

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::StoreError;

/// A bound parameter. Integers bind as 64-bit (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<f64> for Param<'_> {
    fn from(v: f64) -> Self {
        Param::Real(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// `params![a, b]`: a slice of [`Param`]s.
macro_rules! params {
    ($($e:expr),* $(,)?) => { &[$($crate::store::value::Param::from($e)),*] as &[$crate::store::value::Param<'_>] };
}
pub(crate) use params;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(v) => ValueRef::Integer(v),
            Param::Real(v) => ValueRef::Real(v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // Each arm checks the column type through the inner type's own `to_sql_checked`.
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT2 => i16::try_from(v)?.to_sql_checked(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql_checked(ty, out),
                _ => v.to_sql_checked(ty, out),
            },
            Param::Real(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Blob(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column value read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }

    pub(crate) fn from_sqlite(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }

    /// Column `i` of a PostgreSQL row, for the column types the store's schema uses.
    pub(crate) fn from_postgres(row: &postgres::Row, i: usize) -> Result<Self, StoreError> {
        fn get<'a, T: postgres::types::FromSql<'a>>(
            row: &'a postgres::Row,
            i: usize,
        ) -> Result<Option<T>, StoreError> {
            Ok(row.try_get::<_, Option<T>>(i)?)
        }
        let ty = row.columns()[i].type_();
        let v = match *ty {
            Type::INT8 => get::<i64>(row, i)?.map(Value::Int),
            Type::INT4 => get::<i32>(row, i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => get::<i16>(row, i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => get::<bool>(row, i)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => get::<f64>(row, i)?.map(Value::Real),
            Type::FLOAT4 => get::<f32>(row, i)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                get::<String>(row, i)?.map(Value::Text)
            }
            Type::BYTEA => get::<Vec<u8>>(row, i)?.map(Value::Blob),
            _ => {
                return Err(StoreError::ColumnType {
                    column: row.columns()[i].name().to_owned(),
                    found: ty.name().to_owned(),
                })
            }
        };
        Ok(v.unwrap_or(Value::Null))
    }
}

/// One result row, read by position with the type the store expects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0.get(i).ok_or(StoreError::Column {
            index: i,
            expected: "a column",
            found: "no such column",
        })
    }

    fn mismatch<T>(i: usize, expected: &'static str, v: &Value) -> Result<T, StoreError> {
        Err(StoreError::Column {
            index: i,
            expected,
            found: v.kind(),
        })
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            v => Self::mismatch(i, "an integer", v),
        }
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, StoreError> {
        match self.opt_i64(i)? {
            Some(v) => Ok(v),
            None => Self::mismatch(i, "an integer", &Value::Null),
        }
    }

    /// Counts and durations are stored signed; a negative one reads as 0.
    pub(crate) fn u64(&self, i: usize) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.i64(i)?).unwrap_or(0))
    }

    pub(crate) fn opt_u64(&self, i: usize) -> Result<Option<u64>, StoreError> {
        Ok(self.opt_i64(i)?.map(|v| u64::try_from(v).unwrap_or(0)))
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.i64(i)? != 0)
    }

    pub(crate) fn opt_f64(&self, i: usize) -> Result<Option<f64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            // SQLite stores a whole REAL as an integer when it fits.
            Value::Int(v) => Ok(Some(*v as f64)),
            v => Self::mismatch(i, "a real", v),
        }
    }

    pub(crate) fn f64(&self, i: usize) -> Result<f64, StoreError> {
        match self.opt_f64(i)? {
            Some(v) => Ok(v),
            None => Self::mismatch(i, "a real", &Value::Null),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            v => Self::mismatch(i, "text", v),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.opt_text(i)? {
            Some(v) => Ok(v),
            None => Self::mismatch(i, "text", &Value::Null),
        }
    }

    pub(crate) fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Blob(v) => Ok(Some(v.clone())),
            v => Self::mismatch(i, "a blob", v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_what_they_hold_and_name_a_mismatch() {
        let r = Row(vec![
            Value::Int(-3),
            Value::Null,
            Value::Text("x".into()),
            Value::Int(2),
        ]);
        assert_eq!(r.i64(0).unwrap(), -3);
        assert_eq!(r.u64(0).unwrap(), 0, "negative counts read as 0");
        assert_eq!(r.opt_text(1).unwrap(), None);
        assert_eq!(r.f64(3).unwrap(), 2.0);
        assert!(matches!(
            r.i64(2),
            Err(StoreError::Column {
                index: 2,
                expected: "an integer",
                found: "text"
            })
        ));
        assert!(matches!(
            r.text(1),
            Err(StoreError::Column {
                index: 1,
                expected: "text",
                found: "NULL"
            })
        ));
        assert!(matches!(r.i64(9), Err(StoreError::Column { index: 9, .. })));
    }
}
