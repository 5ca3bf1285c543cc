//! SQL written once for both backends. An [`Sql`] is our own text (only
//! `&'static str` pieces and validated, quoted identifiers reach it) plus
//! the values bound to its `?` placeholders, in order; the dialect
//! differences are methods of [`Backend`]. [`Database`] and [`Tx`] run it on
//! either backend and decode rows by column name (`sqlx::FromRow`, derived
//! on the typed rows of each module).

use std::borrow::Cow;

use futures_util::TryStreamExt;
use sqlx::mysql::MySqlRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Encode, MySql, Sqlite, Type};

use super::{Backend, Database};
use crate::ident::Ident;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
}

impl Value<'_> {
    /// The value, owning its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(i),
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
        }
    }
}

impl std::fmt::Display for Value<'_> {
    /// As `--verbose` shows it: long texts cut to their first 200 characters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Text(s) => write!(f, "{}", crate::display::Excerpt(s)),
        }
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Value::Null, |s| Value::Text(Cow::Borrowed(s)))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl Backend {
    /// `name` quoted as an identifier of this backend. Only validated names
    /// ([`Ident`]) and our own column names may come here.
    pub fn quote(self, name: &str) -> String {
        match self {
            Backend::Sqlite => format!("\"{name}\""),
            Backend::Mysql => format!("`{name}`"),
        }
    }
}

/// SQL text with its bound values, for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql<'a> {
    backend: Backend,
    text: String,
    binds: Vec<Value<'a>>,
    /// Conditions written by [`Sql::and`] so far (the first says `WHERE`).
    conditions: usize,
    /// What [`Sql::and`] writes first: ` WHERE `, or nothing for a bare
    /// condition ([`Sql::condition`]).
    first: &'static str,
}

impl<'a> Sql<'a> {
    /// Empty SQL for `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            text: String::new(),
            binds: Vec::new(),
            conditions: 0,
            first: " WHERE ",
        }
    }

    /// A bare condition for `backend`: [`Sql::and`] starts it without `WHERE`.
    pub fn condition(backend: Backend) -> Self {
        Self {
            first: "",
            ..Self::new(backend)
        }
    }

    /// SQL for `backend` starting with `text`.
    pub fn with(backend: Backend, text: &'static str) -> Self {
        let mut s = Self::new(backend);
        s.push(text);
        s
    }

    /// A fixed statement with its `?` placeholders bound to `args`, in order.
    pub fn with_args<V: Into<Value<'a>>>(
        backend: Backend,
        text: &'static str,
        args: impl IntoIterator<Item = V>,
    ) -> Self {
        let mut s = Self::with(backend, text);
        s.binds.extend(args.into_iter().map(Into::into));
        debug_assert_eq!(text.matches('?').count(), s.binds.len(), "{text}");
        s
    }

    /// The backend this SQL is written for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Our own SQL text. `'static`, so that no user value reaches the text
    /// by accident: values go through [`Sql::bind`], names through
    /// [`Sql::table`] and [`Sql::quoted`].
    pub fn push(&mut self, s: &'static str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// A validated table name plus a fixed suffix (`""`, or `"$grep"` for
    /// its search index), quoted for the backend.
    pub fn table(&mut self, t: &Ident, suffix: &'static str) -> &mut Self {
        let q = self.backend.quote(&format!("{t}{suffix}"));
        self.text.push_str(&q);
        self
    }

    /// One of our own column names, quoted (for names that are reserved
    /// words on a backend, such as `key`).
    pub fn quoted(&mut self, column: &'static str) -> &mut Self {
        let q = self.backend.quote(column);
        self.text.push_str(&q);
        self
    }

    /// A placeholder bound to `v`.
    pub fn bind(&mut self, v: impl Into<Value<'a>>) -> &mut Self {
        self.text.push('?');
        self.binds.push(v.into());
        self
    }

    /// Starts the next condition (` WHERE ` or ` AND `).
    pub fn and(&mut self) -> &mut Self {
        let sep = if self.conditions == 0 {
            self.first
        } else {
            " AND "
        };
        self.conditions += 1;
        self.push(sep)
    }

    /// `(?, ?, ...)` bound to `values` (at least one: `()` is not SQL).
    pub fn list<V: Into<Value<'a>>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")")
    }

    /// `VALUES (...), (...)`: one tuple per item of `rows`, its values
    /// given by `row`.
    pub fn values<T, const N: usize>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        mut row: impl FnMut(T) -> [Value<'a>; N],
    ) -> &mut Self {
        self.push("VALUES ");
        for (i, r) in rows.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.list(row(r));
        }
        self
    }

    /// Appends another statement's text and values (SQL built by [`Sql`]
    /// too, e.g. a filter's condition).
    pub fn append(&mut self, other: &Sql<'a>) -> &mut Self {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds.iter().cloned());
        self
    }

    /// ` AS c<n>`: the alias of a computed column (read back by that name).
    pub fn alias(&mut self, n: usize) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.text, " AS c{n}");
        self
    }

    /// The text, with `?` placeholders.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The bound values, in placeholder order.
    pub fn binds(&self) -> &[Value<'a>] {
        &self.binds
    }

    /// The same statement, owning its values.
    pub fn into_owned(self) -> Sql<'static> {
        Sql {
            backend: self.backend,
            text: self.text,
            binds: self.binds.into_iter().map(Value::into_owned).collect(),
            conditions: self.conditions,
            first: self.first,
        }
    }

    /// Text and values, owned.
    pub fn into_parts(self) -> (String, Vec<Value<'a>>) {
        (self.text, self.binds)
    }
}

