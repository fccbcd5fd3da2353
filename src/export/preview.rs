//! What an export would do now, without writing to Mailchimp: members to create, update
//! or leave unchanged, members skipped and why, tags added and taken off, how much the
//! audience grows, and the merge-field values Mailchimp would refuse.
//!
//! It reads the same plan against the same ledger as a run ([`super::run`]), and each
//! member's fate comes from the one decision a run acts on ([`super::decide`]). A re-export's
//! preview reads what its run reads: the audience's merge fields and size, the ledger for who
//! is in the audience, and only the profiles changed since the last complete export when the
//! run would read only those ([`super::changes`]). The audience's members are read whole (1,000
//! a page) only for a first export, a full resync, or when the audience check says the
//! audience changed behind the console ([`super::drift::drifted`]). A run that follows with
//! nothing changed in between does what the preview says.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::MemberStatus;
use crate::export::changes;
use crate::export::decide::{Decider, Fate, Presence, Tags};
use crate::export::engine::{Engine, fatal_message};
use crate::export::ledger_index::Index;
use crate::export::plan::{Chunk, Hash, PlanError, PlanReader, Record};
use crate::mailchimp::gateway::BATCH;
use crate::mailchimp::merge_rules::MergeRules;
use crate::store::destinations::Destination;

/// Customer IDs named as examples of each reason.
const EXAMPLES: usize = 5;

/// What an export would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preview {
    /// Profiles in the destination's segments.
    pub profiles: i64,
    /// New contacts in the audience.
    pub create: i64,
    /// Contacts whose data changes.
    pub update: i64,
    /// Contacts whose data is as Mailchimp has it (some may still gain a tag).
    pub unchanged: i64,
    /// Profiles not sent, grouped by reason (see `skipped`).
    pub skip: i64,
    /// Members Mailchimp would refuse for their merge-field values (see `problems`).
    pub fail: i64,
    pub skipped: Vec<Reason>,
    /// Merge-field problems found against the live audience: each would make Mailchimp
    /// refuse the members it names.
    pub problems: Vec<Reason>,
    /// Tag changes by tag name.
    pub tags: Vec<TagChange>,
    pub tags_added: i64,
    pub tags_removed: i64,
    /// The audience's contacts now (every status but archived).
    pub audience_contacts: i64,
    /// The fewest Mailchimp calls the export needs to write (batches of 500 upserts and
    /// tag removals of up to 500 members), besides its reads.
    pub write_calls: i64,
    /// Whether this would be a full resync (every member's data sent again).
    pub full_resync: bool,
}

/// A reason and how many members it concerns, with some customer IDs as examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub title: String,
    pub members: i64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TagChange {
    pub tag: String,
    pub add: i64,
    pub remove: i64,
}

impl Preview {
    /// Problems that would make Mailchimp refuse members: the person should confirm.
    pub fn is_blocking(&self) -> bool {
        self.fail > 0 || !self.problems.is_empty()
    }

    /// Growth of the audience, in percent of its contacts now (None when it is empty).
    pub fn growth_percent(&self) -> Option<f64> {
        (self.audience_contacts > 0)
            .then(|| self.create as f64 * 100.0 / self.audience_contacts as f64)
    }
}

/// Why a preview could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// Mailchimp could not be read (words for the person).
    #[error("{0}")]
    Mailchimp(String),
    /// The segments hold more than an export may send.
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PreviewError {
    fn from(err: sqlx::Error) -> Self {
        PreviewError::Internal(err.into())
    }
}

/// Counts by reason, keeping a few examples of each.
#[derive(Default)]
struct Reasons(BTreeMap<String, Reason>);

impl Reasons {
    fn add(&mut self, title: &str, customer_id: &str) {
        let reason = self.0.entry(title.to_owned()).or_insert_with(|| Reason {
            title: title.to_owned(),
            members: 0,
            examples: Vec::new(),
        });
        reason.members += 1;
        if reason.examples.len() < EXAMPLES {
            reason.examples.push(customer_id.to_owned());
        }
    }

    /// Largest first.
    fn into_vec(self) -> Vec<Reason> {
        let mut all: Vec<Reason> = self.0.into_values().collect();
        all.sort_by(|a, b| b.members.cmp(&a.members).then(a.title.cmp(&b.title)));
        all
    }
}

