//! Export runs: queued, claimed under a lease, counted as they go, finished.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::now_millis;
use crate::store::Record;

/// A run's status, as the vendor console names them (the API shows them so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = RunStatusOut)]
pub enum RunStatus {
    Queued,
    Processing,
    Successful,
    Skipped,
    Failure,
    Canceled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Processing => "processing",
            RunStatus::Successful => "successful",
            RunStatus::Skipped => "skipped",
            RunStatus::Failure => "failure",
            RunStatus::Canceled => "canceled",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Processing => "Processing",
            RunStatus::Successful => "Successful",
            RunStatus::Skipped => "Skipped",
            RunStatus::Failure => "Failure",
            RunStatus::Canceled => "Canceled",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "queued" => RunStatus::Queued,
            "processing" => RunStatus::Processing,
            "successful" => RunStatus::Successful,
            "skipped" => RunStatus::Skipped,
            "canceled" => RunStatus::Canceled,
            _ => RunStatus::Failure,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Processing)
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Export,
    /// Removal clean-up: take this destination's tags off its members.
    RemoveTags,
    /// Removal clean-up: archive the members this destination added.
    ArchiveMembers,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Export => "export",
            RunKind::RemoveTags => "remove_tags",
            RunKind::ArchiveMembers => "archive_members",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "remove_tags" => RunKind::RemoveTags,
            "archive_members" => RunKind::ArchiveMembers,
            _ => RunKind::Export,
        }
    }
}

/// Counts a run adds up as it goes (the run page and the API show them as they are, but
/// the calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Counts)]
pub struct Counters {
    pub total: i64,
    pub sent: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
    pub tag_changes: i64,
    /// Mailchimp calls made (the command line says them).
    #[serde(skip)]
    pub calls: i64,
}

impl Counters {
    /// The counts as a run's row (or a sum of runs) holds them, under their own names.
    fn read(row: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            total: row.try_get("total")?,
            sent: row.try_get("sent")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            unchanged: row.try_get("unchanged")?,
            skipped: row.try_get("skipped")?,
            failed: row.try_get("failed")?,
            tag_changes: row.try_get("tag_changes")?,
            calls: row.try_get("calls")?,
        })
    }

    /// Each outcome a member can have with its count, by the outcome's name.
    pub fn by_outcome(&self) -> [(&'static str, i64); 6] {
        [
            ("sent", self.sent),
            ("created", self.created),
            ("updated", self.updated),
            ("unchanged", self.unchanged),
            ("skipped", self.skipped),
            ("failed", self.failed),
        ]
    }
}

/// "10 members; 8 sent (5 created, 3 updated), 2 unchanged, 0 skipped, 0 failed; 4 tag
/// changes in 3 calls", as the command line reports a run.
impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} members; {} sent ({} created, {} updated), {} unchanged, {} skipped, {} failed; \
             {} tag changes in {} calls",
            self.total,
            self.sent,
            self.created,
            self.updated,
            self.unchanged,
            self.skipped,
            self.failed,
            self.tag_changes,
            self.calls
        )
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub destination_id: i64,
    pub kind: RunKind,
    pub status: RunStatus,
    pub full_resync: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
    pub counters: Counters,
    pub message: Option<String>,
    /// Set when the run read only the profiles changed since this time (the rest were as
    /// the last complete export left them).
    pub changes_since: Option<i64>,
    /// The run found its audience changed behind the console: how many of the ledger's
    /// members were missing from it.
    pub repair_missing: Option<i64>,
    /// Queued by the console to keep the destination in sync (not by a person or the
    /// schedule): the history groups these runs by the hour.
    pub kept_in_sync: bool,
}

impl Run {
    /// What the run was, as pages name it.
    pub fn kind_label(&self) -> &'static str {
        match (self.kind, self.full_resync) {
            (RunKind::Export, false) => "Export",
            (RunKind::Export, true) => "Full resync",
            (RunKind::RemoveTags, _) => "Removal clean-up (tags taken off)",
            (RunKind::ArchiveMembers, _) => "Removal clean-up (members archived)",
        }
    }
}

const COLUMNS: &str = "id, destination_id, kind, status, full_resync, created_at, started_at, finished_at, cancel_requested, \
    total, sent, created, updated, unchanged, skipped, failed, tag_changes, calls, message, changes_since, repair_missing, \
    kept_in_sync";

