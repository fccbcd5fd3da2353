//! One export run as a pipeline. The plan is read a chunk at a time; members whose content
//! changed go out in batch upserts of 500; as each upsert is acknowledged its members' tag
//! changes join a queue per tag, and a tag call leaves as soon as 500 are waiting. Upserts
//! and tag calls share the account's connections, so no connection waits for a phase to
//! end, and memory stays bounded by the chunk, the queues and the ledger's compact index.
//!
//! Every acknowledged call commits its ledger rows, per-member results and counts in one
//! transaction, so a run resumed after a crash sends nothing Mailchimp already has.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::domain::destination::NewMemberStatus;
use crate::export::engine::{
    Engine, OWNERSHIP_TAG, Outcome, classify, failure, fatal_message, is_fatal, result_of,
};
use crate::export::limiter::{self, AccountLimit, PER_ACCOUNT};
use crate::export::plan::{Chunk, Hash, PlanError, PlanReader, Record, hash_of, hex_of};
use crate::export::state::{Index, NO_TAGS};
use crate::mailchimp::client::{ApiError, Client, Connection};
use crate::store::destinations::Destination;
use crate::store::ledger::{self, Entry};
use crate::store::results::{self, MemberResult};
use crate::store::runs::{self, Counters, Run, RunStatus};

const BATCH: usize = 500;
/// Calls handed to the account's limit at once: every slot busy, and the next call already
/// waiting when one finishes.
const QUEUED_CALLS: usize = PER_ACCOUNT * 2;
const STATUSES: [&str; 5] = [
    "subscribed",
    "unsubscribed",
    "cleaned",
    "pending",
    "transactional",
];

/// A member on its way to an upsert.
struct Outgoing {
    record: Record,
    /// The status it is sent with (the one Mailchimp has, or the new-member status).
    status: String,
    /// The tags it carries now, and the tags it should carry.
    tags_now: u32,
    tags_wanted: u32,
}

/// A tag change for one member.
#[derive(Clone)]
struct Tagged {
    hash: Hash,
    email: String,
}

enum Job {
    Upsert(Vec<Outgoing>),
    Tag {
        tag: u16,
        add: Vec<Tagged>,
        remove: Vec<Tagged>,
    },
}

/// A finished call: the job back, Mailchimp's answer (`None`: not sent, the run stopped),
/// and the permit that lets another call go out once this answer is recorded.
type Done = (
    Job,
    Result<(Option<Answer>, u32), ApiError>,
    Option<OwnedSemaphorePermit>,
);

/// What the console reads from a batch-subscribe or tag answer (Mailchimp sends whole
/// member records back; only these fields are kept).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Answer {
    new_members: Vec<Answered>,
    updated_members: Vec<Answered>,
    errors: Vec<Refusal>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Answered {
    email_address: String,
    status: Option<String>,
}

/// A batch error names one address, a tag error several.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Refusal {
    email_address: String,
    email_addresses: Vec<String>,
    error: String,
}

/// Reads the plan in its own task, a chunk or two ahead of the run.
fn read_ahead(
    mut reader: PlanReader,
) -> (
    tokio::sync::mpsc::Receiver<anyhow::Result<Option<Chunk>>>,
    AbortOnDrop,
) {
    let (chunks_tx, chunks) = tokio::sync::mpsc::channel(2);
    let producer = tokio::spawn(async move {
        loop {
            let next = reader.next_chunk().await;
            let last = !matches!(next, Ok(Some(_)));
            if last {
                tracing::debug!(
                    reading_ms = reader.reading.as_millis() as u64,
                    mapping_ms = reader.mapping.as_millis() as u64,
                    "the plan was read"
                );
            }
            if chunks_tx.send(next).await.is_err() || last {
                break;
            }
        }
    });
    (chunks, AbortOnDrop(producer))
}

/// Aborts a background task when its owner is done with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A member with tag calls in flight: the tags it has now, and how many calls are pending.
struct Live {
    tags: u32,
    pending: u32,
}

enum Halt {
    Fatal(String),
    Canceled,
    LeaseLost,
}