/// Sorts a destination's plan as its next run would (a full resync when `full`).
#[tracing::instrument(name = "preview", skip_all, fields(destination_id = destination.id))]
pub async fn compute(
    engine: &Engine,
    destination: &Destination,
    full: bool,
) -> Result<Preview, PreviewError> {
    let gateway = engine.gateway(destination).map_err(|err| {
        PreviewError::Mailchimp(format!(
            "The destination's credential cannot be used: {err}. Authenticate again."
        ))
    })?;
    let list = destination.audience_id.clone();
    let pool = engine.db.pool();
    let (fields, found) = tokio::join!(gateway.merge_fields(&list), gateway.audience_check(&list));
    let refused = |err| PreviewError::Mailchimp(fatal_message(&err));
    let fields = fields.map_err(refused)?;
    let found = found.map_err(refused)?;
    let contacts = found.contacts;
    // A re-export's preview reads what its run would: the ledger says who is in the audience,
    // unless the audience check says the audience changed behind the console. A first export
    // and a full resync read the audience whole.
    let first = crate::store::drift::ledger_members(pool, destination.id).await? == 0;
    let before = crate::store::drift::find(pool, destination.id)
        .await?
        .map(|(check, _)| check);
    let drifted = crate::export::drift::drifted(&engine.db, destination, before, &found).await?;
    let audience = if full || first || drifted {
        let mut audience: HashMap<Hash, MemberStatus> = HashMap::new();
        gateway
            .members(&list, |email, status| {
                audience.insert(crate::domain::subscriber_digest(email), status);
            })
            .await
            .map_err(refused)?;
        Some(audience)
    } else {
        None
    };

    let facts = crate::export::plan::FieldFacts::of(&fields);
    let mut reader = match PlanReader::open(&engine.db, destination, &facts).await {
        Ok(reader) => reader,
        Err(PlanError::TooMany(n)) => {
            return Err(PreviewError::TooMany(PlanError::TooMany(n).to_string()));
        }
        Err(PlanError::Other(err)) => return Err(err.into()),
    };
    // Only what changed since the last complete export, when the run would read only that.
    let changed = match &audience {
        Some(_) => None,
        None => {
            let mark = crate::store::marks::find(pool, destination.id).await?;
            let segment_ids = crate::store::destinations::segment_ids(pool, destination.id).await?;
            let basis =
                changes::basis(&engine.db, destination, &facts.numbers, &segment_ids).await?;
            changes::changes(&engine.db, destination.id, mark, &basis, &mut reader).await?
        }
    };
    let (index, chunks) = match changed {
        Some(changed) => (changed.index, Some(changed.chunks)),
        None => (
            Index::load(pool, engine.db.backend(), destination.id).await?,
            None,
        ),
    };
    let mut index = index;
    let decider = Decider::new(&mut index, full, MergeRules::new(&fields));
    let mut counts = Tally {
        index,
        decider,
        audience,
        preview: Preview {
            profiles: 0,
            create: 0,
            update: 0,
            unchanged: 0,
            skip: 0,
            fail: 0,
            skipped: Vec::new(),
            problems: Vec::new(),
            tags: Vec::new(),
            tags_added: 0,
            tags_removed: 0,
            audience_contacts: contacts,
            write_calls: 0,
            full_resync: full,
        },
        skipped: Reasons::default(),
        problems: Reasons::default(),
        tags: BTreeMap::new(),
        upserts: 0,
    };
    if let Some(chunks) = chunks {
        // The profiles not read are as the last complete export left them.
        let mut planned = 0i64;
        for chunk in &chunks {
            planned += counts.chunk(chunk);
        }
        counts.leavers();
        counts.preview.unchanged += (reader.total - planned).max(0);
        counts.preview.profiles = reader.total;
        return Ok(counts.finish());
    }
    let mut planned = 0i64;
    while let Some(chunk) = reader.next_chunk().await? {
        planned += counts.chunk(&chunk);
    }
    counts.leavers();
    // What the plan really held (segments may be refreshed while it is read).
    counts.preview.profiles = planned;
    Ok(counts.finish())
}

/// The preview being counted: each member's fate as a run would decide it, with what
/// Mailchimp would answer (read from the audience beforehand).
struct Tally {
    index: Index,
    decider: Decider,
    /// The audience's members, when it was read whole (otherwise the ledger says).
    audience: Option<HashMap<Hash, MemberStatus>>,
    preview: Preview,
    skipped: Reasons,
    problems: Reasons,
    /// Per tag name: members gaining it, members losing it.
    tags: BTreeMap<String, (i64, i64)>,
    /// Members a run would send in batch upserts.
    upserts: i64,
}

