//! Leases on a Mailchimp account's connection slots, shared by every console on one
//! database. A call holds one slot; the console renews the leases of the slots it holds, so
//! a console that dies frees them when they run out. Consoles waiting for a slot are served
//! longest waiting first.

use sqlx::{Any, Executor};

use crate::db::Backend;

/// Makes sure the account has its `slots` rows.
pub async fn ensure<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    slots: usize,
) -> sqlx::Result<()> {
    let values = (0..slots)
        .map(|slot| format!("($1, {slot}, NULL, 0)"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "INSERT INTO account_slots (account_key, slot, holder, expires_at) VALUES {values} \
         ON CONFLICT (account_key, slot) DO NOTHING"
    ))
    .bind(account)
    .execute(db)
    .await
    .map(drop)
}

/// Takes a free slot (or one whose lease ran out) for `holder` until `expires_at`, unless
/// another console has waited longer than `waiting_since`. None when there is none to take.
pub async fn claim<'e>(
    db: impl Executor<'e, Database = Any>,
    backend: Backend,
    account: &str,
    holder: &str,
    waiting_since: i64,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<Option<i32>> {
    // The outer condition repeats the inner one: of two consoles racing for a slot, the
    // second re-checks it after the first's update and takes nothing.
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    sqlx::query_scalar(&format!(
        "UPDATE account_slots SET holder = $1, expires_at = $2 \
         WHERE account_key = $3 AND (holder IS NULL OR expires_at < $4) \
           AND slot = (SELECT slot FROM account_slots \
                       WHERE account_key = $3 AND (holder IS NULL OR expires_at < $4) \
                       ORDER BY slot LIMIT 1 {lock}) \
           AND NOT EXISTS (SELECT 1 FROM account_slot_waiters w \
                           WHERE w.account_key = $3 AND w.holder <> $1 AND w.since < $5 \
                             AND w.expires_at >= $4) \
         RETURNING slot"
    ))
    .bind(holder)
    .bind(expires_at)
    .bind(account)
    .bind(now)
    .bind(waiting_since)
    .fetch_optional(db)
    .await
}

/// Gives a slot back.
pub async fn release<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    slot: i32,
    holder: &str,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE account_slots SET holder = NULL, expires_at = 0 \
         WHERE account_key = $1 AND slot = $2 AND holder = $3",
        &[account.into(), slot.into(), holder.into()],
    )
    .await
}

/// Notes that `holder` waits for one of the account's slots (since `since`).
pub async fn wait<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    holder: &str,
    since: i64,
    expires_at: i64,
) -> sqlx::Result<()> {
    super::execute(db, "INSERT INTO account_slot_waiters (account_key, holder, since, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_key, holder) DO UPDATE SET since = excluded.since, expires_at = excluded.expires_at", &[account.into(), holder.into(), since.into(), expires_at.into()]).await
}

/// `holder`'s wait that began at `since` is over.
pub async fn stop_waiting<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    holder: &str,
    since: i64,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "DELETE FROM account_slot_waiters WHERE account_key = $1 AND holder = $2 AND since = $3",
        &[account.into(), holder.into(), since.into()],
    )
    .await
}

/// Extends the leases of every slot `holder` holds, and of its waits.
pub async fn renew<'e>(
    db: impl Executor<'e, Database = Any> + Copy,
    holder: &str,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE account_slots SET expires_at = $1 WHERE holder = $2")
        .bind(expires_at)
        .bind(holder)
        .execute(db)
        .await?;
    super::execute(
        db,
        "UPDATE account_slot_waiters SET expires_at = $1 WHERE holder = $2",
        &[expires_at.into(), holder.into()],
    )
    .await
}

/// Gives back everything `holder` holds (at shutdown).
pub async fn release_all<'e>(
    db: impl Executor<'e, Database = Any> + Copy,
    holder: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE account_slots SET holder = NULL, expires_at = 0 WHERE holder = $1")
        .bind(holder)
        .execute(db)
        .await?;
    super::execute(
        db,
        "DELETE FROM account_slot_waiters WHERE holder = $1",
        &[holder.into()],
    )
    .await
}

/// Slots of an account held now (for tests and the status page).
pub async fn held<'e>(
    db: impl Executor<'e, Database = Any>,
    account: &str,
    now: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM account_slots WHERE account_key = $1 AND holder IS NOT NULL AND expires_at >= $2",
    )
    .bind(account)
    .bind(now)
    .fetch_one(db)
    .await
}
