//! All SQL lives here, one module per aggregate. Functions take an executor so that
//! handlers decide what runs in one transaction.

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
