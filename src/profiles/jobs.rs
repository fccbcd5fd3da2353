//! Imports in the background: the upload is kept in a temporary file, the job row says how
//! far the import got (a heartbeat every half second), and, when the person asked for it,
//! every segment is refreshed once the import is recorded.

use crate::background::AbortOnDrop;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::Instrument;

use crate::db::Db;
use crate::profiles::{ImportOptions, import_file};
use crate::store::import_jobs::{self, Phase};

/// A job's heartbeat: how often it notes its progress.
pub const BEAT: Duration = Duration::from_millis(500);

/// A job that has not beaten for this long belongs to a console that stopped.
pub const STALE_MS: i64 = 60_000;

/// What to import, and what to do after.
pub struct Upload {
    pub file: tempfile::NamedTempFile,
    pub file_name: String,
    pub options: ImportOptions,
    pub imported_by: Option<i64>,
    pub refresh_segments: bool,
}

/// Starts the import in the background and returns its job's id at once.
pub async fn start(db: &Db, upload: Upload) -> anyhow::Result<i64> {
    let bytes_total = upload.file.as_file().metadata()?.len() as i64;
    let id = import_jobs::create(
        db.pool(),
        &upload.file_name,
        bytes_total,
        upload.refresh_segments,
        upload.imported_by,
    )
    .await?;
    let db = db.clone();
    let span = tracing::info_span!("import job", job_id = id);
    tokio::spawn(
        async move {
            if let Err(err) = run(&db, id, upload).await {
                tracing::error!(error = %err, "the import job stopped");
                let message =
                    format!("The import stopped: {err}. Nothing of the file was imported.");
                let _ =
                    import_jobs::set_phase(db.pool(), id, Phase::Interrupted, None, Some(&message))
                        .await;
            }
        }
        .instrument(span),
    );
    Ok(id)
}

async fn run(db: &Db, id: i64, upload: Upload) -> anyhow::Result<()> {
    let rows = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let beating = {
        let (db, rows, bytes) = (db.clone(), rows.clone(), bytes.clone());
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(BEAT);
            loop {
                beat.tick().await;
                let (r, b) = (rows.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
                if let Err(err) = import_jobs::progress(db.pool(), id, r as i64, b as i64).await {
                    tracing::warn!(error = %err, "the import's progress was not noted");
                }
            }
        })
    };
    let _stop_beating = AbortOnDrop(beating);
    let noted = |r: u64, b: u64| {
        rows.store(r, Ordering::Relaxed);
        bytes.store(b, Ordering::Relaxed);
    };
    let outcome = import_file(
        db,
        upload.file.path(),
        &upload.file_name,
        upload.options,
        upload.imported_by,
        &noted,
    )
    .await?;
    tracing::info!(
        import_id = outcome.id,
        created = outcome.totals.counts.created,
        updated = outcome.totals.counts.updated,
        rejected = outcome.totals.counts.rejected,
        "profiles imported"
    );
    if !upload.refresh_segments || outcome.totals.error.is_some() {
        import_jobs::set_phase(db.pool(), id, Phase::Done, Some(outcome.id), None).await?;
        return Ok(());
    }
    import_jobs::set_phase(db.pool(), id, Phase::Refreshing, Some(outcome.id), None).await?;
    let message = match crate::segments::refresh(db, None).await {
        Ok(report) => report.summary(),
        Err(err) => format!("The segments could not be refreshed: {err}. Refresh them again."),
    };
    import_jobs::set_phase(db.pool(), id, Phase::Done, None, Some(&message)).await?;
    Ok(())
}