impl Record for Run {
    const TABLE: &'static str = "export_runs";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let status: String = row.try_get("status")?;
        let kind: String = row.try_get("kind")?;
        Ok(Run {
            id: row.try_get("id")?,
            destination_id: row.try_get("destination_id")?,
            kind: RunKind::parse(&kind),
            status: RunStatus::parse(&status),
            full_resync: row.try_get::<i64, _>("full_resync")? != 0,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            counters: Counters::read(&row)?,
            message: row.try_get("message")?,
            changes_since: row.try_get("changes_since")?,
            repair_missing: row.try_get("repair_missing")?,
            kept_in_sync: row.try_get::<i64, _>("kept_in_sync")? != 0,
        })
    }
}

/// Queues a run, unless the destination already has one queued or in progress: then a
/// Skipped run records the attempt. Returns the new run's id and status.
pub async fn enqueue(
    conn: &mut AnyConnection,
    destination_id: i64,
    full: bool,
    by: Option<i64>,
) -> sqlx::Result<(i64, RunStatus)> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let busy = lock_busy(&mut tx, destination_id).await?;
    let now = now_millis();
    let (status, message, finished) = if busy {
        (
            RunStatus::Skipped,
            Some("Another export of this destination was still queued or running."),
            Some(now),
        )
    } else {
        (RunStatus::Queued, None, None)
    };
    let id = sqlx::query_scalar(
        "INSERT INTO export_runs (destination_id, status, full_resync, requested_by, created_at, finished_at, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(destination_id)
    .bind(status.as_str())
    .bind(i64::from(full))
    .bind(by)
    .bind(now)
    .bind(finished)
    .bind(message)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((id, status))
}

/// Locks the destination's row (a write on either database), so that two requests at once
/// cannot both find nothing running and both queue a run; true when one is queued or running.
async fn lock_busy(conn: &mut AnyConnection, destination_id: i64) -> sqlx::Result<bool> {
    sqlx::query("UPDATE destinations SET updated_at = updated_at WHERE id = $1")
        .bind(destination_id)
        .execute(&mut *conn)
        .await?;
    let busy: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM export_runs WHERE destination_id = $1 AND status IN ('queued', 'processing')",
    )
    .bind(destination_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(busy > 0)
}

/// Queues a run to keep the destination in sync, unless one is queued or in progress (on
/// any console sharing the database): then nothing is recorded.
pub async fn enqueue_kept_in_sync(
    conn: &mut AnyConnection,
    destination_id: i64,
) -> sqlx::Result<Option<i64>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    if lock_busy(&mut tx, destination_id).await? {
        tx.commit().await?;
        return Ok(None);
    }
    let id = sqlx::query_scalar(
        "INSERT INTO export_runs (destination_id, status, full_resync, created_at, kept_in_sync) \
         VALUES ($1, 'queued', 0, $2, 1) RETURNING id",
    )
    .bind(destination_id)
    .bind(now_millis())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Queues a removal clean-up (it runs whatever else is queued for the destination).
pub async fn enqueue_cleanup(
    conn: &mut AnyConnection,
    destination_id: i64,
    kind: RunKind,
    by: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO export_runs (destination_id, kind, status, requested_by, created_at) \
         VALUES ($1, $2, 'queued', $3, $4) RETURNING id",
    )
    .bind(destination_id)
    .bind(kind.as_str())
    .bind(by)
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await
}

/// Asks every queued or running run of a destination to stop.
pub async fn cancel_all<'e, E>(db: E, destination_id: i64) -> sqlx::Result<()>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM export_runs WHERE destination_id = $1 AND status IN ('queued', 'processing')")
            .bind(destination_id)
            .fetch_all(db)
            .await?;
    for id in ids {
        request_cancel(db, id).await?;
    }
    Ok(())
}

pub async fn find<'e>(db: impl Executor<'e, Database = Any>, id: i64) -> sqlx::Result<Option<Run>> {
    Run::find(db, id).await
}

/// The latest runs of every destination.
pub async fn recent<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<Run>> {
    super::select(db, "ORDER BY id DESC LIMIT $1", &[limit.into()]).await
}

pub async fn for_destination<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<Run>> {
    super::select(
        db,
        "WHERE destination_id = $1 ORDER BY id DESC LIMIT $2",
        &[destination_id.into(), limit.into()],
    )
    .await
}

/// Which of a destination's runs a page lists.
#[derive(Debug, Clone, Copy)]
pub enum Listed {
    /// The latest this many that a person, the schedule or the command line asked for.
    Requested(i64),
    /// Those that kept the destination in sync, queued at or after this time.
    KeptInSyncSince(i64),
}

