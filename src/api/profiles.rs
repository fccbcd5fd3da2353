//! `/api/v1/profiles`: profiles pushed by pipelines (one with PUT, up to 10,000 with POST),
//! typed and checked as an import's rows; deleting one; forgetting a customer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::api::extract::{BulkRow, JsonObject, ProfileRows, RowAt};
use crate::api::models::{
    ProfileFieldsIn, ProfileIn, ProfileWritten, ProfilesPushed, RowOutcome, RowResult,
};
use crate::api::{Administrator, Contributor, FieldError, Problem};
use crate::export::forget::{self, Forgotten};
use crate::profiles::push::{self, PushError, Pushed, Refused};
use crate::profiles::row::Fault;
use crate::state::AppState;
use crate::store::audit::Actor;
use crate::store::profiles::{self, Outcome};

/// Create or update one customer's profile (Contributors and Administrators), as an import
/// row does: the fields given are set and the others kept, `null` clears one, and a field
/// the catalogue does not have yet is added with the type its value suggests. A value that
/// does not fit its field's type is refused (422, naming the field) and nothing is written.
/// Segments take the change in at their next refresh.
#[utoipa::path(put, path = "/api/v1/profiles/{customer_id}", tag = "profiles",
    params(("customer_id" = String, Path, description = "The profile's customer ID (1 to 200 characters)")),
    request_body(content = ProfileFieldsIn, description = "The fields to set; a customer_id in it must be the path's"),
    responses((status = 200, body = ProfileWritten, description = "Updated, or unchanged (nothing was written)"),
        (status = 201, body = ProfileWritten, description = "Created")))]
pub async fn put_profile(
    State(state): State<AppState>,
    _: Contributor,
    Path(customer_id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, Problem> {
    let pushed = one_profile(customer_id, body)?;
    let outcome = push::push_one(&state.db, &pushed)
        .await
        .map_err(refused_whole)?
        .map_err(|fault| {
            let detail = format!("The profile was not written: {fault}");
            Problem::invalid_because(detail, vec![field_error(fault)])
        })?;
    let customer_id = pushed.customer_id.trim().to_owned();
    let stored = profiles::find_by_customer(state.db.pool(), &customer_id).await?;
    let fields = stored.map(|p| values_of(&p.attributes)).unwrap_or_default();
    let status = if outcome == Outcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let written = ProfileWritten {
        customer_id,
        outcome,
        fields,
    };
    Ok((status, Json(written)).into_response())
}

/// The path's customer ID and the body's fields; a `customer_id` in the body must be the
/// path's (it is then left out).
fn one_profile(customer_id: String, mut body: Map<String, Value>) -> Result<Pushed, Problem> {
    if let Some(given) = body.remove(push::ID_KEY) {
        let given = push::customer_id_of(&given);
        if given.as_deref().map(str::trim) != Some(customer_id.trim()) {
            let message =
                "The body's customer_id is not the path's: leave it out, or send the same.";
            return Err(Problem::invalid(vec![FieldError {
                field: push::ID_KEY.into(),
                message: message.into(),
            }]));
        }
    }
    Pushed::from_fields(customer_id, body).map_err(|fault| {
        let detail = format!("The profile was not written: {fault}");
        Problem::invalid_because(detail, vec![field_error(fault)])
    })
}

/// A rejected row's fault as the field at fault (the customer ID for the row's own).
fn field_error(fault: Fault) -> FieldError {
    let mut message = fault.message;
    if let Some(first) = message.get(..1) {
        message = first.to_uppercase() + &message[1..];
    }
    FieldError {
        field: fault.field.unwrap_or_else(|| push::ID_KEY.into()),
        message,
    }
}

/// A stored profile's fields, without the cleared ones.
fn values_of(attributes: &str) -> Map<String, Value> {
    let mut fields: Map<String, Value> = serde_json::from_str(attributes).unwrap_or_default();
    fields.retain(|_, value| !value.is_null());
    fields
}

fn refused_whole(err: PushError) -> Problem {
    match err {
        PushError::TooManyFields(detail) => Problem::invalid_because(detail, Vec::new()),
        PushError::Database(err) => err.into(),
    }
}

/// Create or update up to 10,000 profiles in one request (Contributors and Administrators):
/// a JSON array of objects, or NDJSON (one object a line), each with `customer_id` and its
/// fields, written in their order as a PUT writes one (the same customer twice: the later
/// row is applied after the earlier). A bad row is rejected alone with its reason; the
/// others are written. More than 10,000 rows or a body over 32 MiB is refused whole (413).
#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles",
    request_body(description = "A JSON array of profiles, or NDJSON: one profile a line",
        content((Vec<ProfileIn> = "application/json"), (ProfileIn = "application/x-ndjson"))),
    responses((status = 200, body = ProfilesPushed, description = "Each row's outcome, in the order sent")))]
