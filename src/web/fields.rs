//! Data > Fields: the profile field catalogue, what uses each field, and deleting one that
//! nothing uses (Administrators).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_sessions::Session;

use crate::auth::session;
use crate::state::AppState;
use crate::store::{audit, fields};
use crate::web::AppError;
use crate::web::page::{Nav, PageContext, render};

/// What every signed-in person may see.
pub fn router() -> Router<AppState> {
    Router::new().route("/data/fields", get(list))
}

/// What only administrators may do.
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/data/fields/{id}/delete", get(confirm).post(delete))
}

struct Row {
    id: i64,
    name: String,
    field_type: &'static str,
    uses: Vec<String>,
}

#[derive(Template)]
#[template(path = "data/fields.html")]
struct FieldsPage {
    ctx: PageContext,
    rows: Vec<Row>,
    max: usize,
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let all = fields::list(pool).await?;
    let users = fields::Users::load(pool).await?;
    let rows = all
        .iter()
        .map(|field| Row {
            id: field.id,
            name: field.name.clone(),
            field_type: field.field_type.as_str(),
            uses: users.of(&all, field),
        })
        .collect();
    Ok(render(&FieldsPage {
        ctx: ctx.at(Nav::Fields),
        rows,
        max: fields::MAX_FIELDS,
    })?
    .into_response())
}

#[derive(Template)]
#[template(path = "data/field_delete.html")]
struct ConfirmPage {
    ctx: PageContext,
    id: i64,
    name: String,
}

async fn confirm(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let field = unused_field(&state, id).await?;
    Ok(render(&ConfirmPage {
        ctx: ctx.at(Nav::Fields),
        id,
        name: field.name,
    })?
    .into_response())
}

/// The field, if nothing uses it: only such a field may be deleted.
async fn unused_field(state: &AppState, id: i64) -> Result<fields::Field, AppError> {
    let pool = state.db.pool();
    let all = fields::list(pool).await?;
    let field = all
        .iter()
        .find(|f| f.id == id)
        .cloned()
        .ok_or(AppError::NotFound)?;
    let uses = fields::Users::load(pool).await?.of(&all, &field);
    if !uses.is_empty() {
        return Err(AppError::Conflict(format!(
            "The field “{}” is used by {}; change those first.",
            field.name,
            uses.join(", ")
        )));
    }
    Ok(field)
}

async fn delete(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let field = unused_field(&state, id).await?;
    let pool = state.db.pool();
    fields::delete(&state.db, &field).await?;
    let actor = audit::Actor {
        user_id: ctx.user.id,
        email: &ctx.user.email,
    };
    audit::record(
        pool,
        &actor,
        "deleted field",
        None,
        &field.name,
        "its values were removed from every profile",
    )
    .await?;
    tracing::info!(
        user_id = ctx.user.id,
        field_id = id,
        "profile field deleted"
    );
    session::set_flash(
        &session,
        format!(
            "Deleted the field “{}” and its values from every profile.",
            field.name
        ),
    )
    .await?;
    Ok(Redirect::to("/data/fields"))
}
