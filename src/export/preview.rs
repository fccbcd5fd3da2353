//! What an export would do now, without writing to Mailchimp: members to create, update
//! or leave unchanged, members skipped and why, tags added and taken off, how much the
//! audience grows, and the merge-field values Mailchimp would refuse.
//!
//! It sorts the same plan against the same ledger as a run ([`super::exporter`]), and reads
//! what a run learns from Mailchimp's answers beforehand: the audience's members and their
//! statuses (one read of 1,000 members a page), its merge fields and its size. A run that
//! follows with nothing changed in between does what the preview says.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::MemberStatus;
use crate::export::drift::KEPT_OUT;
use crate::export::engine::{Engine, OWNERSHIP_TAG, fatal_message};
use crate::export::plan::{Hash, PlanError, PlanReader, Record};
use crate::export::state::{Index, NO_TAGS};
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
    let mut audience: HashMap<Hash, MemberStatus> = HashMap::new();
    let (fields, size, members) = tokio::join!(
        gateway.merge_fields(&list),
        gateway.audience_check(&list),
        gateway.members(&list, |email, status| {
            audience.insert(crate::domain::subscriber_digest(email), status);
        }),
    );
    let refused = |err| PreviewError::Mailchimp(fatal_message(&err));
    let fields = fields.map_err(refused)?;
    let contacts = size.map_err(refused)?.contacts;
    members.map_err(refused)?;

    let pool = engine.db.pool();
    let number_tags: Vec<String> = fields
        .iter()
        .filter(|f| f.kind == "number")
        .map(|f| f.tag.clone())
        .collect();
    let mut reader = match PlanReader::open(&engine.db, destination, &number_tags).await {
        Ok(reader) => reader,
        Err(PlanError::TooMany(n)) => {
            return Err(PreviewError::TooMany(PlanError::TooMany(n).to_string()));
        }
        Err(PlanError::Other(err)) => return Err(err.into()),
    };
    let index = Index::load(pool, engine.db.backend(), destination.id).await?;
    let mut sorter = Sorter {
        index,
        audience,
        rules: MergeRules::new(&fields),
        full,
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
    let ownership = sorter.index.tag_names.intern(OWNERSHIP_TAG);
    let mut planned = 0i64;
    while let Some(chunk) = reader.next_chunk().await? {
        planned += (chunk.records.len() + chunk.rejected.len()) as i64;
        for rejected in &chunk.rejected {
            sorter.preview.skip += 1;
            sorter.skipped.add(&rejected.title, &rejected.customer_id);
        }
        for record in &chunk.records {
            sorter.sort(record, ownership);
        }
    }
    sorter.leavers(ownership);
    // What the plan really held (segments may be refreshed while it is read).
    sorter.preview.profiles = planned;
    Ok(sorter.finish())
}

struct Sorter {
    index: Index,
    audience: HashMap<Hash, MemberStatus>,
    rules: MergeRules,
    full: bool,
    preview: Preview,
    skipped: Reasons,
    problems: Reasons,
    /// Per tag name: members gaining it, members losing it.
    tags: BTreeMap<String, (i64, i64)>,
    upserts: i64,
}

impl Sorter {
    /// One member of the plan, as the run's sorting and Mailchimp's answer would have it.
    fn sort(&mut self, record: &Record, ownership: u16) {
        let wanted: Vec<u16> = std::iter::once(ownership)
            .chain(record.tags.iter().map(|t| self.index.tag_names.intern(t)))
            .collect();
        let wanted = self.index.tag_sets.intern(wanted);
        let present = self.audience.get(&record.hash).copied();
        let known = self.index.get_mut(record.hash).map(|slot| {
            slot.planned = true;
            *slot
        });
        let (tags_now, data) = match known {
            Some(slot) if slot.refused.is_some() => {
                let title = self
                    .index
                    .statuses
                    .name(slot.refused.unwrap_or(0))
                    .to_owned();
                self.skip(&title, &record.customer_id);
                return;
            }
            // Gone from the audience: the run's audience check forgets it and sends it
            // again, unless it had opted out.
            Some(slot) if present.is_none() => {
                let status = self.index.statuses.name(slot.status);
                if matches!(status, "unsubscribed" | "cleaned") {
                    self.skip(KEPT_OUT, &record.customer_id);
                    return;
                }
                (NO_TAGS, true)
            }
            Some(slot) => (slot.tags, self.full || slot.content != record.content_hash),
            None => (NO_TAGS, true),
        };
        let after = self.index.tag_sets.union(tags_now, wanted);
        let adds = after != tags_now;
        self.removals(tags_now, wanted, present.is_some());
        if !(data || adds) {
            self.preview.unchanged += 1;
            return;
        }
        self.upserts += 1;
        if let Some(problem) = self.refusal(record, present.is_none()) {
            self.preview.fail += 1;
            self.problems.add(&problem, &record.customer_id);
            return;
        }
        let gained: Vec<u16> = {
            let now = self.index.tag_sets.tags(tags_now);
            self.index
                .tag_sets
                .tags(after)
                .iter()
                .copied()
                .filter(|t| !now.contains(t))
                .collect()
        };
        for tag in gained {
            let name = self.index.tag_names.name(tag).to_owned();
            self.tags.entry(name).or_default().0 += 1;
            self.preview.tags_added += 1;
        }
        match (present, data) {
            (_, false) => self.preview.unchanged += 1,
            (None, true) => self.preview.create += 1,
            (Some(_), true) => self.preview.update += 1,
        }
    }

    fn skip(&mut self, title: &str, customer_id: &str) {
        self.preview.skip += 1;
        self.skipped.add(title, customer_id);
    }

    /// Tags the member has and should not: each taken off by a tag call (which leaves
    /// addresses that are not on the audience alone).
    fn removals(&mut self, now: u32, wanted: u32, present: bool) {
        if !present {
            return;
        }
        let want = self.index.tag_sets.tags(wanted).to_vec();
        let losing: Vec<String> = self
            .index
            .tag_sets
            .tags(now)
            .iter()
            .filter(|t| !want.contains(t))
            .map(|t| self.index.tag_names.name(*t).to_owned())
            .collect();
        for name in losing {
            self.tags.entry(name).or_default().1 += 1;
            self.preview.tags_removed += 1;
        }
    }

    /// Why Mailchimp would refuse this member's merge fields, if it would.
    fn refusal(&self, record: &Record, is_new: bool) -> Option<String> {
        if is_new {
            self.rules.refusal_as_new(&record.merge_fields)
        } else {
            self.rules.refusal(&record.merge_fields)
        }
    }

    /// Members the ledger has and the plan does not: they keep only the ownership tag.
    fn leavers(&mut self, ownership: u16) {
        let only_ours = self.index.tag_sets.intern(vec![ownership]);
        let leaving: Vec<(Hash, u32)> = self
            .index
            .leavers()
            .filter(|s| s.tags != only_ours && s.tags != NO_TAGS)
            .map(|s| (s.hash, s.tags))
            .collect();
        for (hash, tags) in leaving {
            let present = self.audience.contains_key(&hash);
            self.removals(tags, only_ours, present);
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
