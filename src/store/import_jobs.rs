//! Imports running in the background: what the import page follows while a file is read,
//! and what it points at when the import is done.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::now_millis;
use crate::store::Record;

/// Where an import job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Importing,
    /// The import ended; every segment is being refreshed, as the person asked.
    Refreshing,
    Done,
    /// The console stopped (or failed) before the job ended: nothing of the file was
    /// imported unless `import_id` says otherwise.
    Interrupted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Importing => "importing",
            Phase::Refreshing => "refreshing",
            Phase::Done => "done",
            Phase::Interrupted => "interrupted",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "importing" => Phase::Importing,
            "refreshing" => Phase::Refreshing,
            "done" => Phase::Done,
            _ => Phase::Interrupted,
        }
    }

    pub fn is_running(self) -> bool {
        matches!(self, Phase::Importing | Phase::Refreshing)
    }
}

#[derive(Debug, Clone)]
pub struct ImportJob {
    pub id: i64,
    pub file_name: String,
    pub bytes_total: i64,
    pub bytes_read: i64,
    pub rows_read: i64,
    pub phase: Phase,
    pub refresh_segments: bool,
    pub message: Option<String>,
    pub import_id: Option<i64>,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

const COLUMNS: &str = "id, file_name, bytes_total, bytes_read, rows_read, phase, refresh_segments, \
                       message, import_id, started_at, heartbeat_at";

impl Record for ImportJob {
    const TABLE: &'static str = "import_jobs";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let phase: String = row.try_get("phase")?;
        Ok(ImportJob {
            id: row.try_get("id")?,
            file_name: row.try_get("file_name")?,
            bytes_total: row.try_get("bytes_total")?,
            bytes_read: row.try_get("bytes_read")?,
            rows_read: row.try_get("rows_read")?,
            phase: Phase::parse(&phase),
            refresh_segments: row.try_get::<i64, _>("refresh_segments")? != 0,
            message: row.try_get("message")?,
            import_id: row.try_get("import_id")?,
            started_at: row.try_get("started_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
        })
    }
}

pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    file_name: &str,
    bytes_total: i64,
    refresh_segments: bool,
    imported_by: Option<i64>,
) -> sqlx::Result<i64> {
    let now = now_millis();
    sqlx::query_scalar(
        "INSERT INTO import_jobs (file_name, bytes_total, phase, refresh_segments, started_at, \
         heartbeat_at, imported_by) VALUES ($1, $2, 'importing', $3, $4, $4, $5) RETURNING id",
    )
    .bind(file_name)
    .bind(bytes_total)
    .bind(i64::from(refresh_segments))
    .bind(now)
    .bind(imported_by)
    .fetch_one(db)
    .await
}

/// The job that made import `import_id`, if it ran in the background.
pub async fn of_import<'e>(
    db: impl Executor<'e, Database = Any>,
    import_id: i64,
) -> sqlx::Result<Option<ImportJob>> {
    super::select_one(db, "WHERE import_id = $1", &[import_id.into()]).await
}

/// Notes how far the job got; also its heartbeat.
pub async fn progress<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    rows_read: i64,
    bytes_read: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE import_jobs SET rows_read = $1, bytes_read = $2, heartbeat_at = $3 \
         WHERE id = $4 AND phase IN ('importing', 'refreshing')",
    )
    .bind(rows_read)
    .bind(bytes_read)
    .bind(now_millis())
    .bind(id)
    .execute(db)
    .await
    .map(drop)
}

/// Moves the job on: to refreshing once the import is recorded, or to done or interrupted
/// with what happened.
pub async fn set_phase<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    phase: Phase,
    import_id: Option<i64>,
    message: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE import_jobs SET phase = $1, import_id = COALESCE($2, import_id), \
         message = COALESCE($3, message), heartbeat_at = $4 WHERE id = $5",
    )
    .bind(phase.as_str())
    .bind(import_id)
    .bind(message)
    .bind(now_millis())
    .bind(id)
    .execute(db)
    .await
    .map(drop)
}

/// Jobs whose console stopped beating more than `stale_ms` ago end as interrupted (their
/// import's transaction was rolled back with the process); returns how many.
pub async fn interrupt_stale<'e>(
    db: impl Executor<'e, Database = Any>,
    stale_ms: i64,
) -> sqlx::Result<u64> {
    sqlx::query(
        "UPDATE import_jobs SET phase = 'interrupted', message = CASE WHEN import_id IS NULL \
         THEN 'The console stopped before this import ended; nothing of the file was imported. Upload it again.' \
         ELSE 'The console stopped while the segments were refreshed; the import itself is complete. Refresh the segments again.' END \
         WHERE phase IN ('importing', 'refreshing') AND heartbeat_at < $1",
    )
    .bind(now_millis() - stale_ms)
    .execute(db)
    .await
    .map(|done| done.rows_affected())
}
