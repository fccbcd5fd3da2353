//! Authenticate with Mailchimp: the OAuth round trip of a destination's set-up. The `state`
//! is made here, bound to the session, the person and the destination, and used once.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::connect::{self, ConnectError, RefusalKind};
use crate::mailchimp::oauth;
use crate::state::AppState;
use crate::web::AppError;
use crate::web::destinations::setup::{page, setup_or_edit, store_verified};
use crate::web::destinations::{Editable, load};
use crate::web::page::{Nav, PageContext, render};

const OAUTH_SESSION_KEY: &str = "oauth.mailchimp";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/export-destinations/{id}/authenticate",
            post(authenticate),
        )
        .route("/oauth/mailchimp/callback", get(callback))
}

/// What the callback needs to trust: a state made here, for this destination and person.
#[derive(Serialize, Deserialize)]
struct PendingOAuth {
    state: String,
    destination_id: i64,
    user_id: i64,
}

/// Authenticate with Mailchimp: off to Mailchimp's consent page with a one-time state.
async fn authenticate(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Editable(destination): Editable,
) -> Result<Response, AppError> {
    let id = destination.id;
    let started = match state.mailchimp.of(destination.target) {
        Ok(endpoints) => oauth::authorize_url(endpoints).map_err(|e| e.to_string()),
        Err(off) => Err(off.to_string()),
    };
    let (url, csrf) = match started {
        Ok(started) => started,
        Err(why) => {
            let mut page = page(&state, ctx, Some(destination)).await?;
            page.auth_error = Some(why);
            return Ok((StatusCode::CONFLICT, render(&page)?).into_response());
        }
    };
    let pending = PendingOAuth {
        state: csrf,
        destination_id: id,
        user_id: ctx.user.id,
    };
    session.insert(OAUTH_SESSION_KEY, pending).await?;
    Ok(Redirect::to(url.as_str()).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "destinations/oauth_problem.html")]
struct ProblemPage {
    ctx: PageContext,
    title: String,
    message: String,
    back: Option<String>,
}

fn problem(
    ctx: PageContext,
    status: StatusCode,
    title: &str,
    message: String,
    back: Option<String>,
) -> Result<Response, AppError> {
    let page = ProblemPage {
        ctx: ctx.at(Nav::ExportDestinations),
        title: title.into(),
        message,
        back,
    };
    Ok((status, render(&page)?).into_response())
}

/// Back from Mailchimp: the state is checked (and used up) before anything else.
async fn callback(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let pending: Option<PendingOAuth> = session.remove(OAUTH_SESSION_KEY).await?;
    let valid = match (&pending, &query.state) {
        (Some(p), Some(s)) => {
            crate::crypto::constant_time_eq(&p.state, s) && p.user_id == ctx.user.id
        }
        _ => false,
    };
    let Some(pending) = pending.filter(|_| valid) else {
        tracing::warn!(
            user_id = ctx.user.id,
            "Mailchimp callback with a missing, forged or used state"
        );
        return problem(
            ctx,
            StatusCode::BAD_REQUEST,
            "This sign-in to Mailchimp cannot be used",
            "It was not started from this console by you, or it was already used. Nothing was changed. \
             Start again with Authenticate with Mailchimp."
                .into(),
            Some("/admin/export-destinations".into()),
        );
    };
    let id = pending.destination_id;
    let back = Some(setup_or_edit(&state, id).await?);
    let destination = load(&state, &ctx.user, id).await?;
    if query.error.is_some() || query.code.is_none() {
        return problem(
            ctx,
            StatusCode::BAD_REQUEST,
            "Mailchimp access was not granted",
            "Mailchimp said access was denied, so the destination is not connected. You can try again.".into(),
            back,
        );
    }
    let code = query.code.unwrap_or_default();
    let client = &state.mailchimp_client;
    let endpoints = match state.mailchimp.of(destination.target) {
        Ok(endpoints) => endpoints,
        Err(off) => {
            return problem(
                ctx,
                StatusCode::CONFLICT,
                "This Mailchimp is not available",
                off.to_string(),
                back,
            );
        }
    };
    let token = match oauth::exchange(endpoints, client.http(), &code).await {
        Ok(token) => token,
        Err(err) => {
            tracing::warn!(error = %err, "Mailchimp code exchange failed");
            return problem(
                ctx,
                StatusCode::BAD_GATEWAY,
                "Mailchimp did not complete the sign-in",
                format!("{err}. Try again."),
                back,
            );
        }
    };
    let metadata = match client.metadata(endpoints, &token).await {
        Ok(m) => m,
        Err(err) => {
            return problem(
                ctx,
                StatusCode::BAD_GATEWAY,
                "Mailchimp did not say which account this is",
                format!("{err}."),
                back,
            );
        }
    };
    let verified = match connect::verify_token(
        &state,
        &token,
        &metadata.api_endpoint,
        &metadata.accountname,
        &destination.audience_id,
    )
    .await
    {
        Ok(verified) => verified,
        Err(err) => {
            let (status, title, message) = refusal_page(&err);
            return problem(ctx, status, title, message, back);
        }
    };
    store_verified(&state, &ctx, &destination, &verified).await?;
    Ok(Redirect::to(back.as_deref().unwrap_or("/admin/export-destinations")).into_response())
}

/// How the set-up pages show a refused connection: status, title, explanation.
fn refusal_page(err: &ConnectError) -> (StatusCode, &'static str, String) {
    match err {
        ConnectError::UnknownMailchimp => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "No such Mailchimp",
            err.to_string(),
        ),
        ConnectError::SandboxOff(off) => (
            StatusCode::CONFLICT,
            "This Mailchimp is not available",
            off.to_string(),
        ),
        ConnectError::NoDataCentre => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The API key names no data centre",
            err.to_string(),
        ),
        ConnectError::Refused(refusal) => {
            let status = match refusal.kind {
                RefusalKind::NoSuchAudience => StatusCode::NOT_FOUND,
                RefusalKind::AudienceNotAllowed => StatusCode::FORBIDDEN,
                RefusalKind::CredentialRefused => StatusCode::UNAUTHORIZED,
                RefusalKind::Unreachable => StatusCode::BAD_GATEWAY,
            };
            (status, refusal.title(), refusal.explanation())
        }
    }
}
