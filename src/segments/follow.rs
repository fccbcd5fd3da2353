//! Segments that follow each profile change: after a write (a source pull, the profile
//! API, an import) or a deletion, only the profiles it touched are evaluated against every
//! segment, and their membership in the published generation is changed in the write's
//! own transaction. Readers see the change whole or not at all, and a refresh of every
//! profile finds the same members (the test `segments_follow` compares both).
//!
//! A segment whose published members were computed from another definition (rules edited,
//! a field retyped or deleted) is left to its refresh, which computes it whole.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use sqlx::AnyConnection;

use crate::db::{Backend, now_millis};
use crate::store::fields;
use crate::store::profiles::{self, Which};
use crate::store::segments::{self, Definition};

/// Brings the published membership of every segment up to date for the profiles `which`
/// names (written, or deleted: a profile that no longer exists leaves every segment).
/// Runs in the caller's transaction, so the members change when the profiles do.
pub async fn follow(
    conn: &mut AnyConnection,
    backend: Backend,
    which: Which<'_>,
) -> sqlx::Result<()> {
    let empty = match which {
        Which::Customers(ids) => ids.is_empty(),
        Which::Profiles(ids) => ids.is_empty(),
    };
    if empty {
        return Ok(());
    }
    segments::lock_membership(conn, backend).await?;
    let all = segments::list(&mut *conn).await?;
    if all.is_empty() {
        return Ok(());
    }
    let as_of = now_millis();
    let catalogue = fields::as_catalogue(&fields::list(&mut *conn).await?);
    let found = profiles::attributes_of(conn, which).await?;
    let ids: Vec<i64> = match which {
        // A deleted profile is among the IDs asked for, though not found.
        Which::Profiles(asked) => asked.to_vec(),
        Which::Customers(_) => found.iter().map(|(id, _, _)| *id).collect(),
    };
    let attributes: Vec<(i64, Map<String, Value>)> = found
        .iter()
        .map(|(id, _, text)| (*id, serde_json::from_str(text).unwrap_or_default()))
        .collect();
    let customers: Vec<&str> = found.iter().map(|(_, c, _)| c.as_str()).collect();
    let mut listed: HashMap<i64, HashSet<&str>> = HashMap::new();
    let listed_rows = segments::listed_among(conn, &customers).await?;
    for (segment_id, customer) in &listed_rows {
        listed
            .entry(*segment_id)
            .or_default()
            .insert(customer.as_str());
    }
    for segment in all {
        if !crate::segments::is_current(&segment, &catalogue) {
            continue;
        }
        let wanted: HashSet<i64> = match &segment.definition {
            Definition::Rules(rules) => {
                let Ok(compiled) = rules.compile(&catalogue) else {
                    continue;
                };
                attributes
                    .iter()
                    .filter(|(_, a)| compiled.matches(a))
                    .map(|(id, _)| *id)
                    .collect()
            }
            Definition::Static => {
                let names = listed.get(&segment.id);
                found
                    .iter()
                    .filter(|(_, c, _)| names.is_some_and(|n| n.contains(c.as_str())))
                    .map(|(id, _, _)| *id)
                    .collect()
            }
        };
        let have = segments::members_among(conn, segment.id, segment.generation, &ids).await?;
        let joining: Vec<i64> = wanted.difference(&have).copied().collect();
        let leaving: Vec<i64> = have.difference(&wanted).copied().collect();
        segments::remove_members(conn, segment.id, segment.generation, &leaving).await?;
        segments::add_members(conn, segment.id, segment.generation, &joining).await?;
        let joined = joining.len() as i64 - leaving.len() as i64;
        // A member was written, joined or left (not only profiles outside the segment).
        let touched = !wanted.is_empty() || !have.is_empty();
        segments::followed(conn, segment.id, joined, touched, as_of).await?;
    }
    Ok(())
}
