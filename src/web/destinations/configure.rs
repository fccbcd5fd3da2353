//! Configure (after Next) and Edit: Data matching (the email field and merge fields from
//! profile fields, via Add attribute), the segments to export (at most 1,000,000 profiles),
//! the status for new members, and Save. Saving never runs an export.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_sessions::Session;

use crate::auth::session;
use crate::connect::{self, DraftError, Save};
use crate::domain::FieldType;
use crate::domain::destination::{DisplayName, MAX_EXPORT_PROFILES, MAX_MERGE_TAG_CHARS, MergeTag};
use crate::mailchimp::client::MergeField;
use crate::matching;
use crate::state::AppState;
use crate::store::audit;
use crate::store::destinations::{self, Configuration, Destination, FieldMapping};
use crate::store::{fields, segments};
use crate::web::AppError;
use crate::web::destinations::Editable;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/export-destinations/{id}/configure",
            get(show).post(submit),
        )
        .route(
            "/admin/export-destinations/{id}/edit",
            get(show).post(submit),
        )
}

/// The form as typed (kept on errors).
struct ConfigForm {
    display_name: String,
    email_field: String,
    mappings: Vec<FieldMapping>,
    segment_ids: Vec<i64>,
    /// Chosen segment values that are not segment IDs (never silently dropped).
    unreadable_segments: usize,
    new_member_status: String,
    keep_in_sync: bool,
    /// A merge field to create in the audience, as typed (kept until it is created).
    new_field: NewMergeField,
    action: String,
}

/// The "A merge field the audience lacks?" part of the form.
#[derive(Default)]
struct NewMergeField {
    name: String,
    kind: String,
    /// The merge tag asked for; empty means the one made from the name.
    tag: String,
}

impl NewMergeField {
    /// The tag Mailchimp will be asked to use, as the page shows it before creating.
    fn tag_shown(&self) -> String {
        if self.tag.trim().is_empty() {
            MergeTag::suggest(&self.name)
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default()
        } else {
            self.tag.trim().to_owned()
        }
    }
}

#[derive(Template)]
#[template(path = "destinations/configure.html")]
struct ConfigurePage {
    ctx: PageContext,
    destination: Destination,
    form: ConfigForm,
    email_fields: Vec<(String, FieldType)>,
    other_fields: Vec<(String, FieldType)>,
    merge_fields: Vec<MergeField>,
    merge_fields_error: Option<String>,
    segments: Vec<(i64, String, i64)>,
    errors: Vec<String>,
    /// What the last action did (a merge field created), said where the person looks.
    notice: Option<String>,
    max_profiles: i64,
    max_tag_chars: usize,
}

async fn page(
    state: &AppState,
    ctx: PageContext,
    destination: Destination,
    form: ConfigForm,
    errors: Vec<String>,
) -> Result<ConfigurePage, AppError> {
    let catalogue = fields::list(state.db.pool()).await?;
    let (email_fields, other_fields): (Vec<_>, Vec<_>) = catalogue
        .into_iter()
        .map(|f| (f.name, f.field_type))
        .partition(|(_, t)| *t == FieldType::Email);
    // Through the gateway: within the account's connection budget, even while an export of
    // the same account keeps every connection busy.
    let (merge_fields, merge_fields_error) = match state.engine.gateway_for_a_person(&destination) {
        Ok(gateway) => match gateway.merge_fields(&destination.audience_id).await {
            Ok(fields) => (fields, None),
            Err(err) => (
                Vec::new(),
                Some(format!(
                    "The audience's merge fields could not be read: {err}."
                )),
            ),
        },
        Err(_) => (
            Vec::new(),
            Some("Authenticate with Mailchimp to read the audience's merge fields.".into()),
        ),
    };
    let segments = segments::list(state.db.pool())
        .await?
        .into_iter()
        .map(|s| (s.id, s.name, s.member_count))
        .collect();
    Ok(ConfigurePage {
        ctx: ctx.at(Nav::ExportDestinations),
        destination,
        form,
        email_fields,
        other_fields,
        merge_fields,
        merge_fields_error,
        segments,
        errors,
        notice: None,
        max_profiles: MAX_EXPORT_PROFILES,
        max_tag_chars: MAX_MERGE_TAG_CHARS,
    })
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Editable(destination): Editable,
    session: Session,
) -> Result<Response, AppError> {
    let id = destination.id;
    if !destination.is_connected() {
        session::set_flash(
            &session,
            "Finish the connect steps first: Next is available once each is done.",
        )
        .await?;
        return Ok(Redirect::to(&format!("/admin/export-destinations/{id}/setup")).into_response());
    }
    let first_time = destination.email_field.is_none() && !destination.is_active();
    let form = ConfigForm {
        display_name: destination.display_name.clone(),
        email_field: destination.email_field.clone().unwrap_or_default(),
        mappings: destination.field_mappings.clone(),
        segment_ids: destinations::segment_ids(state.db.pool(), id).await?,
        unreadable_segments: 0,
        new_member_status: destination.new_member_status.clone(),
        keep_in_sync: destination.keep_in_sync,
        new_field: NewMergeField::default(),
        action: String::new(),
    };
    let mut page = page(&state, ctx, destination, form, Vec::new()).await?;
    if first_time {
        // Nobody has matched anything yet: offer what is plain from the field names.
        let tags: Vec<&str> = page.merge_fields.iter().map(|f| f.tag.as_str()).collect();
        let audience_tags = page.merge_fields_error.is_none().then_some(tags.as_slice());
        let suggested = matching::suggest(&page.all_fields(), audience_tags);
        page.form.email_field = suggested.email_field.unwrap_or_default();
        page.form.mappings = suggested.mappings;
    }
    Ok(render(&page)?.into_response())
}

