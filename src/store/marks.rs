//! A destination's last complete export (its mark) and the profiles its plan skipped for
//! an address that an earlier profile has (its repeats): what a re-export needs to read only
//! the profiles that changed since.

use sqlx::{Any, AnyConnection, AnyPool, Executor};

use crate::db::now_millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub run_id: i64,
    /// Digest of the settings the run exported with.
    pub settings: String,
    /// The segments' membership bases as JSON `{"id": "basis"}`.
    pub segments: String,
    /// Profiles written from this time on may not be in the run.
    pub changes_from: i64,
    /// How many profiles there were, and the highest row ID, when the plan was read.
    pub profiles: i64,
    pub last_profile: i64,
}

pub async fn find<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<Option<Mark>> {
    let row: Option<(i64, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT run_id, settings, segments, changes_from, profiles, last_profile \
         FROM export_marks WHERE destination_id = $1",
    )
    .bind(destination_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(
        |(run_id, settings, segments, changes_from, profiles, last_profile)| Mark {
            run_id,
            settings,
            segments,
            changes_from,
            profiles,
            last_profile,
        },
    ))
}

pub async fn clear<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM export_marks WHERE destination_id = $1")
        .bind(destination_id)
        .execute(db)
        .await
        .map(drop)
}

pub async fn put(conn: &mut AnyConnection, destination_id: i64, mark: &Mark) -> sqlx::Result<()> {
    clear(&mut *conn, destination_id).await?;
    sqlx::query(
        "INSERT INTO export_marks (destination_id, run_id, settings, segments, changes_from, \
         profiles, last_profile, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(destination_id)
    .bind(mark.run_id)
    .bind(&mark.settings)
    .bind(&mark.segments)
    .bind(mark.changes_from)
    .bind(mark.profiles)
    .bind(mark.last_profile)
    .bind(now_millis())
    .execute(conn)
    .await
    .map(drop)
}

/// How many profiles there are and the highest row ID.
pub async fn profile_census(pool: &AnyPool) -> sqlx::Result<(i64, i64)> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM profiles")
        .fetch_one(pool)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(pool)
        .await?;
    Ok((count, last.unwrap_or(0)))
}

/// Profiles with a row ID above `after`.
pub async fn profiles_after(pool: &AnyPool, after: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE id > $1")
        .bind(after)
        .fetch_one(pool)
        .await
}

/// How many profiles were written at or after `from`, counting at most `limit + 1`.
pub async fn changed_count(pool: &AnyPool, from: i64, limit: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM profiles WHERE updated_at >= $1 LIMIT $2) changed",
    )
    .bind(from)
    .bind(limit + 1)
    .fetch_one(pool)
    .await
}

/// Row and customer IDs of the profiles written at or after `from`.
pub async fn changed(pool: &AnyPool, from: i64) -> sqlx::Result<Vec<(i64, String)>> {
    // Not ordered: SQLite would walk every profile in ID order rather than sort the few.
    let mut rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, customer_id FROM profiles WHERE updated_at >= $1")
            .bind(from)
            .fetch_all(pool)
            .await?;
    rows.sort_unstable();
    Ok(rows)
}

/// Row IDs of profiles by customer ID.
pub async fn profile_ids(
    pool: &AnyPool,
    customer_ids: &[String],
) -> sqlx::Result<Vec<(i64, String)>> {
    let mut found = Vec::new();
    for chunk in customer_ids.chunks(500) {
        let list = super::placeholders(1, chunk.len());
        let sql = format!("SELECT id, customer_id FROM profiles WHERE customer_id IN ({list})");
        let mut query = sqlx::query_as(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        found.extend(query.fetch_all(pool).await?);
    }
    Ok(found)
}

/// Forgets every repeat of a destination (a run that reads the whole plan writes them anew).
pub async fn clear_repeats<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM export_repeats WHERE destination_id = $1")
        .bind(destination_id)
        .execute(db)
        .await
        .map(drop)
}

/// Forgets the repeats of some customers (those a re-export reads again).
pub async fn forget_repeats(
    conn: &mut AnyConnection,
    destination_id: i64,
    customer_ids: &[String],
) -> sqlx::Result<()> {
    for chunk in customer_ids.chunks(500) {
        let list = super::placeholders(2, chunk.len());
        let sql = format!(
            "DELETE FROM export_repeats WHERE destination_id = $1 AND customer_id IN ({list})"
        );
        let mut query = sqlx::query(&sql).bind(destination_id);
        for id in chunk {
            query = query.bind(id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Notes profiles skipped for a repeated address: (customer ID, address hash).
pub async fn add_repeats(
    conn: &mut AnyConnection,
    destination_id: i64,
    repeats: &[(String, String)],
) -> sqlx::Result<()> {
    for chunk in repeats.chunks(400) {
        let values = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${})", i * 2 + 2, i * 2 + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO export_repeats (destination_id, customer_id, email_hash) VALUES {values} \
             ON CONFLICT (destination_id, customer_id) DO UPDATE SET email_hash = excluded.email_hash"
        );
        let mut query = sqlx::query(&sql).bind(destination_id);
        for (customer, hash) in chunk {
            query = query.bind(customer).bind(hash);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Repeats of a destination by customer or by address: (customer ID, address hash).
pub async fn repeats_of(
    pool: &AnyPool,
    destination_id: i64,
    column: RepeatKey,
    keys: &[String],
) -> sqlx::Result<Vec<(String, String)>> {
    let column = match column {
        RepeatKey::Customer => "customer_id",
        RepeatKey::Address => "email_hash",
    };
    let mut found = Vec::new();
    for chunk in keys.chunks(500) {
        let list = super::placeholders(2, chunk.len());
        let sql = format!(
            "SELECT customer_id, email_hash FROM export_repeats WHERE destination_id = $1 AND {column} IN ({list})"
        );
        let mut query = sqlx::query_as(&sql).bind(destination_id);
        for key in chunk {
            query = query.bind(key);
        }
        found.extend(query.fetch_all(pool).await?);
    }
    Ok(found)
}

#[derive(Debug, Clone, Copy)]
pub enum RepeatKey {
    Customer,
    Address,
}
