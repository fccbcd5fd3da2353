//! One pull of a source: claimed in the database (one at a time per source, whichever
//! console asks), read, typed and written as an import is (one transaction: a pull that
//! fails part way writes nothing), with its counts published as it goes and its report
//! kept with the imports'.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{SourceError, SourceKind, SourceSpec, Sources, spec::Missing};
use crate::background::AbortOnDrop;
use crate::profiles::writer::{self, SourceLink, Target, Totals};
use crate::store::Record;
use crate::store::sources::{self as store, AfterPull, PullCounts, PullRow, SourceRow};

/// A running pull whose console has not beaten for this long is taken as stopped.
pub const STALE_MS: i64 = 2 * 60 * 1000;
/// How often a running pull publishes its counts.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Who asked for a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// **Pull now** on the source's page.
    Manual,
    Api,
    /// The scheduled refresh.
    Schedule,
    /// The source's own interval.
    Every,
    /// The command line.
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
            Trigger::Every => "every",
            Trigger::Cli => "cli",
        }
    }
}

/// What to pull.
#[derive(Debug, Clone, Copy)]
pub struct PullRequest {
    pub source_id: i64,
    /// A full pull even when an incremental one is due.
    pub full: bool,
    pub trigger: Trigger,
    pub by: Option<i64>,
}

/// A claimed pull, ready to run.
pub struct Claimed {
    pub pull_id: i64,
    row: SourceRow,
    spec: SourceSpec,
    full: bool,
    by: Option<i64>,
}

/// Why no pull was started.
#[derive(Debug)]
pub enum NotStarted {
    NoSuchSource,
    /// A pull of the source is under way (its ID).
    Running(i64),
}

/// Claims a pull of the source: full, or incremental when the source has a changed-at
/// column, a watermark, and fewer incremental pulls since the last full one than it allows.
pub async fn claim(
    sources: &Sources,
    request: PullRequest,
) -> anyhow::Result<Result<Claimed, NotStarted>> {
    let pool = sources.db.pool();
    let Some(row) = SourceRow::find(pool, request.source_id).await? else {
        return Ok(Err(NotStarted::NoSuchSource));
    };
    if let Some(running) = sources.live.running(row.id) {
        return Ok(Err(NotStarted::Running(running)));
    }
    let spec = SourceSpec::from_row(&row, &sources.key)?;
    let full = request.full
        || spec.kind == SourceKind::CsvUrl
        || spec.changed_at_column.is_none()
        || row.watermark.is_none()
        || row.incrementals >= spec.full_every;
    let mode = if full { "full" } else { "incremental" };
    match store::start_pull(
        pool,
        row.id,
        mode,
        request.trigger.as_str(),
        request.by,
        STALE_MS,
    )
    .await?
    {
        Ok(pull_id) => Ok(Ok(Claimed {
            pull_id,
            row,
            spec,
            full,
            by: request.by,
        })),
        Err(running) => Ok(Err(NotStarted::Running(running))),
    }
}

/// Claims and runs a pull in the background; returns its ID (or why none started).
pub async fn start(
    sources: &Sources,
    request: PullRequest,
) -> anyhow::Result<Result<i64, NotStarted>> {
    let claimed = match claim(sources, request).await? {
        Ok(claimed) => claimed,
        Err(not) => return Ok(Err(not)),
    };
    let id = claimed.pull_id;
    let sources = sources.clone();
    let refresh = matches!(
        request.trigger,
        Trigger::Manual | Trigger::Api | Trigger::Every
    );
    tokio::spawn(async move {
        match execute(&sources, claimed).await {
            Ok(pull) if refresh && changed_anything(&pull) => {
                if let Err(err) = crate::segments::refresh(&sources.db, None).await {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "refreshing segments after a pull"
                    );
                }
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = format!("{err:#}"), pull_id = id, "a pull failed"),
        }
    });
    Ok(Ok(id))
}

/// Claims and runs a pull to its end (the schedule, the command line).
pub async fn run(
    sources: &Sources,
    request: PullRequest,
) -> anyhow::Result<Result<PullRow, NotStarted>> {
    match claim(sources, request).await? {
        Ok(claimed) => Ok(Ok(execute(sources, claimed).await?)),
        Err(not) => Ok(Err(not)),
    }
}

/// Whether a pull wrote or deleted any profile.
pub fn changed_anything(pull: &PullRow) -> bool {
    pull.status == "succeeded" && pull.created + pull.updated + pull.deleted > 0
}

fn counts_of(totals: &Totals) -> PullCounts {
    totals.counts
}

