//! Recording what Mailchimp answered: each finished call's ledger rows, per-member results
//! and counts, in one transaction with the other answers that arrived together.

use std::collections::{HashMap, HashSet};

use crate::export::engine::{fatal_message, is_fatal, result_of};
use crate::export::fresh::Need;
use crate::export::pipeline::{Answer, Exporter, Halt, Job, Outgoing};
use crate::export::plan::{Hash, hex_of};
use crate::mailchimp::client::{ApiError, ErrorKind};
use crate::mailchimp::gateway::BatchAnswer;
use crate::mailchimp::gateway::{MemberOutcome, MemberRefusal};
use crate::store::ledger::{self, Entry};
use crate::store::results::{self, MemberResult};
use crate::store::runs::{self, Counters};

/// Mailchimp's refusal to subscribe a member who opted out.
const COMPLIANCE: &str = "Member In Compliance State";

/// A status that subscribes, or asks to (what Mailchimp refuses for a member who opted out).
fn is_opt_in(status: &str) -> bool {
    matches!(status, "subscribed" | "pending")
}

impl Exporter<'_> {
    /// Records a finished call: ledger rows, results and counts in one transaction.
    /// Answers that arrived together are recorded in one transaction.
    pub(super) async fn finish(
        &mut self,
        answered: Vec<(Job, Result<Answer, ApiError>)>,
    ) -> anyhow::Result<()> {
        let mut delta = std::mem::take(&mut self.counters);
        let pool = self.engine.db.pool();
        let mut tx = crate::db::begin_write(pool).await?;
        for (job, result) in answered {
            match (job, result) {
                // Never sent (the run stopped): nothing happened in Mailchimp.
                (Job::Upsert(batch), Err(err)) if err.kind == ErrorKind::NotSent => {
                    for o in &batch {
                        self.settle(o.record.hash, None);
                    }
                }
                (Job::Untag { members, .. }, Err(err)) if err.kind == ErrorKind::NotSent => {
                    for m in &members {
                        self.settle(m.hash, None);
                    }
                }
                (Job::Upsert(batch), Err(err)) => {
                    if is_fatal(&err) {
                        self.halt_with(Halt::Fatal(fatal_message(&err)));
                    }
                    let mut member_results = Vec::with_capacity(batch.len());
                    for o in &batch {
                        self.settle(o.record.hash, None);
                        delta.failed += 1;
                        member_results.push(result_of(
                            &o.record,
                            "failed",
                            &err.title,
                            &err.detail,
                        ));
                    }
                    results::insert(&mut tx, self.run.id, &member_results).await?;
                }
                (Job::Upsert(batch), Ok(answer)) => {
                    let Answer::Upsert(answer) = answer else {
                        unreachable!("an upsert is answered as one")
                    };
                    let mut entries = Vec::new();
                    let mut member_results = Vec::new();
                    self.acknowledge(batch, answer, &mut delta, &mut entries, &mut member_results);
                    ledger::upsert(&mut tx, self.destination.id, &entries).await?;
                    results::insert(&mut tx, self.run.id, &member_results).await?;
                }
                (Job::Untag { tag, members }, result) => {
                    let ignored: HashSet<String> = match &result {
                        Ok(Answer::Untag(answer)) => answer
                            .not_in_audience
                            .iter()
                            .map(|e| e.to_lowercase())
                            .collect(),
                        _ => HashSet::new(),
                    };
                    let done = match result {
                        Ok(_) => true,
                        Err(err) => {
                            if is_fatal(&err) {
                                self.halt_with(Halt::Fatal(fatal_message(&err)));
                            }
                            self.tag_failures = true;
                            let name = self.index.tag_names.name(tag);
                            tracing::warn!(tag = %name, error = %err, "a tag removal failed; the next export tries again");
                            false
                        }
                    };
                    let mut by_set: HashMap<u32, Vec<String>> = HashMap::new();
                    for member in &members {
                        let now = self.live.get(&member.hash).map(|l| l.tags);
                        // Addresses Mailchimp ignored (not on the audience) did not change.
                        let changed = match now {
                            Some(now)
                                if done && !ignored.contains(&member.email.to_lowercase()) =>
                            {
                                delta.tag_changes += 1;
                                Some(self.index.tag_sets.without(now, tag))
                            }
                            _ => None,
                        };
                        if let (Some(tags), Some(_)) = (self.settle(member.hash, changed), changed)
                        {
                            by_set.entry(tags).or_default().push(hex_of(member.hash));
                        }
                    }
                    for (set, hashes) in by_set {
                        let json = self.index.tag_sets.json(set, &self.index.tag_names);
                        ledger::set_tags(&mut tx, self.destination.id, &json, &hashes).await?;
                    }
                }
            }
        }
        delta.calls += self.gateway.take_calls();
        runs::add(&mut *tx, self.run.id, &delta).await?;
        tx.commit().await?;
        if self.halt.is_none() && runs::cancel_requested(pool, self.run.id).await? {
            self.halt_with(Halt::Canceled);
        }
        Ok(())
    }

    /// Sorts a batch-subscribe answer into ledger rows, results and counts.
    fn acknowledge(
        &mut self,
        batch: Vec<Outgoing>,
        answer: BatchAnswer,
        delta: &mut Counters,
        entries: &mut Vec<(String, Entry)>,
        member_results: &mut Vec<MemberResult>,
    ) {
        let mut by_hash: HashMap<Hash, Outgoing> =
            batch.into_iter().map(|o| (o.record.hash, o)).collect();
        for (email, outcome) in answer.members {
            let hash = crate::domain::subscriber_digest(&email);
            let Some(o) = by_hash.remove(&hash) else {
                continue;
            };
            let created = matches!(outcome, MemberOutcome::Created { .. });
            match outcome {
                MemberOutcome::Created { status } | MemberOutcome::Updated { status } => {
                    let before = self.live.get(&hash).map_or(o.tags_now, |l| l.tags);
                    let after = self.index.tag_sets.union(before, o.tags_wanted);
                    let after = self.settle(hash, Some(after)).unwrap_or(after);
                    delta.tag_changes += (self.index.tag_sets.tags(after).len()
                        - self.index.tag_sets.tags(before).len())
                        as i64;
                    let status = status.unwrap_or_else(|| o.status.clone());
                    entries.push((hex_of(hash), self.entry(&o, &status, after, None)));
                    if o.data {
                        delta.sent += 1;
                        if created {
                            delta.created += 1;
                            member_results.push(result_of(&o.record, "created", "", ""));
                        } else {
                            delta.updated += 1;
                            member_results.push(result_of(&o.record, "updated", "", ""));
                        }
                    } else {
                        delta.unchanged += 1;
                    }
                }
                MemberOutcome::Refused(refusal) => {
                    if refusal.title == COMPLIANCE
                        && is_opt_in(&o.status)
                        && !self.rechecked.contains(&hash)
                    {
                        // It opted out since its status was read: read it, send it again.
                        self.recheck.push((o, refusal));
                        continue;
                    }
                    self.refused(&o, &refusal, delta, entries, member_results);
                }
            }
        }
        for o in by_hash.into_values() {
            self.settle(o.record.hash, None);
            member_results.push(result_of(
                &o.record,
                "failed",
                "No answer",
                "Mailchimp's answer did not mention this member.",
            ));
            delta.failed += 1;
        }
    }

    /// Records a member Mailchimp refused: for good (never sent again), or for this time.
    fn refused(
        &mut self,
        o: &Outgoing,
        refusal: &MemberRefusal,
        delta: &mut Counters,
        entries: &mut Vec<(String, Entry)>,
        member_results: &mut Vec<MemberResult>,
    ) {
        let hash = o.record.hash;
        self.settle(hash, None);
        if refusal.permanent {
            let status = if self.index.contains(hash) {
                o.status.clone()
            } else {
                "unsubscribed".to_owned()
            };
            let now = o.tags_now;
            entries.push((
                hex_of(hash),
                self.entry(o, &status, now, Some(refusal.title.to_owned())),
            ));
            member_results.push(result_of(
                &o.record,
                "skipped",
                refusal.title,
                &refusal.detail,
            ));
            delta.skipped += 1;
        } else {
            member_results.push(result_of(
                &o.record,
                "failed",
                refusal.title,
                &refusal.detail,
            ));
            delta.failed += 1;
        }
    }

    /// Members Mailchimp refused to subscribe because they opted out since their statuses
    /// were read: the changes since are read now, and each is sent again with the status
    /// read (its data still changed); one that still reads as opted in (a compliance
    /// review) is refused for good.
    pub(super) async fn recheck_refused(&mut self) -> anyhow::Result<()> {
        let refused = std::mem::take(&mut self.recheck);
        self.engine.fresh.statuses_changed(self.destination.id);
        self.load_statuses(Need::Current).await?;
        let (mut delta, mut entries, mut member_results) =
            (Counters::default(), Vec::new(), Vec::new());
        for (mut o, refusal) in refused {
            let hash = o.record.hash;
            self.rechecked.insert(hash);
            let read = self.statuses.as_ref().and_then(|s| s.get(&hash)).copied();
            match read.map(|code| self.index.statuses.name(code).to_owned()) {
                Some(status) if !is_opt_in(&status) && self.halt.is_none() => {
                    tracing::debug!(status = %status, "a member who opted out in Mailchimp is sent again with its status");
                    o.status = status;
                    self.upserts.push_back(o);
                }
                _ => self.refused(&o, &refusal, &mut delta, &mut entries, &mut member_results),
            }
        }
        if !member_results.is_empty() {
            let mut tx = crate::db::begin_write(self.engine.db.pool()).await?;
            ledger::upsert(&mut tx, self.destination.id, &entries).await?;
            results::insert(&mut tx, self.run.id, &member_results).await?;
            runs::add(&mut *tx, self.run.id, &delta).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The ledger row for a member Mailchimp answered for.
    fn entry(&self, o: &Outgoing, status: &str, tags: u32, refused: Option<String>) -> Entry {
        Entry {
            customer_id: o.record.customer_id.clone(),
            email: o.record.email.clone(),
            content_hash: if refused.is_some() {
                String::new()
            } else {
                hex_of(o.record.content_hash)
            },
            status: status.to_owned(),
            tags: self
                .index
                .tag_sets
                .tags(tags)
                .iter()
                .map(|t| self.index.tag_names.name(*t).to_owned())
                .collect(),
            permanent_skip: refused,
        }
    }
}