struct Exporter<'a> {
    engine: &'a Engine,
    run: &'a Run,
    destination: &'a Destination,
    connection: Connection,
    limit: Arc<AccountLimit>,
    halted: Arc<AtomicBool>,
    /// Calls sent whose answers are not yet recorded: at most one per connection, so a
    /// crash can make the next run resend no more than the calls that were in flight.
    recording: Arc<Semaphore>,
    index: Index,
    ownership: u16,
    new_status: String,
    /// Statuses of audience members the ledger does not know, where they differ from the
    /// new-member status (read once, when the first such member is about to be sent).
    statuses: Option<HashMap<Hash, u16>>,
    tag_ids: HashMap<String, u64>,
    adds: HashMap<u16, Vec<Tagged>>,
    removes: HashMap<u16, Vec<Tagged>>,
    live: HashMap<Hash, Live>,
    upserts: VecDeque<Outgoing>,
    upserts_in_flight: usize,
    counters: Counters,
    halt: Option<Halt>,
}

impl Engine {
    /// Runs an export.
    pub(crate) async fn export(&self, run: &Run, stop: &AtomicBool) -> anyhow::Result<Outcome> {
        let pool = self.db.pool();
        let Some(destination) = crate::store::destinations::find(pool, run.destination_id).await?
        else {
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
        let limit = self.limiters.for_connection(&connection);
        let list = destination.audience_id.clone();
        let mut counters = Counters::default();

        let merge_fields =
            match limiter::with_retries(&limit, || self.client.merge_fields(&connection, &list))
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
        let reader = match PlanReader::open(&self.db, &destination, &number_tags).await {
            Ok(reader) => reader,
            Err(PlanError::TooMany(n)) => return Ok(failure(PlanError::TooMany(n).to_string())),
            Err(PlanError::Other(err)) => return Err(err),
        };
        // Existing tags by name.
        let tag_ids = match self.static_tags(&connection, &limit, &list).await {
            Ok((tags, calls)) => {
                counters.calls += calls;
                tags
            }
            Err(err) => return Ok(failure(fatal_message(&err))),
        };

        runs::reset_counters(pool, run.id).await?;
        counters.total = reader.total;
        runs::add(pool, run.id, &counters).await?;
        let expected = reader.total;
        // The plan is read ahead while the ledger's index loads.
        let (chunks, _reading) = read_ahead(reader);
        let started = std::time::Instant::now();
        let mut index = Index::load(pool, self.db.backend(), destination.id).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "the ledger's index was loaded"
        );
        let ownership = index.tag_names.intern(OWNERSHIP_TAG);
        let new_status = destination
            .new_member_status
            .parse::<NewMemberStatus>()
            .unwrap_or(NewMemberStatus::Subscribed)
            .as_str()
            .to_owned();
        let mut exporter = Exporter {
            engine: self,
            run,
            destination: &destination,
            connection,
            limit,
            halted: Arc::new(AtomicBool::new(false)),
            recording: Arc::new(Semaphore::new(PER_ACCOUNT)),
            index,
            ownership,
            new_status,
            statuses: None,
            tag_ids,
            adds: HashMap::new(),
            removes: HashMap::new(),
            live: HashMap::new(),
            upserts: VecDeque::new(),
            upserts_in_flight: 0,
            counters: Counters::default(),
            halt: None,
        };
        let started = std::time::Instant::now();
        let planned = exporter.pump(chunks, stop).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "the run's calls are done"
        );
        if planned != expected {
            // Segments were refreshed during the run: count what the plan really held.
            let delta = Counters {
                total: planned - expected,
                ..Counters::default()
            };
            runs::add(pool, run.id, &delta).await?;
        }
        match exporter.halt {
            Some(Halt::LeaseLost) => {
                anyhow::bail!("the run's lease was lost; another worker will resume it")
            }
            Some(Halt::Fatal(message)) => Ok(failure(message)),
            Some(Halt::Canceled) => Ok(Outcome {
                status: RunStatus::Canceled,
                message: Some(
                    "Canceled: members already sent stay in Mailchimp; tag changes not yet made are made by the next export."
                        .into(),
                ),
            }),
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
}

impl Exporter<'_> {
    /// Keeps the account's connections busy until the plan is done and every call answered.
    /// Returns how many profiles the plan held.
    async fn pump(
        &mut self,
        mut chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Option<Chunk>>>,
        stop: &AtomicBool,
    ) -> anyhow::Result<i64> {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut planned = 0i64;
        let mut plan_done = false;
        let mut leavers_done = false;
        loop {
            if self.halt.is_none() && stop.load(Ordering::Relaxed) {
                self.halt_with(Halt::LeaseLost);
            }
            while self.halt.is_none() && tasks.len() < QUEUED_CALLS {
                if let Some(job) = self.tag_job(true) {
                    self.launch(&mut tasks, job).await;
                } else if self.upserts.len() >= BATCH || (plan_done && !self.upserts.is_empty()) {
                    let take = self.upserts.len().min(BATCH);
                    let batch: Vec<Outgoing> = self.upserts.drain(..take).collect();
                    self.launch(&mut tasks, Job::Upsert(batch)).await;
                } else if !plan_done || self.upserts_in_flight > 0 {
                    break;
                } else if !leavers_done {
                    self.leavers().await?;
                    leavers_done = true;
                } else if let Some(job) = self.tag_job(false) {
                    self.launch(&mut tasks, job).await;
                } else {
                    break;
                }
            }
            let wants_chunk = self.halt.is_none() && !plan_done && tasks.len() < QUEUED_CALLS;
            if tasks.is_empty() && !wants_chunk {
                break;
            }
            tokio::select! {
                chunk = chunks.recv(), if wants_chunk => match chunk {
                    Some(Ok(Some(chunk))) => {
                        planned += (chunk.records.len() + chunk.rejected.len()) as i64;
                        self.take_chunk(chunk.records, chunk.rejected).await?;
                    }
                    Some(Ok(None)) | None => plan_done = true,
                    Some(Err(err)) => return Err(err),
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let (job, result, recorded) = done?;
                    self.finish(job, result).await?;
                    // Only now may another call go out (see `recording`).
                    drop(recorded);
                }
            }
        }
        let rest = std::mem::take(&mut self.counters);
        runs::add(self.engine.db.pool(), self.run.id, &rest).await?;
        Ok(planned)
    }

