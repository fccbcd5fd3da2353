//! One export run, start to finish. Every acknowledged Mailchimp call commits its ledger
//! rows, per-member results and counts in one transaction, so a run resumed after a crash
//! sends nothing Mailchimp already acknowledged: the ledger says it is unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::crypto::SecretKey;
use crate::db::Db;
use crate::export::limiter::{self, Limiters, PER_ACCOUNT};
use crate::export::plan::Record;
use crate::mailchimp::client::{ApiError, Client, Connection, Credential, ErrorKind};
use crate::store::destinations::{self, Destination};
use crate::store::results::MemberResult;
use crate::store::runs::{self, Counters, Run, RunKind, RunStatus};

/// Every member this console manages carries this tag, so clean-ups touch only them.
pub const OWNERSHIP_TAG: &str = "export-destinations";
const BATCH: usize = 500;

#[derive(Clone)]
pub struct Engine {
    pub db: Db,
    pub key: SecretKey,
    pub client: Client,
    pub limiters: Limiters,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: RunStatus,
    pub message: Option<String>,
}

pub(crate) fn failure(message: impl Into<String>) -> Outcome {
    Outcome {
        status: RunStatus::Failure,
        message: Some(message.into()),
    }
}

/// A call failure that ends the run (the credential or the audience is unusable).
pub(crate) fn is_fatal(err: &ApiError) -> bool {
    matches!(
        err.kind,
        ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::NotFound
    )
}

pub(crate) fn fatal_message(err: &ApiError) -> String {
    match err.kind {
        ErrorKind::Unauthorized => {
            format!("Mailchimp refused the destination's credential ({err}). Authenticate again.")
        }
        ErrorKind::Forbidden => format!("The Mailchimp account may not use this audience ({err})."),
        ErrorKind::NotFound => format!("Mailchimp no longer has this audience ({err})."),
        _ => format!("Mailchimp could not be used: {err}."),
    }
}

/// Why Mailchimp refused one member, and whether it will refuse it again.
pub(crate) fn classify(message: &str) -> (&'static str, bool) {
    let lower = message.to_lowercase();
    if lower.contains("compliance state") {
        ("Member In Compliance State", true)
    } else if lower.contains("permanently deleted") {
        ("Forgotten Email Not Subscribed", true)
    } else if lower.contains("looks fake or invalid") {
        ("Invalid Resource", true)
    } else {
        ("Member not updated", false)
    }
}

impl Engine {
    pub fn connection(&self, destination: &Destination) -> anyhow::Result<Connection> {
        let sealed = destination
            .credential_sealed
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the destination is not authenticated"))?;
        let secret = self.key.open(sealed)?;
        let credential = match destination.auth_method.as_deref() {
            Some("api_key") => Credential::ApiKey(secret),
            _ => Credential::OAuth(secret),
        };
        Ok(Connection {
            api_base: destination.api_base.clone().unwrap_or_default(),
            credential,
        })
    }

