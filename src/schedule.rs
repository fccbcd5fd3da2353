//! The scheduled refresh: when an occurrence of the schedule is due, pull every source,
//! then refresh every segment, then queue an export of every saved destination (one still
//! exporting gets a Skipped run). An occurrence is claimed in the database first, so several
//! consoles run it once. Sources set to be pulled every N minutes are pulled on their own
//! between occurrences.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::db::now_millis;
use crate::domain::schedule::ScheduleSpec;
use crate::sources::Sources;
use crate::sources::pull::{self, PullRequest, Trigger};

use crate::store::{Record, schedule};

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
pub async fn run_due(sources: &Sources, now: DateTime<Utc>) -> anyhow::Result<Option<i64>> {
    let db = &sources.db;
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
        refresh_and_export(sources, "schedule", Some(latest.timestamp_millis())).await?,
    ))
}

/// Pulls every source, refreshes all segments, then queues every saved destination's
/// export. A source that fails to pull keeps its profiles as they were; the chain goes on
/// with the others.
pub async fn refresh_and_export(
    sources: &Sources,
    trigger: &str,
    scheduled_for: Option<i64>,
) -> anyhow::Result<i64> {
    let db = &sources.db;
    let id = schedule::start_refresh(db.pool(), trigger, scheduled_for).await?;
    let pulls = pull_every_source(sources).await?;
    schedule::set_pulls(db.pool(), id, pulls).await?;
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
    let crate::actions::exports::QueuedAll { queued, skipped } =
        crate::actions::exports::queue_all(db, None).await?;
    let counts = (report.segments.len() as i64, queued, skipped);
    schedule::finish_refresh(db.pool(), id, true, counts, None).await?;
    tracing::info!(refresh_id = id, queued, skipped, "scheduled refresh done");
    Ok(id)
}

/// Pulls each source in turn: (succeeded, failed). A source already being pulled counts
/// as neither (that pull is under way).
async fn pull_every_source(sources: &Sources) -> anyhow::Result<(i64, i64)> {
    let (mut succeeded, mut failed) = (0, 0);
    for source in crate::store::sources::list(sources.db.pool()).await? {
        let request = PullRequest {
            source_id: source.id,
            full: false,
            trigger: Trigger::Schedule,
            by: None,
        };
        match pull::run(sources, request).await {
            Ok(Ok(pull)) if pull.status == "failed" => failed += 1,
            Ok(Ok(_)) => succeeded += 1,
            Ok(Err(_)) => {}
            Err(err) => {
                failed += 1;
                tracing::error!(
                    error = format!("{err:#}"),
                    source_id = source.id,
                    "pulling a source"
                );
            }
        }
    }
    Ok((succeeded, failed))
}

/// Pulls the sources whose own interval is due, then refreshes the segments when a pull
/// changed anything.
pub async fn pull_due_sources(sources: &Sources, now_ms: i64) -> anyhow::Result<usize> {
    let mut pulled = 0;
    let mut changed = false;
    for (source_id, last) in crate::store::sources::last_started(sources.db.pool()).await? {
        let Some(source) =
            crate::store::sources::SourceRow::find(sources.db.pool(), source_id).await?
        else {
            continue;
        };
        let every_ms = source.every_minutes.unwrap_or(i64::MAX / 120_000) * 60_000;
        if last.is_some_and(|last| last + every_ms > now_ms) {
            continue;
        }
        let request = PullRequest {
            source_id,
            full: false,
            trigger: Trigger::Every,
            by: None,
        };
        if let Ok(pull) = pull::run(sources, request).await? {
            pulled += 1;
            changed |= pull::changed_anything(&pull);
        }
    }
    if changed {
        crate::segments::refresh(&sources.db, None).await?;
    }
    Ok(pulled)
}

/// Checks the schedule and the sources' intervals twice a minute until the process stops.
pub async fn run(sources: Sources) {
    loop {
        if let Err(err) = run_due(&sources, Utc::now()).await {
            tracing::error!(error = format!("{err:#}"), "the scheduled refresh failed");
        }
        if let Err(err) = pull_due_sources(&sources, now_millis()).await {
            tracing::error!(
                error = format!("{err:#}"),
                "pulling sources on their own interval"
            );
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
