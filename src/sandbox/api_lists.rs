//! `/3.0/ping`, audiences (`/lists`) and batch subscribe (`POST /lists/{id}`).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sandbox::audience::Audience;
use crate::sandbox::audience::{ExistingPolicy, MemberWrite, Written, events_of_write};
use crate::sandbox::clock;
use crate::sandbox::json::{self, ApiJson, Caller, OnList, Paging};
use crate::sandbox::problem::{FieldError, MailchimpProblem};
use crate::sandbox::state::Sandbox;
use crate::sandbox::status::MemberStatus;
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

async fn list(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    call.audience(0, |audience| Ok(Json(json::audience(audience))))
        .await
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

/// Mailchimp's checks of a batch as a whole, before any member is written.
fn check_batch(body: &BatchBody) -> Result<(), MailchimpProblem> {
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
    Ok(())
}

/// One member's entry in the batch's `errors`.
fn item_error(email: &str, error: &str, code: &str, field: &str, field_message: &str) -> Value {
    json!({
        "email_address": email,
        "error": error,
        "error_code": code,
        "field": field,
        "field_message": field_message,
    })
}

/// The item's status and tag names, or its entry in the batch's `errors`.
fn read_item(item: &BatchMember) -> Result<(MemberStatus, Option<Vec<String>>), Value> {
    let Some(Ok(status)) = item.status.as_deref().map(str::parse) else {
        return Err(item_error(
            &item.email_address,
            "The status must be one of subscribed, unsubscribed, cleaned, pending or transactional.",
            "ERROR_GENERIC",
            "status",
            "This value should not be blank.",
        ));
    };
    let tags = item
        .tags
        .as_deref()
        .map(tag_names)
        .transpose()
        .map_err(|message| {
            item_error(
                &item.email_address,
                &message,
                "ERROR_GENERIC",
                "tags",
                &message,
            )
        })?;
    Ok((status, tags))
}

/// Puts the item's tags on the member (creating the tags the audience lacks); with
/// `sync`, takes off the member's other tags.
fn tag_member(
    audience: &mut Audience,
    hash: &str,
    tags: &[String],
    sync: bool,
    segment_id: &mut u64,
    now: &str,
) -> Result<(), MailchimpProblem> {
    let email = audience.members[hash].email_address.clone();
    if sync {
        let keep: Vec<u64> = tags
            .iter()
            .filter_map(|name| audience.segment_by_name(name))
            .collect();
        let current: Vec<u64> = audience.members[hash].tags.iter().copied().collect();
        for id in current.into_iter().filter(|id| !keep.contains(id)) {
            audience.set_tag(id, &email, false, now);
        }
    }
    for name in tags {
        let id = match audience.segment_by_name(name) {
            Some(id) => id,
            None => {
                *segment_id += 1;
                audience.create_segment(*segment_id, name, now)?
            }
        };
        audience.set_tag(id, &email, true, now);
    }
    Ok(())
}

async fn batch_subscribe(
    call: OnList,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    check_batch(&body)?;
    let sandbox = &call.sandbox;
    sandbox
        .store()
        .audience_mut(&call.account_id, &call.list_id)?;
    sandbox.work(body.members.len()).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let mut web_id = store.next_web_id;
    let mut segment_id = store.next_segment_id;
    let audience = store.audience_mut(&call.account_id, &call.list_id)?;
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
        let (status, tags) = match read_item(&item) {
            Ok(read) => read,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let before = heard.then(|| {
            let hash = crate::domain::subscriber_hash(&item.email_address);
            audience.members.get(&hash).cloned()
        });
        let write = MemberWrite {
            email_address: item.email_address.clone(),
            status: Some(status),
            merge_fields: item.merge_fields,
            email_type: item.email_type,
            language: item.language,
            vip: item.vip,
            ..MemberWrite::default()
        };
        match audience.write_member(write, policy, &mut web_id, &now) {
            Ok((hash, written)) => {
                if let Some(before) = &before {
                    events.extend(events_of_write(before.as_ref(), &audience.members[&hash]));
                }
                let tags = tags.unwrap_or_default();
                tag_member(
                    audience,
                    &hash,
                    &tags,
                    body.sync_tags,
                    &mut segment_id,
                    &now,
                )?;
                let member = json::member_summary(audience, &hash, &audience.members[&hash]);
                match written {
                    Written::Created => created.push(member),
                    Written::Updated => updated.push(member),
                }
            }
            Err(error) => errors.push(item_error(
                &item.email_address,
                &error.detail,
                error.code,
                &error.field,
                &error.field_message,
            )),
        }
    }
    store.next_web_id = web_id;
    store.next_segment_id = segment_id;
    drop(store);
    sandbox.fire(&call.list_id, Source::Api, events);
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
