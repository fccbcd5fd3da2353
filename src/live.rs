//! Keep in sync: destinations that ask for it export each change within seconds, with no
//! person and no schedule.
//!
//! Every window (`SYNC_WINDOW_MS`, 2 s by default) the loop looks at each saved destination
//! kept in sync. Every profile write and deletion moves its segments' membership time on
//! (`segments::follow`); when that time is later than the destination's latest export, and
//! no export of it is queued or running, one is queued. That run reads only what changed
//! (`export::changes`); what arrives while it runs waits for the next, so one run is in
//! flight per destination (on every console sharing the database: a run is queued only
//! when none is queued or running, under a lock on the destination's row) and each takes in
//! everything that came meanwhile. The worker's lease, the account's shared connections and
//! the history are those of every export, and a console that restarts picks up where the
//! last run ended; what differs is that a run kept in sync reuses its audience's fresh reads
//! (`export::fresh`) and pays for what changed.

use std::collections::HashSet;
use std::time::Duration;

use crate::actions::exports::{self, NotQueued};
use crate::db::{Db, now_millis};
use crate::store::{destinations, runs};

/// How long keeping a destination in sync waits after one of its runs failed.
pub const AFTER_A_FAILURE: Duration = Duration::from_secs(60);

/// Looks every `window` for destinations kept in sync whose segments took in a change.
pub async fn run(db: Db, window: Duration) {
    // Destinations whose first export waits for a person to confirm its preview: said once.
    let mut waiting = HashSet::new();
    loop {
        tokio::time::sleep(window).await;
        if let Err(err) = look(&db, &mut waiting).await {
            tracing::warn!(error = %err, "keeping destinations in sync");
        }
    }
}

/// Queues an export of each destination kept in sync that has a change it has not exported.
async fn look(db: &Db, waiting: &mut HashSet<i64>) -> anyhow::Result<()> {
    let pool = db.pool();
    for id in destinations::kept_in_sync(pool).await? {
        let Some(changed_at) = destinations::segments_changed_at(pool, id).await? else {
            continue;
        };
        let (in_flight, latest, failed) = runs::sync_state(pool, id).await?;
        if in_flight || latest.is_some_and(|queued| queued > changed_at) {
            continue;
        }
        // After a failed run (a refused credential, Mailchimp down) the next one waits a
        // while, so that a stream of changes does not become a stream of failures and alerts.
        if failed.is_some_and(|ended| now_millis() - ended < AFTER_A_FAILURE.as_millis() as i64) {
            continue;
        }
        match exports::queue_kept_in_sync(db, id).await? {
            Ok(Some(run_id)) => {
                waiting.remove(&id);
                tracing::debug!(
                    destination_id = id,
                    run_id,
                    "a change is being kept in sync"
                );
            }
            // Another console queued one meanwhile: it takes the change in.
            Ok(None) => {}
            Err(NotQueued::Unconfirmed(_)) => {
                if waiting.insert(id) {
                    tracing::info!(
                        destination_id = id,
                        "keep in sync waits: the first export's preview found problems for a person to confirm"
                    );
                }
            }
            Err(NotQueued::NoSuchDestination) => {}
        }
    }
    Ok(())
}
