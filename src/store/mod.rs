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

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor};

/// A kind of row read whole from one table: the table, the columns a `SELECT` names, and
/// how one such row becomes the type.
pub(crate) trait Record: Sized + Send + Unpin + 'static {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    fn from_row(row: AnyRow) -> sqlx::Result<Self>;
}

/// `SELECT` of `R`'s columns from its table, then `clause` (`WHERE …`, `ORDER BY …`).
fn select_sql<R: Record>(clause: &str) -> String {
    format!("SELECT {} FROM {} {clause}", R::COLUMNS, R::TABLE)
}

/// `sql` with its `$1, $2, …` bound to `keys` in order.
fn bound<'q>(sql: &'q str, keys: &[i64]) -> Query<'q, Any, AnyArguments<'q>> {
    keys.iter()
        .fold(sqlx::query(sql), |query, key| query.bind(*key))
}

/// The records that `clause` picks, its `$1, $2, …` bound to `keys` in order.
pub(crate) async fn select<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    clause: &str,
    keys: &[i64],
) -> sqlx::Result<Vec<R>> {
    let sql = select_sql::<R>(clause);
    bound(&sql, keys).try_map(R::from_row).fetch_all(db).await
}

/// The record that `clause` picks, if any, its `$1, $2, …` bound to `keys` in order.
pub(crate) async fn select_one<'e, R: Record>(
    db: impl Executor<'e, Database = Any>,
    clause: &str,
    keys: &[i64],
) -> sqlx::Result<Option<R>> {
    let sql = select_sql::<R>(clause);
    bound(&sql, keys)
        .try_map(R::from_row)
        .fetch_optional(db)
        .await
}

/// Runs a statement whose parameters are all numbers, its `$1, $2, …` bound to `keys` in
/// order.
pub(crate) async fn execute<'e>(
    db: impl Executor<'e, Database = Any>,
    sql: &str,
    keys: &[i64],
) -> sqlx::Result<()> {
    bound(sql, keys).execute(db).await.map(drop)
}

/// Deletes the rows of `table` whose `column` is `id`.
pub(crate) async fn delete_where(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    id: i64,
) -> sqlx::Result<()> {
    let sql = format!("DELETE FROM {table} WHERE {column} = $1");
    execute(conn, &sql, &[id]).await
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
