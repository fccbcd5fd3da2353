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
