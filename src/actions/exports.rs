//! Queue an export, or every destination's; cancel a run.
//!
//! A destination exports one run at a time: a request while one is queued or running is
//! recorded as a Skipped run. A person's first export of a destination whose last preview
//! found members Mailchimp would refuse is not queued until the person confirms it, on the
//! page and through the API alike; the schedule and the command line act on the
//! administrator's standing instruction and do not ask.

use crate::db::Db;
use crate::export::preview::{self, Preview};
use crate::store::destinations::{self, Destination};
use crate::store::previews::{self as kept, State as PreviewState};
use crate::store::runs::{self, Run, RunKind, RunStatus};

/// Who asks for an export, and how.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest {
    /// Every member's data is sent again.
    pub full: bool,
    /// The person has seen the preview's problems and exports anyway (the schedule and the
    /// command line always have).
    pub confirmed: bool,
    /// The person asking; `None` for the schedule and the command line.
    pub by: Option<i64>,
}

/// A request that was recorded as a run.
#[derive(Debug)]
pub struct Queued {
    pub destination: Destination,
    pub run_id: i64,
    /// Queued, or Skipped because the destination was already exporting.
    pub status: RunStatus,
}

/// Why an export was not queued.
#[derive(Debug)]
pub enum NotQueued {
    /// No finished destination has that ID.
    NoSuchDestination,
    /// Its first export, and its last preview found members Mailchimp would refuse: the
    /// person confirms first.
    Unconfirmed(Box<Preview>),
}

/// Queues an export of one destination.
pub async fn queue(
    db: &Db,
    destination_id: i64,
    request: ExportRequest,
) -> anyhow::Result<Result<Queued, NotQueued>> {
    let destination = match may_queue(db, destination_id, request.confirmed).await? {
        Ok(destination) => destination,
        Err(not) => return Ok(Err(not)),
    };
    let mut conn = db.pool().acquire().await?;
    let (run_id, status) =
        runs::enqueue(&mut conn, destination_id, request.full, request.by).await?;
    tracing::info!(
        user_id = request.by,
        destination_id,
        run_id,
        full = request.full,
        skipped = status == RunStatus::Skipped,
        "export requested"
    );
    Ok(Ok(Queued {
        destination,
        run_id,
        status,
    }))
}

/// The destination, if it may be exported now: saved, and its first export's problems
/// confirmed (or `confirmed`).
async fn may_queue(
    db: &Db,
    destination_id: i64,
    confirmed: bool,
) -> anyhow::Result<Result<Destination, NotQueued>> {
    let Some(destination) = super::active_destination(db, destination_id).await? else {
        return Ok(Err(NotQueued::NoSuchDestination));
    };
    if !confirmed {
        if let Some(preview) = unconfirmed_problems(db, destination_id).await? {
            return Ok(Err(NotQueued::Unconfirmed(Box::new(preview))));
        }
    }
    Ok(Ok(destination))
}

/// Queues an export that keeps the destination in sync (the console's own request), unless
/// one of its exports is queued or running on any console: then nothing is recorded and
/// `None` comes back.
pub async fn queue_kept_in_sync(
    db: &Db,
    destination_id: i64,
) -> anyhow::Result<Result<Option<i64>, NotQueued>> {
    if let Err(not) = may_queue(db, destination_id, false).await? {
        return Ok(Err(not));
    }
    let mut conn = db.pool().acquire().await?;
    Ok(Ok(
        runs::enqueue_kept_in_sync(&mut conn, destination_id).await?
    ))
}

/// Queues an export and claims it for `owner` in one transaction, so that no console's
/// worker can take it in between (the command line's `export run`, which runs it in its own
/// process). `None` when the destination was already exporting.
pub async fn queue_and_claim(
    db: &Db,
    destination: &Destination,
    full: bool,
    owner: &str,
) -> anyhow::Result<Option<Run>> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let (run_id, status) = runs::enqueue(&mut tx, destination.id, full, None).await?;
    if status != RunStatus::Queued {
        tx.commit().await?;
        return Ok(None);
    }
    let run = runs::claim(&mut *tx, run_id, owner, crate::export::worker::LEASE_MS)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the run could not be claimed"))?;
    tx.commit().await?;
    tracing::info!(
        destination_id = destination.id,
        run_id,
        full,
        "export requested"
    );
    Ok(Some(run))
}

/// What Export all did: runs queued, and requests recorded as Skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueuedAll {
    pub queued: i64,
    pub skipped: i64,
}

/// Queues an ordinary export of every finished destination (Export all, and the schedule).
pub async fn queue_all(db: &Db, by: Option<i64>) -> anyhow::Result<QueuedAll> {
    let mut all = QueuedAll::default();
    let mut conn = db.pool().acquire().await?;
    for destination in destinations::list(db.pool())
        .await?
        .into_iter()
        .filter(|d| d.is_active())
    {
        match runs::enqueue(&mut conn, destination.id, false, by).await?.1 {
            RunStatus::Queued => all.queued += 1,
            _ => all.skipped += 1,
        }
    }
    Ok(all)
}

/// The problems a person must confirm before this destination's export is queued: its
/// first export, and its last preview found members Mailchimp would refuse.
pub async fn unconfirmed_problems(db: &Db, destination_id: i64) -> anyhow::Result<Option<Preview>> {
    let pool = db.pool();
    if runs::has_exported(pool, destination_id).await? {
        return Ok(None);
    }
    Ok(kept::find(pool, destination_id)
        .await?
        .filter(|s| s.state == PreviewState::Done)
        .and_then(|s| s.body.as_deref().and_then(preview::decode))
        .filter(Preview::is_blocking))
}

/// What became of a request to cancel a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    /// The run stops at its next step.
    Requested,
    /// It had already ended.
    AlreadyEnded,
    /// A removal's clean-up decides whether a destination and its credential go: only an
    /// administrator may stop it halfway.
    NotYours,
}

/// Asks a run to stop.
pub async fn cancel(
    db: &Db,
    run: &Run,
    user_id: i64,
    administrator: bool,
) -> anyhow::Result<Cancel> {
    if run.kind != RunKind::Export && !administrator {
        return Ok(Cancel::NotYours);
    }
    if run.status.is_finished() {
        return Ok(Cancel::AlreadyEnded);
    }
    runs::request_cancel(db.pool(), run.id).await?;
    tracing::info!(user_id, run_id = run.id, "export cancel requested");
    Ok(Cancel::Requested)
}
