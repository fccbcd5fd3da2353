//! What each destination last put into Mailchimp, per address: the delta's memory, and
//! the record of contacts Mailchimp refused for good.

use sqlx::AnyConnection;

use crate::db::now_millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub customer_id: String,
    pub email: String,
    pub content_hash: String,
    pub status: String,
    pub tags: Vec<String>,
    pub permanent_skip: Option<String>,
}

/// Writes entries (one statement per chunk).
pub async fn upsert(
    conn: &mut AnyConnection,
    destination_id: i64,
    entries: &[(String, Entry)],
) -> sqlx::Result<()> {
    let now = now_millis();
    for chunk in entries.chunks(150) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = i * 7;
                format!(
                    "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $2)",
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO export_ledger (destination_id, email_hash, customer_id, email, content_hash, status, tags, permanent_skip, updated_at) \
             VALUES {values} ON CONFLICT (destination_id, email_hash) DO UPDATE SET customer_id = excluded.customer_id, email = excluded.email, \
             content_hash = excluded.content_hash, status = excluded.status, tags = excluded.tags, \
             permanent_skip = excluded.permanent_skip, updated_at = excluded.updated_at"
        );
        let mut query = sqlx::query(&sql).bind(destination_id).bind(now);
        for (hash, entry) in chunk {
            query = query
                .bind(hash)
                .bind(&entry.customer_id)
                .bind(&entry.email)
                .bind(&entry.content_hash)
                .bind(&entry.status)
                .bind(serde_json::to_string(&entry.tags).unwrap_or_else(|_| "[]".into()))
                .bind(entry.permanent_skip.as_deref());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Sets the tags of some of a destination's entries (by subscriber hash) to one JSON list.
pub async fn set_tags(
    conn: &mut AnyConnection,
    destination_id: i64,
    tags_json: &str,
    hashes: &[String],
) -> sqlx::Result<()> {
    let now = now_millis();
    for chunk in hashes.chunks(500) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE export_ledger SET tags = $1, updated_at = $2 WHERE destination_id = $3 AND email_hash IN ({list})"
        );
        let mut query = sqlx::query(&sql)
            .bind(tags_json)
            .bind(now)
            .bind(destination_id);
        for hash in chunk {
            query = query.bind(hash);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