    fn halt_with(&mut self, halt: Halt) {
        self.halted.store(true, Ordering::Relaxed);
        self.halt.get_or_insert(halt);
    }

    /// Sorts one chunk of the plan: refused for good, unchanged (tags only), or to send.
    async fn take_chunk(
        &mut self,
        records: Vec<Record>,
        mut rejected: Vec<MemberResult>,
    ) -> anyhow::Result<()> {
        let mut delta = Counters {
            skipped: rejected.len() as i64,
            ..Counters::default()
        };
        for record in records {
            let wanted: Vec<u16> = std::iter::once(self.ownership)
                .chain(record.tags.iter().map(|t| self.index.tag_names.intern(t)))
                .collect();
            let wanted = self.index.tag_sets.intern(wanted);
            let full = self.run.full_resync;
            let known = self.index.get_mut(record.hash).map(|slot| {
                slot.planned = true;
                *slot
            });
            match known {
                Some(slot) if slot.refused.is_some() => {
                    let title = self.index.statuses.name(slot.refused.unwrap_or(0));
                    delta.skipped += 1;
                    rejected.push(MemberResult {
                        customer_id: record.customer_id,
                        email: record.email,
                        outcome: "skipped",
                        title: title.to_owned(),
                        detail:
                            "Mailchimp refused this contact for good before; it is not sent again."
                                .into(),
                    });
                }
                Some(slot) if !full && slot.content == record.content_hash => {
                    delta.unchanged += 1;
                    let tagged = Tagged {
                        hash: record.hash,
                        email: record.email,
                    };
                    self.schedule_tags(tagged, slot.tags, wanted);
                }
                Some(slot) => {
                    let status = self.index.statuses.name(slot.status).to_owned();
                    self.upserts.push_back(Outgoing {
                        record,
                        status,
                        tags_now: slot.tags,
                        tags_wanted: wanted,
                    });
                }
                None => {
                    let status = self.status_of_unknown(record.hash).await?;
                    self.upserts.push_back(Outgoing {
                        record,
                        status,
                        tags_now: NO_TAGS,
                        tags_wanted: wanted,
                    });
                }
            }
        }
        let pool = self.engine.db.pool();
        let mut tx = crate::db::begin_write(pool).await?;
        results::insert(&mut tx, self.run.id, &rejected).await?;
        runs::add(&mut *tx, self.run.id, &delta).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The status to send for an address the ledger does not know: the one Mailchimp has
    /// if the member exists (batch subscribe would overwrite it), else the new-member one.
    async fn status_of_unknown(&mut self, hash: Hash) -> anyhow::Result<String> {
        if self.statuses.is_none() {
            let statuses = match self.read_statuses().await {
                Ok(statuses) => statuses,
                Err(err) => {
                    if is_fatal(&err) {
                        self.halt_with(Halt::Fatal(fatal_message(&err)));
                    } else {
                        self.halt_with(Halt::Fatal(format!(
                            "The audience's member statuses could not be read ({err}); nothing was sent without them."
                        )));
                    }
                    HashMap::new()
                }
            };
            self.statuses = Some(statuses);
        }
        Ok(match self.statuses.as_ref().and_then(|s| s.get(&hash)) {
            Some(status) => self.index.statuses.name(*status).to_owned(),
            None => self.new_status.clone(),
        })
    }

    /// Pages through the audience's members of every status but the new-member status.
    async fn read_statuses(&mut self) -> Result<HashMap<Hash, u16>, ApiError> {
        let list = &self.destination.audience_id;
        let mut statuses = HashMap::new();
        let mut calls = 0i64;
        for status in STATUSES.iter().filter(|s| **s != self.new_status) {
            let code = self.index.statuses.intern(status);
            let mut offset = 0usize;
            loop {
                let path = format!(
                    "/lists/{list}/members?status={status}&count=1000&offset={offset}&fields=members.email_address,total_items"
                );
                let (page, attempts) = limiter::with_retries(&self.limit, || {
                    self.engine
                        .client
                        .call::<Value>(&self.connection, Method::GET, &path, None)
                })
                .await?;
                calls += i64::from(attempts);
                let members = page["members"].as_array().map_or(&[][..], Vec::as_slice);
                for member in members {
                    let email = member["email_address"].as_str().unwrap_or_default();
                    let hash = crate::domain::subscriber_digest(email);
                    if !self.index.contains(hash) {
                        statuses.insert(hash, code);
                    }
                }
                offset += members.len();
                let total = page["total_items"].as_u64().unwrap_or(0) as usize;
                if members.is_empty() || offset >= total {
                    break;
                }
            }
        }
        self.counters.calls += calls;
        Ok(statuses)
    }

    /// Queues the tag calls that take a member from the tags it has to the tags it should have.
    fn schedule_tags(&mut self, member: Tagged, now: u32, wanted: u32) {
        if now == wanted {
            return;
        }
        let have = self.index.tag_sets.tags(now).to_vec();
        let want = self.index.tag_sets.tags(wanted).to_vec();
        let mut pending = 0;
        for tag in want.iter().filter(|t| !have.contains(t)) {
            self.adds.entry(*tag).or_default().push(member.clone());
            pending += 1;
        }
        for tag in have.iter().filter(|t| !want.contains(t)) {
            self.removes.entry(*tag).or_default().push(member.clone());
            pending += 1;
        }
        if pending > 0 {
            let live = self.live.entry(member.hash).or_insert(Live {
                tags: now,
                pending: 0,
            });
            live.pending += pending;
        }
    }

    /// Members the ledger has and the plan does not: they keep only the ownership tag.
    async fn leavers(&mut self) -> anyhow::Result<()> {
        let only_ours = self.index.tag_sets.intern(vec![self.ownership]);
        let leaving: HashMap<Hash, u32> = self
            .index
            .leavers()
            .filter(|s| s.tags != only_ours && s.tags != NO_TAGS)
            .map(|s| (s.hash, s.tags))
            .collect();
        if leaving.is_empty() {
            return Ok(());
        }
        let mut rows =
            sqlx::query("SELECT email_hash, email FROM export_ledger WHERE destination_id = $1")
                .bind(self.destination.id)
                .fetch(self.engine.db.pool());
        let mut found = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let Some(hash) = hash_of(row.try_get::<&str, _>(0)?) else {
                continue;
            };
            if let Some(tags) = leaving.get(&hash) {
                found.push((hash, row.try_get::<String, _>(1)?, *tags));
            }
        }
        drop(rows);
        for (hash, email, tags) in found {
            // Tags of segments this destination no longer exports go too.
            let keep: Vec<u16> = self
                .index
                .tag_sets
                .tags(tags)
                .iter()
                .copied()
                .filter(|t| *t == self.ownership)
                .collect();
            let wanted = self.index.tag_sets.intern(keep);
            self.schedule_tags(Tagged { hash, email }, tags, wanted);
        }
        Ok(())
    }

