//! Members of an audience: list, read, add, upsert, update, archive, delete for good,
//! and a member's tags.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::subscriber_hash;
use crate::sandbox::audience::{ExistingPolicy, MemberWrite, events_of_write};
use crate::sandbox::clock;
use crate::sandbox::json::{self, ApiJson, OnList};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::state::Sandbox;
use crate::sandbox::status::MemberStatus;
use crate::sandbox::webhooks::{Event, Source};

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

async fn list_members(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    let paging = call.paging()?;
    let status = match call.query.get("status") {
        None => None,
        Some(raw) => Some(raw.parse::<MemberStatus>().map_err(|_| {
            MailchimpProblem::field("status", "status must be subscribed, unsubscribed, cleaned, pending, transactional or archived.")
        })?),
    };
    let changed = Changed::from_query(&call.query, status)?;
    call.audience(0, |audience| {
        let mut matching: Vec<(&String, &crate::sandbox::audience::Member)> = audience
            .members
            .iter()
            .filter(|(_, m)| match status {
                Some(status) => m.status == status,
                None => m.status != MemberStatus::Archived,
            })
            .filter(|(_, m)| changed.admits(m))
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
    })
    .await
}

async fn get_member(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    call.audience(0, |audience| {
        let member = audience
            .members
            .get(&call.hash)
            .ok_or_else(MailchimpProblem::not_found)?;
        Ok(Json(json::member(audience, &call.hash, member)))
    })
    .await
}

/// The members list's filters on when a member changed: `since_last_changed` (changed
/// after), `before_last_changed` (changed before) and `unsubscribed_since` (unsubscribed at
/// or after; with any status but unsubscribed it is refused), each an ISO 8601 time.
#[derive(Default)]
struct Changed {
    after: Option<OffsetDateTime>,
    before: Option<OffsetDateTime>,
    unsubscribed_since: Option<OffsetDateTime>,
}

impl Changed {
    fn from_query(
        query: &std::collections::HashMap<String, String>,
        status: Option<MemberStatus>,
    ) -> Result<Self, MailchimpProblem> {
        let time = |name: &str| -> Result<Option<OffsetDateTime>, MailchimpProblem> {
            query
                .get(name)
                .map(|raw| {
                    OffsetDateTime::parse(raw.trim(), &Rfc3339).map_err(|_| {
                        MailchimpProblem::field(
                            name,
                            "Use ISO 8601 time format: 2015-10-21T15:41:36+00:00.",
                        )
                    })
                })
                .transpose()
        };
        let changed = Self {
            after: time("since_last_changed")?,
            before: time("before_last_changed")?,
            unsubscribed_since: time("unsubscribed_since")?,
        };
        if changed.unsubscribed_since.is_some()
            && status.is_some_and(|s| s != MemberStatus::Unsubscribed)
        {
            return Err(MailchimpProblem::field(
                "unsubscribed_since",
                "unsubscribed_since filters unsubscribed members: use it with status=unsubscribed or no status.",
            ));
        }
        Ok(changed)
    }

    fn admits(&self, member: &crate::sandbox::audience::Member) -> bool {
        let at = |text: &str| OffsetDateTime::parse(text, &Rfc3339).ok();
        let changed = at(&member.last_changed);
        if self
            .after
            .is_some_and(|after| changed.is_none_or(|c| c <= after))
        {
            return false;
        }
        if self
            .before
            .is_some_and(|before| changed.is_none_or(|c| c >= before))
        {
            return false;
        }
        if let Some(since) = self.unsubscribed_since {
            let unsubscribed = member.unsubscribed_at.as_deref().and_then(at);
            return member.status == MemberStatus::Unsubscribed
                && unsubscribed.is_some_and(|u| u >= since);
        }
        true
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
    call: &OnList,
    write: MemberWrite,
    policy: ExistingPolicy,
) -> Result<Json<Value>, MailchimpProblem> {
    let (sandbox, list_id) = (&call.sandbox, call.list_id.as_str());
    sandbox.store().audience_mut(&call.account_id, list_id)?;
    sandbox.work(1).await;
    let now = clock::now();
    let mut store = sandbox.store();
    let mut web_id = store.next_web_id;
    let audience = store.audience_mut(&call.account_id, list_id)?;
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

fn skip_validation(call: &OnList) -> bool {
    call.query
        .get("skip_merge_validation")
        .is_some_and(|v| v == "true")
}

async fn add_member(
    call: OnList,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let email = body.email_address.clone().unwrap_or_default();
    if body.status.is_none() {
        return Err(MailchimpProblem::field(
            "status",
            "This value should not be blank.",
        ));
    }
    let member = to_write(body, email, skip_validation(&call))?;
    write(&call, member, ExistingPolicy::Refuse).await
}

async fn put_member(
    call: OnList,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let email = body.email_address.clone().unwrap_or_default();
    if email.trim().is_empty() {
        return Err(MailchimpProblem::field(
            "email_address",
            "This value should not be blank.",
        ));
    }
    if subscriber_hash(&email) != call.hash {
        return Err(MailchimpProblem::invalid(
            "The subscriber hash in the URL does not match the email address in the body.",
        ));
    }
    let member = to_write(body, email, skip_validation(&call))?;
    write(&call, member, ExistingPolicy::Update).await
}

/// Updates a member; a new `email_address` gives the contact that address first (it keeps
/// its status, tags and history under the new subscriber hash).
async fn patch_member(
    call: OnList,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, MailchimpProblem> {
    let (renamed, email) = {
        let mut store = call.sandbox.store();
        let audience = store.audience_mut(&call.account_id, &call.list_id)?;
        let current = call.member(audience)?.email_address.clone();
        match body.email_address.as_deref().map(str::trim) {
            Some(new) if !new.is_empty() && new != current => {
                let event = audience.rename(&call.hash, new)?;
                let heard = Sandbox::heard(audience, Source::Api);
                let Event::Upemail { new_email, .. } = &event else {
                    unreachable!("a rename is an address change")
                };
                let email = new_email.clone();
                (heard.then_some(event), email)
            }
            _ => (None, current),
        }
    };
    if let Some(event) = renamed {
        call.sandbox.fire(&call.list_id, Source::Api, vec![event]);
    }
    let member = to_write(body, email, skip_validation(&call))?;
    write(&call, member, ExistingPolicy::MustExist).await
}

async fn archive_member(call: OnList) -> Result<StatusCode, MailchimpProblem> {
    let now = clock::now();
    call.audience(1, |audience| audience.archive(&call.hash, &now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_permanent(call: OnList) -> Result<StatusCode, MailchimpProblem> {
    call.audience(1, |audience| audience.delete_permanently(&call.hash))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member_tags(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    call.audience(0, |audience| {
        let member = audience
            .members
            .get(&call.hash)
            .ok_or_else(MailchimpProblem::not_found)?;
        let tags: Vec<Value> = audience
            .tag_names(member)
            .into_iter()
            .map(|(id, name)| json!({ "id": id, "name": name, "date_added": member.last_changed }))
            .collect();
        Ok(Json(
            json!({ "tags": tags, "total_items": tags.len(), "_links": [] }),
        ))
    })
    .await
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
    call: OnList,
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
    call.sandbox.work(1).await;
    let now = clock::now();
    let mut store = call.sandbox.store();
    let mut next_segment = store.next_segment_id;
    let audience = store.audience_mut(&call.account_id, &call.list_id)?;
    let email = call.member(audience)?.email_address.clone();
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
