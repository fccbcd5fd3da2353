//! Segments and their materialised membership. Membership is written under a new
//! generation and published by switching the segment's generation in one short
//! transaction, so readers see the old membership until the new one is complete.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::{Backend, now_millis};
use crate::domain::segment_rules::SegmentRules;
use crate::store::Record;

#[derive(Debug, Clone, PartialEq)]
pub enum Definition {
    Rules(SegmentRules),
    /// A list of customer IDs (kept in `segment_static_ids`).
    Static,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub definition: Definition,
    pub generation: i64,
    pub member_count: i64,
    pub last_refreshed_at: Option<i64>,
    pub last_refresh_ms: Option<i64>,
    pub unmatched_ids: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The published membership reflects every profile write committed before this time.
    pub members_as_of: i64,
    /// Digest of what the published membership was computed from (rules, field types).
    pub members_basis: String,
    /// Digest of the published member IDs.
    pub members_digest: String,
}

const COLUMNS: &str = "id, name, kind, definition, generation, member_count, last_refreshed_at, \
                       last_refresh_ms, unmatched_ids, created_at, updated_at, members_as_of, \
                       members_basis, members_digest";

impl Record for Segment {
    const TABLE: &'static str = "segments";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let kind: String = row.try_get("kind")?;
        let definition = if kind == "static" {
            Definition::Static
        } else {
            let text: Option<String> = row.try_get("definition")?;
            Definition::Rules(
                serde_json::from_str(text.as_deref().unwrap_or("{}"))
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            )
        };
        Ok(Segment {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            definition,
            generation: row.try_get("generation")?,
            member_count: row.try_get("member_count")?,
            last_refreshed_at: row.try_get("last_refreshed_at")?,
            last_refresh_ms: row.try_get("last_refresh_ms")?,
            unmatched_ids: row.try_get("unmatched_ids")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            members_as_of: row.try_get("members_as_of")?,
            members_basis: row.try_get("members_basis")?,
            members_digest: row.try_get("members_digest")?,
        })
    }
}

fn columns(definition: &Definition) -> (&'static str, Option<String>) {
    match definition {
        Definition::Rules(rules) => ("rules", serde_json::to_string(rules).ok()),
        Definition::Static => ("static", None),
    }
}

pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Segment>> {
    super::select(db, "ORDER BY lower(name), id", &[]).await
}

pub async fn find<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<Segment>> {
    Segment::find(db, id).await
}

pub async fn find_by_name<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
) -> sqlx::Result<Option<Segment>> {
    super::select_one(db, "WHERE name = $1", &[name.into()]).await
}

/// The segment, held until the transaction ends on PostgreSQL, so that no destination can
/// choose it meanwhile (SQLite's write transaction holds the whole database already).
pub async fn find_for_update(conn: &mut AnyConnection, id: i64) -> sqlx::Result<Option<Segment>> {
    let hold = if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    super::select_one(conn, &format!("WHERE id = $1{hold}"), &[id.into()]).await
}

