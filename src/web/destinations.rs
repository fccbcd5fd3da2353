//! Admin > Export destinations: the list, the Add destination area, and Remove; beside it,
//! every page of one destination: its set-up (`setup`, `oauth`), Data matching
//! (`configure`), Preview (`preview`), and its runs and Export button (`runs`).

mod configure;
mod oauth;
pub(crate) mod preview;
mod runs;
mod setup;

use askama::Template;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::actions::removal::{self, InMailchimp, Removed};
use crate::auth::session;
use crate::state::AppState;
use crate::store::destinations::{self, Destination};

use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

/// A finished destination (the kind that exports and previews), or Not found.
pub(crate) async fn active(state: &AppState, id: i64) -> Result<Destination, AppError> {
    crate::actions::active_destination(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The finished destination the path names (`…/{id}/…`), or Not found.
pub struct Active(pub Destination);

impl FromRequestParts<AppState> for Active {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        active(state, id)
            .await
            .map(Active)
            .map_err(IntoResponse::into_response)
    }
}

/// The destination the path names, if the person signed in may work on it (see `load`),
/// or Not found.
pub struct Editable(pub Destination);

impl FromRequestParts<AppState> for Editable {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let user = crate::web::CurrentUser::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        load(state, &user, id)
            .await
            .map(Editable)
            .map_err(IntoResponse::into_response)
    }
}

/// A destination this administrator may work on: any active one, or their own draft.
/// Another person's draft is as good as absent.
pub async fn load(
    state: &AppState,
    user: &crate::web::CurrentUser,
    id: i64,
) -> Result<Destination, AppError> {
    let destination = destinations::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !destination.is_active() && destination.owner_id != user.id {
        return Err(AppError::NotFound);
    }
    Ok(destination)
}

/// What every signed-in person may see.
/// The list, each destination's runs and its preview (Contributors export and preview;
/// Viewers look).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/export-destinations", get(list))
        .merge(runs::router())
        .merge(preview::router())
}

/// What only administrators may do: set up, authenticate, match data, remove.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/export-destinations/{id}/remove",
            get(confirm_remove).post(remove),
        )
        .merge(setup::router())
        .merge(oauth::router())
        .merge(configure::router())
}

struct Row {
    destination: Destination,
    created: String,
    last_status: String,
    last_export: String,
    /// The last finished run, and its counts as one line.
    last_run: Option<i64>,
    last_counts: String,
}

