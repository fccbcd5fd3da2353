//! Removal clean-ups: take a destination's tags off the members it manages, or archive the
//! members it added (never anyone else's); then the destination and its credential are
//! deleted. A clean-up that is canceled or cannot finish keeps the destination, so an
//! administrator can retry it or remove the destination without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use crate::export::engine::{Engine, Outcome, failure, fatal_message};
use crate::mailchimp::gateway::BATCH;
use crate::mailchimp::gateway::Gateway;
use crate::mailchimp::limiter::PER_ACCOUNT;
use crate::store::destinations::{self, Destination};
use crate::store::ledger::{self, Managed};
use crate::store::runs::{self, Counters, Run, RunKind, RunStatus};

/// Ledger entries read at a time: memory stays flat however many members were added.
const PAGE: i64 = 1000;

/// One call of a clean-up and how many members it covers.
enum Call {
    Untag { tag_id: u64, emails: Vec<String> },
    Archive { email: String },
}

impl Call {
    fn members(&self) -> usize {
        match self {
            Call::Untag { emails, .. } => emails.len(),
            Call::Archive { .. } => 1,
        }
    }
}

#[tracing::instrument(name = "clean-up", skip_all, fields(run_id = run.id, destination_id = run.destination_id, ?kind))]
pub(crate) async fn clean_up(
    engine: &Engine,
    run: &Run,
    kind: RunKind,
    stop: &AtomicBool,
) -> anyhow::Result<Outcome> {
    let pool = engine.db.pool();
    let Some(destination) = destinations::find(pool, run.destination_id).await? else {
        return Ok(failure("The destination was already removed."));
    };
    if !destination.is_removing() {
        return Ok(failure("The destination is not being removed."));
    }
    let gateway = match engine.gateway(&destination) {
        Ok(gateway) => gateway,
        Err(err) => {
            return Ok(failure(format!(
                "The destination's credential cannot be used: {err}."
            )));
        }
    };
    let tag_ids: HashMap<String, u64> = if kind == RunKind::RemoveTags {
        match gateway.tags(&destination.audience_id).await {
            Ok(tags) => tags,
            Err(err) => return Ok(failure(fatal_message(&err))),
        }
    } else {
        HashMap::new()
    };
    let ledger_calls = LedgerCalls {
        pool,
        destination_id: destination.id,
        kind,
        tag_ids,
        by_tag: HashMap::new(),
        after: String::new(),
        exhausted: false,
    };
    let total = ledger::count_managed(pool, destination.id).await?;
    let tally = match make_calls(engine, run, &gateway, &destination, ledger_calls, stop).await? {
        Ok(tally) => tally,
        Err(canceled) => return Ok(canceled),
    };
    let delta = Counters {
        total,
        calls: gateway.take_calls(),
        tag_changes: tally.untagged,
        sent: tally.archived,
        ..Counters::default()
    };
    runs::add(pool, run.id, &delta).await?;
    conclude(engine, run, &destination, kind, tally).await
}

/// What a clean-up's calls did.
struct Tally {
    untagged: i64,
    archived: i64,
    /// Members whose call failed.
    problems: usize,
}

/// Makes the clean-up's calls, up to the account's connections at once, until the ledger
/// is read to its end; or stops when the run is canceled (the outcome to report) or its
/// lease is lost (an error: another worker resumes it).
async fn make_calls(
    engine: &Engine,
    run: &Run,
    gateway: &Gateway,
    destination: &Destination,
    mut ledger_calls: LedgerCalls<'_>,
    stop: &AtomicBool,
) -> anyhow::Result<Result<Tally, Outcome>> {
    let (pool, list, kind) = (
        engine.db.pool(),
        destination.audience_id.as_str(),
        ledger_calls.kind,
    );
    let mut calls: Vec<Call> = Vec::new();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut tally = Tally {
        untagged: 0,
        archived: 0,
        problems: 0,
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            gateway.stop();
            anyhow::bail!("the run's lease was lost; another worker will resume it");
        }
        if calls.is_empty()
            && !ledger_calls.exhausted
            && runs::cancel_requested(pool, run.id).await?
        {
            // Calls in flight are let finish; nothing new leaves. The destination stays,
            // marked as removal stopped, for an administrator to retry or remove.
            gateway.stop();
            while in_flight.next().await.is_some() {}
            return Ok(Err(Outcome {
                status: RunStatus::Canceled,
                message: Some(
                    "Clean-up canceled: the destination is kept; retry the clean-up or remove it without one."
                        .into(),
                ),
            }));
        }
        if calls.is_empty() {
            calls = ledger_calls.next_page().await?;
        }
        while in_flight.len() < PER_ACCOUNT {
            let Some(call) = calls.pop() else {
                break;
            };
            in_flight.push(async move {
                let members = call.members();
                let result = match &call {
                    Call::Untag { tag_id, emails } => {
                        let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
                        gateway.untag(list, *tag_id, &emails).await.map(|_| ())
                    }
                    // Already gone from the audience counts as archived: nothing is left.
                    Call::Archive { email } => gateway.archive(list, email).await.map(|_| ()),
                };
                (result, members)
            });
        }
        let Some((result, members)) = in_flight.next().await else {
            if calls.is_empty() && ledger_calls.exhausted {
                return Ok(Ok(tally));
            }
            continue;
        };
        match result {
            Ok(_) if kind == RunKind::RemoveTags => tally.untagged += members as i64,
            Ok(_) => tally.archived += 1,
            Err(err) => {
                tracing::warn!(error = %err, "a clean-up call failed");
                tally.problems += members;
            }
        }
    }
}

