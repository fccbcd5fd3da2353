//! Profile writes under way. An import writes all its rows in one transaction, stamping
//! each with the time it was written, so rows stamped minutes ago can become visible only
//! now. Whoever reads "what changed since" takes the earliest start of a write still under
//! way as the time it has seen everything before.

use sqlx::AnyPool;

use crate::db::now_millis;

/// How long a write's note stands if its console dies before removing it.
const NOTE_MS: i64 = 6 * 60 * 60 * 1000;

/// A profile write's note; remove it with [`Writing::end`] once the write committed or
/// rolled back.
#[must_use]
pub struct Writing {
    id: String,
}

/// Notes a profile write that is about to start.
pub async fn begin(pool: &AnyPool) -> sqlx::Result<Writing> {
    use rand::Rng;
    let id = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
    let now = now_millis();
    sqlx::query("INSERT INTO profile_writers (id, started_at, expires_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(now)
        .bind(now + NOTE_MS)
        .execute(pool)
        .await?;
    Ok(Writing { id })
}

impl Writing {
    pub async fn end(self, pool: &AnyPool) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM profile_writers WHERE id = $1 OR expires_at < $2")
            .bind(&self.id)
            .bind(now_millis())
            .execute(pool)
            .await
            .map(drop)
    }
}

/// The time before which every profile write has committed: now, or the start of the
/// earliest write still under way.
pub async fn horizon(pool: &AnyPool) -> sqlx::Result<i64> {
    let now = now_millis();
    let earliest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(started_at) FROM profile_writers WHERE expires_at >= $1")
            .bind(now)
            .fetch_one(pool)
            .await?;
    Ok(earliest.map_or(now, |t| t.min(now)))
}
