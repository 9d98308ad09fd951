//! One statement API over the two drivers: [`query`]`(sql).bind(v)….fetch_all(conn)`.
//!
//! PostgreSQL statements go through sqlx (its `Any` driver and pool). SQLite statements
//! run on a `rusqlite` connection, in the calling thread: sqlx runs each SQLite connection
//! on a thread of its own and hands every statement to it and the result back, two thread
//! wake-ups per statement that cost more CPU than the statement itself (measured:
//! docs/PERFORMANCE.md, fourth session). A SQLite statement here is a library call of a
//! few microseconds. The hot writes commit on the group-commit threads (`store::batch`);
//! a commit that runs SQLite's automatic WAL checkpoint takes milliseconds wherever it
//! happens (docs/ARCHITECTURE.md, Storage).
//!
//! Errors are sqlx's type on both backends (a SQLite failure is an
//! `sqlx::Error::Database` with the right [`sqlx::error::ErrorKind`]), so the callers'
//! handling (unique violations, `From<sqlx::Error>`) does not care which ran.
//!
//! Placeholders: `$n` on both (SQLite reads `$n` as a named parameter, bound here by its
//! number), or `?` on SQLite only, bound in order (see `store::values_placeholders`).

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::Any;

/// A database connection: from sqlx's pool (PostgreSQL) or a SQLite connection.
pub enum Conn {
    /// PostgreSQL, through sqlx.
    Pg(PoolConnection<Any>),
    /// SQLite, called directly.
    Lite(rusqlite::Connection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend_name())
    }
}

impl Conn {
    /// `"SQLite"` or `"PostgreSQL"` (sqlx's names).
    pub fn backend_name(&self) -> &'static str {
        match self {
            Conn::Pg(_) => "PostgreSQL",
            Conn::Lite(_) => "SQLite",
        }
    }
}

/// The type of a NULL (PostgreSQL wants typed parameters).
#[derive(Debug, Clone, Copy)]
pub enum NullOf {
    /// A NULL integer (`BIGINT`).
    Int,
    /// A NULL text.
    Text,
    /// A NULL byte string (`BLOB` / `BYTEA`).
    Blob,
}

/// A bound value.
#[derive(Debug, Clone)]
pub enum Arg<'q> {
    /// SQL NULL of the given type (what `None` binds as).
    Null(NullOf),
    /// An integer (times in Unix seconds, 0/1 flags, counters).
    Int(i64),
    /// Text, borrowed or owned.
    Text(Cow<'q, str>),
    /// Bytes, borrowed or owned.
    Blob(Cow<'q, [u8]>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr, $null:ident;)*) => {$(
        impl<'q> From<$t> for Arg<'q> {
            fn from($v: $t) -> Self {
                $e
            }
        }
        impl<'q> From<Option<$t>> for Arg<'q> {
            fn from(v: Option<$t>) -> Self {
                match v {
                    Some(v) => v.into(),
                    None => Arg::Null(NullOf::$null),
                }
            }
        }
    )*};
}

arg_from! {
    i64 => |v| Arg::Int(v), Int;
    &'q str => |v| Arg::Text(Cow::Borrowed(v)), Text;
    &'q String => |v| Arg::Text(Cow::Borrowed(v.as_str())), Text;
    String => |v| Arg::Text(Cow::Owned(v)), Text;
    &'q [u8] => |v| Arg::Blob(Cow::Borrowed(v)), Blob;
    &'q Vec<u8> => |v| Arg::Blob(Cow::Borrowed(v.as_slice())), Blob;
    Vec<u8> => |v| Arg::Blob(Cow::Owned(v)), Blob;
}

impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        v.as_deref().into()
    }
}

impl<'q> From<&'q Option<i64>> for Arg<'q> {
    fn from(v: &'q Option<i64>) -> Self {
        (*v).into()
    }
}

impl<'q> From<&'q Option<Vec<u8>>> for Arg<'q> {
    fn from(v: &'q Option<Vec<u8>>) -> Self {
        v.as_deref().into()
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null(_) => ValueRef::Null,
            Arg::Int(i) => ValueRef::Integer(*i),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A statement with its values.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg<'q>>,
}

/// A statement (`$n` placeholders, or `?` on SQLite).
pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub struct Done(u64);

impl Done {
    /// Rows inserted, updated or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl<'q> Query<'q> {
    /// Binds the next value (`$1`, `$2`, … in order).
    pub fn bind(mut self, v: impl Into<Arg<'q>>) -> Self {
        self.args.push(v.into());
        self
    }

