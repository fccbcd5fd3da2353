//! Admin > Users: administrators add accounts, set roles, deactivate and reactivate.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::domain::{EmailAddress, NewPassword, PersonName, Role};
use crate::state::AppState;
use crate::store::users::Guarded;
use crate::store::{self, users};
use crate::web::current_user::CurrentUser;
use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(add))
        .route("/admin/users/{id}/role", post(change_role))
        .route("/admin/users/{id}/deactivate", post(deactivate))
        .route("/admin/users/{id}/reactivate", post(reactivate))
}

struct UserRow {
    id: i64,
    name: String,
    email: String,
    role: Role,
    active: bool,
    created: String,
    last_sign_in: String,
    is_me: bool,
}

#[derive(Default)]
struct AddForm {
    name: String,
    email: String,
    role: String,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "users/list.html")]
struct UsersPage {
    ctx: PageContext,
    users: Vec<UserRow>,
    roles: [Role; 3],
    form: AddForm,
}

async fn page(state: &AppState, ctx: PageContext, form: AddForm) -> Result<UsersPage, AppError> {
    let users = users::list(state.db.pool())
        .await?
        .into_iter()
        .map(|user| UserRow {
            is_me: user.id == ctx.user.id,
            active: user.is_active(),
            created: format::timestamp(user.created_at),
            last_sign_in: format::optional_timestamp(user.last_sign_in_at),
            id: user.id,
            name: user.name,
            email: user.email,
            role: user.role,
        })
        .collect();
    Ok(UsersPage {
        ctx: ctx.at(Nav::Users),
        users,
        roles: Role::ALL,
        form,
    })
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let form = AddForm {
        role: Role::Viewer.as_str().to_owned(),
        ..AddForm::default()
    };
    Ok(render(&page(&state, ctx, form).await?)?.into_response())
}

#[derive(Deserialize)]
struct NewUserForm {
    name: String,
    email: String,
    role: String,
    password: String,
}

async fn add(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Form(input): Form<NewUserForm>,
) -> Result<Response, AppError> {
    let name = PersonName::parse(&input.name);
    let email = EmailAddress::parse(&input.email);
    let role = input.role.parse::<Role>();
    let password = NewPassword::parse(input.password);
    let mut errors = Vec::new();
    if let Err(e) = &name {
        errors.push(format!("Name: {e}."));
    }
    if let Err(e) = &email {
        errors.push(format!("Email: {e}."));
    }
    if role.is_err() {
        errors.push("Role: choose Administrator, Contributor or Viewer.".into());
    }
    if let Err(e) = &password {
        errors.push(format!("Initial password: {e}."));
    }
    let mut form = AddForm {
        name: input.name,
        email: input.email,
        role: input.role,
        errors,
    };
    if let (Ok(name), Ok(email), Ok(role), Ok(password)) = (name, email, role, password) {
        let hash = state.hasher.hash(&password).await?;
        let new_user = users::NewUser {
            email: &email,
            name: &name,
            role,
            password_hash: &hash,
        };
        match users::insert(state.db.pool(), new_user).await {
            Ok(id) => {
                tracing::info!(
                    by = ctx.user.id,
                    user_id = id,
                    role = role.as_str(),
                    "user added"
                );
                session::set_flash(&session, format!("{name} can now sign in as {role}.")).await?;
                return Ok(Redirect::to("/admin/users").into_response());
            }
            Err(err) if store::is_unique_violation(&err) => form
                .errors
                .push(format!("Email: {email} already has an account.")),
            Err(err) => return Err(err.into()),
        }
    }
    let page = page(&state, ctx, form).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn change_role(
    State(state): State<AppState>,
    me: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
    Form(input): Form<RoleForm>,
) -> Result<Response, AppError> {
    let role: Role = input.role.parse().map_err(|_| AppError::NotFound)?;
    let change = Guarded::Role(role);
    let own = "You cannot change your own role: ask another administrator.";
    let message = guarded(&state, &me, id, change, own, |name| {
        format!("{name} is now {role}.")
    })
    .await?;
    back_to_users(&session, message).await
}

async fn deactivate(
    State(state): State<AppState>,
    me: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let own = "You cannot deactivate your own account.";
    let message = guarded(&state, &me, id, Guarded::Deactivate, own, |name| {
        format!("{name} is deactivated and signed out everywhere.")
    })
    .await?;
    back_to_users(&session, message).await
}

/// A change to another account that must leave the console an active administrator: refused
/// for one's own account (`own` says so) and when it would leave none. What to say back.
async fn guarded(
    state: &AppState,
    me: &CurrentUser,
    id: i64,
    change: Guarded,
    own: &str,
    done: impl FnOnce(&str) -> String,
) -> Result<String, AppError> {
    let target = target_user(state, id).await?;
    if target.id == me.id {
        return Ok(own.to_owned());
    }
    if !users::change_keeping_an_administrator(&state.db, id, change).await? {
        return Ok(LAST_ADMINISTRATOR.to_owned());
    }
    match change {
        Guarded::Role(role) => {
            tracing::info!(
                by = me.id,
                user_id = id,
                role = role.as_str(),
                "role changed"
            );
        }
        Guarded::Deactivate => tracing::info!(by = me.id, user_id = id, "user deactivated"),
    }
    Ok(done(&target.name))
}

async fn reactivate(
    State(state): State<AppState>,
    me: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let target = target_user(&state, id).await?;
    users::set_deactivated(state.db.pool(), id, None).await?;
    tracing::info!(by = me.id, user_id = id, "user reactivated");
    back_to_users(&session, format!("{} can sign in again.", target.name)).await
}

const LAST_ADMINISTRATOR: &str = "The console needs at least one active administrator.";

/// The account an administrator acts on.
async fn target_user(state: &AppState, id: i64) -> Result<users::User, AppError> {
    users::find_by_id(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)
}

/// Back to the list of users, saying what was done.
async fn back_to_users(session: &Session, message: String) -> Result<Response, AppError> {
    session::set_flash(session, message).await?;
    Ok(Redirect::to("/admin/users").into_response())
}
