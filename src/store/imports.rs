//! Reports of profile imports, kept so that a person can come back to what was rejected.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::store::Record;

/// One rejected row: where it was, whose it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub line: u64,
    pub customer_id: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ImportRecord {
    pub id: i64,
    pub file_name: String,
    pub succeeded: bool,
    pub error: Option<String>,
    pub counts: RowCounts,
    pub rejections: Vec<Rejection>,
    pub started_at: i64,
    pub finished_at: i64,
}

/// What an import or a pull did with the rows it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RowCounts {
    pub rows_read: u64,
    pub created: u64,
    pub updated: u64,
    /// Rows that changed nothing (their profile already held every value).
    pub unchanged: u64,
    pub rejected: u64,
    /// Profiles a source's full pull deleted (it no longer returned them).
    pub deleted: u64,
}

impl RowCounts {
    /// The counts as an import's or a pull's row holds them.
    pub(crate) fn read(row: &AnyRow) -> sqlx::Result<Self> {
        let count = |column: &str| -> sqlx::Result<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
        };
        Ok(Self {
            rows_read: count("rows_read")?,
            created: count("created")?,
            updated: count("updated")?,
            unchanged: count("unchanged")?,
            rejected: count("rejected")?,
            deleted: count("deleted")?,
        })
    }
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {}, created {}, updated {}, unchanged {}, rejected {}, deleted {}",
            self.rows_read, self.created, self.updated, self.unchanged, self.rejected, self.deleted
        )
    }
}

pub struct NewImport<'a> {
    pub file_name: &'a str,
    pub error: Option<&'a str>,
    pub counts: RowCounts,
    pub rejections: &'a [Rejection],
    pub started_at: i64,
    pub finished_at: i64,
    pub imported_by: Option<i64>,
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    import: NewImport<'_>,
) -> sqlx::Result<i64> {
    let rejections = serde_json::to_string(import.rejections).unwrap_or_else(|_| "[]".into());
    sqlx::query_scalar(
        "INSERT INTO profile_imports (file_name, status, error, rows_read, created, updated, rejected, \
         rejections, started_at, finished_at, imported_by, unchanged, deleted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(import.file_name)
    .bind(if import.error.is_some() { "failed" } else { "succeeded" })
    .bind(import.error)
    .bind(import.counts.rows_read as i64)
    .bind(import.counts.created as i64)
    .bind(import.counts.updated as i64)
    .bind(import.counts.rejected as i64)
    .bind(rejections)
    .bind(import.started_at)
    .bind(import.finished_at)
    .bind(import.imported_by)
    .bind(import.counts.unchanged as i64)
    .bind(import.counts.deleted as i64)
    .fetch_one(db)
    .await
}

impl Record for ImportRecord {
    const TABLE: &'static str = "profile_imports";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let status: String = row.try_get("status")?;
        let rejections: String = row.try_get("rejections")?;
        Ok(ImportRecord {
            id: row.try_get("id")?,
            file_name: row.try_get("file_name")?,
            succeeded: status == "succeeded",
            error: row.try_get("error")?,
            counts: RowCounts::read(&row)?,
            rejections: serde_json::from_str(&rejections).unwrap_or_default(),
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
}

const COLUMNS: &str = "id, file_name, status, error, rows_read, created, updated, rejected, rejections, \
                       started_at, finished_at, unchanged, deleted";

pub async fn recent<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<ImportRecord>> {
    super::select(db, "ORDER BY id DESC LIMIT $1", &[limit.into()]).await
}

/// How long the latest `limit` imports took, in milliseconds, newest first.
pub async fn recent_durations_ms<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT finished_at - started_at AS ms FROM profile_imports ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}
