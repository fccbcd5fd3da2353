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
