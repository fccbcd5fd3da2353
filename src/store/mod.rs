//! All SQL the console runs on its own database lives here, one module per aggregate.
//! Functions take an executor so that handlers decide what runs in one transaction.
//!
//! Three places outside this folder hold SQL, each for a reason of its own:
//! - `src/db.rs` opens the pool: it runs the migrations, `ANALYZE` after them and the
//!   health check's `SELECT 1`, before any of this module's functions can be called;
//! - `src/sources/database.rs` reads the customers' own source databases (PostgreSQL,
//!   MySQL), not the console's: their queries are the customers' and the dialect theirs;
//! - `src/bench.rs` and `src/bench/` are benchmarks, not the console: they make their own
//!   user and find it again, fill source databases, and alter data to measure (change one
//!   profile in a hundred, forget the published digests), which nothing the console does
//!   should ever call.

pub mod alerts;
pub mod api_tokens;
pub mod audit;
pub mod destinations;
pub mod drift;
pub mod fields;
pub mod forgetting;
pub mod import_jobs;
pub mod imports;
pub mod ledger;
pub mod marks;
pub mod plan;
pub mod previews;
pub mod profile_writers;
pub mod profiles;
pub mod results;
pub mod runs;
pub mod schedule;
pub mod segments;
pub mod sign_in_failures;
pub mod slots;
pub mod sources;
pub mod users;
pub mod webhooks;

use std::future::Future;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor};

/// A kind of row read whole from one table: the table, the columns a `SELECT` names, and
/// how one such row becomes the type.
pub(crate) trait Record: Sized + Send + Unpin + 'static {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    fn from_row(row: AnyRow) -> sqlx::Result<Self>;

    /// The record whose `id` is `id`, if any.
    fn find<'e>(
        db: impl Executor<'e, Database = Any>,
        id: i64,
    ) -> impl Future<Output = sqlx::Result<Option<Self>>> + Send {
        async move { select_one(db, "WHERE id = $1", &[id.into()]).await }
    }
}

/// `SELECT` of `R`'s columns from its table, then `clause` (`WHERE …`, `ORDER BY …`).
fn select_sql<R: Record>(clause: &str) -> String {
    format!("SELECT {} FROM {} {clause}", R::COLUMNS, R::TABLE)
}

/// One value bound to a statement's `$n`: the kinds the console's own tables hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    MaybeInt(Option<i64>),
    MaybeText(Option<&'a str>),
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl From<i32> for Arg<'_> {
    fn from(value: i32) -> Self {
        Arg::Int(i64::from(value))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(value)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(value: &'a String) -> Self {
        Arg::Text(value)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        Arg::MaybeInt(value)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Arg::MaybeText(value)
    }
}

/// `sql` with its `$1, $2, …` bound to `args` in order.
fn bound<'q>(sql: &'q str, args: &[Arg<'q>]) -> Query<'q, Any, AnyArguments<'q>> {
    args.iter().fold(sqlx::query(sql), |query, arg| match *arg {
        Arg::Int(value) => query.bind(value),
        Arg::Text(value) => query.bind(value),
        Arg::MaybeInt(value) => query.bind(value),
        Arg::MaybeText(value) => query.bind(value),
    })
}

/// The records a statement returns (`SELECT …`, `… RETURNING`), read as `R`.
pub(crate) async fn records<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<Vec<R>> {
    bound(sql, args).try_map(R::from_row).fetch_all(db).await
}

/// The record a statement returns, if any, read as `R`.
pub(crate) async fn record<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<Option<R>> {
    bound(sql, args)
        .try_map(R::from_row)
        .fetch_optional(db)
        .await
}

/// The records that `clause` picks, its `$1, $2, …` bound to `args` in order.
pub(crate) async fn select<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    clause: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<Vec<R>> {
    records(db, &select_sql::<R>(clause), args).await
}

/// The record that `clause` picks, if any, its `$1, $2, …` bound to `args` in order.
pub(crate) async fn select_one<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    clause: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<Option<R>> {
    record(db, &select_sql::<R>(clause), args).await
}

/// Runs a statement whose parameters are all numbers, its `$1, $2, …` bound to `keys` in
/// order.
pub(crate) async fn execute<'e>(
    db: impl Executor<'e, Database = Any>,
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<()> {
    bound(sql, args).execute(db).await.map(drop)
}

/// Runs a statement, its `$1, $2, …` bound to `args` in order; true when it changed a row.
pub(crate) async fn changed_any<'e>(
    db: impl Executor<'e, Database = Any>,
    sql: &str,
    args: &[Arg<'_>],
) -> sqlx::Result<bool> {
    Ok(bound(sql, args).execute(db).await?.rows_affected() > 0)
}

/// Deletes the rows of `table` whose `column` is `id`.
pub(crate) async fn delete_where(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    id: i64,
) -> sqlx::Result<()> {
    let sql = format!("DELETE FROM {table} WHERE {column} = $1");
    execute(conn, &sql, &[id.into()]).await
}

/// `$first, $first+1, …`: `n` numbered parameters for a statement's `IN (…)` or `VALUES (…)`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when a database error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}