/// The destination's runs that `listed` names, newest first.
pub async fn listed<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
    listed: Listed,
) -> sqlx::Result<Vec<Run>> {
    let (clause, value) = match listed {
        Listed::Requested(limit) => ("kept_in_sync = 0 ORDER BY id DESC LIMIT $2", limit),
        Listed::KeptInSyncSince(since) => (
            "kept_in_sync = 1 AND created_at >= $2 ORDER BY id DESC",
            since,
        ),
    };
    let clause = format!("WHERE destination_id = $1 AND {clause}");
    super::select(db, &clause, &[destination_id.into(), value.into()]).await
}

/// Claims the oldest queued run, or one whose holder's lease ran out (a crashed worker).
pub async fn claim_next<'e>(
    db: impl Executor<'e, Database = Any>,
    owner: &str,
    lease_ms: i64,
) -> sqlx::Result<Option<Run>> {
    // The outer condition repeats the inner one: of two workers racing for a run, the
    // second re-checks it after the first's update and claims nothing.
    let claimable = "(status = 'queued' OR (status = 'processing' AND lease_expires_at < $3))";
    let which = format!(
        "id = (SELECT id FROM export_runs WHERE {claimable} ORDER BY id LIMIT 1) AND {claimable}"
    );
    claim_where(db, &which, owner, lease_ms, None).await
}

/// Claims one queued run by id (the command line runs the run it queued).
pub async fn claim<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    owner: &str,
    lease_ms: i64,
) -> sqlx::Result<Option<Run>> {
    let which = "id = $4 AND status = 'queued'";
    claim_where(db, which, owner, lease_ms, Some(id)).await
}

/// Marks the run that `which` picks as processing by `owner` until the lease ends.
async fn claim_where<'e>(
    db: impl Executor<'e, Database = Any>,
    which: &str,
    owner: &str,
    lease_ms: i64,
    id: Option<i64>,
) -> sqlx::Result<Option<Run>> {
    let now = now_millis();
    let sql = format!(
        "UPDATE export_runs SET status = 'processing', lease_owner = $1, lease_expires_at = $2, \
         started_at = COALESCE(started_at, $3) WHERE {which} RETURNING {COLUMNS}"
    );
    let mut args = vec![owner.into(), (now + lease_ms).into(), now.into()];
    args.extend(id.map(super::Arg::from));
    super::record(db, &sql, &args).await
}

/// Gives up a worker's leases at once (at shutdown), so the next worker resumes its runs
/// without waiting for them to expire.
pub async fn release<'e>(db: impl Executor<'e, Database = Any>, owner: &str) -> sqlx::Result<()> {
    super::execute(db, "UPDATE export_runs SET lease_expires_at = 0 WHERE lease_owner = $1 AND status = 'processing'", &[owner.into()]).await
}

/// Extends the lease; false when the run is no longer this worker's.
pub async fn heartbeat<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    owner: &str,
    lease_ms: i64,
) -> sqlx::Result<bool> {
    super::changed_any(db, "UPDATE export_runs SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'processing'", &[(now_millis() + lease_ms).into(), id.into(), owner.into()]).await
}

pub async fn add<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    delta: &Counters,
) -> sqlx::Result<()> {
    super::execute(db, "UPDATE export_runs SET total = total + $1, sent = sent + $2, created = created + $3, updated = updated + $4, \
         unchanged = unchanged + $5, skipped = skipped + $6, failed = failed + $7, tag_changes = tag_changes + $8, \
         calls = calls + $9 WHERE id = $10", &[delta.total.into(), delta.sent.into(), delta.created.into(), delta.updated.into(), delta.unchanged.into(), delta.skipped.into(), delta.failed.into(), delta.tag_changes.into(), delta.calls.into(), id.into()]).await
}

/// A fact about a run noted while it runs, beside its counts.
#[derive(Debug, Clone, Copy)]
pub enum Note {
    /// The run reads only the profiles changed since this time.
    ChangesSince(i64),
    /// The run repaired the ledger: this many of its members were gone.
    RepairMissing(i64),
}

/// Notes `note` on run `id`.
pub async fn note<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    note: Note,
) -> sqlx::Result<()> {
    let (column, value) = match note {
        Note::ChangesSince(since) => ("changes_since", since),
        Note::RepairMissing(missing) => ("repair_missing", missing),
    };
    let sql = format!("UPDATE export_runs SET {column} = $1 WHERE id = $2");
    super::execute(db, &sql, &[value.into(), id.into()]).await
}

