//! `/3.0/ping`, audiences (`/lists`) and batch subscribe (`POST /lists/{id}`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sandbox::audience::{ExistingPolicy, MemberWrite, Written, events_of_write};
use crate::sandbox::clock;
use crate::sandbox::json::{self, ApiJson, Caller, Paging};
use crate::sandbox::problem::{FieldError, MailchimpProblem};
use crate::sandbox::state::Sandbox;
use crate::sandbox::webhooks::Source;

/// Mailchimp's limit on members in one batch-subscribe call.
pub const MAX_BATCH: usize = 500;

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route("/ping", get(ping))
        .route("/lists", get(lists).post(create_list))
        .route("/lists/{list_id}", get(list).post(batch_subscribe))
}

async fn ping(State(sandbox): State<Sandbox>, _caller: Caller) -> Json<Value> {
    sandbox.work(0).await;
    Json(json!({ "health_status": "Everything's Chimpy!" }))
}

async fn lists(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MailchimpProblem> {
    let paging = Paging::from_query(&query)?;
    let store = sandbox.store();
    let mine: Vec<_> = store
        .audiences
        .values()
        .filter(|a| a.account_id == caller.account_id)
        .collect();
    let lists: Vec<Value> = paging.page(&mine).map(|a| json::audience(a)).collect();
    Ok(Json(json!({
        "lists": lists,
        "total_items": mine.len(),
        "constraints": { "may_create": true, "max_instances": 100, "current_total_instances": mine.len() },
        "_links": [],
    })))
}

#[derive(Deserialize)]
struct NewList {
    name: Option<String>,
    contact: Option<Value>,
    permission_reminder: Option<String>,
    campaign_defaults: Option<CampaignDefaults>,
    email_type_option: Option<bool>,
    #[serde(default)]
    double_optin: bool,
}

#[derive(Deserialize)]
struct CampaignDefaults {
    from_name: Option<String>,
    from_email: Option<String>,
}

async fn create_list(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    ApiJson(body): ApiJson<NewList>,
) -> Result<Json<Value>, MailchimpProblem> {
    let mut errors = Vec::new();
    let mut missing = |present: bool, field: &str| {
        if !present {
            errors.push(FieldError {
                field: field.into(),
                message: "This value should not be blank.".into(),
            });
        }
    };
    let name = body.name.as_deref().map(str::trim).unwrap_or_default();
    missing(!name.is_empty(), "name");
    missing(
        body.contact.as_ref().is_some_and(Value::is_object),
        "contact",
    );
    missing(
        body.permission_reminder
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty()),
        "permission_reminder",
    );
    missing(body.campaign_defaults.is_some(), "campaign_defaults");
    missing(body.email_type_option.is_some(), "email_type_option");
    if !errors.is_empty() {
        return Err(MailchimpProblem::invalid_fields(errors));
    }
    sandbox.work(0).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let id = store.create_audience(&caller.account_id, name, &now);
    let audience = store.audiences.get_mut(&id).expect("just created");
    audience.permission_reminder = body.permission_reminder.unwrap_or_default();
    audience.double_optin = body.double_optin;
    if let Some(defaults) = body.campaign_defaults {
        audience.from_name = defaults.from_name.unwrap_or_default();
        audience.from_email = defaults.from_email.unwrap_or_default();
    }
    Ok(Json(json::audience(audience)))
}

async fn list(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path(list_id): Path<String>,
) -> Result<Json<Value>, MailchimpProblem> {
    sandbox.work(0).await;
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    Ok(Json(json::audience(audience)))
}

#[derive(Deserialize)]
struct BatchBody {
    members: Vec<BatchMember>,
    #[serde(default)]
    update_existing: bool,
    /// Replace each member's tags with the item's `tags` (only with `update_existing`).
    #[serde(default)]
    sync_tags: bool,
}

#[derive(Deserialize)]
struct BatchMember {
    #[serde(default)]
    email_address: String,
    status: Option<String>,
    #[serde(default)]
    merge_fields: serde_json::Map<String, Value>,
    email_type: Option<String>,
    language: Option<String>,
    vip: Option<bool>,
    /// Tag names: added to the member, new or existing (Mailchimp's release of 2022-01-24);
    /// tags the audience lacks are created.
    tags: Option<Vec<String>>,
}

/// Mailchimp's limit on a tag's name.
pub const MAX_TAG_CHARS: usize = 100;

