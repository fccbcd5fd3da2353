//! Each destination's last preview: computing, done (with its body) or failed (with why).

use sqlx::{Any, AnyPool, Executor};

use crate::db::now_millis;

/// A preview still computing after this long was left by a console that stopped.
const STALE_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Computing,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub state: State,
    pub body: Option<String>,
    pub message: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// Marks a preview as computing; false when one is already computing (that one's result
/// will do).
pub async fn start(
    pool: &AnyPool,
    destination_id: i64,
    user_id: Option<i64>,
) -> sqlx::Result<bool> {
    let now = now_millis();
    super::changed_any(
        pool,
        "INSERT INTO export_previews (destination_id, state, requested_by, started_at) \
         VALUES ($1, 'computing', $2, $3) \
         ON CONFLICT (destination_id) DO UPDATE SET state = 'computing', body = NULL, \
         message = NULL, requested_by = $2, started_at = $3, finished_at = NULL \
         WHERE export_previews.state <> 'computing' OR export_previews.started_at < $4",
        &[
            destination_id.into(),
            user_id.into(),
            now.into(),
            (now - STALE_MS).into(),
        ],
    )
    .await
}

/// Records a computed preview.
pub async fn finish(pool: &AnyPool, destination_id: i64, body: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE export_previews SET state = 'done', body = $1, message = NULL, finished_at = $2 \
         WHERE destination_id = $3",
    )
    .bind(body)
    .bind(now_millis())
    .bind(destination_id)
    .execute(pool)
    .await
    .map(drop)
}

/// Records why a preview could not be computed.
pub async fn fail(pool: &AnyPool, destination_id: i64, message: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE export_previews SET state = 'failed', body = NULL, message = $1, finished_at = $2 \
         WHERE destination_id = $3",
    )
    .bind(message)
    .bind(now_millis())
    .bind(destination_id)
    .execute(pool)
    .await
    .map(drop)
}

/// state, body, message, started_at, finished_at
type StoredRow = (String, Option<String>, Option<String>, i64, Option<i64>);

pub async fn find(pool: &AnyPool, destination_id: i64) -> sqlx::Result<Option<Stored>> {
    let row: Option<StoredRow> = sqlx::query_as(
        "SELECT state, body, message, started_at, finished_at FROM export_previews \
         WHERE destination_id = $1",
    )
    .bind(destination_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(state, body, message, started_at, finished_at)| {
        let (state, message) = match state.as_str() {
            "computing" if started_at >= now_millis() - STALE_MS => (State::Computing, None),
            "computing" => (
                State::Failed,
                Some("The console stopped while computing it.".to_owned()),
            ),
            "done" => (State::Done, None),
            _ => (State::Failed, message),
        };
        Stored {
            state,
            body,
            message,
            started_at,
            finished_at,
        }
    }))
}

/// Forgets a destination's preview (its settings changed, or it was removed).
pub async fn delete<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM export_previews WHERE destination_id = $1")
        .bind(destination_id)
        .execute(db)
        .await
        .map(drop)
}
