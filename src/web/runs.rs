//! Exports from the pages: Export and Export all queue runs and return at once; a run's
//! page shows live progress; history per destination; per-member results as CSV; cancel.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::auth::session;
use crate::state::AppState;
use crate::store::destinations::{self, Destination};
use crate::store::results;
use crate::store::runs::{self, Run, RunKind, RunStatus};
use crate::web::current_user::{CurrentUser, require_contributor};
use crate::web::page::{Nav, PageContext, render};
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
        .route_layer(axum::middleware::from_fn(require_contributor));
    read.merge(write)
}

async fn active(state: &AppState, id: i64) -> Result<Destination, AppError> {
    destinations::find(state.db.pool(), id)
        .await?
        .filter(|d| d.is_active())
        .ok_or(AppError::NotFound)
}

#[derive(Deserialize)]
struct ExportForm {
    full: Option<String>,
}

/// Queues a run and goes to its page.
async fn export(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<ExportForm>,
) -> Result<Redirect, AppError> {
    let destination = active(&state, id).await?;
    let full = form.full.as_deref() == Some("yes");
    let mut conn = state.db.pool().acquire().await?;
    let (run_id, status) = runs::enqueue(&mut conn, id, full, Some(user.id)).await?;
    tracing::info!(
        user_id = user.id,
        destination_id = id,
        run_id,
        full,
        "export requested"
    );
    if status == RunStatus::Skipped {
        session::set_flash(
            &session,
            format!(
                "“{}” is already exporting: this request was recorded as Skipped.",
                destination.display_name
            ),
        )
        .await?;
    }
    Ok(Redirect::to(&format!("/admin/export-runs/{run_id}")))
}

async fn export_all(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
) -> Result<Redirect, AppError> {
    let mut queued = 0;
    let mut skipped = 0;
    let mut conn = state.db.pool().acquire().await?;
    for destination in destinations::list(state.db.pool())
        .await?
        .into_iter()
        .filter(|d| d.is_active())
    {
        match runs::enqueue(&mut conn, destination.id, false, Some(user.id))
            .await?
            .1
        {
            RunStatus::Queued => queued += 1,
            _ => skipped += 1,
        }
    }
    let mut message = format!("Queued {queued} export(s).");
    if skipped > 0 {
        message.push_str(&format!(
            " {skipped} destination(s) were already exporting (recorded as Skipped)."
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
    total: i64,
    sent: i64,
    created: i64,
    updated: i64,
    unchanged: i64,
    skipped: i64,
    failed: i64,
    tag_changes: i64,
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
        total: c.total,
        sent: c.sent,
        created: c.created,
        updated: c.updated,
        unchanged: c.unchanged,
        skipped: c.skipped,
        failed: c.failed,
        tag_changes: c.tag_changes,
        done,
        rate_per_second: (rate * 10.0).round() / 10.0,
        seconds_left: (!run.status.is_finished() && rate > 0.0)
            .then(|| (remaining as f64 / rate).ceil() as i64),
        message: run.message.clone().unwrap_or_default(),
    }
}

async fn load_run(state: &AppState, id: i64) -> Result<Run, AppError> {
    runs::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn progress(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Progress>, AppError> {
    Ok(Json(progress_of(&load_run(&state, id).await?)))
}

#[derive(Template)]
#[template(path = "destinations/run.html")]
struct RunPage {
    ctx: PageContext,
    run: Run,
    destination_name: String,
    progress: Progress,
    created: String,
    /// For a run that read only changed profiles: since when.
    changes_since: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let run = load_run(&state, id).await?;
    let destination_name = destinations::find(state.db.pool(), run.destination_id)
        .await?
        .map(|d| d.display_name)
        .unwrap_or_default();
    let page = RunPage {
        ctx: ctx.at(Nav::ExportDestinations),
        progress: progress_of(&run),
        created: format::timestamp(run.created_at),
        changes_since: run.changes_since.map(format::timestamp),
        run,
        destination_name,
    };
    Ok(render(&page)?.into_response())
}

struct HistoryRow {
    run: Run,
    started: String,
    duration: String,
}

#[derive(Template)]
#[template(path = "destinations/history.html")]
struct HistoryPage {
    ctx: PageContext,
    destination: Destination,
    rows: Vec<HistoryRow>,
}

async fn history(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let destination = active(&state, id).await?;
    let rows = runs::for_destination(state.db.pool(), id, 100)
        .await?
        .into_iter()
        .map(|run| HistoryRow {
            started: format::optional_timestamp(run.started_at.or(Some(run.created_at))),
            duration: match (run.started_at, run.finished_at) {
                (Some(s), Some(f)) => format!("{:.1} s", (f - s) as f64 / 1000.0),
                _ => String::new(),
            },
            run,
        })
        .collect();
    Ok(render(&HistoryPage {
        ctx: ctx.at(Nav::ExportDestinations),
        destination,
        rows,
    })?
    .into_response())
}

async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let run = load_run(&state, id).await?;
    // A removal clean-up decides whether a destination and its credential go: only an
    // administrator, who asked for it, may stop it halfway.
    if run.kind != RunKind::Export && !user.is_administrator() {
        return Err(AppError::Forbidden);
    }
    runs::request_cancel(state.db.pool(), id).await?;
    tracing::info!(user_id = user.id, run_id = id, "export cancel requested");
    session::set_flash(
        &session,
        "Cancel requested: the export stops after the calls in flight.",
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/export-runs/{id}")))
}

/// customer_id, email, outcome, title, detail: one line per member of the run.
async fn members_csv(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    load_run(&state, id).await?;
    let body = results::csv(state.db.pool(), id).await?;
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
