//! The scheduled refresh's settings (one row) and the record of refreshes.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::now_millis;

#[derive(Debug, Clone)]
pub struct ScheduleRow {
    pub enabled: bool,
    pub frequency: String,
    pub days: Vec<String>,
    pub times: String,
    pub time_zone: String,
    pub fired_through: i64,
    pub updated_at: Option<i64>,
}

pub async fn load<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<ScheduleRow> {
    sqlx::query("SELECT enabled, frequency, days, times, time_zone, fired_through, updated_at FROM schedule WHERE id = 1")
        .try_map(|row: AnyRow| {
            let days: String = row.try_get("days")?;
            Ok(ScheduleRow {
                enabled: row.try_get::<i64, _>("enabled")? != 0,
                frequency: row.try_get("frequency")?,
                days: days.split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect(),
                times: row.try_get("times")?,
                time_zone: row.try_get("time_zone")?,
                fired_through: row.try_get("fired_through")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .fetch_one(db)
        .await
}

/// Saves the settings; occurrences before now are never run retroactively.
pub async fn save<'e>(
    db: impl Executor<'e, Database = Any>,
    spec: &crate::domain::schedule::ScheduleSpec,
    by: i64,
) -> sqlx::Result<()> {
    let now = now_millis();
    sqlx::query(
        "UPDATE schedule SET enabled = $1, frequency = $2, days = $3, times = $4, time_zone = $5, \
         fired_through = $6, updated_at = $6, updated_by = $7 WHERE id = 1",
    )
    .bind(i64::from(spec.enabled))
    .bind(if spec.weekly { "weekly" } else { "daily" })
    .bind(spec.days.join(","))
    .bind(spec.times_text())
    .bind(spec.time_zone.name())
    .bind(now)
    .bind(by)
    .execute(db)
    .await
    .map(drop)
}

/// Takes the occurrence at `due` for this process; false when another console did.
pub async fn claim_occurrence<'e>(
    db: impl Executor<'e, Database = Any>,
    due: i64,
) -> sqlx::Result<bool> {
    let claimed =
        sqlx::query("UPDATE schedule SET fired_through = $1 WHERE id = 1 AND fired_through < $1")
            .bind(due)
            .execute(db)
            .await?;
    Ok(claimed.rows_affected() == 1)
}

#[derive(Debug, Clone)]
pub struct RefreshRun {
    pub id: i64,
    pub trigger_kind: String,
    pub scheduled_for: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    pub segments_refreshed: i64,
    pub exports_queued: i64,
    pub exports_skipped: i64,
    pub message: Option<String>,
    /// Sources the chain pulled first, and those whose pull failed.
    pub pulls_succeeded: i64,
    pub pulls_failed: i64,
}

pub async fn start_refresh<'e>(
    db: impl Executor<'e, Database = Any>,
    trigger: &str,
    scheduled_for: Option<i64>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO refresh_runs (trigger_kind, scheduled_for, started_at, status) VALUES ($1, $2, $3, 'processing') RETURNING id",
    )
    .bind(trigger)
    .bind(scheduled_for)
    .bind(now_millis())
    .fetch_one(db)
    .await
}

/// Records what the chain's pulls did: (succeeded, failed).
pub async fn set_pulls<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    pulls: (i64, i64),
) -> sqlx::Result<()> {
    sqlx::query("UPDATE refresh_runs SET pulls_succeeded = $1, pulls_failed = $2 WHERE id = $3")
        .bind(pulls.0)
        .bind(pulls.1)
        .bind(id)
        .execute(db)
        .await
        .map(drop)
}

pub async fn finish_refresh<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    ok: bool,
    counts: (i64, i64, i64),
    message: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_runs SET finished_at = $1, status = $2, segments_refreshed = $3, exports_queued = $4, \
         exports_skipped = $5, message = $6 WHERE id = $7",
    )
    .bind(now_millis())
    .bind(if ok { "successful" } else { "failure" })
    .bind(counts.0)
    .bind(counts.1)
    .bind(counts.2)
    .bind(message)
    .bind(id)
    .execute(db)
    .await
    .map(drop)
}

pub async fn recent_refreshes<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<RefreshRun>> {
    sqlx::query(
        "SELECT id, trigger_kind, scheduled_for, started_at, finished_at, status, segments_refreshed, exports_queued, \
         exports_skipped, message, pulls_succeeded, pulls_failed FROM refresh_runs ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .try_map(|row: AnyRow| {
        Ok(RefreshRun {
            id: row.try_get("id")?,
            trigger_kind: row.try_get("trigger_kind")?,
            scheduled_for: row.try_get("scheduled_for")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            status: row.try_get("status")?,
            segments_refreshed: row.try_get("segments_refreshed")?,
            exports_queued: row.try_get("exports_queued")?,
            exports_skipped: row.try_get("exports_skipped")?,
            message: row.try_get("message")?,
            pulls_succeeded: row.try_get("pulls_succeeded")?,
            pulls_failed: row.try_get("pulls_failed")?,
        })
    })
    .fetch_all(db)
    .await
}
