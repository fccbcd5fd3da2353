//! The scheduled refresh: when an occurrence of the schedule is due, refresh every segment,
//! then queue an export of every saved destination (one still exporting gets a Skipped run).
//! An occurrence is claimed in the database first, so several consoles run it once.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::db::{Db, now_millis};
use crate::domain::schedule::ScheduleSpec;
use crate::store::runs::{self, RunStatus};
use crate::store::{destinations, schedule};

/// The schedule as stored, as a spec (None when it cannot be read as one).
pub fn spec_of(row: &schedule::ScheduleRow) -> Option<ScheduleSpec> {
    ScheduleSpec::parse(
        row.enabled,
        &row.frequency,
        &row.days,
        &row.times,
        &row.time_zone,
    )
    .ok()
}

fn instant(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Runs the occurrence due at `now`, if any; returns the refresh run's id.
pub async fn run_due(db: &Db, now: DateTime<Utc>) -> anyhow::Result<Option<i64>> {
    let row = schedule::load(db.pool()).await?;
    let Some(spec) = spec_of(&row) else {
        return Ok(None);
    };
    let Some(due) = spec.next_after(instant(row.fired_through)) else {
        return Ok(None);
    };
    if due > now {
        return Ok(None);
    }
    // Missed occurrences (the console was down) collapse into one run now.
    let mut latest = due;
    while let Some(next) = spec.next_after(latest) {
        if next > now {
            break;
        }
        latest = next;
    }
    if !schedule::claim_occurrence(db.pool(), latest.timestamp_millis()).await? {
        return Ok(None);
    }
    Ok(Some(
        refresh_and_export(db, "schedule", Some(latest.timestamp_millis())).await?,
    ))
}

/// Refreshes all segments, then queues every saved destination's export.
pub async fn refresh_and_export(
    db: &Db,
    trigger: &str,
    scheduled_for: Option<i64>,
) -> anyhow::Result<i64> {
    let id = schedule::start_refresh(db.pool(), trigger, scheduled_for).await?;
    let report = match crate::segments::refresh(db, None).await {
        Ok(report) => report,
        Err(err) => {
            schedule::finish_refresh(
                db.pool(),
                id,
                false,
                (0, 0, 0),
                Some(&format!("The segments could not be refreshed: {err}")),
            )
            .await?;
            return Ok(id);
        }
    };
    let (mut queued, mut skipped) = (0, 0);
    let mut conn = db.pool().acquire().await?;
    for destination in destinations::list(db.pool())
        .await?
        .into_iter()
        .filter(|d| d.is_active())
    {
        match runs::enqueue(&mut conn, destination.id, false, None)
            .await?
            .1
        {
            RunStatus::Queued => queued += 1,
            _ => skipped += 1,
        }
    }
    drop(conn);
    let counts = (report.segments.len() as i64, queued, skipped);
    schedule::finish_refresh(db.pool(), id, true, counts, None).await?;
    tracing::info!(refresh_id = id, queued, skipped, "scheduled refresh done");
    Ok(id)
}

/// Checks the schedule twice a minute until the process stops.
pub async fn run(db: Db) {
    loop {
        if let Err(err) = run_due(&db, Utc::now()).await {
            tracing::error!(error = format!("{err:#}"), "the scheduled refresh failed");
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
}

/// When the schedule runs next, in milliseconds (None when it is off).
pub fn next_run(row: &schedule::ScheduleRow) -> Option<i64> {
    let spec = spec_of(row)?;
    let from = instant(row.fired_through.max(now_millis()));
    spec.next_after(from).map(|t| t.timestamp_millis())
}