    /// The next tag call: a tag with 500 changes waiting, or when `full_only` is false, any.
    fn tag_job(&mut self, full_only: bool) -> Option<Job> {
        let ready = |queue: &HashMap<u16, Vec<Tagged>>| {
            queue
                .iter()
                .filter(|(_, v)| !v.is_empty() && (!full_only || v.len() >= BATCH))
                .map(|(t, _)| *t)
                .min()
        };
        let tag = ready(&self.adds).or_else(|| ready(&self.removes))?;
        let take = |queue: &mut HashMap<u16, Vec<Tagged>>| {
            let list = queue.get_mut(&tag)?;
            let n = list.len().min(BATCH);
            let taken: Vec<Tagged> = list.drain(..n).collect();
            if list.is_empty() {
                queue.remove(&tag);
            }
            Some(taken)
        };
        let add = take(&mut self.adds).unwrap_or_default();
        let remove = take(&mut self.removes).unwrap_or_default();
        Some(Job::Tag { tag, add, remove })
    }

    /// Hands a call to the account's limit, in the background.
    async fn launch(&mut self, tasks: &mut JoinSet<Done>, job: Job) {
        let list = &self.destination.audience_id;
        let (path, body) = match &job {
            Job::Upsert(batch) => {
                let members: Vec<Value> = batch
                    .iter()
                    .map(|o| {
                        json!({
                            "email_address": o.record.email,
                            "status": o.status,
                            "merge_fields": o.record.merge_fields,
                        })
                    })
                    .collect();
                self.upserts_in_flight += 1;
                (
                    format!("/lists/{list}"),
                    json!({ "members": members, "update_existing": true }),
                )
            }
            Job::Tag { tag, add, remove } => {
                let name = self.index.tag_names.name(*tag).to_owned();
                let id = match self.tag_ids.get(&name) {
                    Some(id) => Some(*id),
                    None if add.is_empty() => None,
                    None => self.create_tag(&name).await,
                };
                let emails = |v: &[Tagged]| v.iter().map(|t| t.email.clone()).collect::<Vec<_>>();
                match id {
                    Some(id) => (
                        format!("/lists/{list}/segments/{id}"),
                        json!({ "members_to_add": emails(add), "members_to_remove": emails(remove) }),
                    ),
                    // No such tag in Mailchimp: nobody has it to lose; an add waits for next time.
                    None => (String::new(), Value::Null),
                }
            }
        };
        if path.is_empty() {
            let only_removals = matches!(&job, Job::Tag { add, .. } if add.is_empty());
            let answer = only_removals.then(Answer::default);
            tasks.spawn(async move { (job, Ok((answer, 0)), None) });
            return;
        }
        let (client, connection, limit, halted, recording) = (
            self.engine.client.clone(),
            self.connection.clone(),
            self.limit.clone(),
            self.halted.clone(),
            self.recording.clone(),
        );
        tasks.spawn(async move {
            let permit = recording.acquire_owned().await.ok();
            let result = call(&client, &connection, &limit, &halted, &path, &body).await;
            (job, result, permit)
        });
    }

