//! Plan: the union of the destination's segments (current membership), one record per
//! customer, mapped to what Mailchimp receives. Rows that cannot be sent (no or invalid
//! address, an address another customer already has) are reported here, never dropped.

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::Db;
use crate::domain::EmailAddress;
use crate::domain::destination::MAX_EXPORT_PROFILES;
use crate::store::destinations::{self, Destination};
use crate::store::results::MemberResult;
use crate::store::segments;

/// One member as Mailchimp will get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub customer_id: String,
    pub email: String,
    pub hash: String,
    pub merge_fields: Map<String, Value>,
    /// Tag names this member should carry (its segments), sorted.
    pub tags: Vec<String>,
    /// Digest of what the upsert sends: unchanged digest, nothing to send.
    pub content_hash: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub records: Vec<Record>,
    pub rejected: Vec<MemberResult>,
    /// The names of the destination's segments (each becomes a tag).
    pub segment_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "The selected segments hold {0} profiles; at most 1000000 can be exported to Mailchimp. Nothing was sent. \
         Choose fewer segments."
    )]
    TooMany(i64),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Builds the plan; `number_tags` are merge fields whose values are sent as numbers.
pub async fn plan(
    db: &Db,
    destination: &Destination,
    number_tags: &[String],
) -> Result<Plan, PlanError> {
    let segment_ids = destinations::segment_ids(db.pool(), destination.id)
        .await
        .map_err(anyhow::Error::from)?;
    let total = destinations::distinct_profiles(db.pool(), &segment_ids)
        .await
        .map_err(anyhow::Error::from)?;
    if total > MAX_EXPORT_PROFILES {
        return Err(PlanError::TooMany(total));
    }
    let mut names = HashMap::new();
    for id in &segment_ids {
        if let Some(segment) = segments::find(db.pool(), *id)
            .await
            .map_err(anyhow::Error::from)?
        {
            names.insert(*id, segment.name);
        }
    }
    let mut plan = Plan {
        segment_names: names.values().cloned().collect(),
        ..Plan::default()
    };
    plan.segment_names.sort();
    if segment_ids.is_empty() {
        return Ok(plan);
    }
    let list = segment_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT m.segment_id, p.id, p.customer_id, p.attributes FROM segment_members m \
         JOIN segments s ON s.id = m.segment_id AND s.generation = m.generation \
         JOIN profiles p ON p.id = m.profile_id WHERE m.segment_id IN ({list}) ORDER BY p.id, m.segment_id"
    );
    let email_field = destination.email_field.clone().unwrap_or_default();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut rows = sqlx::query(&sql).fetch(db.pool());
    // Rows come grouped by profile: gather one profile's segments, then map it.
    let mut current: Option<(i64, String, String, BTreeSet<String>)> = None;
    while let Some(row) = rows.try_next().await.map_err(anyhow::Error::from)? {
        let segment_id: i64 = row.try_get(0).map_err(anyhow::Error::from)?;
        let profile_id: i64 = row.try_get(1).map_err(anyhow::Error::from)?;
        let tag = names.get(&segment_id).cloned().unwrap_or_default();
        match &mut current {
            Some((id, _, _, tags)) if *id == profile_id => {
                tags.insert(tag);
            }
            _ => {
                if let Some((_, customer_id, attributes, tags)) = current.take() {
                    map(
                        &mut plan,
                        &mut seen,
                        destination,
                        &email_field,
                        number_tags,
                        customer_id,
                        &attributes,
                        tags,
                    );
                }
                let customer_id: String = row.try_get(2).map_err(anyhow::Error::from)?;
                let attributes: String = row.try_get(3).map_err(anyhow::Error::from)?;
                current = Some((profile_id, customer_id, attributes, BTreeSet::from([tag])));
            }
        }
    }
    if let Some((_, customer_id, attributes, tags)) = current.take() {
        map(
            &mut plan,
            &mut seen,
            destination,
            &email_field,
            number_tags,
            customer_id,
            &attributes,
            tags,
        );
    }
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn map(
    plan: &mut Plan,
    seen: &mut HashMap<String, String>,
    destination: &Destination,
    email_field: &str,
    number_tags: &[String],
    customer_id: String,
    attributes: &str,
    tags: BTreeSet<String>,
) {
    let attributes: Map<String, Value> = serde_json::from_str(attributes).unwrap_or_default();
    let raw = match attributes.get(email_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => {
            plan.rejected.push(skip(
                &customer_id,
                "",
                "No email address",
                &format!("The profile has no {email_field}."),
            ));
            return;
        }
    };
    let email = match EmailAddress::parse(&raw) {
        Ok(email) => email,
        Err(reason) => {
            plan.rejected.push(skip(
                &customer_id,
                &raw,
                "Invalid email address",
                &format!("{reason}."),
            ));
            return;
        }
    };
    let hash = email.subscriber_hash();
    if let Some(first) = seen.get(&hash) {
        plan.rejected.push(skip(
            &customer_id,
            &raw,
            "Repeated email address",
            &format!("Customer {first} has the same address (addresses are compared without case); it is exported once."),
        ));
        return;
    }
    seen.insert(hash.clone(), customer_id.clone());
    let mut merge_fields = Map::new();
    for mapping in &destination.field_mappings {
        let value = match attributes.get(&mapping.field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.is_empty() => continue,
            Some(Value::Number(n)) if number_tags.contains(&mapping.tag) => {
                Value::Number(n.clone())
            }
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(other) => Value::String(other.to_string()),
        };
        merge_fields.insert(mapping.tag.clone(), value);
    }
    let digest_input = format!("{}|{}", email.as_str(), Value::Object(merge_fields.clone()));
    plan.records.push(Record {
        customer_id,
        email: raw,
        hash,
        content_hash: crate::domain::subscriber_hash(&digest_input),
        merge_fields,
        tags: tags.into_iter().collect(),
    });
}

fn skip(customer_id: &str, email: &str, title: &str, detail: &str) -> MemberResult {
    MemberResult {
        customer_id: customer_id.to_owned(),
        email: email.to_owned(),
        outcome: "skipped",
        title: title.to_owned(),
        detail: detail.to_owned(),
    }
}
