//! Exports from the pages: Export and Export all queue runs and return at once; a run's
//! page shows live progress; history per destination; per-member results as CSV; cancel.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::actions::exports::{self, Cancel, ExportRequest, NotQueued};
use crate::auth::session;
use crate::domain::Role;
use crate::state::AppState;
use crate::store::destinations::{self, Destination};
use crate::store::results;
use crate::store::runs::{self, Counters, Run, RunKind, RunStatus};
use crate::web::current_user::{CurrentUser, require};
use crate::web::destinations::Active;
use crate::web::found::Found;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::StartForm;
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    let read = Router::new()
        .route("/admin/export-destinations/{id}/runs", get(history))
        .route("/admin/export-runs/{id}", get(show))
        .route("/admin/export-runs/{id}/progress.json", get(progress))
        .route("/admin/export-runs/{id}/members.csv", get(members_csv));
    let write = Router::new()
        .route("/admin/export-destinations/{id}/export", post(export))
        .route("/admin/export-destinations/export-all", post(export_all))
        .route("/admin/export-runs/{id}/cancel", post(cancel))
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Contributor,
            require,
        ));
    read.merge(write)
}

/// Queues a run and goes to its page. A first export whose preview found members Mailchimp
/// would refuse shows that preview and asks first.
async fn export(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<StartForm>,
) -> Result<Response, AppError> {
    let request = ExportRequest {
        full: form.full(),
        confirmed: form.confirmed(),
        by: Some(ctx.user.id),
    };
    let queued = match exports::queue(&state.db, id, request).await? {
        Ok(queued) => queued,
        Err(NotQueued::NoSuchDestination) => return Err(AppError::NotFound),
        Err(NotQueued::Unconfirmed(_)) => {
            let destination = crate::actions::active_destination(&state.db, id)
                .await?
                .ok_or(AppError::NotFound)?;
            let page =
                crate::web::destinations::preview::page(&state, ctx, destination, true).await?;
            return Ok((StatusCode::CONFLICT, render(&page)?).into_response());
        }
    };
    if queued.status == RunStatus::Skipped {
        session::set_flash(
            &session,
            format!(
                "“{}” is already exporting: this request was recorded as Skipped.",
                queued.destination.display_name
            ),
        )
        .await?;
    }
    Ok(Redirect::to(&format!("/admin/export-runs/{}", queued.run_id)).into_response())
}

async fn export_all(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
) -> Result<Redirect, AppError> {
    let all = exports::queue_all(&state.db, Some(user.id)).await?;
    let mut message = format!("Queued {} export(s).", all.queued);
    if all.skipped > 0 {
        message.push_str(&format!(
            " {} destination(s) were already exporting (recorded as Skipped).",
            all.skipped
        ));
    }
    session::set_flash(&session, message).await?;
    Ok(Redirect::to("/admin/export-destinations"))
}

/// What the run page shows and polls.
#[derive(Serialize)]
struct Progress {
    status: &'static str,
    finished: bool,
    #[serde(flatten)]
    counts: Counters,
    done: i64,
    rate_per_second: f64,
    seconds_left: Option<i64>,
    message: String,
}

fn progress_of(run: &Run) -> Progress {
    let c = run.counters;
    let done = c.sent + c.unchanged + c.skipped + c.failed;
    let elapsed = run
        .started_at
        .map(|s| (run.finished_at.unwrap_or_else(crate::db::now_millis) - s).max(1) as f64 / 1000.0)
        .unwrap_or(0.0);
    let rate = if elapsed > 0.0 {
        c.sent as f64 / elapsed
    } else {
        0.0
    };
    let remaining = (c.total - done).max(0);
    Progress {
        status: run.status.label(),
        finished: run.status.is_finished(),
        counts: c,
        done,
        rate_per_second: (rate * 10.0).round() / 10.0,
        seconds_left: (!run.status.is_finished() && rate > 0.0)
            .then(|| (remaining as f64 / rate).ceil() as i64),
        message: run.message.clone().unwrap_or_default(),
    }
}

async fn progress(Found(run): Found<Run>) -> Json<Progress> {
    Json(progress_of(&run))
}