/// The clean-up's end: the destination is retired when every call succeeded, and kept
/// (to retry) when one did not.
async fn conclude(
    engine: &Engine,
    run: &Run,
    destination: &Destination,
    kind: RunKind,
    tally: Tally,
) -> anyhow::Result<Outcome> {
    let (what, done) = if kind == RunKind::RemoveTags {
        ("tags taken off", tally.untagged)
    } else {
        ("members archived", tally.archived)
    };
    let problems = tally.problems;
    if problems > 0 {
        // A clean-up that did not finish keeps the destination (and its credential) so
        // it can be retried; nothing is deleted behind the administrator's back.
        return Ok(failure(format!(
            "Clean-up incomplete: {done} {what} in Mailchimp, {problems} could not be. The destination is kept; retry the clean-up or remove it without one."
        )));
    }
    let details =
        format!("{done} {what} in Mailchimp; {problems} could not be; credential deleted");
    retire(engine, run, destination, &details).await?;
    tracing::info!(destination_id = destination.id, %details, "destination removed after its clean-up");
    Ok(Outcome {
        status: RunStatus::Successful,
        message: Some(details),
    })
}

/// The clean-up's calls, made from the ledger a page at a time: memory stays flat however
/// many members the destination added.
struct LedgerCalls<'a> {
    pool: &'a sqlx::AnyPool,
    destination_id: i64,
    kind: RunKind,
    tag_ids: HashMap<String, u64>,
    /// Members waiting for a tag's call, until 500 of them (or the ledger's end).
    by_tag: HashMap<String, Vec<String>>,
    after: String,
    exhausted: bool,
}

impl LedgerCalls<'_> {
    /// The next calls: empty only when the ledger is read to its end.
    async fn next_page(&mut self) -> anyhow::Result<Vec<Call>> {
        let mut calls = Vec::new();
        while calls.is_empty() && !self.exhausted {
            let page =
                ledger::managed_page(self.pool, self.destination_id, &self.after, PAGE).await?;
            self.exhausted = (page.len() as i64) < PAGE;
            if let Some(last) = page.last() {
                self.after = last.email_hash.clone();
            }
            for Managed { email, tags, .. } in page {
                if self.kind != RunKind::RemoveTags {
                    calls.push(Call::Archive { email });
                    continue;
                }
                let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
                for tag in tags {
                    let waiting = self.by_tag.entry(tag.clone()).or_default();
                    waiting.push(email.clone());
                    if waiting.len() == BATCH {
                        let emails = std::mem::take(waiting);
                        calls.extend(untag(&self.tag_ids, &tag, emails));
                    }
                }
            }
            if self.exhausted {
                for (tag, emails) in self.by_tag.drain() {
                    calls.extend(untag(&self.tag_ids, &tag, emails));
                }
            }
        }
        Ok(calls)
    }
}

/// After a complete clean-up: the destination goes with its credential and webhook, noted
/// in the audit log under the administrator who asked for the removal.
async fn retire(
    engine: &Engine,
    run: &Run,
    destination: &crate::store::destinations::Destination,
    details: &str,
) -> anyhow::Result<()> {
    let pool = engine.db.pool();
    let by = runs::requester(pool, run.id).await?;
    crate::export::webhooks::remove(engine, destination).await;
    engine.fresh.forget(destination.id);
    let mut tx = crate::db::begin_write(pool).await?;
    destinations::retire(&mut tx, destination.id).await?;
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
            details,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The call that takes one tag off some members (none if the audience lacks the tag: nobody
/// has it to lose).
fn untag(tag_ids: &HashMap<String, u64>, tag: &str, emails: Vec<String>) -> Option<Call> {
    let tag_id = *tag_ids.get(tag)?;
    Some(Call::Untag { tag_id, emails })
}