/// Creates a segment; a taken name comes back as a unique violation.
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
    definition: &Definition,
) -> sqlx::Result<i64> {
    let (kind, text) = columns(definition);
    let now = now_millis();
    sqlx::query_scalar(
        "INSERT INTO segments (name, kind, definition, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(name)
    .bind(kind)
    .bind(text)
    .bind(now)
    .fetch_one(db)
    .await
}

pub async fn update<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    name: &str,
    definition: &Definition,
) -> sqlx::Result<()> {
    let (kind, text) = columns(definition);
    sqlx::query(
        "UPDATE segments SET name = $1, kind = $2, definition = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(name)
    .bind(kind)
    .bind(text)
    .bind(now_millis())
    .bind(id)
    .execute(db)
    .await
    .map(drop)
}

pub async fn delete(conn: &mut AnyConnection, id: i64) -> sqlx::Result<()> {
    // Both backends cascade, but SQLite only with foreign keys on: delete explicitly.
    super::delete_where(conn, "segment_members", "segment_id", id).await?;
    super::delete_where(conn, "segment_static_ids", "segment_id", id).await?;
    super::delete_where(conn, "segments", "id", id).await
}

/// Replaces a static segment's list of customer IDs.
pub async fn set_static_ids(
    conn: &mut AnyConnection,
    id: i64,
    customer_ids: &[String],
) -> sqlx::Result<()> {
    // A new list is a new definition: re-exports compare it.
    sqlx::query("UPDATE segments SET updated_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM segment_static_ids WHERE segment_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for chunk in customer_ids.chunks(400) {
        let values = (0..chunk.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO segment_static_ids (segment_id, customer_id) VALUES {values} ON CONFLICT DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(id);
        for customer_id in chunk {
            query = query.bind(customer_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The profiles a static segment lists, and how many listed IDs have no profile.
pub async fn static_members<'e, E>(db: E, id: i64) -> sqlx::Result<(Vec<i64>, i64)>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT p.id FROM segment_static_ids s JOIN profiles p ON p.customer_id = s.customer_id \
         WHERE s.segment_id = $1 ORDER BY p.id",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    let listed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM segment_static_ids WHERE segment_id = $1")
            .bind(id)
            .fetch_one(db)
            .await?;
    Ok((ids.clone(), listed - ids.len() as i64))
}

/// Writes membership rows under `generation`; invisible until published.
pub async fn write_generation(
    conn: &mut AnyConnection,
    segment_id: i64,
    generation: i64,
    profile_ids: &[i64],
) -> sqlx::Result<()> {
    if conn.backend_name() == "PostgreSQL" {
        // Rows a refresh that stopped midway left under this generation go first, so the
        // inserts need no conflict check (which costs PostgreSQL 1.7 times the insert).
        sqlx::query("DELETE FROM segment_members WHERE segment_id = $1 AND generation = $2")
            .bind(segment_id)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
        // One statement per 50,000 members: the IDs travel as one text that the server
        // splits (the portable multi-row INSERT costs PostgreSQL twice the time).
        let mut previous = None;
        for chunk in profile_ids.chunks(50_000) {
            let mut list = String::with_capacity(chunk.len() * 8);
            for id in chunk {
                // The key allows a profile once; a caller's list may repeat one.
                if previous.is_some_and(|p: i64| p == *id) {
                    continue;
                }
                if previous.is_some() && !list.is_empty() {
                    list.push(',');
                }
                previous = Some(*id);
                list.push_str(&id.to_string());
            }
            if list.is_empty() {
                continue;
            }
            sqlx::query(
                "INSERT INTO segment_members (segment_id, generation, profile_id) \
                 SELECT $1, $2, unnest(string_to_array($3, ',')::bigint[])",
            )
            .bind(segment_id)
            .bind(generation)
            .bind(list)
            .execute(&mut *conn)
            .await?;
        }
        return Ok(());
    }
    for chunk in profile_ids.chunks(500) {
        let values = (0..chunk.len())
            .map(|i| format!("($1, $2, ${})", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO segment_members (segment_id, generation, profile_id) VALUES {values} \
             ON CONFLICT DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(segment_id).bind(generation);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What a refresh found for one segment.
pub struct Published {
    pub generation: i64,
    pub member_count: i64,
    pub unmatched_ids: i64,
    pub duration_ms: i64,
    pub as_of: i64,
    pub basis: String,
    pub digest: String,
}

/// Makes `generation` the membership readers see, then drops older generations. When the
/// generation is the one already published (the members did not change), only the
/// refresh's time and figures are recorded.
pub async fn publish(
    conn: &mut AnyConnection,
    segment_id: i64,
    published: &Published,
) -> sqlx::Result<()> {
    let changed = sqlx::query(
        "UPDATE segments SET generation = $1, member_count = $2, unmatched_ids = $3, \
         last_refreshed_at = $4, last_refresh_ms = $5, members_as_of = $6, members_basis = $7, \
         members_digest = $8, members_touched_at = $6 WHERE id = $9 AND generation <> $1",
    )
    .bind(published.generation)
    .bind(published.member_count)
    .bind(published.unmatched_ids)
    .bind(now_millis())
    .bind(published.duration_ms)
    .bind(published.as_of)
    .bind(&published.basis)
    .bind(&published.digest)
    .bind(segment_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        sqlx::query(
            "UPDATE segments SET unmatched_ids = $1, last_refreshed_at = $2, last_refresh_ms = $3, \
             members_as_of = $4, members_basis = $5 WHERE id = $6",
        )
        .bind(published.unmatched_ids)
        .bind(now_millis())
        .bind(published.duration_ms)
        .bind(published.as_of)
        .bind(&published.basis)
        .bind(segment_id)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    sqlx::query("DELETE FROM segment_members WHERE segment_id = $1 AND generation <> $2")
        .bind(segment_id)
        .bind(published.generation)
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// The first key of [`lock_membership`]'s lock among PostgreSQL's advisory locks ("segm").
const MEMBERSHIP_LOCK: i32 = 0x7365_676d;

/// Holds, until the transaction ends, the lock that puts changes of published membership
/// in one order: a profile write that follows its changes into the segments, and a refresh
/// that publishes a new generation, never interleave (PostgreSQL; SQLite writers are
/// serialised by `BEGIN IMMEDIATE` already).
pub async fn lock_membership(conn: &mut AnyConnection, backend: Backend) -> sqlx::Result<()> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    // The lock's value is void, which the Any driver cannot read: it is read as text.
    sqlx::query("SELECT CAST(pg_advisory_xact_lock($1, 0) AS TEXT)")
        .bind(MEMBERSHIP_LOCK)
        .execute(&mut *conn)
        .await
        .map(drop)
}

/// Which of `profile_ids` are members of the segment's `generation`.
pub async fn members_among(
    conn: &mut AnyConnection,
    segment_id: i64,
    generation: i64,
    profile_ids: &[i64],
) -> sqlx::Result<std::collections::HashSet<i64>> {
    let mut found = std::collections::HashSet::new();
    for chunk in profile_ids.chunks(500) {
        let sql = format!(
            "SELECT profile_id FROM segment_members WHERE segment_id = $1 AND generation = $2 \
             AND profile_id IN ({})",
            super::placeholders(3, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql)
            .bind(segment_id)
            .bind(generation);
        for id in chunk {
            query = query.bind(*id);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// Takes `profile_ids` out of the segment's `generation`.
pub async fn remove_members(
    conn: &mut AnyConnection,
    segment_id: i64,
    generation: i64,
    profile_ids: &[i64],
) -> sqlx::Result<()> {
    for chunk in profile_ids.chunks(500) {
        let sql = format!(
            "DELETE FROM segment_members WHERE segment_id = $1 AND generation = $2 \
             AND profile_id IN ({})",
            super::placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(segment_id).bind(generation);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Puts `profile_ids` (none of them a member yet) in the segment's `generation`.
pub async fn add_members(
    conn: &mut AnyConnection,
    segment_id: i64,
    generation: i64,
    profile_ids: &[i64],
) -> sqlx::Result<()> {
    for chunk in profile_ids.chunks(300) {
        let values = (0..chunk.len())
            .map(|i| format!("($1, $2, ${})", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO segment_members (segment_id, generation, profile_id) VALUES {values}"
        );
        let mut query = sqlx::query(&sql).bind(segment_id).bind(generation);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Notes that the segment's published membership followed the profile writes up to
/// `as_of`: `joined` more members (fewer when negative), and for a static segment as many
/// fewer listed IDs without a profile; `touched` when a member joined, left, or was
/// written. A membership that changed no longer has a known digest, so the next refresh
/// writes its generation afresh.
pub async fn followed(
    conn: &mut AnyConnection,
    segment_id: i64,
    joined: i64,
    touched: bool,
    as_of: i64,
) -> sqlx::Result<()> {
    let as_of_later = "members_as_of = CASE WHEN members_as_of < $1 THEN $1 ELSE members_as_of END";
    let touched_later = ", members_touched_at = \
         CASE WHEN members_touched_at < $1 THEN $1 ELSE members_touched_at END";
    let later = format!("{as_of_later}{}", if touched { touched_later } else { "" });
    if joined == 0 {
        let sql = format!("UPDATE segments SET {later} WHERE id = $2");
        return super::execute(conn, &sql, &[as_of.into(), segment_id.into()]).await;
    }
    let sql = format!(
        "UPDATE segments SET {later}, member_count = member_count + $3, members_digest = '', \
         unmatched_ids = CASE WHEN kind = 'static' THEN unmatched_ids - $3 ELSE unmatched_ids END \
         WHERE id = $2"
    );
    super::execute(
        conn,
        &sql,
        &[as_of.into(), segment_id.into(), joined.into()],
    )
    .await
}

/// The static segments that list any of `customer_ids`: (segment, customer ID) pairs.
pub async fn listed_among(
    conn: &mut AnyConnection,
    customer_ids: &[&str],
) -> sqlx::Result<Vec<(i64, String)>> {
    let mut listed = Vec::new();
    for chunk in customer_ids.chunks(500) {
        let sql = format!(
            "SELECT segment_id, customer_id FROM segment_static_ids WHERE customer_id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        listed.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(listed)
}

/// One member as a segment page lists it.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub profile_id: i64,
    pub customer_id: String,
    pub email_key: Option<String>,
}

/// A page of the published members of a segment, in profile order.
pub async fn members<'e>(
    db: impl Executor<'e, Database = Any>,
    segment_id: i64,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<MemberRow>> {
    sqlx::query(
        "SELECT p.id, p.customer_id, p.email_key FROM segment_members m \
         JOIN profiles p ON p.id = m.profile_id \
         WHERE m.segment_id = $1 AND m.generation = (SELECT generation FROM segments WHERE id = $1) \
           AND m.profile_id > $2 \
         ORDER BY m.profile_id LIMIT $3",
    )
    .bind(segment_id)
    .bind(after)
    .bind(limit)
    .try_map(|row: AnyRow| {
        Ok(MemberRow {
            profile_id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            email_key: row.try_get("email_key")?,
        })
    })
    .fetch_all(db)
    .await
}

/// The names of the segments a profile belongs to (as published).
pub async fn of_profile<'e>(
    db: impl Executor<'e, Database = Any>,
    profile_id: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        // One primary-key probe per segment: there is no index on profile_id alone.
        "SELECT s.name FROM segments s WHERE EXISTS (SELECT 1 FROM segment_members m \
         WHERE m.segment_id = s.id AND m.generation = s.generation AND m.profile_id = $1) \
         ORDER BY lower(s.name)",
    )
    .bind(profile_id)
    .fetch_all(db)
    .await
}

/// Each refreshed segment's name with how long its last refresh took, in milliseconds.
pub async fn last_refresh_times<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT name, last_refresh_ms FROM segments WHERE last_refresh_ms IS NOT NULL")
        .fetch_all(db)
        .await
}
