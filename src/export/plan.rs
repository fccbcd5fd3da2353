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
    /// Profiles skipped because an earlier one has their address: (customer ID, address).
    pub repeats: Vec<(String, Hash)>,
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

/// What the plan needs to know of the audience's merge fields, read from them in one place
/// for a run and its preview.
#[derive(Debug, Clone, Default)]
pub struct FieldFacts {
    /// Merge fields whose values are sent as numbers.
    pub numbers: Vec<String>,
    /// Required merge fields with no default: a value emptied in a profile is not sent to
    /// them (Mailchimp would refuse the whole member), so they keep the value they have.
    pub required: Vec<String>,
}

impl FieldFacts {
    pub fn of(fields: &[crate::mailchimp::client::MergeField]) -> Self {
        let tags = |keep: fn(&crate::mailchimp::client::MergeField) -> bool| {
            fields
                .iter()
                .filter(|f| keep(f))
                .map(|f| f.tag.clone())
                .collect()
        };
        Self {
            numbers: tags(|f| f.kind == "number"),
            required: tags(crate::mailchimp::merge_rules::needs_value),
        }
    }
}

/// The value that empties a merge field.
const EMPTIED: Value = Value::String(String::new());

/// Reads a destination's plan chunk by chunk, in profile order.
pub struct PlanReader {
    db: Db,
    /// The destination's segments and their names (each becomes a tag).
    names: HashMap<i64, String>,
    segment_list: String,
    email_field: String,
    mappings: Vec<FieldMapping>,
    facts: FieldFacts,
    /// Profiles in the segments, counted before the first chunk.
    pub total: i64,
    after: i64,
    last: i64,
    /// The first profile (its row ID) seen with each address: 20 bytes an address.
    seen: HashMap<[u8; 16], u32>,
    /// Time spent in the database and in mapping, for the debug log.
    pub reading: std::time::Duration,
    pub mapping: std::time::Duration,
    /// The next range's rows, being read (its upper bound and the reading task).
    ahead: Option<(i64, tokio::task::JoinHandle<anyhow::Result<Rows>>)>,
    /// When set, only these profiles (row IDs, ascending) are read, and how many of them
    /// have been.
    only: Option<(Vec<i64>, usize)>,
}

/// A range's profiles: row ID, customer ID, attributes, and their segments (comma-separated).
type Rows = Vec<(i64, String, String, String)>;

async fn fetch(db: Db, segment_list: String, after: i64, upto: i64) -> anyhow::Result<Rows> {
    Ok(crate::store::plan::rows(&db, &segment_list, after, upto).await?)
}

