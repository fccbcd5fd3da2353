//! Data > Segments: the list with counts and refresh times, the rule builder with a count
//! preview, static segments from a CSV of customer IDs, refresh, and delete (refused while a
//! destination exports the segment).

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::domain::FieldType;
use crate::domain::Role;
use crate::domain::segment_rules::{Condition, Match, Operator, SegmentName, SegmentRules};
use crate::segments::{
    RefreshOutcome, define, preview_count, progress, refresh, refresh_in_background,
};
use crate::state::AppState;
use crate::store::segments::{self, Definition, MemberRow, Segment};
use crate::store::{self as db_store, fields};
use crate::web::current_user::{CurrentUser, require};
use crate::web::found::Found;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;
use crate::web::{AppError, format};

mod builder;
mod uploaded;

use builder::{edit_form, new_form, submit};
use uploaded::{create_static, static_form};

pub fn router() -> Router<AppState> {
    let read = Router::new()
        .route("/data/segments", get(list))
        .route("/data/segments/{id}", get(show))
        .route("/data/segments/refresh", get(refresh_page))
        .route("/data/segments/refresh.json", get(refresh_progress));
    let write = Router::new()
        .route("/data/segments/new", get(new_form).post(submit))
        .route("/data/segments/{id}/edit", get(edit_form).post(submit))
        .route(
            "/data/segments/{id}/delete",
            get(confirm_delete).post(delete),
        )
        .route("/data/segments/refresh", post(refresh_all))
        .route("/data/segments/{id}/refresh", post(refresh_one))
        .route("/data/segments/new-static", get(static_form))
        .route(
            "/data/segments/static",
            post(create_static).layer(DefaultBodyLimit::max(super::profiles::MAX_UPLOAD_BYTES)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Contributor,
            require,
        ));
    read.merge(write)
}

struct SegmentRow {
    id: i64,
    name: String,
    kind: &'static str,
    members: i64,
    refreshed: String,
    duration: String,
    unmatched: i64,
}

#[derive(Template)]
#[template(path = "data/segments.html")]
struct SegmentsPage {
    ctx: PageContext,
    rows: Vec<SegmentRow>,
}

fn duration(ms: Option<i64>) -> String {
    ms.map(|ms| {
        if ms < 1000 {
            format!("{ms} ms")
        } else {
            format!("{:.1} s", ms as f64 / 1000.0)
        }
    })
    .unwrap_or_default()
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let rows = segments::list(state.db.pool())
        .await?
        .into_iter()
        .map(|s| SegmentRow {
            kind: if s.definition == Definition::Static {
                "Static list"
            } else {
                "Rules"
            },
            refreshed: format::optional_timestamp(s.last_refreshed_at),
            duration: duration(s.last_refresh_ms),
            id: s.id,
            name: s.name,
            members: s.member_count,
            unmatched: s.unmatched_ids,
        })
        .collect();
    Ok(render(&SegmentsPage {
        ctx: ctx.at(Nav::Segments),
        rows,
    })?
    .into_response())
}

#[derive(Template)]
#[template(path = "data/segment.html")]
struct SegmentPage {
    ctx: PageContext,
    segment: Segment,
    rules: Vec<String>,
    match_all: bool,
    refreshed: String,
    /// Saved since its last refresh: its members are being computed.
    refreshing: bool,
    members: Vec<MemberRow>,
    next: Option<i64>,
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<i64>,
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(segment): Found<Segment>,
    Query(query): Query<AfterQuery>,
) -> Result<Response, AppError> {
    let (pool, id) = (state.db.pool(), segment.id);
    let (rules, match_all) = match &segment.definition {
        Definition::Rules(rules) => (
            rules
                .conditions
                .iter()
                .map(|c| {
                    if c.op.needs_value() {
                        format!("{} {} {}", c.field, c.op.label(), c.value)
                    } else {
                        format!("{} {}", c.field, c.op.label())
                    }
                })
                .collect(),
            rules.match_ == Match::All,
        ),
        Definition::Static => (Vec::new(), true),
    };
    let mut members = segments::members(pool, id, query.after.unwrap_or(0), 51).await?;
    let next = (members.len() > 50)
        .then(|| {
            members.pop();
            members.last().map(|m| m.profile_id)
        })
        .flatten();
    // Its members were computed from another definition: a refresh of the saved one is
    // under way (or, for rules that no longer fit the fields, cannot be).
    let catalogue = fields::as_catalogue(&fields::list(pool).await?);
    let refreshing = crate::segments::is_refreshing(&segment, &catalogue);
    let page = SegmentPage {
        ctx: ctx.at(Nav::Segments),
        refreshing,
        refreshed: format::optional_timestamp(segment.last_refreshed_at),
        segment,
        rules,
        match_all,
        members,
        next,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Template)]
#[template(path = "data/segment_delete.html")]
struct DeletePage {
    ctx: PageContext,
    segment: Segment,
}

async fn confirm_delete(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(segment): Found<Segment>,
) -> Result<Response, AppError> {
    define::check_unused(state.db.pool(), &segment)
        .await
        .map_err(refused_delete)?;
    Ok(render(&DeletePage {
        ctx: ctx.at(Nav::Segments),
        segment,
    })?
    .into_response())
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let segment = define::delete(&state.db, user.id, id)
        .await
        .map_err(refused_delete)?;
    session::set_flash(&session, format!("Deleted “{}”.", segment.name)).await?;
    Ok(Redirect::to("/data/segments"))
}

/// A delete refused: a segment in use is a conflict saying what uses it.
fn refused_delete(err: define::DeleteError) -> AppError {
    match err {
        define::DeleteError::NotFound => AppError::NotFound,
        err @ define::DeleteError::InUse { .. } => AppError::Conflict(err.to_string()),
        define::DeleteError::Database(err) => err.into(),
    }
}

/// Starts a refresh in the background and shows its progress.
fn start_refresh(state: &AppState, user: &CurrentUser, only: Option<Vec<i64>>) -> Redirect {
    refresh_in_background(&state.db, user.id, only);
    Redirect::to("/data/segments/refresh")
}

async fn refresh_all(State(state): State<AppState>, user: CurrentUser) -> Redirect {
    start_refresh(&state, &user, None)
}

async fn refresh_one(
    State(state): State<AppState>,
    user: CurrentUser,
    Found(segment): Found<Segment>,
) -> Result<Redirect, AppError> {
    Ok(start_refresh(&state, &user, Some(vec![segment.id])))
}

#[derive(Template)]
#[template(path = "data/segment_refresh.html")]
struct RefreshPage {
    ctx: PageContext,
    board: Option<progress::Board>,
}

/// The running refresh, or the last one, segment by segment.
async fn refresh_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Response, AppError> {
    let page = RefreshPage {
        ctx: ctx.at(Nav::Segments),
        board: progress::current(&state.db),
    };
    Ok(render(&page)?.into_response())
}

async fn refresh_progress(State(state): State<AppState>) -> axum::Json<Option<progress::Board>> {
    axum::Json(progress::current(&state.db))
}
