//! Every call the console makes to Mailchimp's Marketing API (exports, clean-ups, previews,
//! connecting a destination, the Data matching page), in domain terms: typed requests and
//! answers, paging, retries with back-off, the account's connection budget and a count of
//! the calls made. Nothing outside this file builds a Marketing API path or reads its JSON;
//! the client below it only sends what it is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::MemberStatus;
use crate::mailchimp::client::{
    ApiError, AudienceInfo, Client, Connection, ErrorKind, MERGE_FIELD_PARTS, MergeField,
    merge_field_page_fields,
};
use crate::mailchimp::limiter::{AccountLimit, Limiters, MAX_ATTEMPTS, with_attempts};

/// Mailchimp's most members per batch subscribe, and per tag call.
pub const BATCH: usize = 500;
/// Mailchimp's largest page when listing.
const PAGE: usize = 1000;
/// What a batch subscribe's answer is read for: each member's address and status, and
/// each refusal's address and reason.
const BATCH_ANSWER_FIELDS: &str = "new_members.email_address,new_members.status,\
     updated_members.email_address,updated_members.status,errors.email_address,errors.error";

/// A destination's way into its Mailchimp audience's account.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    connection: Connection,
    limit: Arc<AccountLimit>,
    /// Calls sent (every attempt), not yet taken by [`Gateway::take_calls`].
    calls: AtomicI64,
    /// Set when the run stops: calls not yet sent are not sent at all.
    stopped: AtomicBool,
    /// How many times a call that can succeed later is tried.
    attempts: u32,
}

/// What one small read of an audience says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceCheck {
    pub id: String,
    /// When the audience was made: another audience under the same ID is another audience.
    pub date_created: String,
    /// Its contacts but the archived ones (subscribed, unsubscribed, cleaned, pending, …).
    pub contacts: i64,
    /// Its contacts by status: subscribed, unsubscribed, cleaned, and the others (pending,
    /// transactional). A status changed in Mailchimp moves them.
    pub by_status: [i64; 4],
    /// How many merge fields it has (a field added or deleted in Mailchimp moves it).
    pub merge_field_count: Option<i64>,
}

impl AudienceCheck {
    /// Which of [`AudienceCheck::by_status`] counts a member of this status.
    pub fn bucket(status: MemberStatus) -> usize {
        match status {
            MemberStatus::Subscribed => 0,
            MemberStatus::Unsubscribed => 1,
            MemberStatus::Cleaned => 2,
            _ => 3,
        }
    }
}

/// One member of a batch upsert.
#[derive(Debug, Serialize)]
pub struct Upsert<'a> {
    pub email_address: &'a str,
    /// Batch subscribe applies it to existing members too: the status Mailchimp already
    /// has for them, the new-member status for the others.
    pub status: &'a str,
    pub merge_fields: &'a Map<String, Value>,
    /// Tag names to add (to new and existing members); tags not named are left alone.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tags: Vec<&'a str>,
}

/// The body of a batch subscribe. `sync_tags` is never sent: it would replace every tag a
/// member has, including those that people or other tools set.
#[derive(Serialize)]
struct BatchBody<'a> {
    members: &'a [Upsert<'a>],
    update_existing: bool,
}

/// What Mailchimp did with one member of a batch upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOutcome {
    Created { status: Option<String> },
    Updated { status: Option<String> },
    Refused(MemberRefusal),
}

/// Why Mailchimp refused a member, and whether it will refuse it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRefusal {
    pub title: &'static str,
    pub detail: String,
    /// Refused for good (compliance state, permanently deleted, fake address): never sent
    /// again.
    pub permanent: bool,
}

impl MemberRefusal {
    pub fn of(detail: String) -> Self {
        let lower = detail.to_lowercase();
        let (title, permanent) = if lower.contains("compliance state") {
            ("Member In Compliance State", true)
        } else if lower.contains("permanently deleted") {
            ("Forgotten Email Not Subscribed", true)
        } else if lower.contains("looks fake or invalid") {
            ("Invalid Resource", true)
        } else {
            ("Member not updated", false)
        };
        Self {
            title,
            detail,
            permanent,
        }
    }
}

/// Each member's outcome, by the address Mailchimp answered with.
#[derive(Debug, Default)]
pub struct BatchAnswer {
    pub members: Vec<(String, MemberOutcome)>,
}

