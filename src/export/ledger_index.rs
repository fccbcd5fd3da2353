//! What a run keeps in memory about a destination's ledger: one fixed-size slot per address
//! (48 bytes), with tag sets, statuses and refusal reasons interned, so a million members
//! fit in about 50 MB. The ledger in the database stays the record; this is its index.

use std::collections::HashMap;

use sqlx::AnyPool;

use crate::export::plan::{Hash, hash_of};

/// Small strings (tag names, statuses, refusal titles) by number.
#[derive(Debug, Default)]
pub struct Names {
    names: Vec<String>,
    by_name: HashMap<String, u16>,
}

impl Names {
    pub fn intern(&mut self, name: &str) -> u16 {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = u16::try_from(self.names.len()).expect("fewer than 65,536 names");
        self.names.push(name.to_owned());
        self.by_name.insert(name.to_owned(), id);
        id
    }

    pub fn name(&self, id: u16) -> &str {
        &self.names[usize::from(id)]
    }
}

/// Sets of tags by number: members share a handful of distinct sets.
#[derive(Debug)]
pub struct TagSets {
    sets: Vec<Vec<u16>>,
    by_set: HashMap<Vec<u16>, u32>,
}

/// The empty tag set.
pub const NO_TAGS: u32 = 0;

impl Default for TagSets {
    fn default() -> Self {
        Self {
            sets: vec![Vec::new()],
            by_set: HashMap::from([(Vec::new(), NO_TAGS)]),
        }
    }
}

impl TagSets {
    pub fn intern(&mut self, mut tags: Vec<u16>) -> u32 {
        tags.sort_unstable();
        tags.dedup();
        if let Some(id) = self.by_set.get(&tags) {
            return *id;
        }
        let id = u32::try_from(self.sets.len()).expect("fewer than 2^32 tag sets");
        self.sets.push(tags.clone());
        self.by_set.insert(tags, id);
        id
    }

    pub fn tags(&self, set: u32) -> &[u16] {
        &self.sets[set as usize]
    }

    pub fn without(&mut self, set: u32, tag: u16) -> u32 {
        if !self.tags(set).contains(&tag) {
            return set;
        }
        let tags = self
            .tags(set)
            .iter()
            .copied()
            .filter(|t| *t != tag)
            .collect();
        self.intern(tags)
    }

    /// The set as the ledger stores it: a JSON array of names.
    /// The set of every tag in either.
    pub fn union(&mut self, a: u32, b: u32) -> u32 {
        if a == b || b == NO_TAGS {
            return a;
        }
        if a == NO_TAGS {
            return b;
        }
        let both: Vec<u16> = self.tags(a).iter().chain(self.tags(b)).copied().collect();
        self.intern(both)
    }

    pub fn json(&self, set: u32, names: &Names) -> String {
        let list: Vec<&str> = self.tags(set).iter().map(|t| names.name(*t)).collect();
        serde_json::to_string(&list).expect("strings serialise")
    }
}

/// One ledger entry, compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub hash: Hash,
    /// Digest of what was last sent; 0 for a member Mailchimp refused for good.
    pub content: Hash,
    pub tags: u32,
    /// The status Mailchimp last reported (in `Index::statuses`).
    pub status: u16,
    /// Why Mailchimp refused the member for good (in `Index::statuses`), if it did.
    pub refused: Option<u16>,
    /// Whether this run's plan has the member.
    pub planned: bool,
}

/// A destination's ledger as of the start of a run.
#[derive(Debug, Default)]
pub struct Index {
    slots: Vec<Slot>,
    pub tag_names: Names,
    pub tag_sets: TagSets,
    /// Statuses and refusal titles.
    pub statuses: Names,
}