    /// Runs the statement; rows it returns are dropped.
    pub async fn execute(self, conn: &mut Conn) -> Result<Done, sqlx::Error> {
        match conn {
            Conn::Pg(c) => Ok(Done(self.pg().execute(&mut **c).await?.rows_affected())),
            Conn::Lite(c) => {
                let mut stmt = prepare(c, self.sql, &self.args)?;
                let mut rows = stmt.raw_query();
                while rows.next().map_err(lite_error)?.is_some() {}
                drop(rows);
                drop(stmt);
                Ok(Done(c.changes()))
            }
        }
    }

    /// Runs the statement and returns its rows.
    pub async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<Row>, sqlx::Error> {
        match conn {
            Conn::Pg(c) => Ok(self
                .pg()
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect()),
            Conn::Lite(c) => lite_rows(c, self.sql, &self.args, usize::MAX),
        }
    }

    /// Runs the statement and returns its first row, if any.
    pub async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<Row>, sqlx::Error> {
        match conn {
            Conn::Pg(c) => Ok(self.pg().fetch_optional(&mut **c).await?.map(Row::Pg)),
            Conn::Lite(c) => Ok(lite_rows(c, self.sql, &self.args, 1)?.pop()),
        }
    }

    /// Runs the statement and returns its first row (`RowNotFound` without one).
    pub async fn fetch_one(self, conn: &mut Conn) -> Result<Row, sqlx::Error> {
        self.fetch_optional(conn)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    fn pg(self) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(self.sql);
        for arg in self.args {
            q = match arg {
                Arg::Null(NullOf::Int) => q.bind(None::<i64>),
                Arg::Null(NullOf::Text) => q.bind(None::<String>),
                Arg::Null(NullOf::Blob) => q.bind(None::<Vec<u8>>),
                Arg::Int(i) => q.bind(i),
                Arg::Text(Cow::Borrowed(s)) => q.bind(s),
                Arg::Text(Cow::Owned(s)) => q.bind(s),
                Arg::Blob(b) => q.bind(b.into_owned()),
            };
        }
        q
    }
}

/// A prepared (cached) SQLite statement with `args` bound: `$n` parameters by number,
/// the others in order.
fn prepare<'c>(
    c: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<rusqlite::CachedStatement<'c>, sqlx::Error> {
    let mut stmt = c.prepare_cached(sql).map_err(lite_error)?;
    for i in 1..=stmt.parameter_count() {
        let at = match stmt.parameter_name(i) {
            Some(name) if name.starts_with('$') => name[1..].parse::<usize>().ok(),
            _ => Some(i),
        };
        let arg = at
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| args.get(n))
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "statement parameter {i} has no value ({} bound)",
                    args.len()
                ))
            })?;
        stmt.raw_bind_parameter(i, arg).map_err(lite_error)?;
    }
    Ok(stmt)
}

/// Up to `limit` rows of a SQLite statement, read to its end (so that an UPDATE …
/// RETURNING finishes even when one row is wanted).
fn lite_rows(
    c: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
    limit: usize,
) -> Result<Vec<Row>, sqlx::Error> {
    let mut stmt = prepare(c, sql, args)?;
    let names: Arc<[Box<str>]> = stmt.column_names().into_iter().map(Box::from).collect();
    let width = names.len();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next().map_err(lite_error)? {
        if out.len() >= limit {
            continue;
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(Value::from(r.get_ref(i).map_err(lite_error)?));
        }
        out.push(Row::Lite(LiteRow {
            names: names.clone(),
            values,
        }));
    }
    Ok(out)
}

/// A result row.
pub enum Row {
    /// A row from PostgreSQL, through sqlx.
    Pg(AnyRow),
    /// A row from SQLite, its values copied out of the statement.
    Lite(LiteRow),
}

/// A SQLite row, read out of its statement.
pub struct LiteRow {
    names: Arc<[Box<str>]>,
    values: Vec<Value>,
}

/// A column, by name or position.
#[derive(Debug, Clone, Copy)]
pub enum Col<'a> {
    /// By column name (as the statement names it, e.g. after `AS`).
    Name(&'a str),
    /// By 0-based position in the result.
    At(usize),
}

impl<'a> From<&'a str> for Col<'a> {
    fn from(n: &'a str) -> Self {
        Col::Name(n)
    }
}

impl From<usize> for Col<'_> {
    fn from(i: usize) -> Self {
        Col::At(i)
    }
}

