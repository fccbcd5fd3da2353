//! A run from start to end: the small reads before anything is sent (drift check, merge
//! fields, tags), choosing between the whole plan and only what changed, handing the
//! members to the pipeline, and the outcome, with the mark that lets the next run read
//! only changes.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc::Receiver;

use crate::background::AbortOnDrop;
use crate::domain::MemberStatus;
use crate::domain::destination::NewMemberStatus;
use crate::export::changes::{self, Basis};
use crate::export::decide::Decider;
use crate::export::engine::{Engine, Outcome, failure, fatal_message};
use crate::export::ledger_index::Index;
use crate::export::pipeline::{self, Finished, Halt, Setup, read_ahead};
use crate::export::plan::{Chunk, Hash, PlanError, PlanReader};
use crate::mailchimp::client::MergeField;
use crate::mailchimp::gateway::Gateway;
use crate::mailchimp::merge_rules::MergeRules;
use crate::store::destinations::Destination;
use crate::store::marks::Mark;
use crate::store::runs::{self, Counters, Run, RunStatus};

/// Runs an export: the small reads, the plan opened against the ledger, the pipeline, and
/// the outcome. Each step is a function below, in that order.
#[tracing::instrument(name = "export", skip_all, fields(run_id = run.id, destination_id = run.destination_id, full = run.full_resync))]
pub(crate) async fn export(
    engine: &Engine,
    run: &Run,
    stop: &AtomicBool,
) -> anyhow::Result<Outcome> {
    let pool = engine.db.pool();
    let Some(destination) = crate::store::destinations::find(pool, run.destination_id).await?
    else {
        return Ok(failure("The destination was removed."));
    };
    if !destination.is_active() {
        return Ok(failure("The destination's set-up is not finished."));
    }
    // The mark of the last complete export goes now: it comes back only if this run
    // ends complete.
    let mark = crate::store::marks::find(pool, destination.id).await?;
    crate::store::marks::clear(pool, destination.id).await?;
    let gateway = match engine.gateway(&destination) {
        Ok(gateway) => gateway,
        Err(err) => {
            return Ok(failure(format!(
                "The destination's credential cannot be used: {err}. Authenticate again."
            )));
        }
    };
    // Customers forgotten while Mailchimp could not take their deletion go first.
    let left = crate::export::forget::erase_pending(engine, &destination).await?;
    if left > 0 {
        tracing::warn!(left, "deletions for good are still pending");
    }
    let reads = match first_reads(engine, &gateway, &destination, run).await? {
        Ok(reads) => reads,
        Err(failed) => return Ok(failed),
    };
    // A repaired ledger is read whole: members to send again need not have changed.
    let mark = mark.filter(|_| !run.full_resync && !reads.repaired);
    let plan = match open_plan(
        engine,
        run,
        &destination,
        &gateway,
        &reads.merge_fields,
        mark,
    )
    .await?
    {
        Ok(plan) => plan,
        Err(failed) => return Ok(failed),
    };
    let Plan {
        chunks,
        _reading,
        mut index,
        emails,
        expected,
        basis,
    } = plan;
    let partial = emails.is_some();
    let rules = MergeRules::new(&reads.merge_fields);
    let setup = Setup {
        engine,
        run,
        destination: &destination,
        gateway,
        decider: Decider::new(&mut index, run.full_resync, rules),
        index,
        new_status: new_member_status(&destination),
        tag_ids: reads.tag_ids,
        emails,
    };
    let started = std::time::Instant::now();
    let finished = pipeline::send(setup, chunks, stop).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "the run's calls are done"
    );
    if finished.planned != expected && !partial {
        // Segments were refreshed during the run: count what the plan really held.
        let delta = Counters {
            total: finished.planned - expected,
            ..Counters::default()
        };
        runs::add(pool, run.id, &delta).await?;
    }
    let ended = outcome(engine, run, &destination, finished, &basis).await;
    let clean = ended
        .as_ref()
        .is_ok_and(|o| o.status == RunStatus::Successful && o.message.is_none());
    if !clean {
        // A refusal may say the audience's fields or tags changed: the next run reads them.
        engine.fresh.forget_reads(destination.id);
    }
    ended
}