/// A tag call's answer: addresses it ignored because they are not on the audience.
#[derive(Debug, Default)]
pub struct Untagged {
    pub not_in_audience: Vec<String>,
}

/// A member archived, or already gone from the audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    Done,
    AlreadyGone,
}

impl Gateway {
    pub fn new(client: Client, connection: Connection, limiters: &Limiters) -> Self {
        Self::trying(client, connection, limiters, MAX_ATTEMPTS)
    }

    /// The way in for a page a person waits on: within the same connection budget, but a
    /// call that fails is tried once more at most, and then its failure is said at once.
    pub fn for_a_person(client: Client, connection: Connection, limiters: &Limiters) -> Self {
        Self::trying(client, connection, limiters, 2)
    }

    fn trying(client: Client, connection: Connection, limiters: &Limiters, attempts: u32) -> Self {
        let limit = limiters.for_connection(&connection);
        Self {
            inner: Arc::new(Inner {
                client,
                connection,
                limit,
                calls: AtomicI64::new(0),
                stopped: AtomicBool::new(false),
                attempts,
            }),
        }
    }

    /// Calls made since the last time they were taken.
    pub fn take_calls(&self) -> i64 {
        self.inner.calls.swap(0, Ordering::Relaxed)
    }

    /// No call leaves after this (one already sent is answered).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
    }

    /// One call within the account's connection budget, retried while it can succeed later.
    async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let inner = &self.inner;
        let (value, _) = with_attempts(&inner.limit, inner.attempts, || {
            let method = method.clone();
            async move {
                if inner.stopped.load(Ordering::Relaxed) {
                    return Err(ApiError::not_sent());
                }
                inner.calls.fetch_add(1, Ordering::Relaxed);
                inner
                    .client
                    .call_with(&inner.connection, method, path, body)
                    .await
            }
        })
        .await?;
        Ok(value)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send::<T, ()>(Method::GET, path, None).await
    }

    /// The audience's merge fields.
    pub async fn merge_fields(&self, list: &str) -> Result<Vec<MergeField>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            merge_fields: Vec<MergeField>,
        }
        let page: Page = self
            .get(&format!(
                "/lists/{list}/merge-fields?count={PAGE}&fields={}",
                merge_field_page_fields()
            ))
            .await?;
        Ok(page.merge_fields)
    }

    /// The audience's ID, name and member count: what connecting a destination checks.
    pub async fn audience(&self, list: &str) -> Result<AudienceInfo, ApiError> {
        let answer: Value = self
            .get(&format!("/lists/{list}?fields=id,name,stats.member_count"))
            .await?;
        Ok(AudienceInfo {
            id: answer["id"].as_str().unwrap_or(list).to_owned(),
            name: answer["name"].as_str().unwrap_or_default().to_owned(),
            member_count: answer["stats"]["member_count"].as_i64().unwrap_or(0),
        })
    }

    /// Creates a merge field in the audience.
    pub async fn create_merge_field(
        &self,
        list: &str,
        name: &str,
        kind: &str,
        tag: &crate::domain::destination::MergeTag,
    ) -> Result<MergeField, ApiError> {
        let body = serde_json::json!({ "name": name, "type": kind, "tag": tag.as_str() });
        self.send(
            Method::POST,
            &format!(
                "/lists/{list}/merge-fields?fields={}",
                MERGE_FIELD_PARTS.join(",")
            ),
            Some(&body),
        )
        .await
    }

    /// The audience's tags (static segments) by name, every page of them.
    pub async fn tags(&self, list: &str) -> Result<HashMap<String, u64>, ApiError> {
        #[derive(Deserialize)]
        struct Tag {
            id: u64,
            name: String,
        }
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            segments: Vec<Tag>,
            #[serde(default)]
            total_items: usize,
        }
        let mut tags = HashMap::new();
        let mut offset = 0;
        loop {
            let page: Page = self
                .get(&format!(
                    "/lists/{list}/segments?type=static&count={PAGE}&offset={offset}&fields=segments.id,segments.name,total_items"
                ))
                .await?;
            let found = page.segments.len();
            tags.extend(page.segments.into_iter().map(|t| (t.name, t.id)));
            offset += found;
            if found == 0 || offset >= page.total_items {
                return Ok(tags);
            }
        }
    }

    /// The audience's identity and size, in one small call: what a run checks first to
    /// notice that the audience changed behind the console.
    pub async fn audience_check(&self, list: &str) -> Result<AudienceCheck, ApiError> {
        #[derive(Deserialize, Default)]
        struct Stats {
            total_contacts: Option<i64>,
            #[serde(default)]
            member_count: i64,
            #[serde(default)]
            unsubscribe_count: i64,
            #[serde(default)]
            cleaned_count: i64,
            merge_field_count: Option<i64>,
        }
        #[derive(Deserialize)]
        struct List {
            id: String,
            #[serde(default)]
            date_created: String,
            #[serde(default)]
            stats: Stats,
        }
        let found: List = self
            .get(&format!(
                "/lists/{list}?fields=id,date_created,stats.total_contacts,stats.member_count,\
                 stats.unsubscribe_count,stats.cleaned_count,stats.merge_field_count"
            ))
            .await?;
        let stats = found.stats;
        let known = stats.member_count + stats.unsubscribe_count + stats.cleaned_count;
        let contacts = stats.total_contacts.unwrap_or(known);
        Ok(AudienceCheck {
            id: found.id,
            date_created: found.date_created,
            contacts,
            by_status: [
                stats.member_count,
                stats.unsubscribe_count,
                stats.cleaned_count,
                (contacts - known).max(0),
            ],
            merge_field_count: stats.merge_field_count,
        })
    }

    /// Every member of the audience (archived ones are not listed), handed to `each` as
    /// (address, status); pages of 1,000 with only those two fields, the pages after the
    /// first read side by side within the account's connections.
    pub async fn members(
        &self,
        list: &str,
        mut each: impl FnMut(&str, MemberStatus),
    ) -> Result<(), ApiError> {
        #[derive(Deserialize)]
        struct Member {
            email_address: String,
            status: String,
        }
        let page_at = |offset: usize| async move {
            self.get::<MembersPage<Member>>(&format!(
                "/lists/{list}/members?count={PAGE}&offset={offset}\
                 &fields=members.email_address,members.status,total_items"
            ))
            .await
        };
        let mut take = |page: MembersPage<Member>| {
            for member in page.members {
                if let Ok(status) = member.status.parse::<MemberStatus>() {
                    each(&member.email_address, status);
                }
            }
        };
        let first = page_at(0).await?;
        let (found, total) = (first.members.len(), first.total_items);
        take(first);
        if found == 0 {
            return Ok(());
        }
        let offsets: Vec<usize> = (1..total.div_ceil(PAGE)).map(|n| n * PAGE).collect();
        for group in offsets.chunks(20) {
            let pages = futures::future::join_all(group.iter().map(|o| page_at(*o))).await;
            for page in pages {
                take(page?);
            }
        }
        Ok(())
    }

    /// Every member of the audience whose status is not `except`, page by page, handed to
    /// `each` as (address, status); only the address is read from each member.
    pub async fn statuses(
        &self,
        list: &str,
        except: MemberStatus,
        mut each: impl FnMut(&str, MemberStatus),
    ) -> Result<(), ApiError> {
        #[derive(Deserialize)]
        struct Member {
            email_address: String,
        }
        // The statuses are read side by side (each its own pages, one after another).
        let listed = MemberStatus::ALL
            .into_iter()
            .filter(|s| *s != except && *s != MemberStatus::Archived);
        let reads = listed.map(|status| async move {
            let mut emails = Vec::new();
            let mut offset = 0;
            loop {
                let page: MembersPage<Member> = self
                    .get(&format!(
                        "/lists/{list}/members?status={}&count={PAGE}&offset={offset}&fields=members.email_address,total_items",
                        status.as_str()
                    ))
                    .await?;
                let found = page.members.len();
                offset += found;
                emails.extend(page.members.into_iter().map(|m| m.email_address));
                if found == 0 || offset >= page.total_items {
                    return Ok::<_, ApiError>((status, emails));
                }
            }
        });
        for read in futures::future::join_all(reads).await {
            let (status, emails) = read?;
            for email in &emails {
                each(email, status);
            }
        }
        Ok(())
    }

    /// The members that changed after `since` (an ISO 8601 time), whatever their status but
    /// archived, handed to `each` as (address, status, when it last changed): one small page
    /// when few changed. When more than `at_most` did, none is handed over and the answer is
    /// false (after one call).
    pub async fn changed_members(
        &self,
        list: &str,
        since: &str,
        at_most: usize,
        mut each: impl FnMut(&str, MemberStatus, &str),
    ) -> Result<bool, ApiError> {
        #[derive(Deserialize)]
        struct Member {
            email_address: String,
            status: String,
            #[serde(default)]
            last_changed: String,
        }
        // An offset such as +00:00 must reach Mailchimp as written, not as a space.
        let since = since.replace('+', "%2B");
        let mut offset = 0;
        loop {
            let page: MembersPage<Member> = self
                .get(&format!(
                    "/lists/{list}/members?since_last_changed={since}&count={PAGE}&offset={offset}\
                     &fields=members.email_address,members.status,members.last_changed,total_items"
                ))
                .await?;
            if page.total_items > at_most {
                return Ok(false);
            }
            let found = page.members.len();
            offset += found;
            for member in &page.members {
                if let Ok(status) = member.status.parse::<MemberStatus>() {
                    each(&member.email_address, status, &member.last_changed);
                }
            }
            if found == 0 || offset >= page.total_items {
                return Ok(true);
            }
        }
    }

    /// Batch subscribe with `update_existing`: at most [`BATCH`] members, each with the
    /// tags to add. The answer says, per member, created, updated or refused.
    pub async fn batch_upsert(
        &self,
        list: &str,
        members: &[Upsert<'_>],
    ) -> Result<BatchAnswer, ApiError> {
        debug_assert!(members.len() <= BATCH);
        // Mailchimp would send whole member records back (about a kilobyte each): only
        // these fields are read, so only they are asked for.
        #[derive(Deserialize)]
        struct Answered {
            email_address: String,
            #[serde(default)]
            status: Option<String>,
        }
        #[derive(Deserialize)]
        struct Error {
            #[serde(default)]
            email_address: String,
            #[serde(default)]
            error: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            new_members: Vec<Answered>,
            #[serde(default)]
            updated_members: Vec<Answered>,
            #[serde(default)]
            errors: Vec<Error>,
        }
        let body = BatchBody {
            members,
            update_existing: true,
        };
        let answer: Answer = self
            .send(
                Method::POST,
                &format!("/lists/{list}?fields={BATCH_ANSWER_FIELDS}"),
                Some(&body),
            )
            .await?;
        let mut out = BatchAnswer {
            members: Vec::with_capacity(members.len()),
        };
        for m in answer.new_members {
            out.members
                .push((m.email_address, MemberOutcome::Created { status: m.status }));
        }
        for m in answer.updated_members {
            out.members
                .push((m.email_address, MemberOutcome::Updated { status: m.status }));
        }
        for e in answer.errors {
            out.members.push((
                e.email_address,
                MemberOutcome::Refused(MemberRefusal::of(e.error)),
            ));
        }
        Ok(out)
    }

    /// Takes one tag off up to [`BATCH`] members.
    pub async fn untag(
        &self,
        list: &str,
        tag_id: u64,
        emails: &[&str],
    ) -> Result<Untagged, ApiError> {
        debug_assert!(emails.len() <= BATCH);
        #[derive(Serialize)]
        struct Body<'a> {
            members_to_remove: &'a [&'a str],
        }
        #[derive(Deserialize)]
        struct Error {
            #[serde(default)]
            email_addresses: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            errors: Vec<Error>,
        }
        // The members added and removed come back whole: only the addresses ignored are
        // read.
        let answer: Answer = self
            .send(
                Method::POST,
                &format!("/lists/{list}/segments/{tag_id}?fields=errors.email_addresses"),
                Some(&Body {
                    members_to_remove: emails,
                }),
            )
            .await?;
        Ok(Untagged {
            not_in_audience: answer
                .errors
                .into_iter()
                .flat_map(|e| e.email_addresses)
                .collect(),
        })
    }

    /// Archives one member (Mailchimp archives one member per call).
    pub async fn archive(&self, list: &str, email: &str) -> Result<Archived, ApiError> {
        let hash = crate::domain::subscriber_hash(email);
        self.remove(Method::DELETE, &format!("/lists/{list}/members/{hash}"))
            .await
    }

    /// Deletes a member for good, by subscriber hash: Mailchimp's erasure, after which the
    /// address cannot be added again through the API.
    pub async fn delete_permanently(&self, list: &str, hash: &str) -> Result<Archived, ApiError> {
        let path = format!("/lists/{list}/members/{hash}/actions/delete-permanent");
        self.remove(Method::POST, &path).await
    }

    /// A call that removes something: one already gone is no error.
    async fn remove(&self, method: Method, path: &str) -> Result<Archived, ApiError> {
        match self.send::<Value, ()>(method, path, None).await {
            Ok(_) => Ok(Archived::Done),
            Err(err) if err.kind == ErrorKind::NotFound => Ok(Archived::AlreadyGone),
            Err(err) => Err(err),
        }
    }
}