impl Row {
    /// The value of a column as `T` (`Option<T>` for a column that may be NULL).
    pub fn try_get<'a, T: Decode, I: Into<Col<'a>>>(&self, col: I) -> Result<T, sqlx::Error> {
        use sqlx::Row as _;
        let col = col.into();
        match self {
            Row::Pg(r) => match col {
                Col::Name(n) => r.try_get(n),
                Col::At(i) => r.try_get(i),
            },
            Row::Lite(r) => {
                let (at, name) = match col {
                    Col::Name(n) => (
                        r.names
                            .iter()
                            .position(|c| &**c == n)
                            .ok_or_else(|| sqlx::Error::ColumnNotFound(n.to_string()))?,
                        n.to_string(),
                    ),
                    Col::At(i) => (i, i.to_string()),
                };
                let v = r
                    .values
                    .get(at)
                    .ok_or(sqlx::Error::ColumnIndexOutOfBounds {
                        index: at,
                        len: r.values.len(),
                    })?;
                T::from_lite(v).map_err(|e| sqlx::Error::ColumnDecode {
                    index: name,
                    source: e.into(),
                })
            }
        }
    }
}

impl Row {
    /// The text of a column, lent to `f` without a copy (for values parsed on the spot).
    pub fn with_str<'a, R, I: Into<Col<'a>>>(
        &self,
        col: I,
        f: impl FnOnce(&str) -> R,
    ) -> Result<R, sqlx::Error> {
        use sqlx::Row as _;
        let col = col.into();
        match (self, col) {
            (Row::Pg(r), Col::Name(n)) => r.try_get::<&str, _>(n).map(f),
            (Row::Pg(r), Col::At(i)) => r.try_get::<&str, _>(i).map(f),
            (Row::Lite(r), col) => {
                let at = match col {
                    Col::Name(n) => r.names.iter().position(|c| &**c == n),
                    Col::At(i) => Some(i),
                };
                match at.and_then(|at| r.values.get(at)) {
                    Some(Value::Text(s)) => Ok(f(s)),
                    // Not text (or absent): decoded as `try_get` does, with its errors.
                    _ => match col {
                        Col::Name(n) => self.try_get::<String, _>(n).map(|s| f(&s)),
                        Col::At(i) => self.try_get::<String, _>(i).map(|s| f(&s)),
                    },
                }
            }
        }
    }
}

/// A Rust type a column decodes into, on either backend. SQLite values convert the way
/// SQLite's own accessors convert them (an integer read as text is its decimal digits).
pub trait Decode: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    /// From a SQLite value.
    fn from_lite(v: &Value) -> Result<Self, String>;
}

impl Decode for i64 {
    fn from_lite(v: &Value) -> Result<Self, String> {
        match v {
            Value::Integer(i) => Ok(*i),
            Value::Real(f) => Ok(*f as i64),
            Value::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not an integer")),
            Value::Null => Err("unexpected NULL".into()),
            Value::Blob(_) => Err("a blob is not an integer".into()),
        }
    }
}

impl Decode for String {
    fn from_lite(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            Value::Integer(i) => Ok(i.to_string()),
            Value::Real(f) => Ok(f.to_string()),
            Value::Blob(b) => String::from_utf8(b.clone()).map_err(|e| e.to_string()),
            Value::Null => Err("unexpected NULL".into()),
        }
    }
}

impl Decode for Vec<u8> {
    fn from_lite(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            Value::Null => Err("unexpected NULL".into()),
            _ => Err("a number is not a blob".into()),
        }
    }
}

impl<T: Decode> Decode for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    fn from_lite(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_lite(v).map(Some),
        }
    }
}

/// A SQLite failure as sqlx reports database errors.
#[derive(Debug)]
pub struct LiteError {
    message: String,
    code: Option<String>,
    kind: Kind,
}

/// Which constraint a failure broke (sqlx's `ErrorKind` is not `Clone`).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Unique,
    ForeignKey,
    NotNull,
    Check,
    Other,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.as_deref().map(Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.kind {
            Kind::Unique => ErrorKind::UniqueViolation,
            Kind::ForeignKey => ErrorKind::ForeignKeyViolation,
            Kind::NotNull => ErrorKind::NotNullViolation,
            Kind::Check => ErrorKind::CheckViolation,
            Kind::Other => ErrorKind::Other,
        }
    }
}

