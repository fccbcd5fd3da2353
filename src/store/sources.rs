//! Sources (databases and CSV files at a URL), their pulls, and which profiles each
//! source provided.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::now_millis;
use crate::store::Record;
use crate::store::imports::RowCounts;

/// A source as stored; its URL and credentials stay sealed here.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url_sealed: String,
    pub url_shown: String,
    pub credentials_sealed: Option<String>,
    pub query: Option<String>,
    pub id_column: String,
    pub changed_at_column: Option<String>,
    /// JSON object: field name -> type.
    pub field_types: String,
    pub fields: Vec<String>,
    pub missing_profiles: String,
    pub full_every: i64,
    pub every_minutes: Option<i64>,
    pub watermark: Option<String>,
    pub incrementals: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a new or edited source stores.
pub struct SourceWrite<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub url_sealed: &'a str,
    pub url_shown: &'a str,
    pub credentials_sealed: Option<&'a str>,
    pub query: Option<&'a str>,
    pub id_column: &'a str,
    pub changed_at_column: Option<&'a str>,
    pub field_types: &'a str,
    pub fields: &'a [String],
    pub missing_profiles: &'a str,
    pub full_every: i64,
    pub every_minutes: Option<i64>,
}

const COLUMNS: &str = "id, name, kind, url_sealed, url_shown, credentials_sealed, query, id_column, \
    changed_at_column, field_types, fields, missing_profiles, full_every, every_minutes, watermark, \
    incrementals, etag, last_modified, created_at, updated_at";

impl Record for SourceRow {
    const TABLE: &'static str = "sources";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let fields: String = row.try_get("fields")?;
        Ok(SourceRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            url_sealed: row.try_get("url_sealed")?,
            url_shown: row.try_get("url_shown")?,
            credentials_sealed: row.try_get("credentials_sealed")?,
            query: row.try_get("query")?,
            id_column: row.try_get("id_column")?,
            changed_at_column: row.try_get("changed_at_column")?,
            field_types: row.try_get("field_types")?,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            missing_profiles: row.try_get("missing_profiles")?,
            full_every: row.try_get("full_every")?,
            every_minutes: row.try_get("every_minutes")?,
            watermark: row.try_get("watermark")?,
            incrementals: row.try_get("incrementals")?,
            etag: row.try_get("etag")?,
            last_modified: row.try_get("last_modified")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    source: &SourceWrite<'_>,
    by: Option<i64>,
) -> sqlx::Result<i64> {
    let now = now_millis();
    let query = sqlx::query(
        "INSERT INTO sources (name, url_sealed, url_shown, credentials_sealed, query, id_column, \
         changed_at_column, field_types, fields, missing_profiles, full_every, every_minutes, kind, created_by, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
         RETURNING id",
    );
    bind_settings(query, source)
        .bind(source.kind)
        .bind(by)
        .bind(now)
        .fetch_one(db)
        .await?
        .try_get("id")
}

/// Binds what a source's owner sets (all but its kind) to `$1` … `$12`: name, sealed and
/// shown URL, sealed credentials, query, id column, changed-at column, field types,
/// fields, missing profiles, full every, every minutes.
fn bind_settings<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    source: &SourceWrite<'q>,
) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(source.name)
        .bind(source.url_sealed)
        .bind(source.url_shown)
        .bind(source.credentials_sealed)
        .bind(source.query)
        .bind(source.id_column)
        .bind(source.changed_at_column)
        .bind(source.field_types)
        .bind(serde_json::to_string(source.fields).unwrap_or_else(|_| "[]".into()))
        .bind(source.missing_profiles)
        .bind(source.full_every)
        .bind(source.every_minutes)
}

/// Saves an edited source; what it read changes, so the next pull is a full one.
pub async fn update<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    source: &SourceWrite<'_>,
) -> sqlx::Result<bool> {
    let query = sqlx::query(
        "UPDATE sources SET name = $1, url_sealed = $2, url_shown = $3, credentials_sealed = $4, query = $5, \
         id_column = $6, changed_at_column = $7, field_types = $8, fields = $9, missing_profiles = $10, \
         full_every = $11, every_minutes = $12, updated_at = $13, watermark = NULL, etag = NULL, \
         last_modified = NULL WHERE id = $14",
    );
    let done = bind_settings(query, source)
        .bind(now_millis())
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<SourceRow>> {
    super::select(db, "ORDER BY name", &[]).await
}

/// Deletes a source with its pulls and its links to profiles (the profiles stay).
pub async fn delete(conn: &mut AnyConnection, id: i64) -> sqlx::Result<bool> {
    for sql in [
        "DELETE FROM profile_sources WHERE source_id = $1",
        "DELETE FROM source_pulls WHERE source_id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    super::changed_any(
        &mut *conn,
        "DELETE FROM sources WHERE id = $1",
        &[id.into()],
    )
    .await
}

/// What a pull leaves for the next one: the watermark, the count of incremental pulls
/// since the last full one, and a CSV file's validators.
pub struct AfterPull<'a> {
    pub watermark: Option<&'a str>,
    pub incrementals: i64,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

pub async fn set_after_pull<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    after: &AfterPull<'_>,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE sources SET watermark = COALESCE($1, watermark), incrementals = $2, \
         etag = $3, last_modified = $4 WHERE id = $5",
        &[
            after.watermark.into(),
            after.incrementals.into(),
            after.etag.into(),
            after.last_modified.into(),
            id.into(),
        ],
    )
    .await
}

