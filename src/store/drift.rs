//! What a run found when it first looked at its audience, and the ledger changes a repair
//! makes when members went missing from the audience behind the console.

use sqlx::{Any, AnyConnection, Executor};

use crate::db::now_millis;

/// One run's first look at its audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub audience_id: String,
    pub date_created: String,
    /// The audience's contacts (all but archived ones) when the run began.
    pub contacts: i64,
    pub run_id: i64,
}

/// The last check of a destination's audience, and when it was made.
pub async fn find<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Option<(Check, i64)>> {
    let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT audience_id, date_created, contacts, run_id, checked_at FROM audience_checks \
         WHERE destination_id = $1",
    )
    .bind(destination_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(
        |(audience_id, date_created, contacts, run_id, checked_at)| {
            let check = Check {
                audience_id,
                date_created,
                contacts,
                run_id,
            };
            (check, checked_at)
        },
    ))
}

pub async fn put(conn: &mut AnyConnection, destination_id: i64, check: &Check) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM audience_checks WHERE destination_id = $1")
        .bind(destination_id)
        .execute(&mut *conn)
        .await?;
    super::execute(
        conn,
        "INSERT INTO audience_checks (destination_id, audience_id, date_created, contacts, run_id, \
         checked_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            destination_id.into(),
            (&check.audience_id).into(),
            (&check.date_created).into(),
            check.contacts.into(),
            check.run_id.into(),
            now_millis().into(),
        ],
    )
    .await
}

/// Members the destination's runs added to the audience, from `run_id` on.
pub async fn created_since<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    run_id: i64,
) -> sqlx::Result<i64> {
    // PostgreSQL sums BIGINTs as NUMERIC: cast back.
    let created: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(created), 0) AS BIGINT) FROM export_runs \
         WHERE destination_id = $1 AND id >= $2",
    )
    .bind(destination_id)
    .bind(run_id)
    .fetch_one(db)
    .await?;
    Ok(created.unwrap_or(0))
}

/// How many members the ledger holds as being in the audience.
pub async fn ledger_members<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM export_ledger WHERE destination_id = $1 AND permanent_skip IS NULL",
    )
    .bind(destination_id)
    .fetch_one(db)
    .await
}

/// The ledger's members as (subscriber hash in hex, status), but those refused for good.
pub async fn ledger_statuses<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT email_hash, status FROM export_ledger \
         WHERE destination_id = $1 AND permanent_skip IS NULL",
    )
    .bind(destination_id)
    .fetch_all(db)
    .await
}

/// Members gone from the audience: the ledger forgets them, so the run sends them again.
pub async fn forget(
    conn: &mut AnyConnection,
    destination_id: i64,
    hashes: &[String],
) -> sqlx::Result<()> {
    for chunk in hashes.chunks(500) {
        let list = super::placeholders(2, chunk.len());
        let sql = format!(
            "DELETE FROM export_ledger WHERE destination_id = $1 AND email_hash IN ({list})"
        );
        let mut query = sqlx::query(&sql).bind(destination_id);
        for hash in chunk {
            query = query.bind(hash);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Members gone from the audience who had opted out: they are never sent again.
pub async fn keep_out(
    conn: &mut AnyConnection,
    destination_id: i64,
    hashes: &[String],
    reason: &str,
) -> sqlx::Result<()> {
    let now = now_millis();
    for chunk in hashes.chunks(500) {
        let list = super::placeholders(4, chunk.len());
        let sql = format!(
            "UPDATE export_ledger SET permanent_skip = $2, updated_at = $3 \
             WHERE destination_id = $1 AND email_hash IN ({list})"
        );
        let mut query = sqlx::query(&sql)
            .bind(destination_id)
            .bind(reason)
            .bind(now);
        for hash in chunk {
            query = query.bind(hash);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Members whose status changed in the audience: the ledger takes Mailchimp's.
pub async fn set_statuses(
    conn: &mut AnyConnection,
    destination_id: i64,
    changed: &[(String, &'static str)],
) -> sqlx::Result<()> {
    let now = now_millis();
    for (hash, status) in changed {
        sqlx::query(
            "UPDATE export_ledger SET status = $1, updated_at = $2 \
             WHERE destination_id = $3 AND email_hash = $4",
        )
        .bind(*status)
        .bind(now)
        .bind(destination_id)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
