//! Signing in and out, and creating the first administrator of a new console.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::auth::throttle::{self, Admission};
use crate::domain::{EmailAddress, NewPassword, PersonName, Role};
use crate::state::AppState;
use crate::store::users;
use crate::web::AppError;
use crate::web::csrf::PreSession;
use crate::web::page::render;

/// Where people land after signing in.
pub const HOME: &str = "/admin/export-destinations";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/setup", get(setup_page).post(setup))
}

async fn root(State(state): State<AppState>, session: Session) -> Result<Redirect, AppError> {
    if users::count(state.db.pool()).await? == 0 {
        return Ok(Redirect::to("/setup"));
    }
    Ok(match session::user_id(&session).await? {
        Some(_) => Redirect::to(HOME),
        None => Redirect::to("/sign-in"),
    })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    csrf_token: String,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(
    State(state): State<AppState>,
    session: Session,
    pre: PreSession,
    Query(query): Query<NextQuery>,
) -> Result<Response, AppError> {
    if users::count(state.db.pool()).await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let page = SignInPage {
        csrf_token: pre.token_for(&session).await?,
        email: String::new(),
        next: safe_next(query.next.as_deref()).to_owned(),
        error: None,
    };
    Ok(pre.attach(render(&page)?.into_response()))
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    pre: PreSession,
    Form(form): Form<SignInForm>,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let csrf_token = pre.token_for(&session).await?;
    let refuse = |status: StatusCode, error: String| -> Result<Response, AppError> {
        let page = SignInPage {
            csrf_token: csrf_token.clone(),
            email: form.email.trim().to_owned(),
            next: safe_next(Some(&form.next)).to_owned(),
            error: Some(error),
        };
        Ok((status, render(&page)?).into_response())
    };
    // Counted before the password is checked (one atomic step in the database), so a
    // burst of guesses checks no more passwords than the limit.
    let attempt = match throttle::admit(
        pool,
        state.settings.sign_in_throttle,
        &form.email,
        peer.ip(),
    )
    .await?
    {
        Admission::Check(attempt) => attempt,
        Admission::Paused { remaining_ms } => {
            tracing::warn!(ip = %peer.ip(), "sign-in refused: paused after repeated failures");
            return refuse(StatusCode::TOO_MANY_REQUESTS, locked_message(remaining_ms));
        }
    };
    let user = match EmailAddress::parse(&form.email) {
        Ok(email) => users::find_by_email(pool, &email).await?,
        Err(_) => None,
    };
    let verified = state
        .hasher
        .verify(
            form.password.clone(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
    match user {
        Some(user) if verified && user.is_active() => {
            attempt.succeeded(pool).await?;
            users::record_sign_in(pool, user.id).await?;
            session::sign_in(&session, user.id, user.password_changed_at).await?;
            tracing::info!(user_id = user.id, "signed in");
            Ok(Redirect::to(safe_next(Some(&form.next))).into_response())
        }
        Some(user) if verified => {
            attempt.succeeded(pool).await?;
            tracing::info!(user_id = user.id, "sign-in refused: account deactivated");
            refuse(
                StatusCode::FORBIDDEN,
                "This account has been deactivated. Ask an administrator to reactivate it.".into(),
            )
        }
        _ => match attempt.failed() {
            Some(remaining_ms) => {
                tracing::warn!(ip = %peer.ip(), "sign-in paused after repeated failures");
                refuse(StatusCode::TOO_MANY_REQUESTS, locked_message(remaining_ms))
            }
            None => refuse(
                StatusCode::UNAUTHORIZED,
                "The email address or password is not right.".into(),
            ),
        },
    }
}

fn locked_message(remaining_ms: i64) -> String {
    format!(
        "Too many failed sign-in attempts. Sign-in is paused; {}.",
        throttle::try_again_in(remaining_ms)
    )
}

/// A relative path on this console, or the home page: never another site.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => HOME,
    }
}

async fn sign_out(session: Session) -> Result<Redirect, AppError> {
    session::sign_out(&session).await?;
    Ok(Redirect::to("/sign-in"))
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf_token: String,
    name: String,
    email: String,
    errors: Vec<String>,
}

async fn setup_page(
    State(state): State<AppState>,
    session: Session,
    pre: PreSession,
) -> Result<Response, AppError> {
    if users::count(state.db.pool()).await? > 0 {
        return Err(AppError::NotFound);
    }
    let page = SetupPage {
        csrf_token: pre.token_for(&session).await?,
        name: String::new(),
        email: String::new(),
        errors: Vec::new(),
    };
    Ok(pre.attach(render(&page)?.into_response()))
}

#[derive(Deserialize)]
struct SetupForm {
    name: String,
    email: String,
    password: String,
    password_confirmation: String,
}

async fn setup(
    State(state): State<AppState>,
    session: Session,
    pre: PreSession,
    Form(form): Form<SetupForm>,
) -> Result<Response, AppError> {
    if users::count(state.db.pool()).await? > 0 {
        return Err(AppError::NotFound);
    }
    let name = PersonName::parse(&form.name);
    let email = EmailAddress::parse(&form.email);
    let password = NewPassword::parse(form.password.clone());
    let mut errors = Vec::new();
    if let Err(e) = &name {
        errors.push(format!("Name: {e}."));
    }
    if let Err(e) = &email {
        errors.push(format!("Email: {e}."));
    }
    if let Err(e) = &password {
        errors.push(format!("Password: {e}."));
    }
    if form.password != form.password_confirmation {
        errors.push("Password: the two passwords are not the same.".into());
    }
    let (Ok(name), Ok(email), Ok(password), true) = (name, email, password, errors.is_empty())
    else {
        let page = SetupPage {
            csrf_token: pre.token_for(&session).await?,
            name: form.name,
            email: form.email,
            errors,
        };
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
    };
    let hash = state.hasher.hash(&password).await?;
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    let new_user = users::NewUser {
        email: &email,
        name: &name,
        role: Role::Administrator,
        password_hash: &hash,
    };
    let user_id = users::insert(&mut *tx, new_user).await?;
    if users::claim_first_admin(&mut *tx, user_id).await.is_err() {
        // Someone else completed the set-up a moment ago.
        return Err(AppError::NotFound);
    }
    tx.commit().await?;
    session::sign_in(&session, user_id, 0).await?;
    session::set_flash(
        &session,
        format!("Welcome, {name}. You are this console's first administrator."),
    )
    .await?;
    tracing::info!(user_id, "first administrator created");
    Ok(Redirect::to(HOME).into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_relative_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/admin/users")), "/admin/users");
        assert_eq!(safe_next(Some("//evil.example")), super::HOME);
        assert_eq!(safe_next(Some("/\\evil.example")), super::HOME);
        assert_eq!(safe_next(Some("https://evil.example")), super::HOME);
        assert_eq!(safe_next(None), super::HOME);
    }
}