    /// The audience's tags (static segments) by name, every page of them; and the calls made.
    pub(crate) async fn static_tags(
        &self,
        connection: &Connection,
        limit: &limiter::AccountLimit,
        list: &str,
    ) -> Result<(HashMap<String, u64>, i64), ApiError> {
        let mut tags = HashMap::new();
        let (mut calls, mut offset) = (0i64, 0usize);
        loop {
            let path = format!(
                "/lists/{list}/segments?type=static&count=1000&offset={offset}&fields=segments.id,segments.name,total_items"
            );
            let (page, attempts) = limiter::with_retries(limit, || {
                self.client
                    .call::<Value>(connection, Method::GET, &path, None)
            })
            .await?;
            calls += i64::from(attempts);
            let found = page["segments"].as_array().map_or(0, Vec::len);
            tags.extend(
                page["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["id"].as_u64()?))),
            );
            offset += found;
            let total = page["total_items"].as_u64().unwrap_or(0) as usize;
            if found == 0 || offset >= total {
                return Ok((tags, calls));
            }
        }
    }

    /// Runs an export or a removal clean-up; `stop` is raised when the run's lease is lost.
    pub async fn execute(&self, run: &Run, stop: &AtomicBool) -> anyhow::Result<Outcome> {
        match run.kind {
            RunKind::Export => self.export(run, stop).await,
            kind => self.clean_up(run, kind, stop).await,
        }
    }

    /// Removal clean-up: take this destination's tags off its members, or archive the
    /// members it added; then the destination and its credential are deleted.
    async fn clean_up(
        &self,
        run: &Run,
        kind: RunKind,
        stop: &AtomicBool,
    ) -> anyhow::Result<Outcome> {
        let pool = self.db.pool();
        let Some(destination) = destinations::find(pool, run.destination_id).await? else {
            return Ok(failure("The destination was already removed."));
        };
        if !destination.removing {
            return Ok(failure("The destination is not being removed."));
        }
        let connection = match self.connection(&destination) {
            Ok(c) => c,
            Err(err) => {
                return Ok(failure(format!(
                    "The destination's credential cannot be used: {err}."
                )));
            }
        };
        let semaphore = self.limiters.for_connection(&connection);
        let list = &destination.audience_id;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM export_ledger WHERE destination_id = $1 AND permanent_skip IS NULL AND content_hash <> ''",
        )
        .bind(destination.id)
        .fetch_one(pool)
        .await?;
        let mut delta = Counters {
            total,
            ..Counters::default()
        };
        let mut problems = 0usize;
        let tag_ids: HashMap<String, u64> = if kind == RunKind::RemoveTags {
            match self.static_tags(&connection, &semaphore, list).await {
                Ok((tags, calls)) => {
                    delta.calls += calls;
                    tags
                }
                Err(err) => return Ok(failure(fatal_message(&err))),
            }
        } else {
            HashMap::new()
        };
        // The ledger is read a page at a time and each call leaves as soon as it is full:
        // memory stays flat however many members the destination added.
        let mut by_tag: HashMap<String, Vec<String>> = HashMap::new();
        let mut calls: Vec<(Method, String, Option<Value>, usize)> = Vec::new();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut after = String::new();
        let mut exhausted = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                anyhow::bail!("the run's lease was lost; another worker will resume it");
            }
            if calls.is_empty() && !exhausted && runs::cancel_requested(pool, run.id).await? {
                // Calls in flight are let finish; nothing new leaves. The destination stays,
                // marked as removal stopped, for an administrator to retry or remove.
                while in_flight.next().await.is_some() {}
                return Ok(Outcome {
                    status: RunStatus::Canceled,
                    message: Some(
                        "Clean-up canceled: the destination is kept; retry the clean-up or remove it without one."
                            .into(),
                    ),
                });
            }
            while calls.is_empty() && !exhausted {
                let page: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT email_hash, email, tags FROM export_ledger WHERE destination_id = $1 \
                     AND permanent_skip IS NULL AND content_hash <> '' AND email_hash > $2 ORDER BY email_hash LIMIT 1000",
                )
                .bind(destination.id)
                .bind(&after)
                .fetch_all(pool)
                .await?;
                exhausted = page.len() < 1000;
                if let Some((hash, _, _)) = page.last() {
                    after = hash.clone();
                }
                for (hash, email, tags) in page {
                    if kind == RunKind::RemoveTags {
                        let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
                        for tag in tags {
                            let waiting = by_tag.entry(tag.clone()).or_default();
                            waiting.push(email.clone());
                            if waiting.len() == BATCH {
                                let emails = std::mem::take(waiting);
                                calls.extend(tag_removal(&tag_ids, list, &tag, emails));
                            }
                        }
                    } else {
                        // Mailchimp archives one member per call.
                        calls.push((
                            Method::DELETE,
                            format!("/lists/{list}/members/{hash}"),
                            None,
                            1,
                        ));
                    }
                }
                if exhausted {
                    for (tag, emails) in by_tag.drain() {
                        calls.extend(tag_removal(&tag_ids, list, &tag, emails));
                    }
                }
            }
            while in_flight.len() < PER_ACCOUNT {
                let Some((method, path, body, members)) = calls.pop() else {
                    break;
                };
                let (connection, semaphore) = (&connection, &semaphore);
                in_flight.push(async move {
                    let result = limiter::with_retries(semaphore, || {
                        self.client
                            .call::<Value>(connection, method.clone(), &path, body.as_ref())
                    })
                    .await;
                    (result, members)
                });
            }
            let Some((result, members)) = in_flight.next().await else {
                if calls.is_empty() && exhausted {
                    break;
                }
                continue;
            };
            match result {
                Ok((_, attempts)) => {
                    delta.calls += i64::from(attempts);
                    if kind == RunKind::RemoveTags {
                        delta.tag_changes += members as i64;
                    } else {
                        delta.sent += 1;
                    }
                }
                // Already gone from the audience: nothing left to archive.
                Err(err) if err.kind == ErrorKind::NotFound && kind != RunKind::RemoveTags => {
                    delta.sent += 1
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a clean-up call failed");
                    problems += members;
                }
            }
        }
        drop(in_flight);
        let what = if kind == RunKind::RemoveTags {
            "tags taken off"
        } else {
            "members archived"
        };
        let done = if kind == RunKind::RemoveTags {
            delta.tag_changes
        } else {
            delta.sent
        };
        if problems > 0 {
            // A clean-up that did not finish keeps the destination (and its credential) so
            // it can be retried; nothing is deleted behind the administrator's back.
            return Ok(failure(format!(
                "Clean-up incomplete: {done} {what} in Mailchimp, {problems} could not be. The destination is kept; retry the clean-up or remove it without one."
            )));
        }
        let details =
            format!("{done} {what} in Mailchimp; {problems} could not be; credential deleted");
        let by = run_requester(pool, run.id).await?;
        let mut tx = crate::db::begin_write(pool).await?;
        destinations::delete(&mut tx, destination.id).await?;
        if let Some((user_id, email)) = &by {
            let actor = crate::store::audit::Actor {
                user_id: *user_id,
                email,
            };
            crate::store::audit::record(
                &mut *tx,
                &actor,
                "removed",
                Some(destination.id),
                &destination.display_name,
                &details,
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(destination_id = destination.id, %details, "destination removed after its clean-up");
        Ok(Outcome {
            status: RunStatus::Successful,
            message: Some(details),
        })
    }
}

/// The call that takes one tag off some members (none if the audience lacks the tag).
fn tag_removal(
    tag_ids: &HashMap<String, u64>,
    list: &str,
    tag: &str,
    emails: Vec<String>,
) -> Option<(Method, String, Option<Value>, usize)> {
    let id = tag_ids.get(tag)?;
    let members = emails.len();
    Some((
        Method::POST,
        format!("/lists/{list}/segments/{id}"),
        Some(json!({ "members_to_remove": emails })),
        members,
    ))
}

/// Who asked for a run: (user id, email).
async fn run_requester(pool: &sqlx::AnyPool, run_id: i64) -> anyhow::Result<Option<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.email FROM export_runs r JOIN users u ON u.id = r.requested_by WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?)
}

pub(crate) fn result_of(
    record: &Record,
    outcome: &'static str,
    title: &str,
    detail: &str,
) -> MemberResult {
    MemberResult {
        customer_id: record.customer_id.clone(),
        email: record.email.clone(),
        outcome,
        title: title.to_owned(),
        detail: detail.to_owned(),
    }
}
