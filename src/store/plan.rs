//! What an export reads of profiles and segment membership.

use sqlx::AnyPool;

use crate::db::{Backend, Db};

/// The profiles with row IDs in `(after, upto]` that are in any of the segments (a
/// comma-separated list of segment IDs), one row each: row ID, customer ID, attributes,
/// and their segments comma-separated (one row per profile keeps what the driver carries
/// to a minimum).
pub async fn rows(
    db: &Db,
    segment_list: &str,
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<(i64, String, String, String)>> {
    let segments = match db.backend() {
        Backend::Sqlite => "group_concat(m.segment_id)",
        Backend::Postgres => "string_agg(m.segment_id::text, ',')",
    };
    let sql = format!(
        "SELECT p.id, p.customer_id, p.attributes, g.segments FROM \
         (SELECT m.profile_id, {segments} AS segments FROM segment_members m \
          JOIN segments s ON s.id = m.segment_id AND s.generation = m.generation \
          WHERE m.segment_id IN ({segment_list}) AND m.profile_id > $1 AND m.profile_id <= $2 \
          GROUP BY m.profile_id) g \
         JOIN profiles p ON p.id = g.profile_id ORDER BY p.id"
    );
    sqlx::query_as(&sql)
        .bind(after)
        .bind(upto)
        .fetch_all(db.pool())
        .await
}

/// Like [`rows`], for the listed profiles (a comma-separated list of row IDs). Each
/// segment's published members are probed by their key (segment, generation, profile):
/// SQLite takes the segments first when told so by `CROSS JOIN`.
pub async fn rows_of_profiles(
    db: &Db,
    segment_list: &str,
    id_list: &str,
) -> sqlx::Result<Vec<(i64, String, String, String)>> {
    if segment_list.is_empty() {
        return Ok(Vec::new());
    }
    let segments = match db.backend() {
        Backend::Sqlite => "group_concat(m.segment_id)",
        Backend::Postgres => "string_agg(m.segment_id::text, ',')",
    };
    let sql = format!(
        "SELECT p.id, p.customer_id, p.attributes, g.segments FROM \
         (SELECT m.profile_id, {segments} AS segments FROM segments s CROSS JOIN segment_members m \
          WHERE s.id IN ({segment_list}) AND m.segment_id = s.id AND m.generation = s.generation \
          AND m.profile_id IN ({id_list}) GROUP BY m.profile_id) g \
         JOIN profiles p ON p.id = g.profile_id ORDER BY p.id"
    );
    sqlx::query_as(&sql).fetch_all(db.pool()).await
}

/// The highest profile row ID in any of the segments (0 when they are empty).
pub async fn last_member(pool: &AnyPool, segment_list: &str) -> sqlx::Result<i64> {
    let last: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT MAX(m.profile_id) FROM segment_members m JOIN segments s \
         ON s.id = m.segment_id AND s.generation = m.generation WHERE m.segment_id IN ({segment_list})"
    ))
    .fetch_one(pool)
    .await?;
    Ok(last.unwrap_or(0))
}

/// Customer IDs of profiles by row ID (a comma-separated list of row IDs).
pub async fn customer_ids(pool: &AnyPool, id_list: &str) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(&format!(
        "SELECT id, customer_id FROM profiles WHERE id IN ({id_list})"
    ))
    .fetch_all(pool)
    .await
}
