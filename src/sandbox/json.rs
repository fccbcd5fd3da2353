//! Mailchimp's response shapes for the sandbox's objects, the request-body extractor
//! and the caller extractor, all answering errors as problem+json.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::sandbox::audience::{Audience, Member, MergeField, Segment};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::state::Sandbox;
use crate::sandbox::status::MemberStatus;
use crate::sandbox::store::Credential;

/// A JSON request body; malformed bodies get Mailchimp's 400, unknown fields are ignored.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Sandbox> for ApiJson<T> {
    type Rejection = MailchimpProblem;

    async fn from_request(request: Request, state: &Sandbox) -> Result<Self, MailchimpProblem> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            MailchimpProblem::invalid(format!("The request body could not be read: {e}"))
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            MailchimpProblem::invalid(format!(
                "The request body could not be parsed as the expected JSON: {e}"
            ))
        })
    }
}

/// The account behind a Marketing API call (401 when the credential is unknown).
pub struct Caller {
    pub account_id: String,
}

impl FromRequestParts<Sandbox> for Caller {
    type Rejection = MailchimpProblem;

    async fn from_request_parts(
        parts: &mut Parts,
        sandbox: &Sandbox,
    ) -> Result<Self, MailchimpProblem> {
        let credential = Credential::from_header(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        let account_id = sandbox.store().authenticate(&credential)?;
        Ok(Self { account_id })
    }
}

/// A call about one audience (`/lists/{list_id}/…`): the caller's account, the audience and
/// member the path names, and the query. Every audience route starts with it, so each one
/// authenticates, waits its turn and finds the audience the same way.
pub struct OnList {
    pub sandbox: Sandbox,
    pub account_id: String,
    pub list_id: String,
    /// The member the path names (`…/members/{hash}`), as a subscriber hash: Mailchimp also
    /// accepts the address itself there.
    pub hash: String,
    /// The path's other parts (`segment_id`, `webhook_id`).
    rest: HashMap<String, String>,
    pub query: HashMap<String, String>,
}

impl FromRequestParts<Sandbox> for OnList {
    type Rejection = MailchimpProblem;

    async fn from_request_parts(
        parts: &mut Parts,
        sandbox: &Sandbox,
    ) -> Result<Self, MailchimpProblem> {
        let Caller { account_id } = Caller::from_request_parts(parts, sandbox).await?;
        let Path(mut path) = Path::<HashMap<String, String>>::from_request_parts(parts, sandbox)
            .await
            .map_err(|_| MailchimpProblem::not_found())?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, sandbox)
            .await
            .map_err(|e| MailchimpProblem::invalid(e.body_text()))?;
        let hash = path
            .remove("hash")
            .map(|h| subscriber_hash_of(&h))
            .unwrap_or_default();
        Ok(Self {
            sandbox: sandbox.clone(),
            account_id,
            list_id: path.remove("list_id").unwrap_or_default(),
            hash,
            rest: path,
            query,
        })
    }
}

impl OnList {
    /// The page of a collection the query asks for (`count`, `offset`).
    pub fn paging(&self) -> Result<Paging, MailchimpProblem> {
        Paging::from_query(&self.query)
    }

    /// Waits as the API would for a call that writes `members` members, then hands over
    /// the audience (404 when the account has no such audience).
    pub async fn audience<T>(
        &self,
        members: usize,
        then: impl FnOnce(&mut Audience) -> Result<T, MailchimpProblem>,
    ) -> Result<T, MailchimpProblem> {
        self.sandbox.work(members).await;
        let mut store = self.sandbox.store();
        then(store.audience_mut(&self.account_id, &self.list_id)?)
    }

    /// The part of the path called `name` (empty when the route has none).
    pub fn param(&self, name: &str) -> &str {
        self.rest.get(name).map_or("", String::as_str)
    }

    /// The part of the path called `name`, as a number (404 when it is not one, as no
    /// object has such an ID).
    pub fn number(&self, name: &str) -> Result<u64, MailchimpProblem> {
        self.param(name)
            .parse()
            .map_err(|_| MailchimpProblem::not_found())
    }

    /// The member the path names, unless it is archived (404).
    pub fn member<'a>(&self, audience: &'a Audience) -> Result<&'a Member, MailchimpProblem> {
        audience
            .members
            .get(&self.hash)
            .filter(|m| m.status != MemberStatus::Archived)
            .ok_or_else(MailchimpProblem::not_found)
    }
}

/// Mailchimp also accepts the address itself where a subscriber hash is expected.
pub fn subscriber_hash_of(hash_or_email: &str) -> String {
    if hash_or_email.contains('@') {
        crate::domain::subscriber_hash(hash_or_email)
    } else {
        hash_or_email.to_lowercase()
    }
}

/// A member as batch and segment responses list them (no name, source or web id).
pub fn member_summary(audience: &Audience, hash: &str, member: &Member) -> Value {
    let mut value = self::member(audience, hash, member);
    if let Some(object) = value.as_object_mut() {
        for key in ["full_name", "source", "web_id"] {
            object.remove(key);
        }
    }
    value
}

