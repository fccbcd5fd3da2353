//! The signed-in person's own account: changing their password. The current password is
//! asked for again; on success this session continues under a new id and every other
//! session of the account ends.

use askama::Template;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::auth::throttle::{self, Reentered};
use crate::domain::NewPassword;
use crate::domain::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::state::AppState;
use crate::store::{audit, users};
use crate::web::AppError;
use crate::web::page::{Nav, PageContext, render};

pub fn router() -> Router<AppState> {
    Router::new().route("/account/password", get(form).post(change))
}

#[derive(Template)]
#[template(path = "account_password.html")]
struct PasswordPage {
    ctx: PageContext,
    errors: Vec<(&'static str, String)>,
    min: usize,
    max: usize,
}

impl PasswordPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }
}

async fn form(ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&PasswordPage {
        ctx: ctx.at(Nav::Account),
        errors: Vec::new(),
        min: MIN_PASSWORD_CHARS,
        max: MAX_PASSWORD_CHARS,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

async fn change(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    ctx: PageContext,
    Form(input): Form<Change>,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let user = users::find_by_id(pool, ctx.user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut errors = Vec::new();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    match throttle::reenter(
        pool,
        state.settings.sign_in_throttle,
        &state.hasher,
        &user.email,
        user.password_hash.clone(),
        input.current,
        peer.ip(),
    )
    .await?
    {
        Reentered::Right => {}
        Reentered::Wrong => errors.push((
            "current",
            "Current password: this is not your password.".to_owned(),
        )),
        Reentered::Paused { remaining_ms } => {
            tracing::warn!(
                user_id = user.id,
                "change password: paused after wrong passwords"
            );
            status = StatusCode::TOO_MANY_REQUESTS;
            errors.push((
                "current",
                format!(
                    "Current password: too many wrong passwords, so password checks are paused; {}.",
                    throttle::try_again_in(remaining_ms)
                ),
            ));
        }
    }
    let new = match NewPassword::parse(input.new.clone()) {
        Ok(password) => Some(password),
        Err(err) => {
            errors.push(("new", format!("New password: {err}.")));
            None
        }
    };
    if input.confirm != input.new {
        errors.push((
            "confirm",
            "Repeat the new password: the two new passwords differ.".to_owned(),
        ));
    }
    let (true, Some(new)) = (errors.is_empty(), new) else {
        let page = PasswordPage {
            ctx: ctx.at(Nav::Account),
            errors,
            min: MIN_PASSWORD_CHARS,
            max: MAX_PASSWORD_CHARS,
        };
        return Ok((status, render(&page)?).into_response());
    };
    let hash = state.hasher.hash(&new).await?;
    let mut tx = crate::db::begin_write(pool).await?;
    let changed_at = users::set_password(&mut *tx, user.id, &hash).await?;
    let actor = audit::Actor {
        user_id: user.id,
        email: &user.email,
    };
    audit::record(
        &mut *tx,
        &actor,
        "changed password",
        None,
        &user.email,
        "Other sessions of this account were signed out.",
    )
    .await?;
    tx.commit().await?;
    // This browser stays signed in, under a new session id; every other session ends.
    session::sign_in(&session, user.id, changed_at).await?;
    session::set_flash(
        &session,
        "Your password was changed. Any other place you were signed in has been signed out.",
    )
    .await?;
    tracing::info!(user_id = user.id, "password changed");
    Ok(Redirect::to("/account/password").into_response())
}
