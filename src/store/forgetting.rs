//! Forgetting a customer: the profile and every trace of it (segment memberships, static
//! segment lists, per-member results, import rejections, repeats) are deleted, and each
//! destination's ledger keeps only that the address hash was forgotten.

use sqlx::{AnyConnection, AnyPool};

use crate::store::imports::Rejection;

/// Why a forgotten address is never sent again (a ledger entry's `permanent_skip`).
pub const FORGOTTEN: &str = "Forgotten on request";

/// A customer's ledger entries: (destination, subscriber hash, whether it is in Mailchimp
/// as far as the console knows).
pub async fn ledger_entries(
    conn: &mut AnyConnection,
    customer_id: &str,
) -> sqlx::Result<Vec<(i64, String, bool)>> {
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT destination_id, email_hash, permanent_skip FROM export_ledger WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(d, h, skip)| (d, h, skip.is_none()))
        .collect())
}

/// Takes the profile row first, so that of two requests to forget one customer at once
/// only one goes on: false when it is already gone.
pub async fn take_profile(conn: &mut AnyConnection, profile_id: i64) -> sqlx::Result<bool> {
    super::changed_any(
        &mut *conn,
        "DELETE FROM profiles WHERE id = $1",
        &[profile_id.into()],
    )
    .await
}

/// Deletes the traces of a profile taken by [`take_profile`].
pub async fn delete_traces(
    conn: &mut AnyConnection,
    profile_id: i64,
    customer_id: &str,
) -> sqlx::Result<()> {
    // Segments it is a published member of count one fewer.
    sqlx::query(
        "UPDATE segments SET member_count = member_count - 1 WHERE id IN \
         (SELECT m.segment_id FROM segment_members m JOIN segments s ON s.id = m.segment_id \
          WHERE m.profile_id = $1 AND m.generation = s.generation) AND member_count > 0",
    )
    .bind(profile_id)
    .execute(&mut *conn)
    .await?;
    for (sql, by_customer) in [
        ("DELETE FROM segment_members WHERE profile_id = $1", false),
        (
            "DELETE FROM segment_static_ids WHERE customer_id = $1",
            true,
        ),
        ("DELETE FROM export_results WHERE customer_id = $1", true),
        ("DELETE FROM export_repeats WHERE customer_id = $1", true),
    ] {
        let query = sqlx::query(sql);
        let query = if by_customer {
            query.bind(customer_id)
        } else {
            query.bind(profile_id)
        };
        query.execute(&mut *conn).await?;
    }
    // Import reports keep their counts; the customer's rejected rows leave their lists.
    let reports: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, rejections FROM profile_imports WHERE rejections LIKE $1")
            .bind(format!("%{}%", customer_id.replace(['%', '_'], "")))
            .fetch_all(&mut *conn)
            .await?;
    for (id, json) in reports {
        let mut rejections: Vec<Rejection> = serde_json::from_str(&json).unwrap_or_default();
        let before = rejections.len();
        rejections.retain(|r| r.customer_id != customer_id);
        if rejections.len() != before {
            sqlx::query("UPDATE profile_imports SET rejections = $1 WHERE id = $2")
                .bind(serde_json::to_string(&rejections).unwrap_or_else(|_| "[]".into()))
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Keeps only that the address hash was forgotten, in one destination's ledger; `erase`
/// when the member is to be deleted for good in Mailchimp.
pub async fn tombstone(
    conn: &mut AnyConnection,
    destination_id: i64,
    hash: &str,
    erase: bool,
) -> sqlx::Result<()> {
    let now = crate::db::now_millis();
    super::execute(
        &mut *conn,
        "INSERT INTO export_ledger (destination_id, email_hash, customer_id, email, content_hash, \
         status, tags, permanent_skip, updated_at, erase_pending) \
         VALUES ($1, $2, '', '', '', 'forgotten', '[]', $3, $4, $5) \
         ON CONFLICT (destination_id, email_hash) DO UPDATE SET customer_id = '', email = '', \
         content_hash = '', status = 'forgotten', tags = '[]', permanent_skip = $3, \
         updated_at = $4, erase_pending = $5",
        &[
            destination_id.into(),
            hash.into(),
            FORGOTTEN.into(),
            now.into(),
            i64::from(erase).into(),
        ],
    )
    .await
}

/// Forgotten members still to be deleted in this destination's audience.
pub async fn pending(pool: &AnyPool, destination_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT email_hash FROM export_ledger WHERE destination_id = $1 AND erase_pending = 1 \
         ORDER BY email_hash",
    )
    .bind(destination_id)
    .fetch_all(pool)
    .await
}

/// The member was deleted for good in Mailchimp (or was not there): the audience has one
/// contact fewer than the last audience check saw, when it was there.
pub async fn erased(
    pool: &AnyPool,
    destination_id: i64,
    hash: &str,
    was_there: bool,
) -> sqlx::Result<()> {
    let mut tx = crate::db::begin_write(pool).await?;
    sqlx::query(
        "UPDATE export_ledger SET erase_pending = 0 WHERE destination_id = $1 AND email_hash = $2",
    )
    .bind(destination_id)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    if was_there {
        sqlx::query("UPDATE audience_checks SET contacts = contacts - 1 WHERE destination_id = $1")
            .bind(destination_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
