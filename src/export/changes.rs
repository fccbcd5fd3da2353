//! Re-exports that read only what changed since the destination's last complete export.
//!
//! A segment's membership depends only on each profile's attributes and on the segment's
//! definition (rules, the types of the fields they name, or a static list). So when the
//! settings and every segment's definition are what the last complete export used, and no
//! profile was deleted, the members whose plan can differ are the profiles written since
//! that export's starting point; the rest are as it left them in Mailchimp and the ledger.
//!
//! One thing links profiles that did not change to those that did: an address that two
//! profiles share is exported once, for the first of them. So every profile of the plan
//! that holds an address a changed profile had or has (its ledger entry, or a noted repeat)
//! is read again too, and the plan orders them as a full read would.
//!
//! Anything else (a full resync, a run that did not end complete, changed settings or
//! segment definitions, a deleted profile, more than [`MAX_CHANGED`] changed profiles)
//! reads the whole plan.

use std::collections::{BTreeMap, HashMap, HashSet};

use md5::{Digest, Md5};

use crate::db::Db;
use crate::export::ledger_index::Index;
use crate::export::plan::{Chunk, Hash, PlanReader, hash_of, hex_of};
use crate::store::destinations::Destination;
use crate::store::ledger::{self, Key};
use crate::store::marks::{self, Mark, RepeatKey};
use crate::store::segments;

/// Above this many changed profiles the whole plan is read.
pub const MAX_CHANGED: i64 = 100_000;

/// Clocks of consoles sharing a database may differ by this much (profile writes that
/// commit late are covered by the writes-under-way notes, not by this margin).
pub const CLOCK_MARGIN_MS: i64 = 5_000;

/// What a run exports from, noted before its plan is read; it becomes the destination's
/// mark when the run ends complete.
#[derive(Debug, Clone)]
pub struct Basis {
    pub settings: String,
    pub segments: String,
    pub changes_from: i64,
    pub profiles: i64,
    pub last_profile: i64,
}

impl Basis {
    pub fn mark(&self, run_id: i64) -> Mark {
        Mark {
            run_id,
            settings: self.settings.clone(),
            segments: self.segments.clone(),
            changes_from: self.changes_from,
            profiles: self.profiles,
            last_profile: self.last_profile,
        }
    }
}