/// A row type both backends decode by column name.
pub trait FromDbRow:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, MySqlRow> + Send + Unpin
{
}

impl<T> FromDbRow for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, MySqlRow> + Send + Unpin
{
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub rows: u64,
    /// The id of the (first, on MariaDB) row inserted.
    pub last_id: i64,
}

/// The arguments of `binds` for backend `DB`.
fn arguments<DB>(binds: &[Value<'_>]) -> Result<DB::Arguments, sqlx::error::BoxDynError>
where
    DB: sqlx::Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    use sqlx::Arguments;
    let mut args = DB::Arguments::default();
    for b in binds {
        match b {
            Value::Null => args.add(None::<i64>)?,
            Value::Int(v) => args.add(*v)?,
            Value::Text(t) => args.add(t.as_ref())?,
        }
    }
    Ok(args)
}

/// `q` as a sqlx query of backend `DB` (an error if a value cannot be encoded).
pub(crate) fn query<DB>(
    q: &Sql<'_>,
) -> Result<sqlx::query::Query<'static, DB, DB::Arguments>, sqlx::Error>
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let args = arguments::<DB>(q.binds()).map_err(sqlx::Error::Encode)?;
    Ok(sqlx::query_with(sqlx::AssertSqlSafe(q.text()), args))
}

/// `q` as a sqlx query of backend `DB` whose rows decode into `T` by name.
pub(crate) fn query_as<DB, T>(
    q: &Sql<'_>,
) -> Result<sqlx::query::QueryAs<'static, DB, T, DB::Arguments>, sqlx::Error>
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    T: for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let args = arguments::<DB>(q.binds()).map_err(sqlx::Error::Encode)?;
    Ok(sqlx::query_as_with(sqlx::AssertSqlSafe(q.text()), args))
}

fn sqlite_done(r: sqlx::sqlite::SqliteQueryResult) -> Done {
    Done {
        rows: r.rows_affected(),
        last_id: r.last_insert_rowid(),
    }
}

fn mysql_done(r: sqlx::mysql::MySqlQueryResult) -> Done {
    Done {
        rows: r.rows_affected(),
        last_id: i64::try_from(r.last_insert_id()).unwrap_or(i64::MAX),
    }
}

