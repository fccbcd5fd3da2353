//! Password-check counts per throttle key in fixed windows, and the client addresses each
//! account signed in from. A check is counted *before* the password is verified, in the
//! same statement that reads the count, so parallel attempts can never verify more
//! passwords than the limit allows.

use sqlx::{Any, Executor};

/// Counts one more password check for `key` in the window that began at most `window_ms`
/// ago (a new window begins when the last one has ended) and returns the count so far
/// with the window's start (ms since epoch).
pub async fn count_attempt<'e>(
    db: impl Executor<'e, Database = Any>,
    key: &str,
    now: i64,
    window_ms: i64,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "INSERT INTO sign_in_failures (throttle_key, failures, window_started_at) \
         VALUES ($1, 1, $2) \
         ON CONFLICT (throttle_key) DO UPDATE SET \
           failures = CASE WHEN sign_in_failures.window_started_at <= $3 \
                           THEN 1 ELSE sign_in_failures.failures + 1 END, \
           window_started_at = CASE WHEN sign_in_failures.window_started_at <= $3 \
                           THEN $2 ELSE sign_in_failures.window_started_at END \
         RETURNING failures, window_started_at",
    )
    .bind(key)
    .bind(now)
    .bind(now - window_ms)
    .fetch_one(db)
    .await
}

/// Gives back one counted check (it was the right password).
pub async fn refund<'e>(db: impl Executor<'e, Database = Any>, key: &str) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE sign_in_failures SET failures = failures - 1 \
         WHERE throttle_key = $1 AND failures > 0",
        &[key.into()],
    )
    .await
}

pub async fn clear<'e>(db: impl Executor<'e, Database = Any>, key: &str) -> sqlx::Result<()> {
    super::execute(
        db,
        "DELETE FROM sign_in_failures WHERE throttle_key = $1",
        &[key.into()],
    )
    .await
}

/// Forgets windows that ended before `cutoff`.
pub async fn purge_before<'e>(
    db: impl Executor<'e, Database = Any>,
    cutoff: i64,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "DELETE FROM sign_in_failures WHERE window_started_at < $1",
        &[cutoff.into()],
    )
    .await
}

/// Whether `account` signed in from `address` since `since`.
pub async fn is_known_address<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    address: &str,
    since: i64,
) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sign_in_known_addresses \
         WHERE account = $1 AND address = $2 AND last_seen_at >= $3",
    )
    .bind(account)
    .bind(address)
    .bind(since)
    .fetch_optional(db)
    .await?;
    Ok(found.is_some())
}

pub async fn remember_address<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    address: &str,
    now: i64,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "INSERT INTO sign_in_known_addresses (account, address, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account, address) DO UPDATE SET last_seen_at = $3",
        &[account.into(), address.into(), now.into()],
    )
    .await
}