impl ConfigurePage {
    fn all_fields(&self) -> Vec<(String, FieldType)> {
        self.email_fields
            .iter()
            .chain(&self.other_fields)
            .cloned()
            .collect()
    }
}

fn parse_form(pairs: Pairs) -> ConfigForm {
    ConfigForm {
        display_name: pairs.get("display_name"),
        email_field: pairs.get("email_field"),
        mappings: pairs
            .rows("map_tag_")
            .into_iter()
            .map(|i| FieldMapping {
                tag: pairs.get(&format!("map_tag_{i}")).trim().to_owned(),
                field: pairs.get(&format!("map_field_{i}")),
            })
            .collect(),
        segment_ids: pairs
            .all("segment")
            .filter_map(|v| v.parse().ok())
            .collect(),
        unreadable_segments: pairs
            .all("segment")
            .filter(|v| v.parse::<i64>().is_err())
            .count(),
        new_member_status: pairs.get("new_member_status"),
        keep_in_sync: pairs.get("keep_in_sync") == "yes",
        new_field: NewMergeField {
            name: pairs.get("new_field_name"),
            kind: pairs.get("new_field_kind"),
            tag: pairs.get("new_field_tag"),
        },
        action: pairs.get("action"),
    }
}

async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Editable(destination): Editable,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let id = destination.id;
    if !destination.is_connected() {
        return Err(AppError::BadRequest(
            "Finish the connect steps before configuring the destination.".into(),
        ));
    }
    let mut form = parse_form(pairs);
    if form.action == "add_attribute" {
        return add_attribute(&state, ctx, destination, form).await;
    }
    if form.action == "create_merge_field" {
        return create_merge_field(&state, ctx, destination, form).await;
    }
    if crate::web::pairs::remove_row(&form.action, "remove_attribute:", &mut form.mappings) {
        return Ok(
            render(&page(&state, ctx, destination, form, Vec::new()).await?)?.into_response(),
        );
    }
    let validation = validate(&state, &form).await?;
    let name = DisplayName::parse(&form.display_name);
    let (Ok(name), Validation::Passed(checked)) = (&name, &validation) else {
        let mut errors = match validation {
            Validation::Fix(errors) => errors,
            Validation::Passed(_) => Vec::new(),
        };
        if let Err(e) = name {
            errors.insert(0, e.to_string());
        }
        let page = page(&state, ctx, destination, form, errors).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
    };
    let (mappings, status) = (&checked.mappings, checked.new_member_status);
    let config = Configuration {
        display_name: name.as_str(),
        email_field: &form.email_field,
        field_mappings: mappings,
        segment_ids: &form.segment_ids,
        new_member_status: status.as_str(),
        keep_in_sync: form.keep_in_sync,
    };
    let (save, action) = if destination.is_active() {
        (Save::Edit, "edit")
    } else {
        (Save::First, "save")
    };
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    match connect::save_matching(&mut tx, &ctx.user.actor(), id, &config, save).await {
        Ok(()) => tx.commit().await?,
        Err(DraftError::NameTaken(_)) => {
            drop(tx);
            let errors = vec![format!(
                "Display name: a destination named “{name}” already exists."
            )];
            let page = page(&state, ctx, destination, form, errors).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
        }
        Err(DraftError::Database(err)) => return Err(err.into()),
    }
    tracing::info!(
        user_id = ctx.user.id,
        destination_id = id,
        action,
        "destination saved"
    );
    saved(&state, &ctx, &session, id, name, save).await
}

/// Adds an attribute row, filled with First name, then Last name, and the profile field
/// that matches it.
async fn add_attribute(
    state: &AppState,
    ctx: PageContext,
    destination: Destination,
    form: ConfigForm,
) -> Result<Response, AppError> {
    let mut page = page(state, ctx, destination, form, Vec::new()).await?;
    let used: Vec<&str> = page.form.mappings.iter().map(|m| m.tag.as_str()).collect();
    let next = ["FNAME", "LNAME"]
        .into_iter()
        .find(|t| !used.contains(t))
        .unwrap_or("");
    let field = matching::field_for(next, &page.all_fields()).unwrap_or_default();
    page.form.mappings.push(FieldMapping {
        tag: next.into(),
        field,
    });
    Ok(render(&page)?.into_response())
}