impl Database {
    /// A new [`Sql`] for this database's backend.
    pub fn sql(&self, text: &'static str) -> Sql<'static> {
        Sql::with(self.backend(), text)
    }

    /// Runs a statement that returns no rows.
    pub(crate) async fn execute(&self, q: &Sql<'_>) -> Result<Done, sqlx::Error> {
        match self {
            Database::Sqlite(d) => query::<Sqlite>(q)?.execute(&d.pool).await.map(sqlite_done),
            Database::Mysql(d) => query::<MySql>(q)?.execute(&d.pool).await.map(mysql_done),
        }
    }

    /// Every row, decoded by name.
    pub(crate) async fn fetch_all<T: FromDbRow>(&self, q: &Sql<'_>) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Database::Sqlite(d) => query_as::<Sqlite, T>(q)?.fetch_all(&d.pool).await,
            Database::Mysql(d) => query_as::<MySql, T>(q)?.fetch_all(&d.pool).await,
        }
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional<T: FromDbRow>(
        &self,
        q: &Sql<'_>,
    ) -> Result<Option<T>, sqlx::Error> {
        match self {
            Database::Sqlite(d) => query_as::<Sqlite, T>(q)?.fetch_optional(&d.pool).await,
            Database::Mysql(d) => query_as::<MySql, T>(q)?.fetch_optional(&d.pool).await,
        }
    }

    /// The one row a statement returns.
    pub(crate) async fn fetch_one<T: FromDbRow>(&self, q: &Sql<'_>) -> Result<T, sqlx::Error> {
        match self {
            Database::Sqlite(d) => query_as::<Sqlite, T>(q)?.fetch_one(&d.pool).await,
            Database::Mysql(d) => query_as::<MySql, T>(q)?.fetch_one(&d.pool).await,
        }
    }

    /// Passes each row to `each` as it arrives (memory stays flat).
    pub(crate) async fn for_each<T: FromDbRow>(
        &self,
        q: &Sql<'_>,
        mut each: impl FnMut(T),
    ) -> Result<(), sqlx::Error> {
        match self {
            Database::Sqlite(d) => {
                let mut rows = query_as::<Sqlite, T>(q)?.fetch(&d.pool);
                while let Some(r) = rows.try_next().await? {
                    each(r);
                }
            }
            Database::Mysql(d) => {
                let mut rows = query_as::<MySql, T>(q)?.fetch(&d.pool);
                while let Some(r) = rows.try_next().await? {
                    each(r);
                }
            }
        }
        Ok(())
    }

    /// Starts a transaction.
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Database::Sqlite(d) => Tx::Sqlite(d.pool.begin().await?),
            Database::Mysql(d) => Tx::Mysql(d.pool.begin().await?),
        })
    }
}

/// A transaction of either backend (rolled back if dropped uncommitted).
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Mysql(sqlx::Transaction<'static, MySql>),
}

impl Tx {
    /// Runs a statement that returns no rows.
    pub(crate) async fn execute(&mut self, q: &Sql<'_>) -> Result<Done, sqlx::Error> {
        match self {
            Tx::Sqlite(t) => query::<Sqlite>(q)?.execute(&mut **t).await.map(sqlite_done),
            Tx::Mysql(t) => query::<MySql>(q)?.execute(&mut **t).await.map(mysql_done),
        }
    }

    /// Every row, decoded by name.
    pub(crate) async fn fetch_all<T: FromDbRow>(
        &mut self,
        q: &Sql<'_>,
    ) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Tx::Sqlite(t) => query_as::<Sqlite, T>(q)?.fetch_all(&mut **t).await,
            Tx::Mysql(t) => query_as::<MySql, T>(q)?.fetch_all(&mut **t).await,
        }
    }

    /// The one row a statement returns.
    pub(crate) async fn fetch_one<T: FromDbRow>(&mut self, q: &Sql<'_>) -> Result<T, sqlx::Error> {
        match self {
            Tx::Sqlite(t) => query_as::<Sqlite, T>(q)?.fetch_one(&mut **t).await,
            Tx::Mysql(t) => query_as::<MySql, T>(q)?.fetch_one(&mut **t).await,
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Mysql(t) => t.commit().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_and_names_quoted() {
        let t = Ident::new("auth", "t").unwrap();
        let evil = "' OR 1=1 --";
        let mut q = Sql::with(Backend::Mysql, "SELECT ");
        q.quoted("key").push(" FROM ").table(&t, "$grep");
        q.and().push("a = ").bind(evil);
        q.and().push("b IN ").list([1i64, 2]);
        assert_eq!(
            q.text(),
            "SELECT `key` FROM `auth$grep` WHERE a = ? AND b IN (?, ?)"
        );
        assert_eq!(q.binds()[0], Value::from(evil));
        let mut q = Sql::with(Backend::Sqlite, "INSERT INTO x (a, b) ");
        q.values([(1i64, "x"), (2, "y")], |(a, b)| [a.into(), b.into()]);
        assert_eq!(q.text(), "INSERT INTO x (a, b) VALUES (?, ?), (?, ?)");
        assert_eq!(q.binds().len(), 4);
    }
}
