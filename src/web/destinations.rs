//! Admin > Export destinations: where exports to Mailchimp are set up and run.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::web::AppError;
use crate::web::page::{Nav, PageContext, render};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/export-destinations", get(list))
}

#[derive(Template)]
#[template(path = "destinations/list.html")]
struct DestinationsPage {
    ctx: PageContext,
    /// Mailchimp is the built-in sandbox (no Mailchimp OAuth app is configured).
    sandbox: bool,
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let page = DestinationsPage {
        ctx: ctx.at(Nav::ExportDestinations),
        sandbox: state.mailchimp.is_sandbox,
    };
    Ok(render(&page)?.into_response())
}
