//! `/api/v1/destinations`: list, read, create (the API-key path of the set-up, with the
//! same checks and the same records), and start a run.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::actions::exports::{self, ExportRequest, NotQueued};
use crate::actions::previews;
use crate::api::extract::{ApiBody, ApiJson, PathId};
use crate::api::models::{
    DestinationList, DestinationOut, MailchimpTarget, NewMemberStatusOut, RunOut,
};
use crate::api::{Administrator, ApiUser, Contributor, FieldError, Problem};
use crate::connect::{self, ConnectError};
use crate::domain::destination::{ApiKey, AudienceId, DisplayName};
use crate::export::preview::{Preview, PreviewError};
use crate::matching;
use crate::state::AppState;
use crate::store::audit::Actor;
use crate::store::destinations::{self, Configuration, Destination, FieldMapping};
use crate::store::runs;

/// Saved destinations.
#[utoipa::path(get, path = "/api/v1/destinations", tag = "destinations",
    responses((status = 200, body = DestinationList)))]
pub async fn list(
    State(state): State<AppState>,
    _user: ApiUser,
) -> Result<Json<DestinationList>, Problem> {
    let pool = state.db.pool();
    let mut out = Vec::new();
    for d in destinations::list(pool)
        .await?
        .into_iter()
        .filter(|d| d.is_active())
    {
        let ids = destinations::segment_ids(pool, d.id).await?;
        out.push(DestinationOut::of(&d, &ids));
    }
    Ok(Json(DestinationList { destinations: out }))
}

/// A saved destination (drafts and removed ones are not found).
async fn saved(state: &AppState, id: i64) -> Result<Destination, Problem> {
    crate::actions::active_destination(&state.db, id)
        .await?
        .ok_or_else(Problem::not_found)
}

/// One destination.
#[utoipa::path(get, path = "/api/v1/destinations/{id}", tag = "destinations", params(("id" = i64, Path)),
    responses((status = 200, body = DestinationOut)))]
pub async fn show(
    State(state): State<AppState>,
    _user: ApiUser,
    PathId(id): PathId,
) -> Result<Json<DestinationOut>, Problem> {
    let pool = state.db.pool();
    let d = saved(&state, id).await?;
    let ids = destinations::segment_ids(pool, id).await?;
    Ok(Json(DestinationOut::of(&d, &ids)))
}

/// A Mailchimp destination made with an API key, saved in one request. Fields other than
/// these are refused.
#[derive(Deserialize, ToSchema)]
pub struct NewDestination {
    #[schema(required, value_type = String, max_length = 100)]
    display_name: Option<String>,
    /// true: you agree to the data-privacy notice.
    #[schema(required, value_type = bool)]
    consent: Option<bool>,
    #[schema(required, value_type = String)]
    audience_id: Option<String>,
    #[schema(required, value_type = String)]
    api_key: Option<String>,
    /// Which Mailchimp the key is for; unset: the built-in sandbox when it is on and no
    /// Mailchimp OAuth app is configured, otherwise Mailchimp.
    #[schema(value_type = Option<MailchimpTarget>)]
    mailchimp: Option<String>,
    #[schema(required, value_type = String)]
    email_field: Option<String>,
    #[serde(default)]
    merge_fields: Vec<MergeFieldInput>,
    #[serde(default)]
    #[schema(required, min_items = 1, max_items = 1000)]
    segment_ids: Vec<i64>,
    #[schema(value_type = Option<NewMemberStatusOut>)]
    new_member_status: Option<String>,
    /// Export each change within seconds, without a person or the schedule (default false).
    #[serde(default)]
    keep_in_sync: bool,
}

impl ApiBody for NewDestination {
    const FIELDS: &'static [&'static str] = &[
        "display_name",
        "consent",
        "audience_id",
        "api_key",
        "mailchimp",
        "email_field",
        "merge_fields",
        "segment_ids",
        "new_member_status",
        "keep_in_sync",
    ];
}

/// One entry of `merge_fields`: `{"tag": "FNAME", "field": "FirstName"}` and nothing else.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MergeFieldIn)]
pub struct MergeFieldInput {
    #[serde(default)]
    tag: String,
    #[serde(default)]
    field: String,
}