impl Index {
    /// Loads a destination's ledger. Rows come packed, 10,000 entries to a database row
    /// (fields split by the unit separator, entries by the record separator, neither of
    /// which hashes, statuses, titles or JSON text contain): moving a million small rows
    /// one by one through the driver costs seconds, moving a hundred large ones does not.
    #[tracing::instrument(name = "ledger index", skip_all, fields(destination_id = destination_id))]
    pub async fn load(
        pool: &AnyPool,
        backend: crate::db::Backend,
        destination_id: i64,
    ) -> anyhow::Result<Self> {
        const PAGE: i64 = 10_000;
        let mut index = Index::default();
        // Members share a few tag lists: each distinct list is decoded once.
        let mut lists: HashMap<String, u32> = HashMap::new();
        let mut after = String::new();
        loop {
            let (packed, last) =
                crate::store::ledger::packed_page(pool, backend, destination_id, &after, PAGE)
                    .await?;
            let (Some(packed), Some(last)) = (packed, last) else {
                break;
            };
            for entry in packed.split('\u{1e}') {
                let mut fields = entry.splitn(5, '\u{1f}');
                let (Some(hash), Some(content), Some(status), Some(refused), Some(list)) = (
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                ) else {
                    continue;
                };
                index.push(&mut lists, hash, content, status, refused, list);
            }
            after = last;
        }
        index.slots.sort_unstable_by_key(|s| s.hash);
        Ok(index)
    }

    /// An index of some ledger rows (those a re-export of what changed needs).
    pub fn of_rows(rows: &[crate::store::ledger::Row]) -> Self {
        let mut index = Index::default();
        let mut lists: HashMap<String, u32> = HashMap::new();
        for row in rows {
            index.push(
                &mut lists,
                &row.email_hash,
                &row.content_hash,
                &row.status,
                row.permanent_skip.as_deref().unwrap_or(""),
                &row.tags,
            );
        }
        index.slots.sort_unstable_by_key(|s| s.hash);
        index.slots.dedup_by_key(|s| s.hash);
        index
    }

    /// Adds one entry (its fields as the ledger stores them); `lists` decodes each distinct
    /// tag list once.
    fn push(
        &mut self,
        lists: &mut HashMap<String, u32>,
        hash: &str,
        content: &str,
        status: &str,
        refused: &str,
        list: &str,
    ) {
        let Some(hash) = hash_of(hash) else {
            return;
        };
        let status = self.statuses.intern(status);
        let tags = match lists.get(list) {
            Some(tags) => *tags,
            None => {
                let names: Vec<String> = serde_json::from_str(list).unwrap_or_default();
                let tags = names
                    .iter()
                    .map(|n| self.tag_names.intern(n))
                    .collect::<Vec<_>>();
                let tags = self.tag_sets.intern(tags);
                lists.insert(list.to_owned(), tags);
                tags
            }
        };
        let refused = (!refused.is_empty()).then(|| self.statuses.intern(refused));
        self.slots.push(Slot {
            hash,
            content: if refused.is_some() {
                0
            } else {
                hash_of(content).unwrap_or(0)
            },
            tags,
            status,
            refused,
            planned: false,
        });
    }

    pub fn contains(&self, hash: Hash) -> bool {
        self.slots.binary_search_by_key(&hash, |s| s.hash).is_ok()
    }

    pub fn get_mut(&mut self, hash: Hash) -> Option<&mut Slot> {
        let at = self.slots.binary_search_by_key(&hash, |s| s.hash).ok()?;
        Some(&mut self.slots[at])
    }

    /// Members the ledger has that this run's plan does not (they left every segment).
    pub fn leavers(&self) -> impl Iterator<Item = &Slot> {
        self.slots
            .iter()
            .filter(|s| !s.planned && s.refused.is_none() && s.content != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_are_shared_and_ordered() {
        let mut names = Names::default();
        let mut sets = TagSets::default();
        let (a, b) = (names.intern("VIP"), names.intern("Churn risk"));
        let ab = sets.intern(vec![b, a]);
        assert_eq!(sets.intern(vec![a, b, a]), ab);
        assert_eq!(sets.without(ab, b), sets.intern(vec![a]));
        assert_eq!(sets.without(NO_TAGS, b), NO_TAGS);
        let only_b = sets.intern(vec![b]);
        let only_a = sets.intern(vec![a]);
        assert_eq!(sets.union(only_a, only_b), ab);
        assert_eq!(sets.union(ab, NO_TAGS), ab);
        assert_eq!(sets.json(ab, &names), r#"["VIP","Churn risk"]"#);
        assert_eq!(std::mem::size_of::<Slot>(), 48);
    }
}
