//! Preview a destination: what an export would do now, computed without writing to
//! Mailchimp and kept as the destination's last preview. Pages start it in the background
//! and show it when it is done; the API waits for it.

use crate::export::Engine;
use crate::export::preview::{self, Preview, PreviewError};
use crate::store::destinations::Destination;
use crate::store::previews as kept;

/// Starts computing the destination's preview in the background, unless one already is.
/// Returns whether this request started one.
pub async fn begin(
    engine: &Engine,
    destination: Destination,
    full: bool,
    by: i64,
) -> anyhow::Result<bool> {
    if !kept::start(engine.db.pool(), destination.id, Some(by)).await? {
        return Ok(false);
    }
    tracing::info!(
        user_id = by,
        destination_id = destination.id,
        full,
        "preview requested"
    );
    let engine = engine.clone();
    tokio::spawn(async move {
        // Its result, or why it failed, is kept for the page.
        let _ = preview::compute_and_keep(&engine, &destination, full).await;
    });
    Ok(true)
}

/// Computes the destination's preview now and keeps it.
pub async fn compute(
    engine: &Engine,
    destination: &Destination,
    full: bool,
    by: i64,
) -> Result<Preview, PreviewError> {
    kept::start(engine.db.pool(), destination.id, Some(by))
        .await
        .map_err(anyhow::Error::from)?;
    tracing::info!(
        user_id = by,
        destination_id = destination.id,
        full,
        "preview requested"
    );
    preview::compute_and_keep(engine, destination, full).await
}
