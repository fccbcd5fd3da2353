//! One export run, start to finish. Every acknowledged Mailchimp call commits its ledger
//! rows, per-member results and counts in one transaction, so a run resumed after a crash
//! sends nothing Mailchimp already acknowledged: the ledger says it is unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::crypto::SecretKey;
use crate::db::Db;
use crate::domain::destination::NewMemberStatus;
use crate::export::limiter::{self, Limiters, PER_ACCOUNT};
use crate::export::plan::{PlanError, Record, plan};
use crate::mailchimp::client::{ApiError, Client, Connection, Credential, ErrorKind};
use crate::store::destinations::{self, Destination};
use crate::store::ledger::{self, Entry};
use crate::store::results::{self, MemberResult};
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

fn failure(message: impl Into<String>) -> Outcome {
    Outcome {
        status: RunStatus::Failure,
        message: Some(message.into()),
    }
}

/// A call failure that ends the run (the credential or the audience is unusable).
fn is_fatal(err: &ApiError) -> bool {
    matches!(
        err.kind,
        ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::NotFound
    )
}

fn fatal_message(err: &ApiError) -> String {
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
fn classify(message: &str) -> (&'static str, bool) {
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

    /// Runs an export.
    async fn export(&self, run: &Run, stop: &AtomicBool) -> anyhow::Result<Outcome> {
        let pool = self.db.pool();
        let Some(destination) = destinations::find(pool, run.destination_id).await? else {
            return Ok(failure("The destination was removed."));
        };
        if !destination.active {
            return Ok(failure("The destination's set-up is not finished."));
        }
        let connection = match self.connection(&destination) {
            Ok(c) => c,
            Err(err) => {
                return Ok(failure(format!(
                    "The destination's credential cannot be used: {err}. Authenticate again."
                )));
            }
        };
        let semaphore = self.limiters.for_connection(&connection);
        let list = destination.audience_id.clone();
        let mut counters = Counters::default();

        let merge_fields = match limiter::with_retries(&semaphore, || {
            self.client.merge_fields(&connection, &list)
        })
        .await
        {
            Ok((fields, attempts)) => {
                counters.calls += i64::from(attempts);
                fields
            }
            Err(err) => return Ok(failure(fatal_message(&err))),
        };
        let number_tags: Vec<String> = merge_fields
            .iter()
            .filter(|f| f.kind == "number")
            .map(|f| f.tag.clone())
            .collect();
        let plan = match plan(&self.db, &destination, &number_tags).await {
            Ok(plan) => plan,
            Err(PlanError::TooMany(n)) => return Ok(failure(PlanError::TooMany(n).to_string())),
            Err(PlanError::Other(err)) => return Err(err),
        };

        runs::reset_counters(pool, run.id).await?;
        let already = results::recorded(pool, run.id).await?;
        let mut ledger = ledger::load(pool, destination.id).await?;
        let mut skipped: Vec<MemberResult> = plan.rejected.clone();
        let mut to_send: Vec<&Record> = Vec::new();
        let mut unchanged = 0i64;
        for record in &plan.records {
            match ledger.get(&record.hash) {
                Some(entry) if entry.permanent_skip.is_some() => skipped.push(MemberResult {
                    customer_id: record.customer_id.clone(),
                    email: record.email.clone(),
                    outcome: "skipped",
                    title: entry.permanent_skip.clone().unwrap_or_default(),
                    detail: "Mailchimp refused this contact for good before; it is not sent again."
                        .into(),
                }),
                Some(entry) if !run.full_resync && entry.content_hash == record.content_hash => {
                    unchanged += 1
                }
                _ => to_send.push(record),
            }
        }
        counters.total = (plan.records.len() + plan.rejected.len()) as i64;
        counters.unchanged = unchanged;
        counters.skipped = skipped.len() as i64;
        let fresh: Vec<MemberResult> = skipped
            .into_iter()
            .filter(|r| !already.contains(&r.customer_id))
            .collect();
        let mut tx = pool.begin().await?;
        results::insert(&mut tx, run.id, &fresh).await?;
        runs::add(&mut *tx, run.id, &counters).await?;
        tx.commit().await?;
        counters = Counters::default();

        // Existing members keep their status: learn it for addresses the ledger does not know.
        let unknown: HashSet<&str> = to_send
            .iter()
            .filter(|r| !ledger.contains_key(&r.hash))
            .map(|r| r.hash.as_str())
            .collect();
        let statuses = if unknown.is_empty() {
            HashMap::new()
        } else {
            match self
                .read_statuses(&connection, &semaphore, &list, &unknown, &mut counters)
                .await
            {
                Ok(statuses) => statuses,
                Err(err) => return Ok(failure(fatal_message(&err))),
            }
        };
        let new_status = destination
            .new_member_status
            .parse::<NewMemberStatus>()
            .unwrap_or(NewMemberStatus::Subscribed);

        let cancel = Arc::new(AtomicBool::new(false));
        let mut fatal: Option<String> = None;
        // The status each member is sent with: the one Mailchimp has, or for a new member
        // the destination's choice (batch subscribe applies it to existing members too).
        let send_status: Vec<String> = to_send
            .iter()
            .map(|r| {
                ledger
                    .get(&r.hash)
                    .map(|e| e.status.clone())
                    .or_else(|| statuses.get(&r.hash).cloned())
                    .unwrap_or_else(|| new_status.as_str().to_owned())
            })
            .collect();
        // The calls are made lazily, at most PER_ACCOUNT at a time; each builds its body
        // only when it starts. (Collected first: a Send future cannot hold the closure.)
        let batches: Vec<_> = to_send
            .chunks(BATCH)
            .zip(send_status.chunks(BATCH))
            .map(|(chunk, chunk_status)| {
                let cancel = cancel.clone();
                let (connection, semaphore, list) = (&connection, &semaphore, &list);
                async move {
                    if cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                        return (chunk, None);
                    }
                    let members: Vec<Value> = chunk
                        .iter()
                        .zip(chunk_status)
                        .map(|(r, status)| json!({ "email_address": r.email, "status": status, "merge_fields": r.merge_fields }))
                        .collect();
                    let body = json!({ "members": members, "update_existing": true });
                    let path = format!("/lists/{list}");
                    let result = limiter::with_retries(semaphore, || {
                        self.client.call::<Value>(connection, Method::POST, &path, Some(&body))
                    })
                    .await;
                    (chunk, Some(result))
                }
            })
            .collect();
        let mut in_flight = futures::stream::iter(batches).buffer_unordered(PER_ACCOUNT);
        while let Some((chunk, result)) = in_flight.next().await {
            let Some(result) = result else { continue };
            let mut delta = Counters::default();
            let mut entries = Vec::new();
            let mut member_results = Vec::new();
            match result {
                Ok((response, attempts)) => {
                    delta.calls += i64::from(attempts);
                    self.acknowledge(
                        chunk,
                        &response,
                        &ledger,
                        &mut delta,
                        &mut entries,
                        &mut member_results,
                    );
                }
                Err(err) => {
                    delta.calls += 1;
                    if is_fatal(&err) {
                        fatal.get_or_insert_with(|| fatal_message(&err));
                        cancel.store(true, Ordering::Relaxed);
                    }
                    for record in chunk {
                        delta.failed += 1;
                        member_results.push(result_of(record, "failed", &err.title, &err.detail));
                    }
                }
            }
            let mut tx = pool.begin().await?;
            ledger::upsert(&mut tx, destination.id, &entries).await?;
            let fresh: Vec<MemberResult> = member_results
                .into_iter()
                .filter(|r| !already.contains(&r.customer_id))
                .collect();
            results::insert(&mut tx, run.id, &fresh).await?;
            runs::add(&mut *tx, run.id, &delta).await?;
            tx.commit().await?;
            for (hash, entry) in entries {
                ledger.insert(hash, entry);
            }
            if runs::cancel_requested(pool, run.id).await? {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        drop(in_flight);
        if let Some(message) = fatal {
            return Ok(failure(message));
        }
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("the run's lease was lost; another worker will resume it");
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(Outcome {
                status: RunStatus::Canceled,
                message: Some(
                    "Canceled: members already sent stay in Mailchimp; tags were not changed."
                        .into(),
                ),
            });
        }

        let wanted: HashMap<&str, &Record> =
            plan.records.iter().map(|r| (r.hash.as_str(), r)).collect();
        match self
            .sync_tags(
                run,
                &destination,
                &connection,
                &semaphore,
                &plan.segment_names,
                &wanted,
                &mut ledger,
                stop,
            )
            .await?
        {
            Some(outcome) => Ok(outcome),
            None => {
                let run_now = runs::find(pool, run.id)
                    .await?
                    .map(|r| r.counters)
                    .unwrap_or_default();
                let message = (run_now.failed > 0).then(|| {
                    format!("{} members could not be sent; the per-member results say why. They are tried again next time.", run_now.failed)
                });
                Ok(Outcome {
                    status: RunStatus::Successful,
                    message,
                })
            }
        }
    }

    /// Reads the audience's members' statuses, keeping only the addresses asked about.
    async fn read_statuses(
        &self,
        connection: &Connection,
        semaphore: &limiter::AccountLimit,
        list: &str,
        wanted: &HashSet<&str>,
        counters: &mut Counters,
    ) -> Result<HashMap<String, String>, ApiError> {
        let mut statuses = HashMap::new();
        let mut offset = 0usize;
        loop {
            let path = format!(
                "/lists/{list}/members?count=1000&offset={offset}&fields=members.email_address,members.status,total_items"
            );
            let (page, attempts) = limiter::with_retries(semaphore, || {
                self.client
                    .call::<Value>(connection, Method::GET, &path, None)
            })
            .await?;
            counters.calls += i64::from(attempts);
            let members = page["members"].as_array().cloned().unwrap_or_default();
            for member in &members {
                let email = member["email_address"].as_str().unwrap_or_default();
                let hash = crate::domain::subscriber_hash(email);
                if wanted.contains(hash.as_str()) {
                    statuses.insert(
                        hash,
                        member["status"].as_str().unwrap_or("subscribed").to_owned(),
                    );
                }
            }
            offset += members.len();
            let total = page["total_items"].as_u64().unwrap_or(0) as usize;
            if members.is_empty() || offset >= total {
                break;
            }
        }
        Ok(statuses)
    }

    /// Sorts a batch-subscribe answer into ledger rows, results and counts.
    fn acknowledge(
        &self,
        chunk: &[&Record],
        response: &Value,
        ledger: &HashMap<String, Entry>,
        delta: &mut Counters,
        entries: &mut Vec<(String, Entry)>,
        member_results: &mut Vec<MemberResult>,
    ) {
        let by_hash: HashMap<String, &Record> =
            chunk.iter().map(|r| (r.hash.clone(), *r)).collect();
        let entry = |record: &Record, status: &str, permanent: Option<String>| Entry {
            customer_id: record.customer_id.clone(),
            email: record.email.clone(),
            content_hash: if permanent.is_some() {
                String::new()
            } else {
                record.content_hash.clone()
            },
            status: status.to_owned(),
            tags: ledger
                .get(&record.hash)
                .map(|e| e.tags.clone())
                .unwrap_or_default(),
            permanent_skip: permanent,
        };
        let mut answered = HashSet::new();
        for (key, outcome) in [("new_members", "created"), ("updated_members", "updated")] {
            for member in response[key].as_array().into_iter().flatten() {
                let hash = crate::domain::subscriber_hash(
                    member["email_address"].as_str().unwrap_or_default(),
                );
                let Some(record) = by_hash.get(&hash) else {
                    continue;
                };
                answered.insert(hash.clone());
                let status = member["status"].as_str().unwrap_or("subscribed");
                entries.push((hash, entry(record, status, None)));
                member_results.push(result_of(record, outcome, "", ""));
                delta.sent += 1;
                if outcome == "created" {
                    delta.created += 1
                } else {
                    delta.updated += 1
                }
            }
        }
        for error in response["errors"].as_array().into_iter().flatten() {
            let hash =
                crate::domain::subscriber_hash(error["email_address"].as_str().unwrap_or_default());
            let Some(record) = by_hash.get(&hash) else {
                continue;
            };
            answered.insert(hash.clone());
            let detail = error["error"].as_str().unwrap_or_default().to_owned();
            let (title, permanent) = classify(&detail);
            if permanent {
                let status = ledger
                    .get(&hash)
                    .map(|e| e.status.clone())
                    .unwrap_or_else(|| "unsubscribed".into());
                entries.push((hash, entry(record, &status, Some(title.to_owned()))));
                member_results.push(result_of(record, "skipped", title, &detail));
                delta.skipped += 1;
            } else {
                member_results.push(result_of(record, "failed", title, &detail));
                delta.failed += 1;
            }
        }
        for record in chunk.iter().filter(|r| !answered.contains(&r.hash)) {
            member_results.push(result_of(
                record,
                "failed",
                "No answer",
                "Mailchimp's answer did not mention this member.",
            ));
            delta.failed += 1;
        }
    }

    /// Segments become tags: create missing tags, add members who joined, remove members
    /// who left. Returns an outcome when the run must end early.
    #[allow(clippy::too_many_arguments)]
    async fn sync_tags(
        &self,
        run: &Run,
        destination: &Destination,
        connection: &Connection,
        semaphore: &limiter::AccountLimit,
        segment_names: &[String],
        wanted: &HashMap<&str, &Record>,
        ledger: &mut HashMap<String, Entry>,
        stop: &AtomicBool,
    ) -> anyhow::Result<Option<Outcome>> {
        let pool = self.db.pool();
        let list = &destination.audience_id;
        let mut delta = Counters::default();
        // Existing tags by name.
        let tags_path = format!("/lists/{list}/segments?type=static&count=1000");
        let (page, attempts) = match limiter::with_retries(semaphore, || {
            self.client
                .call::<Value>(connection, Method::GET, &tags_path, None)
        })
        .await
        {
            Ok(answer) => answer,
            Err(err) => return Ok(Some(failure(fatal_message(&err)))),
        };
        delta.calls += i64::from(attempts);
        let mut tag_ids: HashMap<String, u64> = page["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["id"].as_u64()?)))
            .collect();
        let mut names: Vec<String> = segment_names.to_vec();
        names.push(OWNERSHIP_TAG.to_owned());
        // Every tag this destination ever set, so leavers lose tags of dropped segments too.
        for entry in ledger.values() {
            for tag in &entry.tags {
                if !names.contains(tag) {
                    names.push(tag.clone());
                }
            }
        }
        // What each member should carry and what it carries.
        let mut adds: HashMap<String, Vec<String>> = HashMap::new();
        let mut removes: HashMap<String, Vec<String>> = HashMap::new();
        for (hash, entry) in ledger.iter() {
            if entry.permanent_skip.is_some() || entry.content_hash.is_empty() {
                continue;
            }
            let mut desired: Vec<String> = vec![OWNERSHIP_TAG.to_owned()];
            if let Some(record) = wanted.get(hash.as_str()) {
                desired.extend(record.tags.iter().cloned());
            }
            for tag in &desired {
                if !entry.tags.contains(tag) {
                    adds.entry(tag.clone()).or_default().push(hash.clone());
                }
            }
            for tag in &entry.tags {
                if !desired.contains(tag) {
                    removes.entry(tag.clone()).or_default().push(hash.clone());
                }
            }
        }
        let missing: Vec<String> = names
            .iter()
            .filter(|n| adds.contains_key(*n) && !tag_ids.contains_key(*n))
            .cloned()
            .collect();
        let create_path = format!("/lists/{list}/segments");
        for name in &missing {
            let body = json!({ "name": name, "static_segment": [] });
            match limiter::with_retries(semaphore, || {
                self.client
                    .call::<Value>(connection, Method::POST, &create_path, Some(&body))
            })
            .await
            {
                Ok((created, attempts)) => {
                    delta.calls += i64::from(attempts);
                    if let Some(id) = created["id"].as_u64() {
                        tag_ids.insert(name.clone(), id);
                    }
                }
                Err(err) if is_fatal(&err) => return Ok(Some(failure(fatal_message(&err)))),
                Err(err) => tracing::warn!(tag = %name, error = %err, "a tag could not be created"),
            }
        }
        // Calls of up to 500 additions and 500 removals for one tag each.
        let mut calls = Vec::new();
        for name in &names {
            let Some(id) = tag_ids.get(name) else {
                continue;
            };
            let add = adds.remove(name).unwrap_or_default();
            let remove = removes.remove(name).unwrap_or_default();
            let rounds = add.len().div_ceil(BATCH).max(remove.len().div_ceil(BATCH));
            for i in 0..rounds {
                let slice = |v: &Vec<String>| {
                    v.iter()
                        .skip(i * BATCH)
                        .take(BATCH)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                calls.push((name.clone(), *id, slice(&add), slice(&remove)));
            }
        }
        let emails: HashMap<String, String> = ledger
            .iter()
            .map(|(h, e)| (h.clone(), e.email.clone()))
            .collect();
        let requests: Vec<_> = calls
            .into_iter()
            .map(|(name, id, add, remove)| {
                let body = json!({
                    "members_to_add": add.iter().map(|h| &emails[h]).collect::<Vec<_>>(),
                    "members_to_remove": remove.iter().map(|h| &emails[h]).collect::<Vec<_>>(),
                });
                async move {
                    if stop.load(Ordering::Relaxed) {
                        return (name, add, remove, None);
                    }
                    let path = format!("/lists/{list}/segments/{id}");
                    let result = limiter::with_retries(semaphore, || {
                        self.client
                            .call::<Value>(connection, Method::POST, &path, Some(&body))
                    })
                    .await;
                    (name, add, remove, Some(result))
                }
            })
            .collect();
        let mut in_flight = futures::stream::iter(requests).buffer_unordered(PER_ACCOUNT);
        let mut fatal = None;
        while let Some((name, add, remove, result)) = in_flight.next().await {
            let Some(result) = result else { continue };
            let (_, attempts) = match result {
                Ok(answer) => answer,
                Err(err) => {
                    if is_fatal(&err) {
                        fatal.get_or_insert_with(|| fatal_message(&err));
                    }
                    tracing::warn!(tag = %name, error = %err, "a tag change failed; the next export tries again");
                    continue;
                }
            };
            delta.calls += i64::from(attempts);
            delta.tag_changes += (add.len() + remove.len()) as i64;
            let mut changed = Vec::new();
            for hash in add.iter().chain(remove.iter()) {
                if let Some(entry) = ledger.get_mut(hash) {
                    if add.contains(hash) {
                        if !entry.tags.contains(&name) {
                            entry.tags.push(name.clone());
                        }
                    } else {
                        entry.tags.retain(|t| t != &name);
                    }
                    changed.push((hash.clone(), entry.clone()));
                }
            }
            let mut tx = pool.begin().await?;
            ledger::upsert(&mut tx, destination.id, &changed).await?;
            runs::add(&mut *tx, run.id, &delta).await?;
            tx.commit().await?;
            delta = Counters::default();
        }
        drop(in_flight);
        runs::add(pool, run.id, &delta).await?;
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("the run's lease was lost; another worker will resume it");
        }
        Ok(fatal.map(failure))
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

fn result_of(record: &Record, outcome: &'static str, title: &str, detail: &str) -> MemberResult {
    MemberResult {
        customer_id: record.customer_id.clone(),
        email: record.email.clone(),
        outcome,
        title: title.to_owned(),
        detail: detail.to_owned(),
    }
}
