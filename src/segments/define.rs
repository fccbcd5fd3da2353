//! Saving and deleting segments: the one path the rule builder's page and the automation API
//! both take, with the same checks, the same refusals and the same background refresh.

use std::fmt;

use sqlx::{Any, Executor};

use crate::db::Db;
use crate::domain::Invalid;
use crate::domain::segment_rules::{RuleError, SegmentName, SegmentRules};
use crate::store::segments::{self, Definition, Segment};
use crate::store::{self as db_store, destinations, fields};

/// One thing wrong with a segment as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentRefusal {
    /// Its name: empty, too long, with invisible characters, or taken.
    Name(Invalid),
    /// Its rules: the condition and the part of it at fault.
    Rules(RuleError),
}

impl fmt::Display for SegmentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentRefusal::Name(why) => why.fmt(f),
            SegmentRefusal::Rules(why) => why.fmt(f),
        }
    }
}

/// Why a rules segment was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))]
    Refused(Vec<SegmentRefusal>),
    #[error("There is no such segment.")]
    NotFound,
    #[error(
        "“{0}” is a static segment, a list of customer IDs: it has no rules to change. \
         Upload a new list under Data > Segments instead."
    )]
    Static(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A rules segment as saved.
#[derive(Debug, Clone)]
pub struct Saved {
    pub id: i64,
    pub name: SegmentName,
}

/// Saves a rules segment, a new one (`id` None) or a change of rules segment `id`, with the
/// rule builder's checks; its members are then computed in the background.
pub async fn save_rules(
    db: &Db,
    user_id: i64,
    id: Option<i64>,
    name: &str,
    rules: SegmentRules,
) -> Result<Saved, SaveError> {
    if let Some(id) = id {
        rules_segment(db, id).await?;
    }
    let (name, definition) = checked(db, name, rules).await?;
    let id = write(db, id, &name, &definition).await?;
    super::refresh_in_background(db, user_id, Some(vec![id]));
    tracing::info!(user_id, segment_id = id, "segment saved");
    Ok(Saved { id, name })
}

/// Segment `id`, if it is a rules segment.
async fn rules_segment(db: &Db, id: i64) -> Result<Segment, SaveError> {
    match segments::find(db.pool(), id).await? {
        None => Err(SaveError::NotFound),
        Some(s) if s.definition == Definition::Static => Err(SaveError::Static(s.name)),
        Some(s) => Ok(s),
    }
}

/// The name and the rules checked, every refusal at once.
async fn checked(
    db: &Db,
    name: &str,
    rules: SegmentRules,
) -> Result<(SegmentName, Definition), SaveError> {
    let catalogue = fields::as_catalogue(&fields::list(db.pool()).await?);
    let mut refusals = Vec::new();
    let name = SegmentName::parse(name)
        .map_err(|why| refusals.push(SegmentRefusal::Name(why)))
        .ok();
    if let Err(errors) = rules.check(&catalogue) {
        refusals.extend(errors.into_iter().map(SegmentRefusal::Rules));
    }
    match name {
        Some(name) if refusals.is_empty() => Ok((name, Definition::Rules(rules))),
        _ => Err(SaveError::Refused(refusals)),
    }
}

/// Creates or updates the segment; a name another segment has is a refusal of the name.
async fn write(
    db: &Db,
    id: Option<i64>,
    name: &SegmentName,
    definition: &Definition,
) -> Result<i64, SaveError> {
    let pool = db.pool();
    let saved = match id {
        Some(id) => segments::update(pool, id, name.as_str(), definition)
            .await
            .map(|()| id),
        None => segments::create(pool, name.as_str(), definition).await,
    };
    saved.map_err(|err| {
        if db_store::is_unique_violation(&err) {
            let taken = format!("Name: a segment named “{name}” already exists.");
            SaveError::Refused(vec![SegmentRefusal::Name(Invalid::new(taken))])
        } else {
            err.into()
        }
    })
}

/// Why a segment was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("There is no such segment.")]
    NotFound,
    #[error(
        "The segment “{segment}” is exported by {}: choose other segments for {} first.",
        named(.destinations),
        if .destinations.len() == 1 { "it" } else { "them" }
    )]
    InUse {
        segment: String,
        destinations: Vec<String>,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `destination “A”`, or `destinations “A”, “B”`.
fn named(destinations: &[String]) -> String {
    let quoted: Vec<String> = destinations.iter().map(|d| format!("“{d}”")).collect();
    match quoted.as_slice() {
        [one] => format!("destination {one}"),
        many => format!("destinations {}", many.join(", ")),
    }
}

/// Refuses a segment that a destination exports: deleting it would change what the
/// destination sends without anyone choosing so.
pub async fn check_unused<'e>(
    db: impl Executor<'e, Database = Any>,
    segment: &Segment,
) -> Result<(), DeleteError> {
    let destinations = destinations::names_exporting(db, segment.id).await?;
    if destinations.is_empty() {
        Ok(())
    } else {
        Err(DeleteError::InUse {
            segment: segment.name.clone(),
            destinations,
        })
    }
}

/// Deletes a segment and its members, unless a destination exports it. Returns what it was.
pub async fn delete(db: &Db, user_id: i64, id: i64) -> Result<Segment, DeleteError> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let segment = segments::find_for_update(&mut tx, id)
        .await?
        .ok_or(DeleteError::NotFound)?;
    check_unused(&mut *tx, &segment).await?;
    segments::delete(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(user_id, segment_id = id, "segment deleted");
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_uses_a_segment_is_named() {
        let one = DeleteError::InUse {
            segment: "Germany".into(),
            destinations: vec!["Newsletter".into()],
        };
        assert_eq!(
            one.to_string(),
            "The segment “Germany” is exported by destination “Newsletter”: choose other \
             segments for it first."
        );
        let two = DeleteError::InUse {
            segment: "Germany".into(),
            destinations: vec!["A".into(), "B".into()],
        };
        assert!(
            two.to_string()
                .contains("by destinations “A”, “B”: choose other segments for them")
        );
    }
}
