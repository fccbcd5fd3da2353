//! Profiles pushed by a pipeline through the automation API, one at a time or up to
//! [`MAX_ROWS`] in one request. Each row is typed and checked as an import's row is
//! ([`row::typed`]); a field the catalogue does not have yet is added with the type its
//! values suggest, as an import adds a new column (within [`fields::MAX_FIELDS`]). The rows
//! are written in their order in one transaction, under the "writes under way" note, and a
//! row that changes nothing is not written. A bad row is rejected alone, with its reason.
//! The segments are not refreshed: the next refresh (scheduled, or asked for) takes the
//! pushed profiles in.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use sqlx::AnyConnection;

use crate::db::{Backend, Db, now_millis};
use crate::domain::{FieldName, FieldType};
use crate::profiles::import::infer;
use crate::profiles::row::{self, Column, Fault};
use crate::segments::follow::follow;
use crate::store::fields::{self, Field};
use crate::store::profiles::{self, Outcome, ProfileWrite, Which};

/// The most profiles one request may push.
pub const MAX_ROWS: usize = 10_000;
/// The largest body of a bulk push (32 MiB).
pub const MAX_PUSH_BYTES: usize = 32 * 1024 * 1024;
/// The key of a pushed object that holds its customer ID.
pub const ID_KEY: &str = "customer_id";
/// Rows per call of the profile store, as an import's batches.
const RUN_ROWS: usize = 500;

/// A row as pushed: its customer ID and its values as text, an empty one clearing its field.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub customer_id: String,
    pub values: Vec<(String, String)>,
}

/// A row refused for its shape before anything was typed: its customer ID when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub customer_id: Option<String>,
    pub fault: Fault,
}

/// Why nothing of a push was written.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Another write added fields meanwhile, and this one's would pass the catalogue's limit.
    #[error("{0}")]
    TooManyFields(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A customer ID as JSON may carry it: a string, or a number as its text.
pub fn customer_id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Pushed {
    /// One profile of a bulk push: a JSON object of `customer_id` and field values.
    pub fn from_json(value: Value) -> Result<Self, Refused> {
        let refused = |customer_id: Option<String>, fault| Refused { customer_id, fault };
        let Value::Object(mut object) = value else {
            return Err(refused(
                None,
                Fault::row("The row is not a JSON object ({\"customer_id\": …, fields…})."),
            ));
        };
        let customer_id = match object.remove(ID_KEY) {
            None | Some(Value::Null) => {
                return Err(refused(None, Fault::row("The row has no customer_id.")));
            }
            Some(value) => customer_id_of(&value).ok_or_else(|| {
                refused(
                    None,
                    Fault::field(ID_KEY, "a customer ID is a string (or a number)."),
                )
            })?,
        };
        let shown = row::shown_id(&customer_id);
        Self::from_fields(customer_id, object).map_err(|fault| refused(Some(shown), fault))
    }

    /// A customer's field values: strings as they are, numbers and booleans as their text,
    /// `null` clearing the field (as an empty cell does); an array or an object is refused.
    /// Names are read as an import reads a header's.
    pub fn from_fields(customer_id: String, fields: Map<String, Value>) -> Result<Self, Fault> {
        let mut seen = HashSet::new();
        let mut values = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            let name = FieldName::parse(&key).map_err(|_| {
                Fault::field(
                    &crate::domain::text::excerpt(&key),
                    "not a field name: a name has 1 to 100 characters, none of them invisible.",
                )
            })?;
            if !seen.insert(name.as_str().to_lowercase()) {
                return Err(Fault::field(
                    name.as_str(),
                    "the field is named twice (the names differ only in case or spaces).",
                ));
            }
            let text = match value {
                Value::Null => String::new(),
                Value::String(text) => text,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(Fault::field(
                        name.as_str(),
                        "a value is a string, a number, a boolean or null, not an array or an object.",
                    ));
                }
            };
            values.push((name.as_str().to_owned(), text));
        }
        Ok(Self {
            customer_id,
            values,
        })
    }
}

/// Writes the rows in their order; a later row for the same customer is applied after the
/// earlier one. Returns each row's outcome, or why it was rejected.
pub async fn push(db: &Db, rows: &[Pushed]) -> Result<Vec<Result<Outcome, Fault>>, PushError> {
    // Noted before the transaction starts, removed after it ends: re-exports that read only
    // what changed never take a start later than this write's rows.
    let writing = crate::store::profile_writers::begin(db.pool()).await?;
    let written = write_rows(db, rows).await;
    writing.end(db.pool()).await?;
    written
}

