//! What each destination last put into Mailchimp, per address: the delta's memory, and
//! the record of contacts Mailchimp refused for good.

use sqlx::{Any, AnyConnection, Executor};

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
        let list = super::placeholders(4, chunk.len());
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

/// Up to `page` entries of a destination's ledger after the address hash `after`, packed
/// into one text (fields split by the unit separator, entries by the record separator,
/// neither of which hashes, statuses, titles or JSON text contain), with the last hash.
/// Moving a million small rows one by one through the driver costs seconds; moving a
/// hundred large ones does not.
pub async fn packed_page(
    pool: &sqlx::AnyPool,
    backend: crate::db::Backend,
    destination_id: i64,
    after: &str,
    page: i64,
) -> sqlx::Result<(Option<String>, Option<String>)> {
    let (pack, unit, record) = match backend {
        crate::db::Backend::Sqlite => ("group_concat", "char(31)", "char(30)"),
        crate::db::Backend::Postgres => ("string_agg", "chr(31)", "chr(30)"),
    };
    let sql = format!(
        "SELECT {pack}(email_hash || {unit} || content_hash || {unit} || status || {unit} \
         || COALESCE(permanent_skip, '') || {unit} || tags, {record}), MAX(email_hash) FROM \
         (SELECT email_hash, content_hash, status, permanent_skip, tags FROM export_ledger \
          WHERE destination_id = $1 AND email_hash > $2 ORDER BY email_hash LIMIT {page}) page"
    );
    sqlx::query_as(&sql)
        .bind(destination_id)
        .bind(after)
        .fetch_one(pool)
        .await
}

/// A member this destination put into Mailchimp (and Mailchimp did not refuse for good).
#[derive(Debug, Clone)]
pub struct Managed {
    pub email_hash: String,
    pub email: String,
    /// Tag names as JSON.
    pub tags: String,
}

/// How many members the destination manages in Mailchimp.
pub async fn count_managed(pool: &sqlx::AnyPool, destination_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM export_ledger WHERE destination_id = $1 \
         AND permanent_skip IS NULL AND content_hash <> ''",
    )
    .bind(destination_id)
    .fetch_one(pool)
    .await
}

/// Up to `limit` managed members after the address hash `after`, in hash order.
pub async fn managed_page(
    pool: &sqlx::AnyPool,
    destination_id: i64,
    after: &str,
    limit: i64,
) -> sqlx::Result<Vec<Managed>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT email_hash, email, tags FROM export_ledger WHERE destination_id = $1 \
         AND permanent_skip IS NULL AND content_hash <> '' AND email_hash > $2 \
         ORDER BY email_hash LIMIT $3",
    )
    .bind(destination_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(email_hash, email, tags)| Managed {
            email_hash,
            email,
            tags,
        })
        .collect())
}

/// Up to `limit` addresses of the ledger (every entry) after the address hash `after`,
/// in hash order: (hash, address).
pub async fn emails_page(
    pool: &sqlx::AnyPool,
    destination_id: i64,
    after: &str,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT email_hash, email FROM export_ledger WHERE destination_id = $1 \
         AND email_hash > $2 ORDER BY email_hash LIMIT $3",
    )
    .bind(destination_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Every entry of a destination's ledger (members Mailchimp took, and those it refused).
pub async fn count_entries(pool: &sqlx::AnyPool, destination_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM export_ledger WHERE destination_id = $1")
        .bind(destination_id)
        .fetch_one(pool)
        .await
}

/// A ledger row as a re-export of what changed loads it.
#[derive(Debug, Clone)]
pub struct Row {
    pub email_hash: String,
    pub customer_id: String,
    pub email: String,
    pub content_hash: String,
    pub status: String,
    pub permanent_skip: Option<String>,
    pub tags: String,
}

/// Which column picks a destination's ledger rows.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Customer,
    Address,
}

/// A destination's ledger rows whose customer ID or address hash is one of `keys`.
pub async fn rows_of(
    pool: &sqlx::AnyPool,
    destination_id: i64,
    key: Key,
    keys: &[String],
) -> sqlx::Result<Vec<Row>> {
    let column = match key {
        Key::Customer => "customer_id",
        Key::Address => "email_hash",
    };
    let mut found = Vec::new();
    for chunk in keys.chunks(500) {
        let list = super::placeholders(2, chunk.len());
        let sql = format!(
            "SELECT email_hash, customer_id, email, content_hash, status, permanent_skip, tags \
             FROM export_ledger WHERE destination_id = $1 AND {column} IN ({list})"
        );
        let mut query = sqlx::query_as::<
            _,
            (
                String,
                String,
                String,
                String,
                String,
                Option<String>,
                String,
            ),
        >(&sql)
        .bind(destination_id);
        for key in chunk {
            query = query.bind(key);
        }
        found.extend(query.fetch_all(pool).await?.into_iter().map(
            |(email_hash, customer_id, email, content_hash, status, permanent_skip, tags)| Row {
                email_hash,
                customer_id,
                email,
                content_hash,
                status,
                permanent_skip,
                tags,
            },
        ));
    }
    Ok(found)
}

/// Up to `limit` customers the destination's ledger holds (not refused for good), in the
/// ledger's order: what the live bench changes.
pub async fn customers<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT customer_id FROM export_ledger \
         WHERE destination_id = $1 AND permanent_skip IS NULL ORDER BY email_hash LIMIT $2",
    )
    .bind(destination_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The customers whose ledger entry was written after `since` (epoch ms), with when.
pub async fn written_since<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    since: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT customer_id, updated_at FROM export_ledger \
         WHERE destination_id = $1 AND updated_at > $2",
    )
    .bind(destination_id)
    .bind(since)
    .fetch_all(db)
    .await
}