/// A page of an audience's members, with only the parts asked for.
#[derive(Deserialize)]
struct MembersPage<M> {
    #[serde(default = "Vec::new")]
    members: Vec<M>,
    #[serde(default)]
    total_items: usize,
}

/// A webhook of an audience: Mailchimp's ID for it and the URL it calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
}

/// The events and sources a webhook of the console's asks for: opt-outs, bounces, profile
/// and address changes, made by the contact or in Mailchimp's pages, never the API's (the
/// console's own writes would come back to it).
#[derive(Serialize)]
struct NewWebhook<'a> {
    url: &'a str,
    events: WebhookEvents,
    sources: WebhookSources,
}

#[derive(Serialize)]
struct WebhookEvents {
    subscribe: bool,
    unsubscribe: bool,
    profile: bool,
    cleaned: bool,
    upemail: bool,
    campaign: bool,
}

#[derive(Serialize)]
struct WebhookSources {
    user: bool,
    admin: bool,
    api: bool,
}

impl Gateway {
    /// The audience's webhooks.
    pub async fn webhooks(&self, list: &str) -> Result<Vec<WebhookInfo>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            webhooks: Vec<WebhookInfo>,
        }
        let page: Page = self.get(&format!("/lists/{list}/webhooks")).await?;
        Ok(page.webhooks)
    }

    /// Adds a webhook calling `url` for unsubscribes, bounces, profile and address changes
    /// made by contacts and account users (not through the API). Mailchimp calls the URL
    /// (a GET) before it answers, and refuses a URL that does not answer 200.
    pub async fn add_webhook(&self, list: &str, url: &str) -> Result<WebhookInfo, ApiError> {
        let body = NewWebhook {
            url,
            events: WebhookEvents {
                subscribe: false,
                unsubscribe: true,
                profile: true,
                cleaned: true,
                upemail: true,
                campaign: false,
            },
            sources: WebhookSources {
                user: true,
                admin: true,
                api: false,
            },
        };
        self.send(
            Method::POST,
            &format!("/lists/{list}/webhooks"),
            Some(&body),
        )
        .await
    }

    /// Deletes a webhook of the audience; one already gone is no error.
    pub async fn delete_webhook(&self, list: &str, id: &str) -> Result<Archived, ApiError> {
        self.remove(Method::DELETE, &format!("/lists/{list}/webhooks/{id}"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_sorted_into_permanent_and_worth_retrying() {
        let compliance = MemberRefusal::of("ada@northwind.io is in a compliance state".into());
        assert_eq!(compliance.title, "Member In Compliance State");
        assert!(compliance.permanent);
        assert!(
            MemberRefusal::of("was permanently deleted and cannot be re-imported".into()).permanent
        );
        assert!(
            MemberRefusal::of("x looks fake or invalid, please enter a real email".into())
                .permanent
        );
        let other = MemberRefusal::of("Your merge fields were invalid.".into());
        assert_eq!(other.title, "Member not updated");
        assert!(!other.permanent);
    }

    #[test]
    fn an_upsert_names_tags_only_when_there_are_some_and_never_sync_tags() {
        let fields = Map::new();
        let members = [
            Upsert {
                email_address: "ada@northwind.io",
                status: "subscribed",
                merge_fields: &fields,
                tags: vec!["Germany"],
            },
            Upsert {
                email_address: "bob@northwind.io",
                status: "unsubscribed",
                merge_fields: &fields,
                tags: vec![],
            },
        ];
        let body = serde_json::to_value(BatchBody {
            members: &members,
            update_existing: true,
        })
        .unwrap();
        assert_eq!(body["members"][0]["tags"], serde_json::json!(["Germany"]));
        assert!(body["members"][1].get("tags").is_none());
        assert!(body.get("sync_tags").is_none());
        assert_eq!(body["update_existing"], true);
    }
}