/// [`push`] of one row.
pub async fn push_one(db: &Db, row: &Pushed) -> Result<Result<Outcome, Fault>, PushError> {
    let mut results = push(db, std::slice::from_ref(row)).await?;
    Ok(results
        .pop()
        .unwrap_or_else(|| Err(Fault::row("The profile was not written."))))
}

async fn write_rows(db: &Db, rows: &[Pushed]) -> Result<Vec<Result<Outcome, Fault>>, PushError> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.customer_id.trim()).collect();
    profiles::lock_customers(&mut tx, db.backend(), &ids).await?;
    let stored = fields::list(&mut *tx).await?;
    let (new, full) = plan_fields(&stored, rows);
    let planned = Catalogue::new(&stored, &new, full.clone());
    add_fields(&mut tx, planned.carried(rows, &new)).await?;
    // Read again: another write may have added some of these fields first, with its type.
    let catalogue = Catalogue::new(&fields::list(&mut *tx).await?, &new, full);
    let typed = rows.iter().map(|r| catalogue.type_row(r)).collect();
    let outcomes = write_in_order(&mut tx, db.backend(), typed).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Fields the rows name with a value that the catalogue lacks, each with the type its
/// values suggest, in the order they first appear; none, and why, when they would not fit
/// in the catalogue.
fn plan_fields(stored: &[Field], rows: &[Pushed]) -> (Vec<(String, FieldType)>, Option<String>) {
    let known: HashSet<&str> = stored.iter().map(|f| f.name.as_str()).collect();
    let mut order = Vec::new();
    let mut samples: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, value) in rows.iter().flat_map(|r| &r.values) {
        if known.contains(name.as_str()) || value.trim().is_empty() {
            continue;
        }
        samples
            .entry(name)
            .or_insert_with(|| {
                order.push(name.as_str());
                Vec::new()
            })
            .push(value);
    }
    if stored.len() + order.len() > fields::MAX_FIELDS {
        let full = format!(
            "there is no such field, and no room for the {} new fields this request names: the console \
             keeps at most {} fields and has {}. Delete unused fields under Data > Fields, or send only the \
             fields there are.",
            order.len(),
            fields::MAX_FIELDS,
            stored.len()
        );
        return (Vec::new(), Some(full));
    }
    let new = order
        .into_iter()
        .map(|name| {
            let values = samples.get(name).into_iter().flatten().copied();
            (name.to_owned(), infer(name, values))
        })
        .collect();
    (new, None)
}

/// Adds new fields, as an import does, unless the catalogue would then pass its limit. They
/// are added in name order: two writes adding the same fields never wait on each other in a
/// circle.
async fn add_fields(
    conn: &mut AnyConnection,
    mut new: Vec<(String, FieldType)>,
) -> Result<(), PushError> {
    if new.is_empty() {
        return Ok(());
    }
    new.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, field_type) in &new {
        fields::add(&mut *conn, name, *field_type).await?;
    }
    let count = fields::count(&mut *conn).await?;
    if count > fields::MAX_FIELDS as i64 {
        return Err(PushError::TooManyFields(format!(
            "The console keeps at most {} fields and this request would make {count}. Nothing was written: \
             delete unused fields under Data > Fields, or send only the fields there are.",
            fields::MAX_FIELDS
        )));
    }
    Ok(())
}

/// The catalogue as rows are typed by it: the stored fields, then the planned new ones.
struct Catalogue {
    columns: HashMap<String, Column>,
    /// Planned fields not stored: an empty value for one is left out (nothing to clear).
    unstored: HashSet<String>,
    primary_email: Option<String>,
    /// Why names the catalogue lacks were not added, when they did not fit.
    full: Option<String>,
}

impl Catalogue {
    fn new(stored: &[Field], new: &[(String, FieldType)], full: Option<String>) -> Self {
        let mut columns: HashMap<String, Column> = stored
            .iter()
            .map(|f| {
                let column = Column {
                    name: f.name.clone(),
                    field_type: f.field_type,
                };
                (f.name.clone(), column)
            })
            .collect();
        let mut unstored = HashSet::new();
        for (name, field_type) in new {
            if !columns.contains_key(name) {
                unstored.insert(name.clone());
                let column = Column {
                    name: name.clone(),
                    field_type: *field_type,
                };
                columns.insert(name.clone(), column);
            }
        }
        Self {
            columns,
            unstored,
            primary_email: fields::primary_email(stored).map(|f| f.name.clone()),
            full,
        }
    }

