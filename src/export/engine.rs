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
use crate::store::ledger::{self, Entry};
use crate::store::results::MemberResult;
use crate::store::runs::{Counters, Run, RunKind, RunStatus};

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
        let ledger = ledger::load(pool, destination.id).await?;
        let ours: Vec<(&String, &Entry)> = ledger
            .iter()
            .filter(|(_, e)| e.permanent_skip.is_none() && !e.content_hash.is_empty())
            .collect();
        let mut delta = Counters {
            total: ours.len() as i64,
            ..Counters::default()
        };
        let mut problems = 0usize;
        match kind {
            RunKind::RemoveTags => {
                let tags_path = format!("/lists/{list}/segments?type=static&count=1000");
                let (page, attempts) = match limiter::with_retries(&semaphore, || {
                    self.client
                        .call::<Value>(&connection, Method::GET, &tags_path, None)
                })
                .await
                {
                    Ok(answer) => answer,
                    Err(err) => return Ok(failure(fatal_message(&err))),
                };
                delta.calls += i64::from(attempts);
                let ids: HashMap<String, u64> = page["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["id"].as_u64()?)))
                    .collect();
                let mut by_tag: HashMap<&str, Vec<&str>> = HashMap::new();
                for (_, entry) in &ours {
                    for tag in &entry.tags {
                        by_tag
                            .entry(tag.as_str())
                            .or_default()
                            .push(entry.email.as_str());
                    }
                }
                for (tag, emails) in by_tag {
                    let Some(id) = ids.get(tag) else { continue };
                    for chunk in emails.chunks(BATCH) {
                        if stop.load(Ordering::Relaxed) {
                            anyhow::bail!(
                                "the run's lease was lost; another worker will resume it"
                            );
                        }
                        let body = json!({ "members_to_remove": chunk });
                        let path = format!("/lists/{list}/segments/{id}");
                        match limiter::with_retries(&semaphore, || {
                            self.client
                                .call::<Value>(&connection, Method::POST, &path, Some(&body))
                        })
                        .await
                        {
                            Ok((_, attempts)) => {
                                delta.calls += i64::from(attempts);
                                delta.tag_changes += chunk.len() as i64;
                            }
                            Err(err) => {
                                tracing::warn!(tag, error = %err, "a tag could not be removed");
                                problems += chunk.len();
                            }
                        }
                    }
                }
            }
            _ => {
                // Mailchimp archives one member per call: at most PER_ACCOUNT at a time.
                let calls: Vec<_> = ours
                    .iter()
                    .map(|(hash, _)| {
                        let path = format!("/lists/{list}/members/{hash}");
                        let (connection, semaphore) = (&connection, &semaphore);
                        async move {
                            limiter::with_retries(semaphore, || {
                                self.client
                                    .call::<Value>(connection, Method::DELETE, &path, None)
                            })
                            .await
                        }
                    })
                    .collect();
                let mut in_flight = futures::stream::iter(calls).buffer_unordered(PER_ACCOUNT);
                while let Some(result) = in_flight.next().await {
                    match result {
                        Ok((_, attempts)) => {
                            delta.calls += i64::from(attempts);
                            delta.sent += 1;
                        }
                        // Already gone from the audience: nothing left to archive.
                        Err(err) if err.kind == ErrorKind::NotFound => delta.sent += 1,
                        Err(err) => {
                            tracing::warn!(error = %err, "a member could not be archived");
                            problems += 1;
                        }
                    }
                }
            }
        }
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
        let details =
            format!("{done} {what} in Mailchimp; {problems} could not be; credential deleted");
        let by = run_requester(pool, run.id).await?;
        let mut tx = pool.begin().await?;
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
