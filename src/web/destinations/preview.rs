//! A destination's Preview: what an export would do now, computed in the background
//! without writing to Mailchimp. The set-up opens it after the first Save, and a first
//! export whose preview found problems asks for confirmation here.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use crate::actions::previews;
use crate::domain::Role;
use crate::export::preview::{self, Preview};
use crate::state::AppState;
use crate::store::destinations::Destination;
use crate::store::previews::{self as kept, State as PreviewState};
use crate::web::current_user::{CurrentUser, require};
use crate::web::destinations::Active;
use crate::web::page::{PageContext, render};
use crate::web::pairs::StartForm;
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    let read = Router::new().route("/admin/export-destinations/{id}/preview", get(show));
    let write = Router::new()
        .route("/admin/export-destinations/{id}/preview", post(start))
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Contributor,
            require,
        ));
    read.merge(write)
}

async fn start(
    State(state): State<AppState>,
    user: CurrentUser,
    Active(destination): Active,
    Form(form): Form<StartForm>,
) -> Result<Redirect, AppError> {
    let id = destination.id;
    let full = form.full();
    previews::begin(&state.engine, destination, full, user.id).await?;
    Ok(Redirect::to(&format!(
        "/admin/export-destinations/{id}/preview"
    )))
}

#[derive(Template)]
#[template(path = "destinations/preview.html")]
pub(crate) struct PreviewPage {
    ctx: PageContext,
    destination: Destination,
    computing: bool,
    /// Why the last preview could not be computed.
    failed: Option<String>,
    preview: Option<Preview>,
    computed: String,
    growth: String,
    /// No export has run yet: the preview stands before the first one.
    first: bool,
    /// The person pressed Export and the preview found problems: it asks first.
    confirming: bool,
}

impl PreviewPage {
    fn blocking(&self) -> bool {
        self.preview.as_ref().is_some_and(Preview::is_blocking)
    }
}

pub(crate) async fn page(
    state: &AppState,
    ctx: PageContext,
    destination: Destination,
    confirming: bool,
) -> Result<PreviewPage, AppError> {
    let pool = state.db.pool();
    let stored = kept::find(pool, destination.id).await?;
    let first = !crate::store::runs::has_exported(pool, destination.id).await?;
    let (computing, failed, preview, computed) = match stored {
        None => (false, None, None, String::new()),
        Some(s) => match s.state {
            PreviewState::Computing => (true, None, None, String::new()),
            PreviewState::Failed => (false, s.message, None, String::new()),
            PreviewState::Done => (
                false,
                None,
                s.body.as_deref().and_then(preview::decode),
                format::optional_timestamp(s.finished_at),
            ),
        },
    };
    let growth = preview
        .as_ref()
        .map(|p| match p.growth_percent() {
            Some(pct) => format!(
                "from {} to {} contacts (+{:.1} %)",
                format::num(p.audience_contacts),
                format::num(p.audience_contacts + p.create),
                pct
            ),
            None => format!("from no contacts to {}", format::num(p.create)),
        })
        .unwrap_or_default();
    Ok(PreviewPage {
        ctx,
        destination,
        computing,
        failed,
        preview,
        computed,
        growth,
        first,
        confirming,
    })
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Active(destination): Active,
) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, destination, false).await?)?.into_response())
}