/// What the run reads of the audience before anything is sent.
struct FirstReads {
    /// The audience changed behind the console and the ledger was repaired.
    repaired: bool,
    merge_fields: Vec<MergeField>,
    /// The audience's tags by name (a removal needs the tag's ID).
    tag_ids: HashMap<String, u64>,
}

/// Small reads: did the audience change behind the console (and if so, the ledger's
/// repair); then, side by side, its merge fields, its tags by name and, with webhooks on,
/// is the audience's webhook still there. Runs kept in sync share them while they are
/// fresh (`export::fresh`, `drift::CHECK_EVERY`: the check says when they are not); a
/// person's run, the schedule's or a full resync reads them all. A read Mailchimp refuses
/// ends the run.
async fn first_reads(
    engine: &Engine,
    gateway: &Gateway,
    destination: &Destination,
    run: &Run,
) -> anyhow::Result<Result<FirstReads, Outcome>> {
    let list = &destination.audience_id;
    // A person, the schedule or a full resync sees the audience as it is now.
    let whole = run.full_resync || !run.kept_in_sync;
    let checked =
        match crate::export::drift::check(&engine.db, gateway, destination, run.id, whole).await {
            Ok(checked) => checked,
            Err(crate::export::drift::DriftError::Mailchimp(err)) => {
                return Ok(Err(failure(fatal_message(&err))));
            }
            Err(crate::export::drift::DriftError::Internal(err)) => return Err(err),
        };
    if let Some(found) = &checked.found {
        let new_status = new_member_status(destination);
        engine
            .fresh
            .counted(&engine.db, destination, new_status, found, run.id)
            .await?;
    }
    let repaired = checked.repair.is_some();
    let tags = tags_sent(engine, destination).await?;
    let kept = (!whole)
        .then(|| engine.fresh.reads(destination, &tags))
        .flatten();
    let reused = kept.is_some();
    let (merge_fields, tag_ids) = match kept {
        Some(kept) => (Ok(kept.merge_fields), Ok(kept.tag_ids)),
        None => {
            let (merge_fields, tag_ids, webhook) = tokio::join!(
                gateway.merge_fields(list),
                gateway.tags(list),
                crate::export::webhooks::ensure(engine, gateway, destination),
            );
            if let Err(err) = webhook {
                // Opt-outs still reach the ledger through the statuses the run reads.
                tracing::warn!(error = %err, "the audience's webhook could not be checked; the next run tries again");
            }
            (merge_fields, tag_ids)
        }
    };
    let (merge_fields, tag_ids) = match (merge_fields, tag_ids) {
        (Ok(fields), Ok(tags)) => (fields, tags),
        (Err(err), _) | (_, Err(err)) => return Ok(Err(failure(fatal_message(&err)))),
    };
    if !reused {
        engine
            .fresh
            .keep_reads(destination, merge_fields.clone(), tag_ids.clone());
    }
    Ok(Ok(FirstReads {
        repaired,
        merge_fields,
        tag_ids,
    }))
}

/// The tags the destination's members can carry: the ownership tag and its segments' names.
async fn tags_sent(engine: &Engine, destination: &Destination) -> anyhow::Result<Vec<String>> {
    let pool = engine.db.pool();
    let mut tags = vec![crate::export::OWNERSHIP_TAG.to_owned()];
    for id in crate::store::destinations::segment_ids(pool, destination.id).await? {
        if let Some(segment) = crate::store::segments::find(pool, id).await? {
            tags.push(segment.name);
        }
    }
    Ok(tags)
}

/// The plan, open and ready to be sent, with the ledger's index.
struct Plan {
    chunks: Receiver<anyhow::Result<Option<Chunk>>>,
    /// Reads the plan ahead while it is sent (the whole plan only).
    _reading: Option<AbortOnDrop>,
    index: Index,
    /// Addresses of the ledger entries loaded, when only changed profiles are read.
    emails: Option<HashMap<Hash, String>>,
    /// Profiles the plan held when it was opened.
    expected: i64,
    /// What this run exports from: its mark, if it ends complete.
    basis: Basis,
}