    async fn create_tag(&mut self, name: &str) -> Option<u64> {
        let path = format!("/lists/{}/segments", self.destination.audience_id);
        let body = json!({ "name": name, "static_segment": [] });
        match limiter::with_retries(&self.limit, || {
            self.engine
                .client
                .call::<Value>(&self.connection, Method::POST, &path, Some(&body))
        })
        .await
        {
            Ok((created, attempts)) => {
                self.counters.calls += i64::from(attempts);
                let id = created["id"].as_u64()?;
                self.tag_ids.insert(name.to_owned(), id);
                Some(id)
            }
            Err(err) => {
                self.counters.calls += 1;
                if is_fatal(&err) {
                    self.halt_with(Halt::Fatal(fatal_message(&err)));
                }
                tracing::warn!(tag = %name, error = %err, "a tag could not be created");
                None
            }
        }
    }

    /// Records a finished call: ledger rows, results and counts in one transaction.
    async fn finish(
        &mut self,
        job: Job,
        result: Result<(Option<Answer>, u32), ApiError>,
    ) -> anyhow::Result<()> {
        let mut delta = std::mem::take(&mut self.counters);
        let pool = self.engine.db.pool();
        let mut tx = crate::db::begin_write(pool).await?;
        match job {
            Job::Upsert(batch) => {
                self.upserts_in_flight -= 1;
                let mut entries = Vec::new();
                let mut member_results = Vec::new();
                let mut acknowledged = Vec::new();
                match result {
                    Ok((None, _)) => {}
                    Ok((Some(response), attempts)) => {
                        delta.calls += i64::from(attempts);
                        acknowledged = self.acknowledge(
                            batch,
                            &response,
                            &mut delta,
                            &mut entries,
                            &mut member_results,
                        );
                    }
                    Err(err) => {
                        delta.calls += 1;
                        if is_fatal(&err) {
                            self.halt_with(Halt::Fatal(fatal_message(&err)));
                        }
                        for outgoing in &batch {
                            delta.failed += 1;
                            member_results.push(result_of(
                                &outgoing.record,
                                "failed",
                                &err.title,
                                &err.detail,
                            ));
                        }
                    }
                }
                ledger::upsert(&mut tx, self.destination.id, &entries).await?;
                results::insert(&mut tx, self.run.id, &member_results).await?;
                for (member, now, wanted) in acknowledged {
                    self.schedule_tags(member, now, wanted);
                }
            }
            Job::Tag { tag, add, remove } => {
                let answered = match result {
                    Ok((None, _)) => None,
                    Ok((Some(response), attempts)) => {
                        delta.calls += i64::from(attempts);
                        Some(response)
                    }
                    Err(err) => {
                        delta.calls += 1;
                        if is_fatal(&err) {
                            self.halt_with(Halt::Fatal(fatal_message(&err)));
                        }
                        let name = self.index.tag_names.name(tag);
                        tracing::warn!(tag = %name, error = %err, "a tag change failed; the next export tries again");
                        None
                    }
                };
                // Addresses Mailchimp ignored (not in the audience) did not change.
                let ignored: HashSet<String> = answered
                    .iter()
                    .flat_map(|r| &r.errors)
                    .flat_map(|e| &e.email_addresses)
                    .map(|e| e.to_lowercase())
                    .collect();
                let mut by_set: HashMap<u32, Vec<String>> = HashMap::new();
                for (members, adding) in [(&add, true), (&remove, false)] {
                    for member in members {
                        let Some(live) = self.live.get_mut(&member.hash) else {
                            continue;
                        };
                        live.pending -= 1;
                        if answered.is_some() && !ignored.contains(&member.email.to_lowercase()) {
                            live.tags = if adding {
                                self.index.tag_sets.with(live.tags, tag)
                            } else {
                                self.index.tag_sets.without(live.tags, tag)
                            };
                            delta.tag_changes += 1;
                            by_set
                                .entry(live.tags)
                                .or_default()
                                .push(hex_of(member.hash));
                        }
                        if live.pending == 0 {
                            self.live.remove(&member.hash);
                        }
                    }
                }
                for (set, hashes) in by_set {
                    let json = self.index.tag_sets.json(set, &self.index.tag_names);
                    ledger::set_tags(&mut tx, self.destination.id, &json, &hashes).await?;
                }
            }
        }
        runs::add(&mut *tx, self.run.id, &delta).await?;
        tx.commit().await?;
        if self.halt.is_none() && runs::cancel_requested(pool, self.run.id).await? {
            self.halt_with(Halt::Canceled);
        }
        Ok(())
    }

