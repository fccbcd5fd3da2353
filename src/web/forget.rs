//! Forget a customer, from the profile's page (Administrators): a confirmation naming what
//! is deleted, then what became of the customer in each audience.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::Role;
use crate::export::forget::{self, Erasure};
use crate::state::AppState;
use crate::store::profiles::Profile;
use crate::web::AppError;
use crate::web::current_user::require;
use crate::web::found::Found;
use crate::web::page::{Nav, PageContext, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/data/profiles/{id}/forget", get(confirm).post(submit))
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Administrator,
            require,
        ))
}

#[derive(Template)]
#[template(path = "data/forget.html")]
struct ConfirmPage {
    ctx: PageContext,
    id: i64,
    customer_id: String,
    /// Destinations that exported the customer.
    destinations: Vec<String>,
}

#[derive(Template)]
#[template(path = "data/forgotten.html")]
struct ForgottenPage {
    ctx: PageContext,
    customer_id: String,
    erasures: Vec<Erasure>,
}

async fn confirm(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(profile): Found<Profile>,
) -> Result<Response, AppError> {
    let (pool, id) = (state.db.pool(), profile.id);
    let mut conn = pool.acquire().await?;
    let exported =
        crate::store::forgetting::ledger_entries(&mut conn, &profile.customer_id).await?;
    drop(conn);
    let mut destinations = Vec::new();
    for (destination_id, _, sent) in exported {
        if !sent {
            continue;
        }
        if let Some(d) = crate::store::destinations::find(pool, destination_id).await? {
            destinations.push(d.display_name);
        }
    }
    let page = ConfirmPage {
        ctx: ctx.at(Nav::Profiles),
        id,
        customer_id: profile.customer_id,
        destinations,
    };
    Ok(render(&page)?.into_response())
}

async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(profile): Found<Profile>,
) -> Result<Response, AppError> {
    let forgotten = forget::forget(&state.engine, &profile.customer_id, &ctx.user.actor())
        .await?
        .ok_or(AppError::NotFound)?;
    tracing::info!(user_id = ctx.user.id, "a customer was forgotten");
    let page = ForgottenPage {
        ctx: ctx.at(Nav::Profiles),
        customer_id: forgotten.customer_id,
        erasures: forgotten.erasures,
    };
    Ok(render(&page)?.into_response())
}