/// A destination whose removal was asked for: its clean-up in Mailchimp is running, or
/// stopped (canceled or failed) and waits for an administrator to retry it or remove the
/// destination without one.
/// "2 created · 1 updated · 5 unchanged · 2 skipped · 0 failed", the noughts of the first
/// three left out.
fn counts_line(run: &crate::store::runs::Run) -> String {
    let c = run.counters;
    let mut parts: Vec<String> = [
        (c.created, "created"),
        (c.updated, "updated"),
        (c.unchanged, "unchanged"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", format::count(n)))
    .collect();
    parts.push(format!("{} skipped", format::count(c.skipped)));
    parts.push(format!("{} failed", format::count(c.failed)));
    parts.join(" · ")
}

struct RemovalRow {
    destination: Destination,
    removal: Removal,
}

pub(crate) struct Removal {
    /// The latest clean-up run, if one was ever queued.
    run_id: Option<i64>,
    /// Its status, as the run's page shows it.
    status: &'static str,
    /// Queued or processing: the destination is deleted when it ends.
    running: bool,
    /// Why it stopped, when it did.
    message: String,
}

impl Removal {
    pub(crate) async fn of(state: &AppState, destination_id: i64) -> Result<Self, AppError> {
        Ok(
            match crate::store::runs::latest_cleanup(state.db.pool(), destination_id).await? {
                Some(run) => Removal {
                    run_id: Some(run.id),
                    status: run.status.label(),
                    running: !run.status.is_finished(),
                    message: run.message.unwrap_or_default(),
                },
                None => Removal {
                    run_id: None,
                    status: "Stopped",
                    running: false,
                    message: "No clean-up is queued.".into(),
                },
            },
        )
    }
}

#[derive(Template)]
#[template(path = "destinations/list.html")]
struct DestinationsPage {
    ctx: PageContext,
    /// The built-in sandbox is on: destinations may use it.
    sandbox: bool,
    rows: Vec<Row>,
    drafts: Vec<Row>,
    removals: Vec<RemovalRow>,
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let latest = crate::store::runs::latest_finished(state.db.pool()).await?;
    let (removing, others): (Vec<_>, Vec<_>) = destinations::list(state.db.pool())
        .await?
        .into_iter()
        .partition(|d| d.is_removing());
    let (active, drafts): (Vec<_>, Vec<_>) = others
        .into_iter()
        .map(|d| {
            let last = latest.iter().find(|r| r.destination_id == d.id);
            Row {
                created: format::timestamp(d.created_at),
                last_status: last
                    .map(|r| r.status.label().to_owned())
                    .unwrap_or_else(|| "Ready".into()),
                last_export: last
                    .and_then(|r| r.finished_at)
                    .map(format::timestamp)
                    .unwrap_or_else(|| "Never".into()),
                last_run: last.map(|r| r.id),
                last_counts: last.map(counts_line).unwrap_or_default(),
                destination: d,
            }
        })
        .partition(|r| r.destination.is_active());
    // A draft is its owner's business until it is saved.
    let drafts = drafts
        .into_iter()
        .filter(|r| r.destination.owner_id == ctx.user.id && ctx.user.is_administrator())
        .collect();
    let mut removals = Vec::with_capacity(removing.len());
    for destination in removing {
        removals.push(RemovalRow {
            removal: Removal::of(&state, destination.id).await?,
            destination,
        });
    }
    let page = DestinationsPage {
        ctx: ctx.at(Nav::ExportDestinations),
        sandbox: state.mailchimp.offers_sandbox(),
        rows: active,
        drafts,
        removals,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Template)]
#[template(path = "destinations/remove.html")]
struct RemovePage {
    ctx: PageContext,
    destination: Destination,
    /// Set when a removal was asked for before.
    removal: Option<Removal>,
    /// A clean-up is running: nothing to choose until it ends or is canceled.
    running: bool,
}

/// A saved destination, or one being removed (any administrator may see to it).
async fn load_for_removal(
    state: &AppState,
    ctx: &PageContext,
    id: i64,
) -> Result<(Destination, Option<Removal>), AppError> {
    let destination = destinations::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    if destination.is_removing() {
        let removal = Removal::of(state, id).await?;
        return Ok((destination, Some(removal)));
    }
    Ok((load(state, &ctx.user, id).await?, None))
}

async fn confirm_remove(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let (destination, removal) = load_for_removal(&state, &ctx, id).await?;
    Ok(render(&RemovePage {
        ctx: ctx.at(Nav::ExportDestinations),
        destination,
        running: removal.as_ref().is_some_and(|r| r.running),
        removal,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    in_mailchimp: String,
}

/// Removes a destination: at once when Mailchimp is left as it is; otherwise after a
/// clean-up run (its tags taken off, or the members it added archived). Running exports
/// are canceled; the stored credential goes with the destination.
async fn remove(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<RemoveForm>,
) -> Result<Redirect, AppError> {
    let (destination, removal) = load_for_removal(&state, &ctx, id).await?;
    if removal.as_ref().is_some_and(|r| r.running) {
        return Err(AppError::Conflict(
            "A clean-up for this destination is running. Cancel it on its run's page first, or wait for it to end.".into(),
        ));
    }
    let Some(how) = InMailchimp::parse(&form.in_mailchimp) else {
        return Err(AppError::BadRequest(
            "Choose what happens in Mailchimp.".into(),
        ));
    };
    let name = &destination.display_name;
    let (next, message) = match removal::remove(&state.engine, &destination, how, &ctx.user.actor())
        .await?
    {
        Removed::Now => (
            "/admin/export-destinations".to_owned(),
            format!(
                "Removed “{name}”. Its Mailchimp credential is deleted; the audience's members are as they were."
            ),
        ),
        Removed::AfterCleanup { run_id, kind } => (
            format!("/admin/export-runs/{run_id}"),
            format!(
                "Removing “{name}”: {} in Mailchimp first, then the destination and its credential are deleted. This page follows the clean-up; it stays in System > Status.",
                removal::cleanup_words(kind)
            ),
        ),
    };
    session::set_flash(&session, message).await?;
    Ok(Redirect::to(&next))
}
