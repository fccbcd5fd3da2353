//! Each destination's Mailchimp webhook (its URL's secret, sealed, and Mailchimp's ID for
//! it), the events it delivered, and what those events change in the ledger.

use sqlx::{Any, AnyConnection, Executor};

use crate::db::now_millis;

/// A destination's webhook as the console keeps it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub destination_id: i64,
    /// The secret in the URL, sealed with the console's key.
    pub secret_sealed: String,
    /// Mailchimp's ID, once it took the webhook.
    pub webhook_id: Option<String>,
    pub registered_at: Option<i64>,
    pub created_at: i64,
}

type Row = (i64, String, Option<String>, Option<i64>, i64);

fn registration(
    (destination_id, secret_sealed, webhook_id, registered_at, created_at): Row,
) -> Registration {
    Registration {
        destination_id,
        secret_sealed,
        webhook_id,
        registered_at,
        created_at,
    }
}

pub async fn find<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Option<Registration>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT destination_id, secret_sealed, webhook_id, registered_at, created_at \
         FROM mailchimp_webhooks WHERE destination_id = $1",
    )
    .bind(destination_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(registration))
}

/// Every destination's webhook.
pub async fn all<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Registration>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT destination_id, secret_sealed, webhook_id, registered_at, created_at \
         FROM mailchimp_webhooks ORDER BY destination_id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(registration).collect())
}

/// Keeps a new secret for the destination unless it already has one (another console may
/// have made it first); the one kept is read back.
pub async fn put_secret<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    secret_sealed: &str,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "INSERT INTO mailchimp_webhooks (destination_id, secret_sealed, created_at) \
         VALUES ($1, $2, $3) ON CONFLICT (destination_id) DO NOTHING",
        &[
            destination_id.into(),
            secret_sealed.into(),
            now_millis().into(),
        ],
    )
    .await
}

/// Notes Mailchimp's ID of the destination's webhook, as of now.
pub async fn set_registered<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    webhook_id: &str,
) -> sqlx::Result<()> {
    super::execute(db, "UPDATE mailchimp_webhooks SET webhook_id = $1, registered_at = $2 WHERE destination_id = $3", &[webhook_id.into(), now_millis().into(), destination_id.into()]).await
}

/// Mailchimp no longer has the destination's webhook.
pub async fn clear_registered<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<()> {
    super::execute(db, "UPDATE mailchimp_webhooks SET webhook_id = NULL, registered_at = NULL WHERE destination_id = $1", &[destination_id.into()]).await
}

/// One event a webhook delivered (the address only as its subscriber hash).
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub email_hash: &'a str,
    pub fired_at: &'a str,
    /// Whether it changed a ledger entry.
    pub applied: bool,
}

pub async fn record(
    conn: &mut AnyConnection,
    destination_id: i64,
    event: &Event<'_>,
) -> sqlx::Result<()> {
    super::execute(conn, "INSERT INTO webhook_events (destination_id, kind, email_hash, fired_at, received_at, applied) \
         VALUES ($1, $2, $3, $4, $5, $6)", &[destination_id.into(), event.kind.into(), event.email_hash.into(), event.fired_at.into(), now_millis().into(), i64::from(event.applied).into()]).await
}

/// The events one destination received, by kind: (kind, how many, the first one's arrival).
pub async fn counts<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as(
        "SELECT kind, COUNT(*), MIN(received_at) FROM webhook_events WHERE destination_id = $1 \
         GROUP BY kind ORDER BY kind",
    )
    .bind(destination_id)
    .fetch_all(db)
    .await
}

/// The member opted out or bounced, as Mailchimp says: the ledger keeps its status, so the
/// next run sends it with that status, and keeps it out for good should it leave the
/// audience. True when the destination's ledger had the member.
pub async fn set_status(
    conn: &mut AnyConnection,
    destination_id: i64,
    email_hash: &str,
    status: &str,
) -> sqlx::Result<bool> {
    super::changed_any(
        conn,
        "UPDATE export_ledger SET status = $1, updated_at = $2 \
         WHERE destination_id = $3 AND email_hash = $4",
        &[
            status.into(),
            now_millis().into(),
            destination_id.into(),
            email_hash.into(),
        ],
    )
    .await
}

/// The contact moved to another address in Mailchimp: the old address is kept out for good
/// (`reason`), so that no run creates it again as a contact of its own. True when the
/// destination's ledger had it.
pub async fn keep_out_old_address(
    conn: &mut AnyConnection,
    destination_id: i64,
    email_hash: &str,
    reason: &str,
) -> sqlx::Result<bool> {
    super::changed_any(
        conn,
        "UPDATE export_ledger SET permanent_skip = $1, content_hash = '', updated_at = $2 \
         WHERE destination_id = $3 AND email_hash = $4 AND permanent_skip IS NULL",
        &[
            reason.into(),
            now_millis().into(),
            destination_id.into(),
            email_hash.into(),
        ],
    )
    .await
}
