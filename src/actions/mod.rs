//! What people, the schedule and the command line can do to destinations, each written once:
//! queue an export (with the first export's confirmation), cancel a run, preview, remove a
//! destination. Pages, the API, the command line and the schedule call these and only turn
//! their answers into a page, a JSON body, a line of output or a log entry.
//!
//! Forgetting a customer has one way in already: [`crate::export::forget::forget`].

pub mod exports;
pub mod previews;
pub mod removal;

use crate::db::Db;
use crate::store::destinations::{self, Destination};

/// A destination whose set-up is finished: the only kind that exports or previews. `None`
/// for one that does not exist, is being set up, or is being removed.
pub async fn active_destination(db: &Db, id: i64) -> anyhow::Result<Option<Destination>> {
    Ok(destinations::find(db.pool(), id)
        .await?
        .filter(|d| d.is_active()))
}
