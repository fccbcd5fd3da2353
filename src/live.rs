//! Keep in sync: destinations that ask for it export each change within seconds, with no
//! person and no schedule.
//!
//! Every profile write and deletion that touches a segment's members (one joins, leaves, or
//! is written) moves the segment's time on (`segments::follow`); when that time is later
//! than a destination's latest export, and no export of it is queued or running, one is
//! queued: within half a window
//! (`SYNC_WINDOW_MS`, 2 s by default) of the first change not yet exported, or, when changes
//! stream in fast enough to fill a batch of Mailchimp's 500 within [`FILL_WINDOWS`] windows,
//! once they nearly fill one ([`FILL_AT`]). So a lone change goes out in about a second, and
//! a stream of them in full batches rather than in a call every window ([`due`]). That run reads only what changed
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

/// How long keeping a destination in sync waits after one of its runs failed or was
/// canceled.
pub const AFTER_A_FAILURE: Duration = Duration::from_secs(60);

/// How many changes a run waits for while a stream fills a batch: a little under the 500 a
/// batch holds, since changes keep arriving until the run starts.
pub const FILL_AT: i64 = 450;

/// For how many windows after its first change a run may wait for a batch to fill.
pub const FILL_WINDOWS: i64 = 3;

/// Looks every tenth of a window (at least every 50 ms) for destinations kept in sync whose
/// segments took in a change.
pub async fn run(db: Db, window: Duration) {
    // Destinations whose first export waits for a person to confirm its preview: said once.
    let mut waiting = HashSet::new();
    let tick = (window / 10).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        if let Err(err) = look(&db, window, &mut waiting).await {
            tracing::warn!(error = %err, "keeping destinations in sync");
        }
    }
}

/// Queues an export of each destination kept in sync that has a change it has not exported.
async fn look(db: &Db, window: Duration, waiting: &mut HashSet<i64>) -> anyhow::Result<()> {
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
        // while, so that a stream of changes does not become a stream of failures and alerts;
        // and after a person canceled one, so that the next change does not overrule them.
        // (The changes it did not send go with the next run: the mark did not move.)
        if failed.is_some_and(|ended| now_millis() - ended < AFTER_A_FAILURE.as_millis() as i64) {
            continue;
        }
        if let Some(since) = latest {
            let (written, first) = crate::store::profiles::written_after(pool, since).await?;
            if !due(written, first, now_millis(), window.as_millis() as i64) {
                continue;
            }
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

/// Whether the changes waiting are due to go: `written` profiles written since the latest
/// run was queued, the first of them at `first`. At once when they nearly fill a batch;
/// otherwise half a window after the first, unless at the pace they arrive they would
/// nearly fill one within [`FILL_WINDOWS`] windows of it (then when they do, or then).
/// Changes no profile shows (a deletion, a segment's refresh) are due at once.
fn due(written: i64, first: Option<i64>, now: i64, window: i64) -> bool {
    let Some(first) = first else {
        return true;
    };
    let waited = (now - first).max(0);
    let cap = FILL_WINDOWS * window;
    if written >= FILL_AT || waited >= cap {
        return true;
    }
    if waited < window / 2 {
        return false;
    }
    // At the pace so far, how many there would be at the cap.
    let by_cap = written + written * (cap - waited) / waited.max(1);
    by_cap < FILL_AT
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 2_000;

    #[test]
    fn a_lone_change_goes_within_half_a_window() {
        assert!(!due(1, Some(0), 500, W));
        assert!(due(1, Some(0), 1_000, W));
        assert!(due(3, Some(0), 1_200, W));
    }

    #[test]
    fn a_stream_waits_to_nearly_fill_a_batch_but_not_past_three_windows() {
        // A hundred a second: 450 within 4.5 s, inside the 6 s the first may wait.
        assert!(!due(100, Some(0), 1_000, W));
        assert!(!due(400, Some(0), 4_000, W));
        assert!(due(450, Some(0), 4_500, W));
        // Fifty a second would not fill one by then: they go after half a window.
        assert!(due(50, Some(0), 1_000, W));
        // Two thousand a second: at once.
        assert!(due(460, Some(0), 230, W));
        // Never later than three windows after the first.
        assert!(due(300, Some(0), 6_000, W));
    }

    #[test]
    fn changes_no_profile_shows_are_due_at_once() {
        assert!(due(0, None, 0, W));
    }
}
