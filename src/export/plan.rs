//! Plan: the union of the destination's segments (current membership), one record per
//! customer, mapped to what Mailchimp receives. Rows that cannot be sent (no or invalid
//! address, an address another customer already has) are reported here, never dropped.
//!
//! The plan is read in chunks of profile IDs, so a run holds one chunk at a time however
//! many profiles it exports; what it keeps across chunks is one 24-byte entry per address
//! (to find an address that two customers share).

use std::collections::{BTreeSet, HashMap};

use md5::{Digest, Md5};
use serde_json::{Map, Value};
use sqlx::Row;

use crate::db::Db;
use crate::domain::EmailAddress;
use crate::domain::destination::MAX_EXPORT_PROFILES;
use crate::store::destinations::{self, Destination, FieldMapping};
use crate::store::results::MemberResult;
use crate::store::segments;

/// Profile IDs read per chunk.
const CHUNK_IDS: i64 = 5_000;

/// A subscriber hash (MD5 of the lower-cased address) as a number.
pub type Hash = u128;

pub fn hash_of(hex: &str) -> Option<Hash> {
    (hex.len() == 32)
        .then(|| Hash::from_str_radix(hex, 16).ok())
        .flatten()
}

pub fn hex_of(hash: Hash) -> String {
    format!("{hash:032x}")
}

/// One member as Mailchimp will get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub customer_id: String,
    pub email: String,
    pub hash: Hash,
    pub merge_fields: Map<String, Value>,
    /// Tag names this member should carry (its segments), sorted.
    pub tags: Vec<String>,
    /// Digest of what the upsert sends: unchanged digest, nothing to send.
    pub content_hash: Hash,
}

/// What one chunk of the plan holds.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    pub rejected: Vec<MemberResult>,
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

/// Reads a destination's plan chunk by chunk, in profile order.
pub struct PlanReader {
    db: Db,
    /// The destination's segments and their names (each becomes a tag).
    names: HashMap<i64, String>,
    segment_list: String,
    email_field: String,
    mappings: Vec<FieldMapping>,
    number_tags: Vec<String>,
    /// Profiles in the segments, counted before the first chunk.
    pub total: i64,
    after: i64,
    last: i64,
    /// The first profile (its row ID) seen with each address.
    seen: HashMap<Hash, i64>,
}

impl PlanReader {
    /// Prepares the plan; `number_tags` are merge fields whose values are sent as numbers.
    pub async fn open(
        db: &Db,
        destination: &Destination,
        number_tags: &[String],
    ) -> Result<Self, PlanError> {
        let pool = db.pool();
        let segment_ids = destinations::segment_ids(pool, destination.id)
            .await
            .map_err(anyhow::Error::from)?;
        let total = destinations::distinct_profiles(pool, &segment_ids)
            .await
            .map_err(anyhow::Error::from)?;
        if total > MAX_EXPORT_PROFILES {
            return Err(PlanError::TooMany(total));
        }
        let mut names = HashMap::new();
        for id in &segment_ids {
            if let Some(segment) = segments::find(pool, *id)
                .await
                .map_err(anyhow::Error::from)?
            {
                names.insert(*id, segment.name);
            }
        }
        let segment_list = segment_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let last: i64 = if segment_ids.is_empty() {
            0
        } else {
            sqlx::query_scalar::<_, Option<i64>>(&format!(
                "SELECT MAX(m.profile_id) FROM segment_members m JOIN segments s \
                 ON s.id = m.segment_id AND s.generation = m.generation WHERE m.segment_id IN ({segment_list})"
            ))
            .fetch_one(pool)
            .await
            .map_err(anyhow::Error::from)?
            .unwrap_or(0)
        };
        Ok(Self {
            db: db.clone(),
            names,
            segment_list,
            email_field: destination.email_field.clone().unwrap_or_default(),
            mappings: destination.field_mappings.clone(),
            number_tags: number_tags.to_vec(),
            total,
            after: 0,
            last,
            seen: HashMap::with_capacity(total.clamp(0, MAX_EXPORT_PROFILES) as usize),
        })
    }

