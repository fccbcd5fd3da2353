//! The background worker: claims queued runs (or runs whose holder's lease expired) and
//! executes them, renewing its lease while it works. Two console processes on one
//! PostgreSQL never execute the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::Instrument;

use crate::export::Engine;
use crate::store::runs::{self, RunKind, RunStatus};

/// How long a claim holds without a heartbeat, by default.
pub const LEASE_MS: i64 = 60_000;

#[derive(Clone)]
pub struct Worker {
    engine: Engine,
    owner: String,
    lease_ms: i64,
}

impl Worker {
    pub fn new(engine: Engine) -> Self {
        Self::with_lease(engine, LEASE_MS)
    }

    /// A worker whose claims last `lease_ms` without a heartbeat (renewed every quarter).
    pub fn with_lease(engine: Engine, lease_ms: i64) -> Self {
        let owner = format!("worker-{}", &crate::crypto::random_token()[..12]);
        Self {
            engine,
            owner,
            lease_ms: lease_ms.max(1_000),
        }
    }

    /// Claims and executes one run; None when there was nothing to do.
    pub async fn try_execute_next(&self) -> anyhow::Result<Option<i64>> {
        let pool = self.engine.db.pool();
        let Some(run) = runs::claim_next(pool, &self.owner, self.lease_ms).await? else {
            return Ok(None);
        };
        let run_id = run.id;
        let span = tracing::info_span!(
            "export run",
            run_id = run.id,
            destination_id = run.destination_id
        );
        self.execute(run).instrument(span).await?;
        Ok(Some(run_id))
    }

    /// This worker's name, as leases record it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Executes a run this worker has claimed (the command line's `export run`).
    pub async fn execute_claimed(&self, run: runs::Run) -> anyhow::Result<()> {
        let span = tracing::info_span!(
            "export run",
            run_id = run.id,
            destination_id = run.destination_id
        );
        self.execute(run).instrument(span).await
    }

    async fn execute(&self, run: runs::Run) -> anyhow::Result<()> {
        let pool = self.engine.db.pool();
        tracing::info!("export run started");
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (pool, owner, lost, id, lease_ms) = (
                pool.clone(),
                self.owner.clone(),
                lost.clone(),
                run.id,
                self.lease_ms,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(lease_ms as u64 / 4)).await;
                    match runs::heartbeat(&pool, id, &owner, lease_ms).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(err) => tracing::warn!(error = %err, "renewing the run's lease"),
                    }
                }
            })
        };
        // An export, or a removal's clean-up; `lost` is raised when the lease is lost.
        let result = match run.kind {
            RunKind::Export => crate::export::run::export(&self.engine, &run, &lost).await,
            kind => crate::export::cleanup::clean_up(&self.engine, &run, kind, &lost).await,
        };
        heartbeat.abort();
        match result {
            Ok(outcome) => {
                self.finish(run.id, outcome.status, outcome.message.as_deref())
                    .await?;
                tracing::info!(status = outcome.status.as_str(), "export run finished");
            }
            Err(err) if lost.load(Ordering::Relaxed) => {
                tracing::warn!(error = %err, "export run lost its lease; another worker resumes it");
            }
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "export run failed");
                self.finish(
                    run.id,
                    RunStatus::Failure,
                    Some(&format!("The export stopped: {err}")),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Records the run's end and queues the failure alerts it calls for, in one
    /// transaction: no alert is lost between the two, and none waits on a webhook or a mail
    /// server (the console's alert sender delivers them). Should queueing fail, the run
    /// still ends, without its alerts.
    async fn finish(
        &self,
        run_id: i64,
        status: RunStatus,
        message: Option<&str>,
    ) -> anyhow::Result<()> {
        let pool = self.engine.db.pool();
        let together = async {
            let mut tx = crate::db::begin_write(pool).await?;
            runs::finish(&mut *tx, run_id, status, message).await?;
            crate::alerts::queue_for_run(&mut tx, run_id).await?;
            tx.commit().await
        };
        if let Err(err) = together.await {
            tracing::error!(error = %err, "queueing the run's failure alerts; the run ends without them");
            runs::finish(pool, run_id, status, message).await?;
        }
        Ok(())
    }

    /// Works until the process stops, executing up to `workers` runs at once and polling
    /// for runs when idle.
    pub async fn run(self, workers: usize) {
        let mut lanes = tokio::task::JoinSet::new();
        for lane in 0..workers.max(1) {
            let worker = self.clone();
            lanes.spawn(async move {
                // Lanes start a little apart so that they do not poll in step.
                tokio::time::sleep(Duration::from_millis(lane as u64 * 50)).await;
                worker.lane().await;
            });
        }
        while lanes.join_next().await.is_some() {}
    }

    async fn lane(self) {
        loop {
            match self.try_execute_next().await {
                Ok(Some(_)) => continue,
                Ok(None) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "the export worker hit an error");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Runs until no run is waiting (for tests and the command line).
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut done = 0;
        while self.try_execute_next().await?.is_some() {
            done += 1;
        }
        Ok(done)
    }
}
