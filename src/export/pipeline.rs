//! One export run's pipeline, after [`super::run`] has made its small reads. The plan is read a chunk at a time; members whose content
//! changed, or who gain a tag, go out in batch upserts of 500 that carry the tags they
//! should have (Mailchimp adds tags named in the batch to new and existing members, so a
//! tag addition costs no call of its own). A member who leaves a segment loses its tag
//! through a tag call of up to 500 removals, sent alongside the upserts. Every call shares
//! the account's connections, and memory stays bounded by the chunk, the queues and the
//! ledger's compact index.
//!
//! `sync_tags` is never used: it would take off tags that people or other tools set.
//!
//! Every acknowledged call commits its ledger rows, per-member results and counts in one
//! transaction, so a run resumed after a crash sends nothing Mailchimp already has.

use crate::background::AbortOnDrop;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::domain::MemberStatus;
use crate::export::decide::{Decider, Fate, Presence, Tags};
use crate::export::engine::{Engine, fatal_message, is_fatal};
use crate::export::fresh::Need;
use crate::export::ledger_index::Index;
use crate::export::plan::{Chunk, Hash, PlanReader, Record, hash_of, hex_of};
use crate::mailchimp::client::ApiError;
use crate::mailchimp::gateway::{BATCH, BatchAnswer, Gateway, MemberRefusal, Untagged, Upsert};
use crate::mailchimp::limiter::PER_ACCOUNT;
use crate::mailchimp::merge_rules::REFUSED_VALUE;
use crate::store::destinations::Destination;
use crate::store::ledger::{self};
use crate::store::results::{self, MemberResult};
use crate::store::runs::{self, Counters, Run};

mod answers;

/// Calls handed to the account's limit at once: every slot busy, and the next call already
/// waiting when one finishes.
const QUEUED_CALLS: usize = PER_ACCOUNT * 2;

/// A member on its way to a batch upsert.
struct Outgoing {
    record: Record,
    /// The status it is sent with: the one Mailchimp has, or the new-member status.
    status: String,
    /// Its data changed (or it is new, or this is a full resync). Otherwise only tags are
    /// added, with what Mailchimp already has, and it counts as unchanged.
    data: bool,
    /// The tags it carries now, and the tags it should carry (sent with the upsert).
    tags_now: u32,
    tags_wanted: u32,
    /// The names of `tags_wanted`, shared by every member with that set.
    tag_names: Arc<Vec<String>>,
}

/// A member losing a tag.
#[derive(Clone)]
struct Tagged {
    hash: Hash,
    email: String,
}

fn member_of(record: &Record) -> Tagged {
    Tagged {
        hash: record.hash,
        email: record.email.clone(),
    }
}

enum Job {
    Upsert(Vec<Outgoing>),
    Untag { tag: u16, members: Vec<Tagged> },
}

/// Mailchimp's answer to a job.
enum Answer {
    Upsert(BatchAnswer),
    Untag(Untagged),
    /// No call was needed: the audience has no such tag, so nobody has it to lose.
    NoSuchTag,
}

/// A finished call: the job back, Mailchimp's answer, and the permit that lets another call
/// go out once this answer is recorded.
type Done = (Job, Result<Answer, ApiError>, Option<OwnedSemaphorePermit>);

/// Reads the plan in its own task, a chunk or two ahead of the run.
pub(super) fn read_ahead(
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

/// A member with calls in flight that change its tags: the tags it has now, and how many
/// of those calls (tag removals, and its upsert) are still unanswered.
struct Live {
    tags: u32,
    pending: u32,
}

/// Why the pipeline stopped before its end.
pub(super) enum Halt {
    /// The credential or the audience cannot be used: the run fails with these words.
    Fatal(String),
    Canceled,
    LeaseLost,
}

/// What the pipeline needs from the run that starts it.
pub(super) struct Setup<'a> {
    pub engine: &'a Engine,
    pub run: &'a Run,
    pub destination: &'a Destination,
    pub gateway: Gateway,
    pub index: Index,
    pub decider: Decider,
    /// The status a member Mailchimp does not have yet is sent with.
    pub new_status: MemberStatus,
    /// The audience's tags by name (a removal needs the tag's ID).
    pub tag_ids: HashMap<String, u64>,
    /// Addresses of the ledger entries loaded, when only changed profiles are read.
    pub emails: Option<HashMap<Hash, String>>,
}

