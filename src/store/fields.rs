//! The profile field catalogue.

use std::collections::HashMap;

use sqlx::{Any, Executor, Row};

use crate::db::now_millis;
use crate::domain::FieldType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub id: i64,
    pub name: String,
    pub field_type: FieldType,
}

/// Every field in the order they were first seen.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Field>> {
    sqlx::query("SELECT id, name, field_type FROM profile_fields ORDER BY id")
        .try_map(|row: sqlx::any::AnyRow| {
            let kind: String = row.try_get("field_type")?;
            Ok(Field {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                field_type: kind
                    .parse()
                    .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            })
        })
        .fetch_all(db)
        .await
}

pub fn as_catalogue(fields: &[Field]) -> HashMap<String, FieldType> {
    fields
        .iter()
        .map(|f| (f.name.clone(), f.field_type))
        .collect()
}

/// Adds a field unless one of that name exists.
pub async fn add<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
    field_type: FieldType,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO profile_fields (name, field_type, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(field_type.as_str())
    .bind(now_millis())
    .execute(db)
    .await
    .map(drop)
}

/// The field whose value is a profile's search key for email: the first email field.
pub fn primary_email(fields: &[Field]) -> Option<&Field> {
    fields.iter().find(|f| f.field_type == FieldType::Email)
}

/// The most fields the catalogue holds: every page that lists fields stays readable, and a
/// file with thousands of columns is refused instead of adding them for good.
pub const MAX_FIELDS: usize = 500;

pub async fn count<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM profile_fields")
        .fetch_one(db)
        .await
}

/// Segments and destinations, loaded once, to tell what uses each field.
pub struct Users {
    segments: Vec<crate::store::segments::Segment>,
    destinations: Vec<crate::store::destinations::Destination>,
}

impl Users {
    pub async fn load(pool: &sqlx::AnyPool) -> sqlx::Result<Self> {
        Ok(Self {
            segments: crate::store::segments::list(pool).await?,
            destinations: crate::store::destinations::list(pool).await?,
        })
    }

    /// What uses a field: segments whose rules name it, destinations that read it, and the
    /// profile search (the first email field). A field in use cannot be deleted.
    pub fn of(&self, fields: &[Field], field: &Field) -> Vec<String> {
        let mut uses = Vec::new();
        if primary_email(fields).is_some_and(|f| f.id == field.id) {
            uses.push("profile search by email (the first email field)".to_owned());
        }
        for segment in &self.segments {
            if let crate::store::segments::Definition::Rules(rules) = &segment.definition {
                if rules.conditions.iter().any(|c| c.field == field.name) {
                    uses.push(format!("segment “{}”", segment.name));
                }
            }
        }
        for destination in &self.destinations {
            let reads = destination.email_field.as_deref() == Some(field.name.as_str())
                || destination
                    .field_mappings
                    .iter()
                    .any(|m| m.field == field.name);
            if reads {
                uses.push(format!("destination “{}”", destination.display_name));
            }
        }
        uses
    }
}

/// Deletes a field from the catalogue and its value from every profile, in one transaction.
pub async fn delete(db: &crate::db::Db, field: &Field) -> anyhow::Result<()> {
    let writing = crate::store::profile_writers::begin(db.pool()).await?;
    let deleted = delete_everywhere(db, field).await;
    writing.end(db.pool()).await?;
    deleted
}

/// Every profile that had the field is stamped as changed, so re-exports send it again.
async fn delete_everywhere(db: &crate::db::Db, field: &Field) -> anyhow::Result<()> {
    let now = crate::db::now_millis();
    let mut tx = crate::db::begin_write(db.pool()).await?;
    sqlx::query("DELETE FROM profile_fields WHERE id = $1")
        .bind(field.id)
        .execute(&mut *tx)
        .await?;
    match db.backend() {
        crate::db::Backend::Postgres => {
            sqlx::query(
                "UPDATE profiles SET attributes = (attributes::jsonb - $1)::text, updated_at = $2 \
                 WHERE jsonb_exists(attributes::jsonb, $1)",
            )
            .bind(&field.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        crate::db::Backend::Sqlite => {
            // A JSON path names the key; every character but the quote can stand in it
            // as it is, and a name with a quote is rewritten profile by profile.
            if field.name.contains('"') {
                let rows: Vec<(i64, String)> =
                    sqlx::query_as("SELECT id, attributes FROM profiles")
                        .fetch_all(&mut *tx)
                        .await?;
                for (id, attributes) in rows {
                    let mut value: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(&attributes)?;
                    if value.remove(&field.name).is_some() {
                        sqlx::query(
                            "UPDATE profiles SET attributes = $1, updated_at = $2 WHERE id = $3",
                        )
                        .bind(serde_json::Value::Object(value).to_string())
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            } else {
                let path = format!("$.\"{}\"", field.name);
                sqlx::query(
                    "UPDATE profiles SET attributes = json_remove(attributes, $1), updated_at = $2 \
                     WHERE json_type(attributes, $1) IS NOT NULL",
                )
                .bind(&path)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