impl PlanReader {
    /// Prepares the plan, with what it needs to know of the audience's merge fields.
    #[tracing::instrument(name = "plan", skip_all, fields(destination_id = destination.id))]
    pub async fn open(
        db: &Db,
        destination: &Destination,
        facts: &FieldFacts,
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
            crate::store::plan::last_member(pool, &segment_list)
                .await
                .map_err(anyhow::Error::from)?
        };
        Ok(Self {
            db: db.clone(),
            names,
            segment_list,
            email_field: destination.email_field.clone().unwrap_or_default(),
            mappings: destination.field_mappings.clone(),
            facts: facts.clone(),
            total,
            after: 0,
            last,
            seen: HashMap::with_capacity(total.clamp(0, MAX_EXPORT_PROFILES) as usize),
            reading: Default::default(),
            mapping: Default::default(),
            ahead: None,
            only: None,
        })
    }

    /// Reads only these profiles (a re-export of what changed); those in none of the
    /// segments are not in the plan.
    /// Reading starts again from the first listed profile.
    pub fn only(&mut self, mut profile_ids: Vec<i64>) {
        profile_ids.sort_unstable();
        profile_ids.dedup();
        self.seen = HashMap::with_capacity(profile_ids.len());
        self.only = Some((profile_ids, 0));
    }

    /// The next chunk of the listed profiles.
    async fn next_listed(&mut self) -> anyhow::Result<Option<Chunk>> {
        loop {
            let Some((ids, at)) = self.only.as_mut() else {
                return Ok(None);
            };
            if *at >= ids.len() {
                return Ok(None);
            }
            let end = (*at + 1_000).min(ids.len());
            let list = ids[*at..end]
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            *at = end;
            let started = std::time::Instant::now();
            let profiles =
                crate::store::plan::rows_of_profiles(&self.db, &self.segment_list, &list).await?;
            self.reading += started.elapsed();
            if profiles.is_empty() {
                continue;
            }
            return Ok(Some(self.map_rows(profiles).await?));
        }
    }

    /// The next chunk, or `None` when every profile has been read.
    pub async fn next_chunk(&mut self) -> anyhow::Result<Option<Chunk>> {
        if self.only.is_some() {
            return self.next_listed().await;
        }
        while self.after < self.last {
            let upto = (self.after + CHUNK_IDS).min(self.last);
            let started = std::time::Instant::now();
            let profiles = match self.ahead.take() {
                Some((ahead_upto, fetching)) if ahead_upto == upto => fetching.await??,
                _ => fetch(self.db.clone(), self.segment_list.clone(), self.after, upto).await?,
            };
            // The next range is read while this one is mapped.
            if upto < self.last {
                let next = (upto + CHUNK_IDS).min(self.last);
                let fetching = tokio::spawn(fetch(
                    self.db.clone(),
                    self.segment_list.clone(),
                    upto,
                    next,
                ));
                self.ahead = Some((next, fetching));
            }
            self.reading += started.elapsed();
            self.after = upto;
            if profiles.is_empty() {
                continue;
            }
            return Ok(Some(self.map_rows(profiles).await?));
        }
        Ok(None)
    }

    /// Maps a range's rows into a chunk.
    async fn map_rows(&mut self, profiles: Rows) -> anyhow::Result<Chunk> {
        {
            let started = std::time::Instant::now();
            let mut chunk = Chunk::default();
            let mut repeats: Vec<(usize, i64)> = Vec::new();
            for (profile_id, customer_id, attributes, segments) in profiles {
                let tags: BTreeSet<String> = segments
                    .split(',')
                    .filter_map(|id| self.names.get(&id.trim().parse::<i64>().ok()?))
                    .cloned()
                    .collect();
                self.map(
                    &mut chunk,
                    &mut repeats,
                    profile_id,
                    customer_id,
                    &attributes,
                    tags,
                );
            }
            self.mapping += started.elapsed();
            self.name_first_customers(&mut chunk, &repeats).await?;
            Ok(chunk)
        }
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
            let rows = crate::store::plan::customer_ids(self.db.pool(), &list).await?;
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
        profile_id: i64,
        customer_id: String,
        attributes: &str,
        tags: BTreeSet<String>,
    ) {
        // Only the fields this destination sends are decoded.
        let mut values = pick(attributes, &self.email_field, &self.mappings);
        let email_field = &self.email_field;
        let raw = match values.first_mut().map(Option::take) {
            Some(Some(Value::String(s))) if !s.trim().is_empty() => s.trim().to_owned(),
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
        let hash = crate::domain::subscriber_digest(email.as_str());
        if let Some(first) = self.seen.get(&hash.to_be_bytes()) {
            repeats.push((chunk.rejected.len(), i64::from(*first)));
            chunk.repeats.push((customer_id.clone(), hash));
            chunk
                .rejected
                .push(skip(&customer_id, &raw, "Repeated email address", ""));
            return;
        }
        // (Row IDs beyond 2^32 - 1, never seen in practice, name "another customer".)
        self.seen.insert(
            hash.to_be_bytes(),
            u32::try_from(profile_id).unwrap_or(u32::MAX),
        );
        let mut merge_fields = Map::new();
        for (mapping, value) in self.mappings.iter().zip(values.into_iter().skip(1)) {
            let value = match value {
                // An empty value empties the merge field (Mailchimp keeps the last value
                // sent otherwise), unless the field is required.
                None | Some(Value::Null) => EMPTIED,
                Some(Value::String(s)) if s.is_empty() => EMPTIED,
                Some(Value::Number(n)) if self.facts.numbers.contains(&mapping.tag) => {
                    Value::Number(n)
                }
                Some(Value::String(s)) => Value::String(s),
                Some(other) => Value::String(other.to_string()),
            };
            if value == EMPTIED && self.facts.required.contains(&mapping.tag) {
                continue;
            }
            merge_fields.insert(mapping.tag.clone(), value);
        }
        // What the upsert sends (the address as typed, every merge value as is), less the
        // emptied values: a value emptied since the last export changes it, and one that
        // was always empty does not.
        let mut digest = Md5::new();
        digest.update(raw.as_bytes());
        digest.update(b"\0");
        let filled: Map<String, Value> = merge_fields
            .iter()
            .filter(|(_, v)| **v != EMPTIED)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        digest.update(Value::Object(filled).to_string().as_bytes());
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

/// The email field's value and each mapped field's value (in that order) from a profile's
/// attributes, decoding nothing else; a value that is missing, or attributes that are not a
/// JSON object, give `None`.
fn pick(attributes: &str, email_field: &str, mappings: &[FieldMapping]) -> Vec<Option<Value>> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;

    struct Pick<'a> {
        wanted: Vec<&'a str>,
    }
    impl<'de> Visitor<'de> for Pick<'_> {
        type Value = Vec<Option<Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = vec![None; self.wanted.len()];
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let mut positions = self
                    .wanted
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w == key)
                    .map(|(i, _)| i)
                    .peekable();
                if positions.peek().is_none() {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                let value: Value = map.next_value()?;
                for i in positions {
                    found[i] = Some(value.clone());
                }
            }
            Ok(found)
        }
    }
    impl<'de> DeserializeSeed<'de> for Pick<'_> {
        type Value = Vec<Option<Value>>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    let wanted: Vec<&str> = std::iter::once(email_field)
        .chain(mappings.iter().map(|m| m.field.as_str()))
        .collect();
    let empty = vec![None; wanted.len()];
    let mut reader = serde_json::Deserializer::from_str(attributes);
    Pick { wanted }.deserialize(&mut reader).unwrap_or(empty)
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
        assert_eq!(
            crate::domain::subscriber_digest(" Urist.McVankab@freddiesjokes.com"),
            hash
        );
        assert_eq!(hex_of(hash), hex);
        assert_eq!(hash_of("not hex"), None);
        assert_eq!(hex_of(1), "00000000000000000000000000000001");
    }

    #[test]
    fn only_the_sent_fields_are_picked_from_a_profile() {
        let mappings = [
            FieldMapping {
                tag: "FNAME".into(),
                field: "First".into(),
            },
            FieldMapping {
                tag: "SCORE".into(),
                field: "Score".into(),
            },
            FieldMapping {
                tag: "ALSO".into(),
                field: "First".into(),
            },
        ];
        let attributes =
            r#"{"Email":"a@b.io","Other":{"deep":[1,2]},"First":"Zo\u00eb","Score":7}"#;
        assert_eq!(
            pick(attributes, "Email", &mappings),
            vec![
                Some(Value::from("a@b.io")),
                Some(Value::from("Zoë")),
                Some(Value::from(7)),
                Some(Value::from("Zoë")),
            ]
        );
        assert_eq!(
            pick(r#"{"First":null}"#, "Email", &mappings),
            vec![None, Some(Value::Null), None, Some(Value::Null)]
        );
        assert_eq!(pick("not json", "Email", &mappings), vec![None; 4]);
    }
}
