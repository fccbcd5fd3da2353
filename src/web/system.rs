//! System > Schedule (the scheduled refresh) and System > Status (recent refreshes and runs).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_sessions::Session;

use crate::auth::session;
use crate::domain::Role;
use crate::domain::schedule::{DAYS, ScheduleSpec};
use crate::state::AppState;
use crate::store::audit;
use crate::store::schedule::{self, RefreshRun};
use crate::web::current_user::require;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    let read = Router::new().route("/system/status", get(status));
    let admin = Router::new()
        .route("/system/schedule", get(schedule_page).post(save))
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Administrator,
            require,
        ));
    read.merge(admin)
}

struct ScheduleForm {
    enabled: bool,
    weekly: bool,
    days: Vec<String>,
    times: String,
    time_zone: String,
}

#[derive(Template)]
#[template(path = "system/schedule.html")]
struct SchedulePage {
    ctx: PageContext,
    form: ScheduleForm,
    days: [(&'static str, &'static str); 7],
    next_run: String,
    errors: Vec<String>,
}

async fn page(
    state: &AppState,
    ctx: PageContext,
    form: Option<ScheduleForm>,
    errors: Vec<String>,
) -> Result<SchedulePage, AppError> {
    let row = schedule::load(state.db.pool()).await?;
    let next_run = match crate::schedule::next_run(&row) {
        Some(at) => format!("Next refresh: {}.", format::in_zone(at, &row.time_zone)),
        None => "The scheduled refresh is off.".into(),
    };
    let form = form.unwrap_or(ScheduleForm {
        enabled: row.enabled,
        weekly: row.frequency == "weekly",
        days: row.days,
        times: row.times,
        time_zone: row.time_zone,
    });
    Ok(SchedulePage {
        ctx: ctx.at(Nav::Schedule),
        form,
        days: DAYS,
        next_run,
        errors,
    })
}

async fn schedule_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, None, Vec::new()).await?)?.into_response())
}

async fn save(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let days: Vec<String> = pairs.all("day").map(str::to_owned).collect();
    let enabled = pairs.get("enabled") == "yes";
    let form = ScheduleForm {
        enabled,
        weekly: pairs.get("frequency") == "weekly",
        days: days.clone(),
        times: pairs.get("times"),
        time_zone: pairs.get("time_zone"),
    };
    let spec = match ScheduleSpec::parse(
        enabled,
        &pairs.get("frequency"),
        &days,
        &form.times,
        &form.time_zone,
    ) {
        Ok(spec) => spec,
        Err(errors) => {
            let errors = errors.into_iter().map(String::from).collect();
            let page = page(&state, ctx, Some(form), errors).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
        }
    };
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    schedule::save(&mut *tx, &spec, ctx.user.id).await?;
    let details = if spec.enabled {
        format!(
            "{} at {} ({}){}",
            if spec.weekly { "weekly" } else { "daily" },
            spec.times_text(),
            spec.time_zone.name(),
            if spec.weekly {
                format!(" on {}", spec.days.join(", "))
            } else {
                String::new()
            }
        )
    } else {
        "off".into()
    };
    audit::record(
        &mut *tx,
        &ctx.user.actor(),
        "schedule",
        None,
        "Scheduled refresh",
        &details,
    )
    .await?;
    tx.commit().await?;
    session::set_flash(&session, format!("Saved the schedule: {details}.")).await?;
    Ok(Redirect::to("/system/schedule").into_response())
}

struct RefreshRow {
    run: RefreshRun,
    started: String,
}

struct ExportRow {
    id: i64,
    kind: &'static str,
    destination: String,
    status: &'static str,
    started: String,
}

/// What one destination's Mailchimp webhook brought in.
struct HookRow {
    destination: String,
    registered: String,
    since: String,
    unsubscribes: i64,
    cleaned: i64,
    profiles: i64,
    address_changes: i64,
}

#[derive(Template)]
#[template(path = "system/status.html")]
struct StatusPage {
    ctx: PageContext,
    refreshes: Vec<RefreshRow>,
    exports: Vec<ExportRow>,
    webhooks_on: bool,
    hooks: Vec<HookRow>,
}

/// Each destination's webhook and the events it delivered, by kind.
async fn hook_rows(
    pool: &sqlx::AnyPool,
    names: &std::collections::HashMap<i64, String>,
) -> Result<Vec<HookRow>, AppError> {
    let mut rows = Vec::new();
    for registration in crate::store::webhooks::all(pool).await? {
        let counts = crate::store::webhooks::counts(pool, registration.destination_id).await?;
        let of = |kind: &str| {
            counts
                .iter()
                .find(|(k, _, _)| k == kind)
                .map_or(0, |(_, n, _)| *n)
        };
        rows.push(HookRow {
            destination: names
                .get(&registration.destination_id)
                .cloned()
                .unwrap_or_else(|| "(removed)".into()),
            registered: match registration.registered_at {
                Some(at) => format!("Registered {}", format::timestamp(at)),
                None => "Not registered in Mailchimp yet: the next export tries again".into(),
            },
            since: format::timestamp(registration.created_at),
            unsubscribes: of("unsubscribe"),
            cleaned: of("cleaned"),
            profiles: of("profile"),
            address_changes: of("upemail"),
        });
    }
    Ok(rows)
}

async fn status(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let refreshes = schedule::recent_refreshes(pool, 20)
        .await?
        .into_iter()
        .map(|run| RefreshRow {
            started: format::timestamp(run.started_at),
            run,
        })
        .collect();
    let names = crate::store::destinations::names(pool).await?;
    let exports = crate::store::runs::recent(pool, 30)
        .await?
        .into_iter()
        .map(|run| ExportRow {
            id: run.id,
            kind: run.kind_label(),
            destination: names
                .get(&run.destination_id)
                .cloned()
                .unwrap_or_else(|| "(removed)".into()),
            status: run.status.label(),
            started: format::optional_timestamp(run.started_at.or(Some(run.created_at))),
        })
        .collect();
    let hooks = hook_rows(pool, &names).await?;
    Ok(render(&StatusPage {
        ctx: ctx.at(Nav::Status),
        refreshes,
        exports,
        webhooks_on: state.engine.webhooks.is_some(),
        hooks,
    })?
    .into_response())
}