/// The SQLSTATE of the PostgreSQL condition a SQLite failure of its environment means
/// (the disk, the file, memory, another writer), so that `vellum_core::error` classifies
/// both backends' outages with one table: a full disk is 53100 (`disk_full`), an I/O error
/// or a file that cannot be opened 58030 (`io_error`), a busy or locked database 55P03
/// (`lock_not_available`), no memory 53200, a read-only file 25006. Other failures keep
/// SQLite's extended code (constraints are told apart by their [`Kind`]).
fn environment_sqlstate(code: rusqlite::ErrorCode) -> Option<&'static str> {
    use rusqlite::ErrorCode as C;
    Some(match code {
        C::DiskFull => "53100",
        C::SystemIoFailure | C::CannotOpen => "58030",
        C::DatabaseBusy | C::DatabaseLocked => "55P03",
        C::OutOfMemory => "53200",
        C::ReadOnly => "25006",
        _ => return None,
    })
}

/// Maps a rusqlite error to sqlx's error type.
pub(crate) fn lite_error(e: rusqlite::Error) -> sqlx::Error {
    use rusqlite::ffi;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let kind = match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Kind::Unique,
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Kind::ForeignKey,
                ffi::SQLITE_CONSTRAINT_NOTNULL => Kind::NotNull,
                ffi::SQLITE_CONSTRAINT_CHECK => Kind::Check,
                _ => Kind::Other,
            };
            let message = msg.clone().unwrap_or_else(|| f.to_string());
            sqlx::Error::Database(Box::new(LiteError {
                code: Some(
                    environment_sqlstate(f.code)
                        .map(str::to_string)
                        .unwrap_or_else(|| f.extended_code.to_string()),
                ),
                message: format!("{message} (SQLite code {})", f.extended_code),
                kind,
            }))
        }
        _ => sqlx::Error::Database(Box::new(LiteError {
            message: e.to_string(),
            code: None,
            kind: Kind::Other,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lite() -> Conn {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, note TEXT, data BLOB)")
            .unwrap();
        Conn::Lite(c)
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_and_values_decode_by_type() {
        let mut c = lite();
        let done = query("INSERT INTO t (n, id, note, data) VALUES ($2, $1, $3, $4)")
            .bind("a")
            .bind(7i64)
            .bind(None::<&str>)
            .bind(vec![1u8, 2])
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        let row = query("SELECT * FROM t WHERE id = $1 AND n = $2")
            .bind("a")
            .bind(7i64)
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("id").unwrap(), "a");
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 7);
        assert_eq!(row.try_get::<Option<String>, _>("note").unwrap(), None);
        assert_eq!(row.try_get::<Vec<u8>, _>(3).unwrap(), vec![1, 2]);
        assert!(
            row.try_get::<String, _>("note").is_err(),
            "NULL is not a String"
        );
        assert!(matches!(
            row.try_get::<String, _>("nope"),
            Err(sqlx::Error::ColumnNotFound(_))
        ));
    }

    #[tokio::test]
    async fn question_marks_bind_in_order_and_returning_rows_come_back() {
        let mut c = lite();
        query("INSERT INTO t (id, n) VALUES (?, ?), (?, ?)")
            .bind("x")
            .bind(1i64)
            .bind("y")
            .bind(2i64)
            .execute(&mut c)
            .await
            .unwrap();
        let rows = query("UPDATE t SET n = n + 10 WHERE n >= ? RETURNING id")
            .bind(1i64)
            .fetch_all(&mut c)
            .await
            .unwrap();
        let mut ids: Vec<String> = rows.iter().map(|r| r.try_get(0usize).unwrap()).collect();
        ids.sort();
        assert_eq!(ids, ["x", "y"]);
        // One row asked for, but the statement still ran to its end.
        let first = query("UPDATE t SET n = 0 RETURNING id")
            .fetch_optional(&mut c)
            .await
            .unwrap();
        assert!(first.is_some());
        let zero = query("SELECT COUNT(*) AS k FROM t WHERE n = 0")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(zero.try_get::<i64, _>("k").unwrap(), 2);
    }

    #[tokio::test]
    async fn constraint_failures_keep_their_kind_and_missing_values_are_errors() {
        let mut c = lite();
        let insert = || query("INSERT INTO t (id) VALUES ($1)").bind("dup");
        insert().execute(&mut c).await.unwrap();
        match insert().execute(&mut c).await {
            Err(sqlx::Error::Database(db)) => {
                assert!(db.is_unique_violation(), "{}", db.message())
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
        let unbound = query("SELECT * FROM t WHERE id = $1 AND n = $2")
            .bind("dup")
            .fetch_all(&mut c)
            .await;
        assert!(matches!(unbound, Err(sqlx::Error::Protocol(_))));
    }
}
