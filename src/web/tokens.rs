//! API tokens: each person's own personal tokens for the automation API. A new token is
//! shown once; only its digest is kept.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::state::AppState;
use crate::store::api_tokens::{self, TokenInfo};
use crate::web::current_user::CurrentUser;
use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api-tokens", get(list).post(create))
        .route("/admin/api-tokens/{id}/revoke", post(revoke))
}

#[derive(Template)]
#[template(path = "api_tokens.html")]
struct TokensPage {
    ctx: PageContext,
    tokens: Vec<(TokenInfo, String, String)>,
    new_token: Option<String>,
    error: Option<String>,
}

async fn page(
    state: &AppState,
    ctx: PageContext,
    new_token: Option<String>,
    error: Option<String>,
) -> Result<TokensPage, AppError> {
    let tokens = api_tokens::list(state.db.pool(), ctx.user.id)
        .await?
        .into_iter()
        .map(|t| {
            let created = format::timestamp(t.created_at);
            let used = format::optional_timestamp(t.last_used_at);
            (t, created, used)
        })
        .collect();
    Ok(TokensPage {
        ctx: ctx.at(Nav::ApiTokens),
        tokens,
        new_token,
        error,
    })
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, None, None).await?)?.into_response())
}

#[derive(Deserialize)]
struct NewToken {
    #[serde(default)]
    name: String,
}

async fn create(
    State(state): State<AppState>,
    ctx: PageContext,
    Form(input): Form<NewToken>,
) -> Result<Response, AppError> {
    let name = match crate::domain::text::clean_name(&input.name, 100) {
        Ok(name) => name,
        Err(err) => {
            let message = match err {
                crate::domain::text::NameError::Invisible(_) => format!("Name: {err}."),
                _ => "Name: say what the token is for, in 1 to 100 characters.".to_owned(),
            };
            let page = page(&state, ctx, None, Some(message)).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
        }
    };
    let token = api_tokens::create(state.db.pool(), ctx.user.id, &name).await?;
    tracing::info!(user_id = ctx.user.id, "API token created");
    // Shown in this response only: the page is not cached (no-store) and the token is not kept.
    Ok(render(&page(&state, ctx, Some(token), None).await?)?.into_response())
}

async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    if !api_tokens::revoke(state.db.pool(), user.id, id).await? {
        return Err(AppError::NotFound);
    }
    session::set_flash(&session, "The token is revoked: calls with it now get 401.").await?;
    Ok(Redirect::to("/admin/api-tokens"))
}