/// Records that these customers' profiles come from the source; returns their row IDs.
pub async fn link(
    conn: &mut AnyConnection,
    source_id: i64,
    customer_ids: &[&str],
) -> sqlx::Result<Vec<i64>> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM profiles WHERE customer_id IN ({})",
        super::placeholders(1, customer_ids.len())
    );
    let mut query = sqlx::query_scalar::<_, i64>(&sql);
    for id in customer_ids {
        query = query.bind(*id);
    }
    let ids = query.fetch_all(&mut *conn).await?;
    if !ids.is_empty() {
        let values = (0..ids.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO profile_sources (source_id, profile_id) VALUES {values} \
             ON CONFLICT (source_id, profile_id) DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(source_id);
        for id in &ids {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(ids)
}

/// A page of the source's profiles after `after` (row IDs ascending), each with how many
/// other sources provide it too.
pub async fn linked_page(
    conn: &mut AnyConnection,
    source_id: i64,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT s.profile_id, (SELECT COUNT(*) FROM profile_sources o \
           WHERE o.profile_id = s.profile_id AND o.source_id <> s.source_id) \
         FROM profile_sources s WHERE s.source_id = $1 AND s.profile_id > $2 \
         ORDER BY s.profile_id LIMIT $3",
    )
    .bind(source_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Whether any profile comes from the source.
pub async fn has_profiles(conn: &mut AnyConnection, source_id: i64) -> sqlx::Result<bool> {
    let any: Option<i64> =
        sqlx::query_scalar("SELECT profile_id FROM profile_sources WHERE source_id = $1 LIMIT 1")
            .bind(source_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(any.is_some())
}

/// How many profiles come from the source.
pub async fn profile_count<'e>(
    db: impl Executor<'e, Database = Any>,
    source_id: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM profile_sources WHERE source_id = $1")
        .bind(source_id)
        .fetch_one(db)
        .await
}

/// The source no longer provides this profile, which another source still does: its
/// fields leave the profile, the rest stays.
pub async fn unlink(
    conn: &mut AnyConnection,
    source_id: i64,
    profile_id: i64,
    fields: &[String],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM profile_sources WHERE source_id = $1 AND profile_id = $2")
        .bind(source_id)
        .bind(profile_id)
        .execute(&mut *conn)
        .await?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT attributes FROM profiles WHERE id = $1")
            .bind(profile_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(stored) = stored {
        let clear = fields
            .iter()
            .map(|f| (f.clone(), serde_json::Value::Null))
            .collect();
        sqlx::query("UPDATE profiles SET attributes = $1, updated_at = $2 WHERE id = $3")
            .bind(super::profiles::merged(&stored, &clear))
            .bind(now_millis())
            .bind(profile_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A pull of a source, running or done.
#[derive(Debug, Clone)]
pub struct PullRow {
    pub id: i64,
    pub source_id: i64,
    pub mode: String,
    pub trigger_kind: String,
    pub status: String,
    pub rows_read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub rejected: i64,
    pub deleted: i64,
    pub error: Option<String>,
    pub import_id: Option<i64>,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub finished_at: Option<i64>,
}

const PULL_COLUMNS: &str = "id, source_id, mode, trigger_kind, status, rows_read, created, updated, \
    unchanged, rejected, deleted, error, import_id, started_at, heartbeat_at, finished_at";

impl PullRow {
    /// What the pull did with the rows it read.
    pub fn counts(&self) -> RowCounts {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        RowCounts {
            rows_read: count(self.rows_read),
            created: count(self.created),
            updated: count(self.updated),
            unchanged: count(self.unchanged),
            rejected: count(self.rejected),
            deleted: count(self.deleted),
        }
    }
}

impl Record for PullRow {
    const TABLE: &'static str = "source_pulls";
    const COLUMNS: &'static str = PULL_COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        Ok(PullRow {
            id: row.try_get("id")?,
            source_id: row.try_get("source_id")?,
            mode: row.try_get("mode")?,
            trigger_kind: row.try_get("trigger_kind")?,
            status: row.try_get("status")?,
            rows_read: row.try_get("rows_read")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            unchanged: row.try_get("unchanged")?,
            rejected: row.try_get("rejected")?,
            deleted: row.try_get("deleted")?,
            error: row.try_get("error")?,
            import_id: row.try_get("import_id")?,
            started_at: row.try_get("started_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
}

/// Claims a pull of the source: its new row's ID, or Err with the running pull's ID when
/// one is under way (the unique index on running pulls decides between consoles).
pub async fn start_pull(
    pool: &sqlx::AnyPool,
    source_id: i64,
    mode: &str,
    trigger: &str,
    by: Option<i64>,
    stale_ms: i64,
) -> sqlx::Result<Result<i64, i64>> {
    let now = now_millis();
    sqlx::query(
        "UPDATE source_pulls SET status = 'interrupted', finished_at = $1, error = \
         'The console stopped before this pull ended; nothing of it was written.' \
         WHERE source_id = $2 AND status = 'running' AND heartbeat_at < $3",
    )
    .bind(now)
    .bind(source_id)
    .bind(now - stale_ms)
    .execute(pool)
    .await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO source_pulls (source_id, mode, trigger_kind, status, requested_by, started_at, heartbeat_at) \
         VALUES ($1, $2, $3, 'running', $4, $5, $5) RETURNING id",
    )
    .bind(source_id)
    .bind(mode)
    .bind(trigger)
    .bind(by)
    .bind(now)
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(id) => Ok(Ok(id)),
        Err(err) if super::is_unique_violation(&err) => {
            let running: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM source_pulls WHERE source_id = $1 AND status = 'running'",
            )
            .bind(source_id)
            .fetch_optional(pool)
            .await?;
            Ok(Err(running.unwrap_or_default()))
        }
        Err(err) => Err(err),
    }
}

/// Counts so far, as a pull reads.
pub use super::imports::RowCounts as PullCounts;

pub async fn progress<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    counts: &PullCounts,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE source_pulls SET rows_read = $1, created = $2, updated = $3, unchanged = $4, \
         rejected = $5, deleted = $6, heartbeat_at = $7 WHERE id = $8 AND status = 'running'",
        &[
            (counts.rows_read as i64).into(),
            (counts.created as i64).into(),
            (counts.updated as i64).into(),
            (counts.unchanged as i64).into(),
            (counts.rejected as i64).into(),
            (counts.deleted as i64).into(),
            now_millis().into(),
            id.into(),
        ],
    )
    .await
}

pub async fn finish_pull<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    status: &str,
    counts: &PullCounts,
    error: Option<&str>,
    import_id: Option<i64>,
) -> sqlx::Result<()> {
    let now = now_millis();
    super::execute(db, "UPDATE source_pulls SET status = $1, rows_read = $2, created = $3, updated = $4, unchanged = $5, \
         rejected = $6, deleted = $7, error = $8, import_id = $9, heartbeat_at = $10, finished_at = $10 \
         WHERE id = $11", &[status.into(), (counts.rows_read as i64).into(), (counts.created as i64).into(), (counts.updated as i64).into(), (counts.unchanged as i64).into(), (counts.rejected as i64).into(), (counts.deleted as i64).into(), error.into(), import_id.into(), now.into(), id.into()]).await
}

pub async fn find_pull<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<PullRow>> {
    PullRow::find(db, id).await
}

/// The source's latest pulls, newest first.
pub async fn pulls_of<'e>(
    db: impl Executor<'e, Database = Any>,
    source_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<PullRow>> {
    super::select(
        db,
        "WHERE source_id = $1 ORDER BY id DESC LIMIT $2",
        &[source_id.into(), limit.into()],
    )
    .await
}

/// Each source's latest pull.
pub async fn latest_pulls<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<PullRow>> {
    super::select(
        db,
        "WHERE id IN (SELECT MAX(id) FROM source_pulls GROUP BY source_id)",
        &[],
    )
    .await
}

/// When each source set to be pulled on its own last started a pull: (source, started).
pub async fn last_started<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<(i64, Option<i64>)>> {
    sqlx::query_as(
        "SELECT s.id, (SELECT MAX(p.started_at) FROM source_pulls p WHERE p.source_id = s.id) \
         FROM sources s WHERE s.every_minutes IS NOT NULL",
    )
    .fetch_all(db)
    .await
}