/// The item's tag names, trimmed, or why one is refused.
fn tag_names(tags: &[String]) -> Result<Vec<String>, String> {
    let mut names = Vec::with_capacity(tags.len());
    for tag in tags {
        let name = tag.trim();
        if name.is_empty() {
            return Err("A tag name cannot be empty.".into());
        }
        if name.chars().count() > MAX_TAG_CHARS {
            return Err(format!(
                "A tag name can have at most {MAX_TAG_CHARS} characters."
            ));
        }
        if !names.iter().any(|n: &String| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

async fn batch_subscribe(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path(list_id): Path<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    if body.members.len() > MAX_BATCH {
        return Err(MailchimpProblem::field(
            "members",
            format!(
                "A batch can add or update at most {MAX_BATCH} members; this one has {}.",
                body.members.len()
            ),
        ));
    }
    if body.sync_tags && !body.update_existing {
        return Err(MailchimpProblem::field(
            "sync_tags",
            "sync_tags replaces existing members' tags, so it needs update_existing: true.",
        ));
    }
    sandbox.store().audience_mut(&caller.account_id, &list_id)?;
    sandbox.work(body.members.len()).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let mut web_id = store.next_web_id;
    let mut segment_id = store.next_segment_id;
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    let policy = if body.update_existing {
        ExistingPolicy::Update
    } else {
        ExistingPolicy::Report
    };
    let (mut created, mut updated, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    // What the webhooks that hear the API's changes are told.
    let heard = Sandbox::heard(audience, Source::Api);
    let mut events = Vec::new();
    for item in body.members {
        let status = match item.status.as_deref().map(str::parse) {
            Some(Ok(status)) => status,
            Some(Err(_)) | None => {
                errors.push(json!({
                    "email_address": item.email_address,
                    "error": "The status must be one of subscribed, unsubscribed, cleaned, pending or transactional.",
                    "error_code": "ERROR_GENERIC",
                    "field": "status",
                    "field_message": "This value should not be blank.",
                }));
                continue;
            }
        };
        let tags = match item.tags.as_deref().map(tag_names).transpose() {
            Ok(tags) => tags,
            Err(message) => {
                errors.push(json!({
                    "email_address": item.email_address,
                    "error": message,
                    "error_code": "ERROR_GENERIC",
                    "field": "tags",
                    "field_message": message,
                }));
                continue;
            }
        };
        let write = MemberWrite {
            email_address: item.email_address.clone(),
            status: Some(status),
            merge_fields: item.merge_fields,
            email_type: item.email_type,
            language: item.language,
            vip: item.vip,
            ..MemberWrite::default()
        };
        let before = heard.then(|| {
            let hash = crate::domain::subscriber_hash(&item.email_address);
            audience.members.get(&hash).cloned()
        });
        match audience.write_member(write, policy, &mut web_id, &now) {
            Ok((hash, written)) => {
                if let Some(before) = &before {
                    events.extend(events_of_write(before.as_ref(), &audience.members[&hash]));
                }
                let email = audience.members[&hash].email_address.clone();
                if body.sync_tags {
                    let keep: Vec<u64> = tags
                        .iter()
                        .flatten()
                        .filter_map(|name| audience.segment_by_name(name))
                        .collect();
                    let current: Vec<u64> = audience.members[&hash].tags.iter().copied().collect();
                    for id in current.into_iter().filter(|id| !keep.contains(id)) {
                        audience.set_tag(id, &email, false, &now);
                    }
                }
                for name in tags.iter().flatten() {
                    let id = match audience.segment_by_name(name) {
                        Some(id) => id,
                        None => {
                            segment_id += 1;
                            audience.create_segment(segment_id, name, &now)?
                        }
                    };
                    audience.set_tag(id, &email, true, &now);
                }
                let member = json::member_summary(audience, &hash, &audience.members[&hash]);
                match written {
                    Written::Created => created.push(member),
                    Written::Updated => updated.push(member),
                }
            }
            Err(error) => errors.push(json!({
                "email_address": item.email_address,
                "error": error.detail,
                "error_code": error.code,
                "field": error.field,
                "field_message": error.field_message,
            })),
        }
    }
    store.next_web_id = web_id;
    store.next_segment_id = segment_id;
    drop(store);
    sandbox.fire(&list_id, Source::Api, events);
    Ok(Json(json!({
        "total_created": created.len(),
        "total_updated": updated.len(),
        "error_count": errors.len(),
        "new_members": created,
        "updated_members": updated,
        "errors": errors,
        "_links": [],
    })))
}
