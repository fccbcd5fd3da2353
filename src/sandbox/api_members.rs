//! Members of an audience: list, read, add, upsert, update, archive, delete for good,
//! and a member's tags.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::subscriber_hash;
use crate::sandbox::audience::{ExistingPolicy, MemberWrite, events_of_write};
use crate::sandbox::clock;
use crate::sandbox::json::{self, ApiJson, Caller, Paging};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::state::Sandbox;
use crate::sandbox::status::MemberStatus;
use crate::sandbox::webhooks::Source;

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route(
            "/lists/{list_id}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/lists/{list_id}/members/{hash}",
            get(get_member)
                .put(put_member)
                .patch(patch_member)
                .delete(archive_member),
        )
        .route(
            "/lists/{list_id}/members/{hash}/actions/delete-permanent",
            post(delete_permanent),
        )
        .route(
            "/lists/{list_id}/members/{hash}/tags",
            get(member_tags).post(set_member_tags),
        )
}

async fn list_members(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path(list_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MailchimpProblem> {
    let paging = Paging::from_query(&query)?;
    let status = match query.get("status") {
        None => None,
        Some(raw) => Some(raw.parse::<MemberStatus>().map_err(|_| {
            MailchimpProblem::field("status", "status must be subscribed, unsubscribed, cleaned, pending, transactional or archived.")
        })?),
    };
    sandbox.work(0).await;
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    let mut matching: Vec<(&String, &crate::sandbox::audience::Member)> = audience
        .members
        .iter()
        .filter(|(_, m)| match status {
            Some(status) => m.status == status,
            None => m.status != MemberStatus::Archived,
        })
        .collect();
    matching.sort_unstable_by_key(|(_, m)| m.web_id);
    let members: Vec<Value> = paging
        .page(&matching)
        .map(|(hash, m)| json::member(audience, hash, m))
        .collect();
    Ok(Json(json::collection(
        audience,
        "members",
        members,
        matching.len(),
    )))
}

async fn get_member(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
) -> Result<Json<Value>, MailchimpProblem> {
    sandbox.work(0).await;
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    let hash = normalise_hash(&hash);
    let member = audience
        .members
        .get(&hash)
        .ok_or_else(MailchimpProblem::not_found)?;
    Ok(Json(json::member(audience, &hash, member)))
}

/// Mailchimp also accepts the address itself where a subscriber hash is expected.
fn normalise_hash(hash_or_email: &str) -> String {
    if hash_or_email.contains('@') {
        subscriber_hash(hash_or_email)
    } else {
        hash_or_email.to_lowercase()
    }
}

#[derive(Deserialize, Default)]
struct MemberBody {
    email_address: Option<String>,
    status: Option<String>,
    status_if_new: Option<String>,
    #[serde(default)]
    merge_fields: serde_json::Map<String, Value>,
    email_type: Option<String>,
    language: Option<String>,
    vip: Option<bool>,
}

fn parse_status(raw: Option<&str>, field: &str) -> Result<Option<MemberStatus>, MailchimpProblem> {
    raw.map(|raw| {
        raw.parse::<MemberStatus>().map_err(|_| {
            MailchimpProblem::field(field, "The status must be one of subscribed, unsubscribed, cleaned, pending or transactional.")
        })
    })
    .transpose()
}

fn to_write(
    body: MemberBody,
    email: String,
    skip_merge_validation: bool,
) -> Result<MemberWrite, MailchimpProblem> {
    Ok(MemberWrite {
        email_address: email,
        status: parse_status(body.status.as_deref(), "status")?,
        status_if_new: parse_status(body.status_if_new.as_deref(), "status_if_new")?,
        merge_fields: body.merge_fields,
        email_type: body.email_type,
        language: body.language,
        vip: body.vip,
        skip_merge_validation,
    })
}

async fn write(
    sandbox: &Sandbox,
    caller: &Caller,
    list_id: &str,
    write: MemberWrite,
    policy: ExistingPolicy,
) -> Result<Json<Value>, MailchimpProblem> {
    sandbox.store().audience_mut(&caller.account_id, list_id)?;
    sandbox.work(1).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let mut web_id = store.next_web_id;
    let audience = store.audience_mut(&caller.account_id, list_id)?;
    // What the webhooks that hear the API's changes are told.
    let before = Sandbox::heard(audience, Source::Api).then(|| {
        audience
            .members
            .get(&subscriber_hash(&write.email_address))
            .cloned()
    });
    let result = audience.write_member(write, policy, &mut web_id, &now);
    let mut events = Vec::new();
    let response = match result {
        Ok((hash, _)) => {
            let member = &audience.members[&hash];
            if let Some(before) = &before {
                events = events_of_write(before.as_ref(), member);
            }
            Ok(Json(json::member(audience, &hash, member)))
        }
        Err(error) if error.title == "Resource Not Found" => Err(MailchimpProblem::not_found()),
        Err(error) => Err(error.into_problem()),
    };
    store.next_web_id = web_id;
    drop(store);
    sandbox.fire(list_id, Source::Api, events);
    response
}

fn skip_validation(query: &HashMap<String, String>) -> bool {
    query
        .get("skip_merge_validation")
        .is_some_and(|v| v == "true")
}

async fn add_member(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path(list_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let email = body.email_address.clone().unwrap_or_default();
    if body.status.is_none() {
        return Err(MailchimpProblem::field(
            "status",
            "This value should not be blank.",
        ));
    }
    let member = to_write(body, email, skip_validation(&query))?;
    write(&sandbox, &caller, &list_id, member, ExistingPolicy::Refuse).await
}

async fn put_member(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let email = body.email_address.clone().unwrap_or_default();
    if email.trim().is_empty() {
        return Err(MailchimpProblem::field(
            "email_address",
            "This value should not be blank.",
        ));
    }
    if subscriber_hash(&email) != normalise_hash(&hash) {
        return Err(MailchimpProblem::invalid(
            "The subscriber hash in the URL does not match the email address in the body.",
        ));
    }
    let member = to_write(body, email, skip_validation(&query))?;
    write(&sandbox, &caller, &list_id, member, ExistingPolicy::Update).await
}

async fn patch_member(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let hash = normalise_hash(&hash);
    let email = {
        let mut store = sandbox.store();
        let audience = store.audience_mut(&caller.account_id, &list_id)?;
        audience
            .members
            .get(&hash)
            .filter(|m| m.status != MemberStatus::Archived)
            .map(|m| m.email_address.clone())
            .ok_or_else(MailchimpProblem::not_found)?
    };
    let member = to_write(body, email, skip_validation(&query))?;
    write(
        &sandbox,
        &caller,
        &list_id,
        member,
        ExistingPolicy::MustExist,
    )
    .await
}

async fn archive_member(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
) -> Result<StatusCode, MailchimpProblem> {
    sandbox.work(1).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    audience.archive(&normalise_hash(&hash), &now)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_permanent(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
) -> Result<StatusCode, MailchimpProblem> {
    sandbox.work(1).await;
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    audience.delete_permanently(&normalise_hash(&hash))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member_tags(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
) -> Result<Json<Value>, MailchimpProblem> {
    sandbox.work(0).await;
    let mut store = sandbox.store();
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    let member = audience
        .members
        .get(&normalise_hash(&hash))
        .ok_or_else(MailchimpProblem::not_found)?;
    let tags: Vec<Value> = audience
        .tag_names(member)
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name, "date_added": member.last_changed }))
        .collect();
    Ok(Json(
        json!({ "tags": tags, "total_items": tags.len(), "_links": [] }),
    ))
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<TagChange>,
}

#[derive(Deserialize)]
struct TagChange {
    name: String,
    status: String,
}

async fn set_member_tags(
    State(sandbox): State<Sandbox>,
    caller: Caller,
    Path((list_id, hash)): Path<(String, String)>,
    ApiJson(body): ApiJson<TagsBody>,
) -> Result<StatusCode, MailchimpProblem> {
    for change in &body.tags {
        if change.status != "active" && change.status != "inactive" {
            return Err(MailchimpProblem::field(
                "tags.status",
                "status must be active or inactive.",
            ));
        }
    }
    sandbox.work(1).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let mut next_segment = store.next_segment_id;
    let audience = store.audience_mut(&caller.account_id, &list_id)?;
    let hash = normalise_hash(&hash);
    let email = audience
        .members
        .get(&hash)
        .filter(|m| m.status != MemberStatus::Archived)
        .map(|m| m.email_address.clone())
        .ok_or_else(MailchimpProblem::not_found)?;
    for change in body.tags {
        let active = change.status == "active";
        let id = match audience.segment_by_name(change.name.trim()) {
            Some(id) => id,
            None if active => {
                next_segment += 1;
                audience.create_segment(next_segment, &change.name, &now)?
            }
            None => continue,
        };
        audience.set_tag(id, &email, active, &now);
    }
    store.next_segment_id = next_segment;
    Ok(StatusCode::NO_CONTENT)
}