/// Notes what the run exports from: the settings' digest, each segment's membership basis,
/// the time from which profile writes may not be in the plan, and the profile census.
#[tracing::instrument(name = "basis", skip_all, fields(destination_id = destination.id))]
pub async fn basis(
    db: &Db,
    destination: &Destination,
    number_tags: &[String],
    segment_ids: &[i64],
) -> anyhow::Result<Basis> {
    let pool = db.pool();
    let horizon = crate::store::profile_writers::horizon(pool).await?;
    let mut earliest = horizon;
    let mut bases = BTreeMap::new();
    let mut names = Vec::new();
    for id in segment_ids {
        if let Some(segment) = segments::find(pool, *id).await? {
            earliest = earliest.min(segment.members_as_of);
            names.push(format!("{}={}", segment.id, segment.name));
            bases.insert(segment.id.to_string(), segment.members_basis);
        }
    }
    let mut digest = Md5::new();
    let mut mappings: Vec<String> = destination
        .field_mappings
        .iter()
        .map(|m| format!("{}={}", m.tag, m.field))
        .collect();
    mappings.sort();
    let mut numbers = number_tags.to_vec();
    numbers.sort();
    for part in [
        destination.audience_id.as_str(),
        destination
            .credential
            .as_ref()
            .map_or("", |c| c.api_base.as_str()),
        destination.email_field.as_deref().unwrap_or(""),
        destination.new_member_status.as_str(),
        crate::export::OWNERSHIP_TAG,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(mappings)
    .chain(numbers)
    .chain(names)
    {
        digest.update(part.as_bytes());
        digest.update(b"\0");
    }
    let (profiles, last_profile) = marks::profile_census(pool).await?;
    Ok(Basis {
        settings: hex_of(Hash::from_be_bytes(digest.finalize().into())),
        segments: serde_json::to_string(&bases)?,
        changes_from: earliest - CLOCK_MARGIN_MS,
        profiles,
        last_profile,
    })
}

/// A re-export's plan when only changed profiles are read.
pub struct Changes {
    /// The mark's starting point: profiles written since were read.
    pub since: i64,
    pub since_run: i64,
    pub chunks: Vec<Chunk>,
    /// The ledger entries of every profile read, and of every address they had or have.
    pub index: Index,
    /// Those entries' addresses (tag removals name members by address).
    pub emails: HashMap<Hash, String>,
    /// Customers read: their noted repeats are replaced by what this run finds.
    pub customers: Vec<String>,
    /// Profiles read, and how many of them the plan holds.
    pub read: i64,
    pub planned: i64,
}

/// Why the whole plan is read (for the log).
fn full(reason: &str) -> anyhow::Result<Option<Changes>> {
    tracing::debug!(reason, "the whole plan is read");
    Ok(None)
}

/// The changed part of the plan, or `None` when the whole plan must be read.
#[tracing::instrument(name = "changes", skip_all, fields(destination_id = destination_id))]
pub async fn changes(
    db: &Db,
    destination_id: i64,
    mark: Option<Mark>,
    now: &Basis,
    reader: &mut PlanReader,
) -> anyhow::Result<Option<Changes>> {
    let pool = db.pool();
    let Some(mark) = mark else {
        return full("no complete export to start from");
    };
    if mark.settings != now.settings || mark.segments != now.segments {
        return full("settings or segment definitions changed");
    }
    let added = marks::profiles_after(pool, mark.last_profile).await?;
    if now.profiles != mark.profiles + added {
        return full("profiles were deleted");
    }
    if marks::changed_count(pool, mark.changes_from, MAX_CHANGED).await? > MAX_CHANGED {
        return full("too many profiles changed");
    }
    let started = std::time::Instant::now();
    let changed = marks::changed(pool, mark.changes_from).await?;
    let mut ids: Vec<i64> = changed.iter().map(|(id, _)| *id).collect();
    let mut customers: Vec<String> = changed.into_iter().map(|(_, c)| c).collect();
    let known: HashSet<String> = customers.iter().cloned().collect();

    let found_ms = started.elapsed().as_millis() as u64;
    // The addresses the changed profiles have now.
    reader.only(ids.clone());
    let mut chunks = read_all(reader).await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let mut touched: HashSet<String> = HashSet::new();
    for chunk in &chunks {
        touched.extend(chunk.records.iter().map(|r| hex_of(r.hash)));
        touched.extend(chunk.repeats.iter().map(|(_, h)| hex_of(*h)));
    }
    // And the addresses they had.
    let mut rows = ledger::rows_of(pool, destination_id, Key::Customer, &customers).await?;
    touched.extend(rows.iter().map(|r| r.email_hash.clone()));
    let repeats = marks::repeats_of(pool, destination_id, RepeatKey::Customer, &customers).await?;
    touched.extend(repeats.into_iter().map(|(_, h)| h));

    // Every other profile holding one of those addresses is read again.
    let touched: Vec<String> = touched.into_iter().collect();
    let by_address = ledger::rows_of(pool, destination_id, Key::Address, &touched).await?;
    let mut others: HashSet<String> = by_address
        .iter()
        .filter(|r| !known.contains(&r.customer_id))
        .map(|r| r.customer_id.clone())
        .collect();
    let repeats = marks::repeats_of(pool, destination_id, RepeatKey::Address, &touched).await?;
    others.extend(
        repeats
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| !known.contains(c)),
    );
    rows.extend(by_address);
    let others_count = others.len();
    let ledger_ms = started.elapsed().as_millis() as u64;
    if !others.is_empty() {
        let others: Vec<String> = others.into_iter().collect();
        rows.extend(ledger::rows_of(pool, destination_id, Key::Customer, &others).await?);
        for (id, customer) in marks::profile_ids(pool, &others).await? {
            ids.push(id);
            customers.push(customer);
        }
        reader.only(ids.clone());
        chunks = read_all(reader).await?;
    }
    tracing::debug!(
        found_ms,
        read_ms,
        ledger_ms,
        others = others_count,
        all_ms = started.elapsed().as_millis() as u64,
        "changed profiles read"
    );
    let index = Index::of_rows(&rows);
    let emails = rows
        .iter()
        .filter_map(|r| Some((hash_of(&r.email_hash)?, r.email.clone())))
        .collect();
    let planned = chunks
        .iter()
        .map(|c| (c.records.len() + c.rejected.len()) as i64)
        .sum();
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(Changes {
        since: mark.changes_from,
        since_run: mark.run_id,
        chunks,
        index,
        emails,
        customers,
        read: ids.len() as i64,
        planned,
    }))
}

async fn read_all(reader: &mut PlanReader) -> anyhow::Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    while let Some(chunk) = reader.next_chunk().await? {
        chunks.push(chunk);
    }
    Ok(chunks)
}
