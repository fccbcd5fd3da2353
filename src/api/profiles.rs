//! Profiles through the API: forgetting a customer.

use axum::Json;
use axum::extract::{Path, State};

use crate::api::{ApiUser, Problem};
use crate::domain::Role;
use crate::export::forget::{self, Forgotten};
use crate::state::AppState;
use crate::store::audit::Actor;

/// Forget a customer everywhere (Administrators): the profile and its traces are deleted,
/// every destination that exported it deletes the member for good in Mailchimp (now, or
/// with its next run when Mailchimp does not take it), and the address is never sent again.
/// The audit log records who and when, never the address.
#[utoipa::path(post, path = "/api/v1/profiles/{customer_id}/forget", tag = "profiles",
    params(("customer_id" = String, Path, description = "The profile's customer ID")),
    responses((status = 200, body = Forgotten),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn forget_customer(
    State(state): State<AppState>,
    user: ApiUser,
    Path(customer_id): Path<String>,
) -> Result<Json<Forgotten>, Problem> {
    user.require(Role::Administrator)?;
    let actor = Actor {
        user_id: user.id,
        email: &user.email,
    };
    forget::forget(&state.engine, &customer_id, &actor)
        .await?
        .map(Json)
        .ok_or_else(Problem::not_found)
}
