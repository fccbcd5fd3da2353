//! Unified customer profiles: attributes as a JSON object per customer ID.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::Backend;
use crate::store::Record;

/// One profile as an import writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileWrite {
    pub customer_id: String,
    /// A JSON object of the columns this write carries.
    pub attributes: String,
    pub email_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub id: i64,
    pub customer_id: String,
    pub attributes: String,
    pub email_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Record for Profile {
    const TABLE: &'static str = "profiles";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        Ok(Profile {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            attributes: row.try_get("attributes")?,
            email_key: row.try_get("email_key")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "id, customer_id, attributes, email_key, created_at, updated_at";

/// Inserts or updates profiles; an update merges the given attributes into the stored
/// ones (a null clears one). `sets_email_key`: the write carries the primary email field.
/// Customer IDs must be distinct within one call.
pub async fn upsert(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[ProfileWrite],
    sets_email_key: bool,
    now: i64,
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values = (0..rows.len())
        .map(|i| {
            format!(
                "({}, ${}, ${})",
                super::placeholders(i * 3 + 1, 3),
                rows.len() * 3 + 1,
                rows.len() * 3 + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let merged = match backend {
        Backend::Sqlite => "json_patch(profiles.attributes, excluded.attributes)",
        Backend::Postgres => {
            "jsonb_strip_nulls(profiles.attributes::jsonb || excluded.attributes::jsonb)::text"
        }
    };
    let email = if sets_email_key {
        "excluded.email_key"
    } else {
        "profiles.email_key"
    };
    let sql = format!(
        "INSERT INTO profiles (customer_id, attributes, email_key, created_at, updated_at) VALUES {values} \
         ON CONFLICT (customer_id) DO UPDATE SET attributes = {merged}, email_key = {email}, \
         updated_at = excluded.updated_at"
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(&row.customer_id)
            .bind(&row.attributes)
            .bind(row.email_key.as_deref());
    }
    query.bind(now).execute(conn).await.map(drop)
}

pub async fn count<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(db)
        .await
}

/// Every profile's id and attributes (its JSON text), in id order, read as a stream.
pub fn attributes_in_order<'e>(
    db: impl Executor<'e, Database = Any> + 'e,
) -> impl futures::Stream<Item = sqlx::Result<(i64, String)>> + 'e {
    sqlx::query_as("SELECT id, attributes FROM profiles ORDER BY id").fetch(db)
}

/// The profiles (ID, customer ID, attributes) of these customer IDs, or of these profile
/// IDs; the ones that do not exist are absent.
pub async fn attributes_of(
    conn: &mut AnyConnection,
    which: Which<'_>,
) -> sqlx::Result<Vec<(i64, String, String)>> {
    let mut found = Vec::new();
    let (column, count) = match which {
        Which::Customers(ids) => ("customer_id", ids.len()),
        Which::Profiles(ids) => ("id", ids.len()),
    };
    for start in (0..count).step_by(500) {
        let end = (start + 500).min(count);
        let sql = format!(
            "SELECT id, customer_id, attributes FROM profiles WHERE {column} IN ({})",
            super::placeholders(1, end - start)
        );
        let mut query = sqlx::query_as::<_, (i64, String, String)>(&sql);
        match which {
            Which::Customers(ids) => {
                for id in &ids[start..end] {
                    query = query.bind(*id);
                }
            }
            Which::Profiles(ids) => {
                for id in &ids[start..end] {
                    query = query.bind(*id);
                }
            }
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// The profiles written at or after `since`.
pub async fn ids_written_since(conn: &mut AnyConnection, since: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT id FROM profiles WHERE updated_at >= $1 ORDER BY id")
        .bind(since)
        .fetch_all(&mut *conn)
        .await
}

/// How many profiles were written after `since`, and when the first of them was.
pub async fn written_after<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    since: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    // PostgreSQL counts as BIGINT; the cast keeps both databases alike.
    sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), MIN(updated_at) FROM profiles WHERE updated_at > $1",
    )
    .bind(since)
    .fetch_one(db)
    .await
}

/// Profiles named by their customer IDs or by their row IDs.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    Customers(&'a [&'a str]),
    Profiles(&'a [i64]),
}

/// Which way a page of profiles goes from a cursor.
#[derive(Debug, Clone, Copy)]
pub enum Cursor {
    First,
    After(i64),
    Before(i64),
}

/// Who a name search looks for: each (field, start of its value) must match.
pub struct NameSearch<'a> {
    pub all_of: Vec<(&'a str, &'a str)>,
    /// Or, when set, this one instead (a single word may be a first or a last name).
    pub or: Option<(&'a str, &'a str)>,
}