#[derive(Template)]
#[template(path = "destinations/run.html")]
struct RunPage {
    ctx: PageContext,
    run: Run,
    destination_name: String,
    /// The destination exists and is saved: it can be exported again.
    exportable: bool,
    /// The destination was removed: its runs are kept, its pages are not.
    gone: bool,
    /// "Export", "Full resync" or the removal clean-up's name.
    kind_label: &'static str,
    progress: Progress,
    created: String,
    started: String,
    ended: String,
    took: String,
    /// Members sent per second over the whole run.
    average_rate: String,
    /// For a run that read only changed profiles: since when.
    changes_since: Option<String>,
    reasons: Vec<ReasonRow>,
}

/// Skipped or failed members of one reason, with the CSV of exactly them.
struct ReasonRow {
    label: &'static str,
    title: String,
    outcome: String,
    members: String,
    csv: String,
}

/// How the run page names a reason recorded with a member (the recorded title stays in
/// the CSV, so a person can match one to the other).
fn reason_label(title: &str) -> &'static str {
    match title {
        "No email address" => "No address",
        "Invalid email address" => "Invalid address",
        "Repeated email address" => "Repeated address (exported once)",
        "Invalid Resource" => "Refused by Mailchimp as fake or invalid",
        "Member In Compliance State" => "Compliance state in Mailchimp (unsubscribed or bounced)",
        "Forgotten Email Not Subscribed" => "Deleted for good in Mailchimp",
        "Opted out, then left the audience" => "Opted out, then left the audience",
        "Member not updated" => "Refused by Mailchimp",
        "Invalid merge field value" => "A merge-field value Mailchimp would refuse (not sent)",
        "Forgotten on request" => "Forgotten on request (never sent again)",
        "No answer" => "Not in Mailchimp's answer (tried again next time)",
        _ => "Other",
    }
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(run): Found<Run>,
) -> Result<Response, AppError> {
    let id = run.id;
    let destination = destinations::find(state.db.pool(), run.destination_id).await?;
    let exportable = destination.as_ref().is_some_and(|d| d.is_active());
    let destination_name = destinations::name_of(state.db.pool(), run.destination_id)
        .await?
        .unwrap_or_default();
    let reasons = results::reasons(state.db.pool(), id)
        .await?
        .into_iter()
        .map(|r| ReasonRow {
            label: reason_label(&r.title),
            csv: format!(
                "/admin/export-runs/{id}/members.csv?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("outcome", &r.outcome)
                    .append_pair("title", &r.title)
                    .finish()
            ),
            members: format::count(r.members),
            title: r.title,
            outcome: r.outcome,
        })
        .collect();
    let took_ms = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => Some(f - s),
        _ => None,
    };
    let average_rate = match took_ms {
        Some(ms) if ms > 0 && run.counters.sent > 0 => format!(
            "{} members/s",
            format::count((run.counters.sent as f64 * 1000.0 / ms as f64).round() as i64)
        ),
        _ => String::new(),
    };
    let page = RunPage {
        ctx: ctx.at(Nav::ExportDestinations),
        gone: destination.is_none(),
        kind_label: run.kind_label(),
        progress: progress_of(&run),
        created: format::timestamp(run.created_at),
        started: run.started_at.map(format::timestamp).unwrap_or_default(),
        ended: run.finished_at.map(format::timestamp).unwrap_or_default(),
        took: took_ms.map(format::duration).unwrap_or_default(),
        average_rate,
        changes_since: run.changes_since.map(format::timestamp),
        reasons,
        exportable,
        run,
        destination_name,
    };
    Ok(render(&page)?.into_response())
}

struct HistoryRow {
    run: Run,
    kind: &'static str,
    started: String,
    duration: String,
    /// Members, created, updated, unchanged, skipped, failed, tag changes.
    counts: [String; 7],
}

/// An hour of keeping the destination in sync: its runs summed, and its failures.
struct SyncHour {
    hour: String,
    runs: String,
    /// Sent, created, updated, failed members.
    counts: [String; 4],
    /// Each failed run and why.
    failures: Vec<(i64, String)>,
}

