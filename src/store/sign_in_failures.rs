//! Failed sign-in counts per account and client address, for throttling.

use sqlx::{Any, Executor};

/// When sign-in for this key is paused until (ms since epoch), if it is.
pub async fn locked_until<'e>(
    db: impl Executor<'e, Database = Any>,
    key: &str,
    now: i64,
) -> sqlx::Result<Option<i64>> {
    let until: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT locked_until FROM sign_in_failures WHERE throttle_key = $1 AND locked_until > $2",
    )
    .bind(key)
    .bind(now)
    .fetch_optional(db)
    .await?;
    Ok(until.flatten())
}

/// Counts one more failure within a window of `window_ms` and returns the count so far.
pub async fn record_failure<'e>(
    db: impl Executor<'e, Database = Any>,
    key: &str,
    now: i64,
    window_ms: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO sign_in_failures (throttle_key, failures, window_started_at) \
         VALUES ($1, 1, $2) \
         ON CONFLICT (throttle_key) DO UPDATE SET \
           failures = CASE WHEN sign_in_failures.window_started_at < $3 \
                           THEN 1 ELSE sign_in_failures.failures + 1 END, \
           window_started_at = CASE WHEN sign_in_failures.window_started_at < $3 \
                           THEN $2 ELSE sign_in_failures.window_started_at END, \
           locked_until = NULL \
         RETURNING failures",
    )
    .bind(key)
    .bind(now)
    .bind(now - window_ms)
    .fetch_one(db)
    .await
}

pub async fn lock<'e>(
    db: impl Executor<'e, Database = Any>,
    key: &str,
    until: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sign_in_failures SET locked_until = $1 WHERE throttle_key = $2")
        .bind(until)
        .bind(key)
        .execute(db)
        .await
        .map(drop)
}

pub async fn clear<'e>(db: impl Executor<'e, Database = Any>, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sign_in_failures WHERE throttle_key = $1")
        .bind(key)
        .execute(db)
        .await
        .map(drop)
}