    /// The row as a write, and whether it carries the primary email field; or why not.
    fn type_row(&self, pushed: &Pushed) -> Result<(ProfileWrite, bool), Fault> {
        let mut values = Vec::with_capacity(pushed.values.len());
        let mut unknown = None;
        for (name, value) in &pushed.values {
            let empty = value.trim().is_empty();
            match self.columns.get(name) {
                Some(_) if empty && self.unstored.contains(name) => {}
                Some(column) => values.push((column, value.as_str())),
                None if empty => {}
                None => {
                    let why = self.full.as_deref().unwrap_or("there is no such field.");
                    unknown.get_or_insert_with(|| Fault::field(name, why));
                }
            }
        }
        let write = row::typed(&pushed.customer_id, values, self.primary_email.as_deref())?;
        if let Some(fault) = unknown {
            return Err(fault);
        }
        let sets_email_key = self
            .primary_email
            .as_ref()
            .is_some_and(|email| pushed.values.iter().any(|(name, _)| name == email));
        Ok((write, sets_email_key))
    }

    /// The planned new fields that rows typing well carry with a value: those are added.
    fn carried(&self, rows: &[Pushed], new: &[(String, FieldType)]) -> Vec<(String, FieldType)> {
        let mut used = HashSet::new();
        for pushed in rows.iter().filter(|r| self.type_row(r).is_ok()) {
            let named = pushed.values.iter().filter(|(_, v)| !v.trim().is_empty());
            used.extend(named.map(|(name, _)| name.as_str()));
        }
        new.iter()
            .filter(|(name, _)| used.contains(name.as_str()))
            .cloned()
            .collect()
    }
}

/// Writes the typed rows in their order, in runs of distinct customer IDs that all carry
/// the primary email field or all lack it; returns each row's outcome.
async fn write_in_order(
    conn: &mut AnyConnection,
    backend: Backend,
    typed: Vec<Result<(ProfileWrite, bool), Fault>>,
) -> sqlx::Result<Vec<Result<Outcome, Fault>>> {
    let now = now_millis();
    let mut outcomes = Vec::with_capacity(typed.len());
    let mut run = Run::default();
    for (i, row) in typed.into_iter().enumerate() {
        match row {
            Ok((write, sets_email_key)) => {
                if !run.takes(&write, sets_email_key) {
                    run.write(&mut *conn, backend, now, &mut outcomes).await?;
                }
                run.push(i, write, sets_email_key);
                // A placeholder, replaced once the row's run is written.
                outcomes.push(Ok(Outcome::Unchanged));
            }
            Err(fault) => outcomes.push(Err(fault)),
        }
    }
    run.write(conn, backend, now, &mut outcomes).await?;
    Ok(outcomes)
}

/// Rows written by one call of the profile store.
#[derive(Default)]
struct Run {
    rows: Vec<ProfileWrite>,
    at: Vec<usize>,
    ids: HashSet<String>,
    sets_email_key: bool,
}

impl Run {
    fn takes(&self, write: &ProfileWrite, sets_email_key: bool) -> bool {
        self.rows.is_empty()
            || (self.sets_email_key == sets_email_key
                && self.rows.len() < RUN_ROWS
                && !self.ids.contains(&write.customer_id))
    }

    fn push(&mut self, at: usize, write: ProfileWrite, sets_email_key: bool) {
        self.sets_email_key = sets_email_key;
        self.ids.insert(write.customer_id.clone());
        self.rows.push(write);
        self.at.push(at);
    }

    async fn write(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        now: i64,
        outcomes: &mut [Result<Outcome, Fault>],
    ) -> sqlx::Result<()> {
        let run = std::mem::take(self);
        let written = profiles::write(conn, backend, &run.rows, run.sets_email_key, now).await?;
        let changed: Vec<&str> = run
            .rows
            .iter()
            .zip(&written)
            .filter(|(_, outcome)| **outcome != Outcome::Unchanged)
            .map(|(row, _)| row.customer_id.as_str())
            .collect();
        follow(conn, backend, Which::Customers(&changed)).await?;
        for (at, outcome) in run.at.into_iter().zip(written) {
            outcomes[at] = Ok(outcome);
        }
        Ok(())
    }
}

