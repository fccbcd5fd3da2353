//! Admin > Audit log: consent, connections, export users, saves, edits and removals.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;
use crate::store::audit::{self, Entry};
use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/audit-log", get(page))
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditPage {
    ctx: PageContext,
    entries: Vec<(String, Entry)>,
}

async fn page(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let entries = audit::recent(state.db.pool(), 500)
        .await?
        .into_iter()
        .map(|e| (format::timestamp(e.at), e))
        .collect();
    Ok(render(&AuditPage {
        ctx: ctx.at(Nav::AuditLog),
        entries,
    })?
    .into_response())
}