/// How the pipeline ended.
pub(super) struct Finished {
    /// Profiles the plan held.
    pub planned: i64,
    pub halt: Option<Halt>,
    /// A tag removal failed: the next export must read the whole plan to make it again.
    pub tag_failures: bool,
}

/// Sends the plan's members to Mailchimp, keeping the account's connections busy until the
/// plan is done and every call answered, and records every answer as it comes.
pub(super) async fn send(
    setup: Setup<'_>,
    chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Option<Chunk>>>,
    stop: &AtomicBool,
) -> anyhow::Result<Finished> {
    let mut exporter = Exporter {
        engine: setup.engine,
        run: setup.run,
        destination: setup.destination,
        gateway: setup.gateway,
        recording: Arc::new(Semaphore::new(PER_ACCOUNT)),
        index: setup.index,
        decider: setup.decider,
        new_status: setup.new_status,
        statuses: None,
        statuses_current: false,
        recheck: Vec::new(),
        rechecked: std::collections::HashSet::new(),
        tag_ids: setup.tag_ids,
        set_names: HashMap::new(),
        removes: HashMap::new(),
        live: HashMap::new(),
        upserts: VecDeque::new(),
        counters: Counters::default(),
        halt: None,
        tag_failures: false,
        emails: setup.emails,
    };
    let planned = exporter.pump(chunks, stop).await?;
    Ok(Finished {
        planned,
        halt: exporter.halt,
        tag_failures: exporter.tag_failures,
    })
}

struct Exporter<'a> {
    engine: &'a Engine,
    run: &'a Run,
    destination: &'a Destination,
    gateway: Gateway,
    /// Calls sent whose answers are not yet recorded: at most one per connection, so a
    /// crash can make the next run resend no more than the calls that were in flight.
    recording: Arc<Semaphore>,
    index: Index,
    new_status: MemberStatus,
    /// Statuses of audience members that differ from the new-member status, as Mailchimp
    /// has them (read or taken as kept when the first member is about to be sent).
    statuses: Option<HashMap<Hash, u16>>,
    /// They were read during this run (not taken as kept).
    statuses_current: bool,
    /// Members Mailchimp refused to subscribe because they opted out since the statuses
    /// were read: their statuses are read again and they are sent with them.
    recheck: Vec<(Outgoing, MemberRefusal)>,
    /// Members sent again after such a refusal (never twice).
    rechecked: std::collections::HashSet<Hash>,
    tag_ids: HashMap<String, u64>,
    /// Tag names of each tag set, made once.
    set_names: HashMap<u32, Arc<Vec<String>>>,
    removes: HashMap<u16, Vec<Tagged>>,
    live: HashMap<Hash, Live>,
    upserts: VecDeque<Outgoing>,
    counters: Counters,
    halt: Option<Halt>,
    /// A tag removal failed: the next export must read the whole plan to make it again.
    tag_failures: bool,
    /// Addresses of the ledger entries loaded, when only changed profiles are read (the
    /// whole ledger is not in memory to look them up).
    emails: Option<HashMap<Hash, String>>,
    /// What happens to each member (the audience's merge fields among its rules: a value
    /// Mailchimp would refuse is reported before a batch leaves, and the member not sent).
    decider: Decider,
}