pub fn member(audience: &Audience, hash: &str, member: &Member) -> Value {
    let mut merge_fields = serde_json::Map::new();
    for field in &audience.merge_fields {
        let value = member
            .merge_fields
            .get(&field.tag)
            .cloned()
            .unwrap_or_else(|| {
                if field.kind == "number" {
                    json!(null)
                } else {
                    json!("")
                }
            });
        merge_fields.insert(field.tag.clone(), value);
    }
    let text = |tag: &str| {
        member
            .merge_fields
            .get(tag)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let full_name = format!("{} {}", text("FNAME"), text("LNAME"))
        .trim()
        .to_owned();
    let tags: Vec<Value> = audience
        .tag_names(member)
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    let opted_in = matches!(member.status, MemberStatus::Subscribed);
    json!({
        "id": hash,
        "email_address": member.email_address,
        "unique_email_id": &hash[..10],
        "contact_id": hash,
        "full_name": full_name,
        "web_id": member.web_id,
        "email_type": member.email_type,
        "status": member.status,
        "merge_fields": merge_fields,
        "interests": {},
        "stats": { "avg_open_rate": 0, "avg_click_rate": 0 },
        "ip_signup": "",
        "timestamp_signup": member.timestamp_signup,
        "ip_opt": "",
        "timestamp_opt": if opted_in { member.timestamp_signup.as_str() } else { "" },
        "member_rating": 2,
        "last_changed": member.last_changed,
        "language": member.language,
        "vip": member.vip,
        "email_client": "",
        "source": "API - Generic",
        "tags_count": tags.len(),
        "tags": tags,
        "list_id": audience.id,
        "_links": [],
    })
}

pub fn audience(audience: &Audience) -> Value {
    let count = |status| audience.count(status) as u64;
    json!({
        "id": audience.id,
        "web_id": audience.web_id,
        "name": audience.name,
        "contact": {
            "company": "Sandbox", "address1": "1 Sandbox Way", "address2": "", "city": "Atlanta",
            "state": "GA", "zip": "30308", "country": "US", "phone": ""
        },
        "permission_reminder": audience.permission_reminder,
        "use_archive_bar": true,
        "campaign_defaults": {
            "from_name": audience.from_name, "from_email": audience.from_email,
            "subject": "", "language": "en"
        },
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": audience.date_created,
        "list_rating": 0,
        "email_type_option": false,
        "subscribe_url_short": "",
        "subscribe_url_long": "",
        "beamer_address": "",
        "visibility": "prv",
        "double_optin": audience.double_optin,
        "has_welcome": false,
        "marketing_permissions": false,
        "modules": [],
        "stats": {
            "member_count": count(MemberStatus::Subscribed),
            "unsubscribe_count": count(MemberStatus::Unsubscribed),
            "cleaned_count": count(MemberStatus::Cleaned),
            "member_count_since_send": count(MemberStatus::Subscribed),
            "unsubscribe_count_since_send": count(MemberStatus::Unsubscribed),
            "cleaned_count_since_send": count(MemberStatus::Cleaned),
            "total_contacts": audience.members.values().filter(|m| m.status != MemberStatus::Archived).count(),
            "campaign_count": 0,
            "merge_field_count": audience.merge_fields.len(),
            "avg_sub_rate": 0, "avg_unsub_rate": 0, "target_sub_rate": 0,
            "open_rate": 0, "click_rate": 0,
            "last_sub_date": "", "last_unsub_date": "", "campaign_last_sent": ""
        },
        "_links": [],
    })
}

pub fn segment(audience: &Audience, segment: &Segment) -> Value {
    json!({
        "id": segment.id,
        "name": segment.name,
        "member_count": segment.members.len(),
        "type": "static",
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
        "options": { "match": "any", "conditions": [] },
        "list_id": audience.id,
        "_links": [],
    })
}

pub fn merge_field(audience: &Audience, field: &MergeField) -> Value {
    json!({
        "merge_id": field.merge_id,
        "tag": field.tag,
        "name": field.name,
        "type": field.kind,
        "required": field.required,
        "default_value": field.default_value,
        "public": field.public,
        "display_order": field.display_order,
        "options": field.options,
        "help_text": "",
        "list_id": audience.id,
        "_links": [],
    })
}

/// One of an audience's collections as Mailchimp answers it: a page of items under `key`,
/// the audience, and how many items there are in all.
pub fn collection(audience: &Audience, key: &str, items: Vec<Value>, total_items: usize) -> Value {
    let mut answer = serde_json::Map::new();
    answer.insert(key.to_owned(), Value::Array(items));
    answer.insert("list_id".into(), json!(audience.id));
    answer.insert("total_items".into(), json!(total_items));
    answer.insert("_links".into(), json!([]));
    Value::Object(answer)
}

/// Which page of a collection a call asks for: its `count` and `offset` query values, with
/// Mailchimp's bounds (count ≤ 1000).
pub struct Paging {
    count: usize,
    offset: usize,
}

impl Paging {
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, MailchimpProblem> {
        paging(query.get("count"), query.get("offset"))
            .map(|(count, offset)| Self { count, offset })
    }

    /// The items of the page asked for.
    pub fn page<I: IntoIterator>(&self, items: I) -> std::iter::Take<std::iter::Skip<I::IntoIter>> {
        items.into_iter().skip(self.offset).take(self.count)
    }
}

fn paging(
    count: Option<&String>,
    offset: Option<&String>,
) -> Result<(usize, usize), MailchimpProblem> {
    let count = match count {
        None => 10,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=1000).contains(c))
            .ok_or_else(|| {
                MailchimpProblem::field("count", "count must be a whole number from 1 to 1000.")
            })?,
    };
    let offset = match offset {
        None => 0,
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| MailchimpProblem::field("offset", "offset must be a whole number."))?,
    };
    Ok((count, offset))
}