fn mappings_of(merge_fields: &[MergeFieldInput]) -> Vec<FieldMapping> {
    merge_fields
        .iter()
        .map(|m| FieldMapping {
            tag: m.tag.clone(),
            field: m.field.clone(),
        })
        .collect()
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// The data matching asked for, checked as the configure page checks it; what is refused
/// goes to `errors`.
async fn check_matching(
    pool: &sqlx::AnyPool,
    asked: &matching::Asked<'_>,
    errors: &mut Vec<FieldError>,
) -> Result<Option<matching::Checked>, Problem> {
    match matching::check(pool, asked).await {
        Ok(checked) => Ok(Some(checked)),
        Err(matching::MatchingError::Refused(refused)) => {
            errors.extend(refused.iter().map(|r| field(&r.field(), r.message())));
            Ok(None)
        }
        Err(matching::MatchingError::Database(err)) => Err(err.into()),
    }
}

/// What `PATCH /api/v1/destinations/{id}` may change: what the destination's configure page
/// changes. A field left out keeps its value; fields other than these are refused.
#[derive(Deserialize, ToSchema)]
pub struct DestinationChange {
    #[schema(value_type = Option<String>, max_length = 100)]
    display_name: Option<String>,
    email_field: Option<String>,
    /// The whole list of merge fields (replacing the one saved).
    merge_fields: Option<Vec<MergeFieldInput>>,
    #[schema(min_items = 1, max_items = 1000)]
    segment_ids: Option<Vec<i64>>,
    #[schema(value_type = Option<NewMemberStatusOut>)]
    new_member_status: Option<String>,
    keep_in_sync: Option<bool>,
}

impl ApiBody for DestinationChange {
    const FIELDS: &'static [&'static str] = &[
        "display_name",
        "email_field",
        "merge_fields",
        "segment_ids",
        "new_member_status",
        "keep_in_sync",
    ];
}

/// Change a saved destination's settings as its configure page does (Administrators): its
/// name, email field, merge fields, segments or new members' status. Each is checked as for
/// a create, with the rest as saved; the change is audited, and the next export sends what
/// it changed.
#[utoipa::path(patch, path = "/api/v1/destinations/{id}", tag = "destinations", params(("id" = i64, Path)),
    request_body = DestinationChange,
    responses((status = 200, body = DestinationOut)))]
pub async fn change(
    State(state): State<AppState>,
    Administrator(user): Administrator,
    PathId(id): PathId,
    ApiJson(input): ApiJson<DestinationChange>,
) -> Result<Json<DestinationOut>, Problem> {
    let pool = state.db.pool();
    let destination = saved(&state, id).await?;
    let mut errors = Vec::new();
    let name_text = input
        .display_name
        .unwrap_or_else(|| destination.display_name.clone());
    let name = DisplayName::parse(&name_text)
        .map_err(|e| errors.push(field("display_name", e)))
        .ok();
    let email_field = input
        .email_field
        .or_else(|| destination.email_field.clone())
        .unwrap_or_default();
    let mappings = match &input.merge_fields {
        Some(asked) => mappings_of(asked),
        None => destination.field_mappings.clone(),
    };
    let segment_ids = match input.segment_ids {
        Some(ids) => ids,
        None => destinations::segment_ids(pool, id).await?,
    };
    let status = input
        .new_member_status
        .unwrap_or_else(|| destination.new_member_status.as_str().to_owned());
    let asked = matching::Asked {
        email_field: &email_field,
        mappings: &mappings,
        segment_ids: &segment_ids,
        new_member_status: &status,
    };
    let checked = check_matching(pool, &asked, &mut errors).await?;
    let (Some(name), Some(checked), true) = (name, checked, errors.is_empty()) else {
        return Err(Problem::invalid(errors));
    };
    let config = Configuration {
        display_name: name.as_str(),
        email_field: &email_field,
        field_mappings: &checked.mappings,
        segment_ids: &segment_ids,
        new_member_status: checked.new_member_status.as_str(),
        keep_in_sync: input.keep_in_sync.unwrap_or(destination.keep_in_sync),
    };
    let actor = Actor {
        user_id: user.id,
        email: &user.email,
    };
    let tx = crate::db::begin_write(pool).await?;
    save_matching(&state, tx, &actor, id, &config, connect::Save::Edit).await?;
    let d = saved(&state, id).await?;
    Ok(Json(DestinationOut::of(&d, &segment_ids)))
}