impl Tally {
    /// Counts a chunk of the plan; returns how many profiles it held.
    fn chunk(&mut self, chunk: &Chunk) -> i64 {
        for rejected in &chunk.rejected {
            self.skip(&rejected.title, &rejected.customer_id);
        }
        for record in &chunk.records {
            self.member(record);
        }
        (chunk.records.len() + chunk.rejected.len()) as i64
    }

    /// Whether the audience holds the member: as read, or as the ledger knows.
    fn present(&mut self, hash: Hash) -> bool {
        match &self.audience {
            Some(audience) => audience.contains_key(&hash),
            None => self.index.get_mut(hash).is_some(),
        }
    }

    fn member(&mut self, record: &Record) {
        let present = self.present(record.hash);
        let presence = if present {
            Presence::Present
        } else {
            Presence::Absent
        };
        match self.decider.member(&mut self.index, record, presence) {
            Fate::Skip { title, .. } => self.skip(&title, &record.customer_id),
            Fate::Fail { reason, tags, sent } => {
                self.removals(tags, present);
                self.upserts += i64::from(sent);
                self.preview.fail += 1;
                self.problems.add(&reason, &record.customer_id);
            }
            Fate::Unchanged { tags } => {
                self.removals(tags, present);
                self.preview.unchanged += 1;
            }
            Fate::Send { data, new, tags } => {
                self.removals(tags, present);
                self.upserts += 1;
                for tag in tags.gaining(&self.index) {
                    let name = self.index.tag_names.name(tag).to_owned();
                    self.tags.entry(name).or_default().0 += 1;
                    self.preview.tags_added += 1;
                }
                match (data, new) {
                    (false, _) => self.preview.unchanged += 1,
                    (true, true) => self.preview.create += 1,
                    (true, false) => self.preview.update += 1,
                }
            }
        }
    }

    fn skip(&mut self, title: &str, customer_id: &str) {
        self.preview.skip += 1;
        self.skipped.add(title, customer_id);
    }

    /// Tags the member has and should not: each taken off by a tag call (which leaves
    /// addresses that are not on the audience alone).
    fn removals(&mut self, tags: Tags, present: bool) {
        if !present {
            return;
        }
        for tag in tags.losing(&self.index) {
            let name = self.index.tag_names.name(tag).to_owned();
            self.tags.entry(name).or_default().1 += 1;
            self.preview.tags_removed += 1;
        }
    }

    fn leavers(&mut self) {
        for (hash, tags) in self.decider.leavers(&mut self.index) {
            let present = self.present(hash);
            self.removals(tags, present);
        }
    }

    fn finish(mut self) -> Preview {
        let removal_calls: i64 = self
            .tags
            .values()
            .map(|(_, remove)| (*remove as u64).div_ceil(BATCH as u64) as i64)
            .sum();
        self.preview.write_calls =
            (self.upserts as u64).div_ceil(BATCH as u64) as i64 + removal_calls;
        self.preview.skipped = self.skipped.into_vec();
        self.preview.problems = self.problems.into_vec();
        self.preview.tags = self
            .tags
            .into_iter()
            .map(|(tag, (add, remove))| TagChange { tag, add, remove })
            .collect();
        self.preview
    }
}

/// Computes a preview and keeps it as the destination's last one (failed, with why, when it
/// cannot be computed).
pub async fn compute_and_keep(
    engine: &Engine,
    destination: &Destination,
    full: bool,
) -> Result<Preview, PreviewError> {
    let pool = engine.db.pool();
    let result = compute(engine, destination, full).await;
    let kept = match &result {
        Ok(preview) => {
            let body = serde_json::to_string(preview).map_err(anyhow::Error::from)?;
            crate::store::previews::finish(pool, destination.id, &body).await
        }
        Err(PreviewError::Internal(err)) => {
            tracing::error!(error = format!("{err:#}"), "a preview failed");
            crate::store::previews::fail(
                pool,
                destination.id,
                "The console hit an error; its log says more.",
            )
            .await
        }
        Err(err) => crate::store::previews::fail(pool, destination.id, &err.to_string()).await,
    };
    kept.map_err(anyhow::Error::from)?;
    result
}

/// The destination's last preview, when one was computed.
pub fn decode(body: &str) -> Option<Preview> {
    serde_json::from_str(body).ok()
}