/// Deletes a customer's profile; false when there is none. Deletion is not erasure (see
/// [`profiles::delete`]): the profile leaves its segments at once, and each destination
/// then treats its member as a leaver.
pub async fn delete(db: &Db, customer_id: &str) -> sqlx::Result<bool> {
    let writing = crate::store::profile_writers::begin(db.pool()).await?;
    let deleted = delete_one(db, customer_id.trim()).await;
    writing.end(db.pool()).await?;
    deleted
}

async fn delete_one(db: &Db, customer_id: &str) -> sqlx::Result<bool> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    profiles::lock_customers(&mut tx, db.backend(), &[customer_id]).await?;
    let Some(profile) = profiles::find_by_customer(&mut *tx, customer_id).await? else {
        return Ok(false);
    };
    let deleted = profiles::delete(&mut tx, &[profile.id]).await?;
    follow(&mut tx, db.backend(), Which::Profiles(&[profile.id])).await?;
    tx.commit().await?;
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn json_values_become_cells() {
        let pushed = Pushed::from_json(json!({
            "customer_id": 42, "Name": "Ada", "Age": 36, "OptIn": true, "Nick": null
        }))
        .unwrap();
        assert_eq!(pushed.customer_id, "42");
        let mut values = pushed.values;
        values.sort();
        let expected = [
            ("Age", "36"),
            ("Name", "Ada"),
            ("Nick", ""),
            ("OptIn", "true"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn rows_of_the_wrong_shape_say_why() {
        let reason = |value: Value| Pushed::from_json(value).unwrap_err().fault.to_string();
        assert_eq!(
            reason(json!({"Name": "Ada"})),
            "The row has no customer_id."
        );
        assert!(reason(json!([1])).contains("not a JSON object"));
        assert!(reason(json!({"customer_id": {"a": 1}})).starts_with("customer_id:"));
        let nested = Pushed::from_json(json!({"customer_id": "C1", "Tags": ["a"]})).unwrap_err();
        assert_eq!(nested.customer_id.as_deref(), Some("C1"));
        assert!(
            nested
                .fault
                .to_string()
                .starts_with("Tags: a value is a string")
        );
        let twice = Pushed::from_fields("C1".into(), object(json!({"Name": 1, "name": 2})));
        assert!(twice.unwrap_err().message.contains("named twice"));
        let unnamed = Pushed::from_fields("C1".into(), object(json!({" ": 1})));
        assert!(unnamed.unwrap_err().message.contains("not a field name"));
    }

    fn field(id: i64, name: &str, field_type: FieldType) -> Field {
        Field {
            id,
            name: name.into(),
            field_type,
        }
    }

    fn pushed(id: &str, values: &[(&str, &str)]) -> Pushed {
        Pushed {
            customer_id: id.into(),
            values: values
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn new_fields_take_the_type_their_values_suggest() {
        let stored = [field(1, "Email", FieldType::Email)];
        let rows = [
            pushed("C1", &[("Age", "31"), ("Email", "a@x.io"), ("Nick", "")]),
            pushed("C2", &[("Age", "40"), ("Since", "2020-01-02")]),
        ];
        let (new, full) = plan_fields(&stored, &rows);
        assert_eq!(full, None);
        assert_eq!(
            new,
            [
                ("Age".to_string(), FieldType::Number),
                ("Since".to_string(), FieldType::Date)
            ],
            "a field named with no value is not made"
        );
        let catalogue = Catalogue::new(&stored, &new, None);
        let (write, sets_email_key) = catalogue.type_row(&rows[0]).unwrap();
        assert!(sets_email_key);
        assert_eq!(write.email_key.as_deref(), Some("a@x.io"));
        assert!(!write.attributes.contains("Nick"));
        assert!(!catalogue.type_row(&rows[1]).unwrap().1);
    }

    #[test]
    fn names_past_the_catalogue_limit_reject_their_rows_alone() {
        let stored: Vec<Field> = (0..fields::MAX_FIELDS as i64)
            .map(|i| field(i, &format!("F{i}"), FieldType::Text))
            .collect();
        let rows = [
            pushed("C1", &[("Fresh", "x")]),
            pushed("C2", &[("F1", "y")]),
        ];
        let (new, full) = plan_fields(&stored, &rows);
        assert!(new.is_empty());
        let catalogue = Catalogue::new(&stored, &new, full);
        let fault = catalogue.type_row(&rows[0]).unwrap_err();
        assert_eq!(fault.field.as_deref(), Some("Fresh"));
        assert!(fault.message.contains("at most 500 fields"), "{fault}");
        assert!(catalogue.type_row(&rows[1]).is_ok());
    }
}