/// Saves the data matching in `tx` and commits it (a name another destination has is a 422
/// naming `display_name`), then registers Mailchimp's webhook; a failure to register is
/// logged, and the next export tries again.
async fn save_matching(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    actor: &Actor<'_>,
    id: i64,
    config: &Configuration<'_>,
    save: connect::Save,
) -> Result<(), Problem> {
    match connect::save_matching(&mut tx, actor, id, config, save).await {
        Ok(()) => tx.commit().await?,
        Err(connect::DraftError::NameTaken(name)) => {
            return Err(Problem::invalid(vec![field(
                "display_name",
                format!("A destination named “{name}” already exists."),
            )]));
        }
        Err(connect::DraftError::Database(err)) => return Err(err.into()),
    }
    let _ = crate::export::webhooks::register_after_save(&state.engine, id).await;
    Ok(())
}

/// The request's field that a failed connection is about.
fn field_at_fault(err: &ConnectError) -> &'static str {
    match err {
        ConnectError::SandboxOff(_) | ConnectError::UnknownMailchimp => "mailchimp",
        ConnectError::NoDataCentre => "api_key",
        ConnectError::Refused(refusal) if refusal.is_about_the_credential() => "api_key",
        ConnectError::Refused(_) => "audience_id",
    }
}

/// Create a Mailchimp destination with an API key (Administrators). Every field is checked
/// before anything is written or sent.
#[utoipa::path(post, path = "/api/v1/destinations", tag = "destinations", request_body = NewDestination,
    responses((status = 201, body = DestinationOut)))]
pub async fn create(
    State(state): State<AppState>,
    Administrator(user): Administrator,
    ApiJson(input): ApiJson<NewDestination>,
) -> Result<Response, Problem> {
    let pool = state.db.pool();
    let mut errors = Vec::new();
    let name = DisplayName::parse(input.display_name.as_deref().unwrap_or_default())
        .map_err(|e| errors.push(field("display_name", e)))
        .ok();
    if input.consent != Some(true) {
        errors.push(field("consent", "Agree to the data-privacy notice (consent: true): this sends personal data to Mailchimp."));
    }
    let audience = AudienceId::parse(input.audience_id.as_deref().unwrap_or_default())
        .map_err(|e| errors.push(field("audience_id", e)))
        .ok();
    let key = ApiKey::parse(input.api_key.as_deref().unwrap_or_default())
        .map_err(|e| errors.push(field("api_key", e)))
        .ok();
    let target = connect::choose_target(&state, input.mailchimp.as_deref())
        .map_err(|e| errors.push(field("mailchimp", e.to_string())))
        .ok();
    let email_field = input.email_field.clone().unwrap_or_default();
    let asked_mappings = mappings_of(&input.merge_fields);
    let asked = matching::Asked {
        email_field: &email_field,
        mappings: &asked_mappings,
        segment_ids: &input.segment_ids,
        new_member_status: input.new_member_status.as_deref().unwrap_or("subscribed"),
    };
    let checked = check_matching(pool, &asked, &mut errors).await?;
    let (Some(name), Some(audience), Some(key), Some(checked), Some(target), true) =
        (name, audience, key, checked, target, errors.is_empty())
    else {
        return Err(Problem::invalid(errors));
    };
    let verified = connect::verify_api_key(&state, target, audience.as_str(), &key)
        .await
        .map_err(|err| Problem::invalid(vec![field(field_at_fault(&err), err.to_string())]))?;
    let actor = Actor {
        user_id: user.id,
        email: &user.email,
    };
    let mut tx = crate::db::begin_write(pool).await?;
    let started =
        connect::start_draft(&mut tx, &actor, &name, &audience, target, connect::Via::Api).await;
    let id = match started {
        Ok(id) => id,
        Err(taken @ connect::DraftError::NameTaken(_)) => {
            let mut message = taken.to_string();
            message[..1].make_ascii_uppercase();
            return Err(Problem::invalid(vec![field("display_name", message + ".")]));
        }
        Err(connect::DraftError::Database(err)) => return Err(err.into()),
    };
    connect::record(&mut tx, &actor, id, name.as_str(), &verified).await?;
    connect::make_export_user(&mut tx, &actor, id, name.as_str()).await?;
    let config = Configuration {
        display_name: name.as_str(),
        email_field: &email_field,
        field_mappings: &checked.mappings,
        segment_ids: &input.segment_ids,
        new_member_status: checked.new_member_status.as_str(),
        keep_in_sync: input.keep_in_sync,
    };
    save_matching(&state, tx, &actor, id, &config, connect::Save::First).await?;
    let d = destinations::find(pool, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok((
        StatusCode::CREATED,
        Json(DestinationOut::of(&d, &input.segment_ids)),
    )
        .into_response())
}

/// Optional: no body queues an ordinary run.
#[derive(Deserialize, ToSchema)]
pub struct RunRequest {
    /// A full resync: every member's data is sent again.
    #[serde(default)]
    full: bool,
    /// Export although the destination's first preview found members Mailchimp would
    /// refuse (without it, such a first export is answered 409 with that preview).
    #[serde(default)]
    confirm: bool,
}

impl ApiBody for RunRequest {
    const FIELDS: &'static [&'static str] = &["full", "confirm"];
    /// `POST …/runs` with no body at all queues an ordinary (not full) run.
    const EMPTY_MEANS_DEFAULTS: bool = true;
}