/// Whether the destination has an export queued or running, when its latest export (not
/// a skipped one) was queued, and when its latest failed or canceled export ended.
pub async fn sync_state<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<(bool, Option<i64>, Option<i64>)> {
    let (in_flight, latest, failed): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN status IN ('queued', 'processing') THEN 1 END), \
         MAX(CASE WHEN status <> 'skipped' THEN created_at END), \
         MAX(CASE WHEN status IN ('failure', 'canceled') THEN finished_at END) \
         FROM export_runs WHERE destination_id = $1 AND kind = 'export'",
    )
    .bind(destination_id)
    .fetch_one(db)
    .await?;
    Ok((in_flight > 0, latest, failed))
}

/// Starts the counts afresh (a resumed run recounts from its plan).
pub async fn reset_counters<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<()> {
    super::execute(db, "UPDATE export_runs SET total = 0, sent = 0, created = 0, updated = 0, unchanged = 0, skipped = 0, failed = 0, \
         tag_changes = 0, calls = 0, changes_since = NULL WHERE id = $1", &[id.into()]).await
}

pub async fn finish<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    status: RunStatus,
    message: Option<&str>,
) -> sqlx::Result<()> {
    super::execute(db, "UPDATE export_runs SET status = $1, message = $2, finished_at = $3, lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $4", &[status.as_str().into(), message.into(), now_millis().into(), id.into()]).await
}

/// Asks a run to stop; a queued run stops at once.
pub async fn request_cancel<'e, E>(db: E, id: i64) -> sqlx::Result<()>
where
    E: Executor<'e, Database = Any> + Copy,
{
    sqlx::query("UPDATE export_runs SET cancel_requested = 1 WHERE id = $1 AND status IN ('queued', 'processing')")
        .bind(id)
        .execute(db)
        .await?;
    super::execute(db, "UPDATE export_runs SET status = 'canceled', finished_at = $1, message = 'Canceled before it started.' \
         WHERE id = $2 AND status = 'queued'", &[now_millis().into(), id.into()]).await
}

pub async fn cancel_requested<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<bool> {
    let flag: i64 = sqlx::query_scalar("SELECT cancel_requested FROM export_runs WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(flag != 0)
}

/// The latest finished run of each destination (a Skipped request does not count):
/// (destination id, status, finished at).
pub async fn latest_finished<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Run>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM export_runs r \
         WHERE r.id = (SELECT MAX(id) FROM export_runs x WHERE x.destination_id = r.destination_id \
           AND x.finished_at IS NOT NULL AND x.status <> 'skipped')"
    );
    super::records(db, &sql, &[]).await
}

/// The latest removal clean-up of a destination, if one was ever queued.
pub async fn latest_cleanup<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Option<Run>> {
    super::select_one(
        db,
        "WHERE destination_id = $1 AND kind <> 'export' ORDER BY id DESC LIMIT 1",
        &[destination_id.into()],
    )
    .await
}

/// Who asked for a run: (user id, email).
pub async fn requester<'e>(
    db: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as(
        "SELECT u.id, u.email FROM export_runs r JOIN users u ON u.id = r.requested_by WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(db)
    .await
}

/// Whether the destination has had an export that started (its first export is still to
/// come when not).
pub async fn has_exported<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM export_runs WHERE destination_id = $1 AND kind = 'export' \
         AND status <> 'skipped'",
    )
    .bind(destination_id)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
}

/// How many runs have each status.
pub async fn count_by_status<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT status, COUNT(*) AS n FROM export_runs GROUP BY status")
        .fetch_all(db)
        .await
}

/// How many runs wait for a worker.
pub async fn count_queued<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM export_runs WHERE status = 'queued'")
        .fetch_one(db)
        .await
}

/// Every export run's counts so far, summed.
pub async fn member_totals<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Counters> {
    // PostgreSQL sums BIGINTs as NUMERIC: cast back.
    let sums: Vec<String> = [
        "total",
        "sent",
        "created",
        "updated",
        "unchanged",
        "skipped",
        "failed",
        "tag_changes",
        "calls",
    ]
    .iter()
    .map(|c| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}"))
    .collect();
    let sql = format!(
        "SELECT {} FROM export_runs WHERE kind = 'export'",
        sums.join(", ")
    );
    let row = sqlx::query(&sql).fetch_one(db).await?;
    Counters::read(&row)
}