/// Opens the plan: only the profiles changed since the last complete export when `mark`
/// allows it, otherwise the whole plan, read ahead while the ledger's index loads. The
/// run's counts start here.
async fn open_plan(
    engine: &Engine,
    run: &Run,
    destination: &Destination,
    gateway: &Gateway,
    merge_fields: &[MergeField],
    mark: Option<Mark>,
) -> anyhow::Result<Result<Plan, Outcome>> {
    let pool = engine.db.pool();
    let facts = crate::export::plan::FieldFacts::of(merge_fields);
    let started = std::time::Instant::now();
    let segment_ids = crate::store::destinations::segment_ids(pool, destination.id).await?;
    // What this run exports from, noted before any of the plan is read.
    let basis = changes::basis(&engine.db, destination, &facts.numbers, &segment_ids).await?;
    let basis_ms = started.elapsed().as_millis() as u64;
    let mut reader = match PlanReader::open(&engine.db, destination, &facts).await {
        Ok(reader) => reader,
        Err(PlanError::TooMany(n)) => {
            return Ok(Err(failure(PlanError::TooMany(n).to_string())));
        }
        Err(PlanError::Other(err)) => return Err(err),
    };
    tracing::debug!(
        basis_ms,
        opened_ms = started.elapsed().as_millis() as u64,
        "the plan is open"
    );
    let changed = changes::changes(&engine.db, destination.id, mark, &basis, &mut reader).await?;

    runs::reset_counters(pool, run.id).await?;
    let expected = reader.total;
    let mut counters = Counters {
        total: reader.total,
        calls: gateway.take_calls(),
        ..Counters::default()
    };
    let plan = match changed {
        Some(changed) => {
            // The profiles not read are as the last complete export left them.
            counters.unchanged = (reader.total - changed.planned).max(0);
            runs::note(pool, run.id, runs::Note::ChangesSince(changed.since)).await?;
            let mut tx = crate::db::begin_write(pool).await?;
            crate::store::marks::forget_repeats(&mut tx, destination.id, &changed.customers)
                .await?;
            tx.commit().await?;
            tracing::debug!(
                read = changed.read,
                planned = changed.planned,
                since_run = changed.since_run,
                "only profiles changed since the last complete export are read"
            );
            let (sender, chunks) = tokio::sync::mpsc::channel(changed.chunks.len() + 1);
            for chunk in changed.chunks {
                let _ = sender.try_send(Ok(Some(chunk)));
            }
            let _ = sender.try_send(Ok(None));
            Plan {
                chunks,
                _reading: None,
                index: changed.index,
                emails: Some(changed.emails),
                expected,
                basis,
            }
        }
        None => {
            crate::store::marks::clear_repeats(pool, destination.id).await?;
            // The plan is read ahead while the ledger's index loads.
            let (chunks, reading) = read_ahead(reader);
            let started = std::time::Instant::now();
            let index = Index::load(pool, engine.db.backend(), destination.id).await?;
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "the ledger's index was loaded"
            );
            Plan {
                chunks,
                _reading: Some(reading),
                index,
                emails: None,
                expected,
                basis,
            }
        }
    };
    runs::add(pool, run.id, &counters).await?;
    Ok(Ok(plan))
}

/// The status a member Mailchimp does not have yet is sent with.
fn new_member_status(destination: &Destination) -> MemberStatus {
    destination
        .new_member_status
        .parse::<NewMemberStatus>()
        .unwrap_or(NewMemberStatus::Subscribed)
        .as_str()
        .parse::<MemberStatus>()
        .unwrap_or(MemberStatus::Subscribed)
}

/// How the run ended. A complete run with nothing failed leaves the mark that lets the next
/// one read only what changed.
async fn outcome(
    engine: &Engine,
    run: &Run,
    destination: &Destination,
    finished: Finished,
    basis: &Basis,
) -> anyhow::Result<Outcome> {
    let pool = engine.db.pool();
    match finished.halt {
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
            if run_now.failed == 0 && !finished.tag_failures {
                let mut tx = crate::db::begin_write(pool).await?;
                crate::store::marks::put(&mut tx, destination.id, &basis.mark(run.id)).await?;
                tx.commit().await?;
            }
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