/// Queue an export (Contributors and Administrators).
#[utoipa::path(post, path = "/api/v1/destinations/{id}/runs", tag = "runs", params(("id" = i64, Path)),
    request_body(content = Option<RunRequest>, description = "Optional: no body queues an ordinary run"),
    responses((status = 202, body = RunOut),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn start_run(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    PathId(id): PathId,
    ApiJson(request): ApiJson<RunRequest>,
) -> Result<Response, Problem> {
    let request = ExportRequest {
        full: request.full,
        confirmed: request.confirm,
        by: Some(user.id),
    };
    let run_id = match exports::queue(&state.db, id, request).await? {
        Ok(queued) => queued.run_id,
        Err(NotQueued::NoSuchDestination) => return Err(Problem::not_found()),
        Err(NotQueued::Unconfirmed(preview)) => return Err(Problem::unconfirmed(preview)),
    };
    let run = runs::find(state.db.pool(), run_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok((StatusCode::ACCEPTED, Json(RunOut::of(&run))).into_response())
}

/// Optional: no body previews an ordinary run.
#[derive(Deserialize, ToSchema)]
pub struct PreviewRequest {
    /// Preview a full resync (every member's data sent again).
    #[serde(default)]
    full: bool,
}

impl ApiBody for PreviewRequest {
    const FIELDS: &'static [&'static str] = &["full"];
    const EMPTY_MEANS_DEFAULTS: bool = true;
}

/// What an export would do now, computed without writing to Mailchimp (Contributors and
/// Administrators). It reads the audience's members, merge fields and size, and becomes the
/// destination's last preview, shown on its Preview page.
#[utoipa::path(post, path = "/api/v1/destinations/{id}/preview", tag = "destinations", params(("id" = i64, Path)),
    request_body(content = Option<PreviewRequest>, description = "Optional: no body previews an ordinary run"),
    responses((status = 200, body = Preview),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
pub async fn preview(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    PathId(id): PathId,
    ApiJson(request): ApiJson<PreviewRequest>,
) -> Result<Response, Problem> {
    let destination = saved(&state, id).await?;
    match previews::compute(&state.engine, &destination, request.full, user.id).await {
        Ok(preview) => Ok(Json(preview).into_response()),
        Err(PreviewError::Mailchimp(detail)) => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "Mailchimp could not be read",
            detail,
        )),
        Err(PreviewError::TooMany(detail)) => Err(Problem::invalid_because(detail, Vec::new())),
        Err(PreviewError::Internal(err)) => Err(err.into()),
    }
}