impl Exporter<'_> {
    /// Keeps the account's connections busy until the plan is done and every call answered.
    /// Returns how many profiles the plan held.
    #[tracing::instrument(name = "calls", skip_all)]
    async fn pump(
        &mut self,
        mut chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Option<Chunk>>>,
        stop: &AtomicBool,
    ) -> anyhow::Result<i64> {
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let (mut sorting, mut recording) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut planned = 0i64;
        let mut plan_done = false;
        let mut leavers_done = false;
        loop {
            if self.halt.is_none() && stop.load(Ordering::Relaxed) {
                self.halt_with(Halt::LeaseLost);
            }
            while self.halt.is_none() && tasks.len() < QUEUED_CALLS {
                if !self.recheck.is_empty() {
                    self.recheck_refused().await?;
                } else if let Some(job) = self.untag_job(true) {
                    self.launch(&mut tasks, job);
                } else if self.upserts.len() >= BATCH || (plan_done && !self.upserts.is_empty()) {
                    let take = self.upserts.len().min(BATCH);
                    let batch: Vec<Outgoing> = self.upserts.drain(..take).collect();
                    self.launch(&mut tasks, Job::Upsert(batch));
                } else if !plan_done {
                    break;
                } else if !leavers_done {
                    self.leavers().await?;
                    leavers_done = true;
                } else if let Some(job) = self.untag_job(false) {
                    self.launch(&mut tasks, job);
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
                        let started = std::time::Instant::now();
                        planned += (chunk.records.len() + chunk.rejected.len()) as i64;
                        self.take_chunk(chunk.records, chunk.rejected, chunk.repeats)
                            .await?;
                        sorting += started.elapsed();
                    }
                    Some(Ok(None)) | None => plan_done = true,
                    Some(Err(err)) => return Err(err),
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    // Every answer already in is recorded with this one, in one transaction.
                    let (job, result, permit) = done?;
                    let mut answered = vec![(job, result)];
                    let mut permits = vec![permit];
                    while let Some(more) = tasks.try_join_next() {
                        let (job, result, permit) = more?;
                        answered.push((job, result));
                        permits.push(permit);
                    }
                    let started = std::time::Instant::now();
                    self.finish(answered).await?;
                    recording += started.elapsed();
                    // Only now may other calls go out (see `recording`).
                    drop(permits);
                }
            }
        }
        tracing::debug!(
            sorting_ms = sorting.as_millis() as u64,
            recording_ms = recording.as_millis() as u64,
            "time the run's loop spent sorting the plan and recording answers"
        );
        let mut rest = std::mem::take(&mut self.counters);
        rest.calls += self.gateway.take_calls();
        runs::add(self.engine.db.pool(), self.run.id, &rest).await?;
        Ok(planned)
    }

    fn halt_with(&mut self, halt: Halt) {
        self.gateway.stop();
        self.halt.get_or_insert(halt);
    }

    /// Sorts one chunk of the plan: refused for good, unchanged, or to send; and queues the
    /// removal of tags its members no longer should have.
    async fn take_chunk(
        &mut self,
        records: Vec<Record>,
        mut rejected: Vec<MemberResult>,
        repeats: Vec<(String, Hash)>,
    ) -> anyhow::Result<()> {
        let mut delta = Counters {
            skipped: rejected.len() as i64,
            ..Counters::default()
        };
        for record in records {
            let (tags, data) = match self
                .decider
                .member(&mut self.index, &record, Presence::Ledger)
            {
                Fate::Skip { title, detail } => {
                    delta.skipped += 1;
                    rejected.push(MemberResult {
                        customer_id: record.customer_id,
                        email: record.email,
                        outcome: "skipped",
                        title,
                        detail: detail.into(),
                    });
                    continue;
                }
                Fate::Fail { reason, tags, .. } => {
                    self.schedule_removals(member_of(&record), tags, false);
                    delta.failed += 1;
                    rejected.push(MemberResult {
                        customer_id: record.customer_id,
                        email: record.email,
                        outcome: "failed",
                        title: REFUSED_VALUE.to_owned(),
                        detail: format!("{reason}; not sent (Mailchimp would refuse the member)."),
                    });
                    continue;
                }
                Fate::Unchanged { tags } => {
                    self.schedule_removals(member_of(&record), tags, false);
                    delta.unchanged += 1;
                    continue;
                }
                Fate::Send { data, tags, .. } => (tags, data),
            };
            self.schedule_removals(member_of(&record), tags, true);
            let status = self.status_of(record.hash).await?;
            let tag_names = self.names_of(tags.wanted);
            self.upserts.push_back(Outgoing {
                record,
                status,
                data,
                tags_now: tags.now,
                tags_wanted: tags.wanted,
                tag_names,
            });
        }
        let pool = self.engine.db.pool();
        let mut tx = crate::db::begin_write(pool).await?;
        results::insert(&mut tx, self.run.id, &rejected).await?;
        let repeats: Vec<(String, String)> = repeats
            .into_iter()
            .map(|(customer, hash)| (customer, hex_of(hash)))
            .collect();
        crate::store::marks::add_repeats(&mut tx, self.destination.id, &repeats).await?;
        runs::add(&mut *tx, self.run.id, &delta).await?;
        tx.commit().await?;
        Ok(())
    }

    fn names_of(&mut self, set: u32) -> Arc<Vec<String>> {
        let index = &self.index;
        self.set_names
            .entry(set)
            .or_insert_with(|| {
                Arc::new(
                    index
                        .tag_sets
                        .tags(set)
                        .iter()
                        .map(|t| index.tag_names.name(*t).to_owned())
                        .collect(),
                )
            })
            .clone()
    }

    /// The status to send: the one Mailchimp has for the member (batch subscribe would
    /// overwrite it, so an unsubscribed or pending member is sent as such), or the
    /// new-member status for members it does not have. A member kept as not having the
    /// new-member status is sent only with a status read during this run (`export::fresh`).
    async fn status_of(&mut self, hash: Hash) -> anyhow::Result<String> {
        if self.statuses.is_none() {
            let need = if self.run.full_resync || !self.run.kept_in_sync {
                Need::Whole
            } else {
                Need::Kept
            };
            self.load_statuses(need).await?;
        }
        let kept = |this: &Self| this.statuses.as_ref().and_then(|s| s.get(&hash)).copied();
        if kept(self).is_some() && !self.statuses_current {
            self.load_statuses(Need::Current).await?;
        }
        Ok(match kept(self) {
            Some(status) => self.index.statuses.name(status).to_owned(),
            None => self.new_status.as_str().to_owned(),
        })
    }

    /// Reads the statuses (or takes them as kept); a read Mailchimp refuses halts the run.
    async fn load_statuses(&mut self, need: Need) -> anyhow::Result<()> {
        let statuses = match self.read_statuses(need).await? {
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
        Ok(())
    }

    /// Every audience member whose status is not the new-member status, by address: read
    /// whole, only the changes since the last run's read, or as kept (`export::fresh`).
    /// Changes read go into the ledger too.
    async fn read_statuses(
        &mut self,
        need: Need,
    ) -> anyhow::Result<Result<HashMap<Hash, u16>, ApiError>> {
        let read = match self
            .engine
            .fresh
            .statuses(&self.gateway, self.destination, self.new_status, need)
            .await
        {
            Ok(read) => read,
            Err(err) => return Ok(Err(err)),
        };
        self.statuses_current |= read.current;
        // Statuses that changed in Mailchimp since the ledger noted them.
        let mut changed: Vec<(String, &'static str)> = Vec::new();
        if read.changes_only {
            for (email, status) in &read.read {
                let hash = crate::domain::subscriber_digest(email);
                let Some(code) = self.index.get_mut(hash).map(|slot| slot.status) else {
                    continue;
                };
                if self.index.statuses.name(code) != status.as_str() {
                    changed.push((hex_of(hash), status.as_str()));
                }
            }
        }
        if !changed.is_empty() {
            let mut tx = crate::db::begin_write(self.engine.db.pool()).await?;
            crate::store::drift::set_statuses(&mut tx, self.destination.id, &changed).await?;
            tx.commit().await?;
        }
        let names = &mut self.index.statuses;
        Ok(Ok(read
            .members
            .into_iter()
            .map(|(hash, status)| (hash, names.intern(status.as_str())))
            .collect()))
    }

    /// Queues the removal of every tag the member has and should not (a tag call of up to
    /// 500 members each), and notes its calls in flight: the removals and, if `upsert`, its
    /// upsert, so that its tags in the ledger are right whichever is answered first.
    fn schedule_removals(&mut self, member: Tagged, tags: Tags, upsert: bool) {
        let losing = tags.losing(&self.index);
        if losing.is_empty() {
            return;
        }
        let pending = losing.len() as u32 + u32::from(upsert);
        for tag in losing {
            self.removes.entry(tag).or_default().push(member.clone());
        }
        let live = self.live.entry(member.hash).or_insert(Live {
            tags: tags.now,
            pending: 0,
        });
        live.pending += pending;
    }

    /// Members the ledger has and the plan does not: they keep only the ownership tag.
    #[tracing::instrument(name = "leavers", skip_all)]
    async fn leavers(&mut self) -> anyhow::Result<()> {
        let leaving: HashMap<Hash, Tags> =
            self.decider.leavers(&mut self.index).into_iter().collect();
        if leaving.is_empty() {
            return Ok(());
        }
        let mut found = Vec::new();
        match &self.emails {
            Some(emails) => {
                for (hash, tags) in &leaving {
                    if let Some(email) = emails.get(hash) {
                        found.push((*hash, email.clone(), *tags));
                    }
                }
            }
            None => {
                let pool = self.engine.db.pool();
                let mut after = String::new();
                loop {
                    let page =
                        ledger::emails_page(pool, self.destination.id, &after, 10_000).await?;
                    let Some((last, _)) = page.last() else {
                        break;
                    };
                    after = last.clone();
                    for (hash, email) in page {
                        let Some(hash) = hash_of(&hash) else {
                            continue;
                        };
                        if let Some(tags) = leaving.get(&hash) {
                            found.push((hash, email, *tags));
                        }
                    }
                }
            }
        }
        for (hash, email, tags) in found {
            self.schedule_removals(Tagged { hash, email }, tags, false);
        }
        Ok(())
    }

    /// The next tag call: a tag with 500 removals waiting, or when `full_only` is false, any.
    fn untag_job(&mut self, full_only: bool) -> Option<Job> {
        let tag = self
            .removes
            .iter()
            .filter(|(_, v)| !v.is_empty() && (!full_only || v.len() >= BATCH))
            .map(|(t, _)| *t)
            .min()?;
        let list = self.removes.get_mut(&tag)?;
        let n = list.len().min(BATCH);
        let members: Vec<Tagged> = list.drain(..n).collect();
        if list.is_empty() {
            self.removes.remove(&tag);
        }
        Some(Job::Untag { tag, members })
    }

    /// Hands a call to the account's limit, in the background.
    fn launch(&mut self, tasks: &mut JoinSet<Done>, job: Job) {
        let list = self.destination.audience_id.clone();
        let tag_id = match &job {
            Job::Untag { tag, .. } => match self.tag_ids.get(self.index.tag_names.name(*tag)) {
                Some(id) => Some(*id),
                None => {
                    tasks.spawn(async move { (job, Ok(Answer::NoSuchTag), None) });
                    return;
                }
            },
            Job::Upsert(batch) => {
                tracing::debug!(members = batch.len(), "batch upsert");
                None
            }
        };
        let (gateway, recording) = (self.gateway.clone(), self.recording.clone());
        tasks.spawn(async move {
            let permit = recording.acquire_owned().await.ok();
            let result = match &job {
                Job::Upsert(batch) => {
                    let members: Vec<Upsert<'_>> = batch
                        .iter()
                        .map(|o| Upsert {
                            email_address: &o.record.email,
                            status: &o.status,
                            merge_fields: &o.record.merge_fields,
                            tags: o.tag_names.iter().map(String::as_str).collect(),
                        })
                        .collect();
                    gateway
                        .batch_upsert(&list, &members)
                        .await
                        .map(Answer::Upsert)
                }
                Job::Untag { members, .. } => {
                    let emails: Vec<&str> = members.iter().map(|m| m.email.as_str()).collect();
                    gateway
                        .untag(&list, tag_id.unwrap_or_default(), &emails)
                        .await
                        .map(Answer::Untag)
                }
            };
            (job, result, permit)
        });
    }

    /// One call of a member's is answered: the tags it has after it, if it changed them.
    fn settle(&mut self, hash: Hash, changed: Option<u32>) -> Option<u32> {
        let live = self.live.get_mut(&hash)?;
        if let Some(tags) = changed {
            live.tags = tags;
        }
        live.pending = live.pending.saturating_sub(1);
        let tags = live.tags;
        if live.pending == 0 {
            self.live.remove(&hash);
        }
        Some(tags)
    }
}