/// After a save: Mailchimp's webhook is registered, and the person goes to the first
/// export's preview (a first save) or back to the list.
async fn saved(
    state: &AppState,
    ctx: &PageContext,
    session: &Session,
    id: i64,
    name: &DisplayName,
    save: Save,
) -> Result<Response, AppError> {
    // Mailchimp's webhook brings opt-outs in as they happen (when webhooks are on).
    let webhook = crate::export::webhooks::register_after_save(&state.engine, id)
        .await
        .map(|problem| {
            format!(
                " Mailchimp's webhook could not be registered ({problem}); the next export tries again."
            )
        })
        .unwrap_or_default();
    if matches!(save, Save::First) {
        // The set-up ends on the preview of the first export.
        if let Some(saved) = destinations::find(state.db.pool(), id).await? {
            crate::actions::previews::begin(&state.engine, saved, false, ctx.user.id).await?;
        }
        session::set_flash(
            session,
            format!(
                "Saved “{name}”. Nothing is exported yet: here is what the first export would do.{webhook}"
            ),
        )
        .await?;
        return Ok(
            Redirect::to(&format!("/admin/export-destinations/{id}/preview")).into_response(),
        );
    }
    session::set_flash(
        session,
        format!("Saved “{name}”. Saving does not run an export: choose Export on its row when you are ready.{webhook}"),
    )
    .await?;
    Ok(Redirect::to("/admin/export-destinations").into_response())
}

/// What a person must fix before saving, or what passed; rows left wholly empty are not
/// attributes.
async fn validate(state: &AppState, form: &ConfigForm) -> Result<Validation, AppError> {
    let mappings: Vec<FieldMapping> = form
        .mappings
        .iter()
        .filter(|m| !(m.tag.is_empty() && m.field.is_empty()))
        .cloned()
        .collect();
    let asked = matching::Asked {
        email_field: &form.email_field,
        mappings: &mappings,
        segment_ids: &form.segment_ids,
        new_member_status: &form.new_member_status,
    };
    let mut errors = Vec::new();
    if form.unreadable_segments > 0 {
        errors.push("Segments: a chosen segment is not one of this console's segments.".into());
    }
    match matching::check(state.db.pool(), &asked).await {
        Ok(checked) if errors.is_empty() => Ok(Validation::Passed(checked)),
        Ok(_) => Ok(Validation::Fix(errors)),
        Err(matching::MatchingError::Refused(refused)) => {
            errors.extend(refused.iter().map(matching::MatchingRefusal::message));
            Ok(Validation::Fix(errors))
        }
        Err(matching::MatchingError::Database(err)) => Err(err.into()),
    }
}

/// The form's data matching: fit to save, or what to fix.
enum Validation {
    Passed(matching::Checked),
    Fix(Vec<String>),
}

/// Creates the merge field the form describes in the audience, then shows the form again
/// with every choice kept and a row for the new field.
async fn create_merge_field(
    state: &AppState,
    ctx: PageContext,
    destination: Destination,
    mut form: ConfigForm,
) -> Result<Response, AppError> {
    let name = crate::domain::text::clean_name(&form.new_field.name, 100);
    let kind = form.new_field.kind.clone();
    let tag = MergeTag::parse(&form.new_field.tag_shown());
    let problem = match (&name, &tag) {
        (Err(_), _) => Some("New merge field: give it a name.".to_owned()),
        _ if !["text", "number", "date"].contains(&kind.as_str()) => {
            Some("New merge field: choose text, number or date.".to_owned())
        }
        (Ok(_), Err(why)) => Some(format!("New merge field: {why}")),
        _ => None,
    };
    let (Ok(name), Ok(tag), None) = (name, tag, problem.clone()) else {
        let errors = problem.into_iter().collect();
        let page = page(state, ctx, destination, form, errors).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
    };
    let created = state
        .engine
        .gateway_for_a_person(&destination)?
        .create_merge_field(&destination.audience_id, &name, &kind, &tag)
        .await;
    let field = match created {
        Ok(field) => field,
        Err(err) => {
            let errors = vec![format!(
                "New merge field: Mailchimp did not create it: {err}."
            )];
            let page = page(state, ctx, destination, form, errors).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
        }
    };
    audit::record(
        state.db.pool(),
        &ctx.user.actor(),
        "create merge field",
        Some(destination.id),
        &destination.display_name,
        &format!("{} ({})", field.tag, field.name),
    )
    .await?;
    form.new_field = NewMergeField::default();
    let mut page = page(state, ctx, destination, form, Vec::new()).await?;
    // A row for the new field, paired with the profile field of the same name if any.
    let same_name = page
        .all_fields()
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.eq_ignore_ascii_case(&field.name));
    if !page.form.mappings.iter().any(|m| m.tag == field.tag) {
        page.form.mappings.push(FieldMapping {
            tag: field.tag.clone(),
            field: same_name.unwrap_or_default(),
        });
    }
    page.notice = Some(format!(
        "Created the merge field {} ({}) in the audience; it has a row below. Save to keep the matching.",
        field.tag, field.name
    ));
    Ok(render(&page)?.into_response())
}