    /// Sorts a batch-subscribe answer into ledger rows, results and counts; returns the
    /// members whose tags can now change.
    fn acknowledge(
        &mut self,
        batch: Vec<Outgoing>,
        response: &Answer,
        delta: &mut Counters,
        entries: &mut Vec<(String, Entry)>,
        member_results: &mut Vec<MemberResult>,
    ) -> Vec<(Tagged, u32, u32)> {
        let mut by_hash: HashMap<Hash, Outgoing> =
            batch.into_iter().map(|o| (o.record.hash, o)).collect();
        let mut acknowledged = Vec::new();
        let index = &self.index;
        let entry = |o: &Outgoing, status: &str, refused: Option<String>| Entry {
            customer_id: o.record.customer_id.clone(),
            email: o.record.email.clone(),
            content_hash: if refused.is_some() {
                String::new()
            } else {
                hex_of(o.record.content_hash)
            },
            status: status.to_owned(),
            tags: index
                .tag_sets
                .tags(o.tags_now)
                .iter()
                .map(|t| index.tag_names.name(*t).to_owned())
                .collect(),
            permanent_skip: refused,
        };
        for (members, outcome) in [
            (&response.new_members, "created"),
            (&response.updated_members, "updated"),
        ] {
            for member in members {
                let hash = crate::domain::subscriber_digest(&member.email_address);
                let Some(o) = by_hash.remove(&hash) else {
                    continue;
                };
                let status = member.status.as_deref().unwrap_or(&o.status);
                entries.push((hex_of(hash), entry(&o, status, None)));
                member_results.push(result_of(&o.record, outcome, "", ""));
                delta.sent += 1;
                if outcome == "created" {
                    delta.created += 1
                } else {
                    delta.updated += 1
                }
                acknowledged.push((
                    Tagged {
                        hash,
                        email: o.record.email,
                    },
                    o.tags_now,
                    o.tags_wanted,
                ));
            }
        }
        for error in &response.errors {
            let hash = crate::domain::subscriber_digest(&error.email_address);
            let Some(o) = by_hash.remove(&hash) else {
                continue;
            };
            let detail = error.error.clone();
            let (title, permanent) = classify(&detail);
            if permanent {
                let status = if self.index.contains(hash) {
                    o.status.clone()
                } else {
                    "unsubscribed".to_owned()
                };
                entries.push((hex_of(hash), entry(&o, &status, Some(title.to_owned()))));
                member_results.push(result_of(&o.record, "skipped", title, &detail));
                delta.skipped += 1;
            } else {
                member_results.push(result_of(&o.record, "failed", title, &detail));
                delta.failed += 1;
            }
        }
        for o in by_hash.values() {
            member_results.push(result_of(
                &o.record,
                "failed",
                "No answer",
                "Mailchimp's answer did not mention this member.",
            ));
            delta.failed += 1;
        }
        acknowledged
    }
}

/// One call within the account's limit; not made at all once the run has stopped.
async fn call(
    client: &Client,
    connection: &Connection,
    limit: &AccountLimit,
    halted: &AtomicBool,
    path: &str,
    body: &Value,
) -> Result<(Option<Answer>, u32), ApiError> {
    limiter::with_retries(limit, || async {
        if halted.load(Ordering::Relaxed) {
            return Ok(None);
        }
        client
            .call::<Answer>(connection, Method::POST, path, Some(body))
            .await
            .map(Some)
    })
    .await
}