/// `%"field":"start%`, lowercase, as a LIKE pattern over the stored attributes (JSON text
/// written without spaces), with LIKE's wildcards in the input escaped.
fn value_starts(field: &str, start: &str) -> String {
    let escape = |s: &str| {
        s.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    };
    let field = serde_json::to_string(field).unwrap_or_default();
    let start = serde_json::to_string(start).unwrap_or_default();
    let start = start.trim_end_matches('"');
    format!("%{}:{}%", escape(&field), escape(start))
}

/// A page of profiles, in id order, whose name fields start with what was typed: a scan
/// in id order that stops once the page is full (names have no index).
pub async fn page_by_name<'e>(
    db: impl Executor<'e, Database = Any>,
    search: &NameSearch<'_>,
    cursor: Cursor,
    limit: i64,
) -> sqlx::Result<Vec<Profile>> {
    let (cursor_sql, order) = match cursor {
        Cursor::First => ("AND $2 = $2", "ASC"),
        Cursor::After(_) => ("AND id > $2", "ASC"),
        Cursor::Before(_) => ("AND id < $2", "DESC"),
    };
    let mut patterns = Vec::new();
    let mut all = Vec::new();
    for (field, start) in &search.all_of {
        patterns.push(value_starts(field, start));
        all.push(format!(
            "lower(attributes) LIKE ${} ESCAPE '\\'",
            patterns.len() + 2
        ));
    }
    let mut clause = format!("({})", all.join(" AND "));
    if let Some((field, start)) = search.or {
        patterns.push(value_starts(field, start));
        clause = format!(
            "({clause} OR lower(attributes) LIKE ${} ESCAPE '\\')",
            patterns.len() + 2
        );
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM profiles WHERE {clause} {cursor_sql} ORDER BY id {order} LIMIT $1"
    );
    let cursor_value = match cursor {
        Cursor::First => 0,
        Cursor::After(id) | Cursor::Before(id) => id,
    };
    let mut query = sqlx::query(&sql).bind(limit).bind(cursor_value);
    for pattern in &patterns {
        query = query.bind(pattern);
    }
    let mut rows = query.try_map(Profile::from_row).fetch_all(db).await?;
    if matches!(cursor, Cursor::Before(_)) {
        rows.reverse();
    }
    Ok(rows)
}

/// A page of profiles in id order, optionally those whose customer ID or email starts
/// with `search` (case-insensitive for email). Keyset paging keeps every page fast.
pub async fn page<'e>(
    db: impl Executor<'e, Database = Any>,
    search: Option<&str>,
    cursor: Cursor,
    limit: i64,
) -> sqlx::Result<Vec<Profile>> {
    let (cursor_sql, order) = match cursor {
        Cursor::First => ("", "ASC"),
        Cursor::After(_) => ("AND id > $3", "ASC"),
        Cursor::Before(_) => ("AND id < $3", "DESC"),
    };
    let search_sql = if search.is_some() {
        // Prefix ranges use the indexes on both backends.
        "AND ((customer_id >= $1 AND customer_id < $1 || '\u{10ffff}') \
              OR (email_key >= lower($1) AND email_key < lower($1) || '\u{10ffff}'))"
    } else {
        "AND $1 = $1"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM profiles WHERE 1 = 1 {search_sql} {cursor_sql} ORDER BY id {order} LIMIT $2"
    );
    let cursor_value = match cursor {
        Cursor::First => 0,
        Cursor::After(id) | Cursor::Before(id) => id,
    };
    let mut query = sqlx::query(&sql)
        .bind(search.unwrap_or_default())
        .bind(limit);
    if !matches!(cursor, Cursor::First) {
        query = query.bind(cursor_value);
    }
    let mut rows = query.try_map(Profile::from_row).fetch_all(db).await?;
    if matches!(cursor, Cursor::Before(_)) {
        rows.reverse();
    }
    Ok(rows)
}

/// The profile of a customer ID.
pub async fn find_by_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> sqlx::Result<Option<Profile>> {
    super::select_one(db, "WHERE customer_id = $1", &[customer_id.into()]).await
}

