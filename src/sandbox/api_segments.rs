//! Tags (static segments) and merge fields of an audience.

use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sandbox::audience::MergeField;
use crate::sandbox::clock;
use crate::sandbox::json::{self, ApiJson, OnList};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::state::Sandbox;

/// Mailchimp's limit on members added or removed in one segment call.
pub const MAX_SEGMENT_BATCH: usize = 500;

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route(
            "/lists/{list_id}/segments",
            get(segments).post(create_segment),
        )
        .route(
            "/lists/{list_id}/segments/{segment_id}",
            get(segment).post(batch_segment),
        )
        .route(
            "/lists/{list_id}/merge-fields",
            get(merge_fields).post(create_merge_field),
        )
}

async fn segments(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    let paging = call.paging()?;
    if let Some(kind) = call.query.get("type") {
        if !["saved", "static", "fuzzy"].contains(&kind.as_str()) {
            return Err(MailchimpProblem::field(
                "type",
                "type must be saved, static or fuzzy.",
            ));
        }
    }
    let only_other_kinds = call.query.get("type").is_some_and(|t| t != "static");
    call.audience(0, |audience| {
        let all: Vec<Value> = if only_other_kinds {
            Vec::new()
        } else {
            audience
                .segments
                .values()
                .map(|s| json::segment(audience, s))
                .collect()
        };
        let total_items = all.len();
        let page = paging.page(all).collect();
        Ok(Json(json::collection(
            audience,
            "segments",
            page,
            total_items,
        )))
    })
    .await
}

#[derive(Deserialize)]
struct NewSegment {
    #[serde(default)]
    name: String,
    static_segment: Option<Vec<String>>,
}

async fn create_segment(
    call: OnList,
    ApiJson(body): ApiJson<NewSegment>,
) -> Result<Json<Value>, MailchimpProblem> {
    let Some(emails) = body.static_segment else {
        return Err(MailchimpProblem::field(
            "static_segment",
            "The sandbox creates static segments (tags) only: give static_segment, even empty.",
        ));
    };
    call.sandbox.work(emails.len()).await;
    let now = clock::now();
    let mut store = call.sandbox.store();
    store.next_segment_id += 1;
    let id = store.next_segment_id;
    let audience = store.audience_mut(&call.account_id, &call.list_id)?;
    audience.create_segment(id, &body.name, &now)?;
    for email in &emails {
        audience.set_tag(id, email, true, &now);
    }
    Ok(Json(json::segment(audience, &audience.segments[&id])))
}

async fn segment(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    let segment_id = call.number("segment_id")?;
    call.audience(0, |audience| {
        let segment = audience
            .segments
            .get(&segment_id)
            .ok_or_else(MailchimpProblem::not_found)?;
        Ok(Json(json::segment(audience, segment)))
    })
    .await
}

#[derive(Deserialize)]
struct SegmentBatch {
    #[serde(default)]
    members_to_add: Vec<String>,
    #[serde(default)]
    members_to_remove: Vec<String>,
}

async fn batch_segment(
    call: OnList,
    ApiJson(body): ApiJson<SegmentBatch>,
) -> Result<Json<Value>, MailchimpProblem> {
    let segment_id = call.number("segment_id")?;
    for (field, list) in [
        ("members_to_add", &body.members_to_add),
        ("members_to_remove", &body.members_to_remove),
    ] {
        if list.len() > MAX_SEGMENT_BATCH {
            return Err(MailchimpProblem::field(
                field,
                format!(
                    "At most {MAX_SEGMENT_BATCH} members can be given; {} were.",
                    list.len()
                ),
            ));
        }
    }
    {
        let mut store = call.sandbox.store();
        let audience = store.audience_mut(&call.account_id, &call.list_id)?;
        audience
            .segments
            .get(&segment_id)
            .ok_or_else(MailchimpProblem::not_found)?;
    }
    let now = clock::now();
    let work = body.members_to_add.len() + body.members_to_remove.len();
    call.audience(work, |audience| {
        let (mut added, mut removed, mut not_found) = (Vec::new(), Vec::new(), Vec::new());
        for (emails, add) in [
            (&body.members_to_add, true),
            (&body.members_to_remove, false),
        ] {
            for email in emails {
                if audience.set_tag(segment_id, email, add, &now) {
                    let hash = crate::domain::subscriber_hash(email);
                    let member = json::member_summary(audience, &hash, &audience.members[&hash]);
                    if add {
                        added.push(member)
                    } else {
                        removed.push(member)
                    }
                } else {
                    not_found.push(email.clone());
                }
            }
        }
        let errors: Vec<Value> = if not_found.is_empty() {
            Vec::new()
        } else {
            vec![json!({
                "email_addresses": not_found,
                "error": "Email addresses do not belong to this audience, so they were ignored.",
            })]
        };
        Ok(Json(json!({
            "members_added": added,
            "members_removed": removed,
            "errors": errors,
            "total_added": added.len(),
            "total_removed": removed.len(),
            "error_count": not_found.len(),
            "_links": [],
        })))
    })
    .await
}

async fn merge_fields(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    let paging = call.paging()?;
    call.audience(0, |audience| {
        let fields: Vec<Value> = paging
            .page(&audience.merge_fields)
            .map(|f| json::merge_field(audience, f))
            .collect();
        let total = audience.merge_fields.len();
        Ok(Json(json::collection(
            audience,
            "merge_fields",
            fields,
            total,
        )))
    })
    .await
}

const MERGE_TYPES: [&str; 11] = [
    "text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown",
    "birthday", "zip",
];

#[derive(Deserialize)]
struct NewMergeField {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default_value: String,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    options: crate::sandbox::audience::MergeOptions,
}

async fn create_merge_field(
    call: OnList,
    ApiJson(body): ApiJson<NewMergeField>,
) -> Result<Json<Value>, MailchimpProblem> {
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(MailchimpProblem::field(
            "name",
            "This value should not be blank.",
        ));
    }
    let kind = body.kind.unwrap_or_default();
    if !MERGE_TYPES.contains(&kind.as_str()) {
        return Err(MailchimpProblem::field(
            "type",
            format!("type must be one of {}.", MERGE_TYPES.join(", ")),
        ));
    }
    let tag = match body.tag {
        Some(tag) => tag.trim().to_uppercase(),
        None => name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_uppercase(),
    };
    if tag.is_empty()
        || tag.chars().count() > 10
        || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(MailchimpProblem::field(
            "tag",
            "A merge tag has 1 to 10 letters, digits or underscores.",
        ));
    }
    call.audience(0, |audience| {
        if audience.merge_fields.iter().any(|f| f.tag == tag) {
            return Err(MailchimpProblem::invalid(format!(
                "A merge field with the tag \"{tag}\" already exists."
            )));
        }
        let merge_id = audience
            .merge_fields
            .iter()
            .map(|f| f.merge_id)
            .max()
            .unwrap_or(0)
            + 1;
        let field = MergeField {
            merge_id,
            tag,
            name,
            kind,
            required: body.required,
            default_value: body.default_value,
            public: body.public,
            display_order: merge_id + 1,
            options: body.options,
        };
        let json = json::merge_field(audience, &field);
        audience.merge_fields.push(field);
        Ok(Json(json))
    })
    .await
}