pub async fn push_profiles(
    State(state): State<AppState>,
    _: Contributor,
    ProfileRows(rows): ProfileRows,
) -> Result<Json<ProfilesPushed>, Problem> {
    let mut read = Vec::with_capacity(rows.len());
    let mut pushed = Vec::new();
    for BulkRow { at, value } in rows {
        let row = value
            .map_err(|reason| Refused {
                customer_id: None,
                fault: Fault::row(reason),
            })
            .and_then(Pushed::from_json);
        match row {
            Ok(row) => {
                read.push((at, Ok(row.customer_id.clone())));
                pushed.push(row);
            }
            Err(refused) => read.push((at, Err(refused))),
        }
    }
    let mut outcomes = push::push(&state.db, &pushed)
        .await
        .map_err(refused_whole)?
        .into_iter();
    let mut answer = ProfilesPushed::default();
    for (at, row) in read {
        let (customer_id, outcome) = match row {
            Ok(id) => (Some(id), outcomes.next().unwrap_or_else(not_written)),
            Err(refused) => (refused.customer_id, Err(refused.fault)),
        };
        answer.add(row_result(at, customer_id, outcome));
    }
    Ok(Json(answer))
}

fn not_written() -> Result<Outcome, Fault> {
    Err(Fault::row("The row was not written."))
}

fn row_result(
    at: RowAt,
    customer_id: Option<String>,
    outcome: Result<Outcome, Fault>,
) -> RowResult {
    let (index, line) = match at {
        RowAt::Index(i) => (Some(i), None),
        RowAt::Line(l) => (None, Some(l)),
    };
    let (outcome, reason) = match outcome {
        Ok(outcome) => (RowOutcome::from(outcome), None),
        Err(fault) => (RowOutcome::Rejected, Some(fault.to_string())),
    };
    RowResult {
        index,
        line,
        customer_id: customer_id.map(|id| crate::profiles::row::shown_id(&id)),
        outcome,
        reason,
    }
}

/// Delete a customer's profile (Contributors and Administrators). Deletion is not erasure:
/// reports, results and each destination's ledger keep what they hold (Forget is the path
/// for an erasure request). The profile leaves its segments at their next refresh, and every
/// destination then treats its member as a leaver.
#[utoipa::path(delete, path = "/api/v1/profiles/{customer_id}", tag = "profiles",
    params(("customer_id" = String, Path, description = "The profile's customer ID")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_profile(
    State(state): State<AppState>,
    _: Contributor,
    Path(customer_id): Path<String>,
) -> Result<StatusCode, Problem> {
    if push::delete(&state.db, &customer_id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(Problem::new(
        StatusCode::NOT_FOUND,
        "Not Found",
        format!(
            "No profile has the customer ID “{}”.",
            crate::domain::text::excerpt(customer_id.trim())
        ),
    ))
}

/// Forget a customer everywhere (Administrators): the profile and its traces are deleted,
/// every destination that exported it deletes the member for good in Mailchimp (now, or
/// with its next run when Mailchimp does not take it), and the address is never sent again.
/// The audit log records who and when, never the address.
#[utoipa::path(post, path = "/api/v1/profiles/{customer_id}/forget", tag = "profiles",
    params(("customer_id" = String, Path, description = "The profile's customer ID")),
    responses((status = 200, body = Forgotten)))]
pub async fn forget_customer(
    State(state): State<AppState>,
    Administrator(user): Administrator,
    Path(customer_id): Path<String>,
) -> Result<Json<Forgotten>, Problem> {
    let actor = Actor {
        user_id: user.id,
        email: &user.email,
    };
    forget::forget(&state.engine, &customer_id, &actor)
        .await?
        .map(Json)
        .ok_or_else(Problem::not_found)
}
