//! The audit log: who did what to which destination, and when.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::now_millis;

#[derive(Debug, Clone)]
pub struct Entry {
    pub at: i64,
    pub user_email: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

/// Who acted (id and address, kept even if the account goes).
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub user_id: i64,
    pub email: &'a str,
}

pub async fn record<'e>(
    db: impl Executor<'e, Database = Any>,
    actor: &Actor<'_>,
    action: &str,
    destination_id: Option<i64>,
    subject: &str,
    details: &str,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "INSERT INTO audit_log (at, user_id, user_email, action, destination_id, subject, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            now_millis().into(),
            actor.user_id.into(),
            actor.email.into(),
            action.into(),
            destination_id.into(),
            subject.into(),
            details.into(),
        ],
    )
    .await
}

pub async fn recent<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query(
        "SELECT at, user_email, action, subject, details FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .try_map(|row: AnyRow| {
        Ok(Entry {
            at: row.try_get("at")?,
            user_email: row.try_get("user_email")?,
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
            details: row.try_get("details")?,
        })
    })
    .fetch_all(db)
    .await
}