/// What a write did to one profile (the API says it as `ProfileOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ProfileOutcome)]
pub enum Outcome {
    Created,
    Updated,
    /// The profile already held every value the write carried: nothing was written, so
    /// re-exports that read only what changed do not read it again.
    Unchanged,
}

/// `stored` with `patch` applied as a write applies it: given fields set, `null` clears one.
pub fn merged(stored: &str, patch: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(stored).unwrap_or_default();
    for (name, value) in patch {
        if value.is_null() {
            attributes.remove(name);
        } else {
            attributes.insert(name.clone(), value.clone());
        }
    }
    serde_json::Value::Object(attributes).to_string()
}

/// Writes profiles, each one only when it changes something, and says what happened to
/// each row (in order). Customer IDs must be distinct within one call. On PostgreSQL the
/// existing rows are locked while the transaction lasts, so a concurrent write to the same
/// customer waits instead of being counted against a stale copy (SQLite writers are
/// serialised by `BEGIN IMMEDIATE`).
pub async fn write(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[ProfileWrite],
    sets_email_key: bool,
    now: i64,
) -> sqlx::Result<Vec<Outcome>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT customer_id, attributes, email_key FROM profiles WHERE customer_id IN ({}){lock}",
        super::placeholders(1, rows.len())
    );
    let mut query = sqlx::query_as::<_, (String, String, Option<String>)>(&sql);
    for row in rows {
        query = query.bind(&row.customer_id);
    }
    let stored: std::collections::HashMap<String, (String, Option<String>)> = query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, attributes, email_key)| (id, (attributes, email_key)))
        .collect();
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut changed = Vec::new();
    for row in rows {
        let outcome = match stored.get(&row.customer_id) {
            None => Outcome::Created,
            Some((attributes, email_key)) => {
                let patch: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&row.attributes).unwrap_or_default();
                let before: serde_json::Value =
                    serde_json::from_str(attributes).unwrap_or_default();
                let after: serde_json::Value =
                    serde_json::from_str(&merged(attributes, &patch)).unwrap_or_default();
                let key_changes = sets_email_key && *email_key != row.email_key;
                if before == after && !key_changes {
                    Outcome::Unchanged
                } else {
                    Outcome::Updated
                }
            }
        };
        if outcome != Outcome::Unchanged {
            changed.push(row.clone());
        }
        outcomes.push(outcome);
    }
    upsert(conn, backend, &changed, sets_email_key, now).await?;
    Ok(outcomes)
}

/// Deletes profiles by row ID (not erasure: results, reports and the ledger keep what they
/// hold; the profiles leave their segments at the next refresh, and each destination then
/// treats its member as a leaver). Returns how many were deleted.
pub async fn delete(conn: &mut AnyConnection, ids: &[i64]) -> sqlx::Result<u64> {
    let mut deleted = 0;
    for chunk in ids.chunks(500) {
        let list = super::placeholders(1, chunk.len());
        for table in ["profile_sources WHERE profile_id", "profiles WHERE id"] {
            let sql = format!("DELETE FROM {table} IN ({list})");
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            let done = query.execute(&mut *conn).await?;
            if table.starts_with("profiles ") {
                deleted += done.rows_affected();
            }
        }
    }
    Ok(deleted)
}

/// The first key of [`lock_customers`]' locks, naming them among PostgreSQL's advisory
/// locks ("prof").
const LOCK_SPACE: i32 = 0x7072_6f66;

/// Holds, until the transaction ends, a lock on each of these customer IDs, so that two
/// writes to a customer with no profile yet cannot both count it created (PostgreSQL; SQLite
/// writers are serialised by `BEGIN IMMEDIATE` already). The IDs share 256 locks, taken in
/// one order before any profile is read: a write of thousands of rows holds at most 256, and
/// two such writes never wait on each other in a circle.
pub async fn lock_customers(
    conn: &mut AnyConnection,
    backend: Backend,
    customer_ids: &[&str],
) -> sqlx::Result<()> {
    use sha2::{Digest, Sha256};
    if backend != Backend::Postgres {
        return Ok(());
    }
    let buckets: std::collections::BTreeSet<u8> = customer_ids
        .iter()
        .map(|id| Sha256::digest(id.as_bytes())[0])
        .collect();
    for bucket in buckets {
        // The lock's value is void, which the Any driver cannot read: it is read as text.
        sqlx::query("SELECT CAST(pg_advisory_xact_lock($1, $2) AS TEXT)")
            .bind(LOCK_SPACE)
            .bind(i32::from(bucket))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