    /// The names of the destination's segments, sorted.
    pub fn segment_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.values().cloned().collect();
        names.sort();
        names
    }

    /// The next chunk, or `None` when every profile has been read.
    pub async fn next_chunk(&mut self) -> anyhow::Result<Option<Chunk>> {
        while self.after < self.last {
            let upto = (self.after + CHUNK_IDS).min(self.last);
            let sql = format!(
                "SELECT m.segment_id, p.id, p.customer_id, p.attributes FROM segment_members m \
                 JOIN segments s ON s.id = m.segment_id AND s.generation = m.generation \
                 JOIN profiles p ON p.id = m.profile_id \
                 WHERE m.segment_id IN ({}) AND m.profile_id > $1 AND m.profile_id <= $2 \
                 ORDER BY m.profile_id, m.segment_id",
                self.segment_list
            );
            let rows = sqlx::query(&sql)
                .bind(self.after)
                .bind(upto)
                .fetch_all(self.db.pool())
                .await?;
            self.after = upto;
            if rows.is_empty() {
                continue;
            }
            // Rows come grouped by profile: gather one profile's segments, then map it.
            let mut chunk = Chunk::default();
            let mut repeats: Vec<(usize, i64)> = Vec::new();
            let mut current: Option<(i64, String, String, BTreeSet<String>)> = None;
            for row in rows {
                let segment_id: i64 = row.try_get(0)?;
                let profile_id: i64 = row.try_get(1)?;
                let tag = self.names.get(&segment_id).cloned().unwrap_or_default();
                match &mut current {
                    Some((id, _, _, tags)) if *id == profile_id => {
                        tags.insert(tag);
                    }
                    _ => {
                        if let Some(profile) = current.take() {
                            self.map(&mut chunk, &mut repeats, profile);
                        }
                        let customer_id: String = row.try_get(2)?;
                        let attributes: String = row.try_get(3)?;
                        current =
                            Some((profile_id, customer_id, attributes, BTreeSet::from([tag])));
                    }
                }
            }
            if let Some(profile) = current.take() {
                self.map(&mut chunk, &mut repeats, profile);
            }
            self.name_first_customers(&mut chunk, &repeats).await?;
            return Ok(Some(chunk));
        }
        Ok(None)
    }

    /// A repeated address names the customer who has it first.
    async fn name_first_customers(
        &self,
        chunk: &mut Chunk,
        repeats: &[(usize, i64)],
    ) -> anyhow::Result<()> {
        if repeats.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<i64> = repeats.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut customers = HashMap::new();
        for part in ids.chunks(500) {
            let list = part
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
                "SELECT id, customer_id FROM profiles WHERE id IN ({list})"
            ))
            .fetch_all(self.db.pool())
            .await?;
            customers.extend(rows);
        }
        for (index, first) in repeats {
            let name = customers
                .get(first)
                .map_or("another customer", String::as_str);
            chunk.rejected[*index].detail = format!(
                "Customer {name} has the same address (addresses are compared without case); it is exported once."
            );
        }
        Ok(())
    }

    fn map(
        &mut self,
        chunk: &mut Chunk,
        repeats: &mut Vec<(usize, i64)>,
        (profile_id, customer_id, attributes, tags): (i64, String, String, BTreeSet<String>),
    ) {
        let attributes: Map<String, Value> = serde_json::from_str(&attributes).unwrap_or_default();
        let email_field = &self.email_field;
        let raw = match attributes.get(email_field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                chunk.rejected.push(skip(
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
                chunk.rejected.push(skip(
                    &customer_id,
                    &raw,
                    "Invalid email address",
                    &format!("{reason}."),
                ));
                return;
            }
        };
        let hash = hash_of(&email.subscriber_hash()).expect("an MD5 digest is 32 hex digits");
        if let Some(first) = self.seen.get(&hash) {
            repeats.push((chunk.rejected.len(), *first));
            chunk
                .rejected
                .push(skip(&customer_id, &raw, "Repeated email address", ""));
            return;
        }
        self.seen.insert(hash, profile_id);
        let mut merge_fields = Map::new();
        for mapping in &self.mappings {
            let value = match attributes.get(&mapping.field) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) if s.is_empty() => continue,
                Some(Value::Number(n)) if self.number_tags.contains(&mapping.tag) => {
                    Value::Number(n.clone())
                }
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(other) => Value::String(other.to_string()),
            };
            merge_fields.insert(mapping.tag.clone(), value);
        }
        // Exactly what the upsert sends (the address as typed, every merge value as is).
        let mut digest = Md5::new();
        digest.update(raw.as_bytes());
        digest.update(b"\0");
        digest.update(Value::Object(merge_fields.clone()).to_string().as_bytes());
        let content_hash = Hash::from_be_bytes(digest.finalize().into());
        chunk.records.push(Record {
            customer_id,
            email: raw,
            hash,
            content_hash,
            merge_fields,
            tags: tags.into_iter().collect(),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let hex = crate::domain::subscriber_hash("Urist.McVankab@freddiesjokes.com");
        assert_eq!(hex, "62eeb292278cc15f5817cb78f7790b08");
        let hash = hash_of(&hex).unwrap();
        assert_eq!(hex_of(hash), hex);
        assert_eq!(hash_of("not hex"), None);
        assert_eq!(hex_of(1), "00000000000000000000000000000001");
    }
}