/// The last day of keeping the destination in sync, an hour a row, newest first.
fn sync_hours(runs: Vec<Run>) -> Vec<SyncHour> {
    const HOUR: i64 = 3_600_000;
    let mut hours: Vec<(i64, Vec<Run>)> = Vec::new();
    for run in runs {
        let hour = run.created_at.div_euclid(HOUR) * HOUR;
        match hours.last_mut() {
            Some((h, runs)) if *h == hour => runs.push(run),
            _ => hours.push((hour, vec![run])),
        }
    }
    hours
        .into_iter()
        .map(|(hour, runs)| {
            let sum = |f: fn(&Run) -> i64| runs.iter().map(f).sum::<i64>();
            SyncHour {
                hour: format::timestamp(hour),
                runs: format::count(runs.len() as i64),
                counts: [
                    sum(|r| r.counters.sent),
                    sum(|r| r.counters.created),
                    sum(|r| r.counters.updated),
                    sum(|r| r.counters.failed),
                ]
                .map(format::count),
                failures: runs
                    .iter()
                    .filter_map(|r| match r.status {
                        runs::RunStatus::Failure => {
                            Some((r.id, r.message.clone().unwrap_or_default()))
                        }
                        runs::RunStatus::Canceled => Some((r.id, "Canceled".to_owned())),
                        _ => None,
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "destinations/history.html")]
struct HistoryPage {
    ctx: PageContext,
    destination: Destination,
    rows: Vec<HistoryRow>,
    /// The last day of keeping the destination in sync, an hour a row.
    synced: Vec<SyncHour>,
    /// The run keeping it in sync now, queued or running.
    syncing: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    ctx: PageContext,
    Active(destination): Active,
) -> Result<Response, AppError> {
    let id = destination.id;
    let day_ago = crate::db::now_millis() - 24 * 3_600_000;
    let pool = state.db.pool();
    let kept_in_sync = runs::listed(pool, id, runs::Listed::KeptInSyncSince(day_ago)).await?;
    let syncing = kept_in_sync
        .iter()
        .find(|r| !r.status.is_finished())
        .map(|r| r.id);
    let synced = sync_hours(kept_in_sync);
    let rows = runs::listed(pool, id, runs::Listed::Requested(100))
        .await?
        .into_iter()
        .map(|run| {
            let c = run.counters;
            HistoryRow {
                kind: run.kind_label(),
                started: format::optional_timestamp(run.started_at.or(Some(run.created_at))),
                duration: match (run.started_at, run.finished_at) {
                    (Some(s), Some(f)) => format::duration(f - s),
                    _ => String::new(),
                },
                counts: [
                    c.total,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.skipped,
                    c.failed,
                    c.tag_changes,
                ]
                .map(format::count),
                run,
            }
        })
        .collect();
    Ok(render(&HistoryPage {
        ctx: ctx.at(Nav::ExportDestinations),
        destination,
        rows,
        synced,
        syncing,
    })?
    .into_response())
}

async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Found(run): Found<Run>,
) -> Result<Redirect, AppError> {
    let id = run.id;
    match exports::cancel(&state.db, &run, user.id, user.is_administrator()).await? {
        Cancel::NotYours => return Err(AppError::Forbidden),
        Cancel::AlreadyEnded => {
            session::set_flash(
                &session,
                "The run had already ended: there was nothing to cancel.",
            )
            .await?;
        }
        Cancel::Requested => {}
    }
    Ok(Redirect::to(&format!("/admin/export-runs/{id}")))
}

#[derive(Deserialize)]
struct CsvQuery {
    outcome: Option<String>,
    title: Option<String>,
}

/// customer_id, email, outcome, title, detail: one line per member of the run (or of one
/// outcome, or one reason).
async fn members_csv(
    State(state): State<AppState>,
    Found(run): Found<Run>,
    Query(query): Query<CsvQuery>,
) -> Result<Response, AppError> {
    let id = run.id;
    let only = results::Only {
        outcome: query.outcome,
        title: query.title,
    };
    let body = results::csv(state.db.pool(), id, &only).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"export-run-{id}-members.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