/// Runs a claimed pull to its end and records how it ended.
#[tracing::instrument(name = "pull", skip_all, fields(pull_id = claimed.pull_id, source_id = claimed.row.id))]
pub async fn execute(sources: &Sources, claimed: Claimed) -> anyhow::Result<PullRow> {
    let pool = sources.db.pool();
    let id = claimed.pull_id;
    sources.live.set(id, claimed.row.id, PullCounts::default());
    let outcome = read_and_write(sources, &claimed).await;
    let (status, counts, error, import_id) = match outcome {
        Ok(Ended::Written {
            totals,
            import_id,
            after,
        }) => {
            if totals.error.is_none() {
                store::set_after_pull(pool, claimed.row.id, &after.as_ref()).await?;
            }
            let status = if totals.error.is_some() {
                "failed"
            } else {
                "succeeded"
            };
            (status, counts_of(&totals), totals.error, Some(import_id))
        }
        Ok(Ended::NotModified) => ("unchanged", PullCounts::default(), None, None),
        Err(err) => ("failed", PullCounts::default(), Some(err.0), None),
    };
    // The pull's end and its failure alerts are written together, as a run's are.
    let mut tx = crate::db::begin_write(pool).await?;
    store::finish_pull(&mut *tx, id, status, &counts, error.as_deref(), import_id).await?;
    if status == "failed" {
        crate::alerts::queue_for_pull(&mut tx, id).await?;
    }
    tx.commit().await?;
    sources.live.remove(id);
    let pull = store::find_pull(pool, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("pull {id} vanished"))?;
    tracing::info!(
        status = pull.status,
        rows = pull.rows_read,
        created = pull.created,
        updated = pull.updated,
        unchanged = pull.unchanged,
        rejected = pull.rejected,
        deleted = pull.deleted,
        "pull ended"
    );
    Ok(pull)
}

enum Ended {
    Written {
        totals: Box<Totals>,
        import_id: i64,
        after: After,
    },
    /// A CSV file the server says has not changed.
    NotModified,
}

/// What the next pull starts from.
struct After {
    watermark: Option<String>,
    incrementals: i64,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl After {
    fn as_ref(&self) -> AfterPull<'_> {
        AfterPull {
            watermark: self.watermark.as_deref(),
            incrementals: self.incrementals,
            etag: self.etag.as_deref(),
            last_modified: self.last_modified.as_deref(),
        }
    }
}

async fn read_and_write(sources: &Sources, claimed: &Claimed) -> Result<Ended, SourceError> {
    let (row, spec) = (&claimed.row, &claimed.spec);
    let since = (!claimed.full)
        .then_some(row.watermark.as_deref())
        .flatten();
    let validators = (spec.kind == SourceKind::CsvUrl).then_some((&row.etag, &row.last_modified));
    let Some(opened) = super::open(sources, spec, since, validators, None).await? else {
        return Ok(Ended::NotModified);
    };
    let db = &sources.db;
    let internal =
        |e: anyhow::Error| SourceError::new(format!("The console could not write the pull: {e:#}"));
    let (receiver, parser) =
        crate::profiles::import::start(db, opened.records, spec.import_options(None))
            .await
            .map_err(internal)?;
    let counts = Arc::new(Mutex::new(PullCounts::default()));
    // PostgreSQL takes the counts and the heartbeat while the pull writes (other consoles
    // read them there); SQLite's one write lock is the pull's until it ends, so there they
    // stay in this process (`Sources::live`).
    let publisher = (db.backend() == crate::db::Backend::Postgres).then(|| {
        let (db, counts, id) = (db.clone(), counts.clone(), claimed.pull_id);
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(PUBLISH_EVERY).await;
                let now = *counts.lock().expect("counts");
                if let Err(err) = store::progress(db.pool(), id, &now).await {
                    tracing::warn!(error = %err, "publishing a pull's progress");
                }
            }
        }))
    });
    let (live, pull_id, source_id) = (sources.live.clone(), claimed.pull_id, row.id);
    let file_name = format!("{} (pull {})", spec.name, claimed.pull_id);
    let target = Target {
        file_name: &file_name,
        imported_by: claimed.by,
        source: Some(SourceLink {
            source_id: row.id,
            delete_missing: claimed.full && spec.missing == Missing::Delete,
            fields: row.fields.clone(),
        }),
    };
    let written = writer::write_counting(db, receiver, target, &|totals, _| {
        *counts.lock().expect("counts") = counts_of(totals);
        live.set(pull_id, source_id, counts_of(totals));
    })
    .await;
    drop(publisher);
    let _ = parser.await;
    let (import_id, totals) = written.map_err(internal)?;
    let watermark = match opened.watermark {
        Some(highest) => highest.await.ok().flatten(),
        None => None,
    };
    Ok(Ended::Written {
        totals: Box::new(totals),
        import_id,
        after: After {
            watermark,
            incrementals: if claimed.full {
                0
            } else {
                row.incrementals + 1
            },
            etag: opened.etag,
            last_modified: opened.last_modified,
        },
    })
}
